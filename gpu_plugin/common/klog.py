"""klog's command-line flags, accepted by every program of the family as upstream's Go binaries do.

Upstream's programs call ``klog.InitFlags``, so DaemonSets, scripts and operators pass them
``-logtostderr``, ``-log_file_max_size=…``, ``-vmodule=…``.  A drop-in must not refuse those
command lines.  Our programs log with :mod:`logging` to stderr; ``-v`` is the one klog flag with an
effect (each program maps it to a level).  The others are parsed with klog's own syntax, so a typo
still exits 2 naming the flag, and those set to something we do not do are named in one warning
(:func:`warn_ineffective`) instead of being dropped silently.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from gpu_plugin.common.goflags import FlagSet, ParsedFlags

__all__ = ["add_flags", "ineffective", "warn_ineffective", "COMPAT_HELP"]

#: the help text prefix the configuration reference groups these flags by
COMPAT_HELP = "klog flag, accepted for compatibility"
_SEVERITIES = ("INFO", "WARNING", "ERROR", "FATAL")
_VMODULE_ITEM = re.compile(r"^[^=,]+=[+-]?[0-9]+$")
_BACKTRACE_AT = re.compile(r"^.+:[0-9]+$")


def _severity(text: str) -> str:
    """klog's severityValue.Set: a severity name (any case) or a number."""
    if text.upper() in _SEVERITIES or re.fullmatch(r"[+-]?[0-9]+", text):
        return text
    raise ValueError("unknown severity")


def _vmodule(text: str) -> str:
    """klog's moduleSpec.Set: comma-separated ``pattern=N``."""
    if text and not all(_VMODULE_ITEM.match(item) for item in text.split(",")):
        raise ValueError("syntax error: expect comma-separated list of filename=N")
    return text


def _backtrace_at(text: str) -> str:
    """klog's traceLocation.Set: empty or ``file.go:N``."""
    if text and not _BACKTRACE_AT.match(text):
        raise ValueError("syntax error: expect file.go:234")
    return text


# name -> (kind, klog's default, converter or None for the kind's own)
_FLAGS: dict[str, tuple[str, Any, Callable[[str], Any] | None]] = {
    "logtostderr": ("bool", True, None),
    "alsologtostderr": ("bool", False, None),
    "add_dir_header": ("bool", False, None),
    "skip_headers": ("bool", False, None),
    "skip_log_headers": ("bool", False, None),
    "one_output": ("bool", False, None),
    "legacy_stderr_threshold_behavior": ("bool", True, None),
    "log_dir": ("string", "", None),
    "log_file": ("string", "", None),
    "log_file_max_size": ("uint", 1800, None),
    "stderrthreshold": ("severity", "2", _severity),
    "vmodule": ("pattern=N,...", "", _vmodule),
    "log_backtrace_at": ("file:N", "", _backtrace_at),
}
#: accepted, never warned about: what they ask for is what we do (everything goes to stderr)
_HARMLESS = frozenset({"alsologtostderr"})


def add_flags(fs: FlagSet, v_default: int = 0) -> None:
    """Define ``-v`` (with the program's default) and every other klog flag on ``fs``."""
    fs.int("v", v_default, "number for the log level verbosity")
    for name, (kind, default, convert) in _FLAGS.items():
        if kind == "bool":
            fs.bool(name, default, COMPAT_HELP)
        elif kind == "string":
            fs.string(name, default, COMPAT_HELP)
        elif kind == "uint":
            fs.uint(name, default, COMPAT_HELP)
        else:
            assert convert is not None
            fs.var(name, kind, default, COMPAT_HELP, convert)


def ineffective(flags: ParsedFlags) -> list[str]:
    """The klog flags given on the command line with a value that would change klog's behaviour."""
    found = []
    for name, (_, default, _) in _FLAGS.items():
        if name in flags.explicit and name not in _HARMLESS and flags[name] != default:
            found.append(f"-{name}")
    return found


def warn_ineffective(names: Sequence[str], log: logging.Logger) -> None:
    """One warning naming the klog flags (from :func:`ineffective`) that have no effect here."""
    if names:
        log.warning("klog flags without effect here (logs always go to stderr, levels from -v only): %s",
                    ", ".join(names))
