"""Request context carried by sysinv_ext RPC calls, shaped like sysinv's RequestContext.

On the wire a context is a flat dict (oslo.messaging and sysinv's old AMQP RPC both send it as
``_context_<key>`` entries); sysinv's old server accepts any keys, so we send the few it logs.
The server hands endpoints the plain dict it received: nothing here knows about agents or GPUs.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import oslo_messaging as messaging


def _request_id() -> str:
    return "req-" + str(uuid.uuid4())


@dataclass(frozen=True)
class RequestContext:
    """The fields sysinv's ``RequestContext.to_dict()`` carries that matter to us."""

    user: str | None = None
    tenant: str | None = None
    is_admin: bool = False
    read_only: bool = False
    show_deleted: bool = False
    request_id: str = field(default_factory=_request_id)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def get_admin_context() -> RequestContext:
    """Context used by services talking to each other (sysinv: ``context.get_admin_context()``)."""
    return RequestContext(is_admin=True)


class DictContextSerializer(messaging.NoOpSerializer):  # type: ignore[misc]
    """Passes entities (strings, lists, dicts) through; contexts travel as plain dicts.

    Accepts a :class:`RequestContext`, any mapping, or ``None`` from callers; endpoints receive
    a plain ``dict`` (what sysinv's old client sent is not required to match our dataclass).
    """

    def serialize_context(self, ctxt: Any) -> dict[str, Any]:
        if ctxt is None:
            return {}
        if isinstance(ctxt, RequestContext):
            return ctxt.to_dict()
        if isinstance(ctxt, Mapping):
            return dict(ctxt)
        raise TypeError(
            f"RPC context must be a RequestContext or a mapping, not {type(ctxt).__name__}")

    def deserialize_context(self, ctxt: Any) -> dict[str, Any]:
        return dict(ctxt) if isinstance(ctxt, Mapping) else {}
