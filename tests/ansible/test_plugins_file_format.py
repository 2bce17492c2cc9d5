"""enabled_kube_plugins in both StarlingX forms, written by a real ansible-playbook run and read
back by our conductor's parser (sysinv_ext.conductor.plugins).

2019 (sysinv 023be742, the default): the dict name -> label. 2023 (sysinv 2f3fa421, whose
conductor checks ``'intelgpu' in plugins``): the list of label keys, written when StarlingX's
``k8s_plugins`` came as a list, or when ``bringup_kubemaster_enabled_kube_plugins_format`` asks.
kubectl is the machine's real one against the emulated API server (one per case).
"""
from __future__ import annotations

import json
import shutil
import stat
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from sysinv_ext.conductor.plugins import PluginsFile
from tests.ansible.runner import host_vars, run_playbook, write_inventory
from tests.fakes.kube_api import FakeKubeAPI

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")

FORMAT = "bringup_kubemaster_enabled_kube_plugins_format"
LIST_2023 = ["intelgpu"]
DICT_2019 = {"intel-gpu-plugin": "intelgpu=enabled"}
# case -> (role variables, file content expected)
CASES: dict[str, tuple[dict[str, Any], Any]] = {
    "k8s-list": ({"k8s_plugins": ["intelgpu"]}, LIST_2023),
    "k8s-names": ({"k8s_plugins": ["intel-gpu-plugin"]}, LIST_2023),
    "k8s-dict": ({"k8s_plugins": DICT_2019}, DICT_2019),
    "default": ({"import_plugins": True}, DICT_2019),
    "asked-2023": ({"import_plugins": True, FORMAT: "2023"}, LIST_2023),
    "k8s-list-asked-2019": ({"k8s_plugins": ["intelgpu"], FORMAT: "2019"}, DICT_2019),
}


def _file(tmp_path: Path, name: str) -> Path:
    return tmp_path / name / "etc-platform" / "enabled_kube_plugins"


def test_both_forms_written_and_read_back_by_our_conductor(tmp_path: Path) -> None:
    with ExitStack() as stack:
        hosts = {}
        for name, (overrides, _) in CASES.items():
            api = stack.enter_context(FakeKubeAPI())
            (tmp_path / name).mkdir()
            hosts[name] = host_vars(tmp_path / name, api.write_kubeconfig(tmp_path / name / "kubeconfig"),
                                    **overrides)
        inventory = write_inventory(tmp_path / "inventory.yml", hosts)
        result = run_playbook(inventory, workdir=tmp_path)
        assert result.rc == 0, result.stdout[-3000:]
        for name, (_, expected) in CASES.items():
            path = _file(tmp_path, name)
            assert json.loads(path.read_text()) == expected, name
            assert path.read_text().endswith("\n") and stat.S_IMODE(path.stat().st_mode) == 0o640
            # our conductor reads both forms to the same enabled label
            assert dict(PluginsFile(str(path)).current()) == {"intelgpu": "enabled"}, name
        again = run_playbook(inventory, workdir=tmp_path)
        assert again.rc == 0 and {h: r["changed"] for h, r in again.recap.items()} == dict.fromkeys(CASES, 0)


def test_unknown_format_fails_before_any_change(tmp_path: Path) -> None:
    with FakeKubeAPI() as api:
        (tmp_path / "bad").mkdir()
        hosts = {"bad": host_vars(tmp_path / "bad", api.write_kubeconfig(tmp_path / "bad" / "kubeconfig"),
                                  import_plugins=True, **{FORMAT: "2021"})}
        result = run_playbook(write_inventory(tmp_path / "inventory.yml", hosts), workdir=tmp_path)
        assert result.rc != 0
        assert FORMAT in result.stdout and "2021" in result.stdout
        assert not _file(tmp_path, "bad").exists()
        assert [r for r in api.requests if r.method != "GET"] == []
