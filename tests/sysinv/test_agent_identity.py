"""Which host uuid the agent reports: [agent]host_uuid, else dmi or platform_conf."""
from __future__ import annotations

from pathlib import Path

import pytest

from sysinv_ext.agent import identity

DMI = "4C4C4544-0042-3510-8051-B4C04F4A4E31"
SYSINV = "a1c581fc-0c74-4e68-b78e-4e26a0695f5d"
# as sysinv-agent leaves it: INSTALL_UUID first, UUID= appended (tsconfig test_basics.py)
PLATFORM_CONF = f"""nodetype=controller
subfunction=controller
INSTALL_UUID=ab0a5348-cea7-4b08-b1b0-09d5527dd227
sw_version=19.09
UUID={SYSINV}
"""


@pytest.fixture
def roots(tmp_path: Path) -> tuple[str, str]:
    dmi = tmp_path / "sys" / "class" / "dmi" / "id"
    dmi.mkdir(parents=True)
    (dmi / "product_uuid").write_text(DMI + "\n")
    conf = tmp_path / "platform.conf"
    conf.write_text(PLATFORM_CONF)
    return str(tmp_path / "sys"), str(conf)


@pytest.mark.parametrize(("configured", "source", "want"), [
    (None, "dmi", DMI),
    (None, "platform_conf", SYSINV),
    ("  explicit-uuid ", "dmi", "explicit-uuid"),
    ("explicit-uuid", "platform_conf", "explicit-uuid"),
])
def test_sources(roots: tuple[str, str], configured: str | None, source: str, want: str) -> None:
    sysfs, conf = roots
    assert identity.host_uuid(configured, source, sysfs_root=sysfs, platform_conf=conf) == want


@pytest.mark.parametrize("content", ["", "INSTALL_UUID=x\n", "nodetype=worker\n UUID=indented\n", "UUID=\n"])
def test_platform_conf_without_uuid_line(tmp_path: Path, content: str) -> None:
    path = tmp_path / "platform.conf"
    path.write_text(content)
    assert identity.read_platform_conf_uuid(path) is None


def test_platform_conf_missing(tmp_path: Path) -> None:
    assert identity.read_platform_conf_uuid(tmp_path / "nope") is None


def test_unknown_source(roots: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="host_uuid_source"):
        identity.host_uuid(None, "bios", sysfs_root=roots[0], platform_conf=roots[1])
