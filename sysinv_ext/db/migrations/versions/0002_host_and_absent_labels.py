"""Record removals and reporting hosts: label.label_value nullable (NULL = must be absent) and
a ``host`` table (last report, first time its node was seen) so pending hosts can expire.

Existing label rows belong to hosts whose node was seen (they were patched): their host rows
are created with ``seen_at`` set, so none of them expires.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("label") as batch:
        batch.alter_column("label_value", existing_type=sa.String(128), nullable=True)
    host = op.create_table(
        "host",
        sa.Column("host_uuid", sa.String(64), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("host_uuid", name="pk_host"),
    )
    now = datetime.now(timezone.utc)
    hosts = op.get_bind().execute(sa.text("SELECT DISTINCT host_uuid FROM label")).scalars().all()
    if hosts:
        op.bulk_insert(host, [{"host_uuid": h, "reported_at": now, "seen_at": now} for h in hosts])


def downgrade() -> None:
    op.drop_table("host")
    op.execute("DELETE FROM label WHERE label_value IS NULL")
    with op.batch_alter_table("label") as batch:
        batch.alter_column("label_value", existing_type=sa.String(128), nullable=False)
