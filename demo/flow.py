"""The whole flow, step by step, shared by ``python -m demo`` and tests/e2e/test_whole_flow.py.

REAL: ansible-playbook, kubectl, sysinv-gpu-conductor, sysinv-gpu-agent, intel-gpu-plugin (each a
separate process), RPC over RabbitMQ when reachable (else sysinv's ZeroMQ RPC, no broker), SQLite
through SQLAlchemy, gRPC over unix sockets, the ``kubernetes`` client over HTTP.  EMULATED
(tests/fakes): sysfs/devfs with GPUs, the Kubernetes API server, kubelet, and the DaemonSet
controller (we match its nodeSelector and start the plugin).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from demo import configs, kube
from demo.machine import GPUS, HOST_UUID, LABEL, NODE, broker_reachable, expected_resources
from demo.procs import Proc, Supervisor, wait_for

REPO = Path(__file__).resolve().parent.parent
METRICS_URL = re.compile(r"serving Prometheus metrics on (http://\S+/metrics)")
SERVING_RPC = re.compile(r"Conductor \S+ serving (topic|ZeroMQ RPC at) ")  # RPC is up (the Lease is held)
BIN = Path(sys.executable).parent


class StepFailed(Exception):
    """A step of the flow did not reach its goal; the message says what was expected and seen."""


class Flow:
    """State of one run; every method is one step and returns a one-line description of what it saw.

    ``close()`` stops everything the steps started (processes by process group, fake servers) and
    is safe to call at any point.  Files stay under ``root`` (the caller removes it).
    """

    def __init__(self, root: Path, *, transport_url: str | None = None, scan_interval: float | None = None,
                 transport: str | None = None):
        self.root = root
        self.sysfs_root = root / "sys"
        self.devfs_root = root / "dev"
        self.kubelet_dir = root / "kubelet" / "device-plugins"
        self.platform_conf_dir = root / "etc" / "platform"
        self.manifest_dir = root / "etc" / "kubernetes"
        self.kubeconfig = root / "etc" / "kubernetes" / "admin.conf"
        self.etc = root / "etc" / "sysinv-gpu"
        self.home = root / "home"
        for path in (self.kubelet_dir, self.platform_conf_dir, self.manifest_dir, self.etc, self.home):
            path.mkdir(parents=True, exist_ok=True)
        self.sup = Supervisor(root / "logs")
        self.transport_url = transport_url
        self.transport = transport  # "amqp", "zmq" or None (RabbitMQ if reachable, else ZeroMQ)
        self.zmq_port: int | None = None
        self.scan_interval = scan_interval
        suffix = uuid.uuid4().hex[:8]
        self.exchange = f"sysinv-demo-{suffix}"
        self.topic = f"sysinv.conductor_manager.demo-{suffix}"
        self.sysfs: Any = None
        self.kube_api: Any = None
        self.kubelet: Any = None
        self.api: Any = None
        self.in_process: Any = None
        self.plugin: Proc | None = None
        self.daemonset: dict[str, Any] = {}
        self.shared_dev_num = 1
        self.allocatable: dict[str, str] = {}

    # -- helpers -----------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """Environment of child programs: venv first on PATH, HOME (ansible/kubectl caches) in root."""
        env = dict(os.environ)
        env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", HOME=str(self.home),
                   KUBECACHEDIR=str(self.home / "kube-cache"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_LOCAL_TEMP=str(self.home / "ansible-tmp"),
                   ANSIBLE_HOME=str(self.home / "ansible"), PYTHONUNBUFFERED="1")
        return env

    def _require_alive(self, *procs: Proc) -> None:
        if self.in_process is not None and not self.in_process.alive():
            raise StepFailed(f"in-process services ended: {self.in_process.results}")
        for proc in procs:
            if not proc.alive():
                raise StepFailed(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")

    def _wait(self, predicate: Callable[[], Any], timeout: float, what: str, *procs: Proc) -> Any:
        def check() -> Any:
            self._require_alive(*procs)
            return predicate()
        try:
            return wait_for(check, timeout, what=what)
        except TimeoutError as err:
            logs = "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in procs)
            raise StepFailed(f"{err}\n{logs}" if logs else str(err)) from None

    def labels(self) -> dict[str, str]:
        return kube.node_labels(self.api, NODE)

    def transport_name(self) -> str:
        """Which transport the sysinv services used, for the summary."""
        if self.transport == "zmq":
            return f"ZeroMQ (sysinv's zerorpc wire) on port {self.zmq_port}"
        if (self.transport_url or "").startswith("fake:"):
            return "oslo.messaging fake driver (in this process)"
        return "AMQP (RabbitMQ)"

    def allocatable_line(self) -> str:
        res = {k: v for k, v in self.allocatable.items() if k.startswith("gpu.intel.com/")}
        return "node allocatable " + ", ".join(f"{k}={v}" for k, v in sorted(res.items()))

    def close(self) -> None:
        self.sup.stop_all()
        for part in (self.in_process, self.kubelet, self.kube_api):
            if part is not None:
                try:
                    part.stop()
                except Exception as err:  # noqa: BLE001 - keep stopping the rest
                    print(f"cleanup: {type(part).__name__}.stop(): {err}", file=sys.stderr)
        self.in_process = self.kubelet = self.kube_api = None

    # -- 1. the machine ----------------------------------------------------------------------
    def host_uuid(self) -> str:
        """The machine's DMI product_uuid (the node's systemUUID)."""
        return HOST_UUID

    def make_sysfs(self) -> str:
        from tests.fakes.sysfs import FakeSysfs  # test double, EMULATED machine

        self.sysfs = FakeSysfs(self.root)
        for gpu in GPUS:
            self.sysfs.add_gpu(bdf=gpu.bdf, card=gpu.card, render=gpu.render, driver=gpu.driver,
                               vfs=gpu.vfs, vendor=gpu.vendor, pci_class=gpu.pci_class)
        self.sysfs_root, self.devfs_root = Path(self.sysfs.sysfs_root), Path(self.sysfs.devfs_root)
        self.sysfs.set_product_uuid(self.host_uuid())
        desc = ", ".join(f"{g.bdf} {g.driver}" + (f" ({g.vfs} VFs)" if g.vfs else "") for g in GPUS)
        return f"{desc}; DMI product_uuid {self.host_uuid()}"

    # -- 2. the cluster ----------------------------------------------------------------------
    def start_kube_api(self) -> str:
        from tests.fakes.kube_api import FakeKubeAPI  # test double, EMULATED API server

        self.kube_api = FakeKubeAPI().start()
        self.kube_api.add_node(NODE, system_uuid=HOST_UUID.upper(), labels={
            "kubernetes.io/hostname": NODE, "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"})
        self.kube_api.write_kubeconfig(self.kubeconfig)
        self.api = kube.api_client(self.kubeconfig)
        if LABEL[0] in self.labels():
            raise StepFailed(f"node {NODE} already labelled before the flow started")
        return f"{self.kube_api.url}, node {NODE} systemUUID {HOST_UUID.upper()}"

    # -- 3. bootstrap ------------------------------------------------------------------------
    def run_bootstrap(self) -> str:
        kubectl = shutil.which("kubectl", path=f"/usr/bin{os.pathsep}{os.environ.get('PATH', '')}")
        if kubectl is None:
            raise StepFailed("kubectl not found in /usr/bin or PATH (the playbook applies with it)")
        extra = self._bootstrap_extra(kubectl)
        argv = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                str(REPO / "playbooks" / "bootstrap.yml"), "-e", f"@{extra}"]
        # supervised like the services, so Ctrl-C also ends ansible's worker processes
        play = self.sup.start("ansible-playbook", argv, env=self.env(), cwd=REPO)
        try:
            code = play.popen.wait(timeout=120)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            self.sup.stop(play)
        log = play.log_path
        if code != 0:
            raise StepFailed(f"ansible-playbook {'timed out' if code is None else f'exited {code}'}:\n"
                             f"{play.tail(20)}")
        enabled = self.platform_conf_dir / "enabled_kube_plugins"
        if not enabled.exists():
            raise StepFailed(f"{enabled} not written")
        ns, name = self._manifest_daemonset()
        try:
            self.daemonset = kube.read_daemonset(self.api, ns, name)
        except Exception as err:  # noqa: BLE001 - reported as the step's failure
            raise StepFailed(f"DaemonSet {ns}/{name} not in the API server: {err}") from None
        recap = [ln for ln in log.read_text().splitlines() if "changed=" in ln]
        return (f"DaemonSet {ns}/{name} applied, {enabled.name} = {enabled.read_text().strip()}"
                f" [{recap[-1].split(':', 1)[-1].strip() if recap else 'no recap'}]")

    def _bootstrap_extra(self, kubectl: str) -> Path:
        """The playbook's extra-vars file (the fake API server serves no OpenAPI: no validation)."""
        return configs.bootstrap_vars(self.root / "localhost.yml.json",
                                      platform_conf_dir=self.platform_conf_dir,
                                      kubeconfig=self.kubeconfig, manifest_dir=self.manifest_dir,
                                      python=sys.executable, kubectl=kubectl)

    def services_kubeconfig(self) -> Path:
        """The kubeconfig the conductor (and sysinv-gpu-status) use."""
        return self.kubeconfig

    def _manifest_daemonset(self) -> tuple[str, str]:
        for path in sorted(self.manifest_dir.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict) and doc.get("kind") == "DaemonSet":
                    meta = doc.get("metadata", {})
                    return meta.get("namespace", "default"), meta["name"]
        raise StepFailed(f"no DaemonSet manifest rendered into {self.manifest_dir}")

    # -- 4. the message bus ------------------------------------------------------------------
    def choose_transport(self) -> str:
        if self.transport not in (None, "amqp", "zmq"):
            raise StepFailed(f"unknown transport {self.transport!r} (amqp or zmq)")
        reason = "as asked"
        if self.transport is None and self.transport_url is None:
            reachable = broker_reachable()
            self.transport = "amqp" if reachable else "zmq"
            reason = "" if reachable else "RabbitMQ NOT reachable at 127.0.0.1:5672"
        if self.transport == "zmq":
            self.zmq_port = free_port()
            self.transport_url = self.transport_url or "fake:/"  # unused: ZeroMQ needs no broker
            return (f"{reason + ': ' if reason else ''}ZeroMQ (sysinv's zerorpc wire, no broker), "
                    f"conductor at tcp://[127.0.0.1]:{self.zmq_port}")
        self.transport = "amqp"
        if self.transport_url is None:
            self.transport_url = "rabbit://guest:guest@127.0.0.1:5672/"
        if self.transport_url.startswith("fake:"):
            return (f"{reason}: oslo.messaging fake driver, agent and conductor run IN THIS PROCESS "
                    "(threads), not as separate programs")
        host = self.transport_url.rsplit("@", 1)[-1].rstrip("/")
        return f"AMQP: RabbitMQ at {host}, exchange {self.exchange}, topic {self.topic}"

    # -- 5. sysinv services ------------------------------------------------------------------
    def start_sysinv(self) -> str:
        msg = configs.Messaging(self.transport_url or "fake:/", self.exchange, self.topic, self.zmq_port)
        # metrics on an ephemeral localhost port each; not in one process (one [DEFAULT] for both)
        metrics = "" if msg.in_process else "127.0.0.1:0"
        cond = configs.conductor_conf(self.etc / "conductor.conf", msg, host=NODE,
                                      enabled_kube_plugins=self.platform_conf_dir / "enabled_kube_plugins",
                                      kubeconfig=self.services_kubeconfig(),
                                      database=self.root / "sysinv-gpu.sqlite",
                                      metrics_address=metrics)
        agent = configs.agent_conf(self.etc / "agent.conf", msg, sysfs_root=self.sysfs_root,
                                   metrics_address=metrics)
        if msg.in_process:
            from demo.inprocess import InProcessServices

            log = self.sup.log_dir / "sysinv-in-process.log"
            self.in_process = InProcessServices(cond, agent, log).start()
            return "conductor and agent threads started in this process (fake driver)"
        env = self.env()
        self.conductor = self.sup.start("conductor", [str(BIN / "sysinv-gpu-conductor"), "--config-file",
                                                      str(cond)], env=env)
        # the agent's first report would be lost if the conductor's queue did not exist yet
        # not any " serving " line: the metrics endpoint says so before the Lease lets RPC start
        log = self.conductor.log_path
        self._wait(lambda: SERVING_RPC.search(log.read_text(errors="replace")) is not None, 20,
                   "sysinv-gpu-conductor to serve its RPC topic or ZeroMQ port", self.conductor)
        self.agent = self.sup.start("agent", [str(BIN / "sysinv-gpu-agent"), "--config-file", str(agent)],
                                    env=env)
        time.sleep(0.2)
        self._require_alive(self.conductor, self.agent)
        over = f"ZeroMQ port {self.zmq_port}" if self.zmq_port else "AMQP"
        return (f"sysinv-gpu-conductor pid {self.conductor.pid}, sysinv-gpu-agent pid {self.agent.pid} "
                f"(over {over})")

    def _services(self) -> tuple[Proc, ...]:
        return () if self.in_process else (self.conductor, self.agent)

    # -- 6. the label ------------------------------------------------------------------------
    def wait_label(self, present: bool = True, timeout: float = 30) -> str:
        key, value = LABEL
        if present:
            self._wait(lambda: self.labels().get(key) == value, timeout,
                       f"label {key}={value} on node {NODE}", *self._services())
            return f"node {NODE} labelled {key}={value}"
        self._wait(lambda: key not in self.labels(), timeout, f"label {key} removed from {NODE}",
                   *self._services())
        return f"label {key} removed from node {NODE}"

    # -- 7. the DaemonSet schedules the plugin (EMULATED scheduling, REAL plugin) ------------
    def schedule_plugin(self) -> str:
        from tests.fakes.kubelet import FakeKubelet  # test double, EMULATED kubelet

        selector = kube.node_selector(self.daemonset)
        labels = self.labels()
        if not selector or not kube.selector_matches(selector, labels):
            raise StepFailed(f"DaemonSet nodeSelector {selector} does not match node labels {labels}")
        container = kube.plugin_container(self.daemonset)
        args = kube.local_args(list(container.get("args") or []), self.plugin_overrides(self.kubelet_dir))
        self.shared_dev_num = _flag_int(args, "shared-dev-num", 1)
        self.kubelet = FakeKubelet(self.kubelet_dir)
        self.kubelet.start()
        self.plugin = self.sup.start("plugin", [str(BIN / "intel-gpu-plugin"), *args], env=self.env())
        time.sleep(0.2)
        self._require_alive(self.plugin)
        shown = " ".join(args).replace(str(self.root), "$WORK")
        return f"nodeSelector {selector} matches; intel-gpu-plugin pid {self.plugin.pid} {shown}"

    def plugin_overrides(self, kubelet_dir: Path) -> dict[str, str]:
        """The plugin's path flags pointed at this run's sysfs/devfs and kubelet dir."""
        overrides = {"sysfs-root": str(self.sysfs_root), "devfs-root": str(self.devfs_root),
                     "kubelet-dir": str(kubelet_dir), "cdi-dir": str(self.root / "cdi"),
                     "metrics-address": "127.0.0.1:0"}
        if self.scan_interval is not None:
            overrides["scan-interval"] = str(self.scan_interval)
        return overrides

    # -- 8. kubelet sees the resources -------------------------------------------------------
    def wait_allocatable(self, expected: dict[str, int] | None = None, timeout: float = 30) -> str:
        want = expected if expected is not None else expected_resources(shared_dev_num=self.shared_dev_num)
        procs = (self.plugin,) if self.plugin else ()

        def seen() -> dict[str, int]:
            return {name: int(self.kubelet.allocatable(name)) for name in want}
        self._wait(lambda: seen() == want, timeout, f"kubelet allocatable {want}", *procs)
        self.allocatable = kube.set_allocatable(self.api, NODE, want)
        back = {k: v for k, v in self.allocatable.items() if k.startswith("gpu.intel.com/")}
        if back != {k: str(v) for k, v in want.items()}:
            raise StepFailed(f"node status.allocatable read back {back}, expected {want}")
        ids = "; ".join(f"{name.rsplit('/', 1)[-1]}: {', '.join(self._healthy(name)) or '-'}"
                        for name in sorted(want))
        return ("registered " + ", ".join(r.endpoint for r in self.kubelet.registrations) + f" ({ids}); "
                "node allocatable " + ", ".join(f"{k}={v}" for k, v in sorted(back.items())))

    def _healthy(self, resource: str) -> list[str]:
        return sorted(i for i, d in self.kubelet.devices(resource).items() if d.health == "Healthy")

    # -- 9. what an operator sees: metrics and sysinv-gpu-status ----------------------------
    def metrics_urls(self) -> dict[str, str]:
        """Program name -> its /metrics URL, as each logged it at start."""
        procs = [p for p in (self.plugin, *self._services()) if p is not None]
        found = {}
        for proc in procs:
            match = METRICS_URL.search(proc.log_path.read_text(errors="replace"))
            if match:
                found[proc.name] = match.group(1)
        return found

    def scrape(self, name: str) -> list[tuple[str, dict[str, str], float]]:
        """(sample name, labels, value) of every sample the program's endpoint serves now."""
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(self.metrics_urls()[name], timeout=5) as response:  # noqa: S310
            text = response.read().decode()
        return [(s.name, dict(s.labels), float(s.value))
                for family in text_string_to_metric_families(text) for s in family.samples]

    def show_metrics(self) -> str:
        plugin_only = (self.plugin,) if self.plugin else ()
        urls = self._wait(lambda: "plugin" in self.metrics_urls() and self.metrics_urls(), 10,
                          "the programs' metrics endpoints", *plugin_only)
        plugin = self.scrape("plugin")
        devices = ", ".join(f"{lab['resource']} {lab['health']} {v:.0f}" for n, lab, v in plugin
                            if n == "deviceplugin_devices" and v)
        scans = sum(v for n, lab, v in plugin if n == "intel_gpu_plugin_scans_total")
        lines = [f"plugin: devices {devices}; {scans:.0f} scans"]
        if "agent" in urls:
            agent = self.scrape("agent")
            gpus = ", ".join(f"{lab['driver']} {lab['function']} {v:.0f}" for n, lab, v in agent
                             if n == "sysinv_gpu_agent_gpus" and v)
            sent = sum(v for n, lab, v in agent if n == "sysinv_gpu_agent_reports_total"
                       and lab.get("outcome") == "sent")
            lines.append(f"agent: GPUs {gpus}; {sent:.0f} reports sent")
            conductor = self.scrape("conductor")
            outcomes = ", ".join(f"{lab['outcome']} {v:.0f}" for n, lab, v in conductor
                                 if n == "sysinv_gpu_conductor_reports_total" and v)
            labelled = [v for n, _, v in conductor if n == "sysinv_gpu_conductor_report_to_label_seconds_sum"]
            count = [v for n, _, v in conductor if n == "sysinv_gpu_conductor_report_to_label_seconds_count"]
            mean = f"{1000 * labelled[0] / count[0]:.0f} ms" if labelled and count and count[0] else "-"
            lines.append(f"conductor: reports {outcomes or 'none'}; report -> label mean {mean}")
        else:
            lines.append("agent and conductor run in this process: no endpoints of their own")
        shown = ", ".join(f"{k} {v}" for k, v in sorted(urls.items()))
        return f"metrics endpoints {shown}\n" + "\n".join(lines)

    def show_status(self) -> str:
        argv = [str(BIN / "sysinv-gpu-status"), "--config-file", str(self.etc / "conductor.conf")]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=self.env())
        table = result.stdout.rstrip().replace(str(self.root), "$WORK")
        if result.returncode != 0:
            raise StepFailed(f"sysinv-gpu-status exited {result.returncode}:\n{table}\n"
                             f"{result.stderr.strip()}")
        return "sysinv-gpu-status: every host consistent (exit 0)\n" + table

    # -- reverse: the GPUs go away -----------------------------------------------------------
    def remove_gpus(self) -> str:
        gone = [g.bdf for g in GPUS if g.resource]
        for bdf in gone:
            self.sysfs.remove_gpu(bdf)
        return "removed " + ", ".join(gone) + " from the fake sysfs"


def free_port() -> int:
    """A TCP port nothing listens on right now (the conductor binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _flag_int(args: list[str], name: str, default: int) -> int:
    for i, arg in enumerate(args):
        flag, has_value, value = arg.lstrip("-").partition("=")
        if flag == name:
            return int(value if has_value else args[i + 1])
    return default


#: (short name, what the step shows, method) in the order of SPEC's "whole flow".
STEPS: tuple[tuple[str, str, Callable[[Flow], str]], ...] = (
    ("sysfs", "fake sysfs/devfs: 2 Intel GPUs + 1 other VGA", Flow.make_sysfs),
    ("kube-api", "fake Kubernetes API server with one node", Flow.start_kube_api),
    ("bootstrap", "ansible-playbook playbooks/bootstrap.yml (import_plugins=true)", Flow.run_bootstrap),
    ("transport", "sysinv RPC transport (AMQP or ZeroMQ)", Flow.choose_transport),
    ("sysinv", "sysinv-gpu-conductor + sysinv-gpu-agent", Flow.start_sysinv),
    ("label", "conductor labels the node", Flow.wait_label),
    ("schedule", "DaemonSet schedules intel-gpu-plugin", Flow.schedule_plugin),
    ("allocatable", "plugin registers with kubelet", Flow.wait_allocatable),
    ("metrics", "Prometheus endpoints of plugin, agent, conductor", Flow.show_metrics),
    ("status", "sysinv-gpu-status: GPU <-> label <-> allocatable", Flow.show_status),
)
