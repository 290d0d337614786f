"""A fake Cartesia streaming TTS server (``wss://api.cartesia.ai/tts/websocket``).

Speaks the real wire protocol: ``Authorization: Bearer KEY`` and ``cartesia-version``
headers (or the browser-style ``api_key`` / ``cartesia_version`` query parameters),
generation requests multiplexed by ``context_id`` with ``continue`` / ``flush``
semantics, ``{"cancel": true, "context_id": ..}``, and ``chunk`` / ``flush_done`` /
``done`` / ``error`` answers.

"Speech" is a deterministic 440 Hz tone in the requested ``output_format`` whose length
is proportional to the text (:attr:`FakeCartesia.ms_per_char`), sent in chunks of
:attr:`FakeCartesia.chunk_ms`.

Scripting::

    fake = FakeCartesia(api_key="sk_car_test")
    fake.first_byte_delay_s = 0.15      # per context, before its first chunk
    fake.pause_after_chunks = 3         # hold each context after 3 chunks until resume
    fake.resume.set()
    fake.drop_after_chunks = 5          # abort the connection after 5 chunks (no close)
    fake.error_when = lambda req: "bad voice" if req["voice"]["id"] == "x" else None
    async with fake as url:             # http://127.0.0.1:P   (CARTESIA_BASE_URL)
        ...
    fake.contexts[ctx_id].transcripts, .cancelled, .done, .audio_bytes
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fakes._base import WebSocketFakeServer, cancel_and_wait, spawn
from voice.audio import encode
from voice.config import Encoding, TTSConfig

SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
ENCODINGS = {
    "pcm_s16le": Encoding.PCM16,
    "pcm_mulaw": Encoding.MULAW,
    "pcm_alaw": Encoding.ALAW,
    "pcm_f32le": None,
}
TONE_HZ = 440.0
TONE_AMPLITUDE = 6000


@dataclass
class ContextRecord:
    context_id: str
    model_id: str = ""
    voice: dict[str, Any] = field(default_factory=dict)
    output_format: dict[str, Any] = field(default_factory=dict)
    language: str | None = None
    transcripts: list[str] = field(default_factory=list)
    flushes: int = 0
    chunks: int = 0
    audio_bytes: int = 0
    cancelled: bool = False
    done: bool = False
    error: str = ""

    @property
    def text(self) -> str:
        return "".join(self.transcripts)


@dataclass
class ConnectionRecord:
    headers: dict[str, str]
    query: dict[str, str]
    messages: list[dict[str, Any]] = field(default_factory=list)
    chunks: int = 0
    close_code: int | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class FakeCartesia(WebSocketFakeServer):
    def __init__(
        self,
        *,
        api_key: str = "sk_car_test",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.api_key = api_key
        self.ms_per_char = 60
        self.chunk_ms = 40
        self.first_byte_delay_s = 0.0
        # wall-clock pause between chunks (real Cartesia outruns real time; so does this)
        self.chunk_interval_s = 0.0
        # failure injection
        self.reject_status: int | None = None
        self.drop_after_chunks: int | None = None
        self.error_when: Callable[[dict[str, Any]], str | None] | None = None
        # hold every context after this many chunks until ``resume`` is set
        self.pause_after_chunks: int | None = None
        self.resume = asyncio.Event()
        # records
        self.connections: list[ConnectionRecord] = []
        self.contexts: dict[str, ContextRecord] = {}

    @property
    def websocket_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    def tts_config(self, **overrides: Any) -> TTSConfig:
        """A TTSConfig that points the real provider at this fake."""
        fields = {
            "provider": "cartesia",
            "voice": "fake-voice",
            "api_key": self.api_key,
            "base_url": self.url,
        }
        return TTSConfig(**{**fields, **overrides})

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path.rstrip("/") != "/tts/websocket":
            return _error_response(HTTPStatus.NOT_FOUND, "Not Found")
        if self.reject_status is not None:
            return _error_response(HTTPStatus(self.reject_status), "Injected failure")
        query = dict(parse_qsl(url.query))
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer":
            key = query.get("api_key", query.get("access_token", ""))
        if key != self.api_key:
            return _error_response(HTTPStatus.UNAUTHORIZED, "Invalid API key")
        if not (request.headers.get("cartesia-version") or query.get("cartesia_version")):
            return _error_response(HTTPStatus.BAD_REQUEST, "Missing cartesia-version header")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        record = ConnectionRecord(
            headers={k.lower(): v for k, v in ws.request.headers.raw_items()},
            query=dict(parse_qsl(urlsplit(ws.request.path).query)),
        )
        self.connections.append(record)
        conn = _Connection(self, ws, record)
        try:
            await conn.run()
        finally:
            await conn.close()
            record.close_code = ws.close_code
            record.closed.set()


def _error_response(status: HTTPStatus, message: str) -> Response:
    body = json.dumps({"error": message, "message": message}).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)


@dataclass
class _Context:
    record: ContextRecord
    inbox: asyncio.Queue[tuple[str, bool] | None] = field(default_factory=asyncio.Queue)
    input_closed: bool = False
    task: asyncio.Task[None] | None = None
    phase: float = 0.0


class _Connection:
    def __init__(self, fake: FakeCartesia, ws: ServerConnection, record: ConnectionRecord):
        self.fake = fake
        self.ws = ws
        self.record = record
        self.contexts: dict[str, _Context] = {}

    async def run(self) -> None:
        try:
            async for message in self.ws:
                try:
                    request = json.loads(message)
                    if not isinstance(request, dict):
                        raise ValueError("not an object")
                except ValueError:
                    await self._error(None, "Invalid JSON message")
                    continue
                self.record.messages.append(request)
                await self._on_request(request)
        except ConnectionClosed:
            pass

    async def close(self) -> None:
        tasks = {c.task for c in self.contexts.values() if c.task is not None}
        await cancel_and_wait(tasks)

    async def _on_request(self, request: dict[str, Any]) -> None:
        context_id = request.get("context_id")
        if request.get("cancel"):
            ctx = self.contexts.get(str(context_id))
            if ctx is not None:
                ctx.record.cancelled = True
                if ctx.task is not None:
                    ctx.task.cancel()
            return
        if not isinstance(context_id, str) or not context_id:
            await self._error(None, "context_id is required")
            return
        problem = self._validate(request)
        if problem is None and self.fake.error_when is not None:
            problem = self.fake.error_when(request)
        if problem is not None:
            await self._error(context_id, problem)
            return
        ctx = self.contexts.get(context_id)
        if ctx is None:
            record = ContextRecord(
                context_id=context_id,
                model_id=request["model_id"],
                voice=request["voice"],
                output_format=request["output_format"],
                language=request.get("language"),
            )
            self.fake.contexts[context_id] = record
            ctx = self.contexts[context_id] = _Context(record)
            ctx.task = spawn(self.fake._tasks, self._synthesize(ctx))
        elif ctx.input_closed or ctx.record.cancelled:
            await self._error(context_id, f"Context {context_id} is closed to new inputs")
            return
        transcript: str = request["transcript"]
        ctx.record.transcripts.append(transcript)
        ctx.inbox.put_nowait((transcript, bool(request.get("flush"))))
        if not request.get("continue", False):
            ctx.input_closed = True
            ctx.inbox.put_nowait(None)

    def _validate(self, request: dict[str, Any]) -> str | None:
        if not isinstance(request.get("transcript"), str):
            return "transcript must be a string"
        if not request.get("model_id"):
            return "model_id is required"
        voice = request.get("voice")
        if not isinstance(voice, dict) or voice.get("mode") != "id" or not voice.get("id"):
            return "voice must be {'mode': 'id', 'id': ...}"
        fmt = request.get("output_format")
        if not isinstance(fmt, dict) or fmt.get("container") != "raw":
            return "output_format.container must be 'raw'"
        if fmt.get("encoding") not in ENCODINGS:
            return f"unsupported output_format.encoding {fmt.get('encoding')!r}"
        if fmt.get("sample_rate") not in SAMPLE_RATES:
            return f"unsupported output_format.sample_rate {fmt.get('sample_rate')!r}"
        return None

    async def _error(self, context_id: str | None, message: str) -> None:
        if context_id is not None and context_id in self.fake.contexts:
            self.fake.contexts[context_id].error = message
        body: dict[str, Any] = {
            "type": "error",
            "done": True,
            "status_code": 400,
            "title": "Invalid request",
            "message": message,
            "error_code": "invalid_request",
        }
        if context_id is not None:
            body["context_id"] = context_id
        await self._send(body)

    async def _send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps(message))

    async def _synthesize(self, ctx: _Context) -> None:
        rec = ctx.record
        fmt = rec.output_format
        rate: int = fmt["sample_rate"]
        encoding = ENCODINGS[fmt["encoding"]]
        first = True
        while True:
            item = await ctx.inbox.get()
            if item is None:
                rec.done = True
                await self._send(
                    {"type": "done", "context_id": rec.context_id, "done": True, "status_code": 206}
                )
                return
            text, flush = item
            flush_id = rec.flushes + 1
            total = int(rate * len(text) * self.fake.ms_per_char / 1000)
            per_chunk = max(rate * self.fake.chunk_ms // 1000, 1)
            for offset in range(0, total, per_chunk):
                if first:
                    first = False
                    if self.fake.first_byte_delay_s:
                        await asyncio.sleep(self.fake.first_byte_delay_s)
                if rec.chunks == self.fake.pause_after_chunks:
                    await self.fake.resume.wait()
                n = min(per_chunk, total - offset)
                data = self._tone(ctx, n, rate, encoding)
                rec.chunks += 1
                rec.audio_bytes += len(data)
                await self._send(
                    {
                        "type": "chunk",
                        "context_id": rec.context_id,
                        "data": base64.b64encode(data).decode(),
                        "done": False,
                        "status_code": 206,
                        "step_time": 1.0,
                        "flush_id": flush_id,
                    }
                )
                self.record.chunks += 1
                if self.record.chunks == self.fake.drop_after_chunks:
                    self.ws.transport.abort()
                    return
                await asyncio.sleep(self.fake.chunk_interval_s)
            if flush:
                rec.flushes += 1
                await self._send(
                    {
                        "type": "flush_done",
                        "context_id": rec.context_id,
                        "done": False,
                        "flush_done": True,
                        "flush_id": flush_id,
                        "status_code": 206,
                    }
                )

    def _tone(self, ctx: _Context, n: int, rate: int, encoding: Encoding | None) -> bytes:
        t = np.arange(n) / rate
        wave = np.sin(2 * np.pi * TONE_HZ * t + ctx.phase)
        ctx.phase = (ctx.phase + 2 * np.pi * TONE_HZ * n / rate) % (2 * np.pi)
        if encoding is None:  # pcm_f32le
            return (wave * TONE_AMPLITUDE / 32768).astype("<f4").tobytes()
        return encode((wave * TONE_AMPLITUDE).astype(np.int16), encoding)
