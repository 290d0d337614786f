"""Issue 16 on a real Twilio media stream, end to end (see tests/calls/e2e.py): an agent
with the default turn-taking (barge-in ``pause_then_decide``, preemptive replies on)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.calls.e2e import Platform, platform
from voice.carriers.twilio_caller import Pause, Say, WaitForBot

pytestmark = [pytest.mark.django_db(transaction=True)]

LONG_REPLY = (
    "Let me tell you all about our order process. First you pick a product. "
    "Then you choose a delivery slot that suits you. Then you pay, and we ship it."
)


@pytest.fixture
async def live(settings: Any) -> Any:
    async with platform(settings) as p:
        yield p


async def test_an_acknowledgement_pauses_the_reply_and_it_plays_on_to_the_end(
    live: Platform,
) -> None:
    live.deepgram.script = ["tell me about ordering", "mhm"]
    live.openai.responder = lambda messages, tools: LONG_REPLY
    live.cartesia.chunk_interval_s = 0.03
    result = await live.call(
        [
            WaitForBot(quiet_ms=300),
            Say(tone_ms=900, label="ask"),
            Say(tone_ms=300, label="mhm", barge_in_after_ms=800),
            WaitForBot(quiet_ms=600),
            Pause(200),
        ]
    )
    assert result.errors == []
    assert result.ended_by == "caller"
    mhm = next(t for t in result.turns if t.label == "mhm")
    assert mhm.clear_ms is not None  # the audio stopped at the onset...
    assert mhm.bot_audio_ms > 0  # ...and came back

    call = await live.finished_call(result.call_sid)
    detail = await live.api_get(f"/api/v1/calls/{call.pk}/")
    texts = [(e["role"], e["text"], e["interrupted"]) for e in detail["transcript"]]
    # as if nothing happened: the whole reply, not interrupted; "mhm" never answered
    assert ("assistant", LONG_REPLY, False) in texts
    assert [t for r, t, _ in texts if r == "user"] == ["tell me about ordering"]
    assert len(live.openai.requests) == 1
    replies = [m for m in detail["metrics"] if m["kind"] == "reply"]
    assert [m["interrupted"] for m in replies] == [False]


async def test_a_preemptive_reply_plays_after_the_turn_is_confirmed(live: Platform) -> None:
    live.deepgram.script = ["I need help with my order"]
    result = await live.call(
        [WaitForBot(quiet_ms=300), Say(tone_ms=900, label="ask"), WaitForBot(quiet_ms=400)]
    )
    assert result.errors == []
    ask = next(t for t in result.turns if t.label == "ask")
    assert ask.voice_to_voice_ms is not None
    assert "Finalize" in live.deepgram.streams[0].controls  # asked early, once quiet

    call = await live.finished_call(result.call_sid)
    detail = await live.api_get(f"/api/v1/calls/{call.pk}/")
    [reply] = [m for m in detail["metrics"] if m["kind"] == "reply"]
    marks = reply["timeline"]
    # prepared before the turn was confirmed, heard only after
    assert marks["llm_request_ms"] < marks["end_of_turn_ms"] <= marks["first_audio_sent_ms"]
    assert (detail["discarded_llm_requests"], detail["discarded_llm_tokens"]) == (0, 0)
    texts = [(e["role"], e["text"]) for e in detail["transcript"]]
    assert ("user", "I need help with my order") in texts
    assert ("assistant", "You said: I need help with my order") in texts
