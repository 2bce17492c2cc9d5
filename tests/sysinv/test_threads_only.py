"""The services keep eventlet out of their processes (sysinv_ext.cmd.threads_only): oslo.service's
threading backend, and futurist's optional eventlet import refused. Checked in fresh
interpreters, as the console scripts start (the test process itself may hold eventlet)."""
from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
import {module}
import oslo_messaging
from oslo_service import backend, service
import sysinv_ext.common.rpc
print(sys.modules.get("eventlet") is not None, "dns" in sys.modules, backend.get_backend_type().value)
"""


@pytest.mark.parametrize("module", ["sysinv_ext.cmd.conductor", "sysinv_ext.cmd.agent"])
def test_service_processes_run_without_eventlet(module: str) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False", "threading"], out.stdout + out.stderr
    assert "Eventlet is deprecated" not in out.stderr


def test_without_the_entry_package_eventlet_is_what_oslo_would_load() -> None:
    """The probe can fail: importing oslo.messaging directly still loads eventlet here."""
    out = subprocess.run([sys.executable, "-W", "ignore", "-c",
                          "import sys, oslo_messaging; print('eventlet' in sys.modules)"],
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["True"], out.stdout + out.stderr
