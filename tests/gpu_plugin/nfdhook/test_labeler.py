"""Upstream's labeler tests (cmd/internal/labeler/labeler_test.go, pluginutils/labels_test.go), ported.

Each case lays out plain directories and files the way upstream's ``createFiles`` does, under
``<tmp>/pci0000:00/0000:00:1b.4/sys/`` (the pci-groups cases depend on that path), and compares the
whole label map. Environment variables are passed as a mapping instead of os.Setenv.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpu_plugin.nfdhook import labeler

NS = "gpu.intel.com/"


def _cards(n: int, numa: dict[int, int] | None = None) -> tuple[list[str], dict[str, str]]:
    dirs = [f"card{i}/device/drm/card{i}" for i in range(n)]
    files = {f"card{i}/device/vendor": "0x8086" for i in range(n)}
    for i, node in (numa or {}).items():
        files[f"card{i}/device/numa_node"] = str(node)
    return dirs, files


_many_dirs, _many_files = _cards(27)
_numa_of = {**{i: 0 for i in range(9)}, **{i: 2 for i in range(9, 13)}, **{i: 1 for i in range(13, 22)},
            **{i: 3 for i in range(22, 27)}}
_numa_dirs, _numa_files = _cards(27, _numa_of)

# (id, dirs, files, memory override, memory reserved, pci group level, expected labels)
CASES = [
    ("lmem_total_bytes", ["card0/device/drm/card0", "card0/gt/gt0"],
     {"card0/device/vendor": "0x8086", "card0/lmem_total_bytes": "8086"}, 16000000000, 0, 0,
     {"millicores": "1000", "memory.max": "8086", "cards": "card0", "gpu-numbers": "0", "tiles": "1"}),
    ("pf-with-vfs", ["card0/device/drm/card0"],
     {"card0/device/vendor": "0x8086", "card0/device/sriov_numvfs": "1"}, 16000000000, 0, 0,
     {"tiles": "0"}),
    ("lmem-two-tiles", ["card0/device/drm/card0", "card0/gt/gt0", "card0/gt/gt1"],
     {"card0/device/vendor": "0x8086", "card0/lmem_total_bytes": "8000"}, 16000000000, 0, 0,
     {"millicores": "1000", "memory.max": "16000", "cards": "card0", "gpu-numbers": "0", "tiles": "2"}),
    ("lmem-reserved", ["card0/device/drm/card0", "card0/gt/gt0"],
     {"card0/device/vendor": "0x8086", "card0/lmem_total_bytes": "8086"}, 16000000000, 86, 0,
     {"millicores": "1000", "memory.max": "8000", "cards": "card0", "gpu-numbers": "0", "tiles": "1"}),
    ("memory-override", ["card0/device/drm/card0"], {"card0/device/vendor": "0x8086"}, 16000000000, 0, 0,
     {"millicores": "1000", "memory.max": "16000000000", "cards": "card0", "gpu-numbers": "0",
      "tiles": "1"}),
    ("same-pci-group", *_cards(2), 16000000000, 0, 2,
     {"millicores": "2000", "memory.max": "32000000000", "cards": "card0.card1", "gpu-numbers": "0.1",
      "pci-groups": "0.1", "tiles": "2"}),
    ("different-pci-groups", *_cards(2), 16000000000, 0, 4,
     {"millicores": "2000", "memory.max": "32000000000", "cards": "card0.card1", "gpu-numbers": "0.1",
      "pci-groups": "0_1", "tiles": "2"}),
    ("too-many-gpus-cards-truncated", _many_dirs, _many_files, 16000000000, 0, 0,
     {"millicores": "27000", "memory.max": "432000000000",
      "cards": "card0.card1.card10.card11.card12.card13.card14.card15.card16.ca",
      "gpu-numbers": "0.1.10.11.12.13.14.15.16.17.18.19.2.20.21.22.23.24.25.26.3.4.5",
      "gpu-numbers2": "Z.6.7.8.9", "tiles": "27"}),
    ("lmem-three-tiles", ["card0/device/drm/card0", "card0/gt/gt0", "card0/gt/gt1", "card0/gt/gt3"],
     {"card0/device/vendor": "0x8086", "card0/lmem_total_bytes": "8000"}, 16000000000, 0, 0,
     {"millicores": "1000", "memory.max": "24000", "cards": "card0", "gpu-numbers": "0", "tiles": "3"}),
    ("two-cards-three-tiles",
     ["card0/device/drm/card0", "card0/gt/gt0", "card0/gt/gt1", "card1/device/drm/card1", "card1/gt/gt0"],
     {"card0/device/vendor": "0x8086", "card0/lmem_total_bytes": "8000",
      "card1/device/vendor": "0x8086", "card1/lmem_total_bytes": "8000"}, 16000000000, 0, 0,
     {"millicores": "2000", "memory.max": "24000", "gpu-numbers": "0.1", "cards": "card0.card1",
      "tiles": "3"}),
    ("two-cards-numa",
     ["card0/device/drm/card0", "card0/gt/gt0", "card1/device/drm/card1", "card1/gt/gt0"],
     {"card0/device/vendor": "0x8086", "card0/device/numa_node": "0", "card0/lmem_total_bytes": "8000",
      "card1/device/vendor": "0x8086", "card1/lmem_total_bytes": "8000", "card1/device/numa_node": "1"},
     16000000000, 0, 0,
     {"millicores": "2000", "memory.max": "16000", "gpu-numbers": "0.1", "cards": "card0.card1",
      "tiles": "2", "numa-gpu-map": "0-0_1-1"}),
    ("one-intel-card-numa", ["card0/device/drm/card0", "card1/device/drm/card1", "card1/gt/gt0"],
     {"card0/device/vendor": "0xfefe", "card0/device/numa_node": "0", "card1/device/vendor": "0x8086",
      "card1/lmem_total_bytes": "8000", "card1/device/numa_node": "1"}, 16000000000, 0, 0,
     {"millicores": "1000", "memory.max": "8000", "gpu-numbers": "1", "cards": "card1", "tiles": "1",
      "numa-gpu-map": "1-1"}),
    ("many-cards-numa-split", _numa_dirs, _numa_files, 16000000000, 0, 0,
     {"cards": "card0.card1.card10.card11.card12.card13.card14.card15.card16.ca",
      "gpu-numbers": "0.1.10.11.12.13.14.15.16.17.18.19.2.20.21.22.23.24.25.26.3.4.5",
      "gpu-numbers2": "Z.6.7.8.9", "memory.max": "432000000000", "millicores": "27000",
      "numa-gpu-map": "0-0.1.2.3.4.5.6.7.8_1-13.14.15.16.17.18.19.20.21_2-10.11.12.9_3",
      "numa-gpu-map2": "Z-22.23.24.25.26", "tiles": "27"}),
    ("numa-over-int32", ["card1/device/drm/card1", "card1/gt/gt0"],
     {"card1/device/vendor": "0x8086", "card1/lmem_total_bytes": "8000",
      "card1/device/numa_node": "2147483648"}, 16000000000, 0, 0,
     {"millicores": "1000", "memory.max": "8000", "gpu-numbers": "1", "cards": "card1", "tiles": "1"}),
    ("numa-over-int16", ["card1/device/drm/card1", "card1/gt/gt0"],
     {"card1/device/vendor": "0x8086", "card1/lmem_total_bytes": "8000",
      "card1/device/numa_node": "32768"}, 16000000000, 0, 0,
     {"millicores": "1000", "memory.max": "8000", "gpu-numbers": "1", "cards": "card1", "tiles": "1"}),
    ("xe-three-cards",
     [f"card{c}/device/{p}" for c in range(3) for p in (f"drm/card{c}", "tile0/gt0", "tile1/gt0")],
     {**{f"card{c}/device/vendor": "0x8086" for c in range(3)},
      **{f"card{c}/lmem_total_bytes": "8000" for c in range(3)},
      **{f"card{c}/device/numa_node": "1" for c in range(3)}}, 0, 0, 0,
     {"millicores": "3000", "memory.max": "48000", "gpu-numbers": "0.1.2", "cards": "card0.card1.card2",
      "tiles": "6", "numa-gpu-map": "1-0.1.2"}),
    ("xe-two-tiles-many-gts",
     ["card0/device/drm/card0", "card0/device/tile0/gt0", "card0/device/tile0/gt1", "card0/device/tile1/gt2",
      "card0/device/tile1/gt3", "card0/device/tile1/gt4", "card0/device/tile1/gt5",
      "card1/device/drm/card1", "card1/device/tile0/gt0", "card1/device/tile0/gt1",
      "card1/device/tile1/gt2", "card1/device/tile1/gt4"],
     {"card0/device/vendor": "0x8086", "card0/lmem_total_bytes": "8000", "card0/device/numa_node": "1",
      "card1/device/vendor": "0x8086", "card1/lmem_total_bytes": "8000", "card1/device/numa_node": "1"},
     0, 0, 0,
     {"millicores": "2000", "memory.max": "32000", "gpu-numbers": "0.1", "cards": "card0.card1",
      "tiles": "4", "numa-gpu-map": "1-0.1"}),
]


def _lay_out(sysfs: Path, dirs: list[str], files: dict[str, str]) -> None:
    for d in dirs:
        (sysfs / d).mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (sysfs / name).write_text(body)


def _env(override: int, reserved: int, level: int) -> dict[str, str]:
    return {labeler.MEMORY_OVERRIDE_ENV: str(override), labeler.MEMORY_RESERVED_ENV: str(reserved),
            labeler.PCI_GROUPING_ENV: str(level)}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_labeling(tmp_path: Path, case: tuple) -> None:
    _, dirs, files, override, reserved, level, expected = case
    sysfs = tmp_path / "pci0000:00" / "0000:00:1b.4" / "sys"
    _lay_out(sysfs, dirs, files)
    labels = labeler.create_labels(str(sysfs), _env(override, reserved, level))
    assert labels == {NS + k: v for k, v in expected.items()}


def test_unreadable_drm_dir_fails_as_a_whole(tmp_path: Path) -> None:
    """Upstream's scan() returns an error when a card lacks device/drm; nothing is labelled."""
    _lay_out(tmp_path, ["card0/device"], {"card0/device/vendor": "0x8086"})
    with pytest.raises(labeler.LabelerError, match="card0"):
        labeler.create_labels(str(tmp_path), {})
    with pytest.raises(labeler.LabelerError, match="can't read sysfs folder"):
        labeler.create_labels(str(tmp_path / "missing"), {})


def test_reserved_above_total_drops_memory_label(tmp_path: Path) -> None:
    """uint64 underflow as upstream: the wrapped amount is >= MaxInt64, so memory.max is left out."""
    _lay_out(tmp_path, ["card0/device/drm/card0"],
             {"card0/device/vendor": "0x8086", "card0/lmem_total_bytes": "0x10"})
    labels = labeler.create_labels(str(tmp_path), _env(0, 17, 0))
    assert NS + "memory.max" not in labels
    assert labeler.create_labels(str(tmp_path), _env(0, 1, 0))[NS + "memory.max"] == "15"


def _l0_tree(root: Path) -> Path:
    """TestL0ServiceUse's tree: card0/device is a symlink to a PCI device dir named by its BDF."""
    pci = root / "sys" / ".devices" / "0000:00:01.0"
    (pci / "drm").mkdir(parents=True)
    (pci / "vendor").write_text("0x8086")
    (root / "sys" / "card0").mkdir()
    os.symlink(pci, root / "sys" / "card0" / "device")
    return root / "sys"


def test_memory_from_levelzero(tmp_path: Path) -> None:
    asked: list[str] = []

    def source(bdf: str) -> int:
        asked.append(bdf)
        return 12345678

    labels = labeler.create_labels(str(_l0_tree(tmp_path)), {}, memory_source=source)
    assert labels[NS + "memory.max"] == "12345678"
    assert asked == ["0000:00:01.0"]


@pytest.mark.parametrize("source", [None, lambda bdf: 0, lambda bdf: 1 // 0],
                         ids=["no-service", "zero", "error"])
def test_memory_from_levelzero_falls_back(tmp_path: Path, source) -> None:
    labels = labeler.create_labels(str(_l0_tree(tmp_path)), {labeler.MEMORY_OVERRIDE_ENV: "87654321"},
                                   memory_source=source)
    assert labels[NS + "memory.max"] == "87654321"


@pytest.mark.parametrize("text,max_length,expected", [
    ("1.2.3.4", 10, ["1.2.3.4"]),
    ("foo_bar", 4, ["foo_", "bar"]),
], ids=["unsplit", "foo_bar"])
def test_split(text: str, max_length: int, expected: list[str]) -> None:
    assert labeler.split(text, max_length) == expected


LONG = ("0.0-1.0_0.1-1.1_0.1-1.1_0.0-1.0_0.1-1.1_0.0-1.0_0.1-1.1_0.0-1.0_0.1-1.1_0.0-1.0_0.1-1.1_0.0-1.0_"
        "0.1-1.1_0.1-1.1_1.0-0.0_1.1-0.1_1.0-0.0_1.1-0.1")
SPLIT_CASES = [
    (LONG, "Z", 63, ["0.0-1.0_0.1-1.1_0.1-1.1_0.0-1.0_0.1-1.1_0.0-1.0_0.1-1.1_0.0-1.0",
                     "Z_0.1-1.1_0.0-1.0_0.1-1.1_0.0-1.0_0.1-1.1_0.1-1.1_1.0-0.0_1.1-0",
                     "Z.1_1.0-0.0_1.1-0.1"]),
    (LONG, "ZZZ", 12, ["0.0-1.0_0.1"] + ["ZZZ" + s for s in (
        "-1.1_0.1", "-1.1_0.0", "-1.0_0.1", "-1.1_0.0", "-1.0_0.1", "-1.1_0.0", "-1.0_0.1", "-1.1_0.0",
        "-1.0_0.1", "-1.1_0.0", "-1.0_0.1", "-1.1_0.1", "-1.1_1.0", "-0.0_1.1", "-0.1_1.0", "-0.0_1.1",
        "-0.1")]),
    ("0.0-1.0_0.1-1.1_0.1-1.1_0.0-1.0_0.1-1.1_0.0-1.0_0.1-1.1_0.0-15.0_0.1", "X", 63,
     ["0.0-1.0_0.1-1.1_0.1-1.1_0.0-1.0_0.1-1.1_0.0-1.0_0.1-1.1_0.0-15", "X.0_0.1"]),
    ("0.0-1.0_0.1-1.1_0.1-1.1_0.0-1.0_0.1-1.1_0.0-1.0_0.1-1._-_._-_..0_0.1", "XYZ", 63,
     ["0.0-1.0_0.1-1.1_0.1-1.1_0.0-1.0_0.1-1.1_0.0-1.0_0.1-1", "XYZ._-_._-_..0_0.1"]),
    ("A___B____C", "Z", 4, []),
    ("A___B____C", "ZYYYYYYZZZZZ", 4, []),
]


@pytest.mark.parametrize("text,prefix,max_length,expected", SPLIT_CASES,
                         ids=["63-Z", "12-ZZZ", "63-X", "63-XYZ", "no-alnum", "prefix-too-long"])
def test_split_at_last_alnum(text: str, prefix: str, max_length: int, expected: list[str]) -> None:
    chunks = labeler.split_at_last_alnum(text, max_length, prefix)
    assert chunks == expected
    assert all(len(c) <= max_length for c in chunks)
    if expected:
        assert labeler.concat_split_chunks(chunks, prefix) == text


def test_pci_path_parts() -> None:
    path = "/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/drm/card0"
    assert labeler.pci_path_parts(2, path) == "pci0000:00/0000:00:01.0"
    assert labeler.pci_path_parts(9, path) == ""
    assert labeler.pci_path_parts(1, "card0") == ""


def test_write_labels_file_is_atomic(tmp_path: Path) -> None:
    dst = tmp_path / "intel-gpu-resources.txt"
    dst.write_text("old=1\n")
    inode = dst.stat().st_ino
    labeler.write_labels_file({NS + "tiles": "2", NS + "cards": "card0"}, str(dst))
    assert dst.read_text() == "gpu.intel.com/cards=card0\ngpu.intel.com/tiles=2\n"
    assert dst.stat().st_ino != inode and os.listdir(tmp_path) == [dst.name]
