"""Log floods from hostile reports: a 2 MB invalid entry, a 10 MB host_uuid or 10,000 entries
become one bounded log line on the conductor and a bounded error for the caller (it used to be a
4,194,698-character line, printed twice, and echoed back whole). Real conductor manager and
oslo.messaging RPC over the in-process fake:/ driver; Kubernetes API from tests/fakes/kube_api.py.
"""
from __future__ import annotations

import logging
from typing import Any

import pytest

from sysinv_ext.common import exception
from tests.sysinv.conftest import HOST_A, RpcPair

LIMIT = 1000


@pytest.mark.parametrize("kwargs", [
    {"host_uuid": HOST_A, "device_plugins": ["x" * 2_000_000]},
    {"host_uuid": HOST_A, "device_plugins": ["\x00\n" * 1_000_000]},
    {"host_uuid": HOST_A, "device_plugin_labels": [{"label_key": "k" * 2_000_000, "label_value": 1}]},
    {"host_uuid": HOST_A, "device_plugin_labels": [["nested"] * 100_000]},
    {"host_uuid": "u" * 10_000_000, "device_plugins": []},
    {"host_uuid": HOST_A, "device_plugins": ["intelgpu"] * 10_000},
], ids=["2MB-key", "2MB-control-chars", "2MB-2019-key", "100k-list-entry", "10MB-host", "10k-entries"])
def test_huge_invalid_payload_bounded_log_line_and_rpc_error(
        rpc_pair: RpcPair, caplog: pytest.LogCaptureFixture, kwargs: dict[str, Any]) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(exception.InvalidPayload) as err:
        rpc_pair.call(**kwargs)
    assert len(str(err.value)) < LIMIT
    rejected = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == 1
    assert max(len(r.getMessage()) for r in caplog.records) < LIMIT
