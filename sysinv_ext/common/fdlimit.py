"""Raise the open-file soft limit to the hard limit (capped) when a service starts.

A conductor holds one descriptor per TCP or ZeroMQ peer, per metrics connection and per pooled
API and database connection; with the usual soft limit of 1,024, about a thousand idle peers
left it unable to answer an agent (issue 21, item 9). The systemd units set ``LimitNOFILE``;
this covers a start outside systemd (a shell, a container) where only the soft limit is low:
the soft limit is raised to ``min(hard, WANTED)``, never above the hard limit (an unprivileged
process may not), never lowered, and a hard limit of RLIM_INFINITY is capped at ``WANTED``
(select()-era libraries and per-fd tables should not see a billion).
"""
from __future__ import annotations

import resource

from oslo_log import log as logging

LOG = logging.getLogger(__name__)

WANTED = 65536  # as LimitNOFILE= in etc/systemd/*.service


def raise_nofile_limit(wanted: int = WANTED) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit towards ``wanted``; returns (old soft, new soft).

    Never raises: a platform refusing the change is logged and the old limit kept."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError) as err:
        LOG.warning("Cannot read the open-file limit: %s", err)
        return -1, -1
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as err:
            LOG.warning("Cannot raise the open-file limit from %d to %d: %s", soft, target, err)
            return soft, soft
        LOG.info("Open-file limit raised from %d to %d (hard limit %s)", soft, target,
                 "unlimited" if hard == resource.RLIM_INFINITY else hard)
        return soft, target
    if soft != resource.RLIM_INFINITY and soft < 4096:
        LOG.warning("Open-file limit is %d (hard limit %d): set LimitNOFILE in the service's unit "
                    "for more than about a thousand peers", soft, hard)
    return soft, soft
