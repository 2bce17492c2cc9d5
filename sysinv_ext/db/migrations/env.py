"""Alembic environment for the conductor's label database (online mode only).

Uses the Connection (config.attributes["connection"], which holds the migration lock) or the
Engine handed over by ``sysinv_ext.db.migration`` (config.attributes["engine"]), or
builds one from ``sqlalchemy.url`` when alembic's CLI is pointed at this directory.
"""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from sysinv_ext.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    given = config.attributes.get("connection")  # migration.upgrade's, holding the lock
    if given is not None:
        context.configure(connection=given, target_metadata=target_metadata,
                          render_as_batch=given.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        given.commit()
        return
    engine = config.attributes.get("engine")
    if engine is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a database")
run_migrations_online()
