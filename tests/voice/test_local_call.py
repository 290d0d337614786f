"""A whole call on the local providers, no network: eSpeak NG speaks, PocketSphinx listens,
the scripted LLM answers. The "caller" is eSpeak too, over mu-law 8 kHz like a phone line.

Only words PocketSphinx heard right in every measured trial are relied on:
"computer" in "I need help with my computer." (see ``test_pocketsphinx_stt``) and "bye"
in "Okay, bye bye." (heard as "okay bye bye" in every trial; "Goodbye." and "Thank you,
goodbye." were not: "why", "and you would lie").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.espeak_fresh import fresh_espeak
from tests.fakes import stray_tasks
from tests.voice.doubles import FRAME_SAMPLES, Caller, RecordingOutput, RecordingSink
from tests.voice.harness import RESULT_TIMEOUT_S, make_config, until
from voice.config import TWILIO_FORMAT, LLMConfig, STTConfig, ToolConfig, ToolKind, TTSConfig
from voice.conversation import Conversation
from voice.events import EndReason, Role, TurnKind
from voice.providers.registry import build_llm, build_stt, build_tts
from voice.providers.scripted_llm import FAREWELL

pytestmark = pytest.mark.slow

COMPUTER_HELP = "Let's fix your computer. Is it switched on?"


async def phone_line(text: str) -> list[bytes]:
    """``text`` spoken by eSpeak as 20 ms mu-law 8 kHz frames, as Twilio would send them."""
    audio = await asyncio.to_thread(fresh_espeak, text, TWILIO_FORMAT)  # order-independent
    return [audio[i : i + FRAME_SAMPLES] for i in range(0, len(audio), FRAME_SAMPLES)]


async def test_local_call_answers_what_was_said_and_hangs_up_on_goodbye() -> None:
    help_request = await phone_line("I need help with my computer.")
    goodbye = await phone_line("Okay, bye bye.")
    config = make_config(
        stt=STTConfig("pocketsphinx"),
        llm=LLMConfig("scripted", model=f"computer => {COMPUTER_HELP}"),
        tts=TTSConfig("espeak"),
        tools=(ToolConfig("end_call", "End the call", ToolKind.END_CALL),),
    )
    out, sink = RecordingOutput(), RecordingSink()
    conv = Conversation(
        config,
        stt=build_stt(config.stt),
        llm=build_llm(config.llm),
        tts=build_tts(config.tts),
        output=out,
        sink=sink,
    )
    out.attach(conv)
    caller = Caller(conv)
    task = asyncio.create_task(conv.run())
    await caller.silence(300)
    await until(lambda: len(sink.timelines) == 1)  # the greeting has played
    await caller.play(help_request)
    await caller.silence(1000)
    await until(lambda: len(sink.timelines) == 2)
    await caller.silence(300)
    await caller.play(goodbye)
    async with asyncio.timeout(RESULT_TIMEOUT_S):
        while not task.done():
            await caller.silence(100)
    ended = task.result()

    assert ended.reason is EndReason.ASSISTANT_HANGUP and ended.detail == "end_call tool"
    user = [e.text for e in sink.transcript if e.role is Role.USER]
    assert "computer" in user[0].split()
    assert "bye" in user[1].split()
    assistant = [e.text for e in sink.transcript if e.role is Role.ASSISTANT]
    assert assistant == ["Hello, how can I help?", COMPUTER_HELP, FAREWELL.strip()]
    assert [t.kind for t in sink.timelines] == [TurnKind.GREETING, TurnKind.REPLY, TurnKind.REPLY]
    assert all(t.interrupted_at_ms is None for t in sink.timelines)
    assert [r.name for r in sink.tool_records] == ["end_call"]
    # eSpeak marks every clause: the two-sentence reply got a mark per sentence
    reply_marks = [name for kind, name in out.log if kind == "mark" and name.startswith("t2-")]
    assert len(reply_marks) >= 2
    assert out.kinds()[-1] == "hangup"
    assert ended.usage.stt_seconds > 0 and ended.usage.tts_characters > 0
    assert await stray_tasks() == []


async def test_the_demo_front_desk_understands_and_books_offline() -> None:
    """The seeded demo's providers (Whisper, the scripted front desk, eSpeak): the
    questions ``make run`` + ``simulate_call`` used to get wrong are understood."""
    from voice.providers import frontdesk_llm as desk

    hours = await phone_line("What are your opening hours?")
    booking = await phone_line("I would like to book an appointment.")
    goodbye = await phone_line("Thank you, goodbye.")
    config = make_config(
        stt=STTConfig("whisper"),
        llm=LLMConfig("frontdesk"),
        tts=TTSConfig("espeak"),
        tools=(
            ToolConfig("end_call", "End the call", ToolKind.END_CALL),
            ToolConfig("booking_date", "The date", ToolKind.COLLECT_DIGITS, max_digits=4),
        ),
    )
    out, sink = RecordingOutput(), RecordingSink()
    conv = Conversation(
        config,
        stt=build_stt(config.stt),
        llm=build_llm(config.llm),
        tts=build_tts(config.tts),
        output=out,
        sink=sink,
    )
    out.attach(conv)
    caller = Caller(conv)
    task = asyncio.create_task(conv.run())
    await caller.silence(300)
    await until(lambda: len(sink.timelines) == 1)  # the greeting has played

    async def answered(condition: Callable[[], bool]) -> None:
        """Keep the line open (silent audio, as a phone sends) until ``condition``: the
        bot's replies here are long, spoken in real time."""
        async with asyncio.timeout(60):
            while not condition():
                await caller.silence(100)

    await caller.play(hours)
    await answered(lambda: len(sink.timelines) == 2)
    await caller.play(booking)
    # the booking turn asks for the date and waits for it on the keypad
    await answered(lambda: conv._digits.active)  # type: ignore[attr-defined]
    for digit in "1203":
        conv.feed_dtmf(digit)
        await caller.silence(100)
    await answered(lambda: len(sink.timelines) == 3)
    await caller.play(goodbye)
    await answered(task.done)
    ended = task.result()

    assert ended.reason is EndReason.ASSISTANT_HANGUP
    assistant = [e.text for e in sink.transcript if e.role is Role.ASSISTANT]
    assert assistant[1] == desk.HOURS
    assert assistant[2].startswith(desk.ASK_DATE)
    assert "December the third" in assistant[2]
    assert assistant[-1] == desk.FAREWELL
    assert [r.name for r in sink.tool_records] == ["booking_date", "end_call"]
    assert "1203" not in " ".join(e.text for e in sink.transcript)
    assert await stray_tasks() == []
