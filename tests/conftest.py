"""Suite-wide rules.

- In CI (``CI=true``) a skipped test is a failed test: every service a test needs is
  installed and started by ``scripts/ensure-services.sh`` (and the real cluster by
  ``make kube``), so a skip there means the run tested less than it claims.
- ``tests/cluster/`` runs on the real local cluster (``make test-cluster``, which sets
  ``STX_TEST_CLUSTER=1``); ``make test`` leaves it out so it stays fast and needs no Go.
"""
from __future__ import annotations

import os
from collections.abc import Generator

import pytest

collect_ignore_glob: list[str] = []
if os.environ.get("STX_TEST_CLUSTER") != "1":
    collect_ignore_glob.append("cluster/*")


# -- ordered steps ------------------------------------------------------------------------------
# Steps of a whole-flow module build on each other: a module marked ``incremental`` skips the
# remaining steps once one fails (the failure is reported once, where it happened, not as a
# cascade), and keeps its steps in file order under ``pytest -p randomly``.

_FAILED: dict[str, str] = {}
EARLIER_STEP_FAILED = "an earlier step failed"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the steps of incremental modules back in file order, in the slots they were given
    (pytest-randomly shuffles in a hook wrapper that runs before this one)."""
    slots: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        if "incremental" in item.keywords:
            slots.setdefault(item.nodeid.split("::")[0], []).append(index)
    for indexes in slots.values():
        steps = sorted((items[i] for i in indexes), key=lambda item: item.location[1] or 0)
        for index, step in zip(indexes, steps, strict=True):
            items[index] = step


def pytest_runtest_setup(item: pytest.Item) -> None:
    if "incremental" in item.keywords:
        failed = _FAILED.get(item.module.__name__)  # type: ignore[attr-defined]
        if failed:
            pytest.skip(f"{EARLIER_STEP_FAILED}: {failed}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "incremental: ordered steps; skip the rest after a failure")


def _after_failed_step(report: pytest.TestReport) -> bool:
    """A step skipped because an earlier one failed: the run fails already, where it happened."""
    return isinstance(report.longrepr, tuple) and EARLIER_STEP_FAILED in str(report.longrepr[2])


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()
    if "incremental" in item.keywords and call.excinfo is not None and call.when == "call":
        if not call.excinfo.errisinstance(pytest.skip.Exception):
            _FAILED.setdefault(item.module.__name__, item.name)  # type: ignore[attr-defined]
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail") and not _after_failed_step(report):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may skip: {reason}"
