"""A fake Deepgram live transcription server (``wss://api.deepgram.com/v1/listen``).

Speaks the real wire protocol (see docs in ``/work/shared/PROTOCOLS.md``): query
parameters on the upgrade request, ``Authorization: Token KEY``, binary audio frames in,
JSON ``Results`` / ``SpeechStarted`` / ``UtteranceEnd`` / ``Metadata`` out, text control
messages ``KeepAlive`` / ``Finalize`` / ``CloseStream``.

Instead of recognising speech it runs an energy detector over the decoded audio: each
voiced segment is "transcribed" as the next line of :attr:`FakeDeepgram.script`. All
timing follows the *audio clock* (seconds of audio received), exactly like the real
service, so a test can push a second of silence in one go and get the endpointing final
at once, without sleeping.

Scripting::

    fake = FakeDeepgram(api_key="dg-key", script=["hello there", "book a table"])
    fake.final_delay_s = 0.2        # extra latency before each final (wall clock)
    fake.reject_status = 401        # refuse the next upgrades
    fake.drop_after_s = 1.0         # abort connections (no close frame) after 1 s
    fake.ignore_close_stream = True # never answer CloseStream
    async with fake as url:         # ws://127.0.0.1:PORT  (DEEPGRAM_BASE_URL)
        ...
    rec = fake.streams[0]           # what that connection received
    rec.audio_bytes, rec.controls, rec.params, rec.close_code
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fakes._base import WebSocketFakeServer, spawn
from voice.audio import decode
from voice.config import Encoding, STTConfig

DEFAULT_SCRIPT = (
    "Hello, I'd like some help please.",
    "Can you tell me more about that?",
    "Okay, that sounds good.",
    "Thank you, goodbye.",
)

_ENCODINGS = {"linear16": Encoding.PCM16, "mulaw": Encoding.MULAW, "alaw": Encoding.ALAW}
_MODEL_UUID = "1dbdfb4d-85b2-4659-c376-3ef5aa2dd6d2"


@dataclass
class StreamRecord:
    """What one ``/v1/listen`` connection sent and how it ended."""

    params: dict[str, str]
    authorization: str
    request_id: str
    audio_bytes: int = 0
    audio_seconds: float = 0.0
    controls: list[str] = field(default_factory=list)  # "KeepAlive", "Finalize", ...
    sent: list[dict[str, Any]] = field(default_factory=list)  # every JSON message we sent
    close_code: int | None = None
    closed_by: str = ""  # "client", "server", "idle-timeout", "dropped"
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def finals(self) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("type") == "Results" and m.get("is_final")]


class FakeDeepgram(WebSocketFakeServer):
    scheme = "ws"

    def __init__(
        self,
        *,
        api_key: str = "test-deepgram-key",
        script: Sequence[str] = DEFAULT_SCRIPT,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.api_key = api_key
        # utterances, in order, one per voiced segment; each connection starts at the top
        # and wraps around at the end
        self.script: list[str] = list(script)
        # detector: a 10 ms frame is voiced when its RMS (int16 scale) reaches this
        self.energy_threshold = 500.0
        # an interim Results every this many seconds of speech (when interim_results=true)
        self.interim_interval_s = 0.25
        # extra wall-clock latency before each final Results (and what follows it)
        self.final_delay_s = 0.0
        # close the stream after this many wall-clock seconds without audio or a message
        self.idle_timeout_s = 10.0
        # failure injection: refuse upgrades with this HTTP status (None = accept)
        self.reject_status: int | None = None
        # failure injection: abort each connection (no close frame) after this long
        self.drop_after_s: float | None = None
        # failure injection: take no notice of CloseStream (the client must close itself)
        self.ignore_close_stream = False
        self.streams: list[StreamRecord] = []

    def stt_config(self, **overrides: str) -> STTConfig:
        """An STTConfig that points the real provider at this fake."""
        fields = {"provider": "deepgram", "api_key": self.api_key, "base_url": self.url}
        return STTConfig(**{**fields, **overrides})

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path.rstrip("/") != "/v1/listen":
            return _error_response(HTTPStatus.NOT_FOUND, "NOT_FOUND", "Not found.")
        if self.reject_status is not None:
            return _error_response(
                HTTPStatus(self.reject_status), "INTERNAL_ERROR", "Injected failure."
            )
        auth = request.headers.get("Authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() not in ("token", "bearer") or key != self.api_key:
            return _error_response(
                HTTPStatus.UNAUTHORIZED,
                "INVALID_AUTH",
                "Invalid credentials.",
            )
        params = dict(parse_qsl(urlsplit(request.path).query))
        if params.get("encoding", "linear16") not in _ENCODINGS:
            return _error_response(
                HTTPStatus.BAD_REQUEST, "UNSUPPORTED_ENCODING", "Unsupported encoding."
            )
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        record = StreamRecord(
            params=dict(parse_qsl(urlsplit(ws.request.path).query)),
            authorization=ws.request.headers.get("Authorization", ""),
            request_id=str(uuid.uuid4()),
        )
        self.streams.append(record)
        stream = _Stream(self, ws, record)
        dropper = (
            spawn(self._tasks, stream.drop_after(self.drop_after_s))
            if self.drop_after_s is not None
            else None
        )
        try:
            await stream.run()
        finally:
            if dropper is not None:
                dropper.cancel()
            record.close_code = ws.close_code
            record.closed.set()


def _error_response(status: HTTPStatus, code: str, message: str) -> Response:
    body = json.dumps(
        {"err_code": code, "err_msg": message, "request_id": str(uuid.uuid4())}
    ).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)


class _Stream:
    """One live transcription stream: audio clock, detector, script cursor, sender."""

    def __init__(self, fake: FakeDeepgram, ws: ServerConnection, record: StreamRecord) -> None:
        self.fake = fake
        self.ws = ws
        self.record = record
        p = record.params
        self.encoding = _ENCODINGS[p.get("encoding", "linear16")]
        self.rate = int(p.get("sample_rate", "16000"))
        self.frame = self.rate // 100  # 10 ms
        self.interim = p.get("interim_results") == "true"
        self.vad_events = p.get("vad_events") == "true"
        endpointing = p.get("endpointing", "10")
        self.endpointing_s: float | None = (
            None if endpointing == "false" else max(int(endpointing), 10) / 1000
        )
        ue = p.get("utterance_end_ms")
        self.utterance_end_s = int(ue) / 1000 if ue else None
        self.model = p.get("model", "nova-3")
        # state
        self.samples_done = 0
        self.pending = np.zeros(0, dtype=np.int16)
        self.odd_byte = b""
        self.in_speech = False
        self.seg_start: float | None = None
        self.last_voiced = 0.0
        self.last_interim = 0.0
        self.ue_pending = False
        self.last_word_end = 0.0
        self.line = 0
        self.outbox: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self.last_due = 0.0
        self.dead = False

    @property
    def now_s(self) -> float:
        return self.samples_done / self.rate

    async def run(self) -> None:
        sender = spawn(self.fake._tasks, self._send_loop())
        try:
            await self._receive_loop()
        except ConnectionClosed:
            self.record.closed_by = self.record.closed_by or "client"
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def drop_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.record.closed_by = "dropped"
        self.ws.transport.abort()

    async def _receive_loop(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.fake.idle_timeout_s):
                    message = await self.ws.recv()
            except TimeoutError:
                self.record.closed_by = "idle-timeout"
                await self._flush_outbox()
                await self.ws.close(
                    1011,
                    "Deepgram did not receive audio data or a text message within the timeout "
                    "window. See https://dpgr.am/net0001",
                )
                return
            if isinstance(message, bytes):
                self._on_audio(message)
                continue
            try:
                kind = json.loads(message).get("type", "")
            except (ValueError, AttributeError):
                kind = ""
            self.record.controls.append(kind or message)
            if kind == "KeepAlive":
                continue
            if kind == "Finalize":
                self._finalize(from_finalize=True)
            elif kind == "CloseStream" and self.fake.ignore_close_stream:
                continue
            elif kind == "CloseStream":
                self._finalize(from_finalize=False)
                self._emit(self._metadata())
                await self._flush_outbox()
                self.record.closed_by = "client"
                await self.ws.close(1000)
                return
            else:
                self._emit(
                    {
                        "type": "Error",
                        "variant": "SchemaError",
                        "description": "Unknown message type.",
                        "message": message,
                    }
                )

    # ------------------------------------------------------------------ audio clock

    def _on_audio(self, data: bytes) -> None:
        self.record.audio_bytes += len(data)
        if self.encoding is Encoding.PCM16:
            data = self.odd_byte + data
            self.odd_byte = data[len(data) // 2 * 2 :]
        samples = decode(data, self.encoding)
        self.pending = np.concatenate([self.pending, samples])
        n_frames = len(self.pending) // self.frame
        whole = (
            self.pending[: n_frames * self.frame].astype(np.float64).reshape(n_frames, self.frame)
        )
        voiced = np.sqrt(np.mean(whole**2, axis=1)) >= self.fake.energy_threshold
        for is_voiced in voiced.tolist():
            start = self.now_s
            self.samples_done += self.frame
            self._on_frame(start, self.now_s, is_voiced)
        self.pending = self.pending[n_frames * self.frame :]
        self.record.audio_seconds = self.now_s

    def _on_frame(self, start: float, end: float, voiced: bool) -> None:
        if voiced:
            if not self.in_speech:
                self.in_speech = True
                if self.vad_events:
                    self._emit({"type": "SpeechStarted", "channel": [0], "timestamp": start})
            if self.seg_start is None:
                self.seg_start = start
                self.last_interim = start
            self.last_voiced = end
            self.ue_pending = False
            if self.interim and end - self.last_interim >= self.fake.interim_interval_s:
                self.last_interim = end
                self._emit(self._results(partial=True, end=end))
            return
        silence = end - self.last_voiced
        if self.in_speech:
            endpoint = self.endpointing_s if self.endpointing_s is not None else 0.5
            if silence >= endpoint:
                self.in_speech = False
                if self.seg_start is not None:
                    self._final(speech_final=self.endpointing_s is not None, end=self.last_voiced)
        if (
            self.ue_pending
            and self.utterance_end_s is not None
            and end - self.last_word_end >= self.utterance_end_s
        ):
            self.ue_pending = False
            self._emit(
                {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": self.last_word_end}
            )

    def _finalize(self, *, from_finalize: bool) -> None:
        if self.seg_start is not None:
            self._final(speech_final=False, end=self.now_s, from_finalize=from_finalize)
        elif from_finalize:
            self._emit(self._results(final=True, end=self.now_s, from_finalize=True, empty=True))

    def _final(self, *, speech_final: bool, end: float, from_finalize: bool = False) -> None:
        msg = self._results(final=True, speech_final=speech_final, end=end)
        msg["from_finalize"] = from_finalize
        self._emit(msg, delay=self.fake.final_delay_s)
        self.line += 1
        self.seg_start = None
        self.last_word_end = end
        self.ue_pending = self.interim and self.utterance_end_s is not None

    # ------------------------------------------------------------------ messages

    def _current_line(self) -> str:
        script = self.fake.script or list(DEFAULT_SCRIPT)
        return script[self.line % len(script)]

    def _results(
        self,
        *,
        end: float,
        partial: bool = False,
        final: bool = False,
        speech_final: bool = False,
        from_finalize: bool = False,
        empty: bool = False,
    ) -> dict[str, Any]:
        start = self.seg_start if self.seg_start is not None else end
        words_text = [] if empty else self._current_line().split()
        if partial:
            spoken = max(1, int((end - start) / 0.3))
            words_text = words_text[:spoken]
        span = max(end - start, 0.01)
        step = span / max(len(words_text), 1)
        words = [
            {
                "word": w.strip(".,!?;:").lower(),
                "start": round(start + i * step, 3),
                "end": round(start + (i + 1) * step, 3),
                "confidence": 0.98,
                "punctuated_word": w,
            }
            for i, w in enumerate(words_text)
        ]
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(span, 3),
            "start": round(start, 3),
            "is_final": final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {
                "alternatives": [
                    {
                        "transcript": " ".join(words_text),
                        "confidence": 0.98 if words_text else 0.0,
                        "words": words,
                    }
                ]
            },
            "metadata": {
                "request_id": self.record.request_id,
                "model_info": {"name": self.model, "version": "fake", "arch": "fake"},
                "model_uuid": _MODEL_UUID,
            },
        }

    def _metadata(self) -> dict[str, Any]:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.record.request_id,
            "sha256": hashlib.sha256(str(self.record.audio_bytes).encode()).hexdigest(),
            "created": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "duration": round(self.now_s, 3),
            "channels": 1,
            "models": [_MODEL_UUID],
            "model_info": {_MODEL_UUID: {"name": self.model, "version": "fake", "arch": "fake"}},
        }

    def _emit(self, message: dict[str, Any], *, delay: float = 0.0) -> None:
        if self.dead:
            return
        # messages leave in order; a delayed final holds back what follows it
        due = max(time.monotonic() + delay, self.last_due)
        self.last_due = due
        self.outbox.put_nowait((due, message))

    async def _send_loop(self) -> None:
        while True:
            due, message = await self.outbox.get()
            try:
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self.record.sent.append(message)
                await self.ws.send(json.dumps(message))
            except ConnectionClosed:
                self.dead = True
                while not self.outbox.empty():
                    self.outbox.get_nowait()
                    self.outbox.task_done()
                return
            finally:
                self.outbox.task_done()

    async def _flush_outbox(self) -> None:
        await self.outbox.join()
