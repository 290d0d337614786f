"""The call recorder (voice/recording.py) on a clock the test moves: caller and agent
audio placed on one timeline, barge-in cuts, gaps, muting, and the memory bound."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.fakes.audio import frames, read_mp3, tone
from voice.config import TWILIO_FORMAT, RecordingMode
from voice.recording import FLUSH_MS, QUEUE_BLOCKS, CallRecording, RecordedAudio

FMT = TWILIO_FORMAT
RATE = FMT.sample_rate
FRAME = FMT.bytes_for_ms(20)


@dataclass
class FileSink:
    """The platform's side, as small as it gets: a file in a directory, kept as is."""

    directory: Path
    stored: list[RecordedAudio] = field(default_factory=list)

    def scratch_path(self) -> Path:
        return self.directory / "call.mp3"

    async def store(self, audio: RecordedAudio) -> None:
        self.stored.append(audio)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def voiced_ms(channel: np.ndarray, *, threshold: float = 1000.0) -> float:
    """How much of a channel carries sound, in 20 ms windows."""
    size = RATE // 50
    n = len(channel) // size
    windows = channel[: n * size].astype(np.float64).reshape(n, size)
    loud = np.sqrt((windows**2).mean(axis=1)) > threshold
    return float(loud.sum() * 20)


def loud_at(channel: np.ndarray, start_ms: float, end_ms: float) -> bool:
    part = channel[int(start_ms * RATE / 1000) : int(end_ms * RATE / 1000)]
    return voiced_ms(part) > 0


class Call:
    """Feeds a recording as a carrier would: 20 ms caller frames on the clock."""

    def __init__(self, recording: CallRecording, clock: Clock) -> None:
        self.recording = recording
        self.clock = clock
        self.stream_ms = 0

    def caller(self, audio: bytes) -> None:
        for frame in frames(audio, FMT):
            self.recording.caller(frame, self.stream_ms)
            self.stream_ms += 20
            self.clock.t += 0.02

    def quiet(self, seconds: float) -> None:
        self.caller(b"\xff" * int(seconds * RATE))  # mu-law silence


async def record(
    tmp_path: Path, mode: RecordingMode, script: object
) -> tuple[RecordedAudio, np.ndarray]:
    clock = Clock()
    sink = FileSink(tmp_path)
    recording = CallRecording(mode, FMT, sink, clock=clock)
    import asyncio

    writer = asyncio.create_task(recording.run())
    script(Call(recording, clock))  # type: ignore[operator]
    recording.end()
    audio = await writer
    assert audio is not None
    return audio, read_mp3(str(audio.path))[0]


async def test_dual_channel_puts_the_caller_left_and_the_agent_right(tmp_path: Path) -> None:
    def script(call: Call) -> None:
        call.quiet(0.5)
        call.recording.agent(tone(1.0, FMT, hz=440))  # plays 0.5 s .. 1.5 s
        call.quiet(1.5)
        call.caller(tone(1.0, FMT, hz=200))  # 2.0 s .. 3.0 s
        call.quiet(0.5)

    audio, data = await record(tmp_path, RecordingMode.DUAL, script)
    assert audio.channels == 2 and data.shape[1] == 2
    assert audio.duration_ms == pytest.approx(3500, abs=40)
    assert len(data) / RATE == pytest.approx(3.5, abs=0.1)  # MP3 pads the last frame
    left, right = data[:, 0], data[:, 1]
    assert voiced_ms(left) == pytest.approx(1000, abs=60)
    assert voiced_ms(right) == pytest.approx(1000, abs=60)
    assert loud_at(right, 600, 1400) and not loud_at(left, 600, 1400)
    assert loud_at(left, 2100, 2900) and not loud_at(right, 2100, 2900)


async def test_a_clear_cuts_the_agent_where_the_caller_barged_in(tmp_path: Path) -> None:
    def script(call: Call) -> None:
        call.quiet(0.2)
        # four seconds of reply sent at once, as a fast TTS does; the caller speaks
        # after one second of it and the engine clears the carrier's buffer
        call.recording.agent(tone(4.0, FMT, hz=440))
        call.quiet(1.0)
        call.caller(tone(0.4, FMT, hz=200))
        call.recording.cleared()
        call.quiet(1.0)

    _, data = await record(tmp_path, RecordingMode.DUAL, script)
    right = data[:, 1]
    assert voiced_ms(right) == pytest.approx(1400, abs=60)  # 0.2 s .. 1.6 s, not 4 s
    assert not loud_at(right, 1700, 2600)


async def test_agent_audio_queues_behind_what_is_still_playing(tmp_path: Path) -> None:
    def script(call: Call) -> None:
        call.recording.agent(tone(0.5, FMT, hz=440))
        call.recording.agent(tone(0.5, FMT, hz=440))  # plays after the first, not over it
        call.quiet(1.5)

    _, data = await record(tmp_path, RecordingMode.DUAL, script)
    assert voiced_ms(data[:, 1]) == pytest.approx(1000, abs=60)


async def test_a_gap_in_the_callers_stream_is_silence_in_its_place(tmp_path: Path) -> None:
    def script(call: Call) -> None:
        call.caller(tone(0.5, FMT, hz=200))
        call.stream_ms += 1000  # a second of stream that never arrived
        call.clock.t += 1.0
        call.caller(tone(0.5, FMT, hz=200))

    audio, data = await record(tmp_path, RecordingMode.DUAL, script)
    assert audio.duration_ms == pytest.approx(2000, abs=40)
    left = data[:, 0]
    assert loud_at(left, 1600, 1900) and not loud_at(left, 700, 1300)


async def test_mono_mixes_both_sides(tmp_path: Path) -> None:
    def script(call: Call) -> None:
        call.recording.agent(tone(0.5, FMT, hz=440))
        call.quiet(1.0)
        call.caller(tone(0.5, FMT, hz=200))

    audio, data = await record(tmp_path, RecordingMode.MONO, script)
    assert audio.channels == 1 and data.shape[1] == 1
    assert voiced_ms(data[:, 0]) == pytest.approx(1000, abs=60)


async def test_muted_stretches_are_silent_on_both_sides(tmp_path: Path) -> None:
    def script(call: Call) -> None:
        call.caller(tone(0.5, FMT, hz=200))
        call.recording.mute(True)
        call.recording.agent(tone(0.5, FMT, hz=440))
        call.caller(tone(0.5, FMT, hz=697))  # keypad tones, say
        call.recording.mute(False)
        call.caller(tone(0.5, FMT, hz=200))

    _, data = await record(tmp_path, RecordingMode.DUAL, script)
    assert voiced_ms(data[:, 0]) == pytest.approx(1000, abs=60)
    assert voiced_ms(data[:, 1]) == 0


async def test_a_secure_capture_mutes_the_recording_for_its_window(tmp_path: Path) -> None:
    """The engine's SecureCapture events, through MutingSink, silence the keypad tones."""
    from voice.events import Event, SecureCapture
    from voice.recording import MutingSink

    forwarded: list[Event] = []

    class Recorder:
        def emit(self, event: Event) -> None:
            forwarded.append(event)

    opened = SecureCapture(tool="card", turn_index=1, start_ms=500.0)
    closed = SecureCapture(tool="card", turn_index=1, start_ms=500.0, end_ms=1000.0)

    def script(call: Call) -> None:
        sink = MutingSink(Recorder(), call.recording)
        call.caller(tone(0.5, FMT, hz=200))
        sink.emit(opened)
        call.caller(tone(0.5, FMT, hz=697))  # the digits' tones
        sink.emit(closed)
        call.caller(tone(0.5, FMT, hz=200))

    _, data = await record(tmp_path, RecordingMode.DUAL, script)
    left = data[:, 0]
    assert voiced_ms(left) == pytest.approx(1000, abs=60)
    assert loud_at(left, 100, 400) and loud_at(left, 1100, 1400)
    assert not loud_at(left, 600, 900)
    assert forwarded == [opened, closed]  # the call's record still gets both


async def test_memory_stays_bounded_over_a_long_call(tmp_path: Path) -> None:
    clock = Clock()
    recording = CallRecording(RecordingMode.DUAL, FMT, FileSink(tmp_path), clock=clock)
    import asyncio

    writer = asyncio.create_task(recording.run())
    call = Call(recording, clock)
    peak = 0
    for _ in range(120):  # two minutes: a reply every 5 s, the writer keeping up
        recording.agent(tone(2.0, FMT, hz=440))
        for _ in range(5):
            call.quiet(1.0)
            peak = max(peak, recording.buffered_samples)
            await asyncio.sleep(0.005)
    recording.end()
    audio = await writer
    assert audio is not None and audio.duration_ms == pytest.approx(600_000, abs=60)
    # the reply sent ahead plus the block being assembled plus the writer's queue
    assert peak <= 2 * RATE + (QUEUE_BLOCKS + 2) * RATE * FLUSH_MS // 1000


async def test_a_backlog_after_a_stall_lands_where_its_timestamps_say(tmp_path: Path) -> None:
    def script(call: Call) -> None:
        call.quiet(1.0)
        call.clock.t += 5.0  # the loop stalls for five seconds; the frames wait in the socket
        backlog = b"\xff" * int(4.0 * RATE) + tone(0.5, FMT, hz=200) + b"\xff" * int(0.5 * RATE)
        for frame in frames(backlog, FMT):  # ... and then arrive at once
            call.recording.caller(frame, call.stream_ms)
            call.stream_ms += 20
        call.quiet(1.0)

    audio, data = await record(tmp_path, RecordingMode.DUAL, script)
    left = data[:, 0]
    assert audio.duration_ms == pytest.approx(7000, abs=40)
    # more than LATE_MS behind: not waited for (silence), never shifted into later audio
    assert audio.dropped_ms > 0
    assert loud_at(left, 5100, 5400) and not loud_at(left, 5600, 7000)
    assert voiced_ms(left) == pytest.approx(500, abs=60)
