"""Fixtures of the whole-flow test: one ``demo.flow.Flow`` shared by the ordered steps of a module.

Steps build on each other, so a module marked ``incremental`` skips the remaining steps once one
fails (the failure is reported once, where it happened, not as a cascade), and keeps its steps in
file order under ``pytest -p randomly`` (which shuffles everything else).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.flow import Flow
from demo.machine import NODE, broker_reachable
from tests.fakes import rabbit

_FAILED: dict[str, str] = {}


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    if "incremental" in item.keywords and call.excinfo is not None and call.when == "call":
        if not call.excinfo.errisinstance(pytest.skip.Exception):
            _FAILED.setdefault(item.module.__name__, item.name)  # type: ignore[attr-defined]


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
            pytest.skip(f"an earlier step failed: {failed}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "incremental: ordered steps; skip the rest after a failure")


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    """The flow over RabbitMQ when it is reachable, else oslo.messaging's fake driver in-process.

    ``E2E_TRANSPORT_URL=fake:/`` forces the in-process path (to check it while a broker is up).
    """
    root: Path = tmp_path_factory.mktemp("whole-flow")
    url = os.environ.get("E2E_TRANSPORT_URL") or (
        "rabbit://guest:guest@127.0.0.1:5672/" if broker_reachable() else "fake:/")
    flow = Flow(root, transport_url=url, scan_interval=0.5)
    try:
        yield flow
    finally:
        flow.close()
        if url.startswith("rabbit:"):  # the flow's own exchange and queues (unique names)
            rabbit.delete(queues=[flow.topic, f"{flow.topic}.{NODE}"], exchanges=[flow.exchange])
