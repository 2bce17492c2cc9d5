"""db/api.py: the label functions on a real database (SQLite file, and PostgreSQL when
reachable), domain errors instead of SQLAlchemy ones, and engine creation for SQLite files.
"""
from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from sysinv_ext.common import exception
from sysinv_ext.db import api, migration


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[api.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/labels.sqlite"
    else:
        url = request.getfixturevalue("postgres_url")
    eng = api.get_engine(url)
    migration.upgrade(eng)
    yield eng
    eng.dispose()


def test_create_get_update_delete(engine: api.Engine) -> None:
    created = api.label_create(engine, "host-a", "intelgpu", "enabled")
    assert (created.host_uuid, created.label_key, created.label_value) == ("host-a", "intelgpu", "enabled")
    assert created.created_at is not None and created.updated_at is None
    api.label_create(engine, "host-b", "intelgpu", "enabled")
    api.label_create(engine, "host-a", "example.com/qat", "yes")
    assert [(r.host_uuid, r.label_key) for r in api.label_get_all(engine)] == [
        ("host-a", "example.com/qat"), ("host-a", "intelgpu"), ("host-b", "intelgpu")]
    assert [r.label_key for r in api.label_get_by_host(engine, "host-b")] == ["intelgpu"]
    updated = api.label_update(engine, "host-a", "intelgpu", "true")
    assert updated.label_value == "true" and updated.updated_at is not None
    assert api.label_get(engine, "host-a", "intelgpu").label_value == "true"
    assert api.label_delete(engine, "host-a", "intelgpu") is True
    assert api.label_delete(engine, "host-a", "intelgpu") is False
    assert api.label_get_by_host(engine, "host-a")[0].label_key == "example.com/qat"


def test_domain_errors(engine: api.Engine) -> None:
    api.label_create(engine, "host-a", "intelgpu", "enabled")
    with pytest.raises(exception.LabelAlreadyExists, match="intelgpu.*host-a"):
        api.label_create(engine, "host-a", "intelgpu", "enabled")
    with pytest.raises(exception.LabelNotFound):
        api.label_update(engine, "host-z", "intelgpu", "enabled")
    with pytest.raises(exception.LabelNotFound):
        api.label_get(engine, "host-z", "intelgpu")
    assert len(api.label_get_all(engine)) == 1, "the failed insert left nothing behind"


def test_label_set_is_an_upsert(engine: api.Engine) -> None:
    assert api.label_set(engine, "host-a", "intelgpu", "enabled") is True
    assert api.label_set(engine, "host-a", "intelgpu", "enabled") is False
    assert api.label_set(engine, "host-a", "intelgpu", "true") is True
    assert [(r.label_key, r.label_value) for r in api.label_get_all(engine)] == [("intelgpu", "true")]


def test_concurrent_label_set_keeps_one_row(engine: api.Engine) -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            api.label_set(engine, "host-a", "intelgpu", "enabled")
        except BaseException as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(api.label_get_all(engine)) == 1


def test_unreachable_database_is_database_error(tmp_path: Path) -> None:
    eng = api.get_engine("postgresql+psycopg2://nobody@127.0.0.1:1/none?connect_timeout=1")
    with pytest.raises(exception.DatabaseError, match="label_get_all"):
        api.label_get_all(eng)


def test_sqlite_directory_created_private(tmp_path: Path) -> None:
    db_file = tmp_path / "var" / "lib" / "sysinv-gpu" / "conductor.sqlite"
    eng = api.get_engine(f"sqlite:///{db_file}")
    migration.upgrade(eng)
    eng.dispose()
    assert db_file.exists()
    mode = stat.S_IMODE(os.stat(db_file.parent).st_mode)
    assert mode & 0o007 == 0, oct(mode)


def test_describe_url_masks_password() -> None:
    assert api.describe_url("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"


def test_label_sync_sets_and_deletes_only_given_keys(engine: api.Engine) -> None:
    api.label_create(engine, "host-a", "foreign", "kept")
    api.label_create(engine, "host-a", "gone", "x")
    api.label_create(engine, "host-b", "intelgpu", "enabled")
    assert api.label_sync(engine, "host-a", {"intelgpu": "enabled", "gone": None}) is True
    assert api.label_sync(engine, "host-a", {"intelgpu": "enabled", "gone": None}) is False
    assert api.label_sync(engine, "host-a", {"intelgpu": "true"}) is True
    assert api.label_sync(engine, "host-a", {}) is False
    assert [(r.host_uuid, r.label_key, r.label_value) for r in api.label_get_all(engine)] == [
        ("host-a", "foreign", "kept"), ("host-a", "intelgpu", "true"), ("host-b", "intelgpu", "enabled")]


def test_host_record_upsert_keeps_first_seen_and_touches_changed_labels_only(engine: api.Engine) -> None:
    """host_record's ON CONFLICT path: seen stays set, reported_at only moves when given, a label
    is updated (updated_at set) only when its value changes, None records a removal."""
    first = datetime(2026, 1, 1, tzinfo=timezone.utc)
    api.host_record(engine, "host-u", {"intelgpu": "enabled", "example.com/x": "1"}, seen=False,
                    reported_at=first)
    state = api.host_state_get_all(engine)["host-u"]
    assert (state.seen, state.reported_at, dict(state.labels)) == (
        False, first, {"intelgpu": "enabled", "example.com/x": "1"})
    api.host_record(engine, "host-u", {"intelgpu": "enabled"}, seen=True)  # unchanged value
    assert api.label_get(engine, "host-u", "intelgpu").updated_at is None
    api.host_record(engine, "host-u", {"intelgpu": None}, seen=False)
    state = api.host_state_get_all(engine)["host-u"]
    assert (state.seen, state.reported_at) == (True, first)  # seen is never undone
    assert dict(state.labels) == {"intelgpu": None, "example.com/x": "1"}
    assert api.label_get(engine, "host-u", "intelgpu").updated_at is not None
    assert api.label_get(engine, "host-u", "example.com/x").updated_at is None


def test_host_record_survives_connections_dropped_by_the_server(postgres_url: str) -> None:
    """The engine does not ping before each checkout (one round trip less per report): a write
    on a connection the server closed (a PostgreSQL restart, here pg_terminate_backend of every
    session) is retried once on a fresh connection instead of failing the report."""
    import psycopg2

    eng = api.get_engine(postgres_url)
    migration.upgrade(eng)
    try:
        api.host_record(eng, "host-r", {"intelgpu": "enabled"}, seen=True)  # pool now holds one
        database = postgres_url.rsplit("/", 1)[1]
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()", (database,))
            killed = cur.fetchone()
        admin.close()
        assert killed is not None and killed[0] >= 1, "the pooled connection was not there to kill"
        api.host_record(eng, "host-r", {"intelgpu": None}, seen=True)
        assert api.host_state_get_all(eng)["host-r"].labels == {"intelgpu": None}
    finally:
        eng.dispose()


def test_host_record_other_database_errors_are_not_retried(tmp_path: Path) -> None:
    eng = api.get_engine(f"sqlite:///{tmp_path}/empty.sqlite")  # no tables: every write fails
    try:
        with pytest.raises(exception.DatabaseError, match="host_record.*no such table"):
            api.host_record(eng, "host-r", {"intelgpu": "enabled"}, seen=True)
    finally:
        eng.dispose()

