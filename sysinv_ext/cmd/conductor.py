"""``sysinv-gpu-conductor --config-file FILE``: the conductor service (threads, no eventlet).

Order at start: parse config and set up oslo.log; upgrade the label database to the newest
alembic revision (retrying with back-off while it is unreachable); start the node cache
(LIST + WATCH, also on a standby, so a takeover starts warm); then, with
``[conductor]leader_election`` (default), compete for the Kubernetes Lease and only while
holding it serve: RPC server on ``[conductor]topic``/``[conductor]host`` and the audit thread.
Only the active conductor consumes the topic (and binds any ZeroMQ port): a standby never
answers, so a caller never gets a reply from a conductor that does not patch; requests sent
during a takeover wait in the broker's queue. Losing the Lease stops serving. SIGTERM or
SIGINT stop everything cleanly (the Lease is released, so the standby takes over at once);
only the main thread decides the exit code.
"""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from oslo_config import cfg
from oslo_log import log as logging

from sysinv_ext.cmd import UsageError, parse_args, stop_on_signals, usage_exit
from sysinv_ext.common import exception
from sysinv_ext.conf import register_conductor_opts
from sysinv_ext.conf.conductor import database_url

# oslo.messaging, SQLAlchemy, alembic and the kubernetes client are imported once the command
# line is known to be good: a bad flag is answered in well under a second.

LOG = logging.getLogger(__name__)
PROG = "sysinv-gpu-conductor"
PROJECT = "sysinv-gpu"
STOP_TIMEOUT = 20.0  # seconds; below systemd's TimeoutStopSec=30s


def register(conf: cfg.ConfigOpts) -> None:
    register_conductor_opts(conf)


def upgrade_database(conf: cfg.ConfigOpts, stop: threading.Event) -> bool:
    """Upgrade the schema to head, retrying with back-off; False if stopped first."""
    from sysinv_ext.db import api as db_api
    from sysinv_ext.db import migration

    url = database_url(conf)
    delay = float(conf.database.connect_retry_interval)
    while not stop.is_set():
        try:
            engine = db_api.get_engine(url)
            try:
                migration.upgrade(engine)
                LOG.info("Label database at revision %s", migration.current_revision(engine))
            finally:
                engine.dispose()
            return True
        except Exception as err:  # any driver/alembic failure: log, wait, retry
            LOG.error("Cannot upgrade label database %s: %s; retrying in %.0f s",
                      db_api.describe_url(url), err, delay)
        stop.wait(delay)
        delay = min(delay * 2, conf.database.connect_retry_interval * 10.0)
    return False


def check_lease_options(conf: cfg.ConfigOpts) -> None:
    """client-go's rules: retry_period < renew_deadline < duration (else two could serve)."""
    group = conf.conductor
    if not group.lease_retry_period < group.lease_renew_deadline < group.lease_duration:
        raise exception.ConfigurationError(
            reason=f"[conductor] needs lease_retry_period ({group.lease_retry_period}) < "
            f"lease_renew_deadline ({group.lease_renew_deadline}) < lease_duration "
            f"({group.lease_duration})")


class Serving:
    """What only the active conductor runs: the RPC server(s) and the audit thread."""

    def __init__(self, conf: cfg.ConfigOpts, manager: Any, fatal: threading.Event) -> None:
        self.conf, self.manager, self._fatal = conf, manager, fatal
        self._lock = threading.Lock()
        self._server: Any = None
        self._started = threading.Event()
        self._audit: Any = None

    def start(self) -> None:
        import oslo_messaging as messaging

        from sysinv_ext.common import rpc
        from sysinv_ext.conductor.audit import AuditLoop

        conf = self.conf
        with self._lock:
            if self._server is not None:
                return
            self.manager.activate()
            target = messaging.Target(topic=conf.conductor.topic, server=conf.conductor.host)
            server = rpc.get_server(conf, target, [self.manager])
            started = self._started = threading.Event()
            self._server = server
            # ZeroMQ (sysinv's zerorpc transport) binds here too, when configured: only the
            # active conductor binds its port.

            def start_server() -> None:
                # oslo.messaging's start() blocks while the broker is unreachable (it retries
                # the connection forever); keep the election and SIGTERM free meanwhile.
                try:
                    server.start()
                except Exception:
                    LOG.exception("RPC server failed to start")
                    self._fatal.set()
                    return
                started.set()
                LOG.info("Conductor %s serving topic %s on exchange %s", conf.conductor.host,
                         conf.conductor.topic, conf.control_exchange)

            threading.Thread(target=start_server, name="rpc-start", daemon=True).start()
            self._audit = AuditLoop(self.manager.audit, conf.conductor.audit_interval)
            self._audit.start()

    def stop(self) -> None:
        from sysinv_ext.common import rpc

        with self._lock:
            server, self._server = self._server, None
            if server is None:
                return
            self.manager.deactivate()
            if self._audit is not None:
                self._audit.stop()
            if self._started.is_set():
                _bounded("stop the RPC server", lambda: rpc.stop_server(server), STOP_TIMEOUT)
            else:
                LOG.warning("RPC server never connected to the broker; exiting without it")
            LOG.info("Conductor %s no longer serving", self.conf.conductor.host)


class ConductorService:
    """Node cache, leader election and, while active, RPC server + audit thread."""

    def __init__(self, conf: cfg.ConfigOpts, stop: threading.Event | None = None) -> None:
        self.conf = conf
        self.stop_event = stop or threading.Event()

    def run(self) -> int:
        from sysinv_ext.common import rpc
        from sysinv_ext.conductor import kube
        from sysinv_ext.conductor.kube.lease import LeaderElector, LeaseConfig
        from sysinv_ext.conductor.manager import ConductorManager

        conf = self.conf
        rpc.register_opts(conf)  # [DEFAULT]transport_url, control_exchange (default sysinv)
        if conf.conductor.leader_election:
            check_lease_options(conf)
        if not upgrade_database(conf, self.stop_event):
            return 0
        kube.warm_up()
        manager = ConductorManager(conf)
        serving = Serving(conf, manager, self.stop_event)
        elector = None
        if conf.conductor.leader_election:
            manager.deactivate()  # standby until the Lease is ours
            group = conf.conductor
            elector = LeaderElector(manager.kube, LeaseConfig(
                namespace=group.lease_namespace, name=group.lease_name, identity=group.host,
                duration=group.lease_duration, renew_deadline=group.lease_renew_deadline,
                retry_period=group.lease_retry_period), on_started=serving.start,
                on_stopped=serving.stop)
        manager.start()  # node cache: LIST + WATCH, warm on a standby too
        if elector is not None:
            elector.start()
        else:
            serving.start()
        try:
            while not self.stop_event.wait(1.0):
                pass
        finally:
            LOG.info("Conductor %s stopping", conf.conductor.host)
            if elector is not None:
                elector.stop(STOP_TIMEOUT)  # steps down (serving.stop) and releases the Lease
            serving.stop()
            manager.close()
            manager.engine.dispose()
        return 0


def _bounded(what: str, func: Callable[[], object], timeout: float) -> None:
    """Run ``func`` on a daemon thread, wait at most ``timeout`` s; log failures, never raise."""
    def target() -> None:
        try:
            func()
        except Exception:  # a broken broker connection must not turn a stop into a crash
            LOG.exception("Failed to %s", what)

    worker = threading.Thread(target=target, name="stop", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        LOG.warning("Gave up waiting to %s after %.0f s", what, timeout)


def main(argv: Sequence[str] | None = None) -> int:
    conf = cfg.CONF
    try:
        parse_args(conf, argv, prog=PROG, project=PROJECT, register=register)
    except UsageError as err:
        return usage_exit(err)
    stop = stop_on_signals()
    try:
        return ConductorService(conf, stop).run()
    except exception.SysinvExtException as err:
        LOG.error("Conductor failed: %s", err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
