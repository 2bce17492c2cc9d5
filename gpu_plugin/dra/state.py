"""What the DRA plugin has prepared: the claim checkpoint and the per-claim CDI spec files.

Both survive a plugin restart, so a restarted plugin neither forgets a prepared claim (kubelet
would see its devices vanish) nor prepares it a second time.  kubelet itself keeps only which
claims it asked to prepare (its own ``dra_manager_state``); it calls NodePrepareResources again
for every claim of a pod it (re)starts and expects the same answer.

Checkpoint: one JSON file, ``{"version": 1, "checksum": <crc32 of the claims>, "claims": {uid:
...}}``, written to a temp file in the same directory, fsync'd, then moved over the old one
(``os.replace``, mode 0600): a crash leaves the old file or the new one.  A file that does not
parse or whose checksum does not match is logged and renamed ``*.corrupt`` (kept for a human,
never silently lost), and the plugin starts from an empty set; kubelet's next prepare of a claim
writes it again (prepare is idempotent: same devices, same CDI IDs).

CDI: one spec file per claim, kind :data:`CDI_KIND`, a device ``<claim uid>-<device name>`` per
allocated GPU, so NodeUnprepareResources removes exactly that claim's file whatever else is
prepared, and unprepare works from the claim UID alone (no checkpoint needed).
"""
from __future__ import annotations

import json
import logging
import os
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from gpu_plugin.cdi import devices_spec_text
from gpu_plugin.common.atomic_file import write_beside
from gpu_plugin.deviceplugin.api import DeviceInfo

LOG = logging.getLogger(__name__)

CDI_KIND = "gpu.intel.com/claim"
CHECKPOINT_VERSION = 1
_UID_RE = re.compile(r"^[0-9a-zA-Z][0-9a-zA-Z._-]{0,62}$")

__all__ = ["CDI_KIND", "PreparedDevice", "PreparedClaim", "Checkpoint", "ClaimSpecs", "cdi_device_id",
           "valid_uid"]


@dataclass(frozen=True)
class PreparedDevice:
    """One allocated device of a prepared claim, as NodePrepareResources returned it."""

    request_names: tuple[str, ...]
    pool: str
    device: str
    cdi_ids: tuple[str, ...]


@dataclass(frozen=True)
class PreparedClaim:
    uid: str
    namespace: str
    name: str
    devices: tuple[PreparedDevice, ...]


def valid_uid(uid: str) -> bool:
    """A claim UID we can put in a file name (Kubernetes UIDs are UUIDs; anything else is refused)."""
    return bool(_UID_RE.match(uid))


def cdi_device_id(claim_uid: str, device: str) -> str:
    """``gpu.intel.com/claim=<uid>-<device>``: what kubelet passes to the runtime."""
    return f"{CDI_KIND}={claim_uid}-{device}"


def _claim_from_json(raw: Mapping[str, object]) -> PreparedClaim:
    devices = raw["devices"]
    if not isinstance(devices, list):
        raise ValueError("devices is not a list")
    return PreparedClaim(
        uid=str(raw["uid"]), namespace=str(raw["namespace"]), name=str(raw["name"]),
        devices=tuple(PreparedDevice(request_names=tuple(map(str, d["request_names"])), pool=str(d["pool"]),
                                     device=str(d["device"]), cdi_ids=tuple(map(str, d["cdi_ids"])))
                      for d in devices))


def _checksum(claims: object) -> int:
    return zlib.crc32(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode())


class Checkpoint:
    """The prepared claims in ``path`` (see the module docstring for the format)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def load(self) -> dict[str, PreparedClaim]:
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return {}
        try:
            doc = json.loads(text)
            if doc.get("version") != CHECKPOINT_VERSION:
                raise ValueError(f"unknown version {str(doc.get('version'))[:20]!r}")
            if doc.get("checksum") != _checksum(doc["claims"]):
                raise ValueError("checksum mismatch")
            return {uid: _claim_from_json(raw) for uid, raw in doc["claims"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            corrupt = self.path + ".corrupt"
            LOG.error("Prepared-claims checkpoint %s is unreadable (%s); moved to %s, starting empty",
                      self.path, str(err)[:200], corrupt)
            os.replace(self.path, corrupt)
            return {}

    def save(self, claims: Mapping[str, PreparedClaim]) -> None:
        """Atomically replace the checkpoint; raises OSError (the caller fails the RPC)."""
        raw = {uid: asdict(c) for uid, c in sorted(claims.items())}
        text = json.dumps({"version": CHECKPOINT_VERSION, "checksum": _checksum(raw), "claims": raw},
                          sort_keys=True, indent=1)
        write_beside(self.path, text, mode=None, dir_mode=0o750, prefix=".checkpoint-", fsync=True)


class ClaimSpecs:
    """The per-claim CDI spec files in ``cdi_dir``."""

    def __init__(self, cdi_dir: str) -> None:
        self.cdi_dir = cdi_dir

    def path(self, claim_uid: str) -> str:
        return os.path.join(self.cdi_dir, f"{CDI_KIND.replace('/', '-')}_{claim_uid}.yaml")

    def write(self, claim_uid: str, devices: Sequence[tuple[str, DeviceInfo]]) -> list[str]:
        """Write the claim's spec atomically (0644, as CDI specs are); returns the CDI device IDs."""
        text = devices_spec_text(CDI_KIND, [(f"{claim_uid}-{name}", info) for name, info in devices])
        write_beside(self.path(claim_uid), text)
        return [cdi_device_id(claim_uid, name) for name, _ in devices]

    def remove(self, claim_uid: str) -> None:
        try:
            os.unlink(self.path(claim_uid))
        except FileNotFoundError:
            pass
