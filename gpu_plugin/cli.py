"""``intel-gpu-plugin``: flags, up-front checks, logging, signals, exit codes.

Accepts every flag of upstream's gpu_plugin with upstream's meaning (Go flag
syntax, :mod:`gpu_plugin.common.goflags`), plus ours (roots, kubelet dir, scan interval,
Level-Zero socket, CDI dir).  The only module that knows the real default paths.
Exit codes: 0 clean stop (SIGTERM/SIGINT/SIGHUP/SIGQUIT), 1 runtime failure, 2 bad flags
(one stderr line naming the flag, no usage dump, no traceback).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpu_plugin import scan as gpuscan
from gpu_plugin.common import klog, memory, metrics_http, signals
from gpu_plugin.common.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError
from gpu_plugin.common.goflags import FlagError, FlagSet, HelpRequested, ParsedFlags
from gpu_plugin.deviceplugin.api import MAX_SOCKET_PATH
from gpu_plugin.rm import config as rmconfig

# gRPC-heavy modules (plugin, health) are imported in main() only, so that bad flags fail fast;
# a health source or the metrics endpoint only when its flag is set (idle RSS on every GPU node).
if TYPE_CHECKING:
    from gpu_plugin.health import LevelZeroHealth
    from gpu_plugin.xpumd import XpumdHealth

PROG = "intel-gpu-plugin"
LOG = logging.getLogger("gpu_plugin")

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
SERVICE_ACCOUNT_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
POD_RESOURCES_SOCKET = rmconfig.POD_RESOURCES_SOCKET
DEFAULT_TEMP_LIMIT = 100  # upstream's defaultTempLimit (°C)
#: -shared-dev-num upper bound.  Upstream has none, but kubelet reads a ListAndWatch response of
#: at most 4 MiB (gRPC's default receive limit), about 28 bytes per device ID: 1000 IDs per GPU fit
#: ~150 GPUs, well above any node's pod limit (110 by default) and upstream's fractional overlay (300).
MAX_SHARED_DEV_NUM = 1000
#: -scan-interval bounds (seconds): below 0.1 the fallback rescan is a busy loop, above a day it is
#: off in all but name (and past ~292 years Python's waits overflow).
SCAN_INTERVAL_RANGE = (0.1, 86400.0)
#: -xpumd-severity-limit values (gpu_plugin.xpumd.SEVERITY_LIMITS; named here so that a bad flag
#: fails before grpc loads) and the default, critical as upstream since PR #2318 (it was warning)
XPUMD_SEVERITY_LIMITS = ("failed", "critical", "warning")
DEFAULT_XPUMD_SEVERITY_LIMIT = "critical"

__all__ = ["flagset", "parse", "Options", "main"]


def flagset() -> FlagSet:
    f = FlagSet(PROG)
    # upstream's flags (cmd/gpu_plugin/gpu_plugin.go main())
    f.string("prefix", "", "Prefix for devfs & sysfs paths")
    f.bool("enable-monitoring", False, "whether to enable monitoring (= all GPUs) resource(s)")
    f.string("monitoring-mode", "single", "monitoring resource mode: single (one combined "
             "gpu.intel.com/monitoring, upstream's default since 2026-03) or split (per driver, deprecated)")
    f.bool("health-management", False, "enable Level-Zero sidecar based GPU health management")
    f.string("xpumd-endpoint", "", "enable xpumd based health management: unix socket path of the xpumd "
             "health service (e.g. /run/xpumd/intelxpuinfo.sock)")
    f.string("xpumd-severity-limit", DEFAULT_XPUMD_SEVERITY_LIMIT, "xpumd health severity at which a "
             "device is marked unhealthy: " + ", ".join(XPUMD_SEVERITY_LIMITS))
    f.string("bypath", "single", "DRI device 'by-path/' directory mounting options: single, none, all")
    f.bool("wsl", False, "scan for / use WSL devices")
    f.int("shared-dev-num", 1, "number of containers sharing the same GPU device "
          f"(1-{MAX_SHARED_DEV_NUM})")
    f.int("temp-limit", DEFAULT_TEMP_LIMIT, "Global temperature limit at which device is marked unhealthy")
    f.int("gpu-temp-limit", DEFAULT_TEMP_LIMIT, "GPU temperature limit at which device is marked unhealthy")
    f.int("memory-temp-limit", DEFAULT_TEMP_LIMIT, "Memory temperature limit for unhealthy")
    f.string("allocation-policy", "none", "modes of allocating GPU devices: balanced, packed and none")
    f.string("allow-ids", "", "comma-separated list of device IDs to allow (e.g. 0x49c5,0x49c6)")
    f.string("deny-ids", "", "comma-separated list of device IDs to deny (e.g. 0x49c5,0x49c6)")
    f.bool("resource-manager", False, "fractional GPU resource management (needs GPU Aware Scheduling)")
    klog.add_flags(f)  # -v and klog's other flags (upstream calls klog.InitFlags)
    # ours
    f.string("sysfs-root", "/sys", "sysfs root (default: <prefix>/sys)")
    f.string("devfs-root", "/dev", "devfs root (default: <prefix>/dev)")
    f.string("kubelet-dir", "/var/lib/kubelet/device-plugins", "kubelet device-plugins directory")
    f.float("scan-interval", 5.0, "fallback rescan period in seconds "
            f"({SCAN_INTERVAL_RANGE[0]:g}-{SCAN_INTERVAL_RANGE[1]:g})")
    f.string("levelzero-socket", "/var/lib/levelzero/server.sock", "Level-Zero sidecar socket")
    f.string("cdi-dir", "/var/run/cdi", "where CDI specs of allocated GPUs are written")
    f.string("kubeconfig", "", "-resource-manager: kubeconfig file instead of in-cluster API access")
    f.string("pod-resources-socket", POD_RESOURCES_SOCKET, "-resource-manager: kubelet's pod "
             "resources socket")
    f.string("nfd-feature-file", rmconfig.NFD_FEATURE_FILE, "-resource-manager: NFD feature file for "
             "GAS labels (\"\" = none)")
    f.string(metrics_http.FLAG, "", metrics_http.FLAG_HELP)
    return f


@dataclass(frozen=True)
class Options:
    """Checked flags, ready for :func:`gpu_plugin.plugin.build_manager`."""

    sysfs_root: str
    devfs_root: str
    kubelet_dir: str
    cdi_dir: str
    scan: gpuscan.ScanOptions
    allocation_policy: str
    scan_interval: float
    wsl: bool
    levelzero_socket: str
    health_management: bool
    xpumd_endpoint: str  #: "" = off; else xpumd's health socket (instead of the Level-Zero sidecar)
    temp_limits: tuple[int, int, int]  #: global, gpu, memory (°C)
    verbosity: int
    resource_manager: rmconfig.RmConfig | None = None  #: -resource-manager on
    metrics_address: str = ""  #: "" = no metrics endpoint
    klog_ignored: tuple[str, ...] = ()  #: klog flags given that have no effect here (warned about)
    xpumd_severity_limit: str = DEFAULT_XPUMD_SEVERITY_LIMIT  #: lowest xpumd severity = Unhealthy


def _check_resource_manager(v: ParsedFlags) -> rmconfig.RmConfig:
    """Upstream's -resource-manager checks (WSL, shared-dev-num 1), then its prerequisites, all named."""
    if v["wsl"]:
        raise UsageError("resource-manager", "resource management is not supported within WSL")
    missing = []
    if v["shared-dev-num"] < 2:
        missing.append("-shared-dev-num > 1 (fractional resources with shared-dev-num 1 are pointless)")
    if not os.environ.get("NODE_NAME"):
        missing.append("NODE_NAME env")
    if v["kubeconfig"]:
        if not os.path.isfile(v["kubeconfig"]):
            missing.append(f"-kubeconfig file {v['kubeconfig']}")
    elif not (os.environ.get("KUBERNETES_SERVICE_HOST") and os.environ.get("KUBERNETES_SERVICE_PORT")
              and os.path.isfile(SERVICE_ACCOUNT_TOKEN) and os.path.isfile(SERVICE_ACCOUNT_CA)):
        missing.append("in-cluster API access (KUBERNETES_SERVICE_HOST/PORT env, service account token "
                       "and ca.crt) or -kubeconfig")
    if not os.path.exists(v["pod-resources-socket"]):
        missing.append(f"kubelet pod-resources socket {v['pod-resources-socket']}")
    if importlib.util.find_spec("kubernetes") is None:
        missing.append("the kubernetes Python client (pip install kubernetes)")
    if missing:
        raise UsageError("resource-manager", "prerequisites missing: " + ", ".join(missing))
    return rmconfig.RmConfig(node_name=os.environ["NODE_NAME"], kubeconfig=v["kubeconfig"] or None,
                             host_ip=os.environ.get("HOST_IP", ""),
                             podresources_socket=v["pod-resources-socket"],
                             nfd_feature_file=v["nfd-feature-file"] or None)


def _check_args(v: ParsedFlags) -> None:
    """Upstream's checkBasics/checkArgs, then ours."""
    if v["shared-dev-num"] < 1:
        raise UsageError("shared-dev-num", "the number of containers sharing the same GPU must be "
                         f"greater than zero (got {v['shared-dev-num']})")
    if v["shared-dev-num"] > MAX_SHARED_DEV_NUM:
        raise UsageError("shared-dev-num", f"at most {MAX_SHARED_DEV_NUM} containers can share a GPU "
                         f"(got {v['shared-dev-num']}; kubelet's 4 MiB ListAndWatch limit)")
    if v["allocation-policy"] not in ("balanced", "packed", "none"):
        raise UsageError("allocation-policy", f"invalid value {v['allocation-policy']!r}, "
                         "the valid values: balanced, packed, none")
    if v["allow-ids"] and v["deny-ids"]:
        raise UsageError("allow-ids", "cannot use both allow-ids and deny-ids options at the same time")
    for name in ("allow-ids", "deny-ids"):
        try:
            gpuscan.parse_pci_ids(v[name])
        except gpuscan.InvalidPciIdError as err:
            raise UsageError(name, str(err)) from None
    if v["monitoring-mode"] not in gpuscan.MONITORING_MODES:
        raise UsageError("monitoring-mode",
                         f"invalid value {v['monitoring-mode']!r}, valid values: split, single")
    if v["bypath"] not in gpuscan.BYPATH_MODES:
        raise UsageError("bypath", f"invalid value {v['bypath']!r}, valid values: single, none, all")
    if v["wsl"]:
        if v["enable-monitoring"]:
            raise UsageError("wsl", "monitoring is not supported within WSL")
        if v["health-management"] or v["xpumd-endpoint"]:
            raise UsageError("wsl", "health management is not supported within WSL")
    if v["health-management"] and v["xpumd-endpoint"]:
        raise UsageError("xpumd-endpoint",
                         "cannot use both Level-Zero sidecar and xpumd for health management")
    if v["xpumd-severity-limit"] not in XPUMD_SEVERITY_LIMITS:
        raise UsageError("xpumd-severity-limit", f"invalid value {v['xpumd-severity-limit']!r}, "
                         f"valid values: {', '.join(XPUMD_SEVERITY_LIMITS)}")
    if v["xpumd-endpoint"]:
        for name in ("temp-limit", "gpu-temp-limit", "memory-temp-limit"):
            if v[name] != DEFAULT_TEMP_LIMIT:
                raise UsageError(name, "temperature limits do not work with xpumd health source")
        if len(os.fsencode(v["xpumd-endpoint"])) > MAX_SOCKET_PATH:
            raise UsageError("xpumd-endpoint", f"unix socket path longer than {MAX_SOCKET_PATH} bytes")
    if v["metrics-address"]:
        try:
            metrics_http.parse_address(v["metrics-address"])
        except metrics_http.MetricsAddressError as err:
            raise UsageError("metrics-address", str(err)) from None
    low, high = SCAN_INTERVAL_RANGE
    if not low <= v["scan-interval"] <= high:  # also false for nan
        raise UsageError("scan-interval", f"must be between {low:g} and {high:g} seconds "
                         f"(got {v['scan-interval']:g})")
    _check_socket_paths(v)


def _check_socket_paths(v: ParsedFlags) -> None:
    """Unix socket paths the plugin will serve or dial must fit sun_path: checked up front, not
    retried forever.  Our longest socket is ``<kubelet-dir>/gpu.intel.com-i915_monitoring.sock``."""
    kubelet_dir = v["kubelet-dir"]
    if not kubelet_dir:
        raise UsageError("kubelet-dir", "must not be empty (kubelet's device-plugins directory)")
    if os.path.exists(kubelet_dir) and not os.path.isdir(kubelet_dir):
        raise UsageError("kubelet-dir", f"{kubelet_dir} is not a directory")
    from gpu_plugin.plugin import NAMESPACE, WSL_RESOURCE  # grpc loads only once cheap checks passed
    types = [*gpuscan.KNOWN_DRIVERS, *(d + gpuscan.MONITOR_SUFFIX for d in gpuscan.KNOWN_DRIVERS),
             gpuscan.MONITOR_COMBINED, WSL_RESOURCE]
    longest = os.path.join(kubelet_dir, max((f"{NAMESPACE}-{t}.sock" for t in types), key=len))
    if len(os.fsencode(longest)) > MAX_SOCKET_PATH:
        raise UsageError("kubelet-dir", f"socket path {longest} is longer than {MAX_SOCKET_PATH} bytes "
                         "(unix socket limit); use a shorter directory")
    if (v["health-management"] or v["wsl"]) and len(os.fsencode(v["levelzero-socket"])) > MAX_SOCKET_PATH:
        raise UsageError("levelzero-socket", f"unix socket path longer than {MAX_SOCKET_PATH} bytes")


def _root(v: ParsedFlags, name: str, default: str) -> str:
    """``-sysfs-root``/``-devfs-root`` if given, else ``<prefix>/sys`` / ``<prefix>/dev``; must exist."""
    if name in v.explicit or not v["prefix"]:
        flag, path = name, str(v[name])
    else:
        flag, path = "prefix", str(v["prefix"]) + default
    if not os.path.isdir(path):
        raise UsageError(flag, f"{path} does not exist or is not a directory")
    return path


def parse(argv: Sequence[str]) -> Options:
    """Flags -> checked :class:`Options`; raises FlagError/UsageError/HelpRequested."""
    v = flagset().parse(argv)
    if v.args:
        raise UsageError(v.args[0].lstrip("-") or v.args[0], f"unexpected argument {v.args[0]!r}")
    _check_args(v)
    sysfs_root = _root(v, "sysfs-root", "/sys")
    devfs_root = "/dev" if v["wsl"] and "devfs-root" not in v.explicit and not v["prefix"] \
        else _root(v, "devfs-root", "/dev")
    scan_options = gpuscan.ScanOptions(
        shared_dev_num=v["shared-dev-num"], enable_monitoring=v["enable-monitoring"],
        monitoring_mode=v["monitoring-mode"], bypath=v["bypath"],
        allow_ids=gpuscan.parse_pci_ids(v["allow-ids"]), deny_ids=gpuscan.parse_pci_ids(v["deny-ids"]))
    return Options(
        sysfs_root=sysfs_root, devfs_root=devfs_root, kubelet_dir=v["kubelet-dir"], cdi_dir=v["cdi-dir"],
        scan=scan_options, allocation_policy=v["allocation-policy"], scan_interval=v["scan-interval"],
        wsl=v["wsl"], levelzero_socket=v["levelzero-socket"], health_management=v["health-management"],
        xpumd_endpoint=v["xpumd-endpoint"],
        temp_limits=(v["temp-limit"], v["gpu-temp-limit"], v["memory-temp-limit"]), verbosity=v["v"],
        resource_manager=_check_resource_manager(v) if v["resource-manager"] else None,
        metrics_address=v["metrics-address"], klog_ignored=tuple(klog.ineffective(v)),
        xpumd_severity_limit=v["xpumd-severity-limit"])


def setup_logging(verbosity: int) -> None:
    """klog's -v mapped once: 0-1 INFO, 2 and above DEBUG."""
    logging.basicConfig(level=logging.DEBUG if verbosity >= 2 else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname).1s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        options = parse(args)
    except HelpRequested:
        sys.stdout.write(flagset().usage())
        return EXIT_OK
    except (FlagError, UsageError) as err:
        sys.stderr.write(f"{PROG}: {err}\n")
        return EXIT_USAGE
    setup_logging(options.verbosity)
    memory.limit_arenas(2)  # before any thread: a mostly idle service on every GPU node
    klog.warn_ineffective(options.klog_ignored, LOG)
    # gRPC's C core logs (e.g. a GOAWAY per sidecar restart) only from -v 4 on; set before grpc loads.
    os.environ.setdefault("GRPC_VERBOSITY", "INFO" if options.verbosity >= 4 else "ERROR")
    from gpu_plugin.deviceplugin.api import ScannerError
    from gpu_plugin.plugin import PluginConfig, build_manager
    from gpu_plugin.rm import RmSetupError

    stop = threading.Event()
    # SIGHUP/SIGQUIT too, as upstream's labeler.Run: a clean stop removes the GAS labels file.
    # Set from a thread, not in the handler: see common/signals.py (a SIGTERM could deadlock).
    signals.stop_on_signals(stop, (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT),
                            lambda sig: LOG.info("Received %s, stopping", sig.name))
    config = PluginConfig(
        sysfs_root=options.sysfs_root, devfs_root=options.devfs_root, kubelet_dir=options.kubelet_dir,
        cdi_dir=options.cdi_dir, scan=options.scan, allocation_policy=options.allocation_policy,
        scan_interval=options.scan_interval, wsl=options.wsl, levelzero_socket=options.levelzero_socket,
        resource_manager=options.resource_manager)
    LOG.info("GPU device plugin started with %s preferred allocation policy (sysfs %s, devfs %s)",
             config.allocation_policy, config.sysfs_root, config.devfs_root)
    health: LevelZeroHealth | XpumdHealth | None = None  # each health source loads only when asked for
    if options.xpumd_endpoint:  # upstream: xpumd wins over Level-Zero (they are exclusive anyway)
        from gpu_plugin.xpumd import XpumdHealth

        LOG.info("xpumd health source requested: %s (unhealthy at severity %s and above)",
                 options.xpumd_endpoint, options.xpumd_severity_limit)
        health = XpumdHealth(options.xpumd_endpoint, severity_limit=options.xpumd_severity_limit).start()
    elif options.health_management:
        from gpu_plugin.health import LevelZeroHealth, TempLimits

        LOG.info("levelzero service requested: %s", config.levelzero_socket)
        glob, gpu, mem = options.temp_limits
        health = LevelZeroHealth(config.levelzero_socket, TempLimits(global_=glob, gpu=gpu, memory=mem))
    registry, endpoint = metrics_http.open_endpoint(options.metrics_address, PROG)
    try:
        manager, _ = build_manager(config, health, registry=registry)
        manager.run(stop)
    except RmSetupError as err:  # upstream: "Failed to create resource manager", exit
        LOG.error("Failed to create resource manager: %s", err)
        return EXIT_FAILURE
    except ScannerError as err:
        LOG.error("%s", err)
        return EXIT_FAILURE
    finally:
        if health is not None:
            health.close()
        if endpoint is not None:
            endpoint.close()
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
