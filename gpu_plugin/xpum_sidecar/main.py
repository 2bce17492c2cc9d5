"""`intel-xpumanager-sidecar`: Xe Link topology from XPU Manager's /metrics as an NFD label file.

Port of cmd/xpumanager_sidecar: scrape ``http(s)://127.0.0.1:<xpum-port>/metrics``, take the
``xpum_topology_link`` samples whose value is 1 (an Xe Link), keep those with at least
``-lane-count`` lanes (on subdevices unless ``-allow-subdeviceless-links``), and write
``<ns>/xe-links=0.0-1.0_...`` (split over ``xe-links2``, ``xe-links3`` … at 63 characters as
upstream) to ``-dst-file-path`` atomically: a temporary directory under ``-tmp-dir-prefix``, then
os.replace. Unlike upstream, a failed scrape (connection error, HTTP error status, unreadable CA,
unparsable text) keeps the last good file instead of writing empty labels.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import ssl
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gpu_plugin.common import klog, metrics_http, signals
from gpu_plugin.common.atomic_file import replace_file
from gpu_plugin.common.goflags import FlagError, FlagSet, command
from gpu_plugin.common.label_split import split_at_last_alnum
from gpu_plugin.xpum_sidecar.metrics import NO_SIDECAR_METRICS, SidecarMetrics, sidecar_metrics
from gpu_plugin.xpum_sidecar.prometheus_text import Metrics as Metrics  # re-exported
from gpu_plugin.xpum_sidecar.prometheus_text import MetricsParseError as MetricsParseError
from gpu_plugin.xpum_sidecar.prometheus_text import Sample as Sample
from gpu_plugin.xpum_sidecar.prometheus_text import parse_metrics as parse_metrics

LOG = logging.getLogger(__name__)
PROG = "intel-xpumanager-sidecar"
LABEL_MAX_LENGTH = 63
LABEL_CONTROL_CHAR = "Z"
XE_LINK_LABEL = "xe-links"
TOPOLOGY_METRIC = "xpum_topology_link"
FEATURES_DIR = "/etc/kubernetes/node-feature-discovery/features.d/"
#: Upper bound of -interval and -startup-delay (seconds): one year.  Upstream takes any uint64 but
#: Go's time.Duration overflows above 9223372036 s; Python's timed waits fail near there as well
#: (OverflowError), and a period longer than a year is a typo, not a schedule.
MAX_PERIOD = 365 * 24 * 3600
_INT_RE = re.compile(r"[+-]?[0-9]+")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class ScrapeError(Exception):
    """The metrics could not be fetched."""


@dataclass(frozen=True)
class Link:
    """One topology matrix cell (upstream's xpuManagerTopologyMatrixCell)."""

    local_device: int
    local_subdevice: int
    remote_device: int
    remote_subdevice: int
    lanes: int

    def key(self) -> str:
        """``0.0-1.0`` with the lower device ID first."""
        a = f"{self.local_device}.{self.local_subdevice}"
        b = f"{self.remote_device}.{self.remote_subdevice}"
        return f"{a}-{b}" if self.local_device < self.remote_device else f"{b}-{a}"


def _link_from_labels(labels: Sequence[tuple[str, str]], allow_subdeviceless: bool) -> Link | None:
    """upstream's processMetricsLabels; None for an entry that is not a usable link."""
    values = {"local_device_id": -1, "local_subdevice_id": -1, "remote_device_id": -1,
              "remote_subdevice_id": -1, "lane_count": -1}
    for name, value in labels:
        if not allow_subdeviceless and name == "local_on_subdevice" and value != "true":
            return None  # Xe Links are always on subdevices
        if not _INT_RE.fullmatch(value):
            continue
        key = "lane_count" if name == "lan_count" else name  # XPUM has spelled it both ways
        if key in values:
            values[key] = int(value)
    if min(values.values()) < 0:
        return None
    return Link(values["local_device_id"], values["local_subdevice_id"], values["remote_device_id"],
                values["remote_subdevice_id"], values["lane_count"])


def topology_from_metrics(text: str, allow_subdeviceless: bool = False) -> list[Link]:
    """upstream's GetTopologyFromXPUMMetrics; raises MetricsParseError on text that is not Prometheus."""
    metrics = parse_metrics(text)
    links = []
    for sample in metrics.samples:
        if sample.name != TOPOLOGY_METRIC:
            continue
        if metrics.types.get(TOPOLOGY_METRIC, "untyped") not in ("gauge", "untyped"):
            LOG.warning("unsupported %s metric type %s", TOPOLOGY_METRIC, metrics.types[TOPOLOGY_METRIC])
            continue
        if sample.value != 1:
            continue
        link = _link_from_labels(sample.labels, allow_subdeviceless)
        if link is not None:
            links.append(link)
    return links


def create_labels(links: Sequence[Link], lane_count: int, namespace: str) -> list[str]:
    """upstream's createLabels: ``<ns>/xe-links=…`` (+ ``xe-links2``… when longer than 63)."""
    seen: dict[str, int] = {}
    for link in links:
        if link.lanes < lane_count:
            continue
        key = link.key()
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 2:
            LOG.warning("duplicate links found for: %s (lane count: %d)", key, link.lanes)
    chunks = split_at_last_alnum("_".join(seen), LABEL_MAX_LENGTH, LABEL_CONTROL_CHAR)
    return [f"{namespace}/{XE_LINK_LABEL}{'' if i == 1 else i}={chunk}" for i, chunk in enumerate(chunks, 1)]


def fetch_metrics(url: str, cafile: str = "", timeout: float = 5.0) -> str:
    """GET ``url`` (https verified against ``cafile`` when given); raises ScrapeError."""
    try:
        context = ssl.create_default_context(cafile=cafile) if cafile else None
        if context is not None:
            context.minimum_version = ssl.TLSVersion.TLSv1_2
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            if response.status != 200:
                raise ScrapeError(f"{url}: HTTP {response.status}")
            body: bytes = response.read()
    except (OSError, ssl.SSLError, ValueError) as err:  # URLError and HTTPError are OSErrors
        raise ScrapeError(f"{url}: {err}") from err
    return body.decode("utf-8", errors="replace")


def read_labels(path: str) -> list[str] | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return None


def write_labels(labels: Sequence[str], dst: str, tmp_dir_prefix: str) -> None:
    """Write in a fresh directory under ``tmp_dir_prefix`` (NFD skips directories), then os.replace."""
    replace_file(dst, "".join(label + "\n" for label in labels), tmp_dir=tmp_dir_prefix,
                 prefix="xpumsidecar", name="xpum-sidecar-labels.txt")


@dataclass(frozen=True)
class Config:
    url: str
    dst_file_path: str
    tmp_dir_prefix: str
    cert: str = ""
    lane_count: int = 4
    label_namespace: str = "gpu.intel.com"
    allow_subdeviceless_links: bool = False
    interval: float = 10.0
    startup_delay: float = 10.0
    metrics_address: str = ""  #: "" = no metrics endpoint


class Sidecar:
    """Scrape, compute, write when changed; the last good file stays when a step fails."""

    def __init__(self, config: Config, fetch: Callable[[], str] | None = None,
                 metrics: SidecarMetrics = NO_SIDECAR_METRICS) -> None:
        self.config = config
        self.metrics = metrics
        self._fetch = fetch or (lambda: fetch_metrics(config.url, config.cert))

    def iterate(self) -> bool:
        """One round; True when the file now holds this round's labels."""
        c = self.config
        try:
            links = topology_from_metrics(self._fetch(), c.allow_subdeviceless_links)
        except (ScrapeError, MetricsParseError) as err:
            LOG.warning("keeping the previous labels: %s", err)
            self.metrics.round("scrape_failed")
            return False
        labels = create_labels(links, c.lane_count, c.label_namespace)
        labelled = len({link.key() for link in links if link.lanes >= c.lane_count})
        if read_labels(c.dst_file_path) == labels:
            LOG.debug("labels have not changed")
            self.metrics.round("unchanged", labelled)
            return True
        try:
            write_labels(labels, c.dst_file_path, c.tmp_dir_prefix)
        except OSError as err:
            LOG.error("failed to write %s: %s", c.dst_file_path, err)
            self.metrics.round("write_failed")
            return False
        LOG.info("wrote %s: %s", c.dst_file_path, " ".join(labels) or "(no labels)")
        self.metrics.round("written", labelled)
        return True

    def run(self, stop: threading.Event) -> None:
        """Iterate every ``interval`` after ``startup_delay`` until ``stop``; then remove the file."""
        if not stop.wait(self.config.startup_delay):
            while True:
                self.iterate()
                if stop.wait(self.config.interval):
                    break
        try:
            os.unlink(self.config.dst_file_path)
        except FileNotFoundError:
            pass
        except OSError as err:
            LOG.error("failed to clean up the label file: %s", err)


def _flagset() -> FlagSet:
    fs = FlagSet(PROG)
    fs.uint("interval", 10, f"interval for topology fetching and label writing (seconds, 1..{MAX_PERIOD})")
    fs.uint("startup-delay", 10, "startup delay for first topology fetching and label writing "
            f"(seconds, 0..{MAX_PERIOD})")
    fs.uint("xpum-port", 29999, "xpumanager port number")
    fs.string("tmp-dir-prefix", FEATURES_DIR, "where the temporary dir of the in-flight label file is made")
    fs.string("dst-file-path", FEATURES_DIR + "xpum-sidecar-labels.txt", "label file destination")
    fs.uint("lane-count", 4, "minimum lane count for xelink")
    fs.string("label-namespace", "gpu.intel.com", "namespace for the labels")
    fs.bool("allow-subdeviceless-links", False, "allow xelinks not tied to subdevices (=1 tile GPUs)")
    fs.string("cert", "", "Use HTTPS and verify server's endpoint")
    fs.string(metrics_http.FLAG, "", metrics_http.FLAG_HELP)
    klog.add_flags(fs)
    return fs


def parse_config(argv: Sequence[str]) -> tuple[Config, int, list[str]]:
    """Flags to a Config, the verbosity and the klog flags without effect; raises FlagError/HelpRequested."""
    flags = _flagset().parse(argv)
    if flags.args:
        raise FlagError(f"unexpected argument: {flags.args[0]}")
    for name, low in (("interval", 1), ("xpum-port", 1)):
        if flags[name] < low:
            raise FlagError(f'invalid value "{flags[name]}" for flag -{name}: must be >= {low}', name)
    for name in ("interval", "startup-delay"):
        if flags[name] > MAX_PERIOD:
            raise FlagError(f'invalid value "{flags[name]}" for flag -{name}: must be <= {MAX_PERIOD} '
                            "(one year)", name)
    if flags["xpum-port"] > 65535:
        raise FlagError(f'invalid value "{flags["xpum-port"]}" for flag -xpum-port: not a port', "xpum-port")
    if not _DNS_SUBDOMAIN.match(flags["label-namespace"]) or len(flags["label-namespace"]) > 253:
        raise FlagError(f'invalid value "{flags["label-namespace"]}" for flag -label-namespace: '
                        "not a DNS subdomain", "label-namespace")
    if flags[metrics_http.FLAG]:
        try:
            metrics_http.parse_address(flags[metrics_http.FLAG])
        except metrics_http.MetricsAddressError as err:
            raise FlagError(f"-{metrics_http.FLAG}: {err}", metrics_http.FLAG) from None
    scheme = "https" if flags["cert"] else "http"
    return Config(url=f"{scheme}://127.0.0.1:{flags['xpum-port']}/metrics", cert=flags["cert"],
                  dst_file_path=flags["dst-file-path"], tmp_dir_prefix=flags["tmp-dir-prefix"],
                  lane_count=flags["lane-count"], label_namespace=flags["label-namespace"],
                  allow_subdeviceless_links=flags["allow-subdeviceless-links"],
                  interval=float(flags["interval"]), startup_delay=float(flags["startup-delay"]),
                  metrics_address=flags[metrics_http.FLAG]), flags["v"], klog.ineffective(flags)


@command(PROG, lambda: _flagset().usage())
def main(argv: Sequence[str] | None = None) -> int:
    config, verbosity, klog_ignored = parse_config(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if verbosity >= 4 else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    klog.warn_ineffective(klog_ignored, LOG)
    stop = threading.Event()
    signals.stop_on_signals(stop, (signal.SIGTERM, signal.SIGINT))  # not stop.set() in a handler
    registry, endpoint = metrics_http.open_endpoint(config.metrics_address, PROG)
    LOG.info("scraping %s every %.0f s into %s", config.url, config.interval, config.dst_file_path)
    try:
        metrics = NO_SIDECAR_METRICS if registry is None else sidecar_metrics(registry)
        Sidecar(config, metrics=metrics).run(stop)
    finally:
        if endpoint is not None:
            endpoint.close()
    LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
