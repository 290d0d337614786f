"""Recording a call as the caller heard it: caller left, agent right (or one mixed channel).

Both sides are placed on one timeline of samples since the recording started:

- **caller** audio by the carrier's own clock when it has one (Twilio's media
  ``timestamp``, ms since the stream started; the recording starts with the stream), so a
  gap in the stream is written as silence and a burst of late frames lands where it
  belongs; without one, frame after frame;
- **agent** audio as the carrier plays it: what is sent plays back to back from the moment
  it is sent (the carrier's buffer), and a ``clear`` (barge-in) drops everything not yet
  played at that moment. That is the same account of playback the engine keeps with its
  marks (voice/playback.py): what was cut at barge-in never reaches the recording.

Written while the call runs, never held whole: a stretch of the timeline is final once
both sides are known up to it (the caller's audio has arrived and the agent's has played;
caller audio more than ``LATE_MS`` behind the clock is not waited for). Final stretches of
``FLUSH_MS`` are encoded by :class:`Encoder` (MP3, which every browser's ``<audio>``
plays) and written to a local scratch file on a
worker thread; the event loop only slices arrays. Memory per call is bounded: at most
``QUEUE_BLOCKS`` blocks wait for the writer (past that, the stretch is written as silence
and counted), and agent audio sent ahead of playback is kept for at most
``MAX_AHEAD_S``.

The platform supplies the scratch file and keeps the finished one through a
:class:`RecordingSink` (calls/recordings.py stores it with django-storages). A failure here
(a full disk) ends the recording, never the call.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import lameenc
import numpy as np

from voice.audio import decode
from voice.config import AudioFormat, RecordingMode
from voice.events import Event, SecureCapture, Sink
from voice.transport import CarrierOutput

log = logging.getLogger(__name__)

FLUSH_MS = 1000  # encode and write in blocks of this much audio
LATE_MS = 2000  # caller audio later than this behind the clock is not waited for
MAX_AHEAD_S = 60.0  # agent audio sent ahead of playback, kept at most (then dropped)
QUEUE_BLOCKS = 8  # blocks waiting for the writer thread, at most
SMALL_GAP_MS = 10  # timestamp jitter below this is not written as silence
KBPS_PER_CHANNEL = 16  # speech at 8 kHz: ~2 KB a second a channel
CONTENT_TYPE, EXTENSION = "audio/mpeg", "mp3"


@dataclass(frozen=True, slots=True)
class RecordedAudio:
    """A finished recording in its scratch file."""

    path: Path
    mode: RecordingMode
    channels: int
    sample_rate: int
    duration_ms: int
    content_type: str = CONTENT_TYPE
    extension: str = EXTENSION
    # audio the recorder could not keep (a stalled disk, agent audio far ahead)
    dropped_ms: int = 0


class RecordingSink(Protocol):
    """The platform's side: where the recording is written and where it is kept."""

    def scratch_path(self) -> Path:
        """A local file the recording may be written to while the call runs."""

    async def store(self, audio: RecordedAudio) -> None:
        """Keep the finished recording (called once, after the call); the scratch file is
        the sink's to remove."""


class Encoder:
    """PCM16 blocks -> an MP3 file, incrementally (LAME through ``lameenc``): constant
    bitrate, ``KBPS_PER_CHANNEL`` per channel, at the carrier's own sample rate."""

    def __init__(self, path: Path, *, sample_rate: int, channels: int) -> None:
        self._lame = lameenc.Encoder()
        self._lame.set_in_sample_rate(sample_rate)
        self._lame.set_out_sample_rate(sample_rate)
        self._lame.set_channels(channels)
        self._lame.set_bit_rate(KBPS_PER_CHANNEL * channels)
        self._lame.set_quality(5)  # LAME's "good" speed/quality balance
        self._file = path.open("wb")

    def write(self, block: np.ndarray) -> None:
        self._file.write(self._lame.encode(block.astype("<i2", copy=False).tobytes()))

    def close(self) -> None:
        try:
            self._file.write(self._lame.flush())
        finally:
            self._file.close()


# A block of samples (n,) or (n, 2), or a count of silent samples.
_Item = np.ndarray | int | None


class CallRecording:
    """One call's recording. ``caller``, ``agent`` (via :class:`RecordingOutput`),
    ``cleared``, ``mute`` and ``end`` are sync and cheap; ``run`` is the writer task,
    which returns the finished :class:`RecordedAudio` (or None if it failed).

    ``clock`` (seconds) must be the clock the engine stamps its timeline with; the default
    is the running loop's. ``started_at`` (on that clock) is when the carrier's stream
    started, the origin of its timestamps and of the recording; default: now.
    """

    def __init__(
        self,
        mode: RecordingMode,
        fmt: AudioFormat,
        sink: RecordingSink,
        *,
        clock: Callable[[], float] | None = None,
        started_at: float | None = None,
        call_id: str = "",
    ) -> None:
        if mode is RecordingMode.OFF:
            raise ValueError("recording mode is off")
        self.mode = mode
        self._fmt = fmt
        self._rate = fmt.sample_rate
        self._channels = 2 if mode is RecordingMode.DUAL else 1
        self._sink = sink
        self._call_id = call_id
        self._clock = clock or asyncio.get_running_loop().time
        self._t0 = self._clock() if started_at is None else started_at
        self._flush = self._samples(FLUSH_MS)
        self._late = self._samples(LATE_MS)
        self._small_gap = self._samples(SMALL_GAP_MS)
        self._max_ahead = self._samples(MAX_AHEAD_S * 1000)
        self._done = 0  # samples handed to the writer
        self._caller: deque[np.ndarray] = deque()  # contiguous from _done
        self._caller_end = 0
        self._agent: deque[tuple[int, np.ndarray]] = deque()  # (start, samples), in order
        self._agent_end = 0
        self._muted = False
        self._gone_at: int | None = None  # the caller hung up: nothing is heard after
        self._ended = False
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()  # bounded by QUEUE_BLOCKS below
        self._gap = 0  # samples not queued while the writer was behind
        self._dropped = 0
        self._written = 0

    # ------------------------------------------------------------------ inputs

    def _samples(self, ms: float) -> int:
        return int(ms * self._rate // 1000)

    def _now(self) -> int:
        return self._samples((self._clock() - self._t0) * 1000)

    def caller(self, payload: bytes, stream_ms: int | None = None) -> None:
        """Caller audio in the carrier's format; ``stream_ms``: the carrier's timestamp
        (ms since the stream started)."""
        if self._ended:
            return
        samples = decode(payload, self._fmt.encoding)
        now = self._now()
        if self._muted:
            samples = np.zeros(len(samples), dtype=np.int16)
        if stream_ms is None:
            at = max(self._caller_end, self._done)
        else:  # a timestamp from the future is not trusted
            at = min(self._samples(stream_ms), now + self._flush)
        if at < self._done:  # late: that stretch of the file is written already
            self._dropped += min(len(samples), self._done - at)
            samples = samples[self._done - at :]
            at = self._done
        self._caller_end = max(self._caller_end, self._done)
        if at - self._caller_end > self._small_gap:  # frames that never came: silence
            self._caller.append(np.zeros(at - self._caller_end, dtype=np.int16))
            self._caller_end = at
        elif at < self._caller_end:  # a frame again, or out of order: keep the first
            samples = samples[self._caller_end - at :]
        if len(samples):
            self._caller.append(samples)
            self._caller_end += len(samples)
        self._advance(now)

    def agent(self, payload: bytes) -> None:
        """Agent audio sent to the carrier now; it plays after what was sent before."""
        if self._ended or self._gone_at is not None:
            return
        now = self._now()
        start = max(self._agent_end, now, self._done)
        if start - now > self._max_ahead:
            self._dropped += len(payload) // self._fmt.bytes_per_sample
            return
        samples = decode(payload, self._fmt.encoding)
        if self._muted:
            samples = np.zeros(len(samples), dtype=np.int16)
        if len(samples):
            self._agent.append((start, samples))
            self._agent_end = start + len(samples)
        self._advance(now)

    def cleared(self) -> None:
        """The carrier was told to drop what it has not played (barge-in)."""
        cut = self._now()
        while self._agent and self._agent[-1][0] >= cut:
            self._agent.pop()
        if self._agent:
            start, samples = self._agent[-1]
            if start + len(samples) > cut:
                self._agent[-1] = (start, samples[: cut - start])
        self._agent_end = min(self._agent_end, cut)

    def mute(self, on: bool) -> None:
        """Record silence on both sides while ``on`` (a secure capture of keypad digits)."""
        self._muted = on
        if on:  # agent audio already sent but not yet played is silenced too
            self._agent = deque((s, np.zeros_like(a)) for s, a in self._agent)

    def caller_gone(self) -> None:
        """The caller hung up: the recording ends here, whatever the engine does next."""
        if self._gone_at is None:
            self._gone_at = self._now()

    def end(self) -> None:
        """The call is over: write out what was heard and close the file."""
        if self._ended:
            return
        now = self._now() if self._gone_at is None else self._gone_at
        horizon = max(self._caller_end, min(self._agent_end, now))
        self._emit(horizon)
        self._ended = True
        self._queue.put_nowait(None)

    # ------------------------------------------------------------------ timeline

    def _advance(self, now: int) -> None:
        horizon = max(min(self._caller_end, now), now - self._late)
        if horizon - self._done >= self._flush:
            self._emit(horizon)

    def _emit(self, horizon: int) -> None:
        n = horizon - self._done
        if n <= 0:
            return
        caller = self._take_caller(n)
        agent = self._take_agent(self._done, horizon)
        self._done = horizon
        if self._channels == 2:
            block = np.column_stack((caller, agent))
        else:
            mixed = caller.astype(np.int32) + agent
            block = np.clip(mixed, -32768, 32767).astype(np.int16)
        if self._queue.qsize() >= QUEUE_BLOCKS:  # the writer is behind: silence, counted
            self._gap += n
            self._dropped += n
            return
        if self._gap:
            self._queue.put_nowait(self._gap)
            self._gap = 0
        self._queue.put_nowait(block)

    def _take_caller(self, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.int16)
        filled = 0
        while self._caller and filled < n:
            chunk = self._caller[0]
            take = min(len(chunk), n - filled)
            out[filled : filled + take] = chunk[:take]
            filled += take
            if take == len(chunk):
                self._caller.popleft()
            else:
                self._caller[0] = chunk[take:]
        return out

    def _take_agent(self, a: int, b: int) -> np.ndarray:
        out = np.zeros(b - a, dtype=np.int16)
        while self._agent:
            start, samples = self._agent[0]
            if start >= b:
                break
            end = start + len(samples)
            lo, hi = max(start, a), min(end, b)
            if hi > lo:
                out[lo - a : hi - a] = samples[lo - start : hi - start]
            if end <= b:
                self._agent.popleft()
            else:
                break
        return out

    # ------------------------------------------------------------------ the writer

    async def run(self) -> RecordedAudio | None:
        """Encode and write blocks until :meth:`end`; the finished recording, or None."""
        path = self._sink.scratch_path()
        try:
            encoder = await asyncio.to_thread(
                Encoder, path, sample_rate=self._rate, channels=self._channels
            )
        except Exception as exc:
            log.warning("call %s: recording not started: %r", self._call_id, exc)
            await self._discard_queue()
            return None
        try:
            while (item := await self._queue.get()) is not None:
                await asyncio.to_thread(self._write, encoder, item)
        except Exception as exc:
            log.warning("call %s: recording failed: %r", self._call_id, exc)
            await asyncio.to_thread(_close_quietly, encoder)
            await self._discard_queue()
            return None
        finally:
            if not self._ended:  # cancelled: the call's task group is going down
                self._ended = True
                await asyncio.to_thread(_close_quietly, encoder)
        await asyncio.to_thread(encoder.close)
        return RecordedAudio(
            path=path,
            mode=self.mode,
            channels=self._channels,
            sample_rate=self._rate,
            duration_ms=self._written * 1000 // self._rate,
            dropped_ms=self._dropped * 1000 // self._rate,
        )

    def _write(self, encoder: Encoder, item: np.ndarray | int) -> None:
        if isinstance(item, int):  # silence, in blocks of FLUSH_MS
            shape: Any = (self._flush, 2) if self._channels == 2 else self._flush
            silence = np.zeros(shape, dtype=np.int16)
            left = item
            while left > 0:
                encoder.write(silence[: min(left, self._flush)])
                left -= self._flush
            self._written += item
            return
        encoder.write(item)
        self._written += len(item)

    async def _discard_queue(self) -> None:
        self._ended = True
        while not self._queue.empty():
            self._queue.get_nowait()

    @property
    def buffered_samples(self) -> int:
        """Samples held in memory right now (both sides and the writer's queue)."""
        items: list[_Item] = list(self._queue._queue)  # type: ignore[attr-defined]
        queued = sum(len(i) for i in items if isinstance(i, np.ndarray))
        held = sum(len(c) for c in self._caller) + sum(len(a) for _, a in self._agent)
        return held + queued


def _close_quietly(encoder: Encoder) -> None:
    try:
        encoder.close()
    except Exception as exc:
        log.debug("closing a failed recording: %r", exc)


class RecordingOutput:
    """A :class:`CarrierOutput` that records the agent's audio as the carrier plays it."""

    def __init__(self, inner: CarrierOutput, recording: CallRecording) -> None:
        self._inner = inner
        self._recording = recording

    async def send_audio(self, payload: bytes) -> None:
        self._recording.agent(payload)
        await self._inner.send_audio(payload)

    async def send_mark(self, name: str) -> None:
        await self._inner.send_mark(name)

    async def send_clear(self) -> None:
        self._recording.cleared()
        await self._inner.send_clear()

    async def hangup(self) -> None:
        await self._inner.hangup()

    async def transfer(self, to: str) -> None:
        await self._inner.transfer(to)


class MutingSink:
    """A :class:`voice.events.Sink` that mutes the recording over secure digit captures.

    The engine announces a secure ``collect_digits`` window with :class:`SecureCapture`
    (``end_ms`` None when it opens, set when it closes); the keypad tones in between must
    not be decodable from the recording. Every event still goes on to ``inner``.
    """

    def __init__(self, inner: Sink, recording: CallRecording) -> None:
        self._inner = inner
        self._recording = recording

    def emit(self, event: Event) -> None:
        if isinstance(event, SecureCapture):
            self._recording.mute(event.end_ms is None)
        self._inner.emit(event)
