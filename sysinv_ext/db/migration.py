"""Schema migrations, driven programmatically (no alembic.ini): upgrade to head at start.

``upgrade(engine)`` runs every pending revision in ``migrations/versions`` on one connection,
under a lock so that conductors starting at once do not migrate at once (see ``upgrade``);
``current_revision(engine)`` and ``head_revision()`` let callers and tests check the state.
``set_aside_corrupt_sqlite(url)``: a SQLite file that is not a database (random bytes, a
truncated copy, a directory in its place) is renamed aside, so the conductor starts on a fresh
one instead of failing every upgrade and staying up without serving.
"""
from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
# pg_advisory_lock key of the schema migration: a fixed bigint, used for nothing else
ADVISORY_LOCK_KEY = 0x5E1B_0DB0
LOCK_TIMEOUT = 120.0  # s: at most this long waiting for another process's migration


def alembic_config(engine: Engine | None = None, connection: Connection | None = None) -> Config:
    """An alembic Config for our migrations; with ``engine`` (and ``connection``), env.py uses
    it (that connection)."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS_DIR)
    if engine is not None:
        config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False)
                               .replace("%", "%%"))
        config.attributes["engine"] = engine
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head", *, lock_timeout: float = LOCK_TIMEOUT) -> None:
    """Upgrade the schema behind ``engine`` to ``revision`` (idempotent), under the migration
    lock: of two conductors starting at once on a fresh database, one migrates and the other
    then finds the schema at head (without the lock one of them failed with "table
    alembic_version already exists" and exited 1: issue 21 item 18).

    PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``, tried for at most
    ``lock_timeout`` seconds, then TimeoutError: the service retries with back-off) held on the
    connection the migrations run on; the server drops it if the process dies. SQLite: an exclusive ``flock``
    on ``<database>.migrate-lock`` beside the file (the kernel drops it with the process); when
    that file cannot be created (a read-only directory), or on another backend, the upgrade is
    retried instead while a concurrent migration makes it fail, for at most ``lock_timeout``
    seconds."""
    path = sqlite_file(engine.url.render_as_string(hide_password=False))
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            deadline = time.monotonic() + lock_timeout
            while not connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                         {"key": ADVISORY_LOCK_KEY}).scalar():
                connection.rollback()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"migration lock held by another process for "
                                       f"{lock_timeout:.0f} s")
                time.sleep(0.1)
            connection.commit()  # the session-level lock outlives this transaction
            try:
                command.upgrade(alembic_config(engine, connection), revision)
            finally:
                connection.rollback()  # an aborted transaction would refuse the unlock
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
                connection.commit()
        return
    with _file_lock(path + ".migrate-lock" if path else None, lock_timeout):
        _upgrade_retrying(engine, revision, lock_timeout)


def _upgrade_retrying(engine: Engine, revision: str, timeout: float) -> None:
    """``command.upgrade``, retried with back-off while it fails with a database error (a
    concurrent migration without the file lock: "already exists", "database is locked")."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            command.upgrade(alembic_config(engine), revision)
            return
        except DBAPIError:
            if time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


@contextmanager
def _file_lock(path: str | None, timeout: float) -> Iterator[None]:
    """An exclusive flock on ``path`` (created 0600 if absent), waited for at most ``timeout``
    seconds (TimeoutError); no lock at all when ``path`` is None or cannot be opened."""
    fd = -1
    if path is not None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            fd = -1
    try:
        if fd >= 0:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"migration lock {path} held for {timeout:.0f} s") from None
                    time.sleep(0.05)
        yield
    finally:
        if fd >= 0:
            os.close(fd)  # releases the flock


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade the schema behind ``engine`` to ``revision`` (tests and manual repair)."""
    command.downgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def revisions() -> list[str]:
    """All revision ids, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


_CORRUPT_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB


def sqlite_file(url: str) -> str | None:
    """The file behind a SQLite URL, or None (another backend, in-memory, a file: URI)."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") \
            or database.startswith("file:"):
        return None
    return os.path.abspath(database)


def sqlite_unusable_reason(path: str) -> str | None:
    """Why the SQLite file at ``path`` is not a database, or None (fine, or absent: created).

    Only corruption counts: a locked or unreadable file is an error of its own, not a reason
    to move the file aside.
    """
    if not os.path.lexists(path):
        return None
    if not os.path.isfile(path):
        return "not a regular file"
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None  # cannot even open it (permissions...): let the upgrade say why
    try:
        rows = connection.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as err:
        if getattr(err, "sqlite_errorcode", None) in _CORRUPT_CODES:
            return str(err)
        return None
    finally:
        connection.close()
    if rows != [("ok",)]:
        first = str(rows[0][0]) if rows and rows[0] else "no result"
        return f"integrity check failed ({len(rows)} problems, first: {first[:120]})"
    return None


def set_aside_corrupt_sqlite(url: str) -> tuple[str, str] | None:
    """Rename a corrupt SQLite database file (and its -wal/-shm/-journal) to
    ``<file>.corrupt-<UTC time>``; returns (new path, reason), or None when nothing was wrong."""
    path = sqlite_file(url)
    reason = sqlite_unusable_reason(path) if path else None
    if path is None or reason is None:
        return None
    aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    os.rename(path, aside)
    for suffix in ("-wal", "-shm", "-journal"):
        if os.path.lexists(path + suffix):
            os.rename(path + suffix, aside + suffix)
    return aside, reason
