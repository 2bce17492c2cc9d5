"""Stop a program on SIGTERM/SIGINT/…: the Event is set from a thread, never from the handler.

Python runs a signal handler in the main thread, between two bytecodes of whatever the main
thread is doing. When that is ``stop.wait(…)`` on the very Event the handler sets, the main thread
can be holding the Event's internal lock at that moment (``Condition.wait`` holds it while it
allocates its waiter), and ``stop.set()`` in the handler then waits forever for a lock its own
thread holds: a plugin that ignored SIGTERM until it was killed was seen (kubelet's grace period,
then SIGKILL, sockets and the GAS labels file left behind).

Here the handler does nothing in Python; CPython's C-level handler writes the signal number to
a pipe (:func:`signal.set_wakeup_fd`, async-signal-safe), and a daemon thread reading that pipe
logs and sets the Event in ordinary thread context. Must be called from the main thread.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType

__all__ = ["stop_on_signals"]

LOG = logging.getLogger(__name__)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: present so the default action (exit) does not happen."""


def stop_on_signals(stop: threading.Event, signals: Iterable[signal.Signals],
                    on_signal: Callable[[signal.Signals], None] | None = None) -> None:
    """Set ``stop`` when one of ``signals`` arrives, after ``on_signal(sig)`` (e.g. a log line)."""
    wanted = {int(s) for s in signals}
    read_fd, write_fd = os.pipe()  # both close-on-exec (PEP 446)
    os.set_blocking(write_fd, False)  # set_wakeup_fd's requirement: the C handler never blocks
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    for sig in wanted:
        signal.signal(sig, _ignore)

    def watch() -> None:
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data:
                return
            for number in data:
                if number not in wanted:
                    continue
                if on_signal is not None:
                    try:
                        on_signal(signal.Signals(number))
                    except Exception:  # noqa: BLE001 - a log call must not keep the program running
                        LOG.exception("signal callback failed")
                stop.set()

    threading.Thread(target=watch, name="signals", daemon=True).start()
