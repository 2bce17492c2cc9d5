"""Agent manager: rescans sysfs and reports the host's device plugins to the conductor.

Reports at start and whenever the detected set changes, including an empty set when the GPU is
gone (StarlingX never sent one, so its labels stuck); an unchanged set is reported again once per
``report_interval``, so a conductor that could not act on an earlier report (plugin not enabled
yet, database lost) catches up without an agent restart. A failed report is retried with capped
exponential backoff until it succeeds; nothing here ever exits the process. Configuration and
the ConductorAPI are passed in; the conductor is reached only through ``rpcapi``.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import oslo_messaging as messaging
from oslo_config import cfg
from oslo_log import log as logging

from sysinv_ext.agent import identity, pci
from sysinv_ext.agent.metrics import NO_AGENT_METRICS, AgentMetrics
from sysinv_ext.common import context as rpc_context
from sysinv_ext.common import exception
from sysinv_ext.conductor.rpcapi import HostUUID

LOG = logging.getLogger(__name__)

BACKOFF_START = 1.0
MAX_LOGGED_ERROR = 300  # chars of a conductor's error text in one log line


def _bounded(text: object, limit: int = MAX_LOGGED_ERROR) -> str:
    """A remote error's text cut to ``limit`` chars: a hostile or legacy conductor must not
    flood the agent's log (it logs on every retry)."""
    value = str(text)
    return value if len(value) <= limit else f"{value[:limit]}... ({len(value)} chars)"


class Reporter(Protocol):
    """What the manager needs from ``rpcapi.ConductorAPI``."""

    def device_plugin_labels_update_by_ihost(self, context: Any, host_uuid: HostUUID,
                                             labels: Mapping[str, str]) -> Any: ...


class AgentManager:
    """Owns the detect -> report loop; :meth:`run` blocks until :meth:`stop`."""

    def __init__(self, conf: cfg.ConfigOpts, conductor_api: Reporter, *,
                 detect: Callable[[str], dict[str, str]] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 metrics: AgentMetrics = NO_AGENT_METRICS) -> None:
        self._conf = conf
        self._api = conductor_api
        self._detect = detect or self._scan
        self._metrics = metrics
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._clock = clock
        self._reported: dict[str, str] | None = None  # None: nothing reported successfully yet
        self._reported_at = 0.0  # clock() of the last successful report
        self._backoff = 0.0
        self.reports_sent = 0

    @property
    def reported(self) -> dict[str, str] | None:
        """The set the conductor last acknowledged (None before the first success)."""
        return None if self._reported is None else dict(self._reported)

    def wake(self) -> None:
        """Rescan now (udev events call this from their own thread)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def host_uuid(self) -> HostUUID | None:
        agent = self._conf.agent
        found = identity.host_uuid(agent.host_uuid, agent.host_uuid_source,
                                   sysfs_root=agent.sysfs_root, platform_conf=agent.platform_conf)
        return HostUUID(found) if found else None

    def _scan(self, sysfs_root: str) -> dict[str, str]:
        gpus = pci.scan_gpus(sysfs_root)
        self._metrics.detected(gpus)
        return pci.supported_device_plugins(gpus)

    def run_once(self) -> float:
        """Scan, report if needed; return the seconds to wait before the next pass."""
        interval = float(self._conf.agent.report_interval)
        host_uuid = self.host_uuid()
        if host_uuid is None:
            agent = self._conf.agent
            LOG.warning("No host UUID: set [agent]host_uuid or make %s readable; retrying",
                        identity.describe(agent.host_uuid_source, sysfs_root=agent.sysfs_root,
                                          platform_conf=agent.platform_conf))
            return self._fail_delay()
        try:
            labels = self._detect(self._conf.agent.sysfs_root)
        except pci.ScanError as err:  # not "no GPU": the last report stays in force
            LOG.warning("%s; keeping the last report, retrying", err)
            return self._fail_delay()
        since_report = self._clock() - self._reported_at
        if labels == self._reported and since_report < interval:
            return interval - since_report  # woken early (udev) and nothing changed
        reported = self._report(host_uuid, labels)
        self._metrics.reported(reported)
        if reported:
            self._reported = labels
            self._reported_at = self._clock()
            self._backoff = 0.0
            return interval
        return self._fail_delay()

    def _fail_delay(self) -> float:
        cap = float(self._conf.agent.retry_backoff_max)
        self._backoff = min(cap, self._backoff * 2 if self._backoff else BACKOFF_START)
        return self._backoff

    def _report(self, host_uuid: HostUUID, labels: dict[str, str]) -> bool:
        topic = self._conf.agent.conductor_topic
        try:
            self._api.device_plugin_labels_update_by_ihost(
                rpc_context.get_admin_context(), host_uuid, labels)
        except (messaging.MessagingTimeout, messaging.MessageDeliveryFailure) as err:
            LOG.warning("Conductor on topic %s unreachable reporting host %s: %s",
                        topic, host_uuid, _bounded(err))
        except messaging.RemoteError as err:
            LOG.error("Conductor on topic %s failed the report of host %s: %s %s",
                      topic, host_uuid, _bounded(err.exc_type, 80), _bounded(err.value))
        except (messaging.MessagingException, exception.SysinvExtException) as err:
            LOG.error("Report of host %s to topic %s failed: %s", host_uuid, topic, _bounded(err))
        else:
            self.reports_sent += 1
            LOG.info("Reported device plugins %s of host %s to topic %s",
                     sorted(labels) or "(none)", host_uuid, topic)
            return True
        return False

    def run(self) -> None:
        """Loop until :meth:`stop`; an unexpected error is logged and the loop goes on."""
        LOG.info("Agent scanning %s every %ss", self._conf.agent.sysfs_root,
                 self._conf.agent.report_interval)
        while not self._stop.is_set():
            self._wake.clear()
            try:
                delay = self.run_once()
            except Exception:  # the service must outlive any single bad pass
                LOG.exception("Agent pass failed; retrying")
                delay = self._fail_delay()
            self._wake.wait(delay)
