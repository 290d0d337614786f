"""Fixed lines cost nothing: their audio, synthesized once per voice and text, replayed.

The greeting, idle prompt, goodbye and closing lines are the same text call after call, so
the :class:`~voice.speaking.Speaker` keeps their audio (the chunks a TTS context produced,
with its clause boundaries) under a key of the TTS settings, the carrier format and the
text (:func:`line_key`). A hit replays the chunks through :class:`ReplayContext`, a
:class:`~voice.providers.base.TTSContext` that needs no connection: the greeting can start
before the TTS has even connected.

The cache is the platform's to choose and share (one per process, and Redis between
processes where it runs); :class:`MemoryLineCache` is the bounded in-process one.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Protocol

from voice.config import AudioFormat, TTSConfig
from voice.providers.base import TTSContext

# A 3 s line of 8 kHz mu-law is 24 KB: 32 MiB holds well over a thousand.
DEFAULT_MAX_BYTES = 32 * 1024 * 1024


class LineCache(Protocol):
    async def get(self, key: str) -> list[bytes] | None: ...

    async def put(self, key: str, chunks: list[bytes]) -> None: ...


def line_key(tts: TTSConfig, fmt: AudioFormat, text: str) -> str:
    """What makes two lines sound the same. Credentials are not part of it."""
    parts = (tts.provider, tts.voice, tts.model, f"{tts.speed:g}", tts.language)
    raw = "\x1f".join((*parts, str(fmt.encoding), str(fmt.sample_rate), str(fmt.channels), text))
    return "line:" + hashlib.sha256(raw.encode()).hexdigest()


class MemoryLineCache:
    """Least recently used lines, bounded by their audio bytes."""

    __slots__ = ("_bytes", "_lines", "max_bytes")

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._lines: OrderedDict[str, tuple[bytes, ...]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._lines)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    async def get(self, key: str) -> list[bytes] | None:
        return self.get_now(key)

    def get_now(self, key: str) -> list[bytes] | None:
        chunks = self._lines.get(key)
        if chunks is None:
            return None
        self._lines.move_to_end(key)
        return list(chunks)

    async def put(self, key: str, chunks: list[bytes]) -> None:
        self.put_now(key, chunks)

    def put_now(self, key: str, chunks: list[bytes]) -> None:
        size = sum(len(c) for c in chunks)
        if size > self.max_bytes:
            return
        old = self._lines.pop(key, None)
        if old is not None:
            self._bytes -= sum(len(c) for c in old)
        self._lines[key] = tuple(chunks)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, dropped = self._lines.popitem(last=False)
            self._bytes -= sum(len(c) for c in dropped)


class ReplayContext:
    """A TTS context that plays cached audio: text pushed is ignored (it is the same)."""

    __slots__ = ("_cancelled", "_chunks")

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self._cancelled = False

    async def push(self, text: str) -> None:
        return None

    async def end_input(self) -> None:
        return None

    async def audio(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            if self._cancelled:
                return
            yield chunk
            await asyncio.sleep(0)  # a long line must not hold the loop

    async def cancel(self) -> None:
        self._cancelled = True


class RecordingContext:
    """Wraps a real TTS context and keeps the audio it produced, for the cache."""

    __slots__ = ("_inner", "chunks", "complete")

    def __init__(self, inner: TTSContext) -> None:
        self._inner = inner
        self.chunks: list[bytes] = []
        self.complete = False  # the audio ran to its end (not cancelled, no error)

    async def push(self, text: str) -> None:
        await self._inner.push(text)

    async def end_input(self) -> None:
        await self._inner.end_input()

    async def audio(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner.audio():
            self.chunks.append(chunk)
            yield chunk
        self.complete = True

    async def cancel(self) -> None:
        self.complete = False
        await self._inner.cancel()
