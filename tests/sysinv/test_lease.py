"""LeaderElector timing against the emulated API server (real HTTP), with a fake monotonic clock:
a standby tries just after the peer's Lease expires (takeover after kill -9 within ``duration``,
not ``duration + retry_period``), and never more often than ``retry_period`` otherwise."""
from __future__ import annotations

from pathlib import Path

import pytest

from sysinv_ext.conductor.kube import KubeClient
from sysinv_ext.conductor.kube.lease import EXPIRY_MARGIN, LeaderElector, LeaseConfig
from tests.fakes.kube_api import FakeKubeAPI

NAMESPACE, NAME = "kube-system", "sysinv-gpu-conductor"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(kubeconfig: Path, identity: str, clock: Clock) -> LeaderElector:
    config = LeaseConfig(NAMESPACE, NAME, identity, duration=15.0, renew_deadline=10.0, retry_period=2.0)
    return LeaderElector(KubeClient(str(kubeconfig)), config, on_started=lambda: None,
                         on_stopped=lambda: None, clock=clock)


def holder(api: FakeKubeAPI) -> str | None:
    lease = api.get_object("coordination.k8s.io/v1", "leases", NAME, NAMESPACE)
    return None if lease is None else lease["spec"]["holderIdentity"]


def test_standby_tries_just_after_the_peers_lease_expires(kubeconfig: Path, fake_kube: FakeKubeAPI) -> None:
    active_clock, standby_clock = Clock(), Clock()
    active, standby = elector(kubeconfig, "controller-0", active_clock), elector(kubeconfig, "controller-1",
                                                                                  standby_clock)
    assert active._try() and holder(fake_kube) == "controller-0"
    assert not standby._try(), "held by a live peer"
    assert standby._next_wait() == 2.0  # the expiry is 15 s away: the usual period

    standby_clock.now += 14.5  # the active was killed just after its renewal: no renewal since
    assert not standby._try()
    wait = standby._next_wait()
    assert 0.5 < wait <= 0.5 + EXPIRY_MARGIN + 1e-6, "wakes at the expiry, not 2 s later"
    standby_clock.now += wait
    assert standby._try() and holder(fake_kube) == "controller-1"


@pytest.mark.parametrize("case", ["leader", "lease free", "expired, not taken"])
def test_no_early_try_except_before_an_expiry(kubeconfig: Path, fake_kube: FakeKubeAPI, case: str) -> None:
    clock = Clock()
    candidate = elector(kubeconfig, "controller-1", clock)
    if case == "leader":
        assert candidate._try()
        candidate._leading.set()
    elif case == "lease free":
        assert candidate._next_wait() == 2.0  # nothing observed yet
        return
    else:  # the peer's Lease expired, but the takeover failed (here: the API is gone)
        peer = elector(kubeconfig, "controller-0", Clock())
        assert peer._try()
        assert not candidate._try()
        clock.now += 20.0
        fake_kube.stop()
        assert not candidate._try()
    assert candidate._next_wait() == 2.0, "no busy loop: the usual retry period"


@pytest.mark.parametrize("duration", ["fifteen", [15]])
def test_malformed_lease_duration_is_a_failed_try_not_a_dead_election(
        kubeconfig: Path, fake_kube: FakeKubeAPI, duration: object) -> None:
    fake_kube.put_object({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                          "metadata": {"name": NAME, "namespace": NAMESPACE},
                          "spec": {"holderIdentity": "controller-0", "leaseDurationSeconds": duration}})
    candidate = elector(kubeconfig, "controller-1", Clock())
    assert not candidate._try()  # logged, not raised (a raise would end the election thread)
    assert candidate._next_wait() == 2.0
    assert holder(fake_kube) == "controller-0"
