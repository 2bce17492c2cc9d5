"""Errors of the GPU plugin's command line (upstream's ``argError``).

A :class:`UsageError` is a configuration problem found before anything starts;
its message is one line naming the flag, and the CLI exits with code 2.
"""
from __future__ import annotations

__all__ = ["UsageError", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """Bad or unusable flags; ``str(err)`` is one line that names the flag."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"-{flag}: {message}")
        self.flag = flag
