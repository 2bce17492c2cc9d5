"""``intel-gpu-dra-plugin``: the kubelet DRA plugin for Intel GPUs (driver ``gpu.intel.com``).

Why a sibling program over the same scan package and not a mode of ``intel-gpu-plugin``: a node
runs one or the other for its GPUs (Intel's gpu-base-operator installs either), the two have
different kubelet contracts (device-plugin sockets and ``Allocate`` vs plugin registration,
ResourceSlices through the API server and claim preparation), different privileges (the DRA
plugin writes ResourceSlices and reads ResourceClaims; the device plugin needs no API access) and
different deployment (RBAC, DeviceClasses).  A mode would put both flag sets, both life cycles
and an API client into one process for no gain; the shared part, discovery and health, is the
``gpu_plugin.cards``/``gpu_plugin.scan``/``gpu_plugin.health``/``gpu_plugin.xpumd`` code both import.

Flags in the family's Go style (single or double dash); a bad flag exits 2 with one line.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from gpu_plugin.common import klog
from gpu_plugin.common.goflags import FlagError, FlagSet, command
from gpu_plugin.dra.devices import DRIVER_NAME, HealthSource
from gpu_plugin.dra.driver import DriverConfig, GpuDraDriver
from gpu_plugin.dra.kube import ApiError, KubeClient, load_api_client
from gpu_plugin.dra.server import PluginServer
from gpu_plugin.health import LevelZeroHealth
from gpu_plugin.xpumd import XpumdHealth

LOG = logging.getLogger(__name__)

PROG = "intel-gpu-dra-plugin"
#: sun_path of struct sockaddr_un is 108 bytes including the NUL
MAX_SOCKET_PATH = 107
DEFAULT_LEVELZERO_SOCKET = "/var/lib/levelzero/server.sock"

__all__ = ["main", "PROG"]


def _flagset() -> FlagSet:
    fs = FlagSet(PROG)
    fs.string("node-name", os.environ.get("NODE_NAME", ""), "this node's name (default: $NODE_NAME)")
    fs.string("kubeconfig", "", "kubeconfig file; empty: the pod's service account")
    fs.string("sysfs-root", "/sys", "sysfs root")
    fs.string("devfs-root", "/dev", "devfs root (device nodes under PATH/dri)")
    fs.string("kubelet-registry-dir", "/var/lib/kubelet/plugins_registry",
              "kubelet's plugin registration directory")
    fs.string("kubelet-plugins-dir", "/var/lib/kubelet/plugins",
              f"kubelet's plugins directory; the plugin serves PATH/{DRIVER_NAME}/dra.sock")
    fs.string("cdi-dir", "/var/run/cdi", "where the per-claim CDI specs are written")
    fs.string("checkpoint", "", f"prepared-claims checkpoint (default: <plugins dir>/{DRIVER_NAME}/"
              "prepared-claims.json)")
    fs.float("scan-interval", 5.0, "rescan and ResourceSlice resync period in seconds")
    fs.bool("health-management", False, "health from the Level-Zero sidecar")
    fs.string("levelzero-socket", DEFAULT_LEVELZERO_SOCKET, "the Level-Zero sidecar's socket")
    fs.string("xpumd-endpoint", "", "health from xpumd at this unix socket (instead of Level-Zero)")
    fs.bool("device-taints", True, "taint unhealthy devices in the ResourceSlice (kept by the API "
            "server only with the DRADeviceTaints feature gate)")
    klog.add_flags(fs)
    return fs


def _check(flags: dict) -> None:  # type: ignore[type-arg]
    if not flags["node-name"]:
        raise FlagError("-node-name is required (or set NODE_NAME)", "node-name")
    for name in ("sysfs-root", "devfs-root"):
        if not os.path.isdir(flags[name]):
            raise FlagError(f"-{name} {flags[name]}: no such directory", name)
    if not flags["scan-interval"] > 0:
        raise FlagError("-scan-interval must be > 0", "scan-interval")
    if flags["health-management"] and flags["xpumd-endpoint"]:
        raise FlagError("-health-management and -xpumd-endpoint are exclusive", "xpumd-endpoint")
    endpoint = os.path.join(flags["kubelet-plugins-dir"], DRIVER_NAME, "dra.sock")
    registration = os.path.join(flags["kubelet-registry-dir"], f"{DRIVER_NAME}-reg.sock")
    for name, path in (("kubelet-plugins-dir", endpoint), ("kubelet-registry-dir", registration)):
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            raise FlagError(f"-{name}: socket path {path[:120]} is longer than {MAX_SOCKET_PATH} bytes", name)


@command(PROG, lambda: _flagset().usage())
def main(argv: Sequence[str] | None = None, stop: threading.Event | None = None) -> int:
    flags = _flagset().parse(sys.argv[1:] if argv is None else argv)
    if flags.args:
        raise FlagError(f"unexpected argument: {flags.args[0]}")
    _check(dict(flags))
    logging.basicConfig(level=logging.DEBUG if flags["v"] >= 3 else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    klog.warn_ineffective(klog.ineffective(flags), LOG)
    try:
        api = KubeClient(load_api_client(flags["kubeconfig"] or None))
    except Exception as err:  # a missing/bad kubeconfig or service account: one line, exit 1
        LOG.error("no API server access: %s", str(err)[:300])
        return 1
    health: HealthSource | None = None
    closer = None
    if flags["health-management"]:
        lz = LevelZeroHealth(flags["levelzero-socket"])
        health, closer = lz, lz.close
    elif flags["xpumd-endpoint"]:
        xp = XpumdHealth(flags["xpumd-endpoint"]).start()
        health, closer = xp, xp.close
    plugin_dir = os.path.join(flags["kubelet-plugins-dir"], DRIVER_NAME)
    config = DriverConfig(
        node_name=flags["node-name"], sysfs_root=flags["sysfs-root"], devfs_root=flags["devfs-root"],
        cdi_dir=flags["cdi-dir"], checkpoint_path=flags["checkpoint"] or os.path.join(plugin_dir,
                                                                                     "prepared-claims.json"),
        scan_interval=flags["scan-interval"], taints=flags["device-taints"])
    driver = GpuDraDriver(config, api, health)
    driver.scan_once()  # publish before kubelet can call: a registered driver with no slice helps nobody
    server = PluginServer(driver, DRIVER_NAME, flags["kubelet-plugins-dir"], flags["kubelet-registry-dir"])
    try:
        server.start()
    except (OSError, RuntimeError) as err:
        LOG.error("cannot serve the DRA sockets: %s", err)
        return 1
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    try:
        driver.run(stop, each=server.ensure_registered)
    except ApiError as err:  # not expected (the driver retries), but never a traceback
        LOG.error("%s", err)
        return 1
    finally:
        server.stop()
        if closer is not None:
            closer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
