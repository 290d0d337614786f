"""Run a Conversation with the doubles and wait on what it does."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.voice.doubles import Caller, FakeLLM, FakeSTT, FakeTTS, RecordingOutput, RecordingSink
from voice.config import (
    BargeInMode,
    CallConfig,
    IdleConfig,
    InterruptionConfig,
    LLMConfig,
    STTConfig,
    TTSConfig,
    TurnConfig,
)
from voice.conversation import Conversation
from voice.events import CallEnded
from voice.linecache import LineCache

RESULT_TIMEOUT_S = 15.0
UNTIL_TIMEOUT_S = 10.0


def make_config(**overrides: Any) -> CallConfig:
    base = CallConfig(
        call_id="call-1",
        system_prompt="You are a helpful test agent.",
        stt=STTConfig("fake"),
        llm=LLMConfig("fake"),
        tts=TTSConfig("fake"),
        first_message="Hello, how can I help?",
        # today's rules; pause_then_decide and preemptive replies (the defaults since
        # issue 16) are switched on by the tests of them
        turn=TurnConfig(min_wait_ms=100, max_wait_ms=600, preemptive=False),
        interruption=InterruptionConfig(mode=BargeInMode.WORDS, min_speech_ms=200),
        idle=IdleConfig(timeout_s=30.0),
        webhook_secret="whsec-test",
        # the tool servers of these tests are on loopback (OUTBOUND_ALLOWED_NETWORKS)
        allowed_networks=("127.0.0.1/32",),
    )
    return dataclasses.replace(base, **overrides)


@dataclass
class Call:
    conv: Conversation
    stt: FakeSTT
    llm: FakeLLM
    tts: FakeTTS
    out: RecordingOutput
    sink: RecordingSink
    caller: Caller
    task: asyncio.Task[CallEnded]

    async def result(self) -> CallEnded:
        async with asyncio.timeout(RESULT_TIMEOUT_S):
            return await self.task

    async def hang_up(self) -> CallEnded:
        self.conv.caller_hung_up()
        return await self.result()


async def start(
    config: CallConfig | None = None,
    *,
    stt: FakeSTT | None = None,
    llm: FakeLLM | None = None,
    tts: FakeTTS | None = None,
    fallbacks: tuple[list[FakeSTT], list[FakeLLM], list[FakeTTS]] = ([], [], []),
    lines: LineCache | None = None,
) -> Call:
    stt = stt or FakeSTT()
    llm = llm or FakeLLM()
    tts = tts or FakeTTS()
    out = RecordingOutput()
    sink = RecordingSink()
    stts, llms, ttss = fallbacks
    conv = Conversation(
        config or make_config(),
        stt=stt,
        llm=llm,
        tts=tts,
        output=out,
        sink=sink,
        stt_fallbacks=stts,
        llm_fallbacks=llms,
        tts_fallbacks=ttss,
        lines=lines,
    )
    out.attach(conv)
    task = asyncio.create_task(conv.run())
    return Call(conv, stt, llm, tts, out, sink, Caller(conv), task)


async def until(condition: Callable[[], bool]) -> None:
    """Poll ``condition``: the doubles have no hook for every state the tests wait on, and
    a test asserts ordering, never timing."""
    async with asyncio.timeout(UNTIL_TIMEOUT_S):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def leftover_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}
