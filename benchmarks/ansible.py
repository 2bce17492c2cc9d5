"""Ansible suite: wall time of playbooks/bootstrap.yml, first run and idempotent rerun.

One localhost host, import_plugins true, the real kubectl applying to the emulated API server of
tests/fakes/kube_api.py (so cluster latency is not included). Target: rerun <= 15 s with changed=0.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import Result
from tests.ansible.runner import host_vars, run_playbook, write_inventory
from tests.fakes.kube_api import FakeKubeAPI

SUITE = "ansible"
RERUN_TARGET_S = 15.0


def run() -> list[Result]:
    if shutil.which("kubectl") is None:
        print("kubectl not installed: ansible suite skipped")
        return []
    with tempfile.TemporaryDirectory(prefix="bench-ansible-") as tmp, FakeKubeAPI() as api:
        work = Path(tmp)
        case = work / "controller-0"
        case.mkdir()
        inventory = write_inventory(work / "inventory.yml", {
            "controller-0": host_vars(case, api.write_kubeconfig(case / "kubeconfig"), import_plugins=True)})
        timings: list[float] = []
        changed: list[int] = []
        for _ in range(2):
            start = time.perf_counter()
            result = run_playbook(inventory, workdir=work)
            timings.append(time.perf_counter() - start)
            if result.rc != 0:
                raise RuntimeError(f"bootstrap playbook failed (rc={result.rc}):\n{result.stdout[-2000:]}")
            changed.append(result.recap["controller-0"]["changed"])
    return [
        Result(SUITE, "bootstrap.yml first run (deploy, kubectl apply)", timings[0], "s"),
        Result(SUITE, "bootstrap.yml first run: changed tasks", float(changed[0]), "n"),
        Result(SUITE, "bootstrap.yml rerun (idempotent)", timings[1], "s", RERUN_TARGET_S),
        Result(SUITE, "bootstrap.yml rerun: changed tasks", float(changed[1]), "n", 0.0),
    ]
