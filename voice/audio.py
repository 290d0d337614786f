"""Audio codecs and streaming conversion.

G.711 by lookup tables (numpy), resampling by soxr's streaming resampler. No ``audioop``:
it is gone from Python 3.13.
"""

from __future__ import annotations

import numpy as np
import soxr

from voice.config import AudioFormat, Encoding


def _mulaw_decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


def _mulaw_encode_table() -> np.ndarray:
    """Encoder for every 16-bit sample value, indexed by ``sample + 32768``."""
    pcm = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(pcm < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(pcm), 32635) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    codes: np.ndarray = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return codes


def _alaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(pcm >= 0, 0x80, 0)
    magnitude = np.minimum(np.where(pcm >= 0, pcm, -pcm - 1), 32767) >> 3
    exponent = np.where(magnitude < 32, 0, np.floor(np.log2(np.maximum(magnitude, 1))) - 4)
    exponent = exponent.astype(np.int32)
    mantissa = np.where(exponent == 0, magnitude >> 1, magnitude >> exponent) & 0x0F
    codes: np.ndarray = ((sign | (exponent << 4) | mantissa) ^ 0x55).astype(np.uint8)
    return codes


_MULAW_DECODE = _mulaw_decode_table()
_ALAW_DECODE = _alaw_decode_table()
_MULAW_ENCODE = _mulaw_encode_table()
_ALAW_ENCODE = _alaw_encode_table()


def decode(payload: bytes, encoding: Encoding) -> np.ndarray:
    """Bytes in ``encoding`` -> int16 samples."""
    if encoding is Encoding.PCM16:
        return np.frombuffer(payload[: len(payload) // 2 * 2], dtype="<i2")
    table = _MULAW_DECODE if encoding is Encoding.MULAW else _ALAW_DECODE
    return table[np.frombuffer(payload, dtype=np.uint8)]


def encode(samples: np.ndarray, encoding: Encoding) -> bytes:
    """int16 samples -> bytes in ``encoding``."""
    if encoding is Encoding.PCM16:
        return samples.astype("<i2", copy=False).tobytes()
    table = _MULAW_ENCODE if encoding is Encoding.MULAW else _ALAW_ENCODE
    return table[samples.astype(np.int32) + 32768].tobytes()


class Converter:
    """Streaming conversion between two formats; keeps resampler state across chunks.

    One per direction per call. Identity conversions cost nothing.
    """

    __slots__ = ("_dst", "_resampler", "_src")

    def __init__(self, src: AudioFormat, dst: AudioFormat) -> None:
        if src.channels != 1 or dst.channels != 1:
            raise ValueError("only mono audio is supported")
        self._src = src
        self._dst = dst
        self._resampler = (
            soxr.ResampleStream(src.sample_rate, dst.sample_rate, 1, dtype="int16", quality="QQ")
            if src.sample_rate != dst.sample_rate
            else None
        )

    def convert(self, payload: bytes, *, last: bool = False) -> bytes:
        if self._resampler is None and self._src.encoding is self._dst.encoding:
            return payload
        samples = decode(payload, self._src.encoding)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=last)
        return encode(samples, self._dst.encoding)

    def convert_samples(self, samples: np.ndarray, *, last: bool = False) -> bytes:
        """int16 samples at the source rate -> bytes in the destination format."""
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=last)
        return encode(samples, self._dst.encoding)
