"""Local eSpeak NG synthesis: real speech audio, in the asked format, streamed by clause."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from voice.audio import decode
from voice.config import TWILIO_FORMAT, AudioFormat, Encoding, TTSConfig
from voice.providers.base import ProviderError, TTSContext
from voice.providers.espeak_tts import CHUNK_MS, words_per_minute
from voice.providers.registry import build_tts

pytestmark = pytest.mark.slow

PCM16K = AudioFormat(Encoding.PCM16, 16000)
SHORT = "Hello there."
LONG = (
    "Thanks for calling the Glassbox demo line. I can answer questions about your order, "
    "book an appointment, or connect you with a person."
)
HANG_GUARD_S = 10  # only so a broken provider fails instead of hanging the suite


async def speak(*clauses: str, fmt: AudioFormat = TWILIO_FORMAT, speed: float = 1.0) -> list[bytes]:
    async with build_tts(TTSConfig(provider="espeak", speed=speed)).connect(fmt) as conn:
        ctx = conn.context()
        for clause in clauses:
            await ctx.push(clause)
        await ctx.end_input()
        return await asyncio.wait_for(drain(ctx), HANG_GUARD_S)


async def drain(ctx: TTSContext) -> list[bytes]:
    return [chunk async for chunk in ctx.audio()]


def seconds(chunks: list[bytes], fmt: AudioFormat = TWILIO_FORMAT) -> float:
    return sum(len(c) for c in chunks) / fmt.bytes_per_sample / fmt.sample_rate


def rms(chunks: list[bytes], fmt: AudioFormat = TWILIO_FORMAT) -> float:
    samples = decode(b"".join(chunks), fmt.encoding).astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))


async def test_speaks_real_telephone_audio_in_small_chunks() -> None:
    short = await speak(SHORT)
    long = await speak(LONG)

    assert 0.4 < seconds(short) < 3
    assert seconds(long) > 3 * seconds(short)  # duration grows with the text
    assert rms(long) > 1000  # speech, not silence (digital silence is 0)
    assert max(len(c) for c in long) == TWILIO_FORMAT.bytes_for_ms(CHUNK_MS)
    assert len(long) > 50


async def test_pcm16_output_is_sample_aligned() -> None:
    chunks = await speak(SHORT, LONG, fmt=PCM16K)

    assert all(len(c) % 2 == 0 for c in chunks)
    assert rms(chunks, PCM16K) > 1000
    assert seconds(chunks, PCM16K) == pytest.approx(seconds(await speak(SHORT, LONG)), abs=0.01)


async def test_first_clause_is_heard_before_the_reply_is_complete() -> None:
    async with build_tts(TTSConfig(provider="espeak")).connect(TWILIO_FORMAT) as conn:
        ctx = conn.context()
        audio = ctx.audio()
        await ctx.push("Sure.")
        first = await asyncio.wait_for(anext(audio), HANG_GUARD_S)  # no end_input yet
        await ctx.push("Let me look that up for you.")
        await ctx.end_input()
        rest = await asyncio.wait_for(drain_iter(audio), HANG_GUARD_S)

    assert first
    assert seconds([first, *rest]) > seconds(await speak("Sure."))


async def drain_iter(audio: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in audio]


async def test_cancel_stops_the_reply() -> None:
    full = seconds(await speak(*[LONG] * 5))
    async with build_tts(TTSConfig(provider="espeak")).connect(TWILIO_FORMAT) as conn:
        ctx = conn.context()
        audio = ctx.audio()
        for _ in range(5):
            await ctx.push(LONG)
        first = await asyncio.wait_for(anext(audio), HANG_GUARD_S)
        await ctx.cancel()
        await ctx.push("This comes too late.")
        after = await asyncio.wait_for(drain_iter(audio), HANG_GUARD_S)

    assert first and after == []
    assert seconds([first]) < full


async def test_closing_the_connection_ends_a_reply_in_progress() -> None:
    async with build_tts(TTSConfig(provider="espeak")).connect(TWILIO_FORMAT) as conn:
        ctx = conn.context()
        audio = ctx.audio()
        await ctx.push(LONG)
        await asyncio.wait_for(anext(audio), HANG_GUARD_S)
    # closing waited for the reply's task: nothing of the connection is left running
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "espeak-context"]
    after = await asyncio.wait_for(drain_iter(audio), HANG_GUARD_S)  # ends, no end_input

    assert after == []


async def test_speed_maps_to_words_per_minute() -> None:
    slow = seconds(await speak(LONG, speed=0.75))
    fast = seconds(await speak(LONG, speed=1.5))

    assert slow > 1.5 * fast
    assert words_per_minute(1.0) == 175
    assert words_per_minute(100.0) == 450


async def test_concurrent_replies_are_not_mixed() -> None:
    alone = [seconds(await speak(text)) for text in (SHORT, LONG)]

    together = await asyncio.gather(speak(SHORT), speak(LONG), speak(SHORT))

    # eSpeak is not sample-exact from one run to the next (a few samples differ), so compare
    # lengths: interleaved or lost audio would be off by whole blocks of 60 ms.
    expected = [alone[0], alone[1], alone[0]]
    assert [seconds(c) for c in together] == pytest.approx(expected, abs=0.01)


async def test_a_reply_with_no_text_is_empty() -> None:
    assert await speak() == []
    assert await speak("  ") == []


async def test_unknown_voice_fails_at_connect() -> None:
    tts = build_tts(TTSConfig(provider="espeak", voice="no-such-voice"))
    with pytest.raises(ProviderError, match="unknown voice"):
        async with tts.connect(TWILIO_FORMAT):
            pass


async def test_each_clause_ends_with_an_empty_chunk() -> None:
    chunks = await speak("Sure.", "  ", "Let me look that up for you.")

    bounds = [i for i, chunk in enumerate(chunks) if chunk == b""]
    assert len(bounds) == 2  # one per spoken clause; blank text says nothing
    assert bounds[-1] == len(chunks) - 1
    first = chunks[: bounds[0]]
    assert seconds(first) == pytest.approx(seconds(await speak("Sure.")), abs=0.01)
