"""Per-frame voice activity with hysteresis.

webrtcvad classifies fixed frames (10, 20 or 30 ms of PCM16 at 8/16/32/48 kHz). On top of
that, :class:`VoiceActivity` keeps a two-state machine::

    silent --(voiced frames for start_ms)--> speaking --(unvoiced frames for end_ms)--> silent

so a click does not start speech and a short pause between words does not end it.
(webrtcvad itself keeps reporting "voiced" for a few frames after a sound stops, so
``start_ms`` should exceed that hangover, ~80 ms at aggressiveness 2.) Input
chunks of any length are buffered into frames; the cost per 20 ms frame is one webrtcvad
call (a few microseconds).

``end_ms`` defaults to 200: that hangover (~100 ms for a tone) comes on top of it, and the
end of the user's turn waits for this detector, so 300 ms put the turn end ~400 ms after
the caller stopped, ~80 ms after Deepgram's own 300 ms endpointing final
(docs/benchmarks.md). A 200-300 ms pause without an STT ``speech_final`` still cannot end
the turn: the turn detector then waits its longer, halfway deadline.

Times are audio time (ms of audio processed since the detector was created), so results do
not depend on when the event loop got round to the frame; the caller maps them to its clock.

Where the sound really stopped. webrtcvad's hangover puts ``SPEECH_END.at_ms`` some 80-120
ms after the caller's last sound, which made the latency timeline ~100 ms optimistic
(issue 16). So the detector also keeps the level of the last ``_TAIL_FRAMES`` frames and,
at the end of speech, walks back from the last voiced frame to the last 5 ms window whose
level is within ``_TAIL_DB`` of the utterance's loudest frame and above the background
(``_FLOOR_MARGIN_DB`` over the quiet frames' running level): ``SPEECH_END.audible_end_ms``.
That is the audio clock's answer to "when did the caller stop", used by the timeline
only; the turn logic keeps ``at_ms``. The level costs one RMS per frame (~1.5 us, beside
webrtcvad's ~3 us; bench/voice_overhead.py).

Silero instead of webrtcvad (``turn.vad = "silero"``, issue 16): frames are Silero's 32 ms
windows (8 or 16 kHz), voiced when the speech probability reaches 0.5, or 0.35 while
already speaking (Silero's own hysteresis); the state machine above is the same. See
voice/silero.py for its cost.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
import webrtcvad

from voice.silero import WINDOW_MS as SILERO_FRAME_MS
from voice.silero import SileroStream

if TYPE_CHECKING:
    import onnxruntime as ort

SUPPORTED_RATES = (8000, 16000, 32000, 48000)
SUPPORTED_FRAME_MS = (10, 20, 30)
_TAIL_FRAMES = 32  # frames kept for the walk back: more than webrtcvad's hangover + end_ms
_WINDOW_MS = 5  # resolution of the audible end
_TAIL_DB = 40.0  # quieter than the loudest frame by more than this: the sound has stopped
_FLOOR_MARGIN_DB = 6.0
_FLOOR_ALPHA = 0.05  # running level of the quiet frames (exponential average)
SILERO_ON = 0.5  # speech probability that starts a voiced run
SILERO_HOLD = 0.35  # ... and that keeps one going


class VadEventKind(StrEnum):
    SPEECH_START = "speech-start"
    SPEECH_END = "speech-end"


@dataclass(frozen=True, slots=True)
class VadEvent:
    kind: VadEventKind
    # audio time of the transition: the first voiced frame of the run that started speech,
    # or the end of the last voiced frame before the silence that ended it
    at_ms: float
    # SPEECH_END only: the end of the caller's last audible sound, webrtcvad's hangover
    # removed (<= at_ms; see the module docstring)
    audible_end_ms: float | None = None


def level_db(samples: np.ndarray) -> float:
    """RMS level in dB over one LSB of 16-bit audio (digital silence: 0 dB). A float32
    dot product and scalar math: ~1.5 us for a 20 ms frame, where numpy's mean/sqrt/log10
    on arrays took ~15 us."""
    if not samples.size:
        return 0.0
    x = samples.astype(np.float32)
    return 20.0 * math.log10(math.sqrt(float(np.dot(x, x)) / x.size) + 1.0)


class VoiceActivity:
    """Voice activity for one audio stream (one per call)."""

    __slots__ = (
        "_buf",
        "_end_frames",
        "_floor_db",
        "_frame_bytes",
        "_frame_ms",
        "_peak_db",
        "_processed_ms",
        "_rate",
        "_run",
        "_silero",
        "_speaking",
        "_speech_start_ms",
        "_start_frames",
        "_tail",
        "_vad",
        "_voiced_end_ms",
    )

    def __init__(
        self,
        sample_rate: int,
        *,
        frame_ms: int = 20,
        aggressiveness: int = 2,
        start_ms: int = 120,
        end_ms: int = 200,
        silero: ort.InferenceSession | None = None,
    ) -> None:
        """``silero``: the process's Silero session (voice.silero.shared_model) to classify
        frames with instead of webrtcvad; frames are then 32 ms and ``aggressiveness`` is
        unused."""
        if sample_rate not in SUPPORTED_RATES:
            raise ValueError(f"VAD sample rate must be one of {SUPPORTED_RATES}, not {sample_rate}")
        self._silero: SileroStream | None = None
        if silero is not None:
            self._silero = SileroStream(silero, sample_rate)
            frame_ms = SILERO_FRAME_MS
        elif frame_ms not in SUPPORTED_FRAME_MS:
            raise ValueError(f"VAD frame must be one of {SUPPORTED_FRAME_MS} ms, not {frame_ms}")
        self._vad = webrtcvad.Vad(aggressiveness)
        self._rate = sample_rate
        self._frame_ms = frame_ms
        self._frame_bytes = sample_rate * frame_ms // 1000 * 2
        self._start_frames = max(1, -(-start_ms // frame_ms))
        self._end_frames = max(1, -(-end_ms // frame_ms))
        self._buf = bytearray()
        self._processed_ms = 0.0
        self._speaking = False
        self._run = 0  # consecutive frames disagreeing with the current state
        self._speech_start_ms = 0.0
        self._voiced_end_ms = 0.0
        # (end of frame in audio ms, frame, level dB) of the latest frames
        self._tail: deque[tuple[float, bytes, float]] = deque(maxlen=_TAIL_FRAMES)
        self._peak_db = 0.0  # loudest frame of the current speech
        self._floor_db: float | None = None  # running level of the quiet frames

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def processed_ms(self) -> float:
        return self._processed_ms

    def speech_ms(self) -> float:
        """How long the current speech has been voiced (0 when silent): up to its last
        voiced frame, so the silence before ``end_ms`` ends it does not count as speech."""
        return self._voiced_end_ms - self._speech_start_ms if self._speaking else 0.0

    def quiet_ms(self) -> float:
        """How long the current speech has been unvoiced (0 when silent): a pause the
        hysteresis has not yet called the end of speech."""
        return self._processed_ms - self._voiced_end_ms if self._speaking else 0.0

    def process(self, pcm16: bytes) -> list[VadEvent]:
        """Feed PCM16 little-endian mono audio; return the transitions it caused."""
        self._buf += pcm16
        events: list[VadEvent] = []
        size = self._frame_bytes
        while len(self._buf) >= size:
            frame = bytes(self._buf[:size])
            del self._buf[:size]
            if self._silero is None:
                voiced = self._vad.is_speech(frame, self._rate)
            else:
                hold = SILERO_HOLD if self._speaking else SILERO_ON
                voiced = self._silero.probability(frame) >= hold
            self._processed_ms += self._frame_ms
            self._track_level(frame, voiced)
            event = self._step(voiced)
            if event is not None:
                events.append(event)
        return events

    def _step(self, voiced: bool) -> VadEvent | None:
        if voiced:
            self._voiced_end_ms = self._processed_ms
        if voiced != self._speaking:
            self._run += 1
        else:
            self._run = 0
        if not self._speaking and self._run >= self._start_frames:
            self._speaking = True
            self._run = 0
            self._speech_start_ms = self._processed_ms - self._start_frames * self._frame_ms
            return VadEvent(VadEventKind.SPEECH_START, self._speech_start_ms)
        if self._speaking and self._run >= self._end_frames:
            self._speaking = False
            self._run = 0
            event = VadEvent(VadEventKind.SPEECH_END, self._voiced_end_ms, self._audible_end())
            self._peak_db = 0.0
            return event
        return None

    def _track_level(self, frame: bytes, voiced: bool) -> None:
        level = level_db(np.frombuffer(frame, dtype="<i2"))
        self._tail.append((self._processed_ms, frame, level))
        if voiced:
            self._peak_db = max(self._peak_db, level)
        elif not self._speaking:
            floor = self._floor_db
            self._floor_db = level if floor is None else floor + _FLOOR_ALPHA * (level - floor)

    def _audible_end(self) -> float:
        """Walk back from the last voiced frame to the last window with sound in it."""
        threshold = self._peak_db - _TAIL_DB
        if self._floor_db is not None:
            threshold = max(threshold, self._floor_db + _FLOOR_MARGIN_DB)
        window = self._rate * _WINDOW_MS // 1000 * 2
        earliest = self._voiced_end_ms
        for end_ms, frame, level in reversed(self._tail):
            if end_ms > self._voiced_end_ms:
                continue
            earliest = end_ms - self._frame_ms
            if level < threshold:
                continue
            samples = np.frombuffer(frame, dtype="<i2")
            windows = len(frame) // window
            for i in range(windows - 1, -1, -1):
                chunk = samples[i * window // 2 : (i + 1) * window // 2]
                if level_db(chunk) >= threshold:
                    return end_ms - self._frame_ms + (i + 1) * _WINDOW_MS
            return end_ms
        # No loud frame kept (a very long hangover): the oldest kept frame is the bound.
        return earliest
