"""The sysinv services' stop Event under a signal that lands while the main thread holds the
Event's lock (the agent's and conductor's main loops sit in ``stop.wait()``): the old handler,
``stop.set()`` inside the Python signal handler, waited forever for that lock and the service
ignored SIGTERM until SIGKILL. Runs in a fresh interpreter, bounded by a timeout."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import os, signal, threading
from sysinv_ext.cmd import stop_on_signals
stop = stop_on_signals()
with stop._cond:  # where Event.wait() is when the signal lands: holding the Event's lock
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(10_000):  # bytecodes: a Python-level handler would run in here
        pass
print(stop.wait(10), flush=True)
"""


def test_sigterm_while_a_service_waits_on_its_stop_event_still_stops() -> None:
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True"]
