"""Test audio: a voiced tone the fakes' energy detectors hear as speech, and silence."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from voice.audio import decode, encode
from voice.config import AudioFormat


def tone(seconds: float, fmt: AudioFormat, *, hz: float = 300.0, amplitude: int = 8000) -> bytes:
    n = int(seconds * fmt.sample_rate)
    t = np.arange(n) / fmt.sample_rate
    return encode((np.sin(2 * np.pi * hz * t) * amplitude).astype(np.int16), fmt.encoding)


def silence(seconds: float, fmt: AudioFormat) -> bytes:
    return encode(np.zeros(int(seconds * fmt.sample_rate), dtype=np.int16), fmt.encoding)


def frames(audio: bytes, fmt: AudioFormat, ms: int = 20) -> Iterator[bytes]:
    """Split into carrier-sized frames (20 ms = 160 bytes of 8 kHz G.711)."""
    size = fmt.bytes_for_ms(ms)
    for i in range(0, len(audio), size):
        yield audio[i : i + size]


def rms(audio: bytes, fmt: AudioFormat) -> float:
    samples = decode(audio, fmt.encoding).astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0


# An MP3 decoder's output lags the encoder's input by LAME's encoder delay (576 samples)
# plus the decoder's own (529) plus one, and ends with the last frame's padding: measured
# at 8 kHz (MPEG-2.5), where call recordings are made.
MP3_DELAY_8K = 1106


def read_mp3(source: Any) -> tuple[np.ndarray, int]:
    """A recording's int16 samples (frames x channels) realigned to the call's timeline,
    and its sample rate. ``source``: a path or a binary file object."""
    import soundfile

    data, rate = soundfile.read(source, dtype="int16", always_2d=True)
    assert rate == 8000, rate
    return data[MP3_DELAY_8K:], rate
