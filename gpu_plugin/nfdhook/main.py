"""`intel-gpu-nfdhook`: print upstream's GPU labels for this node, one ``key=value`` per line.

A drop-in for cmd/gpu_nfdhook (an NFD binary hook): the labels come from
:mod:`gpu_plugin.nfdhook.labeler`; environment GPU_MEMORY_OVERRIDE, GPU_MEMORY_RESERVED and
GPU_PCI_GROUPING_LEVEL act as upstream. Upstream reads the fixed /host-sys; here the root is
``-sysfs-root`` (default /sys; pass /host-sys inside an NFD worker pod).
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from gpu_plugin.common.goflags import FlagError, FlagSet, command
from gpu_plugin.nfdhook import labeler

LOG = logging.getLogger(__name__)
PROG = "intel-gpu-nfdhook"


def _flagset() -> FlagSet:
    fs = FlagSet(PROG)
    fs.string("sysfs-root", "/sys", "sysfs root; GPUs are read from <root>/class/drm")
    fs.string("devfs-root", "/dev", "devfs root (accepted like the plugin's; labels come from sysfs only)")
    fs.int("v", 0, "log verbosity")
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
    try:
        labels = labeler.create_labels(os.path.join(flags["sysfs-root"], "class", "drm"))
    except labeler.LabelerError as err:
        # upstream (CreateAndPrintLabels) logs a warning, prints nothing and exits 0
        LOG.warning("failed to create labels: %s", err)
        return 0
    sys.stdout.write(labeler.format_labels(labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
