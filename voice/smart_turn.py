"""End of turn by model: Smart Turn v3 asked whether the caller's speech sounds finished.

The model is Daily's Smart Turn v3.2 (BSD-2), the ONNX file the ``pipecat-ai`` wheel
ships (``pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx``, 8.7 MB). That
wheel is installed without its dependencies (requirements-nodeps.txt) and never
imported: only the file is read, found through the package's metadata, so nothing is
downloaded at run time and none of pipecat's code runs here.

Input, as pipecat's ``LocalSmartTurnAnalyzerV3`` prepares it: mono 16 kHz audio of the
turn so far, its last 8 s (zero-padded in front when shorter), normalized to zero mean
and unit variance, then Whisper's 80-bin log-mel features (400-point FFT, hop 160: 80 x
800), computed with faster-whisper's numpy ``FeatureExtractor`` (matches pipecat's own
vendored extractor to 2e-7; see :meth:`SmartTurn._log_mel`). Output: the probability
that the turn is complete; above 0.5 it is.

Cost: ~30 ms of CPU per question on one core (bench/eot.py). So the engine asks only when
the caller goes quiet, never per frame, and off the event loop: one session per process
(ONNX Runtime sessions are thread-safe), shared by every call, run on a small thread pool.
Each question is bounded by ``timeout_s``; a late or failed answer is ``None`` and the
rules decide that pause alone.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata

import numpy as np
import soxr

log = logging.getLogger(__name__)

MODEL_RATE = 16000
WINDOW_S = 8
THRESHOLD = 0.5
# Asked ~40 ms into a pause; the VAD calls the end of speech ~160 ms later, so an answer
# within this does not delay the turn. Under load, a slower answer is not waited for.
TIMEOUT_S = 0.3
WORKERS = 2
_PACKAGE = "pipecat-ai"
_MODEL_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"


def model_path() -> str:
    """The ONNX file inside the installed ``pipecat-ai`` distribution (not imported)."""
    path = metadata.distribution(_PACKAGE).locate_file(_MODEL_FILE)
    return str(path)


class SmartTurn:
    """The process's Smart Turn model (see the module docstring)."""

    def __init__(self, path: str, *, workers: int = WORKERS) -> None:
        import onnxruntime as ort  # here: ~20 MB per process, only where the model runs
        from faster_whisper.feature_extractor import FeatureExtractor

        options = ort.SessionOptions()
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1  # one core per question; parallelism from workers
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # no busy-waiting for the next question between the rare ones
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._features = FeatureExtractor(chunk_length=WINDOW_S)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="smart-turn")
        self._lock = threading.Lock()
        # for the bench and the logs: questions answered and their CPU time
        self.runs = 0
        self.cpu_s = 0.0
        self.probability(np.zeros(MODEL_RATE // 10, dtype=np.int16), MODEL_RATE)  # warm up

    def probability(self, pcm16: np.ndarray, rate: int) -> float:
        """Blocking: the probability that ``pcm16`` (the turn so far) is a finished turn."""
        started = time.thread_time()
        audio = pcm16.astype(np.float32) * (1.0 / 32768.0)
        if rate != MODEL_RATE:
            audio = soxr.resample(audio, rate, MODEL_RATE, quality="HQ")
        size = WINDOW_S * MODEL_RATE
        audio = audio[-size:]
        audio = np.pad(audio, (size - audio.size, 0))
        audio = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
        (out,) = self._session.run(None, {"input_features": self._log_mel(audio)[None]})
        with self._lock:
            self.runs += 1
            self.cpu_s += time.thread_time() - started
        return float(np.asarray(out).reshape(-1)[0])

    def _log_mel(self, audio: np.ndarray) -> np.ndarray:
        """faster-whisper's ``FeatureExtractor.__call__`` (no padding), but for the mel
        projection: ``einsum`` instead of ``@``. The matrix product went to OpenBLAS,
        whose worker threads then spin waiting for more work: measured, the process spent
        ~80 ms of CPU per question against the ~30 ms the question took itself."""
        fe = self._features
        window = np.hanning(fe.n_fft + 1)[:-1].astype(np.float32)
        stft = fe.stft(
            audio.astype(np.float32), fe.n_fft, fe.hop_length, window=window, return_complex=True
        ).astype(np.complex64)
        power = (np.abs(stft[..., :-1]) ** 2).astype(np.float32)
        mel = np.einsum("ij,jk->ik", fe.mel_filters, power, optimize=False)
        log_spec = np.log10(np.maximum(mel, 1e-10))
        log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
        features: np.ndarray = ((log_spec + 4.0) / 4.0).astype(np.float32)
        return features

    async def complete(
        self, pcm16: np.ndarray, rate: int, *, timeout_s: float = TIMEOUT_S
    ) -> bool | None:
        """Whether the turn sounds finished; ``None`` if the model did not answer in time
        (a question still queued is dropped) or failed."""
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._pool, self.probability, pcm16, rate)
            p = await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            log.info("smart turn: no answer within %g s; the rules decide", timeout_s)
            return None
        except Exception as exc:  # the rules decide; never end a call over this
            log.warning("smart turn failed: %r; the rules decide", exc)
            return None
        return p > THRESHOLD


_models: list[SmartTurn] = []
_models_lock = threading.Lock()


def shared_model() -> SmartTurn:
    """The process's model, loaded on first use (blocking, ~0.1 s: call it off the event
    loop). Raises if the ``pipecat-ai`` package (the weights) is not installed."""
    with _models_lock:
        if not _models:
            _models.append(SmartTurn(model_path()))
        return _models[0]


async def load(timeout_s: float = 10.0) -> SmartTurn | None:
    """The shared model, loaded off the event loop; ``None`` (the rules decide) if it
    cannot be loaded."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(shared_model), timeout_s)
    except Exception as exc:  # missing package, unreadable file: the rules decide
        log.warning("smart turn model unavailable (%r): the rules decide", exc)
        return None
