"""In-memory provider doubles implementing the voice.providers Protocols, plus a recording
carrier and sink. They behave like the real things where the engine can tell: STT hears
voiced audio and answers with interim/final events, the LLM streams deltas, TTS produces
audio in proportion to its text and stops on cancel, the carrier echoes marks once the
audio before them has "played" in real time and echoes all pending marks on ``clear``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voice.audio import decode, encode
from voice.config import AudioFormat, Encoding, ToolConfig
from voice.conversation import Conversation
from voice.events import CallEnded, Event, ToolCallRecord, TranscriptEntry, TurnTimeline
from voice.providers.base import (
    LLMChunk,
    Message,
    ProviderError,
    STTEvent,
    STTEventKind,
    TextDelta,
)

RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000


def speech_frames(ms: int, *, seed: int = 1) -> list[bytes]:
    """A voiced-sounding burst (harmonics + noise), as 20 ms mu-law frames."""
    rng = np.random.default_rng(seed)
    n = RATE * ms // 1000
    t = np.arange(n) / RATE
    wave = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 540, 720), 1))
    wave = wave * 6000 + rng.normal(0, 800, n)
    pcm = np.clip(wave, -32768, 32767).astype(np.int16)
    return _frames(encode(pcm, Encoding.MULAW))


def silence_frames(ms: int) -> list[bytes]:
    return _frames(encode(np.zeros(RATE * ms // 1000, dtype=np.int16), Encoding.MULAW))


def _frames(data: bytes) -> list[bytes]:
    return [data[i : i + FRAME_SAMPLES] for i in range(0, len(data), FRAME_SAMPLES)]


def is_voiced(frame: bytes) -> bool:
    samples = decode(frame, Encoding.MULAW).astype(np.float64)
    return bool(samples.size) and float(np.sqrt(np.mean(samples**2))) > 1000


# ----------------------------------------------------------------------------- STT


@dataclass
class FakeSTT:
    """Hears voiced audio: after ``interim_after_ms`` of voice it sends an interim with the
    next scripted utterance, and after ``final_after_silence_ms`` of silence a final with
    ``speech_final`` and an UTTERANCE_END. Tests can also ``emit`` events directly."""

    utterances: list[str] = field(default_factory=list)
    name: str = "fake-stt"
    interim_after_ms: int = 100
    final_after_silence_ms: int = 200
    fail_after_ms: int | None = None  # raise ProviderError after this much audio
    connect_delay: float = 0.0
    refuse: bool = False  # fail to connect
    audio_bytes: int = 0
    finalize_calls: int = 0
    sessions_open: int = 0
    sessions_opened: int = 0
    _session: FakeSTTSession | None = None

    def input_format(self, carrier: AudioFormat) -> AudioFormat:
        return carrier

    @contextlib.asynccontextmanager
    async def session(self, fmt: AudioFormat) -> AsyncIterator[FakeSTTSession]:
        await asyncio.sleep(self.connect_delay)
        if self.refuse:
            raise ProviderError(self.name, "401 Unauthorized")
        session = FakeSTTSession(self)
        self._session = session
        self.sessions_open += 1
        self.sessions_opened += 1
        try:
            yield session
        finally:
            self.sessions_open -= 1
            session.close()

    def emit(self, event: STTEvent) -> None:
        assert self._session is not None
        self._session.queue.put_nowait(event)


class FakeSTTSession:
    def __init__(self, owner: FakeSTT) -> None:
        self.owner = owner
        self.queue: asyncio.Queue[STTEvent | BaseException | None] = asyncio.Queue()
        self.voiced_ms = 0
        self.silent_ms = 0
        self.current: str | None = None
        self.audio_ms = 0

    async def send_audio(self, audio: bytes) -> None:
        owner = self.owner
        owner.audio_bytes += len(audio)
        self.audio_ms += len(audio) * 1000 // RATE
        if owner.fail_after_ms is not None and self.audio_ms >= owner.fail_after_ms:
            self.queue.put_nowait(ProviderError(owner.name, "connection reset"))
            owner.fail_after_ms = None
        if is_voiced(audio):
            self.voiced_ms += FRAME_MS
            self.silent_ms = 0
            if self.voiced_ms >= owner.interim_after_ms and self.current is None:
                self.current = owner.utterances.pop(0) if owner.utterances else ""
                if self.current:
                    self.queue.put_nowait(STTEvent(STTEventKind.INTERIM, self.current))
        else:
            self.silent_ms += FRAME_MS
            if self.current is not None and self.silent_ms >= owner.final_after_silence_ms:
                self.queue.put_nowait(STTEvent(STTEventKind.FINAL, self.current, speech_final=True))
                self.queue.put_nowait(STTEvent(STTEventKind.UTTERANCE_END))
                self.current = None
                self.voiced_ms = 0

    async def finalize(self) -> None:
        self.owner.finalize_calls += 1
        if self.current:
            self.queue.put_nowait(STTEvent(STTEventKind.FINAL, self.current))
            self.current = None
            self.voiced_ms = 0

    async def events(self) -> AsyncIterator[STTEvent]:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.queue.put_nowait(None)


# ----------------------------------------------------------------------------- LLM

Step = LLMChunk | float | BaseException  # a float sleeps that many seconds


@dataclass
class FakeLLM:
    """Streams one scripted reply per request; records the messages of every request."""

    replies: list[list[Step]] = field(default_factory=list)
    name: str = "fake-llm"
    requests: list[list[Message]] = field(default_factory=list)
    tools_seen: list[Sequence[ToolConfig]] = field(default_factory=list)
    closed: int = 0  # streams closed
    close_hangs_s: float = 0.0  # closing a stream takes this long (a stuck provider)
    released: int = 0  # aclose() calls (the call ended)

    async def stream(
        self, *, messages: Sequence[Message], tools: Sequence[ToolConfig]
    ) -> AsyncIterator[LLMChunk]:
        self.requests.append(
            [
                Message(m.role, m.content, list(m.tool_calls), m.tool_call_id, m.name)
                for m in messages
            ]
        )
        self.tools_seen.append(tools)
        script = self.replies.pop(0) if self.replies else [TextDelta("Okay.")]
        try:
            for step in script:
                if isinstance(step, float):
                    await asyncio.sleep(step)
                elif isinstance(step, BaseException):
                    raise step
                else:
                    yield step
        finally:
            self.closed += 1
            await asyncio.sleep(self.close_hangs_s)

    async def aclose(self) -> None:
        self.released += 1


def words(text: str, delay: float = 0.0) -> list[Step]:
    """Stream ``text`` word by word (as an LLM would), optionally pausing between words."""
    out: list[Step] = []
    for i, word in enumerate(text.split(" ")):
        if delay:
            out.append(delay)
        out.append(TextDelta(word if i == 0 else " " + word))
    return out


# ----------------------------------------------------------------------------- TTS


@dataclass
class FakeTTS:
    """``ms_per_char`` of mu-law audio per character pushed, in 20 ms chunks, then an
    empty chunk marking the end of that text's audio."""

    name: str = "fake-tts"
    ms_per_char: int = 10
    first_byte_delay: float = 0.01
    boundaries: bool = True
    fail_on_push: int | None = None  # raise ProviderError on the n-th push (1-based)
    close_hangs_s: float = 0.0  # closing the connection takes this long (a stuck provider)
    closes_cut_short: int = 0  # hanging closes the engine gave up on
    refuse: bool = False  # fail to connect
    connect_delay: float = 0.0
    pushed: list[str] = field(default_factory=list)
    contexts: list[FakeTTSContext] = field(default_factory=list)
    connections_open: int = 0

    @contextlib.asynccontextmanager
    async def connect(self, fmt: AudioFormat) -> AsyncIterator[FakeTTSConnection]:
        assert fmt.encoding is Encoding.MULAW
        await asyncio.sleep(self.connect_delay)
        if self.refuse:
            raise ProviderError(self.name, "401 Unauthorized")
        self.connections_open += 1
        try:
            yield FakeTTSConnection(self)
        finally:
            self.connections_open -= 1
            try:
                await asyncio.sleep(self.close_hangs_s)
            except asyncio.CancelledError:
                self.closes_cut_short += 1
                raise


class FakeTTSConnection:
    def __init__(self, owner: FakeTTS) -> None:
        self.owner = owner

    def context(self) -> FakeTTSContext:
        ctx = FakeTTSContext(self.owner)
        self.owner.contexts.append(ctx)
        return ctx


class FakeTTSContext:
    def __init__(self, owner: FakeTTS) -> None:
        self.owner = owner
        self.texts: asyncio.Queue[str | None] = asyncio.Queue()
        self.cancelled = False
        self.ended = False
        self.pushed: list[str] = []

    async def push(self, text: str) -> None:
        owner = self.owner
        owner.pushed.append(text)
        self.pushed.append(text)
        if owner.fail_on_push is not None and len(owner.pushed) >= owner.fail_on_push:
            raise ProviderError(owner.name, "synthesis failed")
        self.texts.put_nowait(text)

    async def end_input(self) -> None:
        self.ended = True
        self.texts.put_nowait(None)

    async def cancel(self) -> None:
        self.cancelled = True
        self.texts.put_nowait(None)

    async def audio(self) -> AsyncIterator[bytes]:
        frame = b"\x7f" * FRAME_SAMPLES
        while not self.cancelled:
            text = await self.texts.get()
            if text is None or self.cancelled:
                return
            await asyncio.sleep(self.owner.first_byte_delay)
            total = len(text) * self.owner.ms_per_char * RATE // 1000
            for _ in range(total // FRAME_SAMPLES):
                if self.cancelled:
                    return
                yield frame
                await asyncio.sleep(0)
            if self.owner.boundaries:
                yield b""


# ----------------------------------------------------------------------------- carrier, sink


class RecordingOutput:
    """A carrier that plays audio in real time: marks echo when the audio before them has
    played; ``clear`` drops the rest and echoes pending marks at once (Twilio semantics)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.conversation: Conversation | None = None
        self._play_end = 0.0
        self._pending: dict[str, asyncio.TimerHandle] = {}

    def attach(self, conversation: Conversation) -> None:
        self.conversation = conversation

    def _loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    async def send_audio(self, payload: bytes) -> None:
        self.log.append(("audio", len(payload)))
        start = max(self._play_end, self._loop_time())
        self._play_end = start + len(payload) / RATE

    async def send_mark(self, name: str) -> None:
        self.log.append(("mark", name))
        loop = asyncio.get_running_loop()
        self._pending[name] = loop.call_at(max(self._play_end, loop.time()), self._echo, name)

    def _echo(self, name: str) -> None:
        self._pending.pop(name, None)
        self.log.append(("echo", name))
        if self.conversation is not None:
            self.conversation.mark_played(name)

    async def send_clear(self) -> None:
        self.log.append(("clear", None))
        self._play_end = 0.0
        for name, handle in list(self._pending.items()):
            handle.cancel()
            self._echo(name)

    async def hangup(self) -> None:
        self.log.append(("hangup", None))
        self._drop()

    async def transfer(self, to: str) -> None:
        self.log.append(("transfer", to))
        self._drop()

    def _drop(self) -> None:
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()

    def kinds(self) -> list[str]:
        return [k for k, _ in self.log]


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    @property
    def transcript(self) -> list[TranscriptEntry]:
        return [e for e in self.events if isinstance(e, TranscriptEntry)]

    @property
    def timelines(self) -> list[TurnTimeline]:
        return [e for e in self.events if isinstance(e, TurnTimeline)]

    @property
    def tool_records(self) -> list[ToolCallRecord]:
        return [e for e in self.events if isinstance(e, ToolCallRecord)]

    @property
    def ended(self) -> list[CallEnded]:
        return [e for e in self.events if isinstance(e, CallEnded)]


# ----------------------------------------------------------------------------- the caller


class Caller:
    """Feeds caller audio in real time (one 20 ms frame every 20 ms)."""

    def __init__(self, conversation: Conversation, *, pace: float = FRAME_MS / 1000) -> None:
        self.conversation = conversation
        self.pace = pace

    async def _feed(self, frames: list[bytes]) -> None:
        for frame in frames:
            self.conversation.feed_audio(frame)
            await asyncio.sleep(self.pace)

    async def play(self, frames: list[bytes]) -> None:
        """Recorded caller audio, already cut into carrier frames."""
        await self._feed(frames)

    async def speak(self, ms: int, *, then_silence_ms: int = 500) -> None:
        await self._feed(speech_frames(ms))
        await self._feed(silence_frames(then_silence_ms))

    async def silence(self, ms: int) -> None:
        await self._feed(silence_frames(ms))
