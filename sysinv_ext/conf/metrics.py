"""``[DEFAULT]metrics_address``: the opt-in Prometheus endpoint of agent and conductor.

One option, registered by both services (``sysinv_ext.cmd``) and listed in both sample
namespaces. Only the definition lives here; ``sysinv_ext.common.metrics`` parses and serves it.
"""
from __future__ import annotations

from oslo_config import cfg

opts: list[cfg.Opt] = [
    cfg.StrOpt(
        "metrics_address",
        default="",
        sample_default="",
        help="Serve Prometheus metrics over HTTP on [HOST]:PORT at /metrics, e.g. :9465 or "
        "0.0.0.0:9465. Empty (the default) serves nothing. Without a HOST the endpoint is bound "
        "to 127.0.0.1 only; give an address explicitly to let a remote Prometheus scrape it.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register [DEFAULT]metrics_address on ``conf`` (idempotent: both services call it once)."""
    conf.register_opts(opts)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [("DEFAULT", opts)]
