"""Run playbooks/bootstrap.yml with the real ansible-playbook, one local "host" per test case.

Each inventory host is localhost (connection local) with its own variables and paths, so one
ansible-playbook run exercises several independent cases. Parses the PLAY RECAP and the
per-host failure lines of the default callback. Used by tests/ansible and benchmarks/ansible.py.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "bootstrap.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+"
                    r"skipped=(\d+)", re.MULTILINE)


@dataclass(frozen=True)
class PlayResult:
    """Exit code, output and per-host PLAY RECAP counters of one ansible-playbook run."""

    rc: int
    stdout: str
    stderr: str
    recap: dict[str, dict[str, int]] = field(default_factory=dict)

    def failures(self, host: str) -> str:
        """All ``fatal:``/``failed:`` lines of ``host`` (empty when it did not fail)."""
        marks = (f"fatal: [{host}]", f"failed: [{host}]")
        return "\n".join(line for line in self.stdout.splitlines() if line.startswith(marks))


def host_vars(case_dir: Path, kubeconfig: Path | None, **overrides: Any) -> dict[str, Any]:
    """Variables of one case: local connection, every path under ``case_dir``."""
    etc = case_dir / "etc-platform"
    etc.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "platform_conf_dir": str(etc),
        "kube_plugin_manifest_dir": str(case_dir / "manifests"),
        "kubeconfig": str(kubeconfig or case_dir / "no-kubeconfig"),
        "bringup_kubemaster_kubectl_validate": False,
    }
    values.update(overrides)
    return values


def write_inventory(path: Path, hosts: dict[str, dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"all": {"hosts": hosts}}, indent=2))  # JSON is valid YAML
    return path


def run_playbook(inventory: Path, *args: str, workdir: Path, timeout: float = 180) -> PlayResult:
    """Run the bootstrap playbook against ``inventory`` with the repository's ansible.cfg."""
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_HOME": str(workdir / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORKS": "8",
        "KUBECACHEDIR": str(workdir / "kube-cache"),
    })
    command = [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), "-e", "target_hosts=all", str(PLAYBOOK), *args]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout,
                          check=False)
    recap = {m.group(1): {"ok": int(m.group(2)), "changed": int(m.group(3)), "unreachable": int(m.group(4)),
                          "failed": int(m.group(5)), "skipped": int(m.group(6))}
             for m in _RECAP.finditer(proc.stdout.split("PLAY RECAP", 1)[-1])}
    return PlayResult(proc.returncode, proc.stdout, proc.stderr, recap)
