"""Call lifecycle signals (calls/signals.py) -> events.

Each receiver only schedules: after the sender's transaction commits, the event is built
and stored off the call's path (webhooks/tasks.py). Nothing here may fail or slow a call,
so every error is logged and swallowed.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from calls.models import Call, TranscriptEntry
from calls.signals import call_analyzed, call_finalized, call_started, recording_ready, turn_stored
from webhooks.models import AGENT_WEBHOOK_EVENTS, EndpointState, EventType, WebhookEndpoint
from webhooks.tasks import event_enqueue

logger = logging.getLogger(__name__)


def _has_destination(call: Call, event_type: str) -> bool:
    """Whether anyone may want the event: one indexed query (or none), so a call of an
    organization without webhooks queues nothing."""
    to_agent = event_type in AGENT_WEBHOOK_EVENTS and (call.agent_snapshot or {}).get("webhook_url")
    if to_agent:
        return True
    return (
        WebhookEndpoint.objects.for_org(call.organization)
        .exclude(state=EndpointState.DISABLED)
        .exists()
    )


def _schedule(call: Call, event_type: str, turn: TranscriptEntry | None = None) -> None:
    try:
        kwargs: dict[str, Any] = {
            "organization_id": call.organization_id,
            "event_type": event_type,
            "call_id": call.pk,
            "occurred_at": timezone.now().isoformat(),
        }
        if turn is not None:
            kwargs["turn_id"] = turn.pk

        def enqueue() -> None:
            try:
                if _has_destination(call, event_type):
                    event_enqueue(**kwargs)
            except Exception:
                logger.exception("webhooks: could not enqueue %s for call %s", event_type, call.pk)

        transaction.on_commit(enqueue)
    except Exception:
        logger.exception("webhooks: could not schedule %s for call %s", event_type, call.pk)


@receiver(call_started, dispatch_uid="webhooks.call_started")
def _call_started(sender: Any, call: Call, **kwargs: Any) -> None:
    _schedule(call, EventType.CALL_STARTED)


@receiver(call_finalized, dispatch_uid="webhooks.call_ended")
def _call_ended(sender: Any, call: Call, **kwargs: Any) -> None:
    _schedule(call, EventType.CALL_ENDED)


@receiver(call_analyzed, dispatch_uid="webhooks.call_analyzed")
def _call_analyzed(sender: Any, call: Call, **kwargs: Any) -> None:
    _schedule(call, EventType.CALL_ANALYZED)


@receiver(recording_ready, dispatch_uid="webhooks.recording_ready")
def _recording_ready(sender: Any, call: Call, **kwargs: Any) -> None:
    _schedule(call, EventType.CALL_RECORDING_READY)


@receiver(turn_stored, dispatch_uid="webhooks.transcript_turn")
def _turn_stored(sender: Any, call: Call, turn: TranscriptEntry, **kwargs: Any) -> None:
    _schedule(call, EventType.TRANSCRIPT_TURN, turn)
