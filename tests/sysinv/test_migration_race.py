"""Issue 21 item 18: two conductors starting at once on a fresh database; one exited 1 with
"table alembic_version already exists". Migrations now run under a lock (a PostgreSQL advisory
lock; on SQLite a lock file beside the database, and a retry). Each round starts several
processes that upgrade the same fresh database at the same instant (a barrier)."""
from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from sysinv_ext.db import api, migration

PROCESSES = 4
ROUNDS = 3


def _upgrade(url: str, barrier: object, errors: object) -> None:
    engine = api.get_engine(url)
    try:
        barrier.wait(30)  # type: ignore[attr-defined]
        migration.upgrade(engine)
    except BaseException:
        errors.put(traceback.format_exc().strip().splitlines()[-1])  # type: ignore[attr-defined]
        raise
    finally:
        engine.dispose()


def _race(url: str) -> list[str]:
    # forkserver, not fork: a fork of this test worker (grpc loaded by other tests in it) can be
    # aborted by grpc's fork handlers; the fork server is a fresh interpreter without grpc
    ctx = multiprocessing.get_context("forkserver")
    barrier, errors = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=_upgrade, args=(url, barrier, errors)) for _ in range(PROCESSES)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    found += [f"exit code {p.exitcode}" for p in procs if p.exitcode != 0]
    return found


def _check_at_head(url: str) -> None:
    engine = api.get_engine(url)
    try:
        assert migration.current_revision(engine) == migration.head_revision()
        api.host_record(engine, "h-1", {"intelgpu": "enabled"}, seen=True)  # the schema works
    finally:
        engine.dispose()


def test_conductors_starting_at_once_on_a_fresh_sqlite_database_all_migrate(tmp_path: Path) -> None:
    for i in range(ROUNDS):
        url = f"sqlite:///{tmp_path}/race-{i}.sqlite"
        assert _race(url) == []
        _check_at_head(url)


def test_conductors_starting_at_once_on_a_fresh_postgresql_database_all_migrate(
        postgres_database: Callable[[], str]) -> None:
    for _ in range(ROUNDS):
        url = postgres_database()
        assert _race(url) == []
        _check_at_head(url)


@pytest.fixture
def postgres_database(postgres_server_url: str) -> object:
    """A factory of fresh throwaway databases, all dropped at the end."""
    from contextlib import ExitStack

    from tests.fakes.postgres import throwaway_database

    with ExitStack() as stack:
        yield lambda: stack.enter_context(throwaway_database("sysinv_ext_race"))


def test_migration_lock_held_elsewhere_is_waited_for_a_bounded_time(postgres_url: str) -> None:
    """A peer stuck while holding the lock makes the upgrade fail (the service retries with
    back-off) instead of waiting for ever."""
    from sqlalchemy import text

    holder, engine = api.get_engine(postgres_url), api.get_engine(postgres_url)
    try:
        with holder.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": migration.ADVISORY_LOCK_KEY})
            conn.commit()
            with pytest.raises(TimeoutError, match="migration lock"):
                migration.upgrade(engine, lock_timeout=0.5)
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": migration.ADVISORY_LOCK_KEY})
            conn.commit()
        migration.upgrade(engine, lock_timeout=5)
        assert migration.current_revision(engine) == migration.head_revision()
    finally:
        holder.dispose()
        engine.dispose()
