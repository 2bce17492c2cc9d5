"""SQLAlchemy 2 models: the sysinv-like ``label`` table of labels the conductor manages.

Keyed by the reporting host's uuid (the node's systemUUID, lower case), one row per label key.
Schema changes go through an alembic revision in ``migrations/versions``.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import DateTime, Integer, MetaData, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s_%(column_1_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Label(Base):
    """One Kubernetes label the conductor set on the node of ``host_uuid``."""

    __tablename__ = "label"
    __table_args__ = (UniqueConstraint("host_uuid", "label_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host_uuid: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    label_key: Mapped[str] = mapped_column(String(384), nullable=False)
    label_value: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True,
                                                        onupdate=utcnow)
