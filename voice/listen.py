"""Listen-in: a copy of a running call's audio, both sides, for whoever listens.

A :class:`ListenTap` is fed the caller's frames as they arrive from the carrier and the
agent's as they are sent to it (:class:`ListenOutput` wraps the carrier output), both
decoded to PCM16 at the carrier's rate. While nobody listens (``enabled`` false, the
default) feeding it costs one attribute check. While someone does, it buffers up to
``MAX_BUFFER_MS`` per side (older audio is dropped past that: a slow listener never
holds the call back) until :meth:`ListenTap.take` hands the chunk to the publisher
(calls/livecall.py). A ``clear`` (barge-in) drops the agent audio not yet taken and
flags the next chunk, so a listener's player drops what it queued, as the carrier did.
"""

from __future__ import annotations

from dataclasses import dataclass

from voice.audio import decode
from voice.config import AudioFormat
from voice.transport import CarrierOutput

MAX_BUFFER_MS = 2000


@dataclass(frozen=True, slots=True)
class ListenChunk:
    """PCM16 (little-endian) at ``sample_rate``; ``clear`` comes before ``agent``."""

    sample_rate: int
    caller: bytes
    agent: bytes
    clear: bool


class ListenTap:
    def __init__(self, fmt: AudioFormat) -> None:
        self.fmt = fmt
        self.enabled = False
        self._caller = bytearray()
        self._agent = bytearray()
        self._clear = False
        self._max = fmt.sample_rate * 2 * MAX_BUFFER_MS // 1000
        self.dropped_bytes = 0

    def _add(self, buffer: bytearray, payload: bytes) -> None:
        buffer += decode(payload, self.fmt.encoding).astype("<i2", copy=False).tobytes()
        excess = len(buffer) - self._max
        if excess > 0:
            excess += excess % 2
            del buffer[:excess]
            self.dropped_bytes += excess

    def caller(self, payload: bytes) -> None:
        """What the carrier delivered from the caller."""
        if self.enabled:
            self._add(self._caller, payload)

    def agent(self, payload: bytes) -> None:
        """What was sent to the carrier for the caller to hear."""
        if self.enabled:
            self._add(self._agent, payload)

    def clear(self) -> None:
        """The carrier was told to drop its buffered agent audio."""
        if self.enabled:
            self._agent.clear()
            self._clear = True

    def disable(self) -> None:
        self.enabled = False
        self._caller.clear()
        self._agent.clear()
        self._clear = False

    def take(self) -> ListenChunk | None:
        """Everything buffered since the last take, or None if there is nothing."""
        if not (self._caller or self._agent or self._clear):
            return None
        rate = self.fmt.sample_rate
        chunk = ListenChunk(rate, bytes(self._caller), bytes(self._agent), self._clear)
        self._caller.clear()
        self._agent.clear()
        self._clear = False
        return chunk


class ListenOutput:
    """A carrier output that copies the agent's audio (and clears) to a tap."""

    def __init__(self, inner: CarrierOutput, tap: ListenTap) -> None:
        self._inner = inner
        self._tap = tap

    async def send_audio(self, payload: bytes) -> None:
        await self._inner.send_audio(payload)
        self._tap.agent(payload)

    async def send_mark(self, name: str) -> None:
        await self._inner.send_mark(name)

    async def send_clear(self) -> None:
        await self._inner.send_clear()
        self._tap.clear()

    async def hangup(self) -> None:
        await self._inner.hangup()

    async def transfer(self, to: str) -> None:
        await self._inner.transfer(to)
