"""Shared helpers for benchmark suites: a result record, percentiles, printing."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """One measured figure and the target it is compared with (None = report only)."""

    suite: str
    name: str
    value: float
    unit: str
    target: float | None = None
    lower_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        """value / target (≤ 1.0 meets a lower-is-better target)."""
        if self.target in (None, 0):
            return None
        return self.value / self.target

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "report"
        ok = self.value <= self.target if self.lower_is_better else self.value >= self.target
        return "ok" if ok else "MISS"


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile of ``samples`` (pct in 0..100)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def format_table(results: list[Result]) -> str:
    header = f"{'suite':<8} {'figure':<64} {'value':>12} {'target':>12} {'ratio':>7}  verdict"
    lines = [header, "-" * len(header)]
    for r in results:
        target = "-" if r.target is None else f"{r.target:g} {r.unit}"
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        lines.append(f"{r.suite:<8} {r.name:<64} {r.value:>9.3f} {r.unit:<2} "
                     f"{target:>12} {ratio:>7}  {r.verdict}")
    return "\n".join(lines)
