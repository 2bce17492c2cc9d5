"""`intel-gpu-nfdhook`: print upstream's GPU labels for this node, one ``key=value`` per line.

A drop-in for cmd/gpu_nfdhook (an NFD binary hook): the labels come from
:mod:`gpu_plugin.nfdhook.labeler`; environment GPU_MEMORY_OVERRIDE, GPU_MEMORY_RESERVED and
GPU_PCI_GROUPING_LEVEL act as upstream.  NFD runs a hook with no arguments inside its worker pod,
where the host's /sys is mounted at /host-sys, and upstream's hook reads that fixed path; so
without ``-sysfs-root`` ours reads /host-sys when it has a ``class/drm`` directory, else /sys.
klog's flags are accepted as everywhere in the family (upstream's hook parses none: it ignores
its command line); a warning names those without effect.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from gpu_plugin.common import klog
from gpu_plugin.common.goflags import FlagError, FlagSet, command
from gpu_plugin.nfdhook import labeler

LOG = logging.getLogger(__name__)
PROG = "intel-gpu-nfdhook"
#: where upstream's hook reads sysfs (NFD worker pods mount the host's /sys there)
HOST_SYS = "/host-sys"


def _flagset() -> FlagSet:
    fs = FlagSet(PROG)
    fs.string("sysfs-root", "/sys", f"sysfs root; GPUs are read from <root>/class/drm (when not given: "
              f"{HOST_SYS} if it has class/drm, as upstream's hook, else /sys)")
    fs.string("devfs-root", "/dev", "devfs root (accepted like the plugin's; labels come from sysfs only)")
    klog.add_flags(fs)
    return fs


@command(PROG, lambda: _flagset().usage())
def main(argv: Sequence[str] | None = None) -> int:
    flags = _flagset().parse(sys.argv[1:] if argv is None else argv)
    if flags.args:
        raise FlagError(f"unexpected argument: {flags.args[0]}")
    for name in ("sysfs-root", "devfs-root"):
        if not os.path.isdir(flags[name]):
            raise FlagError(f"-{name} {flags[name]}: no such directory", name)
    logging.basicConfig(level=logging.DEBUG if flags["v"] >= 4 else logging.WARNING, stream=sys.stderr,
                        format=f"{PROG}: %(levelname)s %(message)s")
    klog.warn_ineffective(klog.ineffective(flags), LOG)
    sysfs_root = flags["sysfs-root"]
    if "sysfs-root" not in flags.explicit and os.path.isdir(os.path.join(HOST_SYS, "class", "drm")):
        sysfs_root = HOST_SYS
    try:
        labels = labeler.create_labels(os.path.join(sysfs_root, "class", "drm"))
    except labeler.LabelerError as err:
        # upstream (CreateAndPrintLabels) logs a warning, prints nothing and exits 0
        LOG.warning("failed to create labels: %s", err)
        return 0
    sys.stdout.write(labeler.format_labels(labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
