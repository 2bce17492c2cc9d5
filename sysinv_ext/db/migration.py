"""Schema migrations, driven programmatically (no alembic.ini): upgrade to head at start.

``upgrade(engine)`` runs every pending revision in ``migrations/versions`` on one connection;
``current_revision(engine)`` and ``head_revision()`` let callers and tests check the state.
``set_aside_corrupt_sqlite(url)``: a SQLite file that is not a database (random bytes, a
truncated copy, a directory in its place) is renamed aside, so the conductor starts on a fresh
one instead of failing every upgrade and staying up without serving.
"""
from __future__ import annotations

import os
import sqlite3
import time

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine, make_url

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")


def alembic_config(engine: Engine | None = None) -> Config:
    """An alembic Config for our migrations; with ``engine``, env.py uses it."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS_DIR)
    if engine is not None:
        config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False)
                               .replace("%", "%%"))
        config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema behind ``engine`` to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(engine), revision)


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
