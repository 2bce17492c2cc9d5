"""Opening the conductor's database for reading only (``sysinv-gpu-status``).

Unlike ``api.get_engine`` it never creates anything: a SQLite file that does not exist is an
error instead of a new empty database next to the real one.
"""
from __future__ import annotations

import os

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sysinv_ext.common import exception
from sysinv_ext.db.api import Engine, get_engine

SUPPORTED = ("postgresql", "sqlite")


def open_existing(url: str, *, timeout: float = 5.0) -> Engine:
    """An Engine for an existing database; raises DatabaseError (one line, no password) for a
    URL that does not parse, a backend other than PostgreSQL or SQLite, or a missing SQLite
    file. On PostgreSQL, connecting (libpq's ``connect_timeout``, which covers the whole
    start-up exchange: a server that accepts TCP and never answers) and each statement
    (``statement_timeout``) take at most ``timeout`` seconds; SQLite waits at most that long
    for a lock."""
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise exception.DatabaseError(action="open", reason="[database]connection is not a "
                                      "database URL (e.g. postgresql+psycopg2://user@host/db)") from err
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED:
        raise exception.DatabaseError(action="open", reason=f"unsupported database backend "
                                      f"{backend[:40]!r} (the conductor uses postgresql or sqlite)")
    database = parsed.database or ""
    if backend == "sqlite" and database not in ("", ":memory:") \
            and not database.startswith("file:") and not os.path.isfile(database):
        raise exception.DatabaseError(action="open", reason=f"no database file {database} (has the "
                                      "conductor run with this configuration?)")
    seconds = max(1, int(round(timeout)))
    connect_args: dict[str, object] = {"timeout": timeout} if backend == "sqlite" else {
        "connect_timeout": seconds, "options": f"-c statement_timeout={seconds * 1000}"}
    try:
        return get_engine(url, create_dir=False, connect_args=connect_args)
    except (ArgumentError, ImportError) as err:  # no driver for the dialect
        raise exception.DatabaseError(action="open", reason=f"cannot use {backend}: "
                                      f"{str(err).splitlines()[0][:200]}") from err
