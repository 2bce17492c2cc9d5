"""tests/fakes/rabbit.py's cleanup of names not known in advance, against the real broker.

oslo.messaging's servers declare ``<topic>_fanout_<uuid>`` queues and a ``<topic>_fanout``
exchange; a server killed with SIGKILL leaves them behind. ``delete_prefixed`` lists the broker's
names (management API, else ``rabbitmqctl``) and deletes those of one topic, and no others.
"""
from __future__ import annotations

import kombu
import pytest

from tests.fakes import rabbit

pytestmark = [pytest.mark.rabbitmq]


def test_delete_prefixed_removes_the_topics_queues_and_exchanges_only() -> None:
    reason = rabbit.broker_unreachable_reason()
    if reason:
        pytest.skip(reason)
    if rabbit.list_names("queues") is None:
        pytest.skip("cannot list the broker's queues (no management API, no usable rabbitmqctl)")
    topic, other = rabbit.unique_name("cleanup"), rabbit.unique_name("cleanup")
    queues = [topic, f"{topic}.ctl-0", f"{topic}_fanout_0123abcd", other]
    with kombu.Connection(rabbit.KOMBU_URL, connect_timeout=2) as conn:
        for name in queues:
            conn.default_channel.queue_declare(name)
        conn.default_channel.exchange_declare(f"{topic}_fanout", "fanout")
    try:
        deleted = rabbit.delete_prefixed(topic)
        assert deleted == sorted(queues[:3])
        assert not [n for n in rabbit.list_names("queues") or [] if n.startswith(topic)]
        assert f"{topic}_fanout" not in (rabbit.list_names("exchanges") or [])
        assert other in (rabbit.list_names("queues") or [])
    finally:
        rabbit.delete(queues=queues, exchanges=[f"{topic}_fanout"])
