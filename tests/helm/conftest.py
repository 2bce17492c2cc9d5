"""The real helm binary for the chart and application tests.

``helm`` builds it on first use with scripts/build-helm.sh (helm.sh/helm/v4 from the Go module
proxy into ~/.cache/stx-intel-gpu/helm/<version>-<hash>/, a one-off step; later runs only
check the stamp). ``STX_HELM`` points at another helm binary instead. Without Go the tests
skip, except with CI=true where a missing helm is a failure.
"""

from __future__ import annotations

import pytest

from tests.helm.chart import helm_binary


@pytest.fixture(scope="session")
def helm() -> str:
    return helm_binary()
