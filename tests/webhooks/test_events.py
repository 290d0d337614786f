"""From the call's signals to the listener: each event is built and sent off the call's
path (here on the web process's pool, as in the embedded default; test_worker.py and
the simulate_call test cover a real Celery worker)."""

from __future__ import annotations

import threading

import pytest

from calls import services as call_services
from calls.models import Call
from calls.signals import call_analyzed, recording_ready
from tests.factories import make_call, make_organization, make_webhook_endpoint
from tests.webhooks.listener import Listener, documented_verify
from voice.events import CallEnded, EndReason, Role, TranscriptEntry, Usage
from webhooks.models import Delivery

pytestmark = pytest.mark.django_db(transaction=True)


def _types(listener: Listener) -> list[str]:
    return [r.event["type"] for r in listener.received]


def test_a_calls_signals_arrive_as_signed_events(listener: Listener, local_delivery: None) -> None:
    org = make_organization()
    endpoint = make_webhook_endpoint(
        org,
        url=listener.url,
        events=[
            "call.started",
            "call.ended",
            "call.analyzed",
            "call.recording_ready",
            "transcript.turn",
        ],
    )
    call = make_call(org)
    claimed = call_services.call_stream_claim(
        token=call_services.call_stream_token(call=call), max_age_s=60
    )

    call_services.call_stream_started(call=claimed, stream_sid="MZ" + "0" * 32)
    listener.wait_for(lambda got: len(got) == 1)
    call_services.call_record_transcript(
        call=claimed,
        entry=TranscriptEntry(
            role=Role.USER, text="I need help", turn_index=1, start_ms=100.0, end_ms=900.0
        ),
    )
    listener.wait_for(lambda got: len(got) == 2)
    call_services.call_end(
        call=claimed,
        ended=CallEnded(
            reason=EndReason.CALLER_HANGUP,
            usage=Usage(stt_seconds=3.0, llm_prompt_tokens=50, llm_completion_tokens=9),
        ),
    )
    listener.wait_for(lambda got: len(got) == 3)
    finished = Call.objects.for_org(org).get(pk=call.pk)
    call_analyzed.send(sender=Call, call=finished)
    recording_ready.send(sender=Call, call=finished)
    got = listener.wait_for(lambda got: len(got) == 5)

    assert _types(listener)[:3] == ["call.started", "transcript.turn", "call.ended"]
    assert set(_types(listener)[3:]) == {"call.analyzed", "call.recording_ready"}
    verify = documented_verify()
    assert all(verify(r.body, r.signature, endpoint.secret) for r in got)
    by_type = {r.event["type"]: r.event for r in got}
    assert by_type["transcript.turn"]["data"]["turn"]["text"] == "I need help"
    ended = by_type["call.ended"]["data"]
    assert ended["call"]["status"] == "completed"
    assert ended["call"]["end_reason"] == "caller-hangup"
    assert ended["call"]["duration_ms"] is not None
    assert ended["usage"]["llm_prompt_tokens"] == 50
    assert [t["text"] for t in ended["transcript"]] == ["I need help"]
    recording = by_type["call.recording_ready"]["data"]["recording"]
    assert set(recording) >= {"content_type", "channels", "duration_ms", "bytes", "url"}
    assert "name" not in recording  # where it is stored is ours
    assert by_type["call.recording_ready"]["data"]["recording"]["url"].endswith(
        f"/api/v1/calls/{call.pk}/recording/"
    )
    # Signalled again (a replayed spool, a retried task): still one event each.
    call_analyzed.send(sender=Call, call=finished)
    assert Delivery.objects.for_org(org).count() == 5


def test_the_call_never_waits_for_the_tenants_server(
    listener: Listener, local_delivery: None
) -> None:
    """The listener holds its answer; the call's service returns regardless, and the
    delivery is made (and recorded) once the listener answers."""
    org = make_organization()
    make_webhook_endpoint(org, url=listener.url, events=["call.started"])
    listener.gate = threading.Event()
    call = make_call(org)

    call_services.call_stream_started(call=call, stream_sid="MZ" + "1" * 32)

    listener.wait_for(lambda got: len(got) == 1)
    delivery = Delivery.objects.for_org(org).get()
    assert delivery.attempts == 0 and delivery.locked_until is not None  # in flight
    listener.gate.set()
    for _ in range(600):
        delivery.refresh_from_db()
        if delivery.state == "succeeded":
            break
        threading.Event().wait(0.05)
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("succeeded", 1, 200)
