"""Entry points for oslo-config-generator: the ``sysinv_ext.agent`` and ``sysinv_ext.conductor``
namespaces (declared under ``oslo.config.opts`` in setup.cfg).

Modules are listed by hand (no discovery magic). The [DEFAULT] messaging options the services
rely on are included with the defaults the services apply (control_exchange = sysinv), so a
generated sample is complete without the whole oslo.messaging namespace.
"""
from __future__ import annotations

import copy

from oslo_config import cfg

from sysinv_ext.common import constants
from sysinv_ext.conf import conductor, kubernetes, metrics, zeromq

# The [DEFAULT] messaging options worth showing in our samples, and the defaults our
# services set (sysinv's services call set_defaults(control_exchange='sysinv')).
_MESSAGING_DEFAULTS = {
    "transport_url": None,
    "control_exchange": constants.CONTROL_EXCHANGE,
    "rpc_response_timeout": None,
    "executor_thread_pool_size": None,
}

OptList = list[tuple[str | cfg.OptGroup | None, list[cfg.Opt]]]


def _messaging_default_opts() -> list[cfg.Opt]:
    """Copies of oslo.messaging's [DEFAULT] options we document, with the service defaults."""
    import oslo_messaging.opts as messaging_opts  # imported late: heavy, only the generator needs it

    selected: list[cfg.Opt] = []
    for group, opts in messaging_opts.list_opts():
        if group not in (None, "DEFAULT"):
            continue
        for opt in opts:
            if opt.name not in _MESSAGING_DEFAULTS:
                continue
            opt = copy.deepcopy(opt)
            default = _MESSAGING_DEFAULTS[opt.name]
            if default is not None:
                opt.default = default
            selected.append(opt)
    return sorted(selected, key=lambda o: o.name)


def _default_opts() -> list[cfg.Opt]:
    """[DEFAULT] of both services: the messaging options above, sysinv's ZeroMQ ones, metrics_address."""
    return _messaging_default_opts() + zeromq.opts + [opt for _, opts in metrics.list_opts() for opt in opts]


def list_conductor_opts() -> OptList:
    """Options read by sysinv-gpu-conductor, for oslo-config-generator."""
    result: OptList = [("DEFAULT", _default_opts())]
    result.extend(conductor.list_opts())
    result.extend(kubernetes.list_opts())
    result.append((zeromq.curve_group, zeromq.curve_opts))
    return result


def list_agent_opts() -> OptList:
    """Options read by sysinv-gpu-agent, for oslo-config-generator."""
    from sysinv_ext.conf import agent  # owned by the agent side

    result: OptList = [("DEFAULT", _default_opts())]
    result.extend(agent.list_opts())
    result.append((zeromq.curve_group, zeromq.curve_opts))
    return result
