"""Self-tests of the fakes: the standalone runner and wire details the providers don't use."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import openai
from websockets.asyncio.client import connect

from tests.fakes import FakeCartesia, FakeDeepgram, FakeOpenAI, FakeReply, FakeToolCall
from tests.fakes.audio import silence, tone
from voice.config import TWILIO_FORMAT, AudioFormat, Encoding, TTSConfig
from voice.providers.base import STTEventKind
from voice.providers.cartesia_tts import CartesiaTTS
from voice.providers.deepgram_stt import DeepgramSTT

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20


async def test_standalone_runner_serves_all_three() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.run",
        "--deepgram-port=0",
        "--openai-port=0",
        "--cartesia-port=0",
        "--cartesia-key=sk_car_run",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    urls: dict[str, str] = {}
    try:
        async with asyncio.timeout(WAIT):
            while (line := (await proc.stdout.readline()).decode().strip()) != "READY":
                assert line, "runner exited before READY"
                name, _, url = line.partition("=")
                urls[name] = url
        assert set(urls) == {"DEEPGRAM_BASE_URL", "OPENAI_BASE_URL", "CARTESIA_BASE_URL"}
        assert urls["DEEPGRAM_BASE_URL"].startswith("ws://127.0.0.1:")
        assert urls["OPENAI_BASE_URL"].endswith("/v1")

        client = openai.AsyncOpenAI(base_url=urls["OPENAI_BASE_URL"], api_key="sk-test-openai-key")
        reply = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "ping"}]
        )
        assert reply.choices[0].message.content == "You said: ping"
        await client.close()

        tts = CartesiaTTS(
            TTSConfig(
                provider="cartesia",
                voice="v",
                api_key="sk_car_run",
                base_url=urls["CARTESIA_BASE_URL"],
            )
        )
        async with tts.connect(TWILIO_FORMAT) as conn:
            ctx = conn.context()
            await ctx.push("Hi.")
            await ctx.end_input()
            assert b"".join([c async for c in ctx.audio()])
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), WAIT)
    assert proc.returncode == 0


async def test_openai_non_streaming_tool_calls() -> None:
    fake = FakeOpenAI(api_key="k")
    fake.responder = lambda m, t: FakeReply(tool_calls=[FakeToolCall("f", {"a": 1}, id="c1")])
    async with fake as url:
        client = openai.AsyncOpenAI(base_url=url, api_key="k")
        reply = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
        await client.close()
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id == "c1"
    assert call.type == "function"
    assert json.loads(call.function.arguments) == {"a": 1}
    assert reply.usage is not None and reply.usage.total_tokens > 0


async def test_cartesia_rejects_a_bad_request_with_an_error_message() -> None:
    fake = FakeCartesia(api_key="k")
    async with fake as url:
        ws_url = url.replace("http://", "ws://") + "/tts/websocket"
        headers = {"Authorization": "Bearer k", "cartesia-version": "2026-08-14"}
        async with connect(ws_url, additional_headers=headers) as ws:
            await ws.send(
                json.dumps(
                    {
                        "context_id": "c1",
                        "model_id": "sonic-2",
                        "transcript": "hi",
                        "voice": {"mode": "id", "id": "v"},
                        "output_format": {
                            "container": "raw",
                            "encoding": "pcm_s16le",
                            "sample_rate": 12345,
                        },
                    }
                )
            )
            error = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    assert error["type"] == "error"
    assert error["context_id"] == "c1"
    assert error["status_code"] == 400
    assert "sample_rate" in error["message"]


async def test_deepgram_answers_an_unknown_message_with_an_error() -> None:
    fake = FakeDeepgram(api_key="k")
    async with fake as url:
        headers = {"Authorization": "Token k"}
        async with connect(
            url + "/v1/listen?encoding=mulaw&sample_rate=8000", additional_headers=headers
        ) as ws:
            await ws.send(json.dumps({"type": "Nonsense"}))
            error = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            await ws.send(json.dumps({"type": "CloseStream"}))
            metadata = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    assert error["type"] == "Error"
    assert metadata["type"] == "Metadata"
    assert fake.streams[0].controls == ["Nonsense", "CloseStream"]


async def test_deepgram_reassembles_odd_sized_linear16_messages() -> None:
    fmt = AudioFormat(Encoding.PCM16, 16000)
    audio = tone(0.5, fmt) + silence(0.5, fmt)
    fake = FakeDeepgram(script=["odd sizes"])
    async with fake:
        stt = DeepgramSTT(fake.stt_config())
        async with stt.session(fmt) as session:
            for i in range(0, len(audio), 33):  # splits samples across messages
                await session.send_audio(audio[i : i + 33])
            async with asyncio.timeout(WAIT):
                async for event in session.events():
                    if event.kind is STTEventKind.FINAL:
                        break
    assert event.text == "odd sizes"
    assert fake.streams[0].audio_bytes == len(audio)
    assert fake.streams[0].audio_seconds == 1.0
