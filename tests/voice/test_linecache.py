"""Fixed lines are synthesized once per voice and text, then replayed from the cache."""

from __future__ import annotations

import dataclasses

import pytest

from tests.voice.doubles import FakeSTT, FakeTTS
from tests.voice.harness import make_config, start, until
from voice.config import TWILIO_FORMAT, AudioFormat, Encoding, TTSConfig
from voice.events import Role
from voice.linecache import MemoryLineCache, line_key

pytestmark = pytest.mark.looptime
GREETING = "Hello, how can I help?"


async def _greet(cache: MemoryLineCache, speaker: FakeTTS, **config: object) -> list[str]:
    call = await start(make_config(**config), tts=speaker, lines=cache)
    await until(lambda: len(call.sink.timelines) == 1)
    await call.hang_up()
    return [e.text for e in call.sink.transcript if e.role is Role.ASSISTANT]


async def test_the_greeting_is_synthesized_once_then_replayed_before_tts_connects() -> None:
    cache = MemoryLineCache()
    first = FakeTTS()
    assert await _greet(cache, first) == [GREETING]
    assert first.pushed == [GREETING]
    assert len(cache) == 1

    slow = FakeTTS(connect_delay=2.0)  # a cold TTS connection
    call = await start(make_config(), tts=slow, lines=cache)
    await until(lambda: len(call.sink.timelines) == 1)
    await call.hang_up()
    greeting = call.sink.timelines[0]
    assert slow.pushed == []  # nothing synthesized
    # the first audio went out at once, not after the 2 s connection
    assert greeting.first_audio_sent_ms is not None and greeting.first_audio_sent_ms < 100
    assert [e.text for e in call.sink.transcript] == [GREETING]
    assert greeting.playback_finished_ms is not None  # marks and echoes as for live audio


async def test_another_voice_or_text_is_another_line() -> None:
    cache = MemoryLineCache()
    await _greet(cache, FakeTTS())
    other_voice = dataclasses.replace(make_config().tts, voice="other")
    tts = FakeTTS()
    await _greet(cache, tts, tts=other_voice)
    assert tts.pushed == [GREETING]
    tts = FakeTTS()
    await _greet(cache, tts, first_message="Welcome!")
    assert tts.pushed == ["Welcome!"]
    assert len(cache) == 3


async def test_an_interrupted_line_is_not_cached() -> None:
    cache = MemoryLineCache()
    call = await start(
        make_config(first_message="Hello there, " * 20),
        stt=FakeSTT(["Stop"]),
        tts=FakeTTS(ms_per_char=20),
        lines=cache,
    )
    await until(lambda: "audio" in call.out.kinds())
    await call.caller.speak(600)  # barge in over the greeting
    await until(lambda: len(call.sink.timelines) >= 1)
    await call.hang_up()
    assert call.sink.timelines[0].interrupted_at_ms is not None
    assert len(cache) == 0


def test_the_memory_cache_is_bounded_least_recently_used_first() -> None:
    cache = MemoryLineCache(max_bytes=100)
    cache.put_now("a", [b"x" * 40])
    cache.put_now("b", [b"x" * 40])
    assert cache.get_now("a") is not None  # a is now the most recent
    cache.put_now("c", [b"x" * 40])
    assert cache.get_now("b") is None and cache.get_now("a") is not None
    assert cache.size_bytes == 80
    cache.put_now("huge", [b"x" * 101])  # larger than the whole cache: not kept
    assert cache.get_now("huge") is None


def test_the_key_is_the_sound_not_the_secret() -> None:
    tts = TTSConfig("cartesia", voice="v", api_key="secret-1")
    same = dataclasses.replace(tts, api_key="secret-2")
    assert line_key(tts, TWILIO_FORMAT, "Hi") == line_key(same, TWILIO_FORMAT, "Hi")
    assert "secret" not in line_key(tts, TWILIO_FORMAT, "Hi")
    pcm = AudioFormat(Encoding.PCM16, 16000)
    assert line_key(tts, TWILIO_FORMAT, "Hi") != line_key(tts, pcm, "Hi")
    assert line_key(tts, TWILIO_FORMAT, "Hi") != line_key(tts, TWILIO_FORMAT, "Hi!")
