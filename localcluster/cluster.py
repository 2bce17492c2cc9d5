"""A real single-node Kubernetes on 127.0.0.1, for tests, the demo and the benchmarks.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubelet are Kubernetes'
own programs (built from their Go modules by ``scripts/build-kube.sh``). Two things are not
real, because this machine cannot provide them:

- the container runtime: kubelet talks CRI to ``fake-cri``, Kubernetes' own fake runtime
  (k8s.io/cri-client/pkg/fake). Sandboxes and containers exist only in its memory; it
  records CreateContainer and friends as JSON lines (:meth:`LocalCluster.cri_records`);
- the machine's DMI identity: this VM has no ``/sys/class/dmi``, so kubelet runs in a
  private mount namespace where ``/sys/class`` is a tmpfs holding links to the real
  entries plus ``dmi/id/product_uuid`` = :attr:`LocalCluster.system_uuid` (what cAdvisor
  reads for the node's ``status.nodeInfo.systemUUID``). Nothing outside kubelet sees it,
  and the mounts kubelet makes for pod volumes die with its namespace.

kubelet's device-plugin directory is fixed: kubelet 1.34 serves ``kubelet.sock`` at
``/var/lib/kubelet/device-plugins/`` whatever its ``--root-dir`` (the path is a constant of
the device plugin API), so one machine runs one such kubelet at a time: :meth:`start` takes an
exclusive lock (``/run/localcluster-kubelet.lock``) and waits for another cluster to stop.
Everything else of kubelet (plugins_registry/, plugins/, pods/) is under its root dir.

Security as a real cluster has it: TLS everywhere with a CA made per cluster, RBAC and Node
authorization, the default admission plugins plus NodeRestriction, ServiceAccount tokens
signed by a per-cluster key. Each program runs in its own process group; :meth:`stop` (also
on ``with`` exit, Ctrl-C included) ends them all and removes the work dir it created.
Readiness is waited on (``/readyz``, node Ready), never slept for.

This package knows nothing of GPUs.
"""
from __future__ import annotations

import atexit
import fcntl
import json
import os
import shlex
import shutil
import socket
import ssl
import subprocess
import tempfile
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster.pki import CertificateAuthority, KeyPair, service_account_keys
from localcluster.process import ClusterError, Program, wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent
KUBE_VERSION = "v1.34.1"
SERVICE_CIDR = "10.96.0.0/24"
KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")
#: kubelet's device-plugin socket dir: a constant of the v1beta1 API, not under --root-dir
DEVICE_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")
MACHINE_LOCK = Path(os.environ.get("LOCALCLUSTER_LOCK", "/run/localcluster-kubelet.lock"))


def binaries_dir() -> Path:
    """The built programs: ``$STX_KUBE_BIN`` if set, else build (or find cached) with build-kube.sh."""
    env = os.environ.get("STX_KUBE_BIN")
    if env:
        return Path(env)
    result = subprocess.run([str(REPO_ROOT / "scripts" / "build-kube.sh")], stdout=subprocess.PIPE,
                            stderr=None, text=True, check=False)
    if result.returncode != 0:
        raise ClusterError(f"scripts/build-kube.sh failed with exit code {result.returncode}")
    return Path(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kubelet: int
    kubelet_healthz: int

    @classmethod
    def pick(cls) -> Ports:
        return cls(*(free_port() for _ in range(7)))


def kubeconfig_dict(server: str, ca: Path, user: str, *, cert: KeyPair | None = None,
                    token: str | None = None) -> dict[str, Any]:
    creds: dict[str, str] = {}
    if cert is not None:
        creds = {"client-certificate": str(cert.cert), "client-key": str(cert.key)}
    if token is not None:
        creds["token"] = token
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": user, "context": {"cluster": "local", "user": user}}],
        "current-context": user,
    }


def _write_json(path: Path, data: Any, mode: int = 0o600) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)
    return path


class LocalCluster:
    """etcd + kube-apiserver + controller-manager + scheduler + one kubelet (+ fake CRI)."""

    def __init__(self, workdir: Path | None = None, *, bin_dir: Path | None = None,
                 node_name: str = "controller-0", system_uuid: str | None = None,
                 node_status_update_seconds: int = 1, kubelet_log_level: int = 2) -> None:
        self._own_workdir = workdir is None
        # short: unix socket paths under the kubelet dir must stay below 108 bytes
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="lc-", dir="/tmp"))
        self.bin_dir = bin_dir
        self.node_name = node_name
        self.system_uuid = system_uuid or str(uuid.uuid4())
        self.node_status_update_seconds = node_status_update_seconds
        self.kubelet_log_level = kubelet_log_level
        self.ports = Ports.pick()
        self.api_url = f"https://127.0.0.1:{self.ports.apiserver}"
        self.kubelet_root_dir = self.workdir / "kubelet"
        self.cri_socket = self.workdir / "cri.sock"
        self.cri_record_path = self.workdir / "cri-records.jsonl"
        self.pki_dir = self.workdir / "pki"
        self.logs_dir = self.workdir / "logs"
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.programs: dict[str, Program] = {}
        self._ca: CertificateAuthority | None = None
        self._admin: KeyPair | None = None
        self._started = False
        self._lock_fd: int | None = None

    # ----------------------------------------------------------------- lifecycle
    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalCluster:
        if self.bin_dir is None:
            self.bin_dir = binaries_dir()
        missing = [p for p in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                               "kubelet", "fake-cri") if not (self.bin_dir / p).exists()]
        if missing:
            raise ClusterError(f"{self.bin_dir} lacks {', '.join(missing)}: run `make kube`")
        atexit.register(self.stop)
        self._started = True
        self._take_machine_lock()
        for d in (self.workdir, self.kubelet_root_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._make_pki()
        self._start_etcd()
        self._start_apiserver()
        self._start_fake_cri()
        self._start_controller_manager()
        self._start_scheduler()
        self._start_kubelet()
        self.wait_node_ready()
        self._wait_default_service_account()
        return self

    def stop(self) -> None:
        """Stop every program (kubelet first, etcd last) and remove a work dir we created."""
        for name in ("kubelet", "scheduler", "controller-manager", "fake-cri", "kube-apiserver", "etcd"):
            program = self.programs.pop(name, None)
            if program is not None:
                program.stop()
        if self._started and self._own_workdir and not os.environ.get("LOCALCLUSTER_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)
        self._started = False
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _take_machine_lock(self, timeout: float = 900) -> None:
        """One kubelet per machine (the device-plugin dir is fixed): wait for another cluster."""
        MACHINE_LOCK.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(MACHINE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)

        def locked() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False
        try:
            wait_for(f"{MACHINE_LOCK} (another local cluster's kubelet runs on this machine)", locked,
                     timeout, interval=0.5)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    # ----------------------------------------------------------------- pieces
    def _bin(self, name: str) -> str:
        assert self.bin_dir is not None
        return str(self.bin_dir / name)

    def _make_pki(self) -> None:
        ca = self._ca = CertificateAuthority(self.pki_dir)
        self._admin = ca.issue("admin", "kubernetes-admin", groups=("system:masters",))
        self._serving = ca.issue("apiserver", "kube-apiserver", server=True, client=False,
                                 dns=("localhost", "kubernetes", "kubernetes.default",
                                      "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"),
                                 ips=("127.0.0.1", "10.96.0.1"))
        self._apiserver_kubelet = ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                           groups=("kubeadm:cluster-admins",))
        self._sa = service_account_keys(self.pki_dir)
        self._write_kubeconfig(self.kubeconfig, "kubernetes-admin", cert=self._admin)
        cm = ca.issue("controller-manager", "system:kube-controller-manager")
        self._cm_kubeconfig = self._write_kubeconfig(self.workdir / "controller-manager.kubeconfig",
                                                     "system:kube-controller-manager", cert=cm)
        sched = ca.issue("scheduler", "system:kube-scheduler")
        self._sched_kubeconfig = self._write_kubeconfig(self.workdir / "scheduler.kubeconfig",
                                                        "system:kube-scheduler", cert=sched)
        kubelet = ca.issue("kubelet", f"system:node:{self.node_name}", groups=("system:nodes",))
        self._kubelet_kubeconfig = self._write_kubeconfig(self.workdir / "kubelet.kubeconfig",
                                                          f"system:node:{self.node_name}", cert=kubelet)

    def _write_kubeconfig(self, path: Path, user: str, *, cert: KeyPair | None = None,
                          token: str | None = None) -> Path:
        assert self._ca is not None
        return _write_json(path, kubeconfig_dict(self.api_url, self._ca.cert, user, cert=cert, token=token))

    def _program(self, name: str, argv: list[str]) -> Program:
        program = Program(name, argv, self.logs_dir / f"{name}.log").start()
        self.programs[name] = program
        return program

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.ports.etcd_client}"
        peer = f"http://127.0.0.1:{self.ports.etcd_peer}"
        program = self._program("etcd", [
            self._bin("etcd"), "--name", "lc", "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"lc={peer}", "--unsafe-no-fsync", "--log-level", "warn",
        ])

        def healthy() -> bool:
            with urllib.request.urlopen(f"{client}/health", timeout=2) as r:
                return bool(json.load(r).get("health") == "true")
        wait_for("etcd /health", healthy, 60, [program])

    def _start_apiserver(self) -> None:
        assert self._ca is not None
        program = self._program("kube-apiserver", [
            self._bin("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports.apiserver}",
            "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
            f"--tls-cert-file={self._serving.cert}", f"--tls-private-key-file={self._serving.key}",
            f"--client-ca-file={self._ca.cert}",
            f"--kubelet-client-certificate={self._apiserver_kubelet.cert}",
            f"--kubelet-client-key={self._apiserver_kubelet.key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self._sa.cert}",
            f"--service-account-signing-key-file={self._sa.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true", "--profiling=false",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
        ])
        wait_for("kube-apiserver /readyz", lambda: self._get_text("/readyz") == "ok", 120, [program])

    def _start_fake_cri(self) -> None:
        program = self._program("fake-cri", [
            self._bin("fake-cri"), "-endpoint", f"unix://{self.cri_socket}",
            "-record", str(self.cri_record_path)])
        wait_for("fake-cri socket", self.cri_socket.exists, 30, [program])

    def _start_controller_manager(self) -> None:
        assert self._ca is not None
        program = self._program("controller-manager", [
            self._bin("kube-controller-manager"),
            f"--kubeconfig={self._cm_kubeconfig}",
            f"--authentication-kubeconfig={self._cm_kubeconfig}",
            f"--authorization-kubeconfig={self._cm_kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports.controller_manager}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={self._sa.key}",
            f"--root-ca-file={self._ca.cert}",
            f"--cluster-signing-cert-file={self._ca.cert}", f"--cluster-signing-key-file={self._ca.pair.key}",
            "--leader-elect=false", "--profiling=false",
        ])
        wait_for("kube-controller-manager /healthz",
                 lambda: _get_insecure(f"https://127.0.0.1:{self.ports.controller_manager}/healthz") == "ok",
                 60, [program])

    def _start_scheduler(self) -> None:
        program = self._program("scheduler", [
            self._bin("kube-scheduler"),
            f"--kubeconfig={self._sched_kubeconfig}",
            f"--authentication-kubeconfig={self._sched_kubeconfig}",
            f"--authorization-kubeconfig={self._sched_kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports.scheduler}",
            "--leader-elect=false", "--profiling=false",
        ])
        wait_for("kube-scheduler /readyz",
                 lambda: _get_insecure(f"https://127.0.0.1:{self.ports.scheduler}/readyz") == "ok",
                 60, [program])

    def kubelet_config(self) -> dict[str, Any]:
        """KubeletConfiguration for a VM with cgroup v1, no swap and no container engine."""
        assert self._ca is not None
        period = f"{self.node_status_update_seconds}s"
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": "127.0.0.1", "port": self.ports.kubelet, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": self.ports.kubelet_healthz,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self._ca.cert)}},
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.cri_socket}",
            "imageServiceEndpoint": f"unix://{self.cri_socket}",
            # this VM: cgroup v1 (1.35+ refuses it unless failCgroupV1 is false), no swap, no
            # per-QoS cgroup tree: kubelet manages no cgroups for pods the fake runtime never runs
            "cgroupDriver": "cgroupfs", "cgroupsPerQOS": False, "enforceNodeAllocatable": [],
            "failSwapOn": False, "failCgroupV1": False,
            "podLogsDir": str(self.workdir / "pod-logs"),
            "resolvConf": "",
            # a test cluster: node status (allocatable included) reaches the API within a second
            "nodeStatusUpdateFrequency": period, "nodeStatusReportFrequency": period,
            "syncFrequency": "10s", "fileCheckFrequency": "10s",
            # the fake runtime reports no real image/container filesystem usage: no eviction
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "0%",
                             "imagefs.available": "0%", "nodefs.inodesFree": "0%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "registerNode": True,
        }

    def _kubelet_argv(self) -> list[str]:
        config = _write_json(self.workdir / "kubelet-config.json", self.kubelet_config())
        kubelet = [
            self._bin("kubelet"), f"--config={config}", f"--kubeconfig={self._kubelet_kubeconfig}",
            f"--root-dir={self.kubelet_root_dir}", f"--cert-dir={self.kubelet_root_dir / 'pki'}",
            f"--hostname-override={self.node_name}", f"--v={self.kubelet_log_level}",
        ]
        host_sys = self.workdir / "host-sys"
        host_sys.mkdir(exist_ok=True)
        # see the module docstring: a private /sys/class with the node's DMI uuid
        script = "\n".join([
            "set -e",
            "mount --make-rprivate /",
            f"mount --rbind /sys {shlex.quote(str(host_sys))}",
            "mount -t tmpfs -o mode=0755 localcluster-sysclass /sys/class",
            f"for e in {shlex.quote(str(host_sys))}/class/*; do ln -s \"$e\" /sys/class/; done",
            "rm -f /sys/class/dmi && mkdir -p /sys/class/dmi/id",
            f"echo {shlex.quote(self.system_uuid)} > /sys/class/dmi/id/product_uuid",
            "echo localcluster > /sys/class/dmi/id/product_name",
            "exec " + " ".join(shlex.quote(a) for a in kubelet),
        ])
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]

    def _start_kubelet(self) -> None:
        self._program("kubelet", self._kubelet_argv())

    def restart_kubelet(self) -> None:
        """Stop kubelet and start it again (it wipes its device-plugins dir, as a real restart does)."""
        self.stop_kubelet()
        self._start_kubelet()
        self.wait_node_ready()

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again on the same port and etcd (its watch cache
        starts empty: a watch from before the restart may get 410 Gone)."""
        program = self.programs.pop("kube-apiserver", None)
        if program is not None:
            program.stop()
        self._start_apiserver()

    def stop_kubelet(self) -> None:
        program = self.programs.pop("kubelet", None)
        if program is not None:
            program.stop()

    # ----------------------------------------------------------------- readiness
    def node(self, name: str | None = None) -> dict[str, Any]:
        return self.get_json(f"/api/v1/nodes/{name or self.node_name}")

    def wait_node_ready(self, timeout: float = 120) -> dict[str, Any]:
        kubelet = self.programs.get("kubelet")

        def ready() -> dict[str, Any] | None:
            node = self.node()
            for cond in node.get("status", {}).get("conditions", []):
                if cond.get("type") == "Ready" and cond.get("status") == "True":
                    return node
            return None
        return wait_for(f"node {self.node_name} Ready", ready, timeout,
                        [kubelet] if kubelet else [])

    def _wait_default_service_account(self) -> None:
        wait_for("ServiceAccount default/default", lambda: self.get_json(
            "/api/v1/namespaces/default/serviceaccounts/default"), 60,
            [self.programs["controller-manager"]])

    # ----------------------------------------------------------------- access
    def _ssl_context(self) -> ssl.SSLContext:
        assert self._ca is not None and self._admin is not None
        ctx = ssl.create_default_context(cafile=str(self._ca.cert))
        ctx.load_cert_chain(str(self._admin.cert), str(self._admin.key))
        return ctx

    def _get_text(self, path: str) -> str:
        with urllib.request.urlopen(self.api_url + path, context=self._ssl_context(), timeout=5) as r:
            return str(r.read().decode())

    def get_json(self, path: str) -> dict[str, Any]:
        """GET a path of the API as the cluster admin (raises urllib's HTTPError on 4xx/5xx)."""
        return dict(json.loads(self._get_text(path)))

    def kubectl(self, *args: str, kubeconfig: Path | None = None, check: bool = True,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster (admin unless another kubeconfig is given)."""
        return subprocess.run([KUBECTL, f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
                              capture_output=True, text=True, check=check, input=input, timeout=120)

    def user_kubeconfig(self, path: Path, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig authenticating as ``user`` (a client certificate signed by the cluster CA)."""
        assert self._ca is not None
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in user)
        pair = self._ca.issue(f"user-{safe}", user, groups=groups)
        return self._write_kubeconfig(path, user, cert=pair)

    def token_kubeconfig(self, path: Path, token: str, user: str = "token-user") -> Path:
        """A kubeconfig carrying a bearer token (e.g. a ServiceAccount's, from TokenRequest)."""
        return self._write_kubeconfig(path, user, token=token)

    @property
    def ca_cert(self) -> Path:
        assert self._ca is not None
        return self._ca.cert

    def cri_records(self, method: str | None = None) -> list[dict[str, Any]]:
        """What the fake runtime was asked, oldest first (optionally one method's calls only)."""
        try:
            lines = self.cri_record_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        records = [json.loads(line) for line in lines if line.strip()]
        return [r for r in records if method is None or r.get("method") == method]

    @property
    def device_plugin_dir(self) -> Path:
        """Where kubelet serves kubelet.sock and plugins serve theirs (fixed; see the docstring)."""
        return DEVICE_PLUGIN_DIR

    def log_tail(self, name: str, lines: int = 20) -> str:
        program = self.programs.get(name)
        return program.log_tail(lines) if program else "(not running)"


def _get_insecure(url: str) -> str:
    """GET a component's health endpoint on loopback (self-signed serving cert, no client auth)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
        return str(r.read().decode())
