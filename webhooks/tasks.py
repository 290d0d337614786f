"""Celery tasks for event webhooks, and where they run.

With a broker (``REDIS_URL``) events are built and deliveries attempted by workers;
each task takes ``organization_id`` explicitly. In the embedded default Celery is eager,
which would run an HTTP attempt in the thread that sent the signal (the call's recorder,
with its own time bound): there, the same functions run on a small thread pool of this
process instead, so a slow tenant server never holds up a call.

Retries are not Celery retries: a failed attempt sets the delivery's ``next_attempt_at``
in the database, and ``deliveries_due`` (celery beat every ``WEBHOOK_DUE_INTERVAL_S``, or
the web process's lifespan without beat) sends what is due. A lost task message, a
worker restart mid-attempt (the attempt's claim expires) or a retry hours away all end
up there.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import close_old_connections, connections

from calls.models import Call, TranscriptEntry
from glassbox.celery import app as celery_app
from tenants.models import Organization
from webhooks import events, services
from webhooks.models import EventType

logger = logging.getLogger(__name__)

_local_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _local_pool
    if _local_pool is None:
        _local_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=int(settings.WEBHOOK_LOCAL_WORKERS), thread_name_prefix="webhooks"
        )
    return _local_pool


def _in_pool(fn: Callable[..., Any], **kwargs: Any) -> None:
    def job() -> None:
        close_old_connections()
        try:
            fn(**kwargs)
        except Exception:
            logger.exception("webhooks: %s(%s) failed", fn.__name__, kwargs)
        finally:
            # This thread's connection is closed after each job, so none outlives it.
            connections.close_all()

    _pool().submit(job)


def _eager() -> bool:
    return bool(celery_app.conf.task_always_eager)


# -- events -------------------------------------------------------------------------------


def event_enqueue(**kwargs: Any) -> None:
    """Build and store an event off the call's path (see :func:`event_build`)."""
    if _eager():
        _in_pool(event_build, **kwargs)
    else:
        event_emit_task.delay(**kwargs)


def event_build(
    *,
    organization_id: int,
    event_type: str,
    call_id: int,
    occurred_at: str,
    turn_id: int | None = None,
) -> list[int]:
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:  # deleted since
        return []
    call = (
        Call.objects.for_org(organization)
        .select_related("organization", "agent")
        .filter(pk=call_id)
        .first()
    )
    if call is None:
        return []
    source = f"call:{call.pk}"
    if event_type == EventType.CALL_STARTED:
        data = events.call_started_data(call)
    elif event_type == EventType.CALL_ENDED:
        data = events.call_ended_data(call)
    elif event_type == EventType.CALL_ANALYZED:
        data = events.call_analyzed_data(call)
    elif event_type == EventType.CALL_RECORDING_READY:
        data = events.call_recording_ready_data(call)
    elif event_type == EventType.TRANSCRIPT_TURN:
        entry = TranscriptEntry.objects.for_org(organization).filter(pk=turn_id).first()
        if entry is None:
            return []
        data = events.transcript_turn_data(call, entry)
        source = f"turn:{entry.pk}"
    else:
        raise ValueError(f"unknown event type {event_type!r}")
    ids = services.event_emit(
        call=call,
        event_type=event_type,
        source=source,
        data=data,
        occurred_at=datetime.fromisoformat(occurred_at),
    )
    if ids:
        deliveries_dispatch(organization_id=organization_id, delivery_ids=ids)
    return ids


@shared_task(name="webhooks.tasks.event_emit", acks_late=True)
def event_emit_task(**kwargs: Any) -> list[int]:
    return event_build(**kwargs)


# -- deliveries ---------------------------------------------------------------------------


def deliveries_dispatch(*, organization_id: int, delivery_ids: list[int]) -> None:
    for delivery_id in delivery_ids:
        if _eager():
            _in_pool(delivery_run, organization_id=organization_id, delivery_id=delivery_id)
        else:
            deliver_task.delay(organization_id=organization_id, delivery_id=delivery_id)


def delivery_run(*, organization_id: int, delivery_id: int) -> str:
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        return "skipped"
    return services.delivery_attempt(organization=organization, delivery_id=delivery_id)


@shared_task(name="webhooks.tasks.deliver", acks_late=True)
def deliver_task(*, organization_id: int, delivery_id: int) -> str:
    return delivery_run(organization_id=organization_id, delivery_id=delivery_id)


def deliveries_due_dispatch() -> dict[str, int]:
    due = services.deliveries_due()
    for organization_id, delivery_id in due:
        deliveries_dispatch(organization_id=organization_id, delivery_ids=[delivery_id])
    return {"dispatched": len(due)}


@shared_task(name="webhooks.tasks.deliveries_due")
def deliveries_due_task() -> dict[str, int]:
    return deliveries_due_dispatch()


@shared_task(name="webhooks.tasks.events_purge_retained")
def events_purge_retained_task() -> int:
    return services.events_purge_retained()
