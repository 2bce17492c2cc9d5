"""A throwaway PostgreSQL database on the local server (127.0.0.1:5432, user postgres), for the
tests that run on PostgreSQL and for the scale benchmark: created with a unique name, dropped
(``WITH (FORCE)``: connections still open are cut) when the block ends. REAL: the server is
the machine's PostgreSQL; nothing here is emulated."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

HOST, PORT, USER = "127.0.0.1", 5432, "postgres"


@contextmanager
def throwaway_database(prefix: str, *, connect_timeout: int = 2) -> Iterator[str]:
    """The SQLAlchemy URL of a new empty database named ``<prefix>_<random>``; raises the
    driver's error at once when the server cannot be reached."""
    import psycopg2  # only PostgreSQL runs need the driver

    admin = psycopg2.connect(host=HOST, port=PORT, user=USER, dbname="postgres",
                             connect_timeout=connect_timeout)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+psycopg2://{USER}@{HOST}:{PORT}/{name}"
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()
