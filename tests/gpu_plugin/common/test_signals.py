"""A stop signal while the main thread holds the stop Event's lock (seen: a plugin that ignored
SIGTERM for good). The C handler's wakeup pipe and a thread set the Event; the old way, a
handler calling ``stop.set()``, waits forever for the lock its own thread holds.

Each case runs in a fresh interpreter (signal handlers are process-wide), bounded by a timeout.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

_PROBE = """
import os, signal, sys, threading
from gpu_plugin.common.signals import stop_on_signals
stop = threading.Event()
seen = []
stop_on_signals(stop, (signal.SIGTERM,), seen.append)
with stop._cond:  # where Event.wait() is when the signal lands: holding the Event's lock
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(10_000):  # bytecodes: the Python-level handler runs in here
        pass
print(stop.wait(10), [s.name for s in seen], flush=True)
"""


def test_sigterm_while_the_main_thread_holds_the_stop_events_lock_still_stops() -> None:
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=30,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "['SIGTERM']"]


def test_the_plugin_stops_on_sigterm_while_it_waits(tmp_path: Path) -> None:
    """``python -m gpu_plugin`` on an empty node (nothing to advertise): SIGTERM -> exit 0, logged."""
    sysfs, devfs, kubelet = tmp_path / "sys", tmp_path / "dev", tmp_path / "k"
    for d in (sysfs, devfs, kubelet):
        d.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "gpu_plugin", "-sysfs-root", str(sysfs), "-devfs-root",
                             str(devfs), "-kubelet-dir", str(kubelet)], stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # started: its signal handling is in place
            if "resource share count" in line:
                break
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert "Received SIGTERM, stopping" in err
