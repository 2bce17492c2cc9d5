"""Option registration for sysinv_ext, one module per option group (cyborg/conf style).

``register_conductor_opts(conf)`` registers everything the conductor reads on the ConfigOpts it
is given; the agent's options live in ``sysinv_ext.conf.agent``. Only ``sysinv_ext.cmd`` passes
the global ``cfg.CONF`` here; tests pass a fresh ``cfg.ConfigOpts()``.
"""
from __future__ import annotations

from oslo_config import cfg

from sysinv_ext.conf import conductor, kubernetes


def register_conductor_opts(conf: cfg.ConfigOpts) -> None:
    """Register the [conductor], [database] and [kubernetes] options on ``conf``."""
    conductor.register_opts(conf)
    kubernetes.register_opts(conf)
