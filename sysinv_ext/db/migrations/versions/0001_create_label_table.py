"""Create the label table: labels the conductor set, one row per (host_uuid, label_key).

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "label",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("host_uuid", sa.String(64), nullable=False),
        sa.Column("label_key", sa.String(384), nullable=False),
        sa.Column("label_value", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_label"),
        sa.UniqueConstraint("host_uuid", "label_key", name="uq_label_host_uuid_label_key"),
    )
    op.create_index("ix_label_host_uuid", "label", ["host_uuid"])


def downgrade() -> None:
    op.drop_index("ix_label_host_uuid", table_name="label")
    op.drop_table("label")
