"""A kubeconfig is checked with limits before the official client's loader reads it.

The loader (``kubernetes.config.load_kube_config``) parses the file with ``yaml.safe_load``
and then walks and copies what it got. A "billion laughs" file (nine anchors, each a list of
nine aliases of the previous) is a few hundred bytes that stand for 9**9 strings: the status
command reached 2.1 GB on one. A list nested 100,000 deep ends the recursive composer in a
RecursionError, with a traceback (issue 21 item 14). PyYAML has no option to refuse aliases or
bound depth, so this module reads the file (a regular file, at most ``MAX_BYTES``) and runs
PyYAML's own event parser over it, which is iterative (no recursion, no objects built): any
alias, or nesting deeper than ``MAX_DEPTH``, and the file is refused with a one-line
ValueError. A kubeconfig has neither: ``kubectl config`` writes no anchors, and its deepest
path (users[].user.exec.env[].name) is 6 levels.
"""
from __future__ import annotations

import errno
import os
import stat

import yaml

MAX_BYTES = 4 * 1024 * 1024  # kubeconfigs with embedded certificates are a few KB
MAX_DEPTH = 32

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_limited(path: str, limit: int = MAX_BYTES) -> str:
    """The text of the regular file ``path``, refused (ValueError) above ``limit`` bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise ValueError(f"larger than {limit} bytes")
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def check_text(text: str, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise ValueError (one line) if the YAML ``text`` holds an alias or nests deeper than
    ``max_depth``, or is not YAML at all."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.AliasEvent):
                raise ValueError("YAML aliases are not allowed (a kubeconfig has none; they can "
                                 "expand a small file into gigabytes)")
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > max_depth:
                    raise ValueError(f"nested deeper than {max_depth} levels")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "level" in first:  # libyaml's own nesting limit ("while increasing flow level")
            raise ValueError(f"nested too deep ({first[:200]})") from None
        raise ValueError(f"not valid YAML: {first[:200]}") from None


def check_file(path: str) -> None:
    """``read_limited`` + ``check_text``; OSError or ValueError (one line) if refused."""
    check_text(read_limited(path))
