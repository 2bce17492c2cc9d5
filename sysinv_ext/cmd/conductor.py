"""``sysinv-gpu-conductor --config-file FILE``: the conductor service (threads, no eventlet).

Order at start: parse config and set up oslo.log; upgrade the label database to the newest
alembic revision (retrying with back-off while it is unreachable); start the node cache
(LIST + WATCH, also on a standby, so a takeover starts warm); then, with
``[conductor]leader_election`` (default), compete for the Kubernetes Lease and only while
holding it serve: the RPC server (``start_rpc_servers``: AMQP on
``[conductor]topic``/``[conductor]host``, or sysinv's ZeroMQ when
``[DEFAULT]rpc_backend_zeromq``) and the audit thread.
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

from sysinv_ext.cmd import UsageError, parse_args, start_metrics, stop_on_signals, usage_exit
from sysinv_ext.common import exception, fdlimit, memory
from sysinv_ext.conf import register_conductor_opts, zeromq
from sysinv_ext.conf.conductor import database_url

# oslo.messaging, SQLAlchemy, alembic and the kubernetes client are imported once the command
# line is known to be good: a bad flag is answered in well under a second.

LOG = logging.getLogger(__name__)
PROG = "sysinv-gpu-conductor"
PROJECT = "sysinv-gpu"
STOP_TIMEOUT = 20.0  # seconds; below systemd's TimeoutStopSec=30s
#: the conductor methods a ZeroMQ caller may call (nothing else of the manager is exposed)
ZMQ_METHODS = ("device_plugin_labels_update_by_ihost",)


def register(conf: cfg.ConfigOpts) -> None:
    register_conductor_opts(conf)
    zeromq.register_opts(conf)  # checked at start with the rest: a bad port is a usage error


def curve_server_keys(conf: cfg.ConfigOpts) -> Any:
    """``[zeromq]`` CURVE keys of the conductor (ServerKeys), or None when CURVE is off.

    :raises: ValueError (zmq_curve.CurveKeyError) for a missing option, file or a secret key
        file others may read: a usage error at start.
    """
    group = conf.zeromq
    if not group.curve_secret_key_file:
        return None
    from sysinv_ext.common import zmq_curve

    if not group.curve_allowed_clients_dir:
        raise zmq_curve.CurveKeyError("[zeromq]curve_secret_key_file needs "
                                      "[zeromq]curve_allowed_clients_dir (the agents' public keys)")
    return zmq_curve.load_server_keys(group.curve_secret_key_file, group.curve_allowed_clients_dir)


def check(conf: cfg.ConfigOpts) -> None:
    """Start-time checks that make a usage error (exit 2, one line)."""
    if conf.rpc_backend_zeromq:
        curve_server_keys(conf)


def upgrade_database(conf: cfg.ConfigOpts, stop: threading.Event) -> bool:
    """Upgrade the schema to head, retrying with back-off; False if stopped first."""
    from sysinv_ext.db import api as db_api
    from sysinv_ext.db import migration

    url = database_url(conf)
    _set_aside_corrupt(url)
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
            if migration.sqlite_file(url):  # a local file does not come back by waiting
                raise exception.DatabaseError(action="upgrade", reason=_one_line(err)) from err
            LOG.error("Cannot upgrade label database %s: %s; retrying in %.0f s",
                      db_api.describe_url(url), err, delay)
        stop.wait(delay)
        delay = min(delay * 2, conf.database.connect_retry_interval * 10.0)
    return False


def _set_aside_corrupt(url: str) -> None:
    """A corrupt SQLite file is moved aside and a fresh database used: its rows are rebuilt by
    the agents' next reports (every [agent]report_interval), so serving beats crash-looping."""
    from sysinv_ext.db import migration

    try:
        moved = migration.set_aside_corrupt_sqlite(url)
    except OSError as err:
        raise exception.DatabaseError(action="moving a corrupt database aside",
                                      reason=_one_line(err)) from err
    if moved:
        LOG.error("Label database %s is corrupt (%s): moved aside to %s; starting with an empty "
                  "database (agents re-report their GPUs)", migration.sqlite_file(url), *moved[::-1])


def _one_line(err: BaseException, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + "..."


def check_lease_options(conf: cfg.ConfigOpts) -> None:
    """client-go's rules: retry_period < renew_deadline < duration (else two could serve)."""
    group = conf.conductor
    if not group.lease_retry_period < group.lease_renew_deadline < group.lease_duration:
        raise exception.ConfigurationError(
            reason=f"[conductor] needs lease_retry_period ({group.lease_retry_period}) < "
            f"lease_renew_deadline ({group.lease_renew_deadline}) < lease_duration "
            f"({group.lease_duration})")


class Serving:
    """What only the active conductor runs: the RPC server (AMQP or ZeroMQ) and the audit."""

    def __init__(self, conf: cfg.ConfigOpts, manager: Any, fatal: threading.Event) -> None:
        self.conf, self.manager, self._fatal = conf, manager, fatal
        self._lock = threading.Lock()
        self._servers: RpcServers | None = None
        self._term = threading.Event()  # set when this term of serving ends
        self._audit: Any = None

    def start(self) -> None:
        from sysinv_ext.conductor.audit import AuditLoop

        with self._lock:
            if self._servers is not None:
                return
            self.manager.activate()
            self._term = threading.Event()
            self._servers = start_rpc_servers(self.conf, self.manager, self._term, fatal=self._fatal)
            self._audit = AuditLoop(self.manager.audit, self.conf.conductor.audit_interval,
                                    metrics=self.manager.metrics)
            self._audit.start()

    def stop(self) -> None:
        with self._lock:
            servers, self._servers = self._servers, None
            if servers is None:
                return
            self._term.set()  # a start still in progress (broker down, port taken) gives up
            self.manager.deactivate()
            if self._audit is not None:
                self._audit.stop()
            stop_rpc_servers(servers)
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
        from sysinv_ext.conductor.metrics import NO_CONDUCTOR_METRICS, conductor_metrics

        conf = self.conf
        rpc.register_opts(conf)  # [DEFAULT]transport_url, control_exchange (default sysinv)
        if conf.conductor.leader_election:
            check_lease_options(conf)
        if not upgrade_database(conf, self.stop_event):
            return 0
        kube.warm_up()
        registry, endpoint = start_metrics(conf, PROG)
        metrics = NO_CONDUCTOR_METRICS if registry is None else conductor_metrics(registry)
        manager = ConductorManager(conf, metrics=metrics)
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
            if endpoint is not None:
                endpoint.close()
        return 0


class RpcServers:
    """The conductor's RPC server, AMQP (oslo.messaging) or sysinv's ZeroMQ, once started."""

    def __init__(self, transport: str) -> None:
        self.transport = transport  # "amqp" or "zmq"
        self.started = threading.Event()
        self.stop: Callable[[], object] = lambda: None
        self.endpoint = ""  # ZeroMQ: tcp://[ip]:port actually bound


def start_rpc_servers(conf: cfg.ConfigOpts, manager: Any, stop: threading.Event, *,
                      fatal: threading.Event | None = None) -> RpcServers:
    """Start serving ``manager`` on a thread and return at once (called when the Lease is ours).

    AMQP: oslo.messaging's start() blocks while the broker is unreachable, so the main thread
    stays free for SIGTERM. ZeroMQ: a failed bind (port in use) is retried with back-off.
    ``stop`` ends this term: a start still in progress gives up, and a server that comes up
    after it is stopped at once (a standby never serves). A server that cannot start at all
    sets ``fatal`` (default ``stop``).
    """
    fatal = stop if fatal is None else fatal
    from sysinv_ext.common import rpc

    servers = RpcServers("zmq" if conf.rpc_backend_zeromq else "amqp")
    if servers.transport == "amqp":
        _warn_if_sysinv_topic(conf.conductor.topic)

    def start_amqp() -> None:
        import oslo_messaging as messaging

        target = messaging.Target(topic=conf.conductor.topic, server=conf.conductor.host)
        server = rpc.get_server(conf, target, [manager])
        try:
            server.start()
        except Exception:
            LOG.exception("RPC server failed to start")
            fatal.set()
            return
        if stop.is_set():  # stepped down while start() waited for the broker
            rpc.stop_server(server)
            return
        servers.stop = lambda: rpc.stop_server(server)
        servers.started.set()
        LOG.info("Conductor %s serving topic %s on exchange %s", conf.conductor.host,
                 conf.conductor.topic, conf.control_exchange)

    def start_zmq() -> None:
        import zmq

        from sysinv_ext.common import exception, zmq_curve, zmq_rpc

        try:
            curve = curve_server_keys(conf)
        except zmq_curve.CurveKeyError as err:
            LOG.error("ZeroMQ RPC server not started: %s", err)
            fatal.set()
            return
        delay = 1.0
        while not stop.is_set():
            server = zmq_rpc.ZmqRpcServer(
                manager, ZMQ_METHODS, conf.rpc_zeromq_conductor_bind_ip,
                conf.rpc_zeromq_conductor_bind_port, name="sysinv-gpu-conductor",
                expected=(exception.SysinvExtException,), curve=curve)
            try:
                server.start()
            except zmq.ZMQError as err:
                LOG.error("Cannot bind ZeroMQ RPC at %s: %s; retrying in %.0f s",
                          server.endpoint, err, delay)
                stop.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            if stop.is_set():  # stepped down meanwhile: a standby does not bind
                server.stop()
                return
            servers.stop, servers.endpoint = server.stop, server.endpoint
            LOG.info("Conductor %s serving ZeroMQ RPC at %s (sysinv's zerorpc wire, no broker)",
                     conf.conductor.host, server.endpoint)
            if zeromq.is_loopback(conf.rpc_zeromq_conductor_bind_ip):
                LOG.info("ZeroMQ RPC listens on loopback only: agents on other hosts cannot "
                         "reach it. To serve them, set [DEFAULT]rpc_zeromq_conductor_bind_ip to "
                         "this controller's management address (and see [zeromq] CURVE keys)")
            servers.started.set()
            return

    starter = threading.Thread(target=start_zmq if servers.transport == "zmq" else start_amqp,
                               name="rpc-start", daemon=True)
    starter.start()
    return servers


def stop_rpc_servers(servers: RpcServers) -> None:
    """Stop what :func:`start_rpc_servers` started (bounded; never raises)."""
    if servers.started.is_set():
        _bounded("stop the RPC server", servers.stop, STOP_TIMEOUT)
    else:
        LOG.warning("RPC server never %s; exiting without it", "bound its ZeroMQ address"
                    if servers.transport == "zmq" else "connected to the broker")


def _warn_if_sysinv_topic(topic: str) -> None:
    from sysinv_ext.common import constants

    if topic == constants.MANAGER_TOPIC:
        LOG.warning("[conductor]topic is sysinv's own %s: a RabbitMQ-based sysinv-conductor on "
                    "the same broker shares this queue, and every sysinv call then goes to one "
                    "of the two consumers (ours answers NoSuchMethod). Use it only on a system "
                    "without one (StarlingX since 2022 runs sysinv over ZeroMQ).", topic)


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
        parse_args(conf, argv, prog=PROG, project=PROJECT, register=register, check=check)
    except UsageError as err:
        return usage_exit(err)
    fdlimit.raise_nofile_limit()  # many peers: see sysinv_ext.common.fdlimit
    stop = stop_on_signals()
    memory.limit_arenas()  # before the worker threads exist (see sysinv_ext.common.memory)
    try:
        return ConductorService(conf, stop).run()
    except exception.SysinvExtException as err:
        LOG.error("Conductor failed: %s", err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
