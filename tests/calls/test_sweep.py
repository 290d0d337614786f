"""The periodic sweep that ends and finalizes calls a dead web process left behind."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from calls import services, tasks
from calls.models import Call, CallStatus
from calls.signals import call_finalized
from tests.conftest import Tenant, make_tenant
from tests.factories import make_call


def _aged(call: Call, **fields: Any) -> Call:
    Call.objects.dangerously_unscoped().filter(pk=call.pk).update(**fields)
    call.refresh_from_db()
    return call


def _fresh(call: Call) -> Call:
    return Call.objects.dangerously_unscoped().get(pk=call.pk)


def test_sweep_finishes_what_dead_processes_left_and_nothing_else(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    now = timezone.now()
    hour = timedelta(hours=1)
    # The carrier said "completed" long ago, but the engine never recorded the end.
    carrier_ended = _aged(
        make_call(org),
        status=CallStatus.COMPLETED,
        stream_connected_at=now - hour,
        ended_at=now - timedelta(minutes=30),
    )
    # Streaming for longer than the agent's max duration allows: its process is gone.
    lost = _aged(
        make_call(org),
        status=CallStatus.IN_PROGRESS,
        stream_connected_at=now - 2 * hour,
        agent_snapshot={"max_duration_s": 600.0},
    )
    # Answered by the webhook, but the stream never connected.
    no_stream = _aged(make_call(org), started_at=now - hour)
    # Left alone: a live call within its limit, a call just answered, one just ended.
    live = _aged(
        make_call(org),
        status=CallStatus.IN_PROGRESS,
        stream_connected_at=now - timedelta(minutes=5),
        agent_snapshot={"max_duration_s": 1800.0},
    )
    ringing = make_call(org)
    just_ended = _aged(
        make_call(org),
        status=CallStatus.COMPLETED,
        stream_connected_at=now - timedelta(minutes=2),
        ended_at=now - timedelta(seconds=5),
    )
    finalized: list[int] = []

    def receiver(sender: Any, call: Call, **kwargs: Any) -> None:
        finalized.append(call.pk)

    call_finalized.connect(receiver)
    try:
        counts = tasks.calls_sweep_abandoned()
        again = services.calls_sweep_abandoned()
    finally:
        call_finalized.disconnect(receiver)

    assert counts == {"finalized": 1, "lost": 1, "no_stream": 1}
    assert again == {"finalized": 0, "lost": 0, "no_stream": 0}
    assert sorted(finalized) == sorted([carrier_ended.pk, lost.pk, no_stream.pk])
    assert _fresh(carrier_ended).finalized_at is not None
    lost_after = _fresh(lost)
    assert (lost_after.status, lost_after.end_reason) == ("failed", "lost")
    assert lost_after.duration_ms is not None
    no_stream_after = _fresh(no_stream)
    assert (no_stream_after.status, no_stream_after.end_reason) == ("failed", "no-stream")
    for untouched in (live, ringing, just_ended):
        after = _fresh(untouched)
        assert after.finalized_at is None
        assert after.status == untouched.status


def test_a_call_whose_token_expired_without_a_stream_is_failed_with_a_reason(
    tenant_a: Tenant, settings: Any
) -> None:
    settings.TWILIO_STREAM_TOKEN_MAX_AGE_S = 60.0
    now = timezone.now()
    waiting = make_call(tenant_a.organization)  # just answered: its token is still good
    expired = _aged(make_call(tenant_a.organization), started_at=now - timedelta(seconds=150))
    assert services.calls_sweep_abandoned(now=now) == {"finalized": 0, "lost": 0, "no_stream": 1}
    after = _fresh(expired)
    assert (after.status, after.end_reason) == ("failed", "no-stream")
    assert "token expired" in after.end_detail
    assert after.finalized_at is not None
    assert _fresh(waiting).status == CallStatus.RINGING


async def _lifespan(app: Any) -> Any:
    """Drive one lifespan event through the ASGI app, as the server does."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan"}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    async with asyncio.timeout(10):
        assert (await outbox.get())["type"] == "lifespan.startup.complete"
    return task, inbox, outbox


@pytest.mark.django_db(transaction=True)
async def test_without_beat_the_web_process_sweeps_stuck_calls(settings: Any) -> None:
    from glassbox.asgi import application

    settings.CALLS_SWEEP_INTERVAL_S = 0.05
    tenant = await sync_to_async(make_tenant)("Stuck Inc")
    stuck = await sync_to_async(make_call)(tenant.organization)
    await sync_to_async(_aged)(stuck, started_at=timezone.now() - timedelta(hours=1))

    loop = asyncio.get_running_loop()
    swept = asyncio.Event()

    def receiver(sender: Any, call: Call, **kwargs: Any) -> None:
        if call.pk == stuck.pk:
            loop.call_soon_threadsafe(swept.set)

    call_finalized.connect(receiver)
    task, inbox, outbox = await _lifespan(application)
    try:
        async with asyncio.timeout(10):
            await swept.wait()
    finally:
        call_finalized.disconnect(receiver)
        await inbox.put({"type": "lifespan.shutdown"})
        async with asyncio.timeout(10):
            assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
            await task
    after = await sync_to_async(_fresh)(stuck)
    assert after.end_reason == "no-stream" and after.finalized_at is not None


async def test_with_beat_the_web_process_does_not_sweep(settings: Any) -> None:
    from glassbox.asgi import application

    settings.CALLS_SWEEP_INTERVAL_S = 0
    task, inbox, outbox = await _lifespan(application)
    assert not [t for t in asyncio.all_tasks() if "calls_sweep_periodically" in repr(t.get_coro())]
    await inbox.put({"type": "lifespan.shutdown"})
    async with asyncio.timeout(10):
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await task
