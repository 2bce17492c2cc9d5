"""SQLAlchemy 2 models: the desired labels of each host and the hosts that reported.

``label``: keyed by the reporting host's uuid (the node's systemUUID, lower case), one row per
label key; a NULL value records a removal ("this key must be absent"), so a conductor killed
between the database write and the PATCH still converges both ways in the next audit.
``host``: when a host last reported and whether its Kubernetes node was ever seen; hosts never
seen expire (``[conductor]pending_host_ttl``). Schema changes go through an alembic revision
in ``migrations/versions``.
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
    label_value: Mapped[str | None] = mapped_column(String(128), nullable=True)  # None = absent
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True,
                                                        onupdate=utcnow)


class Host(Base):
    """A host that reported: ``seen_at`` is None while no Kubernetes node matched it yet."""

    __tablename__ = "host"

    host_uuid: Mapped[str] = mapped_column(String(64), primary_key=True)
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
