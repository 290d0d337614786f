"""DeepgramSTT driven through deepgram-sdk against the fake Deepgram live server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from tests.fakes import FakeDeepgram, stray_tasks
from tests.fakes.audio import frames, silence, tone
from voice.config import TWILIO_FORMAT, AudioFormat, Encoding, STTConfig
from voice.providers.base import ProviderError, STTEvent, STTEventKind, STTSession
from voice.providers.deepgram_stt import DeepgramSTT
from voice.providers.registry import build_stt

KEY = "dg-test-key"
SCRIPT = ["I need to book a table.", "For two people please."]
WAIT = 10  # generous bound on waits for the fake; never a timing assertion


@pytest.fixture
async def fake() -> AsyncIterator[FakeDeepgram]:
    server = FakeDeepgram(api_key=KEY, script=SCRIPT)
    async with server:
        yield server
    assert await stray_tasks() == []


def provider(url: str, key: str = KEY, **kwargs: float) -> DeepgramSTT:
    return DeepgramSTT(STTConfig(provider="deepgram", api_key=key, base_url=url), **kwargs)


async def speak(session: STTSession, fmt: AudioFormat, voiced_s: float, silent_s: float) -> None:
    for frame in frames(tone(voiced_s, fmt) + silence(silent_s, fmt), fmt):
        await session.send_audio(frame)


async def collect_until(session: STTSession, done: Callable[[STTEvent], bool]) -> list[STTEvent]:
    events: list[STTEvent] = []
    async with asyncio.timeout(WAIT):
        async for event in session.events():
            events.append(event)
            if done(event):
                break
    return events


async def until(predicate: Callable[[], bool]) -> None:
    """Poll a fake's records (plain attributes, no event to wait on)."""
    async with asyncio.timeout(WAIT):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def kinds(events: list[STTEvent]) -> list[STTEventKind]:
    return [e.kind for e in events]


async def test_registry_builds_it() -> None:
    stt = build_stt(STTConfig(provider="deepgram", api_key=KEY))
    assert isinstance(stt, DeepgramSTT)


@pytest.mark.parametrize(
    "carrier",
    [TWILIO_FORMAT, AudioFormat(Encoding.ALAW, 8000), AudioFormat(Encoding.PCM16, 16000)],
)
async def test_input_format_is_the_carriers(carrier: AudioFormat) -> None:
    assert provider("ws://unused").input_format(carrier) == carrier


async def test_utterance_is_transcribed_with_endpointing_and_utterance_end(
    fake: FakeDeepgram,
) -> None:
    stt = provider(fake.url)
    async with stt.session(TWILIO_FORMAT) as session:
        await speak(session, TWILIO_FORMAT, voiced_s=1.0, silent_s=1.5)
        events = await collect_until(session, lambda e: e.kind is STTEventKind.UTTERANCE_END)

    assert kinds(events)[0] is STTEventKind.SPEECH_STARTED
    assert STTEventKind.INTERIM in kinds(events)
    finals = [e for e in events if e.kind is STTEventKind.FINAL]
    assert [f.text for f in finals] == [SCRIPT[0]]
    assert finals[0].speech_final
    assert finals[0].confidence > 0
    assert kinds(events).index(STTEventKind.FINAL) < kinds(events).index(STTEventKind.UTTERANCE_END)

    record = fake.streams[0]
    assert record.params == {
        "model": "nova-3",
        "language": "en-US",
        "encoding": "mulaw",
        "sample_rate": "8000",
        "channels": "1",
        "interim_results": "true",
        "endpointing": "300",
        "utterance_end_ms": "1000",
        "vad_events": "true",
        "smart_format": "true",
        "punctuate": "true",
    }
    assert record.authorization == f"Token {KEY}"
    assert record.audio_bytes == 8000 * 2.5
    await asyncio.wait_for(record.closed.wait(), WAIT)
    assert record.controls[-1] == "CloseStream"
    assert record.closed_by == "client"
    assert record.close_code == 1000


async def test_linear16_at_16k(fake: FakeDeepgram) -> None:
    fmt = AudioFormat(Encoding.PCM16, 16000)
    async with provider(fake.url).session(fmt) as session:
        await speak(session, fmt, voiced_s=0.6, silent_s=0.5)
        events = await collect_until(session, lambda e: e.kind is STTEventKind.FINAL)
    assert events[-1].text == SCRIPT[0]
    assert fake.streams[0].params["encoding"] == "linear16"
    assert fake.streams[0].params["sample_rate"] == "16000"


async def test_two_utterances_get_successive_lines(fake: FakeDeepgram) -> None:
    async with provider(fake.url).session(TWILIO_FORMAT) as session:
        await speak(session, TWILIO_FORMAT, voiced_s=0.5, silent_s=1.2)
        await speak(session, TWILIO_FORMAT, voiced_s=0.5, silent_s=1.2)
        finals: list[str] = []
        async with asyncio.timeout(WAIT):
            async for event in session.events():
                if event.kind is STTEventKind.FINAL:
                    finals.append(event.text)
                    if len(finals) == 2:
                        break
    assert finals == SCRIPT


async def test_finalize_flushes_the_pending_segment(fake: FakeDeepgram) -> None:
    async with provider(fake.url).session(TWILIO_FORMAT) as session:
        await speak(session, TWILIO_FORMAT, voiced_s=0.6, silent_s=0.1)
        await session.finalize()
        events = await collect_until(session, lambda e: e.kind is STTEventKind.FINAL)
    final = events[-1]
    assert final.text == SCRIPT[0]
    assert not final.speech_final
    assert "Finalize" in fake.streams[0].controls
    assert fake.streams[0].finals[0]["from_finalize"] is True


async def test_close_stream_delivers_the_last_results(fake: FakeDeepgram) -> None:
    events: list[STTEvent] = []

    async def consume(session: STTSession) -> None:
        async for event in session.events():
            events.append(event)

    async with provider(fake.url).session(TWILIO_FORMAT) as session:
        consumer = asyncio.create_task(consume(session))
        await speak(session, TWILIO_FORMAT, voiced_s=0.6, silent_s=0.05)
    # the session is closed: events() ended on its own
    await asyncio.wait_for(consumer, WAIT)
    assert [e.text for e in events if e.kind is STTEventKind.FINAL] == [SCRIPT[0]]
    assert fake.streams[0].sent[-1]["type"] == "Metadata"


async def test_keepalive_holds_a_silent_stream_open(fake: FakeDeepgram) -> None:
    fake.idle_timeout_s = 0.5
    stt = provider(fake.url, keepalive_interval_s=0.02)
    async with stt.session(TWILIO_FORMAT) as session:
        record = fake.streams[0]
        # past the idle timeout, kept alive only by KeepAlive messages
        await until(lambda: record.controls.count("KeepAlive") >= 30)
        assert not record.closed.is_set()
        await speak(session, TWILIO_FORMAT, voiced_s=0.5, silent_s=0.6)
        events = await collect_until(session, lambda e: e.kind is STTEventKind.FINAL)
    assert events[-1].text == SCRIPT[0]
    assert record.closed_by == "client"


async def test_no_keepalive_while_audio_flows(fake: FakeDeepgram) -> None:
    stt = provider(fake.url, keepalive_interval_s=60)
    async with stt.session(TWILIO_FORMAT) as session:
        await speak(session, TWILIO_FORMAT, voiced_s=0.5, silent_s=0.6)
        await collect_until(session, lambda e: e.kind is STTEventKind.FINAL)
    assert "KeepAlive" not in fake.streams[0].controls


async def test_server_idle_timeout_is_a_provider_error(fake: FakeDeepgram) -> None:
    fake.idle_timeout_s = 0.1
    stt = provider(fake.url, keepalive_interval_s=60)
    with pytest.raises(ProviderError) as excinfo:
        async with stt.session(TWILIO_FORMAT) as session:
            await collect_until(session, lambda e: False)
    assert excinfo.value.provider == "deepgram"
    assert "1011" in excinfo.value.message
    assert fake.streams[0].closed_by == "idle-timeout"


async def test_wrong_key_is_an_auth_error(fake: FakeDeepgram) -> None:
    with pytest.raises(ProviderError, match="authentication failed"):
        async with provider(fake.url, key="wrong").session(TWILIO_FORMAT):
            pass
    assert fake.streams == []


async def test_rejected_upgrade_is_a_provider_error(fake: FakeDeepgram) -> None:
    fake.reject_status = 503
    with pytest.raises(ProviderError, match="HTTP 503"):
        async with provider(fake.url).session(TWILIO_FORMAT):
            pass


async def test_unreachable_server_is_a_provider_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ProviderError, match="cannot connect"):
        async with provider(f"ws://127.0.0.1:{port}").session(TWILIO_FORMAT):
            pass
    assert await stray_tasks() == []


async def test_dropped_connection_fails_events_and_sends(fake: FakeDeepgram) -> None:
    fake.drop_after_s = 0.05
    async with provider(fake.url).session(TWILIO_FORMAT) as session:
        with pytest.raises(ProviderError, match="deepgram: stream closed"):
            await collect_until(session, lambda e: False)
        with pytest.raises(ProviderError):
            await session.send_audio(silence(0.02, TWILIO_FORMAT))
    assert fake.streams[0].closed_by == "dropped"


async def test_final_latency_is_configurable(fake: FakeDeepgram) -> None:
    fake.final_delay_s = 0.05
    async with provider(fake.url).session(TWILIO_FORMAT) as session:
        await speak(session, TWILIO_FORMAT, voiced_s=0.5, silent_s=1.5)
        events = await collect_until(session, lambda e: e.kind is STTEventKind.UTTERANCE_END)
    # a delayed final still comes before the utterance end that follows it
    assert kinds(events).index(STTEventKind.FINAL) < kinds(events).index(STTEventKind.UTTERANCE_END)


async def test_exit_is_bounded_when_the_server_ignores_close_stream(fake: FakeDeepgram) -> None:
    fake.ignore_close_stream = True
    stt = provider(fake.url, close_timeout_s=0.1)
    async with stt.session(TWILIO_FORMAT) as session:
        await speak(session, TWILIO_FORMAT, voiced_s=0.3, silent_s=0.1)
    record = fake.streams[0]
    await asyncio.wait_for(record.closed.wait(), WAIT)
    assert record.controls == ["CloseStream"]
    assert record.close_code == 1000  # we closed the socket ourselves, cleanly
