"""Cartesia streaming TTS over one WebSocket per call, via the official ``cartesia`` SDK (4.x).

Each assistant reply is one Cartesia *context* on that socket: text goes in with
``continue`` semantics as the LLM produces it (each push flushed, so synthesis starts at
once), audio comes back in the carrier's own format (``pcm_mulaw`` at 8 kHz for Twilio:
no transcoding). ``cancel()`` tells Cartesia to stop and ends ``audio()`` at once.

Cartesia concatenates a context's transcripts as given ("Hello." + "How" reads
"Hello.How"), and the engine pushes stripped clauses, so each push gets a trailing space.
Each push is flushed; its ``flush_done`` becomes the empty chunk of the TTSContext
contract, so the engine can mark the end of each clause's audio on the carrier.

The SDK opens the socket (``tts.websocket_connect``: URL, auth, version header) and
carries every message (``send``, ``recv_bytes``: its low-level, documented interface).
Its context helper (``AsyncWebSocketContext``) is not used: its reader task builds a
pydantic model per audio chunk (~65 of them for a ten-word reply, all before the first
one can be played) and its ``push`` runs the SDK's type-driven transform on every
request; together a third of the CPU of a turn start (docs/benchmarks.md, "Density").
Here one reader per socket parses each message as JSON and hands it to its reply by
``context_id``; requests are the documented JSON the helper would send, written to the
SDK's socket as text. Two SDK behaviours shape the rest (cartesia 4.2):

* nothing tells a context that the socket died, so a watcher on the socket fails the
  live contexts when it closes;
* its reconnect-on-send does not reconnect (the manager hands back its cached, dead
  connection), so a send on a dead socket raises ``ConnectionClosed``. After a drop we
  open a fresh connection ourselves for the next reply.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from cartesia import AsyncCartesia, DefaultAsyncHttpxClient
from cartesia.resources.tts import AsyncTTSResourceConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from voice.config import AudioFormat, Encoding, TTSConfig
from voice.providers.base import ProviderError, owned_tasks
from voice.providers.registry import Kind, spec
from voice.tls import httpx_tls

log = logging.getLogger(__name__)

SPEC = spec(Kind.TTS, "cartesia")
DEFAULT_BASE_URL = SPEC.default_base_url
DEFAULT_MODEL = SPEC.default_model
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
_ENCODINGS = {Encoding.MULAW: "pcm_mulaw", Encoding.ALAW: "pcm_alaw", Encoding.PCM16: "pcm_s16le"}


def _websocket_origin(base_url: str) -> str:
    if base_url.startswith("https://"):
        return "wss://" + base_url.removeprefix("https://")
    if base_url.startswith("http://"):
        return "ws://" + base_url.removeprefix("http://")
    return base_url


class CartesiaTTS:
    name = "cartesia"

    def __init__(
        self,
        config: TTSConfig,
        *,
        connect_timeout_s: float = 5.0,
        send_timeout_s: float = 5.0,
        close_timeout_s: float = 2.0,
    ) -> None:
        self.config = config
        self.connect_timeout_s = connect_timeout_s
        self.send_timeout_s = send_timeout_s
        self.close_timeout_s = close_timeout_s

    @contextlib.asynccontextmanager
    async def connect(self, fmt: AudioFormat) -> AsyncIterator[_CartesiaConnection]:
        if fmt.channels != 1 or fmt.sample_rate not in SAMPLE_RATES:
            raise ProviderError(self.name, f"unsupported output format {fmt}")
        base_url = (self.config.base_url or DEFAULT_BASE_URL).rstrip("/")
        client = AsyncCartesia(
            api_key=self.config.api_key,
            base_url=base_url,
            websocket_base_url=_websocket_origin(base_url),
            max_retries=0,
            # the default client would load the CA bundle on every call (voice/tls.py)
            http_client=DefaultAsyncHttpxClient(verify=httpx_tls()),
        )
        # The socket watcher and each reply's pump live in a task group this context owns.
        async with client, owned_tasks() as tasks:
            connection = _CartesiaConnection(self, client, fmt, tasks)
            await connection.open()
            try:
                yield connection
            finally:
                await connection.close()


class _CartesiaConnection:
    """The TTSConnection: one socket, re-opened for the next reply if it drops."""

    def __init__(
        self,
        provider: CartesiaTTS,
        client: AsyncCartesia,
        fmt: AudioFormat,
        tasks: asyncio.TaskGroup,
    ) -> None:
        self.provider = provider
        self._client = client
        self.tasks = tasks
        self.output_format: dict[str, Any] = {
            "container": "raw",
            "encoding": _ENCODINGS[fmt.encoding],
            "sample_rate": fmt.sample_rate,
        }
        config = provider.config
        # what every request of a reply carries (the SDK's context helper sends the same)
        self.request_base: dict[str, Any] = {
            "model_id": config.model or DEFAULT_MODEL,
            "voice": {"mode": "id", "id": config.voice},
            "output_format": self.output_format,
            "language": (config.language or "en").split("-")[0].lower(),
        }
        if config.speed != 1.0:
            self.request_base["generation_config"] = {"speed": config.speed}
        self._stack: contextlib.AsyncExitStack | None = None
        self._conn: AsyncTTSResourceConnection | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lost: ProviderError | None = None
        self._closing = False
        self._lock = asyncio.Lock()
        self.live: dict[str, _CartesiaContext] = {}  # by context_id

    def context(self) -> _CartesiaContext:
        return _CartesiaContext(self)

    async def open(self) -> None:
        stack = contextlib.AsyncExitStack()
        try:
            async with asyncio.timeout(self.provider.connect_timeout_s):
                conn = await stack.enter_async_context(
                    # no permessage-deflate: base64 audio barely compresses, and inflating
                    # every chunk costs CPU and a zlib window per call
                    self._client.tts.websocket_connect(
                        websocket_connection_options={"compression": None}
                    )
                )
        except InvalidStatus as exc:
            await stack.aclose()
            status = exc.response.status_code
            if status in (401, 403):
                message = f"authentication failed (HTTP {status}): check the API key"
            else:
                message = f"connection refused with HTTP {status}"
            raise ProviderError(self.provider.name, message) from exc
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            await stack.aclose()
            detail = "timed out" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
            raise ProviderError(self.provider.name, f"cannot connect: {detail}") from exc
        self._stack, self._conn, self._lost = stack, conn, None
        self._watcher = self.tasks.create_task(self._watch(conn), name="cartesia-watch")
        self._reader = self.tasks.create_task(self._read(conn), name="cartesia-read")

    async def sdk_connection(self) -> AsyncTTSResourceConnection:
        async with self._lock:
            if self._conn is None or self._lost is not None:
                log.info("cartesia: reconnecting after %s", self._lost)
                await self._release()
                await self.open()
            assert self._conn is not None
            return self._conn

    async def _watch(self, conn: AsyncTTSResourceConnection) -> None:
        # The SDK exposes no "closed" signal; its socket is a websockets ClientConnection.
        ws = getattr(conn, "_connection", None)
        if ws is None:
            return
        await ws.wait_closed()
        if self._closing:
            return
        reason = f"code {ws.close_code} {ws.close_reason or ''}".strip()
        self._lost = ProviderError(self.provider.name, f"connection lost ({reason})")
        for ctx in list(self.live.values()):
            ctx.fail(self._lost)

    async def _read(self, conn: AsyncTTSResourceConnection) -> None:
        """Every message of the socket to its reply (by ``context_id``); messages of a
        reply that is over (cancelled, failed) are dropped."""
        try:
            while True:
                message = orjson.loads(await conn.recv_bytes())
                ctx = self.live.get(message.get("context_id") or "")
                if ctx is not None:
                    ctx.deliver(message)
        except ConnectionClosed:
            return  # the watcher fails the live replies
        except Exception as exc:
            # a message we cannot read: the socket cannot be trusted for the next reply
            self._lost = ProviderError(self.provider.name, f"receiving failed: {exc!r}")
            for ctx in list(self.live.values()):
                ctx.fail(self._lost)

    async def send(self, request: dict[str, Any]) -> None:
        """One request (already the wire JSON) on the SDK's socket. The SDK's own ``send``
        would run its type-driven transform over it first, the largest CPU cost left
        in a reply's requests; it is the fallback should the socket move."""
        conn = await self.sdk_connection()
        ws = getattr(conn, "_connection", None)
        if ws is None:
            await conn.send(request)  # type: ignore[arg-type]
        else:
            await ws.send(orjson.dumps(request).decode())

    async def _release(self) -> None:
        watcher, reader, stack, conn = self._watcher, self._reader, self._stack, self._conn
        self._watcher = self._reader = self._stack = self._conn = None
        for task in (watcher, reader):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if stack is None:
            return
        try:
            async with asyncio.timeout(self.provider.close_timeout_s):
                await stack.aclose()
        except TimeoutError:
            transport = getattr(getattr(conn, "_connection", None), "transport", None)
            if transport is not None:
                transport.abort()
        except ConnectionClosed:
            pass

    async def close(self) -> None:
        self._closing = True
        for ctx in list(self.live.values()):
            await ctx.stop()
        await self._release()


class _CartesiaContext:
    """The TTSContext: one reply on the shared socket."""

    def __init__(self, owner: _CartesiaConnection) -> None:
        self._owner = owner
        self._id: str | None = None  # the Cartesia context, once the first text is sent
        self._audio: asyncio.Queue[bytes | ProviderError | None] = asyncio.Queue()
        self._input_ended = False
        self._finished = False  # audio() has (or will have) its end marker

    # ----------------------------------------------------------------- TTSContext

    async def push(self, text: str) -> None:
        if self._finished or not text:
            return
        if self._input_ended:
            raise ValueError("push() after end_input()")
        if self._id is None:
            await self._owner.sdk_connection()  # re-opened here if it dropped
            if self._finished:  # cancelled while the connection was being (re)opened
                await self.stop()
                return
            self._start()
        if not text[-1].isspace():
            text += " "
        await self._send({"transcript": text, "continue": True, "flush": True})

    async def end_input(self) -> None:
        if self._finished or self._input_ended:
            return
        self._input_ended = True
        if self._id is None:
            self._end(None)  # nothing was said
            return
        await self._send({"transcript": "", "continue": False})

    async def audio(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._audio.get()
            if item is None or isinstance(item, ProviderError):
                self._audio.put_nowait(item)  # keep the end visible to a second reader
                if item is None:
                    return
                raise item
            yield item

    async def cancel(self) -> None:
        if self._finished:
            return
        context_id = self._id
        await self.stop()
        if context_id is not None:
            # tell Cartesia to stop generating; the reply is already over for us
            with contextlib.suppress(ConnectionClosed, TimeoutError, ProviderError):
                async with asyncio.timeout(self._owner.provider.send_timeout_s):
                    await self._owner.send({"context_id": context_id, "cancel": True})

    # ----------------------------------------------------------------- internals

    def _start(self) -> None:
        self._id = str(uuid.uuid4())
        self._owner.live[self._id] = self

    def deliver(self, message: dict[str, Any]) -> None:
        """A message of this reply, from the socket's reader."""
        kind = message.get("type")
        if kind == "chunk":
            data = message.get("data")
            if data:
                try:
                    self._audio.put_nowait(base64.b64decode(data))
                except (binascii.Error, TypeError) as exc:
                    self._end(ProviderError(self._owner.provider.name, f"bad audio: {exc!r}"))
        elif kind == "flush_done":
            self._audio.put_nowait(b"")  # all audio for one push()
        elif kind == "done":
            self._end(None)
        elif kind == "error":
            text = message.get("message") or message.get("title")
            self._end(ProviderError(self._owner.provider.name, text or "synthesis failed"))

    async def _send(self, request: dict[str, Any]) -> None:
        assert self._id is not None
        owner = self._owner
        try:
            async with asyncio.timeout(owner.provider.send_timeout_s):
                await owner.send({"context_id": self._id, **owner.request_base, **request})
        except (ConnectionClosed, TimeoutError) as exc:
            error = ProviderError(owner.provider.name, f"sending failed: {exc!r}")
            self.fail(error)
            raise error from exc

    def _end(self, item: ProviderError | None) -> None:
        if not self._finished:
            self._finished = True
            self._audio.put_nowait(item)
        self._forget()

    def _forget(self) -> None:
        if self._id is not None and self._owner.live.get(self._id) is self:
            del self._owner.live[self._id]

    def fail(self, error: ProviderError) -> None:
        """The socket died under this reply."""
        self._end(error)

    async def stop(self) -> None:
        """End audio() now, dropping whatever was buffered."""
        while not self._audio.empty():
            self._audio.get_nowait()
        self._finished = True
        self._audio.put_nowait(None)
        self._forget()
