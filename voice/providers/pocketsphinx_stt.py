"""Local offline speech recognition with PocketSphinx and the English model its wheel ships.

"Streaming by utterance": pocketsphinx's own ``Endpointer`` (a WebRTC-style VAD with a
0.3 s decision window) splits the incoming audio into utterances on the event loop (a few
microseconds per 30 ms frame). Speech is fed to the session's decoder as it arrives, so
when the endpointer says the utterance is over only the final search remains. Events:
SPEECH_STARTED when the endpointer enters speech; FINAL (``speech_final=True``) then
UTTERANCE_END when it leaves speech; no INTERIM. ``finalize()`` ends the utterance in
progress at once and always answers with exactly one FINAL (``speech_final=False``,
possibly empty text), like Deepgram's Finalize; speech the endpointer still holds in its
window then starts a new utterance. An utterance longer than 30 s is cut into FINALs with
``speech_final=False``. All events come out in audio order. ``confidence`` stays 0.0
(unknown): without lattice rescoring pocketsphinx's posterior is always 1.0.

Input is PCM16 at 16 kHz whatever the carrier sends. The bundled acoustic model is
wideband: its ``feat.params`` fixes the filterbank at 130-6800 Hz, and pocketsphinx
refuses ``samprate=8000`` with it ("Upper frequency 6800.0 is higher than samprate/2"), so
telephone audio is upsampled to 16 kHz (the band above 4 kHz is simply empty).

One decoder process per session. The pocketsphinx bindings hold the GIL while decoding
(measured: a 15 s utterance decoded in ``asyncio.to_thread`` froze the event loop for
12.8 s), so threads do not get decoding off the loop; a process does (same utterance: the
loop's longest stall was 18 ms, on a machine at load 7). ``_sphinx_worker.py`` runs as a
script, reading audio from a pipe; the session starts it on open (so the load overlaps
the greeting) and ends it on close, within ``_STOP_TIMEOUT_S``. Nothing is shared between
calls and there is no module-level state. The price: each call pays a process start and
a model load (~0.5 s for the decoder alone, ~0.6-1.1 s for the whole process), and holds
~100 MB for its duration (the decoder is ~90 MB of RSS; a second decoder costs as much
again: pocketsphinx does not share the model). A pool of pinned, pre-loaded worker
processes would remove the start-up cost; this provider is the offline default for demos
and tests, so we keep it simple. (A ``ProcessPoolExecutor`` cannot pin a session's
utterance to one worker, so it would mean decoding whole utterances at their end; and
its spawned children re-import ``__main__``, which breaks unguarded scripts.)

Channel normalization. Accuracy hinges on the cepstral mean the decoder subtracts. The
model's default initial mean (40,3,-1,...) is far from a telephone channel: the first
utterance of a fresh decoder came out as "i need help with like you" for "I need help with
my computer", and only later utterances, once the running mean had adapted, were right.
So the session's decoder starts from a prior chosen by the carrier's rate, the model
default for wideband audio or a telephone prior estimated by decoding eight eSpeak
sentences over mu-law 8 kHz (held-out sentences then decode well on the first try), and
adapts from there across the call. That prior is fitted to a synthetic voice; real callers
move it within an utterance or two.

Measured (2-core container, eSpeak speech over mu-law 8 kHz, ``python -m
bench.local_providers``): decoding real-time factor ~0.25-0.35 for 1.6-2.7 s utterances
and ~0.5 for a 7 s one on a quiet machine (0.4-0.7 with other jobs running), one core per
talking caller; after the endpointer's last frame the final search (forward-flat second
pass and best path) adds ~100-130 ms for a 1.6 s utterance, ~150-190 ms for 2.7 s and
~500-850 ms for 7 s. Turning the
second pass off (``fwdflat=no``) cuts that to 6-30 ms but loses words ("book an
appointment" -> "book appointments"); we keep it on. Accuracy is rough: "I need help with
my computer" and "... for tomorrow morning" come out right, "What is the weather like
today?" -> "what the weather like the day", "I want to cancel my order" -> "one can
order".
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voice.config import AudioFormat, Encoding, STTConfig
from voice.providers.base import ProviderError, STTEvent, STTEventKind, owned_tasks
from voice.vad import level_db

NAME = "pocketsphinx"
SAMPLE_RATE = 16000
INPUT_FORMAT = AudioFormat(Encoding.PCM16, SAMPLE_RATE)
_WORKER_SCRIPT = Path(__file__).with_name("_sphinx_worker.py")
_MAX_UTTERANCE_BYTES = INPUT_FORMAT.bytes_for_ms(30_000)
_START_TIMEOUT_S = 30.0  # a Python process importing pocketsphinx and loading the model
_DECODE_TIMEOUT_S = 30.0  # the final search of an utterance of at most 30 s
_STOP_TIMEOUT_S = 2.0
# Initial cepstral means (see the module docstring).
_WIDEBAND_CMN = "40,3,-1,0,0,0,0,0,0,0,0,0,0"
_TELEPHONE_CMN = "62.7,3.24,-4.18,20.66,-9.95,5.95,-10.10,-4.54,-21.22,4.28,-2.00,2.49,-9.03"


# What the endpointer hands the decoding task, besides speech audio. Speech start goes
# through the same queue so that events come out in audio order: the next utterance's
# SPEECH_STARTED never overtakes the previous utterance's FINAL while that is decoding.
_START = "start"  # the speaker started (VAD)
_END = "end"  # the speaker stopped (VAD)
_FINALIZE = "finalize"  # the engine asked for the text now
_END_HANGOVER = "end-hangover"  # the speaker stopped; nothing was said since the finalize


@dataclass(frozen=True, slots=True)
class Speech:
    """Speech audio the endpointer let through, with where it stands in its utterance."""

    audio: bytes
    started: bool  # the utterance's first audio (the endpointer entered speech)
    ended: bool  # its last (the endpointer left speech)


# A continuation after a finalize has speech in it when at least this much of it is
# within this many dB of the finalized audio's loudest 20 ms window.
_CONTINUATION_DB = 25.0
_CONTINUATION_MS = 100
_LEVEL_WINDOW = INPUT_FORMAT.bytes_for_ms(20)


def _levels_db(pcm16: bytes) -> list[float]:
    """voice.vad's level of each whole 20 ms window."""
    samples = np.frombuffer(pcm16[: len(pcm16) // _LEVEL_WINDOW * _LEVEL_WINDOW], dtype="<i2")
    step = _LEVEL_WINDOW // 2
    return [level_db(samples[i : i + step]) for i in range(0, samples.size, step)]


def goes_on(before: bytes, after: bytes) -> bool:
    """Whether the audio after a finalize holds more speech, not just the hangover."""
    peak = max(_levels_db(before), default=None)
    if peak is None:
        return True
    loud = sum(1 for level in _levels_db(after) if level >= peak - _CONTINUATION_DB)
    return loud * 20 >= _CONTINUATION_MS


class Segmenter:
    """pocketsphinx's ``Endpointer`` over audio in chunks of any size: whole frames go
    through it, the remainder waits for the next chunk. The Whisper provider splits
    utterances with it too.

    The endpointer decides over a window of frames, so in speech it gives each frame back
    ``window - 1`` frames after it was fed: the last ~270 ms the caller said are still
    inside it. :meth:`take_held` hands them over now (a finalize asked for everything said
    so far) and drops them when the endpointer gives them back."""

    def __init__(self, sample_rate: int) -> None:
        from pocketsphinx import Endpointer

        self._endpointer = Endpointer(sample_rate=sample_rate)
        self._frame_bytes: int = self._endpointer.frame_bytes
        self._buffer = bytearray()
        lag = round(Endpointer.DEFAULT_WINDOW / self._endpointer.frame_length) - 1
        self._recent: deque[bytes] = deque(maxlen=lag)  # the last frames fed
        self._skip = 0  # frames already handed over by take_held, still to come out

    @property
    def in_speech(self) -> bool:
        return bool(self._endpointer.in_speech)

    def take_held(self) -> bytes:
        """The audio fed that the endpointer still holds back (in speech; else none)."""
        if not self._endpointer.in_speech:
            return b""
        held = list(self._recent)[self._skip :]
        self._skip += len(held)
        return b"".join(held)

    def speech(self, audio: bytes) -> Iterator[Speech]:
        self._buffer.extend(audio)
        usable = len(self._buffer) // self._frame_bytes * self._frame_bytes
        if not usable:
            return
        frames = bytes(self._buffer[:usable])
        del self._buffer[:usable]
        # The endpointer is a few microseconds per 30 ms frame: fine on the loop.
        for start in range(0, usable, self._frame_bytes):
            frame = frames[start : start + self._frame_bytes]
            self._recent.append(frame)
            was_in_speech = self._endpointer.in_speech
            speech = self._endpointer.process(frame)
            if speech is None:
                continue
            ended = not self._endpointer.in_speech
            if self._skip:  # handed over already
                self._skip -= 1
                speech = b""
            if ended:
                self._skip = 0
            yield Speech(speech, started=not was_in_speech, ended=ended)


class _Worker:
    """The session's decoder process (``_sphinx_worker.py``) and its pipe protocol."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        assert process.stdin is not None and process.stdout is not None
        self._stdin = process.stdin
        self._stdout = process.stdout

    @classmethod
    async def start(cls, cmn: str) -> _Worker:
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(_WORKER_SCRIPT),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise ProviderError(NAME, f"cannot start the decoder process: {exc}") from exc
        worker = cls(process)
        try:
            await worker._receive(_START_TIMEOUT_S)
            await worker._send(b"C", cmn.encode())
        except BaseException:
            await worker.stop()
            raise
        return worker

    async def feed(self, audio: bytes) -> None:
        await self._send(b"A", audio)

    async def finish(self) -> str:
        await self._send(b"F", b"")
        text: str = (await self._receive(_DECODE_TIMEOUT_S))["text"]
        return text

    async def stop(self) -> None:
        if self._process.returncode is not None:
            return
        self._stdin.close()  # end of input: the worker exits
        try:
            await asyncio.wait_for(self._process.wait(), _STOP_TIMEOUT_S)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()

    async def _send(self, op: bytes, payload: bytes) -> None:
        try:
            self._stdin.write(struct.pack(">cI", op, len(payload)) + payload)
            await self._stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise ProviderError(NAME, f"the decoder process went away: {exc!r}") from exc

    async def _receive(self, timeout_s: float) -> dict[str, Any]:
        try:
            header = await asyncio.wait_for(self._stdout.readexactly(4), timeout_s)
            (size,) = struct.unpack(">I", header)
            body = await asyncio.wait_for(self._stdout.readexactly(size), timeout_s)
        except asyncio.IncompleteReadError as exc:
            code = await self._process.wait()
            raise ProviderError(NAME, f"the decoder process exited ({code})") from exc
        except TimeoutError as exc:
            raise ProviderError(
                NAME, f"the decoder process did not answer in {timeout_s}s"
            ) from exc
        message: dict[str, Any] = json.loads(body)
        return message


class PocketSphinxSession:
    def __init__(self, worker: _Worker, tasks: asyncio.TaskGroup) -> None:
        self._segmenter = Segmenter(SAMPLE_RATE)
        self._work: asyncio.Queue[bytes | str] = asyncio.Queue()
        self._events: asyncio.Queue[STTEvent | BaseException | None] = asyncio.Queue()
        self._worker = worker
        # the segment's audio since it started or since a finalize took it, and what a
        # finalize mid-speech took (see finalize)
        self._segment = bytearray()
        self._finalized = b""
        self._task = tasks.create_task(self._run(), name="pocketsphinx-session")

    async def send_audio(self, audio: bytes) -> None:
        for speech in self._segmenter.speech(audio):
            if speech.started:
                self._segment.clear()
                self._finalized = b""
                self._work.put_nowait(_START)
            self._work.put_nowait(speech.audio)
            if len(self._segment) < _MAX_UTTERANCE_BYTES:
                self._segment.extend(speech.audio)
            if speech.ended:
                after = self._finalized and not goes_on(self._finalized, bytes(self._segment))
                self._work.put_nowait(_END_HANGOVER if after else _END)

    async def finalize(self) -> None:
        """Decode what was said so far, the audio the endpointer still holds included. In
        mid-speech, what follows in the segment is a continuation: only the endpointer's
        hangover (pocketsphinx_stt.goes_on) gives no second FINAL (as whisper_stt)."""
        held = self._segmenter.take_held()
        if held:
            self._work.put_nowait(held)
            self._segment.extend(held)
        if self._segmenter.in_speech:
            self._finalized = bytes(self._segment)
            self._segment.clear()
        self._work.put_nowait(_FINALIZE)

    async def events(self) -> AsyncIterator[STTEvent]:
        while (item := await self._events.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    async def _run(self) -> None:
        fed = 0  # bytes of speech in the open utterance
        try:
            held: bytes | str | None = None
            while True:
                item = held if held is not None else await self._work.get()
                held = None
                if isinstance(item, bytes):
                    # One pipe write for whatever speech queued up meanwhile.
                    batch = [item]
                    while not self._work.empty():
                        queued = self._work.get_nowait()
                        if not isinstance(queued, bytes):
                            held = queued
                            break
                        batch.append(queued)
                    audio = b"".join(batch)
                    await self._worker.feed(audio)
                    fed += len(audio)
                    if fed < _MAX_UTTERANCE_BYTES:
                        continue
                    item = _FINALIZE  # a monologue: transcribe what we have so far
                if item == _START:
                    self._events.put_nowait(STTEvent(STTEventKind.SPEECH_STARTED))
                    continue
                text = await self._worker.finish()
                if item == _END_HANGOVER:
                    text, item = "", _END
                if item == _FINALIZE or text:
                    self._events.put_nowait(
                        STTEvent(
                            STTEventKind.FINAL,
                            text=text,
                            speech_final=item == _END,
                        )
                    )
                fed = 0
                if item == _END:
                    self._events.put_nowait(STTEvent(STTEventKind.UTTERANCE_END))
        except ProviderError as exc:
            self._events.put_nowait(exc)
        except Exception as exc:
            self._events.put_nowait(ProviderError(NAME, f"decoding failed: {exc!r}"))

    async def _close(self) -> None:
        try:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            await self._worker.stop()
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
        worker = await _Worker.start(self._cmn)
        # The session's task lives in a task group this context owns: it ends with it.
        async with owned_tasks() as tasks:
            try:
                session = PocketSphinxSession(worker, tasks)
            except BaseException:
                await worker.stop()
                raise
            try:
                yield session
            finally:
                await session._close()
