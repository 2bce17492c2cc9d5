"""Console entry points of sysinv_ext; the only modules that touch the global ``cfg.CONF``.

``parse_args`` is shared by both services: it registers the given options, parses argv with
oslo.config and turns any bad flag, missing config file or bad option value into exactly one
stderr line and exit code 2 (no usage dump, no traceback).
"""
from __future__ import annotations

import contextlib
import io
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence

from oslo_config import cfg
from oslo_log import log as logging
from prometheus_client import CollectorRegistry

from sysinv_ext.common import metrics
from sysinv_ext.conf import metrics as metrics_conf

EXIT_USAGE = 2
LOG = logging.getLogger(__name__)

# oslo.messaging still imports oslo.service's eventlet backend module (never used: we run
# threads and never monkey-patch); its import-time deprecation banner would break the
# "one stderr line" rule for bad flags. Silence just that banner, before oslo.messaging loads.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")


def threads_only() -> None:
    """Keep eventlet out of a service process: oslo.service's threading backend (its
    documented hook, needs ``oslo.service[threading]``) instead of the eventlet default, and
    eventlet made unimportable, since futurist imports it whenever it is installed. Nothing
    here uses green threads; eventlet and the dnspython it patches cost a service about
    20 MB of RSS. Call before oslo.messaging is imported; a process that already loaded
    eventlet (a test run) is left as it is."""
    if "eventlet" in sys.modules:
        return
    from oslo_service import backend

    backend.register_backend_default_hook(lambda: backend.BackendType.THREADING)
    sys.modules["eventlet"] = None  # type: ignore[assignment]  # import eventlet -> ImportError


threads_only()  # the console entry points import this package before anything of oslo.messaging


class UsageError(Exception):
    """Bad command line or configuration: printed as one line, exit code 2."""


def parse_args(conf: cfg.ConfigOpts, argv: Sequence[str] | None, *, prog: str, project: str,
               register: Callable[[cfg.ConfigOpts], None],
               check: Callable[[cfg.ConfigOpts], None] | None = None, setup_logging: bool = True) -> None:
    """Register options on ``conf``, parse ``argv`` and set up oslo.log; raises UsageError."""
    logging.register_options(conf)
    metrics_conf.register_opts(conf)
    register(conf)
    args = list(sys.argv[1:] if argv is None else argv)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            conf(args, project=project, prog=prog, default_config_files=[])
    except SystemExit as exc:
        if exc.code in (0, None):  # --help / --version printed to stdout
            raise
        lines = [line for line in captured.getvalue().splitlines() if line.strip()]
        raise UsageError(lines[-1] if lines else f"{prog}: invalid arguments") from None
    except cfg.Error as exc:
        raise UsageError(f"{prog}: {str(exc).strip().splitlines()[0]}") from None
    try:
        _check_values(conf)
        if conf.metrics_address:
            metrics.parse_address(conf.metrics_address)
        if check is not None:
            check(conf)
    except (cfg.Error, ValueError) as exc:
        raise UsageError(f"{prog}: {str(exc).strip().splitlines()[0]}") from None
    if setup_logging:
        logging.setup(conf, project)


def _check_values(conf: cfg.ConfigOpts) -> None:
    """Read every registered option once, so a bad value fails at start, not hours later."""
    for name in list(conf):
        value = getattr(conf, name)
        if isinstance(value, cfg.ConfigOpts.GroupAttr):
            for opt_name in list(value):
                getattr(value, opt_name)


def start_metrics(conf: cfg.ConfigOpts, prog: str) -> tuple[CollectorRegistry | None,
                                                              metrics.MetricsEndpoint | None]:
    """[DEFAULT]metrics_address: a registry and its endpoint, or (None, None) when unset.

    A port that cannot be bound is logged and the service runs on without metrics.
    """
    metrics_conf.register_opts(conf)  # idempotent; services built on a ConfigOpts of their own
    if not conf.metrics_address:
        return None, None
    registry = CollectorRegistry()
    try:
        return registry, metrics.serve(conf.metrics_address, registry, prog)
    except OSError as err:
        LOG.error("%s: cannot serve metrics on %s: %s; running without them", prog,
                  conf.metrics_address, err)
        return None, None


def usage_exit(error: UsageError) -> int:
    print(str(error), file=sys.stderr)
    return EXIT_USAGE


def stop_on_signals() -> threading.Event:
    """An Event set by SIGTERM or SIGINT: the services' main loops wait on it (main thread only).

    Set from a thread, never from the Python signal handler: a handler calling ``stop.set()``
    while the main thread sat in ``stop.wait()`` could deadlock on the Event's own lock
    (gpu_plugin.common.signals says how; seen in the plugin, same code here)."""
    from gpu_plugin.common.signals import stop_on_signals as _stop_on_signals

    stop = threading.Event()
    _stop_on_signals(stop, (signal.SIGTERM, signal.SIGINT),
                     on_signal=lambda sig: LOG.info("Received signal %d", int(sig)))
    return stop
