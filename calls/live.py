"""Live call updates: the call services publish to a per-organization group on the
channel layer, and every dashboard socket of that organization (``LiveConsumer``) is a
member, whichever web process holds it (channels-redis when ``REDIS_URL`` is set).

Published once per change of a call's state (created, answered, status callback, ended,
finalized), never per audio frame or per turn, and only after the change committed, so a
page never shows a call that a rolled-back transaction did not create. A failing channel
layer is logged and otherwise ignored: a live page is not worth failing a call for.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.urls import reverse

from calls.models import TERMINAL_STATUSES, Call

logger = logging.getLogger(__name__)

# The consumer's handler for these messages is ``call_changed``.
MESSAGE_TYPE = "call.changed"


def live_group(*, organization_id: int) -> str:
    return f"org-{organization_id}-calls"


def call_live_payload(*, call: Call) -> dict[str, Any]:
    """What a live page needs to add, update or remove a call's row (no secrets: the
    same fields the API's call list shows)."""
    return {
        "id": call.pk,
        "url": reverse("calls:call-detail", kwargs={"call_id": call.pk}),
        "live": call.status not in TERMINAL_STATUSES,
        "status": call.status,
        "direction": call.direction,
        "from_number": call.from_number,
        "to_number": call.to_number,
        "agent": call.agent_id,
        "agent_name": (call.agent_snapshot or {}).get("name", ""),
        "started_at": call.started_at.isoformat() if call.started_at else None,
        "ended_at": call.ended_at.isoformat() if call.ended_at else None,
        "duration_ms": call.duration_ms,
        "end_reason": call.end_reason,
    }


def call_publish(*, call: Call) -> None:
    """Tell the organization's live pages about the call's current state, after commit."""
    payload = call_live_payload(call=call)
    organization_id = call.organization_id
    transaction.on_commit(lambda: _send(organization_id=organization_id, payload=payload))


def _send(*, organization_id: int, payload: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(
            live_group(organization_id=organization_id), {"type": MESSAGE_TYPE, "call": payload}
        )
    except Exception as exc:
        # Redis unreachable, or called on a thread that runs an event loop: the call goes
        # on, its live pages catch up when their socket reconnects.
        logger.warning("live: publishing call %s failed: %r", payload.get("id"), exc)
