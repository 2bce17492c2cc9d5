"""Prometheus text exposition format (0.0.4) parser, as strict as Go's expfmt.TextParser where
it matters to the XPU Manager sidecar: metric/label names, escapes, duplicate labels, second
TYPE lines, value and timestamp syntax.  Returns plain data; raises MetricsParseError.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MetricsParseError", "Sample", "Metrics", "parse_metrics"]


class MetricsParseError(ValueError):
    """The body is not Prometheus text exposition format."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True)
class Metrics:
    samples: tuple[Sample, ...]
    types: dict[str, str]


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*\"")
_FLOAT = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.I)
_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


def _parse_labels(line: str, pos: int, lineno: int) -> tuple[tuple[tuple[str, str], ...], int]:
    """Labels from just after ``{``; returns them and the position after ``}``."""
    labels: list[tuple[str, str]] = []
    while True:
        rest = line[pos:].lstrip(" \t")
        if rest.startswith("}"):
            return tuple(labels), len(line) - len(rest) + 1
        m = _LABEL.match(line, pos)
        if not m:
            raise MetricsParseError(f"line {lineno}: invalid label at {line[pos:pos + 20]!r}")
        name, pos, value = m.group(1), m.end(), []
        while True:
            if pos >= len(line):
                raise MetricsParseError(f"line {lineno}: unterminated label value")
            ch = line[pos]
            if ch == '"':
                break
            if ch == "\\":
                esc = line[pos + 1:pos + 2]
                if esc not in _ESCAPES:
                    raise MetricsParseError(f"line {lineno}: invalid escape \\{esc}")
                value.append(_ESCAPES[esc])
                pos += 2
            else:
                value.append(ch)
                pos += 1
        if any(n == name for n, _ in labels):
            raise MetricsParseError(f"line {lineno}: duplicate label {name}")
        labels.append((name, "".join(value)))
        rest = line[pos + 1:].lstrip(" \t")
        pos = len(line) - len(rest)
        if rest.startswith(","):
            pos += 1
        elif not rest.startswith("}"):
            raise MetricsParseError(f"line {lineno}: expected ',' or '}}' after label {name}")


def parse_metrics(text: str) -> Metrics:
    """Samples and declared types; raises MetricsParseError on the first malformed line."""
    samples: list[Sample] = []
    types: dict[str, str] = {}
    seen: set[str] = set()
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.lstrip(" \t")
        if not line.strip():
            continue
        if line.startswith("#"):
            words = line[1:].split(None, 3)
            if len(words) >= 1 and words[0] in ("HELP", "TYPE"):
                if len(words) < 2 or not _NAME.fullmatch(words[1]):
                    raise MetricsParseError(f"line {lineno}: invalid metric name in {words[0]} line")
                if words[0] == "TYPE":
                    if len(words) != 3 or words[2] not in _TYPES:
                        raise MetricsParseError(f"line {lineno}: invalid TYPE line")
                    if words[1] in types or words[1] in seen:
                        raise MetricsParseError(f"line {lineno}: second TYPE line for {words[1]}")
                    types[words[1]] = words[2]
            continue
        m = _NAME.match(line)
        if not m:
            raise MetricsParseError(f"line {lineno}: invalid metric name")
        name, pos = m.group(0), m.end()
        labels: tuple[tuple[str, str], ...] = ()
        if line[pos:].lstrip(" \t").startswith("{"):
            labels, pos = _parse_labels(line, line.index("{", pos) + 1, lineno)
        fields = line[pos:].split()
        if not 1 <= len(fields) <= 2 or not _FLOAT.fullmatch(fields[0]) or (
                len(fields) == 2 and not re.fullmatch(r"-?[0-9]+", fields[1])):
            raise MetricsParseError(f"line {lineno}: invalid value or timestamp for {name}")
        seen.add(name)
        samples.append(Sample(name, labels, float(fields[0])))
    return Metrics(tuple(samples), types)
