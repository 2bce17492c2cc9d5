"""Scrape a Prometheus endpoint over real HTTP and read its samples (test helper, not a double).

``scrape(url)`` GETs the text exposition and parses it with prometheus_client's own parser into
``Samples``: ``samples.value("name", label="x")`` is one sample's value (0.0 when absent, so a
counter that has not moved yet reads as zero).
"""
from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

URL_IN_LOG = re.compile(r"serving Prometheus metrics on (http://\S+/metrics)")


class Samples:
    def __init__(self, text: str) -> None:
        self.text = text
        self.rows: list[tuple[str, dict[str, str], float]] = []
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.rows.append((sample.name, dict(sample.labels), float(sample.value)))

    def value(self, name: str, **labels: str) -> float:
        return sum(v for n, lab, v in self.rows
                   if n == name and all(lab.get(k) == w for k, w in labels.items()))

    def names(self) -> set[str]:
        return {n for n, _, _ in self.rows}


def scrape(url: str, timeout: float = 5.0) -> Samples:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a local test URL
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return Samples(response.read().decode())


def url_from_log(path: Path, timeout: float = 20.0, alive: Callable[[], bool] = lambda: True) -> str:
    """The endpoint URL a program logged at start ("serving Prometheus metrics on URL")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        found = URL_IN_LOG.search(path.read_text(errors="replace")) if path.exists() else None
        if found:
            return found.group(1)
        time.sleep(0.05)
    raise AssertionError(f"no metrics URL in {path}: {path.read_text(errors='replace')[-2000:]}")


def wait_value(url: str, name: str, predicate: Callable[[float], bool], timeout: float = 20.0,
               **labels: str) -> Samples:
    """Scrape until ``predicate(value of name{labels})`` holds; return that scrape."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if predicate(samples.value(name, **labels)):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{labels} = {samples.value(name, **labels)} after {timeout} s")
        time.sleep(0.05)
