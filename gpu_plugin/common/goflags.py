"""A small parser with the command-line syntax of Go's ``flag`` package.

Our programs are drop-in replacements for Go binaries, so their flags must be
parsed the way Go parses them: one or two dashes, ``-flag value`` or
``-flag=value``, boolean flags only as ``-x`` or ``-x=false``, parsing stops at
the first non-flag argument or ``--``.  Errors are :class:`FlagError`s whose
one-line message names the flag; the caller decides the exit code.  Shared by
the plugin and its side programs.
"""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec

__all__ = ["FlagError", "HelpRequested", "FlagSet", "ParsedFlags", "parse_go_bool", "parse_go_int",
           "parse_go_uint", "command", "EXIT_USAGE"]

#: Exit code of a bad command line (Go's flag.ExitOnError uses 2 too).
EXIT_USAGE = 2
_P = ParamSpec("_P")

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class FlagError(ValueError):
    """A bad command line; ``str(err)`` is one line naming the flag."""

    def __init__(self, message: str, flag: str | None = None) -> None:
        super().__init__(message)
        self.flag = flag


class HelpRequested(Exception):
    """``-h``/``-help`` was given and is not a defined flag (Go's ``flag.ErrHelp``)."""


def command(prog: str, usage: Callable[[], str]) -> Callable[[Callable[_P, int]], Callable[_P, int]]:
    """Decorator for a side program's ``main``: the one place that turns flag problems into exits.

    ``-h``/``-help`` writes ``usage()`` to stderr and returns 0; a :class:`FlagError` raised while
    ``main`` checks its command line becomes exactly one stderr line ``<prog>: <message>`` and exit
    code 2 — Go's ``flag.ExitOnError`` without the usage dump.
    """
    def wrap(main: Callable[_P, int]) -> Callable[_P, int]:
        @functools.wraps(main)
        def run(*args: _P.args, **kwargs: _P.kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except HelpRequested:
                sys.stderr.write(usage())
                return 0
            except FlagError as err:
                sys.stderr.write(f"{prog}: {err}\n")
                return EXIT_USAGE
        return run
    return wrap


def parse_go_bool(text: str) -> bool:
    """``strconv.ParseBool``."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"invalid boolean {text!r}")


def _go_integer(text: str) -> int:
    """Go's base-0 integer syntax: optional sign, 0x/0o/0b prefixes, legacy leading-0 octal."""
    if text != text.strip():
        raise ValueError("invalid syntax")
    sign, digits = ("", text)
    if text[:1] in ("+", "-"):
        sign, digits = text[0], text[1:]
    if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        digits = "0o" + digits[1:]
    return int(sign + digits, 0)


def parse_go_int(text: str) -> int:
    """``strconv.ParseInt(s, 0, 64)``: optional sign, 0x/0o/0b prefixes, legacy leading-0 octal."""
    value = _go_integer(text)
    if not -(2**63) <= value < 2**63:
        raise ValueError("value out of range")
    return value


def parse_go_uint(text: str) -> int:
    """``strconv.ParseUint(s, 0, 64)``: as :func:`parse_go_int` without a sign, up to 2^64-1."""
    if text[:1] in ("+", "-"):
        raise ValueError("invalid syntax")
    value = _go_integer(text)
    if not 0 <= value < 2**64:
        raise ValueError("value out of range")
    return value


def _parse_float(text: str) -> float:
    if text.strip() != text or not text:
        raise ValueError("invalid syntax")
    return float(text)


@dataclass(frozen=True)
class Flag:
    """One defined flag."""

    name: str
    kind: str  # "bool", "int", "uint", "float", "string" (or a Var's own kind name)
    default: Any
    help: str
    convert: Callable[[str], Any]


class ParsedFlags(Mapping[str, Any]):
    """Flag values by flag name (``values["shared-dev-num"]``), plus the rest of the arguments."""

    def __init__(self, values: dict[str, Any], explicit: frozenset[str], args: list[str]) -> None:
        self._values = values
        #: names of the flags that appeared on the command line
        self.explicit = explicit
        #: arguments left after the flags (Go's ``flag.Args()``)
        self.args = args

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"ParsedFlags({self._values!r}, args={self.args!r})"


class FlagSet:
    """A set of defined flags; :meth:`parse` applies Go's rules to an argv list."""

    def __init__(self, program: str) -> None:
        self.program = program
        self._flags: dict[str, Flag] = {}

    def _define(self, name: str, kind: str, default: Any, help: str, convert: Callable[[str], Any]) -> None:
        if name in self._flags:
            raise ValueError(f"flag redefined: {name}")
        self._flags[name] = Flag(name, kind, default, help, convert)

    def uint(self, name: str, default: int, help: str) -> None:
        """Go's ``flag.Uint64``."""
        self._define(name, "uint", default, help, parse_go_uint)

    def var(self, name: str, kind: str, default: Any, help: str, convert: Callable[[str], Any]) -> None:
        """Go's ``flag.Var``: a flag whose value ``convert`` checks (raise ValueError to reject it)."""
        self._define(name, kind, default, help, convert)

    def bool(self, name: str, default: bool, help: str) -> None:
        self._define(name, "bool", default, help, parse_go_bool)

    def int(self, name: str, default: int, help: str) -> None:
        self._define(name, "int", default, help, parse_go_int)

    def float(self, name: str, default: float, help: str) -> None:
        self._define(name, "float", default, help, _parse_float)

    def string(self, name: str, default: str, help: str) -> None:
        self._define(name, "string", default, help, str)

    @property
    def flags(self) -> Mapping[str, Flag]:
        return dict(self._flags)

    def usage(self) -> str:
        """Go-style usage text (for ``-h``)."""
        lines = [f"Usage of {self.program}:"]
        for flag in sorted(self._flags.values(), key=lambda f: f.name):
            arg = "" if flag.kind == "bool" else f" {flag.kind}"
            lines.append(f"  -{flag.name}{arg}")
            default = "" if flag.default in ("", False, None) else f" (default {flag.default!r})"
            lines.append(f"    \t{flag.help}{default}")
        return "\n".join(lines) + "\n"

    def parse(self, argv: Sequence[str]) -> ParsedFlags:
        """Parse ``argv`` (without the program name); raise :class:`FlagError` or :class:`HelpRequested`."""
        values = {name: flag.default for name, flag in self._flags.items()}
        explicit: set[str] = set()
        args = list(argv)
        i = 0
        while i < len(args):
            arg = args[i]
            if len(arg) < 2 or arg[0] != "-":
                break
            if arg == "--":
                i += 1
                break
            body = arg[2:] if arg[1] == "-" else arg[1:]
            if not body or body[0] in "-=":
                raise FlagError(f"bad flag syntax: {arg}", arg)
            name, has_value, value = body.partition("=")
            i += 1
            flag = self._flags.get(name)
            if flag is None:
                if name in ("h", "help"):
                    raise HelpRequested()
                raise FlagError(f"flag provided but not defined: -{name}", name)
            if flag.kind != "bool" and not has_value:
                if i >= len(args):
                    raise FlagError(f"flag needs an argument: -{name}", name)
                value, has_value = args[i], "="
                i += 1
            if flag.kind == "bool" and not has_value:
                value = "true"
            try:
                values[name] = flag.convert(value)
            except ValueError:
                raise FlagError(f'invalid value "{value}" for flag -{name}: parse error', name) from None
            explicit.add(name)
        return ParsedFlags(values, frozenset(explicit), args[i:])
