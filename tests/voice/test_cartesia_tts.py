"""CartesiaTTS driven through the cartesia SDK against the fake Cartesia WebSocket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.fakes import FakeCartesia, stray_tasks
from tests.fakes.audio import rms
from voice.config import TWILIO_FORMAT, AudioFormat, Encoding, TTSConfig
from voice.providers.base import ProviderError, TTSContext
from voice.providers.cartesia_tts import CartesiaTTS
from voice.providers.registry import build_tts

KEY = "sk_car_test_key"
VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"
WAIT = 10


@pytest.fixture
async def fake() -> AsyncIterator[FakeCartesia]:
    server = FakeCartesia(api_key=KEY)
    async with server:
        yield server
    assert await stray_tasks() == []


def make(url: str, key: str = KEY, **config: str) -> CartesiaTTS:
    return CartesiaTTS(
        TTSConfig(provider="cartesia", voice=VOICE, api_key=key, base_url=url, **config)
    )


async def collect(ctx: TTSContext) -> bytes:
    async with asyncio.timeout(WAIT):
        return b"".join([chunk async for chunk in ctx.audio()])


def as_sent(text: str) -> str:
    """The provider ends every push with a space, so Cartesia never runs clauses together."""
    return text if text.endswith(" ") else text + " "


def expected_bytes(fake: FakeCartesia, text: str, fmt: AudioFormat) -> int:
    chars = len(as_sent(text))
    return int(fmt.sample_rate * chars * fake.ms_per_char / 1000) * fmt.bytes_per_sample


async def test_registry_builds_it() -> None:
    assert isinstance(build_tts(TTSConfig(provider="cartesia", api_key=KEY)), CartesiaTTS)


async def test_reply_in_the_carriers_format(fake: FakeCartesia) -> None:
    async with make(fake.url).connect(TWILIO_FORMAT) as conn:
        ctx = conn.context()
        await ctx.push("Hello there. ")
        await ctx.push("How can I help?")
        await ctx.end_input()
        audio = await collect(ctx)

    assert len(audio) == expected_bytes(fake, "Hello there. How can I help?", TWILIO_FORMAT)
    assert rms(audio, TWILIO_FORMAT) > 1000  # a tone, not silence
    [record] = fake.contexts.values()
    assert record.transcripts == ["Hello there. ", "How can I help? ", ""]
    assert record.output_format == {
        "container": "raw",
        "encoding": "pcm_mulaw",
        "sample_rate": 8000,
    }
    assert record.model_id == "sonic-2"
    assert record.voice == {"mode": "id", "id": VOICE}
    assert record.language == "en"
    assert record.flushes == 2  # each push is flushed so synthesis starts at once
    assert record.done
    [connection] = fake.connections
    assert connection.headers["authorization"] == f"Bearer {KEY}"
    assert connection.headers["cartesia-version"]
    continues = [m["continue"] for m in connection.messages]
    assert continues == [True, True, False]


@pytest.mark.parametrize(
    ("fmt", "encoding"),
    [
        (AudioFormat(Encoding.ALAW, 8000), "pcm_alaw"),
        (AudioFormat(Encoding.PCM16, 16000), "pcm_s16le"),
    ],
)
async def test_other_formats(fake: FakeCartesia, fmt: AudioFormat, encoding: str) -> None:
    async with make(fake.url, model="sonic-3", language="fr-FR").connect(fmt) as conn:
        ctx = conn.context()
        await ctx.push("Bonjour.")
        await ctx.end_input()
        audio = await collect(ctx)
    assert len(audio) == expected_bytes(fake, "Bonjour.", fmt)
    assert rms(audio, fmt) > 1000
    [record] = fake.contexts.values()
    assert record.output_format["encoding"] == encoding
    assert record.output_format["sample_rate"] == fmt.sample_rate
    assert record.model_id == "sonic-3"
    assert record.language == "fr"


async def test_replies_share_one_connection(fake: FakeCartesia) -> None:
    async with make(fake.url).connect(TWILIO_FORMAT) as conn:
        for text in ("First reply.", "Second reply."):
            ctx = conn.context()
            await ctx.push(text)
            await ctx.end_input()
            assert len(await collect(ctx)) == expected_bytes(fake, text, TWILIO_FORMAT)
    assert len(fake.connections) == 1
    assert [r.text for r in fake.contexts.values()] == ["First reply. ", "Second reply. "]


async def test_audio_streams_while_text_is_still_coming(fake: FakeCartesia) -> None:
    async with make(fake.url).connect(TWILIO_FORMAT) as conn:
        ctx = conn.context()
        audio = ctx.audio()
        await ctx.push("The first sentence. ")
        async with asyncio.timeout(WAIT):
            first = await anext(audio)  # before any more text or end_input
        assert first
        await ctx.push("The second.")
        await ctx.end_input()
        async with asyncio.timeout(WAIT):
            rest = b"".join([chunk async for chunk in audio])
    total = expected_bytes(fake, "The first sentence. The second.", TWILIO_FORMAT)
    assert len(first) + len(rest) == total


async def test_cancel_mid_reply_ends_audio_and_stops_the_server(fake: FakeCartesia) -> None:
    fake.pause_after_chunks = 2  # the server holds the rest until told to resume
    async with make(fake.url).connect(TWILIO_FORMAT) as conn:
        ctx = conn.context()
        await ctx.push("A long answer that the caller is about to interrupt. ")
        chunks = []
        async with asyncio.timeout(WAIT):
            async for chunk in ctx.audio():
                chunks.append(chunk)
                if len(chunks) == 2:
                    await ctx.cancel()
        assert len(chunks) == 2  # audio() ended right after the cancel
        [record] = fake.contexts.values()
        async with asyncio.timeout(WAIT):
            while not record.cancelled:  # noqa: ASYNC110 - a fake's plain attribute
                await asyncio.sleep(0.01)
        fake.resume.set()
        # the connection is still good for the next reply
        ctx2 = conn.context()
        await ctx2.push("Sure.")
        await ctx2.end_input()
        assert len(await collect(ctx2)) == expected_bytes(fake, "Sure.", TWILIO_FORMAT)
    assert record.chunks == 2
    assert not record.done
    assert {"cancel": True, "context_id": record.context_id} in fake.connections[0].messages


async def test_cancel_and_empty_replies_end_audio(fake: FakeCartesia) -> None:
    async with make(fake.url).connect(TWILIO_FORMAT) as conn:
        untouched = conn.context()
        await untouched.cancel()
        assert await collect(untouched) == b""
        empty = conn.context()
        await empty.push("")
        await empty.end_input()
        assert await collect(empty) == b""
        late = conn.context()
        await late.push("Hi.")
        await late.end_input()
        await late.cancel()  # after end_input, before the audio was read
        assert await collect(late) == b""
    assert [r.text for r in fake.contexts.values()] == ["Hi. "]


async def test_server_error_message_is_a_provider_error(fake: FakeCartesia) -> None:
    fake.error_when = lambda request: "Voice not found" if "boom" in request["transcript"] else None
    async with make(fake.url).connect(TWILIO_FORMAT) as conn:
        ctx = conn.context()
        await ctx.push("boom")
        with pytest.raises(ProviderError, match="cartesia: Voice not found"):
            await collect(ctx)


async def test_wrong_key_is_an_auth_error(fake: FakeCartesia) -> None:
    with pytest.raises(ProviderError, match="authentication failed") as excinfo:
        async with make(fake.url, key="sk_car_wrong").connect(TWILIO_FORMAT):
            pass
    assert excinfo.value.provider == "cartesia"
    assert fake.connections == []


async def test_rejected_upgrade_is_a_provider_error(fake: FakeCartesia) -> None:
    fake.reject_status = 500
    with pytest.raises(ProviderError, match="HTTP 500"):
        async with make(fake.url).connect(TWILIO_FORMAT):
            pass


async def test_unsupported_format_is_refused() -> None:
    with pytest.raises(ProviderError, match="unsupported output format"):
        async with make("http://127.0.0.1:9").connect(AudioFormat(Encoding.PCM16, 11025)):
            pass


async def test_dropped_connection_fails_the_reply_then_reconnects(fake: FakeCartesia) -> None:
    fake.drop_after_chunks = 3
    async with make(fake.url).connect(TWILIO_FORMAT) as conn:
        ctx = conn.context()
        await ctx.push("This reply will be cut off by a network failure.")
        with pytest.raises(ProviderError, match="connection lost"):
            await collect(ctx)
        fake.drop_after_chunks = None
        ctx2 = conn.context()
        await ctx2.push("Back again.")
        await ctx2.end_input()
        assert len(await collect(ctx2)) == expected_bytes(fake, "Back again.", TWILIO_FORMAT)
    assert len(fake.connections) == 2


async def test_closing_mid_reply_ends_audio(fake: FakeCartesia) -> None:
    fake.pause_after_chunks = 1  # the server holds the reply after its first chunk
    async with make(fake.url).connect(TWILIO_FORMAT) as conn:
        ctx = conn.context()
        await ctx.push("Interrupted by a hang-up.")
        audio = ctx.audio()
        async with asyncio.timeout(WAIT):
            assert await anext(audio)
    # leaving the connection ended the reply's audio
    async with asyncio.timeout(WAIT):
        assert [chunk async for chunk in audio] == []
    fake.resume.set()
    await asyncio.wait_for(fake.connections[0].closed.wait(), WAIT)


async def test_overlapping_replies_are_kept_apart(fake: FakeCartesia) -> None:
    async with make(fake.url).connect(TWILIO_FORMAT) as conn:
        filler, answer = conn.context(), conn.context()
        await filler.push("One moment.")
        await answer.push("The answer is forty two, ")
        await answer.push("as you know.")
        await filler.end_input()
        await answer.end_input()
        filler_audio, answer_audio = await asyncio.gather(collect(filler), collect(answer))
    assert len(filler_audio) == expected_bytes(fake, "One moment.", TWILIO_FORMAT)
    text = "The answer is forty two, as you know. "
    assert len(answer_audio) == expected_bytes(fake, text, TWILIO_FORMAT)
    assert len(fake.connections) == 1


async def test_clauses_are_spaced_and_each_ends_with_an_empty_chunk(fake: FakeCartesia) -> None:
    async with make(fake.url).connect(TWILIO_FORMAT) as conn:
        ctx = conn.context()
        await ctx.push("Hello there.")  # the engine pushes stripped clauses
        await ctx.push("How can I help?")
        await ctx.push("Bye. ")
        await ctx.end_input()
        async with asyncio.timeout(WAIT):
            chunks = [chunk async for chunk in ctx.audio()]
    [record] = fake.contexts.values()
    assert record.text == "Hello there. How can I help? Bye. "
    # one b"" per flush_done, after exactly that push's audio
    bounds = [i for i, chunk in enumerate(chunks) if chunk == b""]
    assert len(bounds) == 3 and bounds[-1] == len(chunks) - 1
    pieces = [b"".join(chunks[a + 1 : b]) for a, b in zip([-1, *bounds], bounds, strict=False)]
    assert [len(p) for p in pieces] == [
        expected_bytes(fake, t, TWILIO_FORMAT) for t in ("Hello there.", "How can I help?", "Bye.")
    ]
