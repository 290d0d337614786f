"""The conversation end to end, with in-memory provider doubles and a carrier that plays
audio in (loop) time. The tests run on a virtual clock (looptime): the loop's time jumps to
the next timer whenever nothing is ready, so a call's seconds take milliseconds and every
run sees the same times."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from typing import Any

import pytest

from tests.voice.doubles import FakeLLM, FakeSTT, FakeTTS, words
from tests.voice.harness import leftover_tasks, make_config, start, until
from tests.voice.tool_server import tool_server
from voice.config import (
    BargeInMode,
    IdleConfig,
    InterruptionConfig,
    ToolConfig,
    ToolKind,
    TurnConfig,
)
from voice.events import EndReason, Role, TurnKind
from voice.providers.base import ProviderError, TextDelta, ToolCall, ToolCallsRequested
from voice.speaking import FIRST_AUDIO_MS

LONG_REPLY = (
    "Our opening hours are from nine in the morning to five in the afternoon. "
    "On Saturdays we open at ten and close at two. "
    "We are closed on Sundays and on public holidays. "
    "You can also reach us by email at any time of the day."
)

pytestmark = pytest.mark.looptime


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


TIMELINE_ORDER = (
    "end_of_turn_ms",
    "llm_request_ms",
    "llm_first_token_ms",
    "tts_first_text_ms",
    "tts_first_audio_ms",
    "first_audio_sent_ms",
    "playback_finished_ms",
)


async def test_greeting_is_spoken_first_and_caller_hangup_ends_the_call() -> None:
    call = await start()
    await until(lambda: len(call.sink.timelines) == 1)
    ended = await call.hang_up()

    assert ended.reason is EndReason.CALLER_HANGUP
    assert call.sink.ended == [ended]
    greeting = call.sink.timelines[0]
    assert greeting.kind is TurnKind.GREETING
    assert greeting.tts_first_text_ms is not None
    assert greeting.first_audio_sent_ms is not None
    assert greeting.playback_finished_ms is not None
    assert (
        greeting.tts_first_text_ms <= greeting.first_audio_sent_ms <= greeting.playback_finished_ms
    )
    kinds = call.out.kinds()
    assert kinds[0] == "audio"
    assert "mark" in kinds and "echo" in kinds
    assert "hangup" not in kinds  # the caller hung up: nothing to hang up
    [entry] = call.sink.transcript
    assert (entry.role, entry.text, entry.interrupted) == (
        Role.ASSISTANT,
        "Hello, how can I help?",
        False,
    )
    assert call.tts.pushed == ["Hello, how can I help?"]
    assert ended.usage.tts_characters == len("Hello, how can I help?")
    assert call.stt.sessions_open == 0 and call.tts.connections_open == 0
    assert not leftover_tasks()


async def test_a_turn_streams_llm_text_through_tts_with_a_full_timeline() -> None:
    llm = FakeLLM([words("We are open from nine to five. Can I help with anything else?")])
    call = await start(stt=FakeSTT(["What are your hours?"]), llm=llm)
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(400)
    await until(lambda: len(call.sink.timelines) == 2)
    ended = await call.hang_up()

    reply = call.sink.timelines[1]
    assert reply.kind is TurnKind.REPLY and reply.interrupted_at_ms is None
    marks = [getattr(reply, name) for name in TIMELINE_ORDER]
    assert all(m is not None for m in marks), reply
    assert marks == sorted(marks)
    assert reply.user_speech_start_ms is not None and reply.user_speech_end_ms is not None
    assert reply.user_speech_start_ms < reply.user_speech_end_ms <= reply.end_of_turn_ms
    assert reply.stt_final_ms is not None and reply.stt_final_ms <= reply.end_of_turn_ms
    assert reply.platform_overhead_ms is not None
    # voice-to-voice starts at the caller's last sound, before the VAD's hangover ended
    # speech; the stages in series add up to it and the overhead is only the hand-offs
    assert reply.user_audio_end_ms is not None and reply.vad_hangover_ms is not None
    assert 40 <= reply.vad_hangover_ms <= 200  # webrtcvad's hangover on a voiced burst
    assert reply.voice_to_voice_ms == pytest.approx(
        reply.first_audio_sent_ms - reply.user_audio_end_ms, abs=0.01
    )
    stages = (
        reply.vad_hangover_ms,
        reply.endpointing_ms,
        reply.llm_ttft_ms,
        reply.llm_first_clause_ms,
        reply.tts_ttfb_ms,
        reply.platform_overhead_ms,
    )
    assert sum(s for s in stages if s is not None) == pytest.approx(reply.voice_to_voice_ms)
    hand_offs = (reply.llm_request_ms - reply.end_of_turn_ms) + (
        reply.first_audio_sent_ms - reply.tts_first_audio_ms
    )
    assert reply.platform_overhead_ms == pytest.approx(hand_offs, abs=0.01)

    [request] = llm.requests
    assert [(m.role, m.content) for m in request] == [
        ("system", "You are a helpful test agent."),
        ("assistant", "Hello, how can I help?"),
        ("user", "What are your hours?"),
    ]
    # one TTS context per reply, fed clause by clause
    assert len(call.tts.contexts) == 2
    assert call.tts.contexts[1].pushed == [
        "We are open from nine to five.",
        "Can I help with anything else?",
    ]
    assert [(e.role, e.text) for e in call.sink.transcript] == [
        (Role.ASSISTANT, "Hello, how can I help?"),
        (Role.USER, "What are your hours?"),
        (Role.ASSISTANT, "We are open from nine to five. Can I help with anything else?"),
    ]
    assert ended.usage.stt_seconds > 0


async def test_history_accumulates_over_turns() -> None:
    llm = FakeLLM([words("It is sunny."), words("Tomorrow it rains.")])
    call = await start(stt=FakeSTT(["How is the weather?", "And tomorrow?"]), llm=llm)
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300)
    await until(lambda: len(call.sink.timelines) == 2)
    await call.caller.speak(300)
    await until(lambda: len(call.sink.timelines) == 3)
    await call.hang_up()

    assert [(m.role, m.content) for m in llm.requests[1][1:]] == [
        ("assistant", "Hello, how can I help?"),
        ("user", "How is the weather?"),
        ("assistant", "It is sunny."),
        ("user", "And tomorrow?"),
    ]
    assert [t.turn_index for t in call.sink.timelines] == [0, 1, 2]


async def test_barge_in_clears_audio_and_truncates_history_and_transcript() -> None:
    llm = FakeLLM([words(LONG_REPLY), words("Sure, go ahead.")])
    stt = FakeSTT(["What are your hours?", "Wait, one question"])
    call = await start(stt=stt, llm=llm, tts=FakeTTS(ms_per_char=15))
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300)
    await until(lambda: len(call.tts.contexts) == 2 and ("audio" in call.out.kinds()[-3:]))
    await call.caller.silence(600)  # let some of the reply play
    await call.caller.speak(400)
    await until(lambda: len(call.sink.timelines) == 3)
    ended = await call.hang_up()
    assert ended.reason is EndReason.CALLER_HANGUP

    interrupted = call.sink.timelines[1]
    assert interrupted.interrupted_at_ms is not None
    assert interrupted.playback_finished_ms is None
    assert "clear" in call.out.kinds()
    assert call.tts.contexts[1].cancelled

    assistant = [e for e in call.sink.transcript if e.role is Role.ASSISTANT and e.turn_index == 1]
    [cut] = assistant
    assert cut.interrupted
    assert cut.text and len(cut.text) < len(LONG_REPLY)
    assert LONG_REPLY.startswith(cut.text)
    # the next request sees exactly what the caller heard, then what they said
    history = [(m.role, m.content) for m in llm.requests[1][1:]]
    assert history[2] == ("assistant", cut.text)
    assert history[3] == ("user", "Wait, one question")


async def test_acknowledgement_does_not_interrupt_or_get_a_reply() -> None:
    config = make_config(interruption=InterruptionConfig(mode=BargeInMode.WORDS, min_speech_ms=250))
    llm = FakeLLM([words(LONG_REPLY)])
    call = await start(config, stt=FakeSTT(["What are your hours?", "mhm"]), llm=llm)
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300)
    await until(lambda: len(call.tts.contexts) == 2 and "audio" in call.out.kinds()[-3:])
    await call.caller.speak(400, then_silence_ms=300)
    await until(lambda: len(call.sink.timelines) == 2)
    await call.caller.silence(800)
    await call.hang_up()

    assert "clear" not in call.out.kinds()
    assert call.sink.timelines[1].interrupted_at_ms is None
    assert len(llm.requests) == 1
    assert all(e.text != "mhm" for e in call.sink.transcript)


async def test_acknowledgement_transcribed_after_min_speech_does_not_interrupt() -> None:
    # streaming STT's first interim comes later than min_speech_ms (as Deepgram's does)
    config = make_config(interruption=InterruptionConfig(mode=BargeInMode.WORDS, min_speech_ms=200))
    llm = FakeLLM([words(LONG_REPLY)])
    stt = FakeSTT(["What are your hours?", "mhm"], interim_after_ms=360)
    call = await start(config, stt=stt, llm=llm)
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(400)
    await until(lambda: len(call.tts.contexts) == 2 and "audio" in call.out.kinds()[-3:])
    await call.caller.speak(400, then_silence_ms=300)
    await until(lambda: len(call.sink.timelines) == 2)
    await call.hang_up()

    assert "clear" not in call.out.kinds()
    assert call.sink.timelines[1].interrupted_at_ms is None
    assert len(llm.requests) == 1


async def test_speech_without_a_transcript_interrupts_after_the_transcript_wait() -> None:
    # an STT that sends no interim text (PocketSphinx): VAD alone decides, a little later
    config = make_config(
        interruption=InterruptionConfig(
            mode=BargeInMode.WORDS, min_speech_ms=200, transcript_wait_ms=200
        )
    )
    llm = FakeLLM([words(LONG_REPLY), words("Sure.")])
    stt = FakeSTT(["What are your hours?", "Wait, one question"], interim_after_ms=60_000)
    stt.final_after_silence_ms = 60_000
    call = await start(config, stt=stt, llm=llm, tts=FakeTTS(ms_per_char=15))
    await until(lambda: len(call.sink.timelines) == 1)
    stt.interim_after_ms = 100
    await call.caller.speak(300)
    await until(lambda: len(call.tts.contexts) == 2 and "audio" in call.out.kinds()[-3:])
    stt.interim_after_ms = 60_000
    await call.caller.speak(200, then_silence_ms=400)  # too short to be sure
    assert "clear" not in call.out.kinds()
    await call.caller.speak(600, then_silence_ms=100)
    await until(lambda: "clear" in call.out.kinds())
    await call.hang_up()

    assert call.sink.timelines[1].interrupted_at_ms is not None


async def test_idle_prompts_then_goodbye_and_hang_up() -> None:
    idle = IdleConfig(prompt="Still there?", timeout_s=0.3, max_prompts=2, goodbye="Bye now.")
    call = await start(make_config(idle=idle))
    ended = await call.result()

    assert ended.reason is EndReason.SILENCE_TIMEOUT
    kinds = [t.kind for t in call.sink.timelines]
    assert kinds == [
        TurnKind.GREETING,
        TurnKind.IDLE_PROMPT,
        TurnKind.IDLE_PROMPT,
        TurnKind.CLOSING,
    ]
    assert [e.text for e in call.sink.transcript] == [
        "Hello, how can I help?",
        "Still there?",
        "Still there?",
        "Bye now.",
    ]
    # the goodbye was heard (its final mark echoed) before the hang-up
    log = call.out.log
    last_mark = max(i for i, (k, _) in enumerate(log) if k == "mark")
    echo = next(i for i, (k, v) in enumerate(log) if k == "echo" and v == log[last_mark][1])
    assert echo < log.index(("hangup", None))
    assert call.sink.timelines[-1].playback_finished_ms is not None
    assert not leftover_tasks()


async def test_max_duration_says_the_message_and_hangs_up() -> None:
    config = make_config(max_duration_s=1.5, max_duration_message="Time is up.")
    llm = FakeLLM([words(LONG_REPLY)])
    call = await start(config, stt=FakeSTT(["Tell me everything"]), llm=llm)
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(200, then_silence_ms=400)
    ended = await call.result()

    assert ended.reason is EndReason.MAX_DURATION
    # the reply in progress was cut, its audio cleared, and the closing line spoken
    assert call.sink.timelines[1].interrupted_at_ms is not None
    assert "clear" in call.out.kinds()
    assert call.sink.timelines[-1].kind is TurnKind.CLOSING
    assert call.sink.transcript[-1].text == "Time is up."
    assert call.out.kinds()[-1] == "hangup"
    assert not leftover_tasks()


async def test_end_call_phrase_hangs_up_after_it_is_spoken() -> None:
    config = make_config(end_call_phrases=("goodbye",))
    llm = FakeLLM([words("Thanks for calling, goodbye!")])
    call = await start(config, stt=FakeSTT(["That is all"]), llm=llm)
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300)
    ended = await call.result()

    assert ended.reason is EndReason.ASSISTANT_HANGUP
    assert call.sink.timelines[-1].playback_finished_ms is not None
    assert call.out.kinds()[-1] == "hangup"


async def test_end_call_tool_finishes_speaking_then_hangs_up() -> None:
    end_tool = ToolConfig("end_call", "End the call", ToolKind.END_CALL)
    script = [*words("Goodbye then."), ToolCallsRequested([ToolCall("c1", "end_call", "{}")])]
    llm = FakeLLM([script])
    call = await start(make_config(tools=(end_tool,)), stt=FakeSTT(["Bye"]), llm=llm)
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300)
    ended = await call.result()

    assert ended.reason is EndReason.ASSISTANT_HANGUP
    [record] = call.sink.tool_records
    assert record.name == "end_call" and record.ok
    assert call.sink.timelines[-1].tool_calls == 1
    assert call.sink.timelines[-1].playback_finished_ms is not None
    assert call.out.kinds()[-1] == "hangup"
    assert len(llm.requests) == 1


async def test_transfer_call_tool_transfers_after_speaking() -> None:
    tool = ToolConfig("transfer", "Transfer", ToolKind.TRANSFER_CALL, transfer_to="+15550001111")
    script = [*words("Connecting you now."), ToolCallsRequested([ToolCall("c1", "transfer", "{}")])]
    call = await start(
        make_config(tools=(tool,)), stt=FakeSTT(["A human please"]), llm=FakeLLM([script])
    )
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300)
    ended = await call.result()

    assert ended.reason is EndReason.TRANSFERRED
    assert ended.transfer_to == "+15550001111"
    assert call.out.log[-1] == ("transfer", "+15550001111")


async def test_llm_failure_mid_reply_apologizes_retries_then_says_goodbye() -> None:
    script = [*words("Let me check"), 0.05, ProviderError("fake-llm", "stream reset")]
    again = [ProviderError("fake-llm", "stream reset again")]
    call = await start(stt=FakeSTT(["Question"]), llm=FakeLLM([script, again]))
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300)
    ended = await call.result()

    # what was said stays said; the apology; one retry (no fallback); then the goodbye
    assert ended.reason is EndReason.PROVIDER_ERROR
    assert "stream reset again" in ended.detail
    said = [e.text for e in call.sink.transcript if e.role is Role.ASSISTANT]
    assert said[-2] == "Let me check Sorry, one moment please."
    assert said[-1] == make_config().fallback.goodbye
    assert call.sink.timelines[-1].kind is TurnKind.CLOSING
    reply = call.sink.timelines[-2]
    assert [(f["stage"], f["from"], f["to"]) for f in reply.fallbacks] == [
        ("llm", "fake-llm (primary)", "fake-llm (primary)")
    ]
    assert ended.fallbacks == reply.fallbacks
    assert call.out.kinds()[-1] == "hangup"
    assert call.stt.sessions_open == 0 and call.tts.connections_open == 0
    assert call.llm.closed == 2 and call.llm.released == 1
    assert not leftover_tasks()


async def test_stt_failure_ends_with_provider_error() -> None:
    call = await start(stt=FakeSTT(fail_after_ms=200))
    await call.caller.silence(400)
    ended = await call.result()
    assert ended.reason is EndReason.PROVIDER_ERROR
    assert "connection reset" in ended.detail
    assert not leftover_tasks()


async def test_tts_failure_ends_with_provider_error() -> None:
    call = await start(tts=FakeTTS(fail_on_push=1))
    ended = await call.result()
    assert ended.reason is EndReason.PROVIDER_ERROR
    assert "synthesis failed" in ended.detail
    assert not leftover_tasks()


async def test_caller_hangs_up_mid_reply() -> None:
    llm = FakeLLM([words(LONG_REPLY)])
    call = await start(stt=FakeSTT(["Hours?"]), llm=llm, tts=FakeTTS(ms_per_char=20))
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300)
    await until(lambda: len(call.tts.contexts) == 2 and "audio" in call.out.kinds()[-3:])
    ended = await call.hang_up()

    assert ended.reason is EndReason.CALLER_HANGUP
    reply = call.sink.timelines[-1]
    assert reply.interrupted_at_ms is not None
    last = call.sink.transcript[-1]
    assert last.role is Role.ASSISTANT and last.interrupted
    assert len(last.text) < len(LONG_REPLY)
    assert "hangup" not in call.out.kinds()
    assert call.tts.contexts[1].cancelled
    assert not leftover_tasks()


async def test_speech_while_thinking_is_merged_into_one_reply() -> None:
    slow = [0.8, *words("Got it.")]
    llm = FakeLLM([slow, words("Got both.")])
    call = await start(stt=FakeSTT(["I need a table", "for two"]), llm=llm)
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300)
    await until(lambda: len(llm.requests) == 1)
    await call.caller.speak(400)
    await until(lambda: len(llm.requests) == 2)
    await until(lambda: len(call.sink.timelines) == 3)
    await call.hang_up()

    assert llm.requests[1][-1].content == "I need a table for two"
    users = [e.text for e in call.sink.transcript if e.role is Role.USER]
    assert users == ["I need a table for two"]


async def test_many_calls_share_one_loop() -> None:
    calls = [await start() for _ in range(5)]
    for call in calls:
        await until(lambda call=call: len(call.sink.timelines) == 1)
    for call in calls:
        assert (await call.hang_up()).reason is EndReason.CALLER_HANGUP
    assert not leftover_tasks()


async def test_non_interruptible_greeting_keeps_playing() -> None:
    config = make_config(
        first_message_interruptible=False,
        first_message="Welcome to the test line. This message cannot be interrupted at all.",
    )
    call = await start(config, stt=FakeSTT(["hello?"]), tts=FakeTTS(ms_per_char=15))
    await until(lambda: "audio" in call.out.kinds())
    await call.caller.speak(400)
    await until(lambda: len(call.sink.timelines) >= 2)
    await call.hang_up()
    assert "clear" not in call.out.kinds()
    assert call.sink.timelines[0].interrupted_at_ms is None
    assert dataclasses.asdict(call.sink.transcript[0])["interrupted"] is False
    assert TextDelta  # the reply used the default script


async def test_http_tool_round_trip_with_filler() -> None:
    async with tool_server() as server:
        weather = ToolConfig(
            "slow",
            "Weather, slowly",
            ToolKind.HTTP,
            url=f"{server.base_url}/slow",
            timeout_s=5.0,
            filler="One moment please.",
            filler_after_s=0.1,
        )
        call_weather = ToolCall("w1", "slow", '{"city": "Oslo"}')
        llm = FakeLLM([[ToolCallsRequested([call_weather])], words("It is sunny in Oslo.")])
        call = await start(make_config(tools=(weather,)), stt=FakeSTT(["Weather?"]), llm=llm)
        await until(lambda: len(call.sink.timelines) == 1)
        await call.caller.speak(300)
        await until(lambda: "One moment please." in call.tts.pushed)
        server.release.set()
        await until(lambda: len(call.sink.timelines) == 2)
        await call.hang_up()

    assert server.bad_signatures == 0
    assert server.requests[0]["arguments"] == {"city": "Oslo"}
    [record] = call.sink.tool_records
    assert record.ok and record.name == "slow" and record.turn_index == 1
    second = llm.requests[1]
    assert second[-2].tool_calls == [call_weather]
    assert (second[-1].role, second[-1].tool_call_id) == ("tool", "w1")
    assert second[-1].content == '{"late":true}'
    assert call.tts.contexts[1].pushed == ["One moment please.", "It is sunny in Oslo."]
    assert call.sink.transcript[-1].text == "One moment please. It is sunny in Oslo."
    assert call.sink.timelines[1].tool_calls == 1


async def test_parallel_tool_calls_all_answer() -> None:
    async with tool_server() as server:
        tools = (
            ToolConfig("weather", "", ToolKind.HTTP, url=f"{server.base_url}/weather"),
            ToolConfig("fail", "", ToolKind.HTTP, url=f"{server.base_url}/fail"),
        )
        calls = [ToolCall("a", "weather", '{"city": "Rome"}'), ToolCall("b", "fail", "{}")]
        llm = FakeLLM([[ToolCallsRequested(calls)], words("Done.")])
        call = await start(make_config(tools=tools), stt=FakeSTT(["Both please"]), llm=llm)
        await until(lambda: len(call.sink.timelines) == 1)
        await call.caller.speak(300)
        await until(lambda: len(call.sink.timelines) == 2)
        await call.hang_up()

    results = {m.tool_call_id: m.content for m in llm.requests[1] if m.role == "tool"}
    assert json.loads(results["a"])["city"] == "Rome"
    assert results["b"] == "Error: the fail tool failed with HTTP status 500."
    assert sorted(r.ok for r in call.sink.tool_records) == [False, True]


async def test_caller_hangs_up_while_a_tool_hangs() -> None:
    async with tool_server() as server:
        tool = ToolConfig("slow", "", ToolKind.HTTP, url=f"{server.base_url}/slow", timeout_s=30)
        llm = FakeLLM([[ToolCallsRequested([ToolCall("s", "slow", "{}")])]])
        call = await start(make_config(tools=(tool,)), stt=FakeSTT(["Go"]), llm=llm)
        await until(lambda: len(call.sink.timelines) == 1)
        await call.caller.speak(300)
        await until(lambda: len(server.requests) == 1)
        ended = await call.hang_up()
        # the tenant's server is still handling the abandoned request; the engine is not
        assert {t.get_coro().__qualname__ for t in leftover_tasks()} <= {
            "RequestHandler.start",
            "RequestHandler._handle_request",
        }
    assert ended.reason is EndReason.CALLER_HANGUP
    assert not leftover_tasks()


async def test_collect_digits_keeps_secure_digits_out_of_everything_but_the_tool_result(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    pin = ToolConfig("pin", "Collect the PIN", ToolKind.COLLECT_DIGITS, digit_timeout_s=3.0)
    script = [
        *words("Please enter your PIN, then press pound."),
        ToolCallsRequested([ToolCall("p1", "pin", "{}")]),
    ]
    llm = FakeLLM([script, words("Thank you, you are verified.")])
    call = await start(make_config(tools=(pin,)), stt=FakeSTT(["Check my account"]), llm=llm)
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300)
    await until(lambda: llm.closed == 1)
    for digit in "8642#":
        await asyncio.sleep(0.1)
        call.conv.feed_dtmf(digit)
    await until(lambda: len(call.sink.timelines) == 2)
    await call.hang_up()

    tool_messages = [m for m in llm.requests[1] if m.role == "tool"]
    assert [json.loads(m.content) for m in tool_messages] == [{"digits": "8642"}]
    others = [m for r in llm.requests for m in r if m.role != "tool"]
    assert all("8642" not in m.content for m in others)
    assert all("8642" not in repr(e) for e in call.sink.events)
    assert call.sink.tool_records[0].result == '{"digits": "[redacted: 4 digits]"}'
    assert "8642" not in caplog.text
    assert not any(d in e.text for e in call.sink.transcript for d in ("8642", "8 6 4 2"))


async def test_engine_asks_stt_to_finalize_when_only_interim_text_arrives() -> None:
    stt = FakeSTT(["Are you open today"], final_after_silence_ms=60_000)
    llm = FakeLLM([words("Yes, until five.")])
    call = await start(stt=stt, llm=llm)
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300, then_silence_ms=1200)
    await until(lambda: len(call.sink.timelines) == 2)
    await call.hang_up()
    assert stt.finalize_calls == 1
    assert llm.requests[0][-1].content == "Are you open today"


async def test_full_audio_queue_drops_the_oldest_frames() -> None:
    call = await start(make_config(first_message=""))
    conv = call.conv
    # the loop has not run the call yet: everything fed now waits in the bounded queue
    for _ in range(130):
        conv.feed_audio(b"\xff" * 160)
    ended = await call.hang_up()
    assert ended.dropped_frames == 30


async def test_greeting_does_not_wait_for_stt_to_connect() -> None:
    stt = FakeSTT(["Hi"], connect_delay=0.5)
    call = await start(stt=stt)
    await until(lambda: "audio" in call.out.kinds())
    assert stt.sessions_opened == 0
    # caller audio waits for the session in the bounded queue, then reaches STT
    await call.caller.speak(300)
    await until(lambda: len(call.sink.timelines) == 2)
    await call.hang_up()
    assert stt.audio_bytes > 0


async def test_an_stt_refusing_to_connect_ends_the_call_after_a_spoken_goodbye() -> None:
    call = await start(stt=FakeSTT(refuse=True))
    ended = await call.result()
    assert ended.reason is EndReason.PROVIDER_ERROR
    assert ended.detail == "speech-to-text unavailable: fake-stt: 401 Unauthorized"
    # not a silent call: the caller hears why it ends
    assert call.sink.transcript[-1].text == make_config().fallback.goodbye
    assert call.out.kinds()[-1] == "hangup"
    assert call.tts.connections_open == 0
    assert not leftover_tasks()


async def test_a_tts_refusing_to_connect_ends_the_call() -> None:
    call = await start(tts=FakeTTS(refuse=True))
    ended = await call.result()
    assert ended.reason is EndReason.PROVIDER_ERROR
    assert ended.detail == "fake-tts: 401 Unauthorized"
    assert call.stt.sessions_open == 0
    assert not leftover_tasks()


async def test_min_words_keeps_a_one_word_interjection_from_interrupting() -> None:
    config = make_config(
        interruption=InterruptionConfig(mode=BargeInMode.WORDS, min_speech_ms=200, min_words=2)
    )
    llm = FakeLLM([words(LONG_REPLY), words("Stopping.")])
    call = await start(config, stt=FakeSTT(["Hours?", "stop"]), llm=llm)
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300)
    await until(lambda: len(call.tts.contexts) == 2 and "audio" in call.out.kinds()[-3:])
    await call.caller.speak(400)
    await until(lambda: len(call.sink.timelines) == 3)
    await call.hang_up()

    assert "clear" not in call.out.kinds()
    assert call.sink.timelines[1].interrupted_at_ms is None
    # not an acknowledgement: answered once the bot has finished
    assert llm.requests[1][-1].content == "stop"


async def test_unexpected_error_ends_with_error_and_leaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    llm = FakeLLM([[RuntimeError("bug in a provider")]])
    call = await start(stt=FakeSTT(["Question"]), llm=llm)
    await until(lambda: len(call.sink.timelines) == 1)
    await call.caller.speak(300)
    ended = await call.result()
    assert ended.reason is EndReason.ERROR
    assert ended.detail == "RuntimeError: bug in a provider"
    assert "engine error" in caplog.text
    assert call.out.kinds()[-1] == "hangup"
    assert not leftover_tasks()


@pytest.mark.parametrize("ending", ["llm-error", "stt-error", "caller-hangup"])
async def test_a_provider_whose_close_hangs_cannot_hold_the_call_past_its_shutdown_bound(
    ending: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voice.conversation import SHUTDOWN_TIMEOUT_S

    # the engine's own logger, read directly and switched on for this test: in the full
    # suite, servers and workers that other tests start in this process reconfigure logging
    heard = _Records()
    engine_log = logging.getLogger("voice.conversation")
    monkeypatch.setattr(engine_log, "disabled", False)
    monkeypatch.setattr(engine_log, "level", logging.DEBUG)
    engine_log.setLevel(logging.DEBUG)  # also drops the loggers' cached "enabled?" answers
    engine_log.addHandler(heard)

    failing = [TextDelta("Let me"), ProviderError("fake-llm", "stream reset")]
    llm = FakeLLM([failing, list(failing)])
    stt = FakeSTT(["Hello?"])
    tts = FakeTTS(close_hangs_s=20.0)
    call = await start(make_config(first_message=""), stt=stt, llm=llm, tts=tts)
    loop = asyncio.get_running_loop()
    if ending == "llm-error":
        await call.caller.speak(300)  # the reply's LLM fails twice: the goodbye, then the end
        await until(lambda: bool(call.sink.timelines))
        await until(lambda: call.sink.timelines[-1].kind is TurnKind.CLOSING)
    elif ending == "stt-error":
        stt.fail_after_ms = 100
        await call.caller.silence(200)
        await until(lambda: stt.fail_after_ms is None)
    else:
        await call.caller.silence(100)
        call.conv.caller_hung_up()
    decided = loop.time()
    ended = await call.result()
    # on the call's own (virtual) clock: the 20 s close was abandoned, with a warning
    assert loop.time() - decided <= SHUTDOWN_TIMEOUT_S
    assert (
        ended.reason
        is {
            "llm-error": EndReason.PROVIDER_ERROR,
            "stt-error": EndReason.PROVIDER_ERROR,
            "caller-hangup": EndReason.CALLER_HANGUP,
        }[ending]
    )
    engine_log.removeHandler(heard)
    # the close really hung, and the engine gave up on it
    assert tts.closes_cut_short == 1
    stuck = ("did not close within", "still stopping")
    state = (logging.root.manager.disable, engine_log.isEnabledFor(logging.WARNING))
    assert any(w in r.getMessage() for r in heard.records for w in stuck), (heard.records, state)
    assert not leftover_tasks()


async def test_an_llm_stream_whose_close_hangs_cannot_hold_the_call() -> None:
    from voice.conversation import SHUTDOWN_TIMEOUT_S

    llm = FakeLLM([[TextDelta("Let me"), 60.0]], close_hangs_s=20.0)
    call = await start(make_config(first_message=""), stt=FakeSTT(["Hello?"]), llm=llm)
    await call.caller.speak(300)
    await until(lambda: bool(llm.requests))
    loop = asyncio.get_running_loop()
    decided = loop.time()
    ended = await call.hang_up()
    assert loop.time() - decided <= SHUTDOWN_TIMEOUT_S
    assert ended.reason is EndReason.CALLER_HANGUP
    assert not leftover_tasks()


async def test_a_hanging_llm_close_after_a_barge_in_does_not_hold_the_next_reply() -> None:
    from voice.conversation import PROVIDER_CLOSE_S

    llm = FakeLLM([words(LONG_REPLY, delay=0.05), words("Sure.")], close_hangs_s=20.0)
    stt = FakeSTT(["What are your hours?", "Stop, what about Sunday"])
    call = await start(make_config(first_message=""), stt=stt, llm=llm)
    await call.caller.speak(300)
    await until(lambda: "audio" in call.out.kinds())
    await call.caller.speak(600)  # barge in while the LLM still streams
    await until(lambda: len(llm.requests) == 2)
    await call.hang_up()
    cut, answer = call.sink.timelines[0], call.sink.timelines[1]
    assert cut.interrupted_at_ms is not None and answer.end_of_turn_ms is not None
    # the interrupted turn was given PROVIDER_CLOSE_S to stop, not the 20 s its close took
    assert answer.end_of_turn_ms - cut.interrupted_at_ms < 2 * PROVIDER_CLOSE_S * 1000


async def test_held_replies_confirmed_at_once_send_each_first_frame_before_any_rest() -> None:
    """Turns of many calls confirmed together (a burst of turn starts): each call sends the
    head of its held reply before any of them sends the rest, so no caller waits for the
    others' whole replies to be framed."""
    config = make_config(turn=TurnConfig(min_wait_ms=100, max_wait_ms=600, preemptive=True))
    calls = [
        await start(config, stt=FakeSTT(["What are your hours?"]), llm=FakeLLM([words(LONG_REPLY)]))
        for _ in range(2)
    ]
    sent: list[tuple[int, int]] = []
    for i, call in enumerate(calls):
        play = call.out.send_audio

        async def send_audio(payload: bytes, i: int = i, play: Any = play) -> None:
            sent.append((i, len(payload)))
            await play(payload)

        call.out.send_audio = send_audio  # type: ignore[method-assign]
    await until(lambda: all(len(c.sink.timelines) == 1 for c in calls))
    sent.clear()
    await asyncio.gather(*(c.caller.speak(600, then_silence_ms=900) for c in calls))
    await until(lambda: all(len(c.sink.timelines) == 2 for c in calls))
    for call in calls:
        await call.hang_up()

    for call in calls:
        reply = call.sink.timelines[1]
        assert reply.llm_request_ms is not None and reply.end_of_turn_ms is not None
        assert reply.llm_request_ms < reply.end_of_turn_ms  # prepared, held, then confirmed
    head = config.carrier_format.bytes_for_ms(FIRST_AUDIO_MS)
    assert sorted(sent[:2]) == [(0, head), (1, head)]
    assert {i for i, _ in sent[2:]} == {0, 1}  # then the rest of each reply
