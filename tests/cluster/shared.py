"""The cluster for the chart and application tests: tests/cluster/conftest.py's session
``cluster`` when there is one (issue 18's), else one LocalCluster for the module. Never two at
once (a machine runs one local kubelet): keep every test using it in one module, since a
fixture imported into two modules is instantiated once per module."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from localcluster import LocalCluster


@pytest.fixture(scope="module", name="kube_cluster")
def kube_cluster_fixture(request: pytest.FixtureRequest) -> Iterator[Any]:
    try:
        yield request.getfixturevalue("cluster")
        return
    except pytest.FixtureLookupError:
        pass
    with LocalCluster() as own:
        yield own
