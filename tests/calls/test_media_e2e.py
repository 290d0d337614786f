"""A phone call end to end, over the real routes (see tests/calls/e2e.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.calls.e2e import Platform, answer, platform
from tests.fakes.openai import FakeReply, FakeToolCall
from voice.carriers import twilio
from voice.carriers.twilio_caller import Pause, Say, WaitForBot
from voice.config import FallbackConfig

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
async def live(settings: Any) -> Any:
    async with platform(settings) as p:
        yield p


async def test_a_call_with_a_turn_and_a_barge_in(live: Platform) -> None:
    long_reply = (
        "Let me tell you all about our order process. First you pick a product. "
        "Then you choose a delivery slot that suits you. Then you pay, and we ship it."
    )

    def responder(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        user = [m for m in messages if m["role"] == "user"]
        return long_reply if len(user) == 2 else f"You said: {user[-1]['content']}"

    live.openai.responder = responder
    # Synthesis paced near real time, so the long reply is still being made at barge-in.
    live.cartesia.chunk_interval_s = 0.03
    result = await live.call(
        [
            WaitForBot(quiet_ms=300),
            Say(tone_ms=900, label="order"),
            WaitForBot(quiet_ms=300),
            Say(tone_ms=700, label="more"),
            Say(tone_ms=800, label="stop", barge_in_after_ms=600),
            WaitForBot(quiet_ms=300),
            Pause(200),
        ]
    )
    assert result.errors == []
    assert result.webhook_status == 200
    assert result.connected
    assert result.greeting_ms is not None
    assert result.ended_by == "caller"
    assert result.clears >= 1
    barge = next(t for t in result.turns if t.label == "stop")
    assert barge.clear_ms is not None
    assert result.marks_echoed, "the platform sends marks and the phone echoes them"

    call = await live.finished_call(result.call_sid)
    assert call.status == "completed"
    assert call.end_reason == "caller-hangup"
    assert call.duration_ms is not None and call.duration_ms > 0
    assert call.llm_completion_tokens > 0 and call.tts_characters > 0

    detail = await live.api_get(f"/api/v1/calls/{call.pk}/")
    transcript = detail["transcript"]
    roles = [e["role"] for e in transcript]
    assert roles[:2] == ["assistant", "user"]
    assert transcript[0]["text"] == "Hello, thanks for calling."
    texts = [e["text"] for e in transcript]
    assert "I need help with my order" in texts
    assert "You said: I need help with my order" in texts
    interrupted = [e for e in transcript if e["interrupted"]]
    assert len(interrupted) == 1
    heard = interrupted[0]["text"]
    assert heard and long_reply.startswith(heard.rstrip(".")[: len(heard) - 1])
    assert len(heard) < len(long_reply)

    metrics = detail["metrics"]
    replies = [m for m in metrics if m["kind"] == "reply"]
    assert len(replies) >= 2
    for turn in replies:
        assert turn["voice_to_voice_ms"] is not None
        assert turn["llm_ttft_ms"] is not None and turn["tts_ttfb_ms"] is not None
        marks = turn["timeline"]
        # preemptive replies (on by default since issue 16) may send the LLM request
        # before the end of the turn is decided; the audio never goes out before it
        for order in (
            ["user_speech_end_ms", "end_of_turn_ms", "first_audio_sent_ms"],
            [
                "llm_request_ms",
                "llm_first_token_ms",
                "tts_first_text_ms",
                "tts_first_audio_ms",
                "first_audio_sent_ms",
            ],
        ):
            values = [marks[k] for k in order]
            assert None not in values, marks
            assert values == sorted(values), marks
    assert [m["interrupted"] for m in replies].count(True) == 1

    # The LLM heard the truncated reply, not the whole one.
    last_request = live.openai.requests[-1]["messages"]
    assistant = [m["content"] for m in last_request if m["role"] == "assistant"]
    assert heard in assistant
    assert long_reply not in assistant
    # Cartesia was told to stop the interrupted context.
    assert any(ctx.cancelled for ctx in live.cartesia.contexts.values())


def _sid() -> str:
    return "CA" + secrets.token_hex(16)


async def _start_stream(ws: ClientConnection, live: Platform, call_sid: str) -> str:
    stream_sid = "MZ" + secrets.token_hex(16)
    await ws.send(twilio.encode_connected())
    await ws.send(
        twilio.encode_start(
            stream_sid=stream_sid, call_sid=call_sid, account_sid=live.credential.account_sid
        )
    )
    return stream_sid


async def _close_code(ws: ClientConnection) -> int | None:
    """Read (and drop) what the platform sends until it closes the socket."""
    async with asyncio.timeout(20):
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass
    return ws.close_code


async def test_a_stream_token_works_once(live: Platform) -> None:
    call_sid = _sid()
    url = await answer(live, call_sid)
    async with connect(url) as ws:
        # A second connection with the same token, while the first is live: refused
        # before the WebSocket is accepted (an HTTP 403 on the upgrade).
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url):
                pass
        assert refused.value.response.status_code == 403
        stream_sid = await _start_stream(ws, live, call_sid)
        await ws.send(
            twilio.encode_stop(
                stream_sid=stream_sid,
                account_sid=live.credential.account_sid,
                call_sid=call_sid,
                sequence_number=2,
            )
        )
        await _close_code(ws)
    call = await live.finished_call(call_sid)
    assert call.end_reason == "caller-hangup"
    # ... and after the call, too.
    with pytest.raises(InvalidStatus) as again:
        async with connect(url):
            pass
    assert again.value.response.status_code == 403


@pytest.mark.parametrize(
    "token",
    ["not-a-token", "eyJjIjoxLCJuIjoiMDAwIn0:1t0000:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
)
async def test_a_forged_stream_token_is_refused(live: Platform, token: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(live.url.replace("http://", "ws://") + f"/ws/twilio/{token}/"):
            pass
    assert refused.value.response.status_code == 403


async def test_malformed_frames_are_survived_or_closed_and_harm_no_other_call(
    live: Platform,
) -> None:
    healthy = asyncio.create_task(
        live.call([WaitForBot(quiet_ms=300), Say(tone_ms=800), WaitForBot(quiet_ms=300)])
    )
    call_sid = _sid()
    url = await answer(live, call_sid)
    async with connect(url) as ws:
        stream_sid = await _start_stream(ws, live, call_sid)
        silence = b"\xff" * 160
        # Survivable: an unknown event, bad base64, a media frame of the wrong shape, a
        # DTMF that is no digit. Each is logged and skipped.
        for frame in (
            {"event": "telepathy", "streamSid": stream_sid},
            {"event": "media", "streamSid": stream_sid, "media": {"payload": "@@@"}},
            {"event": "media", "streamSid": stream_sid, "media": "loud"},
            {"event": "dtmf", "streamSid": stream_sid, "dtmf": {"digit": "x"}},
        ):
            await ws.send(json.dumps(frame))
        for n in range(25):
            await ws.send(
                twilio.encode_inbound_media(
                    stream_sid=stream_sid,
                    payload=silence,
                    chunk=n + 1,
                    timestamp=20 * n,
                    sequence_number=n + 3,
                )
            )
        # Still alive: the platform keeps talking to us (the greeting).
        async with asyncio.timeout(10):
            first = json.loads(await ws.recv())
        assert first["event"] in ("media", "mark")
        # Fatal: not JSON at all. The socket closes with 4400 and a reason.
        await ws.send("this is not json {")
        code = await _close_code(ws)
    assert code == 4400
    call = await live.finished_call(call_sid)
    # recorded as what it was, not as the caller hanging up
    assert call.status == "failed"
    assert call.end_reason == "error"
    assert call.end_detail.startswith("stream closed with 4400: ")
    assert "JSON" in call.end_detail or "json" in call.end_detail
    other = await healthy
    assert other.errors == []
    assert other.ended_by == "caller"
    other_call = await live.finished_call(other.call_sid)
    assert other_call.end_reason == "caller-hangup"
    assert await sync_to_async(other_call.transcript.count)() >= 3


async def test_caller_hangs_up_mid_reply(live: Platform) -> None:
    live.openai.responder = lambda messages, tools: "One moment. " + "Here is a long answer. " * 8
    live.cartesia.chunk_interval_s = 0.03
    result = await live.call([WaitForBot(quiet_ms=300), Say(tone_ms=800), Pause(900)])
    assert result.errors == []
    call = await live.finished_call(result.call_sid)
    assert call.status == "completed"
    assert call.end_reason == "caller-hangup"
    detail = await live.api_get(f"/api/v1/calls/{call.pk}/")
    transcript = detail["transcript"]
    assert transcript[1] == {**transcript[1], "role": "user", "text": "I need help with my order"}
    last = transcript[-1]
    assert last["role"] == "assistant"
    assert last["interrupted"]
    assert len(last["text"]) < len("One moment. " + "Here is a long answer. " * 8)


async def test_provider_failure_ends_the_call_with_a_reason_and_keeps_the_transcript(
    live: Platform,
) -> None:
    live.openai.fail_next(500, times=5)
    # the apology, a pause while the request is retried, then the goodbye: wait through
    # the pause (a caller who hangs up in it would end the call first)
    result = await live.call(
        [WaitForBot(quiet_ms=300), Say(tone_ms=800), WaitForBot(quiet_ms=4000, timeout_s=25)]
    )
    # The platform hangs up (through the Twilio API, which then ends the stream).
    assert result.ended_by in ("twilio", "platform")
    call = await live.finished_call(result.call_sid)
    assert call.status == "failed"
    assert call.end_reason == "provider-error"
    assert "openai" in call.end_detail
    detail = await live.api_get(f"/api/v1/calls/{call.pk}/")
    texts = [(e["role"], e["text"]) for e in detail["transcript"]]
    assert ("assistant", "Hello, thanks for calling.") in texts
    assert ("user", "I need help with my order") in texts
    # every option failed: the caller heard why before the line went dead
    assert texts[-1] == ("assistant", FallbackConfig().goodbye)


async def test_assistant_hangs_up_through_the_twilio_api(live: Platform) -> None:
    def responder(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> FakeReply:
        if messages[-1]["role"] == "tool":
            return FakeReply(text="")
        return FakeReply(text="Goodbye, have a nice day.", tool_calls=[FakeToolCall("end_call")])

    live.openai.responder = responder
    result = await live.call(
        [WaitForBot(quiet_ms=300), Say(tone_ms=800), WaitForBot(quiet_ms=300, timeout_s=10)]
    )
    assert result.errors == []
    assert result.ended_by in ("twilio", "platform")
    call = await live.finished_call(result.call_sid)
    assert call.end_reason == "assistant-hangup"
    updates = [r for r in live.twilio.requests if r.path.endswith(f"/Calls/{result.call_sid}.json")]
    assert updates and updates[0].value("Status") == "completed"
    detail = await live.api_get(f"/api/v1/calls/{call.pk}/")
    assert detail["transcript"][-1]["text"] == "Goodbye, have a nice day."
    assert [t["name"] for t in detail["tool_calls"]] == ["end_call"]


async def test_a_call_whose_number_was_deleted_mid_setup_still_ends_cleanly(
    live: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    # The number goes (its calls keep their record, number set to null) between the
    # webhook and the stream: no Twilio credential for hang-ups, but nothing may crash.
    call_sid = _sid()
    url = await answer(live, call_sid)
    await sync_to_async(live.number.delete)()
    async with connect(url) as ws:
        stream_sid = await _start_stream(ws, live, call_sid)
        await ws.send(
            twilio.encode_stop(
                stream_sid=stream_sid,
                account_sid=live.credential.account_sid,
                call_sid=call_sid,
                sequence_number=2,
            )
        )
        await _close_code(ws)
    call = await live.finished_call(call_sid)
    assert call.end_reason == "caller-hangup"
    assert call.phone_number_id is None
    # (The fake providers' own server logs a handshake the ended call cut short.)
    errors = [
        r for r in caplog.records if r.levelno >= logging.ERROR and r.name != "websockets.server"
    ]
    assert errors == [], [r.getMessage() for r in errors]


def _media(stream_sid: str, n: int) -> str:
    return twilio.encode_inbound_media(
        stream_sid=stream_sid, payload=b"\xff" * 160, chunk=n, timestamp=20 * n, sequence_number=n
    )


# Each case: what to send after a good start (or instead of it), and a word of the reason.
FATAL_FRAMES: dict[str, tuple[bool, list[str | bytes], str]] = {
    "not json": (True, ["{nope"], "JSON"),
    "binary frame": (True, [b"\x00\x01binary"], "binary"),
    "oversized frame": (True, ["x" * (twilio.MAX_FRAME_CHARS + 1)], "exceeds"),
    "too many malformed frames": (
        True,
        [json.dumps({"event": "telepathy"})] * (60),
        "too many malformed frames",
    ),
    "media before start": (False, [_media("MZ" + "0" * 32, 1)], "before start"),
    "media for another stream": (True, [_media("MZ" + "f" * 32, 1)], "for stream"),
    "a second start": (True, ["SECOND_START"], "second start"),
}


@pytest.mark.parametrize("case", sorted(FATAL_FRAMES))
async def test_a_stream_closed_for_a_protocol_error_is_recorded_as_one(
    live: Platform, case: str
) -> None:
    started, frames, word = FATAL_FRAMES[case]
    call_sid = _sid()
    url = await answer(live, call_sid)
    async with connect(url, max_size=None) as ws:
        if started:
            stream_sid = await _start_stream(ws, live, call_sid)
            await ws.send(_media(stream_sid, 1))
        for frame in frames:
            if frame == "SECOND_START":
                await _start_stream(ws, live, call_sid)
                continue
            with contextlib.suppress(ConnectionClosed):
                await ws.send(frame)
        code = await _close_code(ws)
    assert code == 4400
    call = await live.finished_call(call_sid)
    assert (call.status, call.end_reason) == ("failed", "error")
    assert call.end_detail.startswith("stream closed with 4400: "), call.end_detail
    assert word.lower() in call.end_detail.lower(), call.end_detail


async def test_a_failing_llm_falls_back_and_the_call_record_says_so(live: Platform) -> None:
    def set_fallback() -> None:
        live.agent.fallback = {**live.agent.fallback, "llm": [{"provider": "scripted"}]}
        live.agent.save(update_fields=["fallback"])

    await sync_to_async(set_fallback)()
    live.openai.fail_next(500, times=50)
    result = await live.call(
        [WaitForBot(quiet_ms=300), Say(tone_ms=800), WaitForBot(quiet_ms=300, timeout_s=10)]
    )
    assert result.errors == []
    call = await live.finished_call(result.call_sid)
    assert call.end_reason == "caller-hangup"  # the call went on
    detail = await live.api_get(f"/api/v1/calls/{call.pk}/")
    assert detail["fallback_count"] == 1
    [switch] = detail["fallbacks"]
    assert (switch["stage"], switch["from"], switch["to"]) == (
        "llm",
        "openai (primary)",
        "scripted (fallback 1)",
    )
    assert "500" in switch["reason"] or "status" in switch["reason"].lower()
    reply = next(m for m in detail["metrics"] if m["kind"] == "reply")
    assert reply["fallbacks"] == [switch]
    said = [e["text"] for e in detail["transcript"] if e["role"] == "assistant"]
    assert said[1].startswith("Sorry, one moment please.")
    listed = await live.api_get(f"/api/v1/calls/?status={call.status}")
    assert any(c["id"] == call.pk and c["fallback_count"] == 1 for c in listed["results"])
