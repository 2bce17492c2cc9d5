"""db/group.py: concurrent reports share one transaction (group commit) on a real database
(SQLite file, and PostgreSQL when reachable), each call returns only once its own rows are
committed, and a bad write fails only its own caller."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, select

from sysinv_ext.common import exception
from sysinv_ext.db import api, migration
from sysinv_ext.db.group import GroupCommit
from sysinv_ext.db.models import Label

WRITERS = 24


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[api.Engine]:
    url = f"sqlite:///{tmp_path}/labels.sqlite" if request.param == "sqlite" \
        else request.getfixturevalue("postgres_url")
    eng = api.get_engine(url)
    migration.upgrade(eng)
    yield eng
    eng.dispose()


def _hold_commits_until_queued(engine: api.Engine, writer: GroupCommit, queued: int) -> None:
    """Every commit waits until ``queued`` writes wait behind the writers in flight (then none
    waits any more), so the grouping below is certain, not a matter of timing."""
    released = threading.Event()

    def on_commit(_conn: object) -> None:
        deadline = time.monotonic() + 20
        while not released.is_set() and time.monotonic() < deadline:
            if len(writer._queue) >= queued:
                released.set()
            time.sleep(0.005)

    event.listen(engine, "commit", on_commit)


def _run(writer: GroupCommit, writes: list[api.HostWrite], engine: api.Engine
         ) -> dict[str, BaseException | bool]:
    """Each write from its own thread; per host: the error, or whether its label row was
    visible to a fresh connection the moment record() returned."""
    outcome: dict[str, BaseException | bool] = {}

    def one(write: api.HostWrite) -> None:
        try:
            writer.record(write)
        except Exception as err:  # asserted by the tests
            outcome[str(write.host_uuid)] = err
            return
        with engine.connect() as conn:
            outcome[write.host_uuid] = conn.execute(select(Label.label_value).where(
                Label.host_uuid == write.host_uuid)).scalar() == "enabled"

    threads = [threading.Thread(target=one, args=(w,)) for w in writes]
    threads[0].start()  # the first one leads; the rest queue behind its held commit
    time.sleep(0.05)
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(60)
    return outcome


def _write(i: int | None) -> api.HostWrite:
    return api.HostWrite(f"host-{i}" if i is not None else None,  # type: ignore[arg-type]
                         {"intelgpu": "enabled"}, seen=True)


def test_concurrent_reports_share_a_transaction_and_return_after_their_commit(
        engine: api.Engine) -> None:
    writer = GroupCommit(engine, max_writers=1)
    _hold_commits_until_queued(engine, writer, WRITERS - 1)
    outcome = _run(writer, [_write(i) for i in range(WRITERS)], engine)
    assert outcome == {f"host-{i}": True for i in range(WRITERS)}
    assert (writer.transactions, writer.writes) == (2, WRITERS)  # the first alone, then the rest
    states = api.host_state_get_all(engine)
    assert sorted(states) == sorted(f"host-{i}" for i in range(WRITERS))
    assert all(s.seen and s.labels == {"intelgpu": "enabled"} for s in states.values())


def test_a_bad_write_fails_only_its_own_caller(engine: api.Engine) -> None:
    writer = GroupCommit(engine, max_writers=1)
    _hold_commits_until_queued(engine, writer, 5)
    writes = [_write(0), _write(1), _write(2), _write(None), _write(3), _write(4)]  # None: NOT NULL
    outcome = _run(writer, writes, engine)
    assert isinstance(outcome.pop("None"), exception.DatabaseError)
    assert outcome == {f"host-{i}": True for i in range(5)}
    # 1 (first) + 1 shared that failed, then each of its five writes alone: 4 commit, 1 fails
    assert (writer.transactions, writer.writes) == (1 + 4, 5)


def test_writers_in_flight_are_bounded_and_the_rest_grouped(engine: api.Engine) -> None:
    """Three transactions may run at once; they are held until the rest of the callers queue
    behind them, so those are written in fewer, shared transactions."""
    writer = GroupCommit(engine, max_writers=3)
    _hold_commits_until_queued(engine, writer, WRITERS - 3)
    outcome = _run(writer, [_write(i) for i in range(WRITERS)], engine)
    assert outcome == {f"host-{i}": True for i in range(WRITERS)}
    assert writer.writes == WRITERS and writer.transactions < WRITERS - 3
    assert writer._writers == 0 and not writer._queue  # every writer's place was given back


def test_a_lone_report_is_written_at_once(engine: api.Engine) -> None:
    writer = GroupCommit(engine)
    t0 = time.monotonic()
    writer.record(_write(7))
    assert time.monotonic() - t0 < 5  # no timer: nothing waited for company
    assert (writer.transactions, writer.writes) == (1, 1)
    assert api.host_state_get_all(engine)["host-7"].labels == {"intelgpu": "enabled"}
    with pytest.raises(exception.DatabaseError):
        writer.record(_write(None))
    writer.record(_write(8))  # the failure left the writer usable
    assert writer.writes == 2


def test_nul_in_one_host_uuid_fails_no_other_hosts_report_on_postgresql(postgres_url: str) -> None:
    """Issue 21 item 10: psycopg2 refuses a NUL in a string with a ValueError (not a DBAPI
    error); the shared transaction failed and so did every report written with it."""
    eng = api.get_engine(postgres_url)
    try:
        migration.upgrade(eng)
        writer = GroupCommit(eng, max_writers=1)
        _hold_commits_until_queued(eng, writer, 5)
        bad = api.HostWrite("host-\x00", {"intelgpu": "enabled"}, seen=True)
        outcome = _run(writer, [_write(0), _write(1), bad, _write(2), _write(3), _write(4)], eng)
        assert isinstance(outcome.pop("host-\x00"), exception.DatabaseError)
        assert outcome == {f"host-{i}": True for i in range(5)}
        assert sorted(api.host_state_get_all(eng)) == [f"host-{i}" for i in range(5)]
    finally:
        eng.dispose()
