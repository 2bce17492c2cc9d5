"""RPC transport, client and server setup for sysinv_ext (oslo.messaging, threading executor).

One place decides what every agent and conductor shares: the ``sysinv`` control exchange,
the exception modules a caller may rebuild from a remote error, the dict-context serializer,
and the legacy sysinv wire shims (:mod:`sysinv_ext.common.compat`). Knows no RPC methods.
The server's dispatcher treats what any caller can provoke (an unknown method or version,
arguments that do not fit the method) as an expected rejection: one bounded, rate-limited log
line instead of oslo.messaging's traceback, and a reply without the server's traceback.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg
from oslo_log import log as logging
from oslo_messaging import opts as messaging_opts
from oslo_messaging._metrics import client as _metrics_client
from oslo_messaging._tracing import client as _tracing_client
from oslo_messaging.rpc import dispatcher as rpc_dispatcher
from oslo_messaging.rpc import server as rpc_server

from sysinv_ext.common import bounded, compat, constants, context, exception
from sysinv_ext.conf import zeromq

LOG = logging.getLogger(__name__)

DEFAULT_EXCHANGE = constants.CONTROL_EXCHANGE
# Exception modules whose classes a caller rebuilds from a remote failure (builtins always are).
ALLOWED_EXMODS = [exception.__name__]

# oslo.messaging 18 registers these groups on the global cfg.CONF only, yet reads them from the
# ConfigOpts given to the transport (client: NoSuchOptError; server: endpoint silently never
# called). We register them on private ConfigOpts too, so tests may use a fresh one.
_GLOBAL_ONLY_GROUPS = (
    ("oslo_messaging_tracing", _tracing_client.oslo_messaging_tracing),
    ("oslo_messaging_metrics", _metrics_client.oslo_messaging_metrics),
)


def set_defaults(control_exchange: str = DEFAULT_EXCHANGE) -> None:
    """Make ``[DEFAULT]control_exchange`` default to sysinv's exchange (process-wide default)."""
    messaging.set_transport_defaults(control_exchange=control_exchange)


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the oslo.messaging options our transports read, on any ConfigOpts.

    After this, ``[DEFAULT]transport_url`` and ``control_exchange`` (default ``sysinv``) can be
    overridden before :func:`get_transport`.
    """
    set_defaults()
    zeromq.register_opts(conf)  # [DEFAULT]rpc_backend_zeromq and sysinv's other ZeroMQ options
    for group, opts in messaging_opts.list_opts():
        if group is None:
            conf.register_opts(opts)
    if conf is cfg.CONF:
        return
    for group, opts in _GLOBAL_ONLY_GROUPS:
        conf.register_opts(opts, group=group)


def get_transport(conf: cfg.ConfigOpts, url: str | None = None) -> messaging.Transport:
    """RPC transport for ``[DEFAULT]transport_url`` (or ``url``), with legacy shims installed.

    Does not connect: a broker that is down shows up on the first call or while serving.
    """
    compat.install()
    register_opts(conf)
    return messaging.get_rpc_transport(conf, url=url, allowed_remote_exmods=ALLOWED_EXMODS)


def get_client(transport: messaging.Transport, target: messaging.Target, *,
               timeout: float | None = None, retry: int | None = None,
               version_cap: str | None = None) -> messaging.RPCClient:
    """RPC client with our serializer; pass ``timeout`` and ``retry`` explicitly: with
    oslo.messaging's ``retry=None`` a call blocks for the whole of a broker outage."""
    return messaging.get_rpc_client(transport, target, timeout=timeout, retry=retry,
                                    version_cap=version_cap,
                                    serializer=context.DictContextSerializer())


def _raised_by_the_call(err: TypeError) -> bool:
    """True when arguments did not fit the endpoint method: the innermost frame is oslo's
    dispatcher's call, or its expected_exceptions wrapper (rpc/server.py), not the method."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename in (rpc_dispatcher.__file__,
                                                                 rpc_server.__file__)


class RejectingDispatcher(rpc_dispatcher.RPCDispatcher):  # type: ignore[misc]
    """RPCDispatcher whose expected failures carry no traceback, and whose caller-provoked
    rejections (NoSuchMethod, UnsupportedVersion, a TypeError binding the arguments) are logged
    here in one line, a few per minute per kind, and answered as expected exceptions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._log = bounded.CauseLimiter()

    def dispatch(self, incoming: Any) -> Any:
        try:
            return super().dispatch(incoming)
        except rpc_dispatcher.ExpectedException as err:
            err.exc_info = (err.exc_info[0], err.exc_info[1], None)
            raise
        except (rpc_dispatcher.NoSuchMethod, rpc_dispatcher.UnsupportedVersion) as err:
            self._rejected(incoming, err)
            expected = rpc_dispatcher.ExpectedException()
        except TypeError as err:
            if not _raised_by_the_call(err):
                raise
            self._rejected(incoming, err)
            expected = rpc_dispatcher.ExpectedException()
        expected.exc_info = (expected.exc_info[0], expected.exc_info[1], None)
        raise expected

    def _rejected(self, incoming: Any, err: Exception) -> None:
        kind = type(err).__name__
        allowed, held = self._log.allow(kind)
        if allowed:
            message = getattr(incoming, "message", None)
            method = message.get("method") if isinstance(message, dict) else None
            LOG.info("RPC call %s rejected: %s: %s%s", bounded.short(method), kind,
                     bounded.short(str(err), 400), bounded.held_note(held))


def get_server(conf: cfg.ConfigOpts, target: messaging.Target, endpoints: Sequence[Any],
               transport: messaging.Transport | None = None) -> messaging.rpc.RPCServer:
    """Threading RPC server (no eventlet) for ``endpoints`` on ``target``; call ``start()``.

    Stop with :func:`stop_server`, which also releases a transport this function created.
    """
    if transport is None:
        transport = get_transport(conf)
    dispatcher = RejectingDispatcher(list(endpoints), context.DictContextSerializer(),
                                     messaging.DefaultRPCAccessPolicy)
    return rpc_server.RPCServer(transport, target, dispatcher)


def stop_server(server: messaging.rpc.RPCServer, *, cleanup_transport: bool = True) -> None:
    """Stop consuming, wait for endpoint calls in flight, then close the transport."""
    try:
        server.stop()
        server.wait()
    finally:
        if cleanup_transport:
            server.transport.cleanup()
