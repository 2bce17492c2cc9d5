"""Opening the conductor's database for reading only (``sysinv-gpu-status``).

Unlike ``api.get_engine`` it never creates anything: a SQLite file that does not exist is an
error instead of a new empty database next to the real one.
"""
from __future__ import annotations

import os

from sqlalchemy.engine import make_url

from sysinv_ext.common import exception
from sysinv_ext.db.api import Engine, get_engine


def open_existing(url: str) -> Engine:
    """An Engine for an existing database; raises DatabaseError for a missing SQLite file."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:") \
            and not database.startswith("file:") and not os.path.isfile(database):
        raise exception.DatabaseError(action="open", reason=f"no database file {database} (has the "
                                      "conductor run with this configuration?)")
    return get_engine(url, create_dir=False)
