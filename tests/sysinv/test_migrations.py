"""Alembic migrations: walk every revision up, down and up again on SQLite and PostgreSQL
(a throwaway database per test, skipped with a reason when the server is unreachable), upgrade
twice, and check that the models and the migrated schema agree (no autogenerate diff).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from sysinv_ext.db import api, migration
from sysinv_ext.db.models import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[api.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/walk.sqlite"
    else:
        url = request.getfixturevalue("postgres_url")
    eng = api.get_engine(url)
    yield eng
    eng.dispose()


def _check_0001(engine: api.Engine) -> None:
    insp = inspect(engine)
    columns = {c["name"]: c for c in insp.get_columns("label")}
    assert set(columns) == {"id", "host_uuid", "label_key", "label_value", "created_at", "updated_at"}
    assert not columns["label_key"]["nullable"] and columns["updated_at"]["nullable"]
    uniques = [sorted(u["column_names"]) for u in insp.get_unique_constraints("label")]
    assert ["host_uuid", "label_key"] in uniques


def _check_0002(engine: api.Engine) -> None:
    insp = inspect(engine)
    assert {c["name"]: c for c in insp.get_columns("label")}["label_value"]["nullable"]
    columns = {c["name"]: c for c in insp.get_columns("host")}
    assert set(columns) == {"host_uuid", "reported_at", "seen_at"}
    assert insp.get_pk_constraint("host")["constrained_columns"] == ["host_uuid"]


def test_upgrade_from_0001_keeps_labels_as_seen_hosts(engine: api.Engine) -> None:
    """Rows written by the previous head become hosts that were seen (never expire)."""
    migration.upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO label (host_uuid, label_key, label_value, created_at) "
                             "VALUES ('host-a', 'intelgpu', 'enabled', CURRENT_TIMESTAMP)")
    migration.upgrade(engine)
    states = api.host_state_get_all(engine)
    assert list(states) == ["host-a"]
    assert states["host-a"].seen and dict(states["host-a"].labels) == {"intelgpu": "enabled"}
    api.host_record(engine, "host-a", {"intelgpu": None}, seen=True)  # a removal is recorded
    assert api.label_get_all(engine) == []
    assert [r.label_value for r in api.label_get_all(engine, include_absent=True)] == [None]
    migration.downgrade(engine, "0001")  # recorded removals cannot be kept in 0001: dropped
    migration.upgrade(engine)
    assert api.label_get_all(engine, include_absent=True) == []


def test_walk_revisions(engine: api.Engine) -> None:
    revisions = migration.revisions()
    assert revisions[0] == "0001" and revisions[-1] == migration.head_revision()
    assert migration.current_revision(engine) is None
    for rev in revisions:
        migration.upgrade(engine, rev)
        assert migration.current_revision(engine) == rev
        globals()[f"_check_{rev}"](engine)
    migration.upgrade(engine)  # already at head: a no-op
    assert migration.current_revision(engine) == migration.head_revision()
    migration.downgrade(engine, "base")
    assert "label" not in inspect(engine).get_table_names()
    migration.upgrade(engine)
    _check_0001(engine)


def test_models_match_migrations(engine: api.Engine) -> None:
    migration.upgrade(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_every_revision_has_a_check() -> None:
    assert all(f"_check_{rev}" in globals() for rev in migration.revisions())
