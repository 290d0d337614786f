"""The end of a call (the engine's CallEnded, the carrier's status) and its finalization."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.utils import timezone

from calls import services
from calls.models import Call, CallStatus
from calls.signals import call_finalized
from glassbox.celery import app as celery_app
from tests.conftest import Tenant
from tests.factories import make_call, make_organization
from voice.events import CallEnded, EndReason, Usage

USAGE = Usage(
    stt_seconds=12.5, llm_prompt_tokens=900, llm_completion_tokens=120, tts_characters=640
)


@pytest.fixture
def finalized() -> Iterator[list[dict[str, Any]]]:
    """What each call_finalized receiver call saw."""
    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, call: Call, **kwargs: Any) -> None:
        seen.append(
            {
                "pk": call.pk,
                "status": call.status,
                "duration_ms": call.duration_ms,
                "llm_prompt_tokens": call.llm_prompt_tokens,
                "stt_seconds": call.stt_seconds,
                "end_reason": call.end_reason,
            }
        )

    call_finalized.connect(receiver)
    try:
        yield seen
    finally:
        call_finalized.disconnect(receiver)


def _times(call: Call, *, answered_after_s: float | None, ended_after_s: float) -> None:
    call.started_at = timezone.now() - timedelta(minutes=5)
    call.answered_at = (
        None if answered_after_s is None else call.started_at + timedelta(seconds=answered_after_s)
    )
    call.ended_at = call.started_at + timedelta(seconds=ended_after_s)
    call.save()


def test_duration_runs_from_answer_to_end(tenant_a: Tenant, finalized: list[Any]) -> None:
    call = make_call(tenant_a.organization)
    _times(call, answered_after_s=2.0, ended_after_s=12.5)
    done = services.call_finalize(call=call)
    assert done.duration_ms == 10_500
    assert done.finalized_at is not None
    call.refresh_from_db()
    assert call.duration_ms == 10_500


def test_duration_of_a_call_never_answered_runs_from_its_start(
    tenant_a: Tenant, finalized: list[Any]
) -> None:
    call = make_call(tenant_a.organization)
    _times(call, answered_after_s=None, ended_after_s=4.25)
    assert services.call_finalize(call=call).duration_ms == 4_250


def test_finalize_without_an_end_time_ends_the_call_now(tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    done = services.call_finalize(call=call)
    assert done.ended_at is not None and done.ended_at >= done.started_at
    assert done.duration_ms is not None


def test_finalize_is_idempotent_and_signals_once(tenant_a: Tenant, finalized: list[Any]) -> None:
    call = make_call(tenant_a.organization)
    _times(call, answered_after_s=1.0, ended_after_s=3.0)
    first = services.call_finalize(call=call)
    again = services.call_finalize(call=call)
    assert [seen["pk"] for seen in finalized] == [call.pk]
    assert again.finalized_at == first.finalized_at
    assert again.duration_ms == first.duration_ms == 2_000


def test_call_end_records_usage_and_completes(
    tenant_a: Tenant,
    finalized: list[Any],
    celery_in_process: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    call = make_call(tenant_a.organization)
    with django_capture_on_commit_callbacks(execute=True):
        services.call_end(
            call=call,
            ended=CallEnded(reason=EndReason.ASSISTANT_HANGUP, detail="said goodbye", usage=USAGE),
        )
    call.refresh_from_db()
    assert call.status == CallStatus.COMPLETED
    assert call.end_reason == "assistant-hangup"
    assert call.end_detail == "said goodbye"
    assert call.ended_at is not None
    assert (
        call.stt_seconds,
        call.llm_prompt_tokens,
        call.llm_completion_tokens,
        call.tts_characters,
    ) == (12.5, 900, 120, 640)
    assert call.finalized_at is not None
    assert finalized == [
        {
            "pk": call.pk,
            "status": "completed",
            "duration_ms": call.duration_ms,
            "llm_prompt_tokens": 900,
            "stt_seconds": 12.5,
            "end_reason": "assistant-hangup",
        }
    ]


def test_call_end_records_a_transfer(tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    services.call_end(
        call=call, ended=CallEnded(reason=EndReason.TRANSFERRED, transfer_to="+14155550100")
    )
    call.refresh_from_db()
    assert call.status == CallStatus.COMPLETED
    assert call.transferred_to == "+14155550100"


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        (EndReason.PROVIDER_ERROR, CallStatus.FAILED),
        (EndReason.ERROR, CallStatus.FAILED),
        (EndReason.CALLER_HANGUP, CallStatus.COMPLETED),
        (EndReason.SILENCE_TIMEOUT, CallStatus.COMPLETED),
        (EndReason.MAX_DURATION, CallStatus.COMPLETED),
    ],
)
def test_call_end_status_follows_the_reason(
    tenant_a: Tenant, reason: EndReason, status: CallStatus
) -> None:
    call = make_call(tenant_a.organization)
    services.call_end(call=call, ended=CallEnded(reason=reason, detail="x"))
    call.refresh_from_db()
    assert call.status == status
    assert call.end_reason == str(reason)


def test_call_end_keeps_a_terminal_carrier_status_and_its_end_time(tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    services.call_status_update(call=call, status="completed", duration_s=9)
    call.refresh_from_db()
    ended_at = call.ended_at
    services.call_end(call=call, ended=CallEnded(reason=EndReason.PROVIDER_ERROR))
    call.refresh_from_db()
    assert call.status == CallStatus.COMPLETED
    assert call.ended_at == ended_at
    assert call.carrier_duration_s == 9


def test_carrier_completed_before_the_stream_ends_waits_for_the_engines_usage(
    tenant_a: Tenant,
    finalized: list[Any],
    celery_in_process: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Twilio's status callback and the media stream's end race. When the stream ran, the
    engine's CallEnded carries the usage and the real reason, so finalization (and the
    billing and webhooks hanging off call_finalized) must wait for it."""
    call = make_call(tenant_a.organization)
    call = services.call_stream_claim(token=services.call_stream_token(call=call), max_age_s=60)
    with django_capture_on_commit_callbacks(execute=True):
        services.call_status_update(call=call, status="completed", duration_s=30)
    assert finalized == []
    with django_capture_on_commit_callbacks(execute=True):
        services.call_end(call=call, ended=CallEnded(reason=EndReason.TRANSFERRED, usage=USAGE))
    assert len(finalized) == 1
    assert finalized[0]["llm_prompt_tokens"] == 900
    assert finalized[0]["end_reason"] == "transferred"
    call.refresh_from_db()
    assert call.status == CallStatus.COMPLETED
    assert call.carrier_duration_s == 30


def test_carrier_end_of_a_call_whose_stream_never_connected_finalizes_it(
    tenant_a: Tenant,
    finalized: list[Any],
    celery_in_process: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    call = make_call(tenant_a.organization)
    with django_capture_on_commit_callbacks(execute=True):
        services.call_status_update(call=call, status="no-answer", duration_s=None)
    assert [seen["end_reason"] for seen in finalized] == ["no-answer"]


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs the Redis broker (REDIS_URL)")
@pytest.mark.django_db(transaction=True)
def test_status_callback_finalization_reaches_a_real_worker_through_redis() -> None:
    """The one path the in-process tests leave out: the task message goes through the
    Redis broker to a worker (in a thread here) that finalizes the committed call."""
    organization = make_organization()
    call = make_call(organization)
    done = threading.Event()
    finalized_pks: list[int] = []

    def receiver(sender: Any, call: Call, **kwargs: Any) -> None:
        finalized_pks.append(call.pk)
        done.set()

    call_finalized.connect(receiver)
    try:
        with start_worker(celery_app, perform_ping_check=False, shutdown_timeout=10):
            services.call_status_update(call=call, status="busy", duration_s=None)
            assert done.wait(timeout=30), "no worker finalized the call"
    finally:
        call_finalized.disconnect(receiver)
    assert finalized_pks == [call.pk]
    call.refresh_from_db()
    assert call.finalized_at is not None
    assert call.status == CallStatus.BUSY


def test_a_status_update_working_from_a_stale_read_never_moves_the_call_backwards(
    tenant_a: Tenant,
) -> None:
    """Twilio posts status callbacks concurrently: "in-progress" may load the call before
    "completed" commits and save after it."""
    call = make_call(tenant_a.organization)
    stale = Call.objects.for_org(tenant_a.organization).get(pk=call.pk)
    services.call_status_update(call=call, status="completed", duration_s=12)
    services.call_status_update(call=stale, status="in-progress", duration_s=None)
    call.refresh_from_db()
    assert call.status == CallStatus.COMPLETED
    assert call.carrier_duration_s == 12


def test_call_end_from_a_stale_read_keeps_what_the_carrier_reported(tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    call = services.call_stream_claim(token=services.call_stream_token(call=call), max_age_s=60)
    stale = Call.objects.for_org(tenant_a.organization).get(pk=call.pk)
    services.call_status_update(call=call, status="completed", duration_s=30)
    services.call_end(call=stale, ended=CallEnded(reason=EndReason.CALLER_HANGUP, usage=USAGE))
    call.refresh_from_db()
    assert (call.status, call.carrier_duration_s, call.llm_prompt_tokens) == ("completed", 30, 900)
