"""The benchmark runner's own logic: suite selection, percentiles and verdicts (no timing here)."""
from __future__ import annotations

import pytest

from benchmarks.__main__ import main
from benchmarks.common import Result, format_table, percentile


def test_unknown_suite_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["nope"])
    assert exc.value.code == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(("samples", "pct", "expected"), [
    ([5.0], 50, 5.0),
    ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
    ([float(i) for i in range(1, 101)], 99, 99.0),
    ([float(i) for i in range(1, 101)], 100, 100.0),
    ([3.0, 1.0, 2.0], 0, 1.0),
], ids=["single", "p50-even", "p99-of-100", "max", "min-unsorted"])
def test_nearest_rank_percentile(samples: list[float], pct: float, expected: float) -> None:
    assert percentile(samples, pct) == expected


@pytest.mark.parametrize(("result", "verdict", "ratio"), [
    (Result("s", "fast", 0.5, "ms", 1.0), "ok", 0.5),
    (Result("s", "slow", 3.0, "ms", 1.0), "MISS", 3.0),
    (Result("s", "throughput", 3.0, "ops", 2.0, lower_is_better=False), "ok", 1.5),
    (Result("s", "report", 3.0, "ms"), "report", None),
], ids=["meets", "misses", "higher-is-better", "report-only"])
def test_verdicts(result: Result, verdict: str, ratio: float | None) -> None:
    assert result.verdict == verdict
    assert result.ratio == ratio
    assert verdict in format_table([result])
