"""What recording a call costs, per call (voice/recording.py), on a clock the bench moves.

A call of M minutes is fed as a carrier would: a caller frame every 20 ms (speech tones
and silence), an agent reply of 3 s every 8 s sent at once (as a fast TTS does), every
third one cut by a barge-in. The writer thread encodes as it goes. Measured, per call
length, in one process so the ratios hold:

- peak memory the recording holds (Python's allocator, tracemalloc) and the samples it
  buffers: flat in the call's length;
- event-loop CPU per call-minute (placing audio on the timeline) and writer-thread CPU
  per call-minute (MP3 encoding, off the loop);
- the MP3's size per minute.

    python -m bench.recording                  # 1, 5 and 20 minute calls, dual and mono
    python -m bench.recording --minutes 1 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from voice.audio import encode
from voice.config import TWILIO_FORMAT, Encoding, RecordingMode
from voice.recording import CallRecording, Encoder, RecordedAudio

FRAME = 160  # 20 ms of 8 kHz mu-law


def _tone(seconds: float, hz: float) -> bytes:
    t = np.arange(int(seconds * 8000)) / 8000
    return encode((np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16), Encoding.MULAW)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Sink:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def scratch_path(self) -> Path:
        return self.directory / "bench.mp3"

    async def store(self, audio: RecordedAudio) -> None:
        pass


class TimedEncoder(Encoder):
    """The real encoder, timing its own work (on the writer thread)."""

    spent_s = 0.0

    def write(self, block: np.ndarray) -> None:
        started = time.thread_time()
        super().write(block)
        TimedEncoder.spent_s += time.thread_time() - started


async def one_call(
    minutes: float, mode: RecordingMode, directory: Path, *, trace: bool
) -> dict[str, Any]:
    """One call; with ``trace`` its memory is measured (tracemalloc slows every
    allocation, so times come from a run without it)."""
    import voice.recording as recording_module

    clock = Clock()
    sink = Sink(directory)
    speech = _tone(1.5, 200)
    reply = _tone(3.0, 440)
    silence = b"\xff" * FRAME
    original = recording_module.Encoder
    recording_module.Encoder = TimedEncoder  # type: ignore[misc]
    TimedEncoder.spent_s = 0.0
    if trace:
        tracemalloc.start()
    try:
        recording = CallRecording(mode, TWILIO_FORMAT, sink, clock=clock)
        writer = asyncio.create_task(recording.run())
        loop_s = 0.0
        peak_buffered = 0
        frames = int(minutes * 60 * 50)
        for i in range(frames):
            second, frame = divmod(i, 50)
            in_cycle = second % 8
            if in_cycle < 2 and i % 50 * FRAME < len(speech):  # the caller speaks
                offset = (second % 8 * 50 + frame) * FRAME % len(speech)
                payload = speech[offset : offset + FRAME] or silence
            else:
                payload = silence
            started = time.perf_counter()
            recording.caller(payload, i * 20)
            if in_cycle == 3 and frame == 0:
                recording.agent(reply)
            if in_cycle == 4 and frame == 25 and second // 8 % 3 == 2:
                recording.cleared()
            loop_s += time.perf_counter() - started
            clock.t += 0.02
            if frame == 49:
                peak_buffered = max(peak_buffered, recording.buffered_samples)
                await asyncio.sleep(0)
                # let the writer keep up, as it does in a call's real time
                while recording._queue.qsize() > 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
        recording.end()
        audio = await writer
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
    finally:
        if trace:
            tracemalloc.stop()
        recording_module.Encoder = original  # type: ignore[misc]
    assert audio is not None
    size = audio.path.stat().st_size
    return {
        "mode": str(mode),
        "minutes": minutes,
        "peak_traced_kb": round(peak / 1024, 1),
        "peak_buffered_samples": peak_buffered,
        "loop_ms_per_call_minute": round(loop_s * 1000 / minutes, 2),
        "encode_ms_per_call_minute": round(TimedEncoder.spent_s * 1000 / minutes, 2),
        "mp3_kb_per_minute": round(size / 1024 / minutes, 1),
        "duration_s": audio.duration_ms / 1000,
    }


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in (RecordingMode.DUAL, RecordingMode.MONO):
            for minutes in args.minutes:
                row = await one_call(minutes, mode, Path(tmp), trace=False)
                traced = await one_call(minutes, mode, Path(tmp), trace=True)
                row["peak_traced_kb"] = traced["peak_traced_kb"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.recording", description=__doc__)
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 5, 20])
    p.add_argument("--out", type=Path, default=Path("bench/results/recording.json"))
    args = p.parse_args()
    rows = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"command": "python -m bench.recording", "rows": rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
