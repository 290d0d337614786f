"""One outbound call end to end: placed through the API (the official Twilio SDK against
the fake Twilio REST server), answered by the simulated callee on the URL Twilio was
given, and run through the same media stream, engine, transcript and metrics as inbound
(see tests/calls/e2e.py)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from asgiref.sync import sync_to_async

from agents.models import Agent
from tests.calls.e2e import PUBLIC_BASE_URL, Platform, _call_by_sid, platform
from tests.calls.outbound import creates
from voice.carriers.twilio_caller import Pause, Say, WaitForBot, place_call, signed_headers

pytestmark = [pytest.mark.django_db(transaction=True)]

CALLEE = "+14155550123"


@pytest.fixture
async def live(settings: Any) -> Any:
    async with platform(settings) as p:
        yield p


def _set_first_message(agent: Agent) -> None:
    agent.first_message = "Hello {{name}}, Acme here about order {{order_id}}."
    agent.system_prompt = "You remind {{name}} about order {{order_id}}."
    agent.save()


async def test_an_outbound_call_answered_by_the_callee(live: Platform) -> None:
    await sync_to_async(_set_first_message)(live.agent)
    seen: list[str] = []

    def responder(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        seen.append(messages[0]["content"])
        return "Great, see you then."

    live.openai.responder = responder
    response = await sync_to_async(live.tenant.client.post)(
        "/api/v1/calls/",
        {
            "agent": live.agent.pk,
            "from_number": live.number.pk,
            "to": CALLEE,
            "variables": {"name": "Ada", "order_id": "A-7"},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    placed = response.json()
    [request] = creates(live.twilio)
    sid = placed["carrier_call_sid"]
    assert sid in live.twilio.calls

    # Twilio rings the callee; they answer and Twilio fetches the call's TwiML.
    answer_url = urlsplit(request.value("Url") or "")
    status_url = urlsplit(request.value("StatusCallback") or "")
    assert f"{answer_url.scheme}://{answer_url.netloc}" == PUBLIC_BASE_URL
    config = live.caller(
        sid,
        from_number=live.number.number,
        to_number=CALLEE,
        voice_path=answer_url.path,
        status_callback_path=f"{status_url.path}?{status_url.query}",
        extra_params=(("Direction", "outbound-api"), ("CallStatus", "in-progress")),
    )
    result = await place_call(
        config,
        [WaitForBot(quiet_ms=300), Say(tone_ms=900), WaitForBot(quiet_ms=300), Pause(200)],
        end_stream=live.twilio.stream_end(sid),
    )
    assert result.errors == []
    assert result.connected and result.greeting_ms is not None
    assert result.status_callback_status == 204

    call = await live.finished_call(sid)
    assert call.direction == "outbound"
    assert call.status == "completed"
    assert call.end_reason == "caller-hangup"
    assert call.from_number == live.number.number and call.to_number == CALLEE
    detail = await live.api_get(f"/api/v1/calls/{call.pk}/")
    transcript = detail["transcript"]
    # The transcript shows the variables filled in; the LLM never saw a brace.
    assert transcript[0] == {**transcript[0], "role": "assistant"}
    assert transcript[0]["text"] == "Hello Ada, Acme here about order A-7."
    assert [e["text"] for e in transcript[1:3]] == [
        "I need help with my order",
        "Great, see you then.",
    ]
    assert seen and seen[0] == "You remind Ada about order A-7."
    replies = [m for m in detail["metrics"] if m["kind"] == "reply"]
    assert replies and replies[0]["voice_to_voice_ms"] is not None
    assert detail["variables"] == {"name": "Ada", "order_id": "A-7"}


def _leave_messages(agent: Agent) -> None:
    agent.first_message = "Hello {{name}}, Acme here."
    agent.voicemail = {
        "detect": True,
        "action": "leave_message",
        "message": "Hi {{name}}, please call Acme back.",
    }
    agent.save()


async def test_an_answering_machine_gets_the_message_and_the_call_ends(live: Platform) -> None:
    await sync_to_async(_leave_messages)(live.agent)
    response = await sync_to_async(live.tenant.client.post)(
        "/api/v1/calls/",
        {
            "agent": live.agent.pk,
            "from_number": live.number.pk,
            "to": CALLEE,
            "variables": {"name": "Grace"},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    sid = response.json()["carrier_call_sid"]
    [request] = creates(live.twilio)
    assert request.value("MachineDetection") == "DetectMessageEnd"
    answer_url = urlsplit(request.value("Url") or "")
    config = live.caller(
        sid,
        from_number=live.number.number,
        to_number=CALLEE,
        voice_path=answer_url.path,
        extra_params=(("Direction", "outbound-api"),),
    )
    # The machine's greeting: it never stops talking to itself (a long pause here).
    machine = asyncio.create_task(
        place_call(config, [Pause(20_000)], end_stream=live.twilio.stream_end(sid))
    )

    async def streaming() -> bool:
        call = await sync_to_async(_call_by_sid)(sid)
        return call is not None and call.stream_connected_at is not None

    async with asyncio.timeout(15):
        while True:
            if await streaming():
                break
            await asyncio.sleep(0.05)
    amd_url = request.value("AsyncAmdStatusCallback") or ""
    params = {"CallSid": sid, "AnsweredBy": "machine_end_beep", "MachineDetectionDuration": "3100"}
    headers = signed_headers(live.credential.auth_token, amd_url, params)
    async with httpx.AsyncClient() as http:
        verdict = await http.post(live.url + urlsplit(amd_url).path, data=params, headers=headers)
    assert verdict.status_code == 204
    result = await machine
    assert result.ended_by == "twilio"  # Twilio dropped the stream for the new TwiML
    [update] = live.twilio.calls[sid].history
    assert "Hi Grace, please call Acme back." in update["Twiml"]
    call = await live.finished_call(sid)
    assert call.end_reason == "voicemail"
    assert (call.answered_by, call.voicemail_action) == ("machine_end_beep", "left-message")
    assert call.amd_duration_ms == 3100
