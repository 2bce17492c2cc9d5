"""enabled_kube_plugins: the pure parser (all StarlingX forms, every rejection names the entry)
and PluginsFile change-watching (missing = nothing, corrupt = keep previous, re-read on change).
Real files under tmp_path; nothing emulated.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from sysinv_ext.conductor import plugins
from sysinv_ext.conductor.plugins import PluginsFile, parse_enabled_plugins, parse_enabled_plugins_text


@pytest.mark.parametrize(("data", "expected"), [
    ({"intel-gpu-plugin": "intelgpu=enabled"}, {"intelgpu": "enabled"}),        # 2019, our role
    (["intelgpu"], {"intelgpu": "enabled"}),                                     # 2023 label keys
    (["intelgpu", "intelqat", "intelfpga"],                                      # sysinv's own test
     {"intelgpu": "enabled", "intelqat": "enabled", "intelfpga": "enabled"}),
    (["intel-gpu-plugin"], {"intelgpu": "enabled"}),                             # plugin names
    (["intelgpu=enabled"], {"intelgpu": "enabled"}),                             # 2019 values as list
    ({"a": "example.com/gpu=yes", "b": "x=y"}, {"example.com/gpu": "yes", "x": "y"}),
    ({"intel-gpu-plugin": " intelgpu = enabled "}, {"intelgpu": "enabled"}),
    (["intel-gpu-plugin", "intelgpu"], {"intelgpu": "enabled"}),                 # same label twice
    ({}, {}), ([], {}), (None, {}),
])
def test_parse_forms(data: Any, expected: dict[str, str]) -> None:
    assert parse_enabled_plugins(data) == expected


@pytest.mark.parametrize(("data", "fragment"), [
    ("intelgpu", "expected a JSON object or list, got str"),
    (42, "got int"),
    ({"intel-gpu-plugin": "intelgpu"}, "plugin 'intel-gpu-plugin': not a key=value label (no '=')"),
    ({"intel-gpu-plugin": ["intelgpu=enabled"]}, "a list is not a key=value string"),
    ({"p": "=enabled"}, "entry 0: not a key=value label (the key"),
    ({"p": "bad key=enabled"}, "entry 0: not a key=value label (the key"),
    ({"a": "x=y", "p": "k=bad value"}, "entry 1: not a key=value label (the value"),
    ({"p": "k=" + "v" * 64}, "not a key=value label (the value"),
    ([1], "entry 0: a int is not a plugin name or label key"),
    (["intelgpu", None], "entry 1"),
    (["not a key"], "entry 0"),
    ([""], "entry 0"),
    (["-leading-dash"], "entry 0"),
    (["intelgpu=enabled", "intelgpu=disabled"], "two values"),
])
def test_parse_rejects(data: Any, fragment: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_enabled_plugins(data)
    assert fragment in str(err.value)


def test_parse_text_rejects_bad_json_and_accepts_blank() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        parse_enabled_plugins_text('{"intel-gpu-plugin": ')
    assert parse_enabled_plugins_text("  \n") == {}


@pytest.mark.parametrize(("key", "valid"), [
    ("intelgpu", True), ("gpu.intel.com/i915", True), ("a", True), ("a" * 63, True),
    ("a" * 64, False), ("", False), ("/x", False), ("x/", False), ("Example.com/x", False),
    ("a/b/c", False), ("x_y.z-1", True), ("_x", False),
])
def test_label_key_syntax(key: str, valid: bool) -> None:
    assert plugins.is_label_key(key) is valid


def _write(path: Path, content: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(content if isinstance(content, str) else json.dumps(content))
    tmp.replace(path)


def test_missing_file_means_nothing_enabled(tmp_path: Path) -> None:
    assert dict(PluginsFile(str(tmp_path / "absent")).current()) == {}


def test_file_reread_on_change_and_removal(tmp_path: Path) -> None:
    path = tmp_path / "enabled_kube_plugins"
    watcher = PluginsFile(str(path))
    _write(path, ["intelgpu"])
    assert dict(watcher.current()) == {"intelgpu": "enabled"}
    _write(path, {"intel-gpu-plugin": "intelgpu=true"})
    assert dict(watcher.current()) == {"intelgpu": "true"}
    path.unlink()
    assert dict(watcher.current()) == {}
    _write(path, ["intelgpu"])
    assert dict(watcher.current()) == {"intelgpu": "enabled"}


def test_unchanged_stamp_is_not_reread(tmp_path: Path) -> None:
    """Same inode, size and mtime: the content is not read again (the stat is the only cost)."""
    path = tmp_path / "enabled_kube_plugins"
    path.write_text('["intelgpu"]')
    watcher = PluginsFile(str(path), allowed_label_keys=["intelqat"])
    assert dict(watcher.current()) == {"intelgpu": "enabled"}
    before = os.stat(path)
    with open(path, "r+") as handle:  # same size, same inode, mtime put back
        handle.write('["intelqat"]')
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert dict(watcher.current()) == {"intelgpu": "enabled"}
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    assert dict(watcher.current()) == {"intelqat": "enabled"}


@pytest.mark.parametrize("corrupt", ['{"intel-gpu-plugin": ', '"intelgpu"', '{"p": "novalue"}', "\xff\xfe"])
def test_corrupt_file_keeps_previous_and_logs_once(tmp_path: Path, corrupt: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "enabled_kube_plugins"
    watcher = PluginsFile(str(path))
    _write(path, ["intelgpu"])
    assert dict(watcher.current()) == {"intelgpu": "enabled"}
    if corrupt == "\xff\xfe":
        path.with_suffix(".tmp").write_bytes(b"\xff\xfe[")
        path.with_suffix(".tmp").replace(path)
    else:
        _write(path, corrupt)
    with caplog.at_level(logging.ERROR):
        assert dict(watcher.current()) == {"intelgpu": "enabled"}
        assert dict(watcher.current()) == {"intelgpu": "enabled"}
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert str(path) in errors[0] and "keeping the previous" in errors[0]
    _write(path, [])
    assert dict(watcher.current()) == {}


def test_valid_flag_tracks_corruption(tmp_path: Path) -> None:
    path = tmp_path / "enabled_kube_plugins"
    watcher = PluginsFile(str(path))
    watcher.current()
    assert watcher.valid
    _write(path, "{corrupt")
    watcher.current()
    assert not watcher.valid
    _write(path, ["intelgpu"])
    watcher.current()
    assert watcher.valid
