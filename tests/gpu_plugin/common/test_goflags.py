"""Go ``flag`` package syntax: what parses, what fails, and the one-line messages."""

from __future__ import annotations

import pytest

from gpu_plugin.common.goflags import FlagError, FlagSet, HelpRequested, command, parse_go_bool, parse_go_int


def flags() -> FlagSet:
    f = FlagSet("prog")
    f.int("n", 1, "a number")
    f.bool("b", False, "a switch")
    f.string("s", "dflt", "a string")
    f.float("t", 5.0, "seconds")
    return f


GOOD = [
    ("defaults", [], {"n": 1, "b": False, "s": "dflt", "t": 5.0}, []),
    ("single-dash-space", ["-n", "3"], {"n": 3}, []),
    ("double-dash-equals", ["--n=3"], {"n": 3}, []),
    ("bool-bare", ["-b"], {"b": True}, []),
    ("bool-false", ["-b=false"], {"b": False}, []),
    ("bool-go-spellings", ["--b=T"], {"b": True}, []),
    ("bool-does-not-eat-next", ["-b", "x"], {"b": True}, ["x"]),
    ("hex-int", ["-n=0x10"], {"n": 16}, []),
    ("octal-int", ["-n", "010"], {"n": 8}, []),
    ("negative-int", ["-n", "-2"], {"n": -2}, []),
    ("string-empty", ["-s="], {"s": ""}, []),
    ("string-with-equals", ["-s", "a=b"], {"s": "a=b"}, []),
    ("string-dash-value", ["-s", "-b"], {"s": "-b", "b": False}, []),
    ("float", ["-t", "0.25"], {"t": 0.25}, []),
    ("last-wins", ["-n", "2", "-n", "4"], {"n": 4}, []),
    ("stops-at-positional", ["-n", "2", "pos", "-n", "4"], {"n": 2}, ["pos", "-n", "4"]),
    ("double-dash-terminator", ["--", "-n", "4"], {"n": 1}, ["-n", "4"]),
    ("single-dash-is-positional", ["-", "-n", "4"], {"n": 1}, ["-", "-n", "4"]),
]


@pytest.mark.parametrize("argv,expected,rest", [c[1:] for c in GOOD], ids=[c[0] for c in GOOD])
def test_good(argv: list[str], expected: dict, rest: list[str]) -> None:
    parsed = flags().parse(argv)
    assert {k: parsed[k] for k in expected} == expected
    assert parsed.args == rest


def test_explicit_names_the_flags_given() -> None:
    assert flags().parse(["-s", "-b", "--n=2", "x", "-t", "1"]).explicit == {"s", "n"}


BAD = [
    ("unknown", ["-x"], "flag provided but not defined: -x", "x"),
    ("unknown-double-dash", ["--nope=1"], "flag provided but not defined: -nope", "nope"),
    ("missing-value", ["-n"], "flag needs an argument: -n", "n"),
    ("bad-int", ["-n", "two"], 'invalid value "two" for flag -n: parse error', "n"),
    ("int-with-fraction", ["-n=1.5"], 'invalid value "1.5" for flag -n: parse error', "n"),
    ("bad-bool", ["-b=yes"], 'invalid value "yes" for flag -b: parse error', "b"),
    ("bad-float", ["-t", "fast"], 'invalid value "fast" for flag -t: parse error', "t"),
    ("triple-dash", ["---n=1"], "bad flag syntax: ---n=1", "---n=1"),
    ("empty-name", ["-=1"], "bad flag syntax: -=1", "-=1"),
]


@pytest.mark.parametrize("argv,message,flag", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad(argv: list[str], message: str, flag: str) -> None:
    with pytest.raises(FlagError) as err:
        flags().parse(argv)
    assert str(err.value) == message and "\n" not in str(err.value)
    assert err.value.flag == flag


@pytest.mark.parametrize("argv", [["-h"], ["--help"], ["-n", "2", "-help"]])
def test_help(argv: list[str]) -> None:
    with pytest.raises(HelpRequested):
        flags().parse(argv)
    assert "-n int" in flags().usage() and "(default 'dflt')" in flags().usage()


def test_redefinition_is_a_programming_error() -> None:
    f = flags()
    with pytest.raises(ValueError, match="flag redefined: n"):
        f.int("n", 2, "again")


@pytest.mark.parametrize(
    "text,value",
    [
        ("1", True),
        ("t", True),
        ("TRUE", True),
        ("True", True),
        ("0", False),
        ("f", False),
        ("FALSE", False),
        ("False", False),
    ],
)
def test_go_bool(text: str, value: bool) -> None:
    assert parse_go_bool(text) is value


@pytest.mark.parametrize(
    "text,value",
    [
        ("0", 0),
        ("12", 12),
        ("0x1f", 31),
        ("0o17", 15),
        ("017", 15),
        ("0b11", 3),
        ("-0x10", -16),
        ("+5", 5),
        ("1_000", 1000),
    ],
)
def test_go_int(text: str, value: int) -> None:
    assert parse_go_int(text) == value


@pytest.mark.parametrize("text", ["", "1e3", "9223372036854775808", "08", " 1"])
def test_go_int_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_int(text)


@pytest.mark.parametrize(("raises", "code", "stderr"), [
    (None, 7, ""),
    (HelpRequested(), 0, "usage of prog"),
    (FlagError("invalid value \"x\" for flag -n", "n"), 2, 'prog: invalid value "x" for flag -n\n'),
], ids=["passes-through", "help-is-usage-and-0", "flag-error-is-one-line-and-2"])
def test_command_decorator_maps_flag_problems_to_exits(
    capsys: pytest.CaptureFixture[str], raises: Exception | None, code: int, stderr: str
) -> None:
    @command("prog", lambda: "usage of prog")
    def main(argv: list[str]) -> int:
        if raises is not None:
            raise raises
        return 7

    assert main([]) == code
    assert capsys.readouterr().err == stderr
