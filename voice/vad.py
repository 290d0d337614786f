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
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import webrtcvad

SUPPORTED_RATES = (8000, 16000, 32000, 48000)
SUPPORTED_FRAME_MS = (10, 20, 30)


class VadEventKind(StrEnum):
    SPEECH_START = "speech-start"
    SPEECH_END = "speech-end"


@dataclass(frozen=True, slots=True)
class VadEvent:
    kind: VadEventKind
    # audio time of the transition: the first voiced frame of the run that started speech,
    # or the end of the last voiced frame before the silence that ended it
    at_ms: float


class VoiceActivity:
    """Voice activity for one audio stream (one per call)."""

    __slots__ = (
        "_buf",
        "_end_frames",
        "_frame_bytes",
        "_frame_ms",
        "_processed_ms",
        "_rate",
        "_run",
        "_speaking",
        "_speech_start_ms",
        "_start_frames",
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
    ) -> None:
        if sample_rate not in SUPPORTED_RATES:
            raise ValueError(f"VAD sample rate must be one of {SUPPORTED_RATES}, not {sample_rate}")
        if frame_ms not in SUPPORTED_FRAME_MS:
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
            voiced = self._vad.is_speech(frame, self._rate)
            self._processed_ms += self._frame_ms
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
            return VadEvent(VadEventKind.SPEECH_END, self._voiced_end_ms)
        return None
