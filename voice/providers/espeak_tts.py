"""Local text-to-speech with eSpeak NG, loaded from the ``espeakng-loader`` wheel by ctypes.

No Debian package and no network: the wheel ships ``libespeak-ng.so`` and its data.

Threading. libespeak-ng keeps one synthesizer per process in C globals (current voice,
rate, callback, output buffer); it is neither re-entrant nor safe to call from two threads.
So every synthesis in the process goes through one :class:`_Engine`, which owns the
library handle and a single dedicated worker thread that serializes requests. The engine
is the only module-level mutable state: created lazily under a lock on first use, never
torn down, and it holds no call data between requests (voice and rate are set per
request). eSpeak's own state does carry over, though: the same text synthesized twice in
one process can differ by a few milliseconds and in pitch contour (the first synthesis in
a fresh process is always the same). The cost of serializing is small because eSpeak is a
formant synthesizer:

Measured (2-core container, ``en-us`` at 175 wpm, 22050 Hz synthesis converted to mu-law
8 kHz; ``python -m bench.local_providers``):

- library initialisation ~2 ms; first ``SetVoiceByName`` ~16 ms, later ones ~0.2 ms (the
  engine skips the call when the voice is unchanged);
- real-time factor ~0.004 end to end (synthesis, resampling, encoding, queueing; the C
  synthesis alone is ~0.0015), so one worker thread keeps up with hundreds of concurrent
  replies;
- time to first audio for a short clause ~0.6-0.8 ms from ``push`` to the first chunk out
  of ``audio()``. Audio streams from the C callback in ~60 ms blocks while a clause is
  still being synthesized, and is re-cut into 40 ms chunks.

A process pool would buy parallelism we do not need at that speed, and cost a process per
core plus pickling every audio block.

Each pushed clause's audio ends with an empty chunk (the TTSContext boundary), so the
engine can put a carrier mark after every clause.

Cancellation: the synth callback checks the reply's cancel flag on every block and asks
eSpeak to abort, so a barge-in stops synthesis within one block; clauses not yet started
are dropped and anything already queued is discarded.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np

from voice.audio import Converter
from voice.config import AudioFormat, Encoding, TTSConfig
from voice.providers.base import ProviderError, owned_tasks
from voice.providers.registry import Kind, spec

NAME = "espeak"
DEFAULT_VOICE = spec(Kind.TTS, "espeak").default_voice
DEFAULT_WPM = 175  # eSpeak's own default rate
MIN_WPM, MAX_WPM = 80, 450  # eSpeak's accepted range
CHUNK_MS = 40

# espeak_AUDIO_OUTPUT / espeak_PARAMETER / flags, from speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_BUFFER_MS = 60
_PARAM_RATE = 1
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
# What a request's sink gets: a block of int16 samples at the native rate. Returns False to
# abort synthesis.
AudioSink = Callable[[np.ndarray], bool]


class _Engine:
    """The process's one eSpeak synthesizer and the one thread allowed to touch it."""

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        self._lib = lib
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak")
        # Touched only on the worker thread.
        self._sink: AudioSink | None = None
        self._voice = ""
        self._callback = _SynthCallback(self._on_audio)  # referenced: C holds a raw pointer
        self.sample_rate = self._thread.submit(
            self._initialize, espeakng_loader.get_data_path()
        ).result()

    def _initialize(self, data_path: str) -> int:
        rate: int = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data_path.encode(), 0
        )
        if rate <= 0:
            raise ProviderError(NAME, f"espeak_Initialize failed ({rate})")
        self._lib.espeak_SetSynthCallback(self._callback)
        return rate

    def _on_audio(self, wav: ctypes._Pointer[ctypes.c_short], count: int, _events: int) -> int:
        if not wav or count <= 0 or self._sink is None:
            return 0
        samples = np.ctypeslib.as_array(wav, shape=(count,)).copy()
        return 0 if self._sink(samples) else 1

    def _set_voice(self, voice: str) -> None:
        if voice != self._voice:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                self._voice = ""
                raise ProviderError(NAME, f"unknown voice {voice!r}")
            self._voice = voice

    def _synthesize(self, text: str, voice: str, wpm: int, sink: AudioSink) -> None:
        self._set_voice(voice)
        self._lib.espeak_SetParameter(_PARAM_RATE, wpm, 0)
        data = text.encode()
        self._sink = sink
        try:
            status = self._lib.espeak_Synth(
                data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
        finally:
            self._sink = None
        if status != _EE_OK:
            raise ProviderError(NAME, f"espeak_Synth failed ({status})")

    async def check_voice(self, voice: str) -> None:
        await asyncio.wrap_future(self._thread.submit(self._set_voice, voice))

    async def synthesize(self, text: str, *, voice: str, wpm: int, sink: AudioSink) -> None:
        """Synthesize one clause on the engine thread; ``sink`` runs there, per block."""
        await asyncio.wrap_future(self._thread.submit(self._synthesize, text, voice, wpm, sink))


_engine: _Engine | None = None
_engine_lock = threading.Lock()


def _get_engine() -> _Engine:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Engine()
        return _engine


def words_per_minute(speed: float) -> int:
    """Config speed (1.0 = normal) -> eSpeak rate, clamped to what eSpeak accepts."""
    return max(MIN_WPM, min(MAX_WPM, round(DEFAULT_WPM * speed)))


def _frames(buffer: bytearray, size: int) -> Iterator[bytes]:
    while len(buffer) >= size:
        yield bytes(buffer[:size])
        del buffer[:size]


@dataclass(slots=True)
class _Done:
    error: BaseException | None = None


class EspeakContext:
    """One reply. Clauses are synthesized in push order by a task of this context."""

    def __init__(
        self,
        engine: _Engine,
        fmt: AudioFormat,
        voice: str,
        wpm: int,
        tasks: asyncio.TaskGroup,
    ) -> None:
        self._engine = engine
        self._fmt = fmt
        self._native = AudioFormat(Encoding.PCM16, engine.sample_rate)
        self._voice = voice
        self._wpm = wpm
        self._chunk_bytes = fmt.bytes_for_ms(CHUNK_MS)
        self._clauses: asyncio.Queue[str | None] = asyncio.Queue()
        self._out: asyncio.Queue[bytes | _Done] = asyncio.Queue()
        self._cancelled = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._task = tasks.create_task(self._run(), name="espeak-context")

    async def push(self, text: str) -> None:
        if text.strip() and not self._cancelled.is_set():
            self._clauses.put_nowait(text)

    async def end_input(self) -> None:
        self._clauses.put_nowait(None)

    async def audio(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._out.get()
            if isinstance(item, _Done):
                if item.error is not None:
                    raise item.error
                return
            if self._cancelled.is_set():
                return
            yield item

    async def cancel(self) -> None:
        self.close()

    async def _run(self) -> None:
        try:
            while (text := await self._clauses.get()) is not None:
                await self._speak(text)
            self._out.put_nowait(_Done())
        except ProviderError as exc:
            self._out.put_nowait(_Done(exc))
        except Exception as exc:
            self._out.put_nowait(_Done(ProviderError(NAME, f"synthesis failed: {exc!r}")))

    async def _speak(self, text: str) -> None:
        # A fresh converter per clause, flushed at the clause's end, so a clause's audio is
        # complete as soon as it is synthesized instead of waiting in the resampler.
        converter = Converter(self._native, self._fmt)
        pending = bytearray()

        def sink(samples: np.ndarray) -> bool:  # on the engine thread
            if self._cancelled.is_set():
                return False
            pending.extend(converter.convert_samples(samples))
            try:
                for frame in _frames(pending, self._chunk_bytes):
                    self._loop.call_soon_threadsafe(self._out.put_nowait, frame)
            except RuntimeError:  # the call's loop is gone: nobody is listening
                return False
            return True

        await self._engine.synthesize(text, voice=self._voice, wpm=self._wpm, sink=sink)
        if self._cancelled.is_set():
            return
        # Only this task touches `pending` now: the engine thread finished the clause.
        pending.extend(converter.convert_samples(np.zeros(0, dtype=np.int16), last=True))
        for frame in _frames(pending, self._chunk_bytes):
            self._out.put_nowait(frame)
        if pending:  # whole samples: the converter only ever emits whole samples
            self._out.put_nowait(bytes(pending))
        self._out.put_nowait(b"")  # this clause's audio is complete (a mark goes here)

    def close(self) -> None:
        """Cancel without awaiting: also used when the connection closes under a reply."""
        if not self._cancelled.is_set():
            self._cancelled.set()
            self._task.cancel()
            self._out.put_nowait(_Done())


class EspeakConnection:
    def __init__(
        self, engine: _Engine, fmt: AudioFormat, voice: str, wpm: int, tasks: asyncio.TaskGroup
    ) -> None:
        self._engine = engine
        self._fmt = fmt
        self._voice = voice
        self._wpm = wpm
        self._tasks = tasks
        self._contexts: list[EspeakContext] = []

    def context(self) -> EspeakContext:
        self._contexts = [c for c in self._contexts if not c._task.done()]
        ctx = EspeakContext(self._engine, self._fmt, self._voice, self._wpm, self._tasks)
        self._contexts.append(ctx)
        return ctx

    def close(self) -> None:
        for ctx in self._contexts:
            ctx.close()
        self._contexts.clear()


class EspeakTTS:
    name = NAME

    def __init__(self, config: TTSConfig) -> None:
        self._voice = config.voice or DEFAULT_VOICE
        self._wpm = words_per_minute(config.speed)

    @asynccontextmanager
    async def connect(self, fmt: AudioFormat) -> AsyncIterator[EspeakConnection]:
        if fmt.channels != 1:
            raise ProviderError(NAME, "only mono output is supported")
        engine = await asyncio.to_thread(_get_engine)
        await engine.check_voice(self._voice)
        # Each reply's task lives in a task group this context owns: closing cancels them
        # and waits for them (a thread mid-clause stops at its next chunk).
        async with owned_tasks() as tasks:
            connection = EspeakConnection(engine, fmt, self._voice, self._wpm, tasks)
            try:
                yield connection
            finally:
                connection.close()
