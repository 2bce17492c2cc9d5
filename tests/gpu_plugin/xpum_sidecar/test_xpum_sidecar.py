"""`intel-xpumanager-sidecar`: upstream's label cases, and scrapes of a real HTTP(S) server.

Emulated: XPU Manager's /metrics endpoint (tests/fakes/xpum_metrics.py serves whatever body and
status a test sets). The TLS case uses a throw-away self-signed certificate made with openssl.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gpu_plugin.xpum_sidecar import main as xs
from tests.fakes.xpum_metrics import FakeXpumMetrics
from tests.scrape import url_from_log, wait_value

HELP = ["# HELP xpum_topology_link Connection type fo two GPU tiles", "# TYPE xpum_topology_link gauge"]
CARD = ('dev_file="card1",dev_name="Intel(R) Graphics [0x0bdb]",pci_bdf="0000:51:00.0",pci_dev="0xbdb",'
        'src="direct",uuid="01000000-0000-0000-0000-000000510000",vendor="Intel(R) Corporation",'
        'local_cpu_affinity="0-23,48-71",local_numa_index="0",')


def _link(local: str, remote: str, lanes: str = "4", on_sub: str = "true", value: str = "1",
          key: str = "lan_count", card: bool = False) -> str:
    (ld, ls), (rd, rs) = local.split("."), remote.split(".")
    lane = f', {key}="{lanes}"' if lanes else ""
    return (f'xpum_topology_link{{{CARD if card else ""}local_device_id="{ld}",local_on_subdevice="{on_sub}",'
            f'local_subdevice_id="{ls}",remote_device_id="{rd}",remote_subdevice_id="{rs}"{lane}}} {value}')


_multi = [_link("0.0", "2.0"), _link("1.0", "3.0", "8"), _link("3.1", "0.1", "8"), _link("2.1", "1.1")]
for _d in (4, 6, 8):
    _multi += [_link(f"{_d}.0", "2.0"), _link(f"{_d}.1", "3.0", "8"), _link(f"{_d + 1}.0", "0.1", "8"),
               _link(f"{_d + 1}.1", "1.1")]

# upstream's createTestCases(): (id, metrics lines, min lane count, allow subdeviceless, labels)
CASES = [
    ("no-xelinks", HELP + ['xpum_some_other_data{with_some_label="foo"} 42',
                           _link("0.0", "0.0", "", "false", "0", card=True),
                           _link("0.0", "1.0", "", "false", "4", card=True)], 4, False, [""]),
    ("not-on-subdevices", HELP + [_link("0.0", "1.0", on_sub="false", key="lane_count", card=True),
                                  _link("0.0", "1.1", on_sub="false", key="lane_count", card=True)],
     4, False, [""]),
    ("not-on-subdevices-allowed", HELP + [_link("0.0", "1.0", on_sub="false", key="lane_count", card=True),
                                          _link("0.0", "1.1", on_sub="false", key="lane_count", card=True)],
     4, True, ["0.0-1.0_0.0-1.1"]),
    ("without-lane-counts", HELP + [_link("0.0", "0.0", "", value="1.0", card=True)], 4, False, [""]),
    ("one-xelink", HELP + [_link("0.0", "1.0", value="1.0", card=True)], 4, False, ["0.0-1.0"]),
    ("one-xelink-with-non-xelink",
     HELP + ['xpum_topology_link{local_device_id="99",local_on_subdevice="false",local_subdevice_id="0",'
             'remote_device_id="0",remote_subdevice_id="0"} 0', _link("0.0", "1.0", value="1.0", card=True)],
     4, False, ["0.0-1.0"]),
    ("cross-linked-subdevs", HELP + [_link("0.0", "1.1", card=True), _link("1.0", "0.1", card=True)],
     4, False, ["0.0-1.1_0.1-1.0"]),
    ("one-to-many", [_link("0.0", "1.0"), _link("0.0", "2.2", key="lane_count"), _link("0.0", "3.0")],
     4, False, ["0.0-1.0_0.0-2.2_0.0-3.0"]),
    ("many-to-many",
     HELP + [_link("0.0", "2.0"), _link("1.0", "3.0"), _link("3.1", "0.1"), _link("2.1", "1.1")],
     4, False, ["0.0-2.0_1.0-3.0_0.1-3.1_1.1-2.1"]),
    ("too-few-lanes", HELP + [_link("0.0", "2.0"), _link("1.0", "3.0", "8"), _link("3.1", "0.1", "8"),
                              _link("2.1", "1.1")], 8, False, ["1.0-3.0_0.1-3.1"]),
    ("multi-line-label", HELP + _multi, 4, False,
     ["0.0-2.0_1.0-3.0_0.1-3.1_1.1-2.1_2.0-4.0_3.0-4.1_0.1-5.0_1.1-5.1",
      "Z_2.0-6.0_3.0-6.1_0.1-7.0_1.1-7.1_2.0-8.0_3.0-8.1_0.1-9.0_1.1-9", "Z.1"]),
]
NS = "xpumanager.intel.com"


def _expected(values: list[str]) -> list[str]:
    return [f"{NS}/xe-links{'' if i == 1 else i}={v}" for i, v in enumerate(values, 1)]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_labeling(case: tuple) -> None:
    _, lines, lanes, allow, values = case
    links = xs.topology_from_metrics("\n".join(lines + [""]), allow)
    assert xs.create_labels(links, lanes, NS) == _expected(values)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_iterate_writes_the_file(tmp_path: Path, case: tuple) -> None:
    _, lines, lanes, allow, values = case
    dst = tmp_path / "labels.txt"
    config = xs.Config(url="unused", dst_file_path=str(dst), tmp_dir_prefix=str(tmp_path), lane_count=lanes,
                       label_namespace=NS, allow_subdeviceless_links=allow)
    assert xs.Sidecar(config, fetch=lambda: "\n".join(lines)).iterate()
    assert dst.read_text().splitlines() == _expected(values)
    assert os.listdir(tmp_path) == ["labels.txt"]  # the temporary directory is gone


def test_garbage_metrics_do_not_parse() -> None:
    """Upstream writes an empty xe-links label for garbage; here it is a parse error (file kept)."""
    with pytest.raises(xs.MetricsParseError):
        xs.topology_from_metrics("xpum_some_other_data{with_some_label]]]]}\n")
    assert xs.create_labels([], 4, NS) == [f"{NS}/xe-links="]


@pytest.mark.parametrize("text", [
    "metric 1 2 3", "metric{a=\"1\"", "metric{a=\"1\",a=\"2\"} 1", "metric{a=\"\\q\"} 1", "metric",
    "metric one", "1metric 1", "# TYPE metric gauge\n# TYPE metric gauge", "metric 1\n# TYPE metric gauge",
    "# TYPE metric bogus", "metric 1_0",
], ids=["extra-field", "unclosed", "duplicate-label", "bad-escape", "no-value", "word-value", "bad-name",
        "second-type", "type-after-sample", "bad-type", "underscore-float"])
def test_parser_rejects(text: str) -> None:
    with pytest.raises(xs.MetricsParseError):
        xs.parse_metrics(text)


def test_parser_accepts_prometheus_forms() -> None:
    m = xs.parse_metrics('# some comment\n  a{x="1" , y="q\\"\\n\\\\",} +Inf 1700000000000\n'
                         'b NaN\n# HELP c x\n')
    assert m.samples[0].labels == (("x", "1"), ("y", 'q"\n\\'))
    assert m.samples[0].value == float("inf") and m.samples[1].name == "b"


def test_counter_typed_topology_is_ignored() -> None:
    text = "# TYPE xpum_topology_link counter\n" + _link("0.0", "1.0")
    assert xs.topology_from_metrics(text) == []


# --- against a real HTTP server -----------------------------------------------------------------

GOOD = "\n".join(HELP + [_link("0.0", "1.0"), _link("1.0", "0.0")])
BETTER = "\n".join(HELP + [_link("0.0", "1.0"), _link("0.1", "1.1")])


def _config(tmp_path: Path, port: int, **kw: object) -> xs.Config:
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    return xs.Config(url=kw.pop("url", f"http://127.0.0.1:{port}/metrics"),  # type: ignore[arg-type]
                     dst_file_path=str(tmp_path / "xpum-sidecar-labels.txt"), tmp_dir_prefix=str(tmp), **kw)


def test_failed_scrapes_keep_the_last_good_file(tmp_path: Path) -> None:
    with FakeXpumMetrics() as xpum:
        config = _config(tmp_path, xpum.port)
        sidecar = xs.Sidecar(config)
        dst = Path(config.dst_file_path)
        xpum.set_metrics(GOOD)
        assert sidecar.iterate()
        assert dst.read_text() == "gpu.intel.com/xe-links=0.0-1.0\n"
        inode = dst.stat().st_ino
        for body, status in (("xpum_some_other_data{with_some_label]]]]}", 200), (GOOD, 500),
                             ("<html>bad gateway</html>", 502)):
            xpum.set_metrics(body, status)
            assert not sidecar.iterate()
            assert dst.read_text() == "gpu.intel.com/xe-links=0.0-1.0\n"
        xpum.set_metrics(GOOD)
        assert sidecar.iterate()
        assert dst.stat().st_ino == inode  # unchanged labels: the file is not rewritten
        xpum.set_metrics(BETTER)
        assert sidecar.iterate()
        assert dst.read_text() == "gpu.intel.com/xe-links=0.0-1.0_0.1-1.1\n"
        assert dst.stat().st_ino != inode  # replaced by rename, never written in place
        assert os.listdir(config.tmp_dir_prefix) == []
    assert not sidecar.iterate()  # connection refused: server gone
    assert dst.read_text() == "gpu.intel.com/xe-links=0.0-1.0_0.1-1.1\n"


def test_no_file_before_first_good_scrape(tmp_path: Path) -> None:
    config = _config(tmp_path, 1)
    assert not xs.Sidecar(config, fetch=lambda: "garbage{").iterate()
    assert not os.path.exists(config.dst_file_path)


def test_unwritable_destination_is_reported_not_raised(tmp_path: Path) -> None:
    config = _config(tmp_path, 1, lane_count=4)
    config = xs.Config(**{**config.__dict__, "dst_file_path": str(tmp_path / "no" / "such" / "dir" / "f")})
    assert not xs.Sidecar(config, fetch=lambda: GOOD).iterate()
    assert os.listdir(config.tmp_dir_prefix) == []


def _self_signed(tmp_path: Path, name: str) -> tuple[str, str]:
    cert, key = str(tmp_path / f"{name}.crt"), str(tmp_path / f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", f"/CN={name}",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=30)
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI to make a certificate")
def test_https_with_ca(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, "xpum")
    other, _ = _self_signed(tmp_path, "other")
    with FakeXpumMetrics(certfile=cert, keyfile=key) as xpum:
        xpum.set_metrics(GOOD)
        url = f"https://127.0.0.1:{xpum.port}/metrics"
        good = xs.Sidecar(_config(tmp_path, xpum.port, url=url, cert=cert))
        assert good.iterate()
        assert Path(good.config.dst_file_path).read_text() == "gpu.intel.com/xe-links=0.0-1.0\n"
        with pytest.raises(xs.ScrapeError):
            xs.fetch_metrics(url, other)  # wrong CA
        with pytest.raises(xs.ScrapeError):
            xs.fetch_metrics(url, str(tmp_path / "missing.crt"))


def test_cli_scrapes_every_interval_and_removes_file_on_sigterm(tmp_path: Path) -> None:
    with FakeXpumMetrics() as xpum:
        xpum.set_metrics(GOOD)
        config = _config(tmp_path, xpum.port)
        log_path = tmp_path / "sidecar.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "gpu_plugin.xpum_sidecar", "-interval", "1",
                                     "-startup-delay=0", "--xpum-port", str(xpum.port), "-label-namespace",
                                     NS, "-dst-file-path", config.dst_file_path,
                                     "-tmp-dir-prefix", config.tmp_dir_prefix, "-metrics-address", ":0"],
                                    stderr=log, text=True)
        try:
            url = url_from_log(log_path, alive=lambda: proc.poll() is None)
            assert xpum.wait_requests(1)
            deadline = time.monotonic() + 10
            while not os.path.exists(config.dst_file_path) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert Path(config.dst_file_path).read_text() == f"{NS}/xe-links=0.0-1.0\n"
            good = wait_value(url, "intel_xpumanager_sidecar_rounds_total", lambda v: v >= 1,
                              outcome="written")
            assert good.value("intel_xpumanager_sidecar_xe_links") == 1
            assert good.value("intel_xpumanager_sidecar_last_success_timestamp_seconds") > 1.7e9
            xpum.set_metrics("not prometheus {")
            assert xpum.wait_requests(xpum.requests + 1)
            bad = wait_value(url, "intel_xpumanager_sidecar_rounds_total", lambda v: v >= 1,
                             outcome="scrape_failed")
            assert bad.value("intel_xpumanager_sidecar_xe_links") == 1  # the file still holds the link
            assert Path(config.dst_file_path).read_text() == f"{NS}/xe-links=0.0-1.0\n"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    err = log_path.read_text()
    assert proc.returncode == 0, err
    assert "keeping the previous labels" in err
    assert not os.path.exists(config.dst_file_path)


@pytest.mark.parametrize("args,flag", [
    (["-interval", "0"], "-interval"),
    (["-interval", "x"], "-interval"),
    (["-startup-delay", "-1"], "-startup-delay"),
    (["-xpum-port", "70000"], "-xpum-port"),
    (["-lane-count", "-1"], "-lane-count"),
    (["-label-namespace", "Bad_NS"], "-label-namespace"),
    (["-allow-subdeviceless-links=maybe"], "-allow-subdeviceless-links"),
    (["-cert"], "-cert"),
    (["-bogus"], "-bogus"),
    # issue 11 item 14: no OverflowError traceback from the timed waits
    (["-interval", str(2**63 - 1)], "-interval"),
    (["-startup-delay", str(2**63 - 1)], "-startup-delay"),
    (["-interval", str(2**64)], "-interval"),
    (["-interval", str(xs.MAX_PERIOD + 1)], "-interval"),
    (["-startup-delay", str(xs.MAX_PERIOD + 1)], "-startup-delay"),
    (["-interval", "inf"], "-interval"),
    (["-startup-delay", "nan"], "-startup-delay"),
    (["-interval", "1e309"], "-interval"),
    (["-interval", "-5"], "-interval"),
    (["-vmodule", "sidecar"], "-vmodule"),
    (["-metrics-address", "nohost"], "-metrics-address"),
], ids=["zero-interval", "word-interval", "negative-delay", "port-range", "negative-lanes", "bad-namespace",
        "bad-bool", "missing-value", "unknown", "interval-int64-max", "delay-int64-max",
        "interval-uint64-overflow", "interval-over-a-year", "delay-over-a-year", "interval-inf", "delay-nan",
        "interval-1e309", "negative-interval", "bad-klog-vmodule", "bad-metrics-address"])
def test_bad_flags_exit_2_with_one_line(args: list[str], flag: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "gpu_plugin.xpum_sidecar", *args], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and flag in proc.stderr, proc.stderr


def test_period_bounds_are_inclusive() -> None:
    config, _, _ = xs.parse_config(["-interval", str(xs.MAX_PERIOD), "-startup-delay", str(xs.MAX_PERIOD)])
    assert (config.interval, config.startup_delay) == (xs.MAX_PERIOD, xs.MAX_PERIOD)
    config, _, _ = xs.parse_config(["-interval", "1", "-startup-delay", "0"])
    assert (config.interval, config.startup_delay) == (1, 0)
    # Event.wait ends in a lock acquire with that timeout: the bound is one it takes, 2^63-1 is not
    assert threading.Lock().acquire(timeout=xs.MAX_PERIOD)
    with pytest.raises(OverflowError):
        threading.Lock().acquire(timeout=2**63 - 1)


def test_klog_flags_accepted_and_named() -> None:
    _, verbosity, ignored = xs.parse_config(["-logtostderr", "-v=4", "-log_file_max_size=1",
                                             "-alsologtostderr"])
    assert (verbosity, ignored) == (4, ["-log_file_max_size"])
