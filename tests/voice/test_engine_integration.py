"""Whole calls on the real Deepgram, OpenAI and Cartesia provider modules (official SDKs)
against the fake servers, with a carrier that plays audio in real time and echoes marks
like Twilio. Each test asserts on what the fakes received and what the sink got; the
``cloud`` fixture then checks that every connection was closed and no task was left.
Ordering and presence only, never wall-clock durations.
"""

from __future__ import annotations

import json
import logging

import pytest

from tests.fakes import FakeReply, FakeToolCall
from tests.voice.cloud import REPLY_MARKS, SPOKEN_MARKS, CloudCall, ordered
from tests.voice.harness import until
from tests.voice.tool_server import SECRET, tool_server
from voice.carriers.twilio import MarkStatus
from voice.config import BargeInMode, InterruptionConfig, ToolConfig, ToolKind
from voice.events import EndReason, Role, TurnKind

GREETING = "Hello, how can I help?"
STORY = (
    "The sea was calm that morning. The old sailor walked down to the harbor. "
    "He looked at the boats for a long time. Then he untied the smallest one. "
    "He rowed out past the rocks and the gulls. Nobody saw him again until evening."
)


def user_lines(call: CloudCall) -> list[str]:
    return [e.text for e in call.sink.transcript if e.role is Role.USER]


def chat(call: CloudCall, request: int) -> list[tuple[str, str]]:
    """(role, content) of every message the OpenAI fake received in one request."""
    return [(m["role"], m.get("content") or "") for m in call.oa.requests[request]["messages"]]


async def test_greeting_is_spoken_marked_and_timed(cloud: CloudCall) -> None:
    caller = cloud.start()
    await caller.silence(200)
    await until(lambda: len(cloud.sink.timelines) == 1)
    await caller.silence(200)
    ended = await cloud.hang_up()

    [context] = cloud.contexts()
    assert context.transcripts == [GREETING + " ", ""]  # the text, then end of input
    assert context.done and not context.cancelled
    assert cloud.oa.requests == []  # a greeting needs no LLM
    kinds = cloud.out.kinds()
    assert kinds.index("audio") < kinds.index("mark") < kinds.index("echo")
    assert cloud.marks("mark") == cloud.marks("echo")  # every mark played back
    assert cloud.out.echo_status == [MarkStatus.PLAYED]
    [timeline] = cloud.sink.timelines
    assert timeline.kind is TurnKind.GREETING
    ordered(timeline, SPOKEN_MARKS)
    [entry] = cloud.sink.transcript
    assert (entry.role, entry.text, entry.interrupted) == (Role.ASSISTANT, GREETING, False)
    assert ended.reason is EndReason.CALLER_HANGUP
    assert ended.usage.tts_characters == len(GREETING)
    assert ended.usage.stt_seconds > 0
    [stream] = cloud.dg.streams
    assert stream.audio_bytes > 0 and stream.params["encoding"] == "mulaw"
    assert "CloseStream" in stream.controls and stream.closed_by == "client"
    assert "hangup" not in kinds  # the caller hung up: nothing to tell the carrier


async def test_a_turn_and_the_next_carry_the_whole_history(cloud: CloudCall) -> None:
    cloud.dg.script = ["What are your opening hours?", "And on Sundays?"]
    cloud.oa.ttft_s = 0.02
    caller = cloud.start()
    await until(lambda: len(cloud.sink.timelines) == 1)
    await caller.speak(500, then_silence_ms=600)
    await until(lambda: len(cloud.sink.timelines) == 2)
    await caller.speak(500, then_silence_ms=600)
    await until(lambda: len(cloud.sink.timelines) == 3)
    ended = await cloud.hang_up()

    assert len(cloud.oa.requests) == 2
    first = cloud.oa.requests[0]
    assert first["model"] == "gpt-fake" and first["stream"] is True
    assert chat(cloud, 0) == [
        ("system", "You are a helpful test agent."),
        ("assistant", GREETING),
        ("user", "What are your opening hours?"),
    ]
    assert chat(cloud, 1) == [
        *chat(cloud, 0),
        ("assistant", "You said: What are your opening hours?"),
        ("user", "And on Sundays?"),
    ]
    # what Cartesia was asked to say, clause by clause, one context per turn
    spoken = [c.text for c in cloud.contexts()]
    assert spoken == [
        GREETING + " ",
        "You said: What are your opening hours? ",
        "You said: And on Sundays? ",
    ]
    for timeline in cloud.sink.timelines[1:]:
        assert timeline.kind is TurnKind.REPLY
        assert timeline.interrupted_at_ms is None
        *_, eot = ordered(
            timeline, ("user_speech_start_ms", "user_speech_end_ms", "end_of_turn_ms")
        )
        assert timeline.stt_final_ms is not None and timeline.stt_final_ms <= eot
        ordered(timeline, REPLY_MARKS)
    assert [(e.role, e.text) for e in cloud.sink.transcript] == [
        (Role.ASSISTANT, GREETING),
        (Role.USER, "What are your opening hours?"),
        (Role.ASSISTANT, "You said: What are your opening hours?"),
        (Role.USER, "And on Sundays?"),
        (Role.ASSISTANT, "You said: And on Sundays?"),
    ]
    assert ended.reason is EndReason.CALLER_HANGUP
    assert ended.usage.llm_prompt_tokens > 0 and ended.usage.llm_completion_tokens > 0
    assert cloud.oa.completed == 2 and cloud.oa.disconnects == 0
    # Deepgram heard the caller's voice, not just silence
    [stream] = cloud.dg.streams
    assert [f["channel"]["alternatives"][0]["transcript"] for f in stream.finals] == [
        "What are your opening hours?",
        "And on Sundays?",
    ]


async def test_barge_in_cuts_the_reply_to_what_was_heard(cloud: CloudCall) -> None:
    cloud.dg.script = ["Tell me a story.", "Wait, stop please."]
    cloud.ca.ms_per_char = 40  # a reply of several seconds...
    cloud.ca.chunk_interval_s = 0.02  # ...synthesized at twice real time: still going
    cloud.oa.responder = lambda messages, tools: (
        STORY if messages[-1]["content"] == "Tell me a story." else "Sure, I stopped."
    )
    caller = cloud.start()
    await until(lambda: len(cloud.sink.timelines) == 1)
    await caller.speak(500, then_silence_ms=600)
    # speak over the bot once its first sentence has played (its mark echoed)
    await until(lambda: any(m.startswith("t2-") for m in cloud.marks("echo")))
    await caller.speak(700, then_silence_ms=600)
    await until(lambda: len(cloud.sink.timelines) == 3)
    ended = await cloud.hang_up()

    story_turn = cloud.sink.timelines[1]
    assert story_turn.interrupted_at_ms is not None
    assert story_turn.playback_finished_ms is None
    assert "clear" in cloud.out.kinds()
    story_ctx = cloud.contexts()[1]
    assert story_ctx.cancelled
    assert {"cancel": True, "context_id": story_ctx.context_id} in cloud.ca.connections[0].messages
    # the second request remembers only what the caller heard of the story
    assert len(cloud.oa.requests) == 2
    *_, (role, heard), last = chat(cloud, 1)
    assert role == "assistant"
    assert heard.startswith("The sea was calm that morning.")
    assert len(heard) < len(STORY) and STORY.startswith(heard)
    assert last == ("user", "Wait, stop please.")
    story_entry = next(e for e in cloud.sink.transcript if e.text.startswith("The sea"))
    assert story_entry.interrupted and story_entry.text == heard
    assert cloud.sink.transcript[-1].text == "Sure, I stopped."
    assert ended.reason is EndReason.CALLER_HANGUP


@pytest.mark.parametrize(
    "interruption",
    [
        InterruptionConfig(mode=BargeInMode.WORDS),
        InterruptionConfig(mode=BargeInMode.WORDS, min_speech_ms=200, min_words=1),
    ],
    ids=["words-defaults", "min-words"],
)
async def test_an_acknowledgement_does_not_interrupt(
    cloud: CloudCall, interruption: InterruptionConfig
) -> None:
    # Deepgram's first interim comes after min_speech_ms of voice: with the defaults the
    # engine must wait for it (transcript_wait_ms) rather than cut the bot off on VAD alone
    cloud.dg.script = ["Tell me a story.", "mhm"]
    cloud.ca.ms_per_char = 25
    cloud.oa.responder = lambda messages, tools: STORY[: STORY.index(" Then")]
    caller = cloud.start(interruption=interruption)
    await until(lambda: len(cloud.sink.timelines) == 1)
    await caller.speak(500, then_silence_ms=600)
    await until(lambda: any(m.startswith("t2-") for m in cloud.marks("echo")))
    await caller.speak(500, then_silence_ms=400)  # "mhm" over the bot
    await until(lambda: len(cloud.sink.timelines) == 2)
    await caller.silence(600)
    ended = await cloud.hang_up()

    story_turn = cloud.sink.timelines[1]
    assert story_turn.interrupted_at_ms is None
    ordered(story_turn, REPLY_MARKS)
    assert "clear" not in cloud.out.kinds()
    assert not cloud.contexts()[1].cancelled and cloud.contexts()[1].done
    assert len(cloud.oa.requests) == 1  # "mhm" is not answered
    finals = [f["channel"]["alternatives"][0]["transcript"] for f in cloud.dg.streams[0].finals]
    assert finals == ["Tell me a story.", "mhm"]  # Deepgram did hear it
    assert user_lines(cloud) == ["Tell me a story."]
    assert ended.reason is EndReason.CALLER_HANGUP


async def test_http_tool_round_trip_is_signed_and_answered(cloud: CloudCall) -> None:
    cloud.dg.script = ["What's the weather in Paris?"]

    def responder(messages: list[dict[str, object]], tools: list[dict[str, object]]) -> object:
        if messages[-1]["role"] == "tool":
            return f"It is {json.loads(str(messages[-1]['content']))['forecast']} there."
        return FakeReply("Let me check.", [FakeToolCall("weather", {"city": "Paris"}, "call_w1")])

    cloud.oa.responder = responder  # type: ignore[assignment]
    async with tool_server(SECRET) as server:
        weather = ToolConfig(
            "weather",
            "Forecast for a city",
            ToolKind.HTTP,
            parameters={"type": "object", "properties": {"city": {"type": "string"}}},
            url=f"{server.base_url}/weather",
        )
        caller = cloud.start(tools=(weather,), webhook_secret=SECRET)
        await until(lambda: len(cloud.sink.timelines) == 1)
        await caller.speak(500, then_silence_ms=600)
        await until(lambda: len(cloud.sink.timelines) == 2)
        ended = await cloud.hang_up()

    assert server.bad_signatures == 0
    [request] = server.requests
    assert request["tool"] == "weather" and request["arguments"] == {"city": "Paris"}
    first, second = cloud.oa.requests
    [tool] = first["tools"]
    assert tool["type"] == "function" and tool["function"]["name"] == "weather"
    assert tool["function"]["parameters"]["properties"] == {"city": {"type": "string"}}
    assistant, result = second["messages"][-2:]
    assert assistant["role"] == "assistant" and assistant["content"] == "Let me check."
    assert assistant["tool_calls"][0]["id"] == "call_w1"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert result["role"] == "tool" and result["tool_call_id"] == "call_w1"
    assert json.loads(result["content"]) == {"city": "Paris", "forecast": "sunny", "celsius": 21}
    [record] = cloud.sink.tool_records
    assert record.ok and record.name == "weather"
    assert cloud.sink.timelines[1].tool_calls == 1
    assert cloud.contexts()[1].text == "Let me check. It is sunny there. "
    assert ended.reason is EndReason.CALLER_HANGUP


async def test_collected_digits_reach_only_the_tool_result(
    cloud: CloudCall, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cloud.dg.script = ["Check my account please."]

    def responder(messages: list[dict[str, object]], tools: list[dict[str, object]]) -> object:
        if messages[-1]["role"] == "tool":
            return "Thank you, you are verified."
        return FakeReply("Please enter your PIN, then press pound.", [FakeToolCall("pin", {})])

    cloud.oa.responder = responder  # type: ignore[assignment]
    pin = ToolConfig("pin", "Collect the PIN", ToolKind.COLLECT_DIGITS, digit_timeout_s=3.0)
    caller = cloud.start(tools=(pin,))
    await until(lambda: len(cloud.sink.timelines) == 1)
    await caller.speak(500, then_silence_ms=600)
    assert cloud.conv is not None
    digits = cloud.conv._digits  # the keypad drops digits pressed before collection starts
    await until(lambda: digits.active)
    for digit in "8642#":
        cloud.conv.feed_dtmf(digit)
        await caller.silence(60)
    await until(lambda: len(cloud.sink.timelines) == 2)
    await caller.silence(200)
    ended = await cloud.hang_up()

    first, second = cloud.oa.requests
    assert "8642" not in json.dumps(first)
    [tool_message] = [m for m in second["messages"] if m["role"] == "tool"]
    assert json.loads(tool_message["content"]) == {"digits": "8642"}
    others = [m for m in second["messages"] if m["role"] != "tool"]
    assert "8642" not in json.dumps(others)
    assert all("8642" not in repr(e) for e in cloud.sink.events)
    assert cloud.sink.tool_records[0].result == '{"digits": "[redacted: 4 digits]"}'
    assert all("8642" not in c.text and "8 6 4 2" not in c.text for c in cloud.contexts())
    assert "8642" not in caplog.text
    assert cloud.contexts()[1].text.endswith("Thank you, you are verified. ")
    assert ended.reason is EndReason.CALLER_HANGUP


async def test_speaking_while_the_llm_thinks_closes_its_stream_and_merges_the_turns(
    cloud: CloudCall,
) -> None:
    cloud.dg.script = ["What are your opening hours?", "I mean on Sundays."]
    cloud.oa.pause_after_chunks = 1  # the first reply hangs before its first word
    caller = cloud.start()
    await until(lambda: len(cloud.sink.timelines) == 1)
    await caller.speak(500, then_silence_ms=600)
    await until(lambda: len(cloud.oa.requests) == 1)
    await caller.speak(500, then_silence_ms=0)  # over the silent, thinking bot
    await cloud.oa.client_disconnected.wait()
    cloud.oa.pause_after_chunks = None
    await caller.silence(600)
    await until(lambda: len(cloud.sink.timelines) == 3)
    ended = await cloud.hang_up()

    assert cloud.oa.disconnects == 1 and cloud.oa.completed == 1
    thinking = cloud.sink.timelines[1]
    assert thinking.interrupted_at_ms is not None and thinking.first_audio_sent_ms is None
    assert "clear" not in cloud.out.kinds()  # nothing was playing
    assert len(cloud.contexts()) == 2  # no TTS for the abandoned reply
    merged = "What are your opening hours? I mean on Sundays."
    assert chat(cloud, 1)[-2:] == [("assistant", GREETING), ("user", merged)]
    assert cloud.contexts()[1].text == f"You said: {merged} "
    assert user_lines(cloud) == [merged]
    assert ended.reason is EndReason.CALLER_HANGUP
