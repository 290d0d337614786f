from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.espeak_fresh import fresh_espeak
from tests.voice.doubles import silence_frames, speech_frames
from voice import silero
from voice.audio import decode
from voice.config import AudioFormat, Encoding
from voice.vad import VadEventKind, VoiceActivity


def pcm(frames: list[bytes]) -> bytes:
    return b"".join(decode(f, Encoding.MULAW).tobytes() for f in frames)


def test_speech_start_and_end_with_hysteresis() -> None:
    vad = VoiceActivity(8000, start_ms=60, end_ms=300)
    events = vad.process(pcm(silence_frames(400)))
    assert events == [] and not vad.speaking
    events = vad.process(pcm(speech_frames(600)))
    assert [e.kind for e in events] == [VadEventKind.SPEECH_START]
    assert events[0].at_ms == pytest.approx(400, abs=40)
    assert vad.speaking and vad.speech_ms() >= 500
    events = vad.process(pcm(silence_frames(600)))
    assert [e.kind for e in events] == [VadEventKind.SPEECH_END]
    # the end is where the voice stopped (webrtcvad adds a little hangover), not 300 ms later
    assert 1000 <= events[0].at_ms < 1300
    assert not vad.speaking and vad.speech_ms() == 0


def test_speech_length_stops_growing_when_the_voice_stops() -> None:
    # the silence before SPEECH_END is not speech: a cough must not grow into a barge-in
    vad = VoiceActivity(8000, start_ms=120, end_ms=300)
    vad.process(pcm(speech_frames(200)))
    assert vad.speaking
    voiced = vad.speech_ms()
    assert 100 <= voiced <= 260
    vad.process(pcm(silence_frames(200)))
    assert vad.speaking  # still inside the end hangover
    assert vad.speech_ms() <= voiced + 150  # webrtcvad's own hangover (~120 ms), not 200


def test_a_click_does_not_start_speech_and_a_short_pause_does_not_end_it() -> None:
    # webrtcvad keeps saying "voiced" for a few frames after a sound (its hangover)
    vad = VoiceActivity(8000, start_ms=140, end_ms=300)
    assert vad.process(pcm(speech_frames(20))) == []
    assert vad.process(pcm(silence_frames(300))) == []
    vad.process(pcm(speech_frames(300)))
    assert vad.speaking
    assert vad.process(pcm(silence_frames(100) + speech_frames(200))) == []
    assert vad.speaking


def test_any_chunk_size_and_16k() -> None:
    vad = VoiceActivity(16000, frame_ms=10)
    samples = np.repeat(np.frombuffer(pcm(speech_frames(500)), dtype="<i2"), 2)
    data = samples.tobytes()
    events = []
    for i in range(0, len(data), 333):  # odd sizes, split mid-sample
        events += vad.process(data[i : i + 333])
    assert [e.kind for e in events] == [VadEventKind.SPEECH_START]
    assert vad.processed_ms == 500


def test_rejects_unsupported_formats() -> None:
    with pytest.raises(ValueError, match="sample rate"):
        VoiceActivity(11025)
    with pytest.raises(ValueError, match="frame"):
        VoiceActivity(8000, frame_ms=25)


def test_the_audible_end_removes_webrtcvads_hangover() -> None:
    vad = VoiceActivity(8000, start_ms=60, end_ms=200)
    events = vad.process(pcm(silence_frames(400) + speech_frames(1000) + silence_frames(600)))
    start, end = events
    assert start.audible_end_ms is None
    # the burst ends at 1400 ms of audio: webrtcvad still heard voice after it
    assert end.at_ms > 1400
    assert end.audible_end_ms == pytest.approx(1400, abs=5)


def test_the_audible_end_over_background_noise_and_a_quiet_tail() -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 60, 8000 * 3).astype(np.int16)  # a hissy line, ~36 dB
    loud = np.frombuffer(pcm(speech_frames(800)), dtype="<i2")
    quiet = (np.frombuffer(pcm(speech_frames(120, seed=3)), dtype="<i2") // 20).astype(np.int16)
    audio = noise.copy()
    audio[4000 : 4000 + loud.size] += loud  # speech from 500 ms
    tail_at = 4000 + loud.size
    audio[tail_at : tail_at + quiet.size] += quiet  # a fricative-quiet tail, -26 dB
    vad = VoiceActivity(8000, start_ms=60, end_ms=200)
    events = vad.process(audio.tobytes())

    # (webrtcvad takes the first 80 ms of hiss for speech while it adapts)
    end = [e for e in events if e.kind is VadEventKind.SPEECH_END][-1]
    # the tail counts as sound (it is well above the hiss), the hiss after it does not
    assert end.audible_end_ms == pytest.approx((tail_at + quiet.size) / 8, abs=10)
    assert end.audible_end_ms <= end.at_ms


# -- Silero (turn.vad = "silero") ---------------------------------------------------------


async def espeak_pcm(text: str) -> bytes:
    """``text`` in eSpeak's voice, PCM16 at 8 kHz."""
    fmt = AudioFormat(Encoding.PCM16, 8000)
    return await asyncio.to_thread(fresh_espeak, text, fmt)  # order-independent


async def test_silero_finds_a_spoken_sentence_in_32_ms_windows() -> None:
    voice = await espeak_pcm("What are your opening hours on Saturday?")
    vad = VoiceActivity(8000, silero=silero.shared_model())
    quiet = bytes(8000 * 2 // 2)  # 0.5 s
    events = vad.process(quiet) + vad.process(voice) + vad.process(quiet + quiet)
    assert [e.kind for e in events] == [VadEventKind.SPEECH_START, VadEventKind.SPEECH_END]
    assert vad.processed_ms % silero.WINDOW_MS == 0
    start, end = events[0].at_ms, events[1].at_ms
    voice_ms = len(voice) / 16
    assert 400 <= start < 500 + voice_ms / 2
    assert 500 + voice_ms / 2 < end <= 500 + voice_ms + 200


def test_each_silero_stream_keeps_its_own_state() -> None:
    # one session per process, state per call: a stream that heard speech does not leak
    # it into a new one
    session = silero.shared_model()
    busy, fresh = VoiceActivity(8000, silero=session), VoiceActivity(8000, silero=session)
    busy.process(pcm(speech_frames(600)))
    assert fresh.process(pcm(silence_frames(600))) == [] and not fresh.speaking
    assert silero.shared_model() is session


def test_silero_rates() -> None:
    with pytest.raises(ValueError, match="Silero"):
        VoiceActivity(32000, silero=silero.shared_model())
