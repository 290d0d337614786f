"""``manage.py simulate_call`` against a running platform (the README's demo caller)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from tests.calls.e2e import Platform, platform
from tests.factories import make_phone_number, make_tool
from tests.fakes.openai import FakeReply, FakeToolCall

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
async def live(settings: Any) -> Any:
    async with platform(settings) as p:
        yield p


def _simulate(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("simulate_call", *args, stdout=out)
    return json.loads(out.getvalue())


async def test_simulate_call_places_a_call_and_reports_it(live: Platform) -> None:
    # The command runs its own event loop, so it gets a thread; the server keeps this one.
    report = await sync_to_async(_simulate, thread_sensitive=False)(
        "--base-url", live.url, "--to", live.number.number,
        "--say", "I need help with my order", "--json",
    )  # fmt: skip
    caller, call = report["caller"], report["call"]
    assert caller["webhook_status"] == 200
    assert caller["ended_by"] == "caller"
    assert call["status"] == "completed"
    assert call["end_reason"] == "caller-hangup"
    roles = [entry["role"] for entry in call["transcript"]]
    assert roles[:3] == ["assistant", "user", "assistant"]
    assert call["transcript"][0]["text"] == "Hello, thanks for calling."
    replies = [m for m in call["metrics"] if m["kind"] == "reply"]
    assert replies and replies[0]["voice_to_voice_ms"] is not None
    # What the fake Deepgram received was eSpeak's speech, streamed in real time.
    assert live.deepgram.streams[0].audio_bytes > 8000


async def test_simulate_call_barges_in(live: Platform) -> None:
    live.openai.responder = lambda messages, tools: "Let me explain. " + "This takes a while. " * 6
    live.cartesia.chunk_interval_s = 0.03
    report = await sync_to_async(_simulate, thread_sensitive=False)(
        "--base-url", live.url, "--to", live.number.number,
        "--say", "I need help with my order", "--barge-in", "wait stop",
        "--barge-in-after-ms", "400", "--json",
    )  # fmt: skip
    assert report["caller"]["clears"] >= 1
    transcript = report["call"]["transcript"]
    assert any(e["interrupted"] for e in transcript if e["role"] == "assistant")


def test_simulate_call_without_numbers_says_what_to_do(db: Any) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="seed_demo"):
        call_command("simulate_call", "--base-url", "http://127.0.0.1:9")


async def test_simulate_call_presses_keys_between_sentences(live: Platform) -> None:
    # The agent asks for digits with a collect_digits tool; the caller types them after
    # the question, and waits for the answer to them.
    tool = await sync_to_async(make_tool)(
        live.organization, name="collect_order", kind="collect_digits", description="Order."
    )
    await sync_to_async(live.agent.tools.add)(tool)

    def responder(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Any:
        if messages[-1]["role"] == "tool":
            return "Thanks, order found."
        return FakeReply("Please type your order number.", [FakeToolCall("collect_order")])

    live.openai.responder = responder
    report = await sync_to_async(_simulate, thread_sensitive=False)(
        "--base-url", live.url, "--to", live.number.number,
        "--say", "I need help with my order", "--say", "dtmf:12#", "--json",
    )  # fmt: skip
    assert report["caller"]["dtmf_sent"] == "12#"
    assert report["caller"]["errors"] == []
    texts = [e["text"] for e in report["call"]["transcript"] if e["role"] == "assistant"]
    assert "Thanks, order found." in " ".join(texts)
    assert "12" not in " ".join(texts)  # the digits reach the LLM only


def test_simulate_call_refuses_keys_that_are_not_keys(tenant_a: Any) -> None:
    from django.core.management.base import CommandError

    make_phone_number(tenant_a.organization)
    with pytest.raises(CommandError, match="DTMF digits"):
        call_command("simulate_call", "--base-url", "http://127.0.0.1:9", "--say", "dtmf:12x")
