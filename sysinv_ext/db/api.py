"""Plain functions over the label and host tables (noun_verb names, as sysinv/cyborg) and
engine creation.

Each function runs in its own short transaction and returns frozen ``LabelRecord`` /
``HostState`` values, never ORM objects. A label value of None records "must be absent".
SQLAlchemy errors become our exceptions (``LabelAlreadyExists``, ``LabelNotFound``,
``DatabaseError``) with the original chained.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from sqlalchemy import bindparam, create_engine, delete, event, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from sysinv_ext.common import exception
from sysinv_ext.db.models import Host, Label

__all__ = ["Engine", "HostState", "HostWrite", "LabelRecord", "describe_url", "get_engine",
           "host_expire", "host_mark_seen", "host_record", "host_record_many", "host_state_get_all",
           "label_create", "label_delete", "label_get", "label_get_all", "label_get_by_host",
           "label_set", "label_sync", "label_update"]


@dataclass(frozen=True)
class LabelRecord:
    host_uuid: str
    label_key: str
    label_value: str | None  # None: recorded as removed (the key must be absent on the node)
    created_at: datetime
    updated_at: datetime | None

    @classmethod
    def of(cls, row: Label) -> LabelRecord:
        return cls(row.host_uuid, row.label_key, row.label_value, row.created_at, row.updated_at)


def describe_url(url: str) -> str:
    """``url`` with any password masked, for log lines."""
    return make_url(url).render_as_string(hide_password=True)


def get_engine(url: str, *, create_dir: bool = True,
               connect_args: Mapping[str, Any] | None = None) -> Engine:
    """An Engine for ``url``. For a SQLite file, its directory is created (0750) when missing
    and the database runs in WAL mode so the audit can read while an RPC writes.
    ``connect_args`` go to the driver's connect (over the defaults)."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            directory = os.path.dirname(os.path.abspath(database))
            if create_dir:
                os.makedirs(directory, mode=0o750, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:  # no pool_pre_ping: host_record retries on a dead connection instead (_write_retrying)
        kwargs.update(pool_size=POOL_SIZE, max_overflow=POOL_SIZE, pool_recycle=3600)
    if connect_args:
        kwargs["connect_args"] = {**kwargs.get("connect_args", {}), **connect_args}
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

#: connections kept open (client-server databases): reports of different hosts write at once
POOL_SIZE = 16
#: dialect name -> its INSERT with ON CONFLICT (host_record's fast path)
_UPSERTS: dict[str, Any] = {"postgresql": pg_insert, "sqlite": sqlite_insert}


@contextmanager
def _session(engine: Engine, action: str) -> Iterator[Session]:
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
    except exception.SysinvExtException:
        raise
    except SQLAlchemyError as err:
        raise _database_error(action, err) from err


def _database_error(action: str, err: SQLAlchemyError) -> exception.DatabaseError:
    """Our error for a SQLAlchemy one: the action and the first line of the reason."""
    return exception.DatabaseError(action=action, reason=str(err).splitlines()[0])


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


def label_get_all(engine: Engine, *, include_absent: bool = False) -> list[LabelRecord]:
    """Every recorded label (with ``include_absent``, recorded removals too), by host and key."""
    query = select(Label).order_by(Label.host_uuid, Label.label_key)
    if not include_absent:
        query = query.where(Label.label_value.is_not(None))
    with _session(engine, "label_get_all") as session:
        return [LabelRecord.of(row) for row in session.scalars(query)]


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


@dataclass(frozen=True)
class HostState:
    """What is recorded for one host: desired labels (None = absent) and whether its node
    was ever seen (hosts never seen are pending and expire)."""

    host_uuid: str
    labels: Mapping[str, str | None]
    seen: bool
    reported_at: datetime


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)  # SQLite


def host_state_get_all(engine: Engine) -> dict[str, HostState]:
    """Every host's recorded state (two queries); label rows without a host row count as
    seen hosts (written by code older than revision 0002)."""
    with _session(engine, "host_state_get_all") as session:  # plain rows: no ORM objects
        hosts = {uuid: (reported, seen) for uuid, reported, seen in session.execute(
            select(Host.host_uuid, Host.reported_at, Host.seen_at))}
        labels: dict[str, dict[str, str | None]] = {}
        for uuid, key, value in session.execute(
                select(Label.host_uuid, Label.label_key, Label.label_value)):
            labels.setdefault(uuid, {})[key] = value
    now = datetime.now(timezone.utc)
    result = {}
    for uuid in hosts.keys() | labels.keys():
        host = hosts.get(uuid)
        result[uuid] = HostState(uuid, MappingProxyType(labels.get(uuid, {})),
                                 seen=host is None or host[1] is not None,
                                 reported_at=_utc(host[0]) if host else now)
    return result


@dataclass(frozen=True)
class HostWrite:
    """One report's change: the host row and the labels to record (None = absent)."""

    host_uuid: str
    labels: Mapping[str, str | None]
    seen: bool
    reported_at: datetime | None = None  # None: keep the recorded time (a new host gets now)


def host_record(engine: Engine, host_uuid: str, labels: Mapping[str, str | None], *,
                seen: bool, reported_at: datetime | None = None) -> None:
    """In one transaction: the host row (created if new; ``reported_at`` when given; seen
    from now on when ``seen``) and each of ``labels`` (None recorded as absent)."""
    host_record_many(engine, [HostWrite(host_uuid, labels, seen, reported_at)])


def host_record_many(engine: Engine, writes: Sequence[HostWrite]) -> None:
    """``host_record`` for several hosts (at most one write per host) in ONE transaction:
    all are recorded or none (DatabaseError).

    On PostgreSQL and SQLite these are Core upserts (``INSERT .. ON CONFLICT DO UPDATE``), one
    executemany per statement shape: no SELECT, no ORM unit of work, statements built once per
    shape (their compiled form is cached by SQLAlchemy, so a write only binds values). A
    multi-row INSERT (SQLAlchemy's insertmanyvalues) would need a RETURNING clause on these
    upserts and measured slower in the 5,000-host burst (36 s against 24-30 s). Other dialects
    take the ORM path with the same effect. A connection found dead (database
    restarted) is retried once on a new one. ``GroupCommit`` (db/group.py) batches concurrent
    reports into one call of this."""
    if not writes:
        return
    now = datetime.now(timezone.utc)
    if engine.dialect.name not in _UPSERTS:
        _write_retrying("host_record", lambda: _host_record_orm(engine, writes, now=now))
        return
    host_rows: dict[tuple[bool, bool], list[dict[str, Any]]] = {}
    label_rows: list[dict[str, Any]] = []
    for w in writes:
        host_rows.setdefault((w.reported_at is not None, w.seen), []).append(
            {"host_uuid": w.host_uuid, "reported_at": w.reported_at or now,
             "seen_at": now if w.seen else None})
        label_rows += [{"host_uuid": w.host_uuid, "label_key": key, "label_value": value,
                        "created_at": now} for key, value in w.labels.items()]

    def write() -> None:
        with engine.begin() as conn:
            for (set_reported, set_seen), rows in host_rows.items():
                conn.execute(_host_upsert(engine.dialect.name, set_reported, set_seen), rows)
            if label_rows:
                conn.execute(_label_upsert(engine.dialect.name), label_rows)
    _write_retrying("host_record", write)


def _write_retrying(action: str, write: Callable[[], None]) -> None:
    """``write()`` (one transaction); once more if its connection turned out to be dead.

    The engine does not ping before each checkout (that is one more round trip per report):
    a dead connection shows as ``connection_invalidated``, SQLAlchemy then discards the
    pool's older connections, and the retry runs on a fresh one. Any other error, or a
    second failure, is a DatabaseError; so is a value the driver refuses to send (psycopg2
    raises a bare ValueError for a NUL in a string, not a DBAPI error)."""
    for attempt in (1, 2):
        try:
            write()
            return
        except DBAPIError as err:
            if attempt == 1 and err.connection_invalidated:
                continue
            raise _database_error(action, err) from err
        except SQLAlchemyError as err:
            raise _database_error(action, err) from err
        except ValueError as err:  # the driver refused a value (psycopg2: a NUL in a string)
            raise exception.DatabaseError(action=action,
                                          reason=str(err).splitlines()[0][:200]) from err


@functools.cache
def _host_upsert(dialect: str, set_reported: bool, set_seen: bool) -> Any:
    """INSERT host .. ON CONFLICT for one combination of what a report updates."""
    stmt = _UPSERTS[dialect](Host).values(host_uuid=bindparam("host_uuid"),
                                          reported_at=bindparam("reported_at"),
                                          seen_at=bindparam("seen_at"))
    changes: dict[str, Any] = {}
    if set_reported:
        changes["reported_at"] = stmt.excluded.reported_at
    if set_seen:
        changes["seen_at"] = func.coalesce(Host.seen_at, stmt.excluded.seen_at)
    if not changes:
        return stmt.on_conflict_do_nothing(index_elements=[Host.host_uuid])
    return stmt.on_conflict_do_update(index_elements=[Host.host_uuid], set_=changes)


@functools.cache
def _label_upsert(dialect: str) -> Any:
    """INSERT label .. ON CONFLICT: the value (and updated_at) only where it differs."""
    stmt = _UPSERTS[dialect](Label).values(host_uuid=bindparam("host_uuid"),
                                           label_key=bindparam("label_key"),
                                           label_value=bindparam("label_value"),
                                           created_at=bindparam("created_at"))
    return stmt.on_conflict_do_update(
        index_elements=[Label.host_uuid, Label.label_key],
        # updated_at from the row's own VALUES (created_at is "now"): one parameter set per row
        set_={"label_value": stmt.excluded.label_value, "updated_at": stmt.excluded.created_at},
        where=Label.label_value.is_distinct_from(stmt.excluded.label_value))


def _host_record_orm(engine: Engine, writes: Sequence[HostWrite], *, now: datetime) -> None:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        for w in writes:
            host = session.get(Host, w.host_uuid)
            if host is None:
                session.add(Host(host_uuid=w.host_uuid, reported_at=w.reported_at or now,
                                 seen_at=now if w.seen else None))
            else:
                if w.reported_at is not None:
                    host.reported_at = w.reported_at
                if w.seen and host.seen_at is None:
                    host.seen_at = now
            if not w.labels:
                continue
            rows = {row.label_key: row for row in session.scalars(
                select(Label).where(Label.host_uuid == w.host_uuid,
                                    Label.label_key.in_(list(w.labels))))}
            for key, value in w.labels.items():
                row = rows.get(key)
                if row is None:
                    session.add(Label(host_uuid=w.host_uuid, label_key=key, label_value=value))
                elif row.label_value != value:
                    row.label_value = value


def host_mark_seen(engine: Engine, host_uuid: str) -> None:
    """The host's node was seen: it is no longer pending (never expires)."""
    with _session(engine, "host_mark_seen") as session:
        session.execute(update(Host).where(Host.host_uuid == host_uuid, Host.seen_at.is_(None))
                        .values(seen_at=datetime.now(timezone.utc)))


def host_expire(engine: Engine, reported_before: datetime) -> list[str]:
    """Forget hosts never seen whose last report is older than ``reported_before``, with
    their labels; returns their uuids."""
    with _session(engine, "host_expire") as session:
        uuids = list(session.scalars(select(Host.host_uuid).where(
            Host.seen_at.is_(None), Host.reported_at < reported_before)))
        if uuids:
            session.execute(delete(Label).where(Label.host_uuid.in_(uuids)))
            session.execute(delete(Host).where(Host.host_uuid.in_(uuids)))
        return uuids
