"""The real plugin process against hostile sysfs trees and the emulated kubelet (issue 11, 7/13).

``python -m gpu_plugin`` scans a FakeSysfs tree and serves the FakeKubelet over real gRPC; the
tree is then broken the way a hostile or buggy host would: a NUMA node past int64, a FIFO as an
attribute, ``class/drm`` unreadable.  Each time the other cards stay advertised and Healthy, the
stream stays up, the problem is logged once (no traceback), and the plugin's threads and file
descriptors stay bounded.  Also: SIGTERM at the largest -shared-dev-num is honoured promptly.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fakes.kubelet import FakeKubelet
from tests.fakes.sysfs import FakeSysfs

I915 = "gpu.intel.com/i915"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hsp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _bdf(card: int) -> str:
    return f"0000:{card + 3:02x}:00.0"


def _host(root: Path, cards: int) -> FakeSysfs:
    fs = FakeSysfs(root / "host")
    for card in range(cards):
        fs.add_gpu(_bdf(card), card=card, render=128 + card, numa=card % 2)
    return fs


class Plugin:
    """The plugin process; its log goes to a file (a pipe nobody reads would block it)."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def status(self, field: str) -> int:
        """A number from /proc/<pid>/status (Threads, VmRSS in kB)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


@contextmanager
def plugin(short_dir: Path, fs: FakeSysfs, *flags: str) -> Iterator[tuple[Plugin, FakeKubelet]]:
    kubelet_dir = short_dir / "kubelet"
    log = short_dir / "plugin.log"
    with FakeKubelet(kubelet_dir) as kubelet, log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpu_plugin", "-sysfs-root", fs.sysfs_root, "-devfs-root", fs.devfs_root,
             "-kubelet-dir", str(kubelet_dir), "-cdi-dir", str(short_dir / "cdi"), *flags],
            stdout=subprocess.DEVNULL, stderr=out)
        try:
            yield Plugin(proc, log), kubelet
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
    assert proc.returncode == 0 and "Traceback" not in log.read_text(errors="replace"), log.read_text()


def _wait_devices(kubelet: FakeKubelet, expected: dict[str, tuple[int, ...]], what: str) -> None:
    """kubelet sees exactly ``expected`` (device ID -> NUMA nodes), all Healthy."""
    def seen() -> bool:
        devices = kubelet.devices(I915)
        return ({i: d.numa_nodes for i, d in devices.items()} == expected
                and all(d.health == "Healthy" for d in devices.values()))
    kubelet.wait_for(seen, 20, what)


def _add_card_and_wait(fs: FakeSysfs, kubelet: FakeKubelet, card: int, expected: dict) -> None:
    """Hot-plug a good card and wait until kubelet has it: proof that a whole scan ran since."""
    fs.add_gpu(_bdf(card), card=card, render=128 + card, numa=0)
    expected[f"card{card}-0"] = (0,)
    _wait_devices(kubelet, expected, f"card{card} advertised")


@pytest.mark.parametrize("text", ["9223372036854775808", "-5", "garbage", "", "1e3", "4096"],
                         ids=["past int64", "negative", "garbage", "empty", "float", "past MAX_NUMNODES"])
def test_bad_numa_node_on_one_of_four_cards_keeps_the_stream(short_dir: Path, text: str) -> None:
    fs = _host(short_dir, 4)
    expected = {f"card{c}-0": (c % 2,) for c in range(4)}
    with plugin(short_dir, fs, "-scan-interval", "0.2") as (proc, kubelet):
        _wait_devices(kubelet, expected, "4 cards with topology")
        (fs.pci_dir(_bdf(2)) / "numa_node").write_text(text)
        expected["card2-0"] = ()
        _wait_devices(kubelet, expected, "card2 without topology, the others unchanged")
        fds, threads = proc.fds(), proc.status("Threads")
        for card in (4, 5, 6):  # three more whole scans with the bad file in place
            _add_card_and_wait(fs, kubelet, card, expected)
        assert kubelet.connected(I915) and len(kubelet.registered(I915)) == 1
        (fs.pci_dir(_bdf(2)) / "numa_node").write_text("1")
        expected["card2-0"] = (1,)
        _wait_devices(kubelet, expected, "card2's topology back once the file is fixed")
        assert proc.fds() <= fds + 2 and proc.status("Threads") <= threads + 1
    warnings = [line for line in proc.text().splitlines() if "card2: ignoring its NUMA node" in line]
    assert len(warnings) == (0 if text == "-5" else 1), proc.text()  # -1 and below: "no NUMA", quietly


@pytest.mark.parametrize("attribute", ["vendor", "class", "device", "numa_node", "sriov_numvfs"])
def test_fifo_as_sysfs_attribute_does_not_stall_the_scan(short_dir: Path, attribute: str) -> None:
    fs = _host(short_dir, 1)
    expected = {"card0-0": (0,)}
    with plugin(short_dir, fs, "-scan-interval", "0.2") as (proc, kubelet):
        _wait_devices(kubelet, expected, "card0")
        fs.add_gpu(_bdf(1), card=1, render=129, numa=0)
        fifo = fs.pci_dir(_bdf(1)) / attribute
        fifo.unlink(missing_ok=True)
        os.mkfifo(fifo)
        fds, threads = proc.fds(), proc.status("Threads")
        for card in (2, 3, 4):  # a new card is advertised after the FIFO card appeared, three times
            _add_card_and_wait(fs, kubelet, card, expected)
        assert proc.fds() <= fds + 2 and proc.status("Threads") <= threads + 1
    skipped = [line for line in proc.text().splitlines() if "card1" in line and "not a regular file" in line]
    assert len(skipped) == 1, proc.text()


def _not_a_directory(drm: Path) -> None:
    drm.rename(drm.with_name("drm.away"))
    drm.write_text("")


def _symlink_loop(drm: Path) -> None:
    drm.rename(drm.with_name("drm.away"))
    os.symlink("drm", drm)


def _restore(drm: Path) -> None:
    drm.unlink()
    drm.with_name("drm.away").rename(drm)


@pytest.mark.parametrize("breaker", [_not_a_directory, _symlink_loop],
                         ids=["not a directory", "symlink loop"])
def test_unreadable_class_drm_keeps_devices_and_logs_one_line(
        short_dir: Path, breaker: Callable[[Path], None]) -> None:
    fs = _host(short_dir, 2)
    expected = {"card0-0": (0,), "card1-0": (1,)}
    drm = Path(fs.sysfs_root) / "class" / "drm"
    with plugin(short_dir, fs, "-scan-interval", "0.1", "-v", "2") as (proc, kubelet):
        _wait_devices(kubelet, expected, "2 cards")
        breaker(drm)
        fds = proc.fds()
        kubelet.wait_for(lambda: proc.text().count("GPU scan still failing") >= 5, 20, "5 failed rescans")
        assert proc.fds() <= fds + 2
        _wait_devices(kubelet, expected, "the last devices still advertised")
        _restore(drm)
        kubelet.wait_for(lambda: "GPU scan works again" in proc.text(), 20, "recovery logged")
        _add_card_and_wait(fs, kubelet, 2, expected)
        assert len(kubelet.registered(I915)) == 1
    failures = [line for line in proc.text().splitlines() if "GPU scan failed" in line]
    assert len(failures) == 1 and "class/drm" in failures[0], proc.text()


def test_sigterm_at_the_largest_shared_dev_num_is_prompt(short_dir: Path) -> None:
    """-shared-dev-num 10000000 once reached 5.3 GB and ignored SIGTERM for 15 s; the bound (1000)
    keeps 16 cards x 1000 IDs small, and SIGTERM ends the process at once."""
    fs = _host(short_dir, 16)
    with plugin(short_dir, fs, "-shared-dev-num", "1000") as (proc, kubelet):
        kubelet.wait_for(lambda: kubelet.allocatable(I915) == 16000, 60, "16,000 device IDs")
        rss_mb = proc.status("VmRSS") / 1024
        assert rss_mb < 400, rss_mb
        assert proc.status("Threads") < 40
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(10) == 0


@pytest.mark.parametrize("attribute,text", [("vendor", None), ("numa_node", "garbage"), ("class", None)],
                         ids=["FIFO vendor", "garbage numa_node", "FIFO class"])
def test_a_bad_card_is_logged_when_it_appears_not_per_rescan(
        short_dir: Path, caplog: pytest.LogCaptureFixture, attribute: str, text: str | None) -> None:
    """In-process: the warning comes with the first scan that sees the problem, not with every rescan,
    and again after the problem went away and came back."""
    from gpu_plugin import scan as gs

    fs = _host(short_dir, 2)
    path = fs.pci_dir(_bdf(1)) / attribute
    good = path.read_text()

    def break_it() -> None:
        path.unlink()
        if text is None:
            os.mkfifo(path)
        else:
            path.write_text(text)

    def warnings_after_scans(scans: int) -> int:
        caplog.clear()
        for _ in range(scans):
            tree = gs.scan(fs.sysfs_root, fs.devfs_root)
            assert "card0-0" in tree["i915"]
        return sum(1 for r in caplog.records if r.levelname == "WARNING" and "card1" in r.getMessage())

    with caplog.at_level("WARNING"):
        break_it()
        assert warnings_after_scans(3) == 1
        path.unlink()
        path.write_text(good)
        assert warnings_after_scans(2) == 0
        break_it()
        assert warnings_after_scans(2) == 1
