"""``sysinv-gpu-conductor --config-file FILE``: the conductor service (threads, no eventlet).

Order at start: parse config and set up oslo.log; upgrade the label database to the newest
alembic revision (retrying with back-off while it is unreachable); start the RPC server on
``[conductor]topic``/``[conductor]host``; start the audit thread. SIGTERM or SIGINT stop
everything cleanly; only the main thread decides the exit code.
"""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence

from oslo_config import cfg
from oslo_log import log as logging

from sysinv_ext.cmd import UsageError, parse_args, start_metrics, stop_on_signals, usage_exit
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


class ConductorService:
    """RPC server + audit thread around one ConductorManager."""

    def __init__(self, conf: cfg.ConfigOpts, stop: threading.Event | None = None) -> None:
        self.conf = conf
        self.stop_event = stop or threading.Event()

    def run(self) -> int:
        import oslo_messaging as messaging

        from sysinv_ext.common import rpc
        from sysinv_ext.conductor import kube
        from sysinv_ext.conductor.audit import AuditLoop
        from sysinv_ext.conductor.manager import ConductorManager
        from sysinv_ext.conductor.metrics import NO_CONDUCTOR_METRICS, ConductorGauges, conductor_metrics

        conf = self.conf
        rpc.register_opts(conf)  # [DEFAULT]transport_url, control_exchange (default sysinv)
        if not upgrade_database(conf, self.stop_event):
            return 0
        kube.warm_up()
        registry, endpoint = start_metrics(conf, PROG)
        metrics = NO_CONDUCTOR_METRICS if registry is None else conductor_metrics(registry)
        manager = ConductorManager(conf, metrics=metrics)
        metrics.observe(ConductorGauges(node_cache=manager.cached_nodes, watch_restarts=lambda: 0,
                                        pending_hosts=manager.pending_hosts, leader=lambda: True))
        target = messaging.Target(topic=conf.conductor.topic, server=conf.conductor.host)
        server = rpc.get_server(conf, target, [manager])
        audit = AuditLoop(manager.audit, conf.conductor.audit_interval, metrics=metrics)
        started = threading.Event()

        def start_server() -> None:
            # oslo.messaging's start() blocks while the broker is unreachable (it retries the
            # connection forever); keep the main thread free to react to SIGTERM meanwhile.
            try:
                server.start()
            except Exception:
                LOG.exception("RPC server failed to start")
                self.stop_event.set()
                return
            started.set()
            LOG.info("Conductor %s serving topic %s on exchange %s", conf.conductor.host,
                     conf.conductor.topic, conf.control_exchange)

        starter = threading.Thread(target=start_server, name="rpc-start", daemon=True)
        starter.start()
        audit.start()
        try:
            while not self.stop_event.wait(1.0):
                pass
        finally:
            LOG.info("Conductor %s stopping", conf.conductor.host)
            audit.stop()
            if started.is_set():
                _bounded("stop the RPC server", lambda: rpc.stop_server(server), STOP_TIMEOUT)
            else:
                LOG.warning("RPC server never connected to the broker; exiting without it")
            manager.engine.dispose()
            if endpoint is not None:
                endpoint.close()
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
