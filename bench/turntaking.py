"""Turn-taking bench (issue 16): barge-in per mode, and preemptive replies.

    python -m bench.turntaking                      # both parts, N = 1 and 25
    python -m bench.turntaking --part bargein --n 25
    python -m bench.turntaking --part preemptive --n 1 25

Whole calls in one process, on one event loop: the engine (``Conversation``) on the real
Deepgram, OpenAI and Cartesia provider modules against the protocol-faithful fakes, with
the fixed latencies of the load bench (Deepgram endpointing 300 ms on the audio clock,
OpenAI first token 200 ms, Cartesia first byte 100 ms), and the real Twilio serializer in
front of a phone that plays its frames in real time (tests/voice/cloud.py ``Phone``).
Callers feed 20 ms mu-law frames on an absolute real-time schedule.

Barge-in: each call asks for a story (a reply of ~6 s) and, once the reply has been heard
for a while, plays one clip over it: a backchannel spoken by eSpeak NG ("mhm", "okay",
"right", "uh-huh", "yeah"), a generated noise (a cough-like burst, a double cough, a
breath) or a real interruption spoken by eSpeak ("wait, stop please", "actually, I have a
question"). The fake STT transcribes each clip as the clip's words (noises: nothing).
Measured from outside, per mode: the stop latency (the clip's first voiced frame fed ->
the ``clear`` the phone received), replies lost to backchannels and noise (the reply was
cut), and real interruptions cut.

Preemptive: each call has three exchanges (a question spoken by eSpeak, then silence); the
voice-to-voice latency as heard is the caller's last voiced frame -> the first reply frame
the phone received. Preemptive off (today's rules) against on; discarded requests counted.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.fakes import FakeCartesia, FakeDeepgram, FakeOpenAI
from tests.voice.cloud import Phone
from tests.voice.doubles import RecordingSink, silence_frames, speech_frames
from tests.voice.harness import make_config
from voice.audio import decode, encode
from voice.config import (
    TWILIO_FORMAT,
    BargeInMode,
    Encoding,
    InterruptionConfig,
    TTSConfig,
    TurnConfig,
)
from voice.conversation import Conversation
from voice.providers.registry import build_llm, build_stt, build_tts

RESULTS = Path(__file__).resolve().parent / "results"
FRAME = 160  # 20 ms of mu-law at 8 kHz
RATE = 8000
STORY = (
    "The sea was calm that morning. The old sailor walked down to the harbor. "
    "He looked at the boats for a long time, and then he untied the smallest one. "
    "He rowed out past the rocks and the gulls. Nobody saw him again until evening."
)
BACKCHANNELS = ("mhm", "okay", "right", "uh-huh", "yeah")
REAL = ("wait, stop please", "actually, I have a question")
NOISES = ("cough", "double cough", "breath")
QUESTIONS = (
    "What are your opening hours on Saturday?",
    "I'd like to book a table for two people tonight.",
    "Can you tell me where you are located?",
)


@dataclass(frozen=True)
class Clip:
    kind: str  # "backchannel" | "noise" | "real"
    name: str
    transcript: str  # what the fake STT says it heard
    frames: list[bytes]
    onset_ms: float  # the first voiced frame, from the clip's start


def _frames(mulaw: bytes) -> list[bytes]:
    mulaw += b"\xff" * (-len(mulaw) % FRAME)  # mu-law silence
    return [mulaw[i : i + FRAME] for i in range(0, len(mulaw), FRAME)]


def _onset_ms(frames: list[bytes], threshold: float = 500.0) -> float:
    for i, frame in enumerate(frames):
        pcm = decode(frame, Encoding.MULAW).astype(np.float64)
        if np.sqrt(np.mean(pcm**2)) >= threshold:
            return i * 20.0
    return 0.0


async def _espeak(texts: Sequence[str]) -> dict[str, bytes]:
    tts = build_tts(TTSConfig(provider="espeak"))
    out: dict[str, bytes] = {}
    async with tts.connect(TWILIO_FORMAT) as conn:
        for text in texts:
            ctx = conn.context()
            await ctx.push(text)
            await ctx.end_input()
            out[text] = b"".join([chunk async for chunk in ctx.audio()])
    return out


def _noise(name: str, seed: int = 7) -> bytes:
    rng = np.random.default_rng(seed)

    def burst(ms: int, amplitude: float, decay_ms: float) -> np.ndarray:
        n = RATE * ms // 1000
        t = np.arange(n) / RATE * 1000
        envelope = np.minimum(1.0, t / 8.0) * np.exp(-t / decay_ms)
        noise = rng.normal(0, 1, n)
        # a cough is broadband with a low-frequency body: noise plus a decaying 250 Hz
        body = np.sin(2 * np.pi * 250 * t / 1000)
        return (noise * 0.7 + body * 0.5) * envelope * amplitude

    gap = np.zeros(RATE * 120 // 1000)
    if name == "cough":
        wave = burst(220, 9000, 70)
    elif name == "double cough":
        wave = np.concatenate([burst(200, 9000, 60), gap, burst(200, 8000, 60)])
    else:  # a breath into the mouthpiece: long, soft, unvoiced
        n = RATE * 400 // 1000
        t = np.arange(n) / n
        wave = rng.normal(0, 1, n) * np.sin(np.pi * t) * 2500
    pcm = np.clip(wave, -32768, 32767).astype(np.int16)
    return encode(pcm, Encoding.MULAW)


async def clips() -> list[Clip]:
    spoken = await _espeak([*BACKCHANNELS, *REAL])
    out: list[Clip] = []
    for text in BACKCHANNELS:
        frames = _frames(spoken[text])
        out.append(Clip("backchannel", text, text, frames, _onset_ms(frames)))
    for name in NOISES:
        frames = _frames(_noise(name))
        out.append(Clip("noise", name, "", frames, _onset_ms(frames)))
    for text in REAL:
        frames = _frames(spoken[text])
        out.append(Clip("real", text, text.capitalize() + ".", frames, _onset_ms(frames)))
    return out


class TimedPhone(Phone):
    """The cloud tests' phone, with the loop time of each frame it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[tuple[str, float]] = []

    async def _receive(self, frame: str) -> None:
        before = len(self.log)
        await super()._receive(frame)
        now = asyncio.get_running_loop().time()
        self.times += [(kind, now) for kind, _ in self.log[before:]]


@dataclass
class Feeder:
    conv: Conversation
    next_at: float = 0.0
    last_voiced_at: float = 0.0
    first_fed: list[float] = field(default_factory=list)

    async def feed(self, frames: list[bytes]) -> float:
        """Feed in real time; returns the loop time the first frame was fed."""
        loop = asyncio.get_running_loop()
        self.next_at = max(self.next_at, loop.time())
        started = self.next_at
        for frame in frames:
            delay = self.next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.conv.feed_audio(frame)
            if _loud(frame):
                self.last_voiced_at = self.next_at + 0.02
            self.next_at += 0.02
        return started


@functools.lru_cache(maxsize=4096)  # the clips' frames repeat: the callers stay light
def _loud(frame: bytes) -> bool:
    pcm = decode(frame, Encoding.MULAW).astype(np.float64)
    return bool(np.sqrt(np.mean(pcm**2)) >= 500.0)


async def _until(cond: Any, limit_s: float = 30.0) -> bool:
    try:
        async with asyncio.timeout(limit_s):
            while not cond():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        return True
    except TimeoutError:
        return False


def _start(
    fakes: tuple[FakeDeepgram, FakeOpenAI, FakeCartesia],
    clock: Callable[[], float] | None = None,
    **overrides: Any,
) -> Any:
    """A call on the fakes, started: (conversation, phone, sink, its task)."""
    dg, oa, ca = fakes
    config = make_config(stt=dg.stt_config(), llm=oa.llm_config(), tts=ca.tts_config(), **overrides)
    phone = TimedPhone()
    sink = RecordingSink()
    conv = Conversation(
        config,
        stt=build_stt(config.stt),
        llm=build_llm(config.llm),
        tts=build_tts(config.tts),
        output=phone.output,
        sink=sink,
        clock=clock,
    )
    phone.conversation = conv
    task = asyncio.create_task(conv.run())
    return conv, phone, sink, task


def write_results(name: str, report: dict[str, Any]) -> None:
    """bench/results/NAME.json."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {path}")


async def _end(conv: Conversation, task: asyncio.Task[Any]) -> Any:
    conv.caller_hung_up()
    async with asyncio.timeout(15):
        return await task


# -- barge-in ------------------------------------------------------------------------


async def bargein_call(
    fakes: tuple[FakeDeepgram, FakeOpenAI, FakeCartesia],
    mode: BargeInMode,
    clip: Clip,
    delay_s: float,
) -> dict[str, Any]:
    interruption = InterruptionConfig(mode=mode)
    conv, phone, sink, task = _start(fakes, interruption=interruption)
    feeder = Feeder(conv)
    result: dict[str, Any] = {"mode": str(mode), "kind": clip.kind, "clip": clip.name}
    try:
        await _until(lambda: len(sink.timelines) == 1)
        greeting_end = len(phone.times)
        await feeder.feed(speech_frames(700) + silence_frames(700))
        # the story is being heard: its first audio frame reached the phone
        await _until(lambda: any(k == "audio" for k, _ in phone.times[greeting_end:]))
        await asyncio.sleep(delay_s)
        clears_before = sum(1 for k, _ in phone.times if k == "clear")
        fed = await feeder.feed(clip.frames + silence_frames(1200))
        onset = fed + clip.onset_ms / 1000
        await _until(lambda: len(sink.timelines) >= 2, limit_s=20)
        clears = [t for k, t in phone.times if k == "clear"][clears_before:]
        story = sink.timelines[1] if len(sink.timelines) >= 2 else None
        result["stop_ms"] = round((clears[0] - onset) * 1000, 1) if clears else None
        result["cut"] = story is not None and story.interrupted_at_ms is not None
        result["settled"] = story is not None
    finally:
        await _end(conv, task)
    return result


async def bargein(n: int, modes: Sequence[BargeInMode], rounds: int) -> list[dict[str, Any]]:
    all_clips = await clips()
    rows: list[dict[str, Any]] = []
    for mode in modes:
        for clip in all_clips:
            # one script per batch: the story request, then the clip's words
            dg, oa, ca = FakeDeepgram(), FakeOpenAI(), FakeCartesia()
            dg.script = ["Tell me a story.", clip.transcript]
            oa.ttft_s = 0.2
            oa.responder = lambda messages, tools: STORY
            ca.first_byte_delay_s = 0.1
            ca.ms_per_char = 25
            async with dg, oa, ca:
                for r in range(rounds):
                    delays = [0.6 + 0.9 * ((i * 7 + r * 3) % 10) / 10 for i in range(n)]
                    batch = await asyncio.gather(
                        *(bargein_call((dg, oa, ca), mode, clip, d) for d in delays)
                    )
                    rows += batch
            print(f"  {mode:18} {clip.kind:11} {clip.name:28} {_brief(batch)}", flush=True)
    return rows


def _brief(batch: list[dict[str, Any]]) -> str:
    stops = [r["stop_ms"] for r in batch if r["stop_ms"] is not None]
    cut = sum(r["cut"] for r in batch)
    p95 = pct(stops, 95)
    return f"cut {cut}/{len(batch)}  stop p95 {p95} ms" if stops else f"cut {cut}/{len(batch)}"


def pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return round(ordered[rank - 1], 1)


def bargein_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        mine = [r for r in rows if r["mode"] == mode]
        benign = [r for r in mine if r["kind"] != "real"]
        real = [r for r in mine if r["kind"] == "real"]
        stops_real = [r["stop_ms"] for r in real if r["stop_ms"] is not None]
        stops_all = [r["stop_ms"] for r in mine if r["stop_ms"] is not None]
        out.append(
            {
                "mode": mode,
                "calls": len(mine),
                "lost_replies": sum(r["cut"] for r in benign),
                "benign": len(benign),
                "real_cut": sum(r["cut"] for r in real),
                "real": len(real),
                "stop_real_p50": pct(stops_real, 50),
                "stop_real_p95": pct(stops_real, 95),
                "stop_any_p95": pct(stops_all, 95),
                "unsettled": sum(not r["settled"] for r in mine),
            }
        )
    return out


# -- preemptive replies --------------------------------------------------------------


async def preemptive_call(
    fakes: tuple[FakeDeepgram, FakeOpenAI, FakeCartesia],
    preemptive: bool,
    turns: int,
    after_ms: int,
    questions: list[list[bytes]],
) -> dict[str, Any]:
    turn = TurnConfig(
        min_wait_ms=200, max_wait_ms=1500, preemptive=preemptive, preemptive_after_ms=after_ms
    )
    conv, phone, sink, task = _start(fakes, turn=turn)
    feeder = Feeder(conv)
    v2v: list[float] = []
    try:
        await _until(lambda: len(sink.timelines) == 1)
        await asyncio.sleep(0.3)
        for i in range(turns):
            audio_before = len(phone.times)
            await feeder.feed(questions[i % len(questions)])
            spoke_until = feeder.last_voiced_at
            await feeder.feed(silence_frames(1500))
            await _until(lambda i=i: len(sink.timelines) >= i + 2)
            first = next((t for k, t in phone.times[audio_before:] if k == "audio"), None)
            if first is not None:
                v2v.append(round((first - spoke_until) * 1000, 1))
            await asyncio.sleep(0.5)
    finally:
        ended = await _end(conv, task)
    return {
        "preemptive": preemptive,
        "v2v": v2v,
        "turns": len(sink.timelines) - 1,
        "discarded": ended.usage.discarded_llm_requests,
    }


async def preemptive_bench(n: int, turns: int, after_ms: int) -> list[dict[str, Any]]:
    spoken = await _espeak(QUESTIONS)
    questions = [_frames(spoken[q]) for q in QUESTIONS]
    rows = []
    for preemptive in (False, True):
        dg, oa, ca = FakeDeepgram(), FakeOpenAI(), FakeCartesia()
        oa.ttft_s = 0.2
        ca.first_byte_delay_s = 0.1
        async with dg, oa, ca:
            batch = await asyncio.gather(
                *(
                    preemptive_call((dg, oa, ca), preemptive, turns, after_ms, questions)
                    for _ in range(n)
                )
            )
            requests = len(oa.requests)
        v2v = [v for r in batch for v in r["v2v"]]
        discarded = sum(r["discarded"] for r in batch)
        row = {
            "n": n,
            "preemptive": preemptive,
            "preemptive_after_ms": after_ms,
            "turns": sum(r["turns"] for r in batch),
            "v2v_p50": pct(v2v, 50),
            "v2v_p95": pct(v2v, 95),
            "v2v_mean": round(statistics.fmean(v2v), 1) if v2v else None,
            "llm_requests": requests,
            "discarded": discarded,
            "discard_rate": round(discarded / requests, 3) if requests else None,
        }
        print(f"  N={n:3} preemptive={preemptive!s:5} {row}", flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("bargein", "preemptive", "all"), default="all")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 25])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--preemptive-after-ms", type=int, default=TurnConfig().preemptive_after_ms)
    parser.add_argument(
        "--modes", nargs="+", default=[str(m) for m in BargeInMode], choices=list(BargeInMode)
    )
    parser.add_argument("--name", default="turntaking")
    args = parser.parse_args()
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    modes = [BargeInMode(m) for m in args.modes]
    if args.part in ("bargein", "all"):
        for n in args.n:
            print(f"barge-in, N={n} concurrent calls per batch")
            rows = asyncio.run(bargein(n, modes, args.rounds))
            report[f"bargein_n{n}"] = {"summary": bargein_summary(rows), "rows": rows}
            for line in bargein_summary(rows):
                print("  ", line)
    if args.part in ("preemptive", "all"):
        report["preemptive"] = []
        for n in args.n:
            print(f"preemptive replies, N={n}")
            report["preemptive"] += asyncio.run(
                preemptive_bench(n, args.turns, args.preemptive_after_ms)
            )
    write_results(args.name, report)


if __name__ == "__main__":
    main()
