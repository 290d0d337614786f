"""GET /api/v1/calls/ and /api/v1/calls/<id>/: read-only call records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from calls import services
from calls.models import Call, CallStatus
from tests.conftest import Tenant
from tests.factories import make_call, make_phone_number
from voice.events import (
    CallEnded,
    EndReason,
    Role,
    ToolCallRecord,
    TranscriptEntry,
    TurnKind,
    TurnTimeline,
)

LIST = "/api/v1/calls/"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DERIVED = {
    "voice_to_voice_ms",
    "platform_overhead_ms",
    "endpointing_ms",
    "stt_lag_ms",
    "llm_ttft_ms",
    "tts_ttfb_ms",
    "vad_hangover_ms",
    "llm_first_clause_ms",
}


def _ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def _assert_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"]
    return body["error"]


def _call_at(tenant: Tenant, minutes: int, **data: Any) -> Call:
    return make_call(tenant.organization, started_at=T0 + timedelta(minutes=minutes), **data)


def _record_a_conversation(call: Call) -> None:
    """Events as the engine emits them, written by the recorder's services."""
    # Written out of order on purpose: the API orders the transcript by start_ms.
    services.call_record_transcript(
        call=call,
        entry=TranscriptEntry(
            Role.ASSISTANT, "It's 3pm.", turn_index=1, start_ms=2600, end_ms=3400
        ),
    )
    services.call_record_transcript(
        call=call,
        entry=TranscriptEntry(Role.ASSISTANT, "Hi!", turn_index=0, start_ms=120, end_ms=800),
    )
    services.call_record_transcript(
        call=call,
        entry=TranscriptEntry(
            Role.USER, "What time is it?", turn_index=1, start_ms=1000, end_ms=2000
        ),
    )
    services.call_record_turn(
        call=call,
        timeline=TurnTimeline(
            turn_index=1,
            kind=TurnKind.REPLY,
            user_speech_start_ms=1000.0,
            user_speech_end_ms=2000.0,
            stt_final_ms=2080.0,
            end_of_turn_ms=2200.0,
            llm_request_ms=2210.0,
            llm_first_token_ms=2400.0,
            tts_first_text_ms=2420.0,
            tts_first_audio_ms=2560.0,
            first_audio_sent_ms=2600.0,
            playback_finished_ms=3400.0,
            tool_calls=1,
        ),
    )
    services.call_record_tool(
        call=call,
        record=ToolCallRecord(
            turn_index=1,
            name="clock",
            arguments={"tz": "UTC"},
            ok=True,
            result="15:00",
            duration_ms=31.5,
        ),
    )


# -- list ------------------------------------------------------------------------------


def test_list_is_newest_first_and_paginated(tenant_a: Tenant) -> None:
    calls = [_call_at(tenant_a, minutes) for minutes in (5, 1, 9, 3)]
    newest_first = [c.pk for c in sorted(calls, key=lambda c: c.started_at, reverse=True)]
    assert _ids(tenant_a.client.get(LIST)) == newest_first
    page1 = tenant_a.client.get(LIST, {"page_size": 3}).json()
    page2 = tenant_a.client.get(LIST, {"page_size": 3, "page": 2}).json()
    assert page1["count"] == page2["count"] == 4
    assert page1["next"] and page1["previous"] is None
    assert [r["id"] for r in page1["results"] + page2["results"]] == newest_first


def test_list_rows_carry_the_call_fields(tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    row = tenant_a.client.get(LIST).json()["results"][0]
    assert row["id"] == call.pk
    assert row["agent"] == call.agent_id
    assert row["phone_number"] == call.phone_number_id
    assert row["direction"] == "inbound"
    assert row["status"] == "ringing"
    assert row["carrier_call_sid"] == call.carrier_call_sid
    assert "transcript" not in row and "agent_snapshot" not in row


def test_filters_by_agent_number_status_and_direction(tenant_a: Tenant) -> None:
    number_1 = make_phone_number(tenant_a.organization)
    number_2 = make_phone_number(tenant_a.organization)
    a = make_call(tenant_a.organization, phone_number=number_1)
    b = make_call(tenant_a.organization, phone_number=number_2, status=CallStatus.COMPLETED)
    c = make_call(tenant_a.organization, phone_number=number_2, direction="outbound")
    get = tenant_a.client.get
    assert _ids(get(LIST, {"agent": number_1.agent_id})) == [a.pk]
    assert sorted(_ids(get(LIST, {"phone_number": number_2.pk}))) == sorted([b.pk, c.pk])
    assert _ids(get(LIST, {"status": "completed"})) == [b.pk]
    assert _ids(get(LIST, {"direction": "outbound"})) == [c.pk]
    assert _ids(get(LIST, {"direction": "inbound", "phone_number": number_2.pk})) == [b.pk]
    assert _ids(get(LIST, {"agent": 999_999})) == []


def test_filters_by_start_time_range(tenant_a: Tenant) -> None:
    early, middle, late = (_call_at(tenant_a, m) for m in (0, 10, 20))
    get = tenant_a.client.get
    after = (T0 + timedelta(minutes=10)).isoformat()
    before = (T0 + timedelta(minutes=20)).isoformat()
    assert _ids(get(LIST, {"started_after": after})) == [late.pk, middle.pk]  # inclusive
    assert _ids(get(LIST, {"started_before": before})) == [middle.pk, early.pk]  # exclusive
    assert _ids(get(LIST, {"started_after": after, "started_before": before})) == [middle.pk]
    assert _ids(get(LIST, {"started_after": "2026-03-01T12:05:00Z"})) == [late.pk, middle.pk]


def test_time_filters_take_any_utc_offset(tenant_a: Tenant) -> None:
    # PostgreSQL refuses offsets beyond ±15:59 that Python (and ISO 8601 parsers) accept;
    # the schemathesis run found this as a 500.
    early, middle, late = (_call_at(tenant_a, m) for m in (0, 10, 20))
    after = (T0 + timedelta(minutes=10)).astimezone(timezone(timedelta(hours=19, minutes=15)))
    response = tenant_a.client.get(LIST, {"started_after": after.isoformat()})
    assert response.status_code == 200
    assert _ids(response) == [late.pk, middle.pk]
    ancient = tenant_a.client.get(LIST, {"started_after": "0135-12-11T04:42:12+19:15"})
    assert ancient.status_code == 200
    assert _ids(ancient) == [late.pk, middle.pk, early.pk]


@pytest.mark.parametrize(
    "query",
    [
        {"status": "exploded"},
        {"direction": "sideways"},
        {"agent": "abc"},
        {"agent": "0"},
        {"agent": str(2**70)},
        {"phone_number": "-1"},
        {"started_after": "yesterday"},
        {"started_before": "2026-13-45T99:00"},
    ],
)
def test_invalid_filter_values_are_400_with_the_field(tenant_a: Tenant, query: dict) -> None:
    make_call(tenant_a.organization)
    error = _assert_error(tenant_a.client.get(LIST, query), 400)
    assert set(error["fields"]) == set(query)


def test_list_never_shows_another_tenants_calls(tenant_a: Tenant, tenant_b: Tenant) -> None:
    own = make_call(tenant_b.organization)
    foreign = make_call(tenant_a.organization)
    assert _ids(tenant_b.client.get(LIST)) == [own.pk]
    assert _ids(tenant_b.client.get(LIST, {"agent": foreign.agent_id})) == []


# -- detail ----------------------------------------------------------------------------


def test_detail_has_transcript_metrics_and_tool_calls(tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    _record_a_conversation(call)
    services.call_end(
        call=call, ended=CallEnded(reason=EndReason.ASSISTANT_HANGUP, detail="goodbye")
    )
    body = tenant_a.client.get(f"{LIST}{call.pk}/").json()
    assert body["id"] == call.pk
    assert body["status"] == "completed"
    assert body["end_reason"] == "assistant-hangup"
    assert body["agent_snapshot"]["agent_id"] == call.agent_id
    assert [(e["role"], e["text"], e["start_ms"]) for e in body["transcript"]] == [
        ("assistant", "Hi!", 120.0),
        ("user", "What time is it?", 1000.0),
        ("assistant", "It's 3pm.", 2600.0),
    ]
    [metric] = body["metrics"]
    assert metric["turn_index"] == 1 and metric["kind"] == "reply"
    assert metric["interrupted"] is False
    assert metric["voice_to_voice_ms"] == 600.0
    assert metric["endpointing_ms"] == 200.0
    assert metric["stt_lag_ms"] == 80.0
    assert metric["llm_ttft_ms"] == 190.0
    assert metric["tts_ttfb_ms"] == 140.0
    assert metric["llm_first_clause_ms"] == 20.0  # first token -> first text to the TTS
    assert metric["vad_hangover_ms"] is None  # this turn has no audible end
    assert metric["platform_overhead_ms"] == 50.0  # 600 - 200 - 190 - 20 - 140
    timeline = metric["timeline"]
    assert timeline["user_speech_end_ms"] == 2000.0
    assert timeline["first_audio_sent_ms"] == 2600.0
    assert timeline["interrupted_at_ms"] is None
    assert not DERIVED & set(timeline)
    assert all(key.endswith("_ms") for key in timeline)
    assert body["tool_calls"] == [
        {
            "turn_index": 1,
            "name": "clock",
            "arguments": {"tz": "UTC"},
            "ok": True,
            "result": "15:00",
            "duration_ms": 31.5,
        }
    ]


def test_interrupted_turn_is_flagged(tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    services.call_record_turn(
        call=call,
        timeline=TurnTimeline(
            turn_index=0, kind=TurnKind.GREETING, first_audio_sent_ms=90.0, interrupted_at_ms=700.0
        ),
    )
    [metric] = tenant_a.client.get(f"{LIST}{call.pk}/").json()["metrics"]
    assert metric["interrupted"] is True
    assert metric["timeline"]["interrupted_at_ms"] == 700.0
    assert metric["voice_to_voice_ms"] is None


def test_another_tenants_call_is_404_like_a_missing_one(tenant_a: Tenant, tenant_b: Tenant) -> None:
    foreign = make_call(tenant_a.organization)
    theirs = tenant_b.client.get(f"{LIST}{foreign.pk}/")
    missing = tenant_b.client.get(f"{LIST}999999/")
    assert _assert_error(theirs, 404) == _assert_error(missing, 404)


# POST to the list places an outbound call: tests/calls/test_outbound_api.py.
@pytest.mark.parametrize(
    ("method", "detail"),
    [("put", False), ("patch", True), ("put", True)],
)
def test_calls_cannot_be_created_or_changed(tenant_a: Tenant, method: str, detail: bool) -> None:
    call = make_call(tenant_a.organization)
    url = f"{LIST}{call.pk}/" if detail else LIST
    response = getattr(tenant_a.client, method)(url, {"status": "completed"}, format="json")
    assert _assert_error(response, 405)["code"] == "method_not_allowed"
    call.refresh_from_db()
    assert call.status == CallStatus.RINGING
    # (DELETE removes a call: tests/calls/test_retention.py)


def test_stream_nonce_never_leaves_the_platform(tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    _record_a_conversation(call)
    token = services.call_stream_token(call=call)
    for url in (LIST, f"{LIST}{call.pk}/"):
        content = tenant_a.client.get(url).content.decode()
        assert call.stream_nonce not in content
        assert "stream_nonce" not in content
        assert token not in content
