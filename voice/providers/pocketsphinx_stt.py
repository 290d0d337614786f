"""Local offline speech recognition with PocketSphinx and the English model its wheel ships.

"Streaming by utterance": pocketsphinx's own ``Endpointer`` (a WebRTC-style VAD with a
0.3 s decision window) splits the incoming audio into utterances. Speech frames are fed to
a decoder as they arrive (off the event loop, batched: one thread hop per batch of queued
frames, not per frame), so when the endpointer says the utterance is over only the final
search remains. Events: SPEECH_STARTED when the endpointer enters speech; FINAL
(``speech_final=True``) then UTTERANCE_END when it leaves speech. No INTERIM events.
``finalize()`` ends the utterance in progress at once and always answers with exactly one
FINAL (``speech_final=False``, possibly empty text), like Deepgram's Finalize; speech the
endpointer is still holding in its window then starts a new utterance. ``confidence`` is
left at 0.0 (unknown): without lattice rescoring pocketsphinx's posterior is always 1.0.

Input is PCM16 at 16 kHz whatever the carrier sends. The bundled acoustic model is
wideband: its ``feat.params`` fixes the filterbank at 130-6800 Hz, and pocketsphinx
refuses ``samprate=8000`` with it ("Upper frequency 6800.0 is higher than samprate/2"), so
telephone audio is upsampled to 16 kHz (the band above 4 kHz is simply empty).

Channel normalization. Accuracy hinges on the cepstral mean (CMN) the decoder subtracts.
The model's default initial mean (40,3,-1,...) is far from a telephone channel: the first
utterance of a fresh decoder came out as "i need help with like you" for "I need help with
my computer", and only later utterances, once the running mean had adapted, were right.
So each session carries its own running mean from utterance to utterance (set on the
decoder before each utterance, read back after), starting from a prior chosen by the
carrier's rate: the model default for wideband audio, or a telephone prior estimated by
decoding eight eSpeak sentences over mu-law 8 kHz (held-out sentences then decode well on
the first try). That prior is fitted to a synthetic voice; real callers adapt it within an
utterance or two. It also makes results independent of which pooled decoder a session
gets.

Decoders are pooled per process. Loading one takes ~0.35-0.47 s and ~90 MB of RSS each
(a second decoder costs another ~90 MB: the model is not shared), far too slow for every
call or utterance. A session borrows a decoder for the length of an utterance and gives it
back; the decoder keeps no call data (``start_utt`` resets the search, the mean is
per-session as above; only pocketsphinx's running noise-floor estimate carries over). The
pool is the module's only mutable state: a lock-protected list of idle decoders, created
on demand, at most ``_POOL_IDLE_MAX`` kept (so up to ~360 MB resident when idle after a
busy spell). Opening a session warms the pool so the first utterance does not pay the
load. Teardown waits (bounded) for a decoding call still on a worker thread before giving
its decoder back.

Measured (2-core container, eSpeak speech over mu-law 8 kHz, ``python -m
bench.local_providers``): decoding real-time factor ~0.25-0.35 for 1.6-2.7 s utterances and
~0.5 for a 7 s one, on one core per active utterance; after the endpointer's last frame the
final search (forward-flat second pass and best path) adds ~100 ms for a 1.6 s utterance,
~150 ms for 2.7 s and ~500-850 ms for 7 s. Turning the second pass off (``fwdflat=no``)
cuts that to 6-30 ms but loses words ("book an appointment" -> "book appointments"); we
keep it on. Accuracy is rough: "I need help with my computer" and "... for tomorrow
morning" come out right, "What is the weather like today?" -> "what the weather like the
day", "I want to cancel my order" -> "one can order".
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from voice.config import AudioFormat, Encoding, STTConfig
from voice.providers.base import ProviderError, STTEvent, STTEventKind

NAME = "pocketsphinx"
SAMPLE_RATE = 16000
INPUT_FORMAT = AudioFormat(Encoding.PCM16, SAMPLE_RATE)
_POOL_IDLE_MAX = 4
# Initial cepstral means (see the module docstring). The model's own default suits wideband
# audio; the telephone one was estimated by decoding eSpeak sentences sent over mu-law 8 kHz.
_WIDEBAND_CMN = "40,3,-1,0,0,0,0,0,0,0,0,0,0"
_TELEPHONE_CMN = "62.7,3.24,-4.18,20.66,-9.95,5.95,-10.10,-4.54,-21.22,4.28,-2.00,2.49,-9.03"
_CLOSE_TIMEOUT_S = 5.0


class _DecoderPool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[Any] = []

    def borrow(self) -> Any:
        """A decoder for this caller alone. Blocking (may load a model): call off the loop."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        from pocketsphinx import Decoder

        try:
            return Decoder(loglevel="FATAL")
        except RuntimeError as exc:
            raise ProviderError(NAME, f"cannot load the model: {exc}") from exc

    def give_back(self, decoder: Any) -> None:
        with self._lock:
            if len(self._idle) < _POOL_IDLE_MAX:
                self._idle.append(decoder)


_pool = _DecoderPool()


class _SessionDecoder:
    """Blocking decoder work for one session; runs on worker threads, one call at a time.

    The lock also lets a session's teardown wait for a decoding call still running on a
    worker thread (cancelling the awaiting task does not stop the thread) before it gives
    the decoder back.
    """

    def __init__(self, cmn: str) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._decoder: Any = None
        self._samples = 0
        self._cmn = cmn  # this caller's channel estimate, carried from utterance to utterance

    def feed(self, audio: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            if self._decoder is None:
                self._decoder = _pool.borrow()
                self._decoder.set_cmn(self._cmn)
                self._decoder.start_utt()
            self._decoder.process_raw(audio, False, False)
            self._samples += len(audio) // 2

    def finish(self) -> tuple[str, float]:
        """End the search and give the decoder back: (text, seconds of audio)."""
        with self._lock:
            decoder, self._decoder = self._decoder, None
            duration, self._samples = self._samples / SAMPLE_RATE, 0
            if decoder is None:
                return "", duration
            decoder.end_utt()
            hyp = decoder.hyp()
            self._cmn = decoder.get_cmn()
            _pool.give_back(decoder)
        return (hyp.hypstr if hyp is not None else ""), duration

    def close(self) -> None:
        with self._lock:
            self._closed = True
            decoder, self._decoder = self._decoder, None
            if decoder is not None:
                decoder.end_utt()
                _pool.give_back(decoder)


# What the endpointer hands the decoding task, besides speech audio. Speech start goes
# through the same queue so that events come out in audio order: the next utterance's
# SPEECH_STARTED never overtakes the previous utterance's FINAL while that is decoding.
_START = "start"  # the speaker started (VAD)
_END = "end"  # the speaker stopped (VAD)
_FINALIZE = "finalize"  # the engine asked for the text now


class PocketSphinxSession:
    def __init__(self, cmn: str) -> None:
        from pocketsphinx import Endpointer

        self._endpointer = Endpointer(sample_rate=SAMPLE_RATE)
        self._frame_bytes: int = self._endpointer.frame_bytes
        self._buffer = bytearray()
        self._work: asyncio.Queue[bytes | str] = asyncio.Queue()
        self._events: asyncio.Queue[STTEvent | BaseException | None] = asyncio.Queue()
        self._utterance = _SessionDecoder(cmn)
        self._task: asyncio.Task[None] | None = None

    async def send_audio(self, audio: bytes) -> None:
        self._buffer.extend(audio)
        usable = len(self._buffer) // self._frame_bytes * self._frame_bytes
        if not usable:
            return
        frames = bytes(self._buffer[:usable])
        del self._buffer[:usable]
        # The endpointer is a few microseconds per 30 ms frame: fine on the loop.
        for start in range(0, usable, self._frame_bytes):
            was_in_speech = self._endpointer.in_speech
            speech = self._endpointer.process(frames[start : start + self._frame_bytes])
            if speech is None:
                continue
            if not was_in_speech:
                self._work.put_nowait(_START)
            self._work.put_nowait(speech)
            if not self._endpointer.in_speech:
                self._work.put_nowait(_END)

    async def finalize(self) -> None:
        self._work.put_nowait(_FINALIZE)

    async def events(self) -> AsyncIterator[STTEvent]:
        while (item := await self._events.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    async def _run(self) -> None:
        try:
            held: bytes | str | None = None
            while True:
                item = held if held is not None else await self._work.get()
                held = None
                if isinstance(item, bytes):
                    batch = [item]
                    while not self._work.empty():
                        queued = self._work.get_nowait()
                        if not isinstance(queued, bytes):
                            held = queued
                            break
                        batch.append(queued)
                    await asyncio.to_thread(self._utterance.feed, b"".join(batch))
                    continue
                if item == _START:
                    self._events.put_nowait(STTEvent(STTEventKind.SPEECH_STARTED))
                    continue
                text, duration = await asyncio.to_thread(self._utterance.finish)
                if item == _FINALIZE or text:
                    self._events.put_nowait(
                        STTEvent(
                            STTEventKind.FINAL,
                            text=text,
                            speech_final=item == _END,
                            duration_s=duration,
                        )
                    )
                if item == _END:
                    self._events.put_nowait(STTEvent(STTEventKind.UTTERANCE_END))
        except ProviderError as exc:
            self._events.put_nowait(exc)
        except Exception as exc:
            self._events.put_nowait(ProviderError(NAME, f"decoding failed: {exc!r}"))

    async def _open(self) -> None:
        await asyncio.to_thread(lambda: _pool.give_back(_pool.borrow()))
        self._task = asyncio.create_task(self._run(), name="pocketsphinx-session")

    async def _close(self) -> None:
        try:
            if self._task is not None:
                self._task.cancel()
                with suppress(asyncio.CancelledError):
                    await self._task
            # Bounded: a decoding call in flight finishes first (tens to hundreds of ms).
            with suppress(TimeoutError):
                await asyncio.wait_for(asyncio.to_thread(self._utterance.close), _CLOSE_TIMEOUT_S)
        finally:
            self._events.put_nowait(None)


class PocketSphinxSTT:
    name = NAME

    def __init__(self, config: STTConfig) -> None:
        if config.language.lower() not in ("en", "en-us"):
            raise ProviderError(NAME, f"only English is bundled, not {config.language!r}")
        self._cmn = _TELEPHONE_CMN  # phone calls are the common case

    def input_format(self, carrier: AudioFormat) -> AudioFormat:
        # The audio is upsampled either way; what the carrier sent tells which channel prior
        # fits (a provider object serves one call).
        self._cmn = _TELEPHONE_CMN if carrier.sample_rate < SAMPLE_RATE else _WIDEBAND_CMN
        return INPUT_FORMAT

    @asynccontextmanager
    async def session(self, fmt: AudioFormat) -> AsyncIterator[PocketSphinxSession]:
        if fmt != INPUT_FORMAT:
            raise ProviderError(NAME, f"expects {INPUT_FORMAT}, got {fmt}")
        session = PocketSphinxSession(self._cmn)
        await session._open()
        try:
            yield session
        finally:
            await session._close()
