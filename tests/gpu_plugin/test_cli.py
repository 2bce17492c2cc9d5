"""``python -m gpu_plugin``: flag table (exit 2, one stderr line naming the flag) and parsed options.

The bad-flag table runs the real program in subprocesses (started together to keep the suite fast);
upstream's TestCheckArgs cases are among them.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gpu_plugin import cli
from gpu_plugin.common.errors import UsageError
from gpu_plugin.common.goflags import FlagError

ROOTS = ["-sysfs-root", "/", "-devfs-root", "/"]  # existing dirs, so only the flag under test is wrong

BAD = [
    # (id, argv, flag named in the message, words in the message)
    ("unknown flag", ["-bogus"], "-bogus", "not defined"),
    ("unknown double-dash flag", ["--bogus=1"], "-bogus", "not defined"),
    ("missing value", ["-shared-dev-num"], "-shared-dev-num", "needs an argument"),
    ("not a number", ["-shared-dev-num", "two"], "-shared-dev-num", "invalid value"),
    ("bad sharedDevNum", ["-shared-dev-num", "0"], "-shared-dev-num", "greater than zero"),
    (
        "bad allocation policy",
        ["-allocation-policy", "spread"],
        "-allocation-policy",
        "balanced, packed, none",
    ),
    ("empty allocation policy", ["-allocation-policy="], "-allocation-policy", "valid values"),
    (
        "both allow and deny IDs",
        ["-allow-ids", "0x1234", "-deny-ids", "0x5678"],
        "-allow-ids",
        "cannot use both allow-ids and deny-ids",
    ),
    ("invalid allow ID format", ["-allow-ids", "0x1234,abcd"], "-allow-ids", "invalid PCI ID: abcd"),
    ("invalid deny ID format", ["-deny-ids", "0x1234,abcd"], "-deny-ids", "invalid PCI ID: abcd"),
    ("deny ID extra comma", ["-deny-ids", "0x1234,"], "-deny-ids", "empty PCI ID"),
    ("invalid monitoring mode", ["-monitoring-mode", "foobar"], "-monitoring-mode", "split, single"),
    ("invalid bypath", ["-bypath", "some"], "-bypath", "single, none, all"),
    ("wsl error with monitoring", ["-wsl", "-enable-monitoring"], "-wsl", "monitoring is not supported"),
    ("wsl error with health", ["-wsl", "-health-management"], "-wsl", "health management is not supported"),
    ("wsl error with xpumd health", ["-wsl", "-xpumd-endpoint", "/foo/bar/socket.sock"], "-wsl",
     "health management is not supported"),
    (
        "health and xpumd at the same time",
        ["-health-management", "-xpumd-endpoint", "/foo/bar/socket.sock"],
        "-xpumd-endpoint",
        "cannot use both Level-Zero sidecar and xpumd",
    ),
    (
        "xpumd health error with temp limit",
        ["-xpumd-endpoint", "/x.sock", "-temp-limit", "50"],
        "-temp-limit",
        "temperature limits do not work with xpumd",
    ),
    (
        "xpumd endpoint too long",
        ["-xpumd-endpoint", "/" + "x" * 120],
        "-xpumd-endpoint",
        "longer than 107 bytes",
    ),
    ("zero scan interval", ["-scan-interval", "0"], "-scan-interval", "between 0.1 and 86400"),
    # hostile values that once got a traceback, a busy loop or an unbounded tree (issue 11, items 6, 14)
    *[(f"scan interval {v}", ["-scan-interval", v], "-scan-interval", "between 0.1 and 86400")
      for v in ("inf", "-inf", "1e12", "1e309", "nan", "1e-300", "0.09", "86401")],
    *[(f"shared-dev-num {v}", ["-shared-dev-num", v], "-shared-dev-num", "at most 1000")
      for v in ("1001", "100000000", "9223372036854775807")],
    ("shared-dev-num past int64", ["-shared-dev-num", "9223372036854775808"], "-shared-dev-num",
     "invalid value"),
    ("empty kubelet dir", ["-kubelet-dir", ""], "-kubelet-dir", "must not be empty"),
    ("kubelet dir a file", ["-kubelet-dir", "/etc/hostname"], "-kubelet-dir", "not a directory"),
    ("kubelet dir too long for a socket", ["-kubelet-dir", "/tmp/" + "k" * 69], "-kubelet-dir",
     "longer than 107 bytes"),
    ("levelzero socket too long", ["-health-management", "-levelzero-socket", "/" + "l" * 107],
     "-levelzero-socket", "longer than 107 bytes"),
    ("metrics address without port", ["-metrics-address", "localhost"], "-metrics-address", "HOST]:PORT"),
    ("metrics port out of range", ["-metrics-address", ":70000"], "-metrics-address", "PORT 0-65535"),
    ("metrics bare ipv6", ["-metrics-address", "::1:9"], "-metrics-address", "[HOST]:PORT"),
    ("bad verbosity", ["-v", "high"], "-v", "invalid value"),
    ("bad bool value", ["-wsl=maybe"], "-wsl", "invalid value"),
    ("bad klog vmodule", ["-vmodule", "gpu_plugin"], "-vmodule", "invalid value"),
    ("bad klog stderrthreshold", ["-stderrthreshold=LOUD"], "-stderrthreshold", "invalid value"),
    ("bad klog log_file_max_size", ["-log_file_max_size=-1"], "-log_file_max_size", "invalid value"),
    ("positional argument", ["extra"], "extra", "unexpected argument"),
    ("resource manager prerequisites", ["-resource-manager"], "-resource-manager", "prerequisites missing"),
]

ROOT_BAD = [
    ("missing sysfs root", ["-sysfs-root", "/nonexistent/sys", "-devfs-root", "/"], "-sysfs-root"),
    ("missing devfs root", ["-sysfs-root", "/", "-devfs-root", "/nonexistent/dev"], "-devfs-root"),
    ("missing prefix roots", ["-prefix", "/nonexistent"], "-prefix"),
]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpu_plugin", *argv], capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def results() -> dict[str, subprocess.CompletedProcess[str]]:
    cases = {name: ROOTS + argv for name, argv, *_ in BAD}
    cases.update({name: argv for name, argv, _ in ROOT_BAD})
    with ThreadPoolExecutor(8) as pool:
        return dict(zip(cases, pool.map(_run, cases.values()), strict=True))


def _assert_one_line_usage_error(proc: subprocess.CompletedProcess[str], flag: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Usage" not in proc.stderr
    assert lines[0].startswith("intel-gpu-plugin: ") and flag in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("name,flag,words", [(c[0], c[2], c[3]) for c in BAD], ids=[c[0] for c in BAD])
def test_bad_flags_exit_2_with_one_line(results: dict, name: str, flag: str, words: str) -> None:
    assert words in _assert_one_line_usage_error(results[name], flag)


@pytest.mark.parametrize("name,flag", [(c[0], c[2]) for c in ROOT_BAD], ids=[c[0] for c in ROOT_BAD])
def test_missing_roots_exit_2(results: dict, name: str, flag: str) -> None:
    assert "does not exist" in _assert_one_line_usage_error(results[name], flag)


def test_help_prints_usage_and_exits_0() -> None:
    proc = _run(["-h"])
    assert proc.returncode == 0 and "-shared-dev-num int" in proc.stdout and proc.stderr == ""


# -- parsing in-process ------------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    opts = cli.parse(ROOTS)
    assert (
        opts.kubelet_dir,
        opts.cdi_dir,
        opts.levelzero_socket,
        opts.scan_interval,
        opts.allocation_policy,
    ) == ("/var/lib/kubelet/device-plugins", "/var/run/cdi", "/var/lib/levelzero/server.sock", 5.0, "none")
    assert (
        opts.scan.monitoring_mode == "single"  # upstream's default since 2026-03
        and opts.scan.bypath == "single"
        and opts.scan.shared_dev_num == 1
    )
    assert opts.temp_limits == (100, 100, 100) and not opts.health_management and opts.verbosity == 0


def test_upstream_style_command_line(tmp_path: Path) -> None:
    (tmp_path / "sys").mkdir()
    (tmp_path / "dev").mkdir()
    opts = cli.parse(
        [
            "-prefix",
            str(tmp_path),
            "--shared-dev-num=10",
            "-allocation-policy",
            "balanced",
            "-enable-monitoring",
            "-monitoring-mode=single",
            "-bypath",
            "all",
            "-health-management",
            "-temp-limit",
            "90",
            "-gpu-temp-limit=95",
            "-memory-temp-limit",
            "85",
            "-deny-ids",
            "0x56c0, 0x56c1",
            "-v=4",
            "-logtostderr",
            "-vmodule=x=2",
        ]
    )
    assert (opts.sysfs_root, opts.devfs_root) == (f"{tmp_path}/sys", f"{tmp_path}/dev")
    assert opts.scan.shared_dev_num == 10 and opts.allocation_policy == "balanced"
    assert opts.scan.enable_monitoring and opts.scan.monitoring_mode == "single" and opts.scan.bypath == "all"
    assert opts.scan.deny_ids == {"0x56c0", "0x56c1"} and opts.health_management
    assert opts.temp_limits == (90, 95, 85) and opts.verbosity == 4


# upstream's TestCheckArgs cases that must pass (the failing ones are in BAD above)
CHECK_ARGS_OK = [
    ("valid allow IDs", ["-allow-ids", "0x1234,0x5678"], {"allow": {"0x1234", "0x5678"}}),
    ("valid deny IDs", ["-deny-ids", "0x1234,0x5678"], {"deny": {"0x1234", "0x5678"}}),
    ("no allow or deny IDs", ["-allow-ids=", "-deny-ids="], {"allow": set(), "deny": set()}),
    ("levelzero health", ["-health-management", "-xpumd-endpoint="], {"health": True, "xpumd": ""}),
    ("xpumd health", ["-xpumd-endpoint", "/foo/bar/socket.sock", "-temp-limit=100", "-memory-temp-limit=100",
                      "-gpu-temp-limit=100"], {"health": False, "xpumd": "/foo/bar/socket.sock"}),
    ("wsl", ["-wsl"], {"wsl": True}),
    ("split monitoring", ["-enable-monitoring", "-monitoring-mode", "split"], {"mode": "split"}),
]


@pytest.mark.parametrize("argv,expected", [c[1:] for c in CHECK_ARGS_OK], ids=[c[0] for c in CHECK_ARGS_OK])
def test_upstream_check_args_valid_cases(argv: list[str], expected: dict) -> None:
    opts = cli.parse(ROOTS + ["-shared-dev-num=1", "-allocation-policy=none", *argv])
    got = {"allow": set(opts.scan.allow_ids), "deny": set(opts.scan.deny_ids),
           "health": opts.health_management, "xpumd": opts.xpumd_endpoint, "wsl": opts.wsl,
           "mode": opts.scan.monitoring_mode}
    assert {k: got[k] for k in expected} == expected


def test_klog_flags_accepted_and_the_ineffective_ones_named() -> None:
    quiet = cli.parse(ROOTS + ["-logtostderr", "-logtostderr=true", "-alsologtostderr", "-v=3",
                               "-log_file_max_size=1800", "-stderrthreshold=2"])
    assert quiet.klog_ignored == () and quiet.verbosity == 3
    opts = cli.parse(ROOTS + ["-logtostderr=false", "-log_dir=/var/log/gpu", "-log_file_max_size", "10",
                              "-vmodule=scan=4,plugin*=2", "-log_backtrace_at=gpu_plugin.go:12",
                              "-stderrthreshold=WARNING", "-skip_headers", "-add_dir_header", "-one_output",
                              "-skip_log_headers", "-log_file=/x.log",
                              "-legacy_stderr_threshold_behavior=false"])
    assert set(opts.klog_ignored) == {
        "-logtostderr", "-log_dir", "-log_file_max_size", "-vmodule", "-log_backtrace_at", "-stderrthreshold",
        "-skip_headers", "-add_dir_header", "-one_output", "-skip_log_headers", "-log_file",
        "-legacy_stderr_threshold_behavior"}


def test_explicit_roots_win_over_prefix(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    opts = cli.parse(["-prefix", str(tmp_path), "-sysfs-root", "/"])
    assert (opts.sysfs_root, opts.devfs_root) == ("/", f"{tmp_path}/dev")


@pytest.mark.parametrize("argv,error", [(["-shared-dev-num", "0"], UsageError), (["-nope"], FlagError)])
def test_parse_raises_typed_errors(argv: list[str], error: type) -> None:
    with pytest.raises(error):
        cli.parse(ROOTS + argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["-shared-dev-num", "1000"],
        ["-scan-interval", "0.1"],
        ["-scan-interval", "86400"],
        ["-kubelet-dir", "/tmp/" + "k" * 67],  # longest socket path exactly 107 bytes
        ["-kubelet-dir", "relative/dir"],
        ["-health-management", "-levelzero-socket", "/" + "l" * 106],
    ],
    ids=["max shared-dev-num", "min scan interval", "max scan interval", "kubelet dir at the limit",
         "relative kubelet dir", "levelzero socket at the limit"],
)
def test_bounds_are_inclusive(argv: list[str]) -> None:
    opts = cli.parse(ROOTS + argv)
    assert (opts.scan.shared_dev_num, opts.scan_interval, opts.kubelet_dir) == (
        int(argv[1]) if argv[0] == "-shared-dev-num" else 1,
        float(argv[1]) if argv[0] == "-scan-interval" else 5.0,
        argv[1] if argv[0] == "-kubelet-dir" else "/var/lib/kubelet/device-plugins",
    )


def test_help_names_the_bounds() -> None:
    usage = cli.flagset().usage()
    assert "(1-1000)" in usage and "(0.1-86400)" in usage


def test_resource_manager_prerequisites(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token, ca, sock = tmp_path / "token", tmp_path / "ca.crt", tmp_path / "kubelet.sock"
    for f in (token, ca, sock):
        f.write_text("")
    monkeypatch.setattr(cli, "SERVICE_ACCOUNT_TOKEN", str(token))
    monkeypatch.setattr(cli, "SERVICE_ACCOUNT_CA", str(ca))
    monkeypatch.setattr(cli, "POD_RESOURCES_SOCKET", str(sock))
    monkeypatch.setenv("NODE_NAME", "node-1")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    rm = cli.parse(ROOTS + ["-resource-manager", "-shared-dev-num", "2"]).resource_manager
    assert rm is not None
    assert (rm.node_name, rm.kubeconfig, rm.podresources_socket) == ("node-1", None, str(sock))
    monkeypatch.delenv("NODE_NAME")
    with pytest.raises(UsageError, match="prerequisites missing: NODE_NAME env$"):
        cli.parse(ROOTS + ["-resource-manager", "-shared-dev-num", "2"])
