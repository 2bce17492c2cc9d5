"""Plain functions over the label table (noun_verb names, as sysinv/cyborg) and engine creation.

Each function runs in its own short transaction and returns frozen ``LabelRecord`` values,
never ORM objects. SQLAlchemy errors become our exceptions (``LabelAlreadyExists``,
``LabelNotFound``, ``DatabaseError``) with the original chained.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import create_engine, delete, event, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from sysinv_ext.common import exception
from sysinv_ext.db.models import Label

__all__ = ["Engine", "LabelRecord", "describe_url", "get_engine", "label_create", "label_delete",
           "label_get", "label_get_all", "label_get_by_host", "label_set", "label_sync", "label_update"]


@dataclass(frozen=True)
class LabelRecord:
    host_uuid: str
    label_key: str
    label_value: str
    created_at: datetime
    updated_at: datetime | None

    @classmethod
    def of(cls, row: Label) -> LabelRecord:
        return cls(row.host_uuid, row.label_key, row.label_value, row.created_at, row.updated_at)


def describe_url(url: str) -> str:
    """``url`` with any password masked, for log lines."""
    return make_url(url).render_as_string(hide_password=True)


def get_engine(url: str, *, create_dir: bool = True) -> Engine:
    """An Engine for ``url``. For a SQLite file, its directory is created (0750) when missing
    and the database runs in WAL mode so the audit can read while an RPC writes."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            directory = os.path.dirname(os.path.abspath(database))
            if create_dir:
                os.makedirs(directory, mode=0o750, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


@contextmanager
def _session(engine: Engine, action: str) -> Iterator[Session]:
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
    except exception.SysinvExtException:
        raise
    except SQLAlchemyError as err:
        raise exception.DatabaseError(action=action, reason=str(err).splitlines()[0]) from err


def _find(session: Session, host_uuid: str, label_key: str) -> Label | None:
    return session.scalars(select(Label).where(Label.host_uuid == host_uuid,
                                               Label.label_key == label_key)).first()


def label_create(engine: Engine, host_uuid: str, label_key: str, label_value: str) -> LabelRecord:
    """Record a new label; raises LabelAlreadyExists if the host already has this key."""
    try:
        with _session(engine, "label_create") as session:
            row = Label(host_uuid=host_uuid, label_key=label_key, label_value=label_value)
            session.add(row)
            session.flush()
            return LabelRecord.of(row)
    except exception.DatabaseError as err:
        if isinstance(err.__cause__, IntegrityError):
            raise exception.LabelAlreadyExists(host_uuid=host_uuid, label_key=label_key) from err
        raise


def label_update(engine: Engine, host_uuid: str, label_key: str, label_value: str) -> LabelRecord:
    """Change a recorded label's value; raises LabelNotFound if it is not recorded."""
    with _session(engine, "label_update") as session:
        row = _find(session, host_uuid, label_key)
        if row is None:
            raise exception.LabelNotFound(host_uuid=host_uuid, label_key=label_key)
        if row.label_value != label_value:
            row.label_value = label_value
            session.flush()
        return LabelRecord.of(row)


def label_set(engine: Engine, host_uuid: str, label_key: str, label_value: str) -> bool:
    """Create or update a label; True when something changed."""
    with _session(engine, "label_set") as session:
        row = _find(session, host_uuid, label_key)
        if row is not None:
            if row.label_value == label_value:
                return False
            row.label_value = label_value
            return True
    try:
        label_create(engine, host_uuid, label_key, label_value)
    except exception.LabelAlreadyExists:  # created concurrently: update that row instead
        label_update(engine, host_uuid, label_key, label_value)
    return True


def label_sync(engine: Engine, host_uuid: str, labels: Mapping[str, str | None]) -> bool:
    """In one transaction, set (value) or delete (None) each of ``labels`` for ``host_uuid``;
    other keys of the host are left alone. True when something changed."""
    changed = False
    with _session(engine, "label_sync") as session:
        rows = {row.label_key: row for row in session.scalars(
            select(Label).where(Label.host_uuid == host_uuid, Label.label_key.in_(list(labels))))}
        for key, value in labels.items():
            row = rows.get(key)
            if value is None:
                if row is not None:
                    session.delete(row)
                    changed = True
            elif row is None:
                session.add(Label(host_uuid=host_uuid, label_key=key, label_value=value))
                changed = True
            elif row.label_value != value:
                row.label_value = value
                changed = True
    return changed


def label_get(engine: Engine, host_uuid: str, label_key: str) -> LabelRecord:
    """One recorded label; raises LabelNotFound."""
    with _session(engine, "label_get") as session:
        row = _find(session, host_uuid, label_key)
        if row is None:
            raise exception.LabelNotFound(host_uuid=host_uuid, label_key=label_key)
        return LabelRecord.of(row)


def label_get_all(engine: Engine) -> list[LabelRecord]:
    """Every recorded label, ordered by host then key."""
    with _session(engine, "label_get_all") as session:
        rows = session.scalars(select(Label).order_by(Label.host_uuid, Label.label_key))
        return [LabelRecord.of(row) for row in rows]


def label_get_by_host(engine: Engine, host_uuid: str) -> list[LabelRecord]:
    """The labels recorded for one host, ordered by key."""
    with _session(engine, "label_get_by_host") as session:
        rows = session.scalars(select(Label).where(Label.host_uuid == host_uuid)
                               .order_by(Label.label_key))
        return [LabelRecord.of(row) for row in rows]


def label_delete(engine: Engine, host_uuid: str, label_key: str) -> bool:
    """Forget a label; True when a row was deleted."""
    with _session(engine, "label_delete") as session:
        result = session.execute(delete(Label).where(Label.host_uuid == host_uuid,
                                                     Label.label_key == label_key))
        return bool(getattr(result, "rowcount", 0))
