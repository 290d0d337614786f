"""How calls on the real cloud providers end: idle prompts, the duration limit, a provider
failing mid-call, the caller hanging up mid-reply. Same fakes and carrier as
:mod:`tests.voice.test_engine_integration`; ordering and presence only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.fakes import FakeReply, FakeToolCall
from tests.voice.cloud import SPOKEN_MARKS, CloudCall, ordered
from tests.voice.doubles import Caller
from tests.voice.harness import until
from voice.config import FallbackConfig, IdleConfig, ToolConfig, ToolKind
from voice.events import EndReason, Role, TurnKind

GREETING = "Hello, how can I help?"
LONG_REPLY = (
    "Our opening hours are nine to five on weekdays. On Saturdays we open at ten. "
    "On Sundays we are closed, but the phone line stays open for emergencies."
)


@contextlib.asynccontextmanager
async def line_noise(caller: Caller) -> AsyncIterator[None]:
    """Silence from the phone for as long as the block runs, as a carrier streams it."""

    async def feed() -> None:
        while True:
            await caller.silence(200)

    task = asyncio.create_task(feed())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def spoken(call: CloudCall) -> list[str]:
    return [c.text for c in call.contexts()]


async def test_idle_prompts_then_goodbye_and_hang_up(cloud: CloudCall) -> None:
    idle = IdleConfig(prompt="Are you still there?", timeout_s=0.3, max_prompts=2, goodbye="Bye.")
    caller = cloud.start(idle=idle)
    async with line_noise(caller):
        ended = await cloud.result()

    assert ended.reason is EndReason.SILENCE_TIMEOUT
    kinds = [t.kind for t in cloud.sink.timelines]
    prompt = TurnKind.IDLE_PROMPT
    assert kinds == [TurnKind.GREETING, prompt, prompt, TurnKind.CLOSING]
    for timeline in cloud.sink.timelines:
        ordered(timeline, SPOKEN_MARKS)
    assert spoken(cloud) == [GREETING + " ", *["Are you still there? "] * 2, "Bye. "]
    assert cloud.oa.requests == []
    assert cloud.out.kinds()[-1] == "hangup"
    assert [e.text for e in cloud.sink.transcript] == [
        GREETING,
        "Are you still there?",
        "Are you still there?",
        "Bye.",
    ]


async def test_max_duration_says_its_line_then_hangs_up(cloud: CloudCall) -> None:
    cloud.dg.script = ["What are your opening hours?"]
    cloud.ca.ms_per_char = 40
    cloud.ca.chunk_interval_s = 0.02
    cloud.oa.responder = lambda messages, tools: LONG_REPLY
    caller = cloud.start(max_duration_s=2.0, max_duration_message="Time is up. Goodbye.")
    async with line_noise(caller):
        await caller.speak(500, then_silence_ms=0)
        ended = await cloud.result()

    assert ended.reason is EndReason.MAX_DURATION
    reply, closing = cloud.sink.timelines[-2:]
    assert reply.kind is TurnKind.REPLY and reply.interrupted_at_ms is not None
    assert closing.kind is TurnKind.CLOSING
    ordered(closing, SPOKEN_MARKS)
    assert spoken(cloud)[-1] == "Time is up. Goodbye. "
    assert cloud.contexts()[1].cancelled  # the reply in flight was stopped
    kinds = cloud.out.kinds()
    assert kinds.index("clear") < len(kinds) - 1 - kinds[::-1].index("audio")
    assert kinds[-1] == "hangup"
    entries = [(e.role, e.text) for e in cloud.sink.transcript]
    assert (Role.USER, "What are your opening hours?") in entries
    assert entries[-1] == (Role.ASSISTANT, "Time is up. Goodbye.")


async def test_caller_hanging_up_mid_reply_stops_everything(cloud: CloudCall) -> None:
    cloud.dg.script = ["What are your opening hours?"]
    cloud.ca.ms_per_char = 40
    cloud.ca.chunk_interval_s = 0.02
    cloud.oa.responder = lambda messages, tools: LONG_REPLY
    caller = cloud.start()
    await until(lambda: len(cloud.sink.timelines) == 1)
    await caller.speak(500, then_silence_ms=600)
    await until(lambda: any(m.startswith("t2-") for m in cloud.marks("echo")))
    ended = await cloud.hang_up()

    assert ended.reason is EndReason.CALLER_HANGUP
    reply = cloud.sink.timelines[-1]
    assert reply.interrupted_at_ms is not None and reply.playback_finished_ms is None
    # closing the socket stops Cartesia mid-reply (a cancel message is not needed then)
    reply_ctx = cloud.contexts()[1]
    assert not reply_ctx.done
    assert reply_ctx.audio_bytes < len(LONG_REPLY + " ") * cloud.ca.ms_per_char * 8
    assert "hangup" not in cloud.out.kinds()
    last = cloud.sink.transcript[-1]
    assert last.role is Role.ASSISTANT and last.interrupted
    assert last.text.startswith("Our opening hours are nine to five on weekdays.")
    assert len(last.text) < len(LONG_REPLY)


async def _reply_fails(cloud: CloudCall) -> tuple[EndReason, str]:
    cloud.dg.script = ["What are your opening hours?"]
    caller = cloud.start()
    await until(lambda: len(cloud.sink.timelines) == 1)
    async with line_noise(caller):
        await caller.speak(500, then_silence_ms=0)
        ended = await cloud.result()
    return ended.reason, ended.detail


async def test_openai_500_apologizes_retries_then_ends_the_call_keeping_the_transcript(
    cloud: CloudCall,
) -> None:
    # the SDK retries once per request; the engine asks once more (no fallback LLM)
    cloud.oa.fail_next(500, times=4)
    reason, detail = await _reply_fails(cloud)

    assert reason is EndReason.PROVIDER_ERROR
    assert detail.startswith("no language model answered: openai: server error (HTTP 500)")
    assert len(cloud.oa.requests) == 4
    assert [(e.role, e.text) for e in cloud.sink.transcript] == [
        (Role.ASSISTANT, GREETING),
        (Role.USER, "What are your opening hours?"),
        (Role.ASSISTANT, FallbackConfig().apology),
        (Role.ASSISTANT, FallbackConfig().goodbye),
    ]
    assert cloud.out.kinds()[-1] == "hangup"


@pytest.mark.parametrize("failure", ["disconnect", "error"])
async def test_openai_failing_mid_stream_every_time_ends_the_call_after_a_goodbye(
    cloud: CloudCall, failure: str
) -> None:
    cloud.oa.responder = lambda messages, tools: LONG_REPLY
    cloud.oa.fail_mid_stream = failure  # type: ignore[assignment]
    cloud.oa.fail_after_chunks = 4
    reason, detail = await _reply_fails(cloud)

    assert reason is EndReason.PROVIDER_ERROR
    assert detail.startswith("no language model answered: openai: stream failed")
    entries = [(e.role, e.text) for e in cloud.sink.transcript]
    assert entries[:2] == [
        (Role.ASSISTANT, GREETING),
        (Role.USER, "What are your opening hours?"),
    ]
    assert entries[-1] == (Role.ASSISTANT, FallbackConfig().goodbye)
    assert cloud.out.kinds()[-1] == "hangup"


async def test_cartesia_dropping_mid_reply_ends_the_call(cloud: CloudCall) -> None:
    cloud.oa.responder = lambda messages, tools: LONG_REPLY
    cloud.ca.drop_after_chunks = 30  # after the greeting, inside the reply
    reason, detail = await _reply_fails(cloud)

    assert reason is EndReason.PROVIDER_ERROR
    assert detail.startswith("cartesia:") and "connection lost" in detail
    entries = [(e.role, e.text) for e in cloud.sink.transcript]
    assert entries[:2] == [
        (Role.ASSISTANT, GREETING),
        (Role.USER, "What are your opening hours?"),
    ]
    assert cloud.out.kinds()[-1] == "hangup"


async def test_deepgram_dropping_with_no_fallback_ends_the_call_after_a_goodbye(
    cloud: CloudCall,
) -> None:
    cloud.dg.drop_after_s = 1.0
    caller = cloud.start()
    await until(lambda: len(cloud.sink.timelines) == 1)
    async with line_noise(caller):
        ended = await cloud.result()

    assert ended.reason is EndReason.PROVIDER_ERROR
    assert ended.detail.startswith("speech-to-text unavailable: deepgram:")
    assert "dropped" in ended.detail
    assert cloud.dg.streams[0].closed_by == "dropped"
    assert [e.text for e in cloud.sink.transcript] == [GREETING, FallbackConfig().goodbye]
    assert cloud.out.kinds()[-1] == "hangup"


async def test_cartesia_refusing_a_reply_ends_the_call(cloud: CloudCall) -> None:
    cloud.oa.responder = lambda messages, tools: "We open at nine."
    cloud.ca.error_when = lambda request: (
        "Voice not found" if "nine" in request["transcript"] else None
    )
    reason, detail = await _reply_fails(cloud)

    assert reason is EndReason.PROVIDER_ERROR
    assert detail == "cartesia: Voice not found"
    assert [e.text for e in cloud.sink.transcript][:2] == [GREETING, "What are your opening hours?"]
    assert cloud.out.kinds()[-1] == "hangup"


async def test_transfer_tool_hands_the_call_over_after_speaking(cloud: CloudCall) -> None:
    cloud.dg.script = ["Can I talk to a person?"]

    def responder(messages: list[dict[str, object]], tools: list[dict[str, object]]) -> object:
        return FakeReply("Connecting you now.", [FakeToolCall("transfer", {})])

    cloud.oa.responder = responder  # type: ignore[assignment]
    transfer = ToolConfig(
        "transfer", "Transfer", ToolKind.TRANSFER_CALL, transfer_to="+15550001111"
    )
    caller = cloud.start(tools=(transfer,))
    await until(lambda: len(cloud.sink.timelines) == 1)
    async with line_noise(caller):
        await caller.speak(500, then_silence_ms=0)
        ended = await cloud.result()

    assert ended.reason is EndReason.TRANSFERRED and ended.transfer_to == "+15550001111"
    assert cloud.out.log[-1] == ("transfer", "+15550001111")
    reply = cloud.sink.timelines[-1]
    ordered(reply, SPOKEN_MARKS)  # the line was heard before the transfer
    assert cloud.contexts()[-1].text == "Connecting you now. "
    assert len(cloud.oa.requests) == 1
