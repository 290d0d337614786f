"""Secure keypad digits on a real Twilio media stream (see tests/calls/e2e.py): the
tenant's listener gets them, signed; the LLM, the transcript, the API and the logs never
see them."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from agents.models import Agent
from tests.calls.e2e import Platform, platform
from tests.factories import make_tool
from tests.fakes.openai import FakeReply, FakeToolCall
from tests.voice.tool_server import SECRET, tool_server
from voice.carriers.twilio_caller import Digits, Pause, Say, WaitForBot

pytestmark = [pytest.mark.django_db(transaction=True)]

CARD = "4111111111111111"


@pytest.fixture
async def live(settings: Any) -> Any:
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]  # the tenant's listener is local
    async with platform(settings) as p:
        yield p


def _add_secure_tool(agent: Agent, url: str) -> None:
    tool = make_tool(
        agent.organization,
        name="card",
        kind="collect_digits",
        description="Collect the caller's card number on the keypad.",
        secure=True,
        reveal_last_digits=True,
        url=url,
        max_digits=19,
        digit_timeout_s=5.0,
    )
    agent.tools.add(tool)
    agent.webhook_secret = SECRET
    agent.save(update_fields=["webhook_secret"])


async def test_secure_digits_reach_the_tenant_and_nothing_else(
    live: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    def responder(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Any:
        if messages[-1]["role"] == "tool":
            result = json.loads(messages[-1]["content"])
            return f"Thank you, the card ending in {result.get('last_two', '?')} is saved."
        return FakeReply(
            text="Please type your card number, then press pound.",
            tool_calls=[FakeToolCall("card", {})],
        )

    live.openai.responder = responder
    async with tool_server() as listener:
        await sync_to_async(_add_secure_tool)(live.agent, f"{listener.base_url}/digits")
        result = await live.call(
            [
                WaitForBot(quiet_ms=300),
                Say(tone_ms=900, label="card"),
                WaitForBot(quiet_ms=400),
                Digits(CARD + "#", gap_ms=30),
                WaitForBot(quiet_ms=300),
                Pause(200),
            ]
        )
    assert result.errors == []
    assert result.dtmf_sent == CARD + "#"

    # The tenant's listener got the digits, signed with the agent's secret.
    assert listener.bad_signatures == 0
    assert [r["digits"] for r in listener.requests] == [CARD]
    assert listener.requests[0]["tool"] == "card"

    call = await live.finished_call(result.call_sid)
    # The LLM got a placeholder (count, verdict, last two digits) and never the digits.
    requests = json.dumps(live.openai.requests)
    assert CARD not in requests and CARD[:6] not in requests
    tool_results = [
        json.loads(m["content"])
        for r in live.openai.requests
        for m in r["messages"]
        if m["role"] == "tool"
    ]
    assert tool_results[0] == {
        "digits": "[secure: 16 digits entered]",
        "count": 16,
        "delivered": True,
        "valid": False,
        "last_two": "11",
    }
    # The API (transcript, tool calls) and the logs never saw them either.
    detail = await live.api_get(f"/api/v1/calls/{call.pk}/")
    assert CARD not in json.dumps(detail) and CARD[:6] not in json.dumps(detail)
    assert "Please type your card number" in " ".join(e["text"] for e in detail["transcript"])
    assert [t["name"] for t in detail["tool_calls"]] == ["card"]
    assert CARD not in caplog.text and CARD[:6] not in caplog.text
    # The capture window is on the call (a recording mutes it), in call time.
    assert len(call.secure_captures) == 1
    window = call.secure_captures[0]
    assert window["tool"] == "card"
    assert 0 < window["start_ms"] < window["end_ms"] < call.duration_ms
