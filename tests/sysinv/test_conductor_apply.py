"""conductor/apply.py: per host one run at a time, requests during a run coalesced into one more
run, retriable failures retried (until a bound), other hosts not held up; pure threads."""
from __future__ import annotations

import threading

from sysinv_ext.conductor.apply import HostApplier
from tests.sysinv.conftest import wait_for


class Flaky(Exception):
    """A retriable failure (the API did not answer)."""


def test_requests_during_a_run_are_coalesced_and_other_hosts_not_held_up() -> None:
    release = threading.Event()
    runs: list[str] = []

    def apply(host: str) -> str:
        runs.append(host)
        if host == "slow" and runs.count("slow") == 1:
            release.wait(20)
        return f"{host}-{runs.count(host)}"

    applier = HostApplier(apply, retriable=(Flaky,), workers=4)
    try:
        first = applier.request("slow")
        assert wait_for(lambda: runs == ["slow"])
        later = [applier.request("slow") for _ in range(5)]  # all during the first run
        other = applier.request("fast")
        assert other.wait(10) and other.result == "fast-1", "another host is not held up"
        assert not first.done.is_set()
        release.set()
        assert first.wait(10) and first.result == "slow-1"
        assert all(t.wait(10) for t in later)
        assert {t.result for t in later} == {"slow-2"}, "five requests, one more run"
        assert wait_for(lambda: not applier.busy())
        assert runs.count("slow") == 2
    finally:
        release.set()
        applier.close()


def test_retriable_failures_are_retried_until_the_run_succeeds() -> None:
    calls: list[int] = []

    def apply(host: str) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Flaky("no answer")
        return "done"

    applier = HostApplier(apply, retriable=(Flaky,), retry_min=0.01, retry_max=0.02)
    try:
        ticket = applier.request("h")
        assert ticket.wait(10) and isinstance(ticket.error, Flaky)  # the report sees the failure
        assert wait_for(lambda: len(calls) == 3 and not applier.busy()), "retried in the background"
    finally:
        applier.close()


def test_retries_stop_after_the_bound_and_on_close() -> None:
    calls: list[int] = []

    def apply(host: str) -> None:
        calls.append(1)
        raise Flaky("no answer")

    applier = HostApplier(apply, retriable=(Flaky,), retry_min=0.01, retry_max=0.01, retry_for=0.2)
    try:
        applier.request("h")
        assert wait_for(lambda: not applier.busy(), 10), "gave up after retry_for"
        count = len(calls)
        assert count >= 2
        assert not wait_for(lambda: len(calls) > count, 0.3)
    finally:
        applier.close()
    late = applier.request("h")
    assert late.done.is_set() and late.error is not None  # closed: nothing runs
