"""Options of the conductor's Kubernetes access: the ``[kubernetes]`` group.

Read by sysinv_ext.conductor.kube only. The retry options bound the synchronous RPC path: with
the defaults a failing PATCH gives up after 3 tries and about 0.3 s of back-off, and the
periodic audit re-applies the label later.
"""
from __future__ import annotations

from oslo_config import cfg

kubernetes_group = cfg.OptGroup(
    name="kubernetes",
    title="Kubernetes API options",
    help="How the conductor reaches the Kubernetes API server.",
)

kubernetes_opts = [
    cfg.StrOpt(
        "kubeconfig",
        default="/etc/kubernetes/admin.conf",
        help="kubeconfig file used to reach the Kubernetes API (server, credentials, CA).",
    ),
    cfg.StrOpt(
        "context",
        help="kubeconfig context to use; unset means the file's current-context.",
    ),
    cfg.FloatOpt(
        "request_timeout",
        default=5.0,
        min=0.1,
        max=300.0,
        help="Seconds to wait for one Kubernetes API request.",
    ),
    cfg.IntOpt(
        "retry_attempts",
        default=3,
        min=1,
        max=10,
        help="Tries per Kubernetes API request on server errors (5xx, 429) and connection errors.",
    ),
    cfg.FloatOpt(
        "retry_backoff",
        default=0.1,
        min=0.0,
        max=10.0,
        help="Seconds to wait before the second try; doubled before each further try.",
    ),
]


def _fresh(group: cfg.OptGroup) -> cfg.OptGroup:
    """A new OptGroup per ConfigOpts: oslo.config keeps registered options (and their
    overrides) inside the group object, so sharing one would leak overrides between configs."""
    return cfg.OptGroup(name=group.name, title=group.title, help=group.help)


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the [kubernetes] options on ``conf``."""
    conf.register_group(_fresh(kubernetes_group))
    conf.register_opts(kubernetes_opts, group=kubernetes_group.name)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(kubernetes_group, kubernetes_opts)]
