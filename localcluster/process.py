"""One program of the local cluster: started in its own process group, logged to a file,
stopped with SIGTERM and, after a grace period, SIGKILL to the whole group (so a wrapper's
children go too)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar


class ClusterError(RuntimeError):
    """A program of the local cluster failed to start or to become ready."""


@dataclass
class Program:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> Program:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                list(self.argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env=self.env)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        """Raise with the tail of the log when the program has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ClusterError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid
        if self.proc.poll() is None:
            _signal_group(pgid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # the group may hold children of a wrapper even after the leader exited
        _signal_group(pgid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


T = TypeVar("T")


def wait_for(what: str, condition: Callable[[], T | None], timeout: float = 60,
             programs: Sequence[Program] = (), interval: float = 0.05) -> T:
    """Poll ``condition()`` until it returns a truthy value, and return that; fail early when a
    program died. Used by the cluster itself, its tests and the cluster benchmarks."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        for program in programs:
            program.check_alive()
        try:
            value = condition()
            if value:
                return value
        except Exception as err:  # the condition's own failures are retried until the deadline
            last_error = err
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)
