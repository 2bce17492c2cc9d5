"""Child processes of the demo: each in its own process group, logged to a file, stopped as a group.

The demo and the e2e test start real services (conductor, agent, plugin); this module makes sure
none of them outlives the run: ``Supervisor.stop_all`` sends SIGTERM to every group, waits, then
SIGKILL.  ``install_signal_handlers`` turns SIGTERM/SIGHUP into KeyboardInterrupt so ``finally``
blocks run on every way out.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType


@dataclass
class Proc:
    """One started program: its name in the demo, the Popen handle and its combined log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        """The last lines of the program's output (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Supervisor:
    """Starts programs in new sessions (own process groups) and stops them all."""

    log_dir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> Proc:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     env=dict(env) if env is not None else None, cwd=cwd)
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 5.0) -> int | None:
        """SIGTERM the program's process group, wait up to ``timeout``, then SIGKILL it.

        A program that already ended and was reaped is left alone: its group id may belong to
        someone else by now.  Right after our own wait, the group is still ours.
        """
        if proc.popen.returncode is None:
            if proc.alive():
                _signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(proc.pid, signal.SIGKILL)
                    proc.popen.wait(5)
            # whatever the leader left behind in its group goes too
            _signal_group(proc.pid, signal.SIGKILL)
        if proc in self.procs:
            self.procs.remove(proc)
        return proc.popen.returncode

    def stop_all(self, timeout: float = 5.0) -> None:
        """Stop every program still known, newest first (plugin before conductor before broker users)."""
        for proc in list(reversed(self.procs)):
            self.stop(proc, timeout)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Call ``predicate`` until it returns a truthy value and return that value.

    Raises TimeoutError naming ``what`` (and the predicate's last error) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as err:  # noqa: BLE001 - the predicate's errors are retried until the deadline
            last_error = err
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def install_signal_handlers() -> None:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt so cleanup runs (SIGINT is set
    explicitly: a shell starts background jobs with it ignored)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
