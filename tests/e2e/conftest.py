"""Fixtures of the whole-flow test: one ``demo.flow.Flow`` shared by the ordered steps of a module
(marked ``incremental``: see tests/conftest.py)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.flow import Flow
from demo.machine import NODE, broker_reachable
from tests.fakes import rabbit


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
