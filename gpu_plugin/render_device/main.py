"""`render-device`: upstream's cmd/gpu_plugin/render-device.sh as a program.

Media programs (VA-API/QSV) need the name of a render node they can use. ``render-device N``
prints the Nth (1-based, 1-127) Intel render node ``renderD128..255`` that is writable in devfs
and whose sysfs ``device/vendor`` is 0x8086; ``render-device [N] program [args] option`` runs
the program with that node appended; no argument prints the counts, the devfs ``dri`` listing
and the user, as the script does.  What the script rejects (index out of range, fewer GPUs than
requested, a program without its GPU option) prints the script's ``ERROR: <reason>!`` line on
stdout, where scripts grep for it (without the script's usage text before it), the reason once
more on stderr for the logs, and exits 1 as the script.  Our own flags (``-sysfs-root``,
``-devfs-root``, klog's, which have no effect here and are named in a warning) exit 2 with one
stderr line when wrong, as every program of the family.
"""
from __future__ import annotations

import grp
import logging
import os
import pwd
import re
import stat
import sys
from collections.abc import Callable, Sequence

from gpu_plugin.common import klog
from gpu_plugin.common.goflags import FlagError, FlagSet, command

PROG = "render-device"
LOG = logging.getLogger(__name__)
INTEL = "0x8086"
RENDER_NODES = range(128, 256)
MAX_INDEX = 127


class UsageError(ValueError):
    """Arguments the script rejects with its usage (exit 1)."""


class NotFoundError(LookupError):
    """Fewer usable Intel render nodes than requested (exit 1)."""


def _vendor(sysfs_root: str, minor: int) -> str | None:
    try:
        with open(os.path.join(sysfs_root, "class", "drm", f"renderD{minor}", "device", "vendor")) as f:
            return f.read().rstrip("\n")  # the script compares $(cat file): trailing newlines dropped
    except (OSError, UnicodeDecodeError):
        return None


def writable(path: str) -> bool:
    """The script's ``[ -w path ]``: writable for the effective user."""
    if os.access in os.supports_effective_ids:
        return os.access(path, os.W_OK, effective_ids=True)
    return os.access(path, os.W_OK)


def render_node_path(devfs_root: str, minor: int) -> str:
    return os.path.join(devfs_root, "dri", f"renderD{minor}")


def counts(sysfs_root: str, devfs_root: str,
           is_writable: Callable[[str], bool] = writable) -> tuple[int, int]:
    """(Intel render nodes in sysfs, how many of them are writable in devfs)."""
    in_sysfs = [m for m in RENDER_NODES if _vendor(sysfs_root, m) == INTEL]
    return len(in_sysfs), sum(1 for m in in_sysfs if is_writable(render_node_path(devfs_root, m)))


def nth_device(sysfs_root: str, devfs_root: str, index: int,
               is_writable: Callable[[str], bool] = writable) -> str:
    """Devfs path of the ``index``-th (1-based) writable Intel render node."""
    if not 1 <= index <= MAX_INDEX:
        raise UsageError(f"GPU index {index} not in range 1-{MAX_INDEX}")
    visible = 0
    for minor in RENDER_NODES:
        path = render_node_path(devfs_root, minor)
        if is_writable(path) and _vendor(sysfs_root, minor) == INTEL:
            visible += 1
            if visible == index:
                return path
    raise NotFoundError(f"{visible} Intel GPU(s) found, not {index} as requested")


def _listing(dri: str) -> list[str]:
    """An ``ls -l``-like listing of the devfs ``dri`` directory."""
    lines = []
    for name in sorted(os.listdir(dri)):
        st = os.lstat(os.path.join(dri, name))
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        size = (f"{os.major(st.st_rdev)}, {os.minor(st.st_rdev)}"
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else str(st.st_size))
        target = f" -> {os.readlink(os.path.join(dri, name))}" if stat.S_ISLNK(st.st_mode) else ""
        lines.append(f"{stat.filemode(st.st_mode)} {st.st_nlink} {owner} {group} {size} {name}{target}")
    return lines


def _user_name(uid: int) -> str:
    try:
        return f"{uid}({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return f"{gid}({grp.getgrgid(gid).gr_name})"
    except KeyError:
        return str(gid)


def _user() -> str:
    """Like ``id``: ``uid=0(root) gid=0(root) groups=0(root)``."""
    gids = [os.getegid()] + [g for g in os.getgroups() if g != os.getegid()]
    groups = ",".join(_group_name(g) for g in gids)
    return f"uid={_user_name(os.geteuid())} gid={_group_name(os.getegid())} groups={groups}"


def _summary(sysfs_root: str, devfs_root: str) -> str:
    in_sysfs, in_devfs = counts(sysfs_root, devfs_root)
    lines = [f"{in_sysfs} Intel GPU render device(s) listed in sysfs, {in_devfs} writable one(s) in devfs:"]
    dri = os.path.join(devfs_root, "dri")
    try:
        lines += _listing(dri)
    except OSError as err:
        lines.append(f"cannot list {dri}: {err.strerror}")
    lines.append(f"User: {_user()}")
    return "\n".join(lines) + "\n"


def _flagset() -> FlagSet:
    fs = FlagSet(PROG)
    fs.string("sysfs-root", "/sys", "sysfs root (render nodes under <root>/class/drm)")
    fs.string("devfs-root", "/dev", "devfs root (render nodes under <root>/dri)")
    klog.add_flags(fs)
    return fs


def _script_error(reason: str) -> int:
    """The script's ``usage "<reason>"``: its ``ERROR:`` line on stdout, exit 1."""
    print(f"ERROR: {reason}!", flush=True)
    print(f"{PROG}: {reason}", file=sys.stderr)
    return 1


@command(PROG, lambda: _flagset().usage())
def main(argv: Sequence[str] | None = None) -> int:
    flags = _flagset().parse(sys.argv[1:] if argv is None else argv)
    for name in ("sysfs-root", "devfs-root"):
        if not os.path.isdir(flags[name]):
            raise FlagError(f"-{name} {flags[name]}: no such directory", name)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format=f"{PROG}: %(levelname)s %(message)s")
    klog.warn_ineffective(klog.ineffective(flags) + (["-v"] if "v" in flags.explicit else []), LOG)
    args = list(flags.args)
    if not args:
        sys.stdout.write(_summary(flags["sysfs-root"], flags["devfs-root"]))
        return 0
    index = 1
    if re.fullmatch(r"[0-9]+", args[0]):
        index = int(args.pop(0))
    try:
        if not 1 <= index <= MAX_INDEX:
            raise UsageError(f"GPU index {index} not in range 1-{MAX_INDEX}")
        if len(args) == 1:
            raise UsageError("media program and/or its GPU selection option missing")
        device = nth_device(flags["sysfs-root"], flags["devfs-root"], index)
    except (UsageError, NotFoundError) as err:
        return _script_error(str(err))
    if not args:
        print(device)
        return 0
    print(f"Running: {' '.join(args)} {device}", flush=True)
    try:
        os.execvp(args[0], [*args, device])
    except OSError as err:
        print(f"{PROG}: cannot run {args[0]}: {err.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
