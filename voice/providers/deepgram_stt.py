"""Deepgram live transcription through the official ``deepgram-sdk`` (7.x).

One WebSocket per call. The carrier's G.711 goes to Deepgram as is (no transcoding);
a keep-alive runs while no audio flows (Deepgram closes a stream after ~10 s without
audio or a message); ``finalize()`` sends ``Finalize``; leaving the session sends
``CloseStream``, lets Deepgram deliver the last results, and closes within
:attr:`DeepgramSTT.close_timeout_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment
from deepgram.core.api_error import ApiError
from deepgram.listen.v1.socket_client import AsyncV1SocketClient
from deepgram.listen.v1.types import (
    ListenV1Error,
    ListenV1Results,
    ListenV1SpeechStarted,
    ListenV1UtteranceEnd,
)
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake

from voice.config import AudioFormat, Encoding, STTConfig
from voice.providers.base import ProviderError, STTEvent, STTEventKind, owned_tasks
from voice.providers.registry import Kind, spec
from voice.tls import httpx_tls

log = logging.getLogger(__name__)

SPEC = spec(Kind.STT, "deepgram")
DEFAULT_BASE_URL = SPEC.default_base_url
_ENCODINGS = {Encoding.MULAW: "mulaw", Encoding.ALAW: "alaw", Encoding.PCM16: "linear16"}


def _environment(base_url: str) -> DeepgramClientEnvironment:
    """The SDK's environment for one origin: ``production`` is the WebSocket base."""
    url = urlsplit(base_url.rstrip("/") or DEFAULT_BASE_URL)
    secure = url.scheme in ("wss", "https")
    ws = f"{'wss' if secure else 'ws'}://{url.netloc}{url.path}"
    http = f"{'https' if secure else 'http'}://{url.netloc}{url.path}"
    return DeepgramClientEnvironment(base=http, production=ws, agent=ws, agent_rest=http)


class DeepgramSTT:
    name = "deepgram"

    def __init__(
        self,
        config: STTConfig,
        *,
        endpointing_ms: int = 300,
        utterance_end_ms: int = 1000,
        keepalive_interval_s: float = 3.0,
        connect_timeout_s: float = 5.0,
        send_timeout_s: float = 5.0,
        close_timeout_s: float = 2.0,
    ) -> None:
        self.config = config
        self.endpointing_ms = endpointing_ms
        self.utterance_end_ms = utterance_end_ms
        self.keepalive_interval_s = keepalive_interval_s
        self.connect_timeout_s = connect_timeout_s
        self.send_timeout_s = send_timeout_s
        self.close_timeout_s = close_timeout_s

    def input_format(self, carrier: AudioFormat) -> AudioFormat:
        # Deepgram takes mulaw/alaw and linear16 at any rate: never transcode.
        return AudioFormat(carrier.encoding, carrier.sample_rate)

    @contextlib.asynccontextmanager
    async def session(self, fmt: AudioFormat) -> AsyncIterator[_DeepgramSession]:
        if fmt.channels != 1:
            raise ProviderError(self.name, "only mono audio is supported")
        env = _environment(self.config.base_url)
        # The SDK's default httpx client would load the CA bundle on every call (voice/tls.py).
        http = httpx.AsyncClient(timeout=60, follow_redirects=True, verify=httpx_tls())
        client = AsyncDeepgramClient(
            api_key=self.config.api_key, environment=env, httpx_client=http, timeout=60
        )
        stack = contextlib.AsyncExitStack()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                conn = await stack.enter_async_context(
                    client.listen.v1.connect(
                        model=self.config.model or SPEC.default_model,
                        language=self.config.language or "en-US",
                        encoding=_ENCODINGS[fmt.encoding],
                        sample_rate=fmt.sample_rate,
                        channels=1,
                        interim_results="true",
                        endpointing=self.endpointing_ms,
                        utterance_end_ms=self.utterance_end_ms,
                        vad_events="true",
                        smart_format="true",
                        punctuate="true",
                    )
                )
        except ApiError as exc:
            await stack.aclose()
            if exc.status_code in (401, 403):
                raise ProviderError(
                    self.name, f"authentication failed (HTTP {exc.status_code}): check the API key"
                ) from exc
            raise ProviderError(
                self.name, f"connection refused with HTTP {exc.status_code}"
            ) from exc
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            await stack.aclose()
            detail = (
                "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            )
            raise ProviderError(
                self.name, f"cannot connect to {env.production}/v1/listen: {detail}"
            ) from exc
        session = _DeepgramSession(self, conn)
        # The reader and keep-alive live in a task group this context owns.
        async with owned_tasks() as tasks:
            session.start(tasks)
            try:
                yield session
            finally:
                await session.close()
                try:
                    # the SDK's exit runs the WebSocket closing handshake (up to 10 s)
                    async with asyncio.timeout(self.close_timeout_s):
                        await stack.aclose()
                except TimeoutError:
                    session.abort()


class _DeepgramSession:
    """The STTSession for one Deepgram stream."""

    def __init__(self, provider: DeepgramSTT, conn: AsyncV1SocketClient) -> None:
        self._provider = provider
        self._conn = conn
        self._events: asyncio.Queue[STTEvent | ProviderError | None] = asyncio.Queue()
        self._last_sent = 0.0
        self._reader: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._closed = False
        self._error: ProviderError | None = None

    def start(self, tasks: asyncio.TaskGroup) -> None:
        self._last_sent = asyncio.get_running_loop().time()
        self._reader = tasks.create_task(self._read(), name="deepgram-reader")
        self._keepalive = tasks.create_task(self._keep_alive(), name="deepgram-keepalive")

    # ----------------------------------------------------------------- STTSession

    async def send_audio(self, audio: bytes) -> None:
        await self._send(self._conn.send_media(audio))

    async def finalize(self) -> None:
        await self._send(self._conn.send_finalize())

    async def events(self) -> AsyncIterator[STTEvent]:
        while True:
            item = await self._events.get()
            if item is None:
                self._events.put_nowait(None)  # later readers see the end too
                return
            if isinstance(item, ProviderError):
                self._events.put_nowait(item)
                raise item
            yield item

    # ----------------------------------------------------------------- internals

    async def _send(self, op: Any) -> None:
        if self._error is not None:
            op.close()
            raise self._error
        try:
            async with asyncio.timeout(self._provider.send_timeout_s):
                await op
        except ConnectionClosed as exc:
            raise self._fail(f"connection closed: {_describe(exc)}") from exc
        except TimeoutError as exc:
            raise self._fail("sending timed out") from exc
        self._last_sent = asyncio.get_running_loop().time()

    def _fail(self, message: str) -> ProviderError:
        if self._error is None:
            self._error = ProviderError(self._provider.name, message)
        return self._error

    async def _keep_alive(self) -> None:
        interval = self._provider.keepalive_interval_s
        loop = asyncio.get_running_loop()
        while True:
            idle = loop.time() - self._last_sent
            if idle < interval:
                await asyncio.sleep(interval - idle)
                continue
            try:
                await self._send(self._conn.send_keep_alive())
            except ProviderError:
                return  # the reader reports the failure

    async def _read(self) -> None:
        try:
            async for message in self._conn:
                event = self._map(message)
                if isinstance(event, ProviderError):
                    self._events.put_nowait(event)
                    return
                if event is not None:
                    self._events.put_nowait(event)
        except ConnectionClosedOK:
            pass
        except ConnectionClosed as exc:
            if not self._closed:
                self._events.put_nowait(self._fail(f"stream closed: {_describe(exc)}"))
                return
        except Exception as exc:
            log.exception("deepgram reader failed")
            self._events.put_nowait(self._fail(f"reading the stream failed: {exc!r}"))
            return
        if not self._closed:
            # Deepgram ended the stream on its own (e.g. no audio for ~10 s)
            close = getattr(getattr(self._conn, "_websocket", None), "close_reason", "") or ""
            self._events.put_nowait(self._fail(f"stream closed by the server {close}".strip()))
            return
        self._events.put_nowait(None)

    def _map(self, message: Any) -> STTEvent | ProviderError | None:
        if isinstance(message, ListenV1Results):
            alternatives = message.channel.alternatives
            best = alternatives[0] if alternatives else None
            text = best.transcript if best is not None else ""
            confidence = best.confidence if best is not None else 0.0
            if message.is_final:
                return STTEvent(
                    STTEventKind.FINAL,
                    text=text,
                    speech_final=bool(message.speech_final),
                    confidence=confidence,
                )
            if not text:
                return None
            return STTEvent(STTEventKind.INTERIM, text=text, confidence=confidence)
        if isinstance(message, ListenV1SpeechStarted):
            return STTEvent(STTEventKind.SPEECH_STARTED)
        if isinstance(message, ListenV1UtteranceEnd):
            return STTEvent(STTEventKind.UTTERANCE_END)
        if isinstance(message, ListenV1Error):
            return self._fail(f"{message.variant}: {message.description}")
        return None  # Metadata, Configure acks, binary

    async def close(self) -> None:
        """CloseStream, let the last results arrive, then stop; bounded in time."""
        self._closed = True
        tasks = [t for t in (self._keepalive, self._reader) if t is not None]
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self._error is None:
            try:
                async with asyncio.timeout(self._provider.send_timeout_s):
                    await self._conn.send_close_stream()
            except (ConnectionClosed, TimeoutError):
                pass
        if self._reader is not None and not self._reader.done():
            try:
                async with asyncio.timeout(self._provider.close_timeout_s):
                    await asyncio.shield(self._reader)
            except TimeoutError:
                self._reader.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._events.put_nowait(None)

    def abort(self) -> None:
        """Drop the TCP connection when the closing handshake does not finish in time."""
        transport = getattr(getattr(self._conn, "_websocket", None), "transport", None)
        if transport is not None:
            transport.abort()


def _describe(exc: ConnectionClosed) -> str:
    frame = exc.rcvd
    if frame is None:
        return "no close frame (connection dropped)"
    return f"code {frame.code} {frame.reason}".strip()
