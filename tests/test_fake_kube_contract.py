"""The contracts of tests/kube_contract.py and tests/kubelet_contract.py on the fakes alone
(``make test``, no Go).

tests/cluster/test_doubles_contract.py runs the same checks on the real kube-apiserver too;
this file keeps the double's behaviour, corrected where the real server disagreed, pinned in
every run.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.kube_api import FakeKubeAPI
from tests.fakes.kubelet import FakeKubelet
from tests.kube_contract import CHECKS, Target
from tests.kubelet_contract import KUBELET_CHECKS, KubeletTarget


def fake_target(api: FakeKubeAPI, tmp_path: Path) -> Target:
    """A Target on the fake; a too-old version is made by compacting its history."""
    def too_old() -> str:
        return str(api.compact() - 1)

    def store_raw(obj: dict[str, Any]) -> Callable[[], None]:
        api.put_object(obj)
        meta = obj["metadata"]
        group, _, version = obj["apiVersion"].rpartition("/")
        plural = obj["kind"].lower() + "s"
        return lambda: api.store.delete_object((group, version, plural, meta.get("namespace", ""),
                                                meta["name"])) and None
    return Target("fake", str(api.write_kubeconfig(tmp_path / "fake.kubeconfig")), too_old, store_raw)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Target]:
    with FakeKubeAPI() as api:
        target = fake_target(api, tmp_path)
        yield target
        target.cleanup()


@pytest.mark.parametrize(("check", "args"), [pytest.param(c, a, id=i) for i, c, a in CHECKS])
def test_fake_kube_api_contract(fake: Target, check: Callable[..., None], args: tuple[Any, ...]) -> None:
    check(fake, *args)


@pytest.fixture
def fake_kubelet() -> Iterator[KubeletTarget]:
    directory = Path(tempfile.mkdtemp(prefix="fkc-", dir="/tmp"))  # short: unix socket paths
    kubelet = FakeKubelet(directory, dial_timeout=1.0).start()
    target = KubeletTarget("fake", directory, kubelet.restart, dial_timeout=1.0)
    try:
        yield target
    finally:
        target.cleanup()
        kubelet.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("check", [pytest.param(c, id=i) for i, c in KUBELET_CHECKS])
def test_fake_kubelet_contract(fake_kubelet: KubeletTarget, check: Callable[[KubeletTarget], None]) -> None:
    check(fake_kubelet)
