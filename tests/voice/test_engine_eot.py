"""Issue 16, item 2, on whole calls: the end-of-turn model (Smart Turn v3, the weights the
``pipecat-ai`` wheel ships) and the Silero VAD, in the engine on the real cloud provider
modules against the fake servers. The caller is eSpeak NG over mu-law 8 kHz; the fake
Deepgram transcribes each voiced segment as the next line of its script and endpoints
after 300 ms, so a fragment followed by a pause gets a final of its own, as it would.
Ordering and presence only, never wall-clock durations."""

from __future__ import annotations

import asyncio

import pytest

from tests.espeak_fresh import fresh_espeak
from tests.voice.cloud import CloudCall
from tests.voice.doubles import silence_frames
from tests.voice.harness import until
from voice.config import TWILIO_FORMAT, EndOfTurn, TurnConfig, VadKind
from voice.events import EndReason, Role

FRAME = TWILIO_FORMAT.bytes_for_ms(20)
FRAGMENT = "I was wondering if you could"  # no transcript cue: today's rules answer it
REST = "help me with my order."
COMPLETE = "What are your opening hours on Saturday?"


async def spoken(text: str) -> list[bytes]:
    """``text`` in eSpeak's voice, as 20 ms mu-law frames: the same audio whatever ran
    before in this process (tests/espeak_fresh.py), since the model's verdict on a clip
    can flip with eSpeak's small differences between renderings."""
    audio = await asyncio.to_thread(fresh_espeak, text, TWILIO_FORMAT)
    audio += b"\xff" * (-len(audio) % FRAME)
    return [audio[i : i + FRAME] for i in range(0, len(audio), FRAME)]


def turn(end_of_turn: EndOfTurn, vad: VadKind = VadKind.WEBRTC) -> TurnConfig:
    return TurnConfig(end_of_turn=end_of_turn, vad=vad)  # the product's default waits


def user_lines(call: CloudCall) -> list[str]:
    return [e.text for e in call.sink.transcript if e.role is Role.USER]


async def trailing_off(cloud: CloudCall, config: TurnConfig) -> list[str]:
    """The caller trails off, pauses 0.9 s, and finishes the sentence; returns the turns
    the agent answered (the user lines of the transcript)."""
    cloud.dg.script = [FRAGMENT, REST]
    fragment, rest = await spoken(FRAGMENT), await spoken(REST)
    caller = cloud.start(turn=config)
    await until(lambda: len(cloud.sink.timelines) == 1)
    await caller.play(fragment + silence_frames(900) + rest + silence_frames(2000))
    await until(lambda: len(cloud.sink.timelines) >= 2)
    ended = await cloud.hang_up()
    assert ended.reason is EndReason.CALLER_HANGUP
    return user_lines(cloud)


@pytest.mark.parametrize("vad", [VadKind.WEBRTC, VadKind.SILERO])
async def test_with_the_model_a_trailing_off_caller_is_not_answered_mid_thought(
    cloud: CloudCall, vad: VadKind
) -> None:
    lines = await trailing_off(cloud, turn(EndOfTurn.SMART_TURN, vad))
    assert lines == [f"{FRAGMENT} {REST}"]
    # one reply, to the whole sentence (a preemptive reply prepared on the fragment, if
    # any, was discarded unheard)
    assert len(cloud.sink.timelines) == 2
    assert cloud.oa.requests[-1]["messages"][-1]["content"] == f"{FRAGMENT} {REST}"
    spoken = [e for e in cloud.sink.transcript if e.role is Role.ASSISTANT]
    assert len(spoken) == 2  # the greeting and that reply


async def test_with_todays_rules_the_same_caller_is_cut_off(cloud: CloudCall) -> None:
    # the contrast that shows the model made the difference above
    lines = await trailing_off(cloud, turn(EndOfTurn.RULES))
    assert lines[0] == FRAGMENT


@pytest.mark.parametrize("vad", [VadKind.WEBRTC, VadKind.SILERO])
async def test_with_the_model_a_complete_sentence_is_answered(
    cloud: CloudCall, vad: VadKind
) -> None:
    cloud.dg.script = [COMPLETE]
    caller = cloud.start(turn=turn(EndOfTurn.SMART_TURN, vad))
    await until(lambda: len(cloud.sink.timelines) == 1)
    await caller.play(await spoken(COMPLETE) + silence_frames(1000))
    await until(lambda: len(cloud.sink.timelines) == 2)
    ended = await cloud.hang_up()

    assert user_lines(cloud) == [COMPLETE]
    reply = cloud.sink.timelines[1]
    assert reply.end_of_turn_ms is not None and reply.user_speech_end_ms is not None
    assert reply.end_of_turn_ms > reply.user_speech_end_ms
    assert ended.reason is EndReason.CALLER_HANGUP
