"""A phone call end to end, then its post-call analysis (see tests/calls/e2e.py): a real
Celery worker with Redis when ``REDIS_URL`` is set, Celery's eager path without."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from agents.models import Agent
from calls.models import Call
from tests.calls.e2e import Platform, platform
from voice.carriers.twilio_caller import Pause, Say, WaitForBot

pytestmark = [pytest.mark.django_db(transaction=True)]

SCHEMA = {
    "type": "object",
    "properties": {"topic": {"type": "string"}},
    "required": ["topic"],
}


@pytest.fixture
async def live(settings: Any) -> Any:
    async with platform(settings) as p:
        yield p


def _configure(agent: Agent) -> None:
    agent.analysis = {
        **agent.analysis,
        "summary_prompt": "Sum the call up.",
        "structured_data_schema": SCHEMA,
        "success_rubric": "The caller said what they needed.",
    }
    agent.save(update_fields=["analysis"])


async def _analyzed(call_sid: str, timeout_s: float = 20.0) -> Call:
    async with asyncio.timeout(timeout_s):
        while True:
            call = (
                await Call.objects.dangerously_unscoped().filter(carrier_call_sid=call_sid).afirst()
            )
            if call is not None and call.analysis_status in ("completed", "failed"):
                return call
            await asyncio.sleep(0.05)


async def test_a_finished_call_is_analyzed(live: Platform) -> None:
    def responder(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        if messages[0]["content"] == "Sum the call up.":
            return "The caller needed help with an order."
        return "Sure, I can help with that."

    live.openai.responder = responder
    live.openai.structured_responder = lambda messages, response_format: json.dumps(
        {"topic": "order"}
        if response_format["json_schema"]["name"] == "structured_data"
        else {"success": True, "reason": "They asked about their order."}
    )
    await sync_to_async(_configure)(live.agent)
    result = await live.call(
        [WaitForBot(quiet_ms=300), Say(tone_ms=800), WaitForBot(quiet_ms=300), Pause(100)]
    )
    assert result.errors == []

    call = await _analyzed(result.call_sid)
    assert call.analysis_status == "completed", call.analysis_error
    detail = await live.api_get(f"/api/v1/calls/{call.pk}/")
    analysis = detail["analysis"]
    assert analysis["summary"] == "The caller needed help with an order."
    assert analysis["structured_data"] == {"topic": "order"}
    assert analysis["success"] is True
    # the analysis read the call's transcript, as stored
    summary_request = next(
        r for r in live.openai.requests if r["messages"][0]["content"] == "Sum the call up."
    )
    assert "Caller: I need help with my order" in summary_request["messages"][1]["content"]
    assert detail["analysis_prompt_tokens"] > 0
