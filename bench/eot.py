"""End-of-turn bench (issue 16, item 2): rules or Smart Turn v3, webrtcvad or Silero.

    python -m bench.eot                       # the four configurations, 4 calls at a time
    python -m bench.eot --configs rules+webrtc smart_turn+silero --concurrency 2

A labelled set of utterances spoken by eSpeak NG over mu-law 8 kHz (the phone's audio):
complete sentences, and trailing-off ones — a fragment ("I'd like to book a"), a pause of
0.7-1.1 s, then the rest ("table for two."). Each is one whole call in process, as in
bench/turntaking.py: the engine on the real Deepgram, OpenAI and Cartesia provider modules
against the protocol-faithful fakes (Deepgram endpointing 300 ms on the audio clock, so the
fragment gets its own final), the real Twilio serializer in front of a phone that plays in
real time, the caller fed in 20 ms frames on a real-time schedule. Turn settings are the
defaults (min_wait_ms 200, max_wait_ms 1500, preemptive replies on) but for
``end_of_turn`` and ``vad``.

Per configuration:

* false cut-offs: trailing-off utterances answered mid-thought: a reply turn was
  confirmed (its ``end_of_turn`` mark) before the caller's last loud frame, even one the
  caller then spoke over before hearing anything (merged with the rest);
* end-of-turn delay, mean and p95: the caller's last loud frame fed -> the turn's
  ``end_of_turn`` mark, over every turn that was not a cut-off;
* CPU per call: the bench process's CPU time (engine, fakes and callers alike) over the
  calls, and, of that, the model's own CPU (its counters) per call and per question.

Then, offline (no engine), Smart Turn alone over the clips (what it calls finished), and
the two VADs alone: where each put the end of speech after the last loud frame, whether
each split a complete sentence, and CPU per second of audio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.turntaking import Feeder, _end, _espeak, _frames, _start, _until, pct, write_results
from tests.fakes import FakeCartesia, FakeDeepgram, FakeOpenAI
from tests.voice.doubles import silence_frames
from voice import silero, smart_turn
from voice.audio import decode
from voice.config import Encoding, EndOfTurn, TurnConfig, VadKind
from voice.events import Role
from voice.vad import VadEventKind, VoiceActivity

COMPLETE = (
    "What are your opening hours on Saturday?",
    "I'd like to book a table for two people tonight.",
    "Can you tell me where you are located?",
    "My name is Sarah Jones.",
    "I want to cancel my order.",
    "Do you have any vegetarian dishes?",
    "That's all thank you.",
    "Yes seven thirty works for me.",
    "I need to change my delivery address.",
    "How much does the large pizza cost?",
)
# (fragment, pause ms, the rest)
TRAILING = (
    ("I'd like to book a", 900, "table for two."),
    ("My phone number is", 1100, "five five five one two three four."),
    ("Can I get the", 700, "chicken salad please."),
    ("I was wondering if you could", 900, "help me with my order."),
    ("I want to order the chicken and", 1100, "a large salad."),
    ("So basically I need to", 700, "change my booking."),
    ("The reason I'm calling is", 900, "my order never arrived."),
    ("Could you tell me about your", 1100, "opening hours?"),
    ("I'd like to speak with", 700, "the manager please."),
    ("We're looking for a table for", 900, "six people on Friday."),
)
CONFIGS = {
    "rules+webrtc": (EndOfTurn.RULES, VadKind.WEBRTC),
    "rules+silero": (EndOfTurn.RULES, VadKind.SILERO),
    "smart_turn+webrtc": (EndOfTurn.SMART_TURN, VadKind.WEBRTC),
    "smart_turn+silero": (EndOfTurn.SMART_TURN, VadKind.SILERO),
}


@dataclass(frozen=True)
class Item:
    kind: str  # "complete" | "trailing"
    frames: list[bytes]
    script: list[str]  # what the fake STT hears, one line per voiced segment
    fragment: str = ""


async def labelled_set() -> list[Item]:
    texts = [*COMPLETE, *(t[0] for t in TRAILING), *(t[2] for t in TRAILING)]
    spoken = await _espeak(texts)
    items = [Item("complete", _frames(spoken[t]), [t]) for t in COMPLETE]
    for fragment, pause_ms, rest in TRAILING:
        frames = _frames(spoken[fragment]) + silence_frames(pause_ms) + _frames(spoken[rest])
        items.append(Item("trailing", frames, [fragment, rest], fragment))
    return items


async def one_call(
    item: Item, turn: TurnConfig, oa: FakeOpenAI, ca: FakeCartesia
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    def clock() -> float:  # the engine's clock; its first reading is the call's 0 ms
        now = loop.time()
        if not starts:
            starts.append(now)
        return now

    dg = FakeDeepgram(script=item.script)
    async with dg:
        conv, _phone, sink, task = _start((dg, oa, ca), clock, turn=turn)
        feeder = Feeder(conv)
        try:
            await _until(lambda: len(sink.timelines) == 1)
            await asyncio.sleep(0.3)
            await feeder.feed(item.frames)
            spoke_until = feeder.last_voiced_at
            await feeder.feed(silence_frames(2500))
            await _until(lambda: len(sink.timelines) >= 2, limit_s=10)
        finally:
            await _end(conv, task)
    users = [e.text for e in sink.transcript if e.role is Role.USER]
    # each confirmed reply's end of turn, in ms after the caller's last loud frame
    ends = [
        round((starts[0] + t.end_of_turn_ms / 1000 - spoke_until) * 1000, 1)
        for t in sink.timelines[1:]
        if t.end_of_turn_ms is not None
    ]
    # answered mid-thought: a reply was confirmed before the caller had finished (even one
    # the caller then spoke over before hearing anything, and got merged with the rest)
    cut = any(e < 0 for e in ends)
    after = [e for e in ends if e >= 0]
    delay = after[0] if after and not cut else None
    return {"kind": item.kind, "script": item.script, "users": users, "cut": cut, "delay": delay}


async def run_config(
    name: str, items: list[Item], concurrency: int, model: smart_turn.SmartTurn | None
) -> dict[str, Any]:
    end_of_turn, vad = CONFIGS[name]
    turn = TurnConfig(end_of_turn=end_of_turn, vad=vad)
    oa, ca = FakeOpenAI(), FakeCartesia()
    oa.ttft_s = 0.2
    oa.responder = lambda messages, tools: "Sure."
    ca.first_byte_delay_s = 0.1
    runs0, model_cpu0 = (model.runs, model.cpu_s) if model else (0, 0.0)
    cpu0 = time.process_time()
    rows: list[dict[str, Any]] = []
    gate = asyncio.Semaphore(concurrency)

    async def gated(item: Item) -> dict[str, Any]:
        async with gate:
            return await one_call(item, turn, oa, ca)

    async with oa, ca:
        rows = list(await asyncio.gather(*(gated(i) for i in items)))
    cpu = time.process_time() - cpu0
    runs, model_cpu = (model.runs - runs0, model.cpu_s - model_cpu0) if model else (0, 0.0)
    delays = [r["delay"] for r in rows if r["delay"] is not None]
    trailing = [r for r in rows if r["kind"] == "trailing"]
    complete = [r for r in rows if r["kind"] == "complete"]
    summary = {
        "config": name,
        "calls": len(rows),
        "false_cutoffs": sum(r["cut"] for r in trailing),
        "trailing": len(trailing),
        "complete_cut": sum(r["cut"] for r in complete),
        "complete_answered": sum(r["delay"] is not None for r in complete),
        "complete": len(complete),
        "delay_mean_ms": round(statistics.fmean(delays), 1) if delays else None,
        "delay_p95_ms": pct(delays, 95),
        "delay_complete_mean_ms": _mean([r["delay"] for r in complete]),
        "cpu_per_call_ms": round(cpu / len(rows) * 1000, 1),
        "model_runs_per_call": round(runs / len(rows), 2),
        "model_cpu_per_call_ms": round(model_cpu / len(rows) * 1000, 1),
        "model_cpu_per_run_ms": round(model_cpu / runs * 1000, 1) if runs else None,
    }
    return {"summary": summary, "rows": rows}


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.fmean(present), 1) if present else None


def vad_compare(items: list[Item]) -> list[dict[str, Any]]:
    """Each VAD alone over the clips: end-of-speech lag after the last loud frame (complete
    sentences), sentences split in two, CPU per second of audio."""
    session = silero.shared_model()
    out = []
    for name, kwargs in (("webrtc", {}), ("silero", {"silero": session})):
        lags: list[float] = []
        splits = 0
        cpu = 0.0
        audio_s = 0.0
        for item in items:
            pcm = b"".join(
                decode(f, Encoding.MULAW).astype("<i2").tobytes()
                for f in item.frames + silence_frames(600)
            )
            vad = VoiceActivity(8000, **kwargs)
            started = time.process_time()
            events = vad.process(pcm)
            cpu += time.process_time() - started
            audio_s += len(pcm) / 16000
            ends = [e for e in events if e.kind is VadEventKind.SPEECH_END]
            if item.kind == "complete":
                splits += len(ends) > 1
                if ends:
                    lags.append(ends[-1].at_ms - _last_loud_ms(item.frames))
        out.append(
            {
                "vad": name,
                "end_lag_mean_ms": round(statistics.fmean(lags), 1) if lags else None,
                "end_lag_max_ms": round(max(lags), 1) if lags else None,
                "complete_split": splits,
                "cpu_us_per_audio_s": round(cpu / audio_s * 1e6, 1),
            }
        )
    return out


def model_alone(items: list[Item], model: smart_turn.SmartTurn) -> dict[str, Any]:
    """Smart Turn alone over the clips (8 kHz, as the engine hears them, with 150 ms of
    silence after the last sound, about where the engine asks): what it calls finished."""

    def finished(frames: list[bytes]) -> bool:
        pcm = np.concatenate([decode(f, Encoding.MULAW) for f in frames])
        end = int(_last_loud_ms(frames) * 8) + 8 * 150
        audio = np.pad(pcm, (0, max(0, end - pcm.size)))[:end]
        return model.probability(audio, 8000) > smart_turn.THRESHOLD

    complete = [i for i in items if i.kind == "complete"]
    trailing = [i for i in items if i.kind == "trailing"]
    fragments = [_frames_of(i) for i in trailing]
    return {
        "complete_called_finished": sum(finished(i.frames) for i in complete),
        "complete": len(complete),
        "fragments_called_unfinished": sum(not finished(f) for f in fragments),
        "whole_trailing_called_finished": sum(finished(i.frames) for i in trailing),
        "trailing": len(trailing),
    }


def _frames_of(item: Item) -> list[bytes]:
    """The fragment's frames: the item's frames up to its pause."""
    loud = [_loud_frame(f) for f in item.frames]
    first = loud.index(True)
    quiet_run = 0
    for i in range(first, len(loud)):
        quiet_run = 0 if loud[i] else quiet_run + 1
        if quiet_run * 20 >= 500:  # inside the pause (the clips' pauses are 700+ ms)
            return item.frames[: i + 1]
    return item.frames


def _loud_frame(frame: bytes) -> bool:
    pcm = decode(frame, Encoding.MULAW).astype(np.float64)
    return bool(np.sqrt(np.mean(pcm**2)) >= 500.0)


def _last_loud_ms(frames: list[bytes]) -> float:
    last = 0.0
    for i, frame in enumerate(frames):
        if _loud_frame(frame):
            last = (i + 1) * 20.0
    return last


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    items = await labelled_set()
    model = None
    if any(CONFIGS[c][0] == EndOfTurn.SMART_TURN for c in args.configs):
        model = await smart_turn.load()
        assert model is not None, "the pipecat-ai package (the model's weights) is missing"
    report: dict[str, Any] = {"configs": []}
    if model is not None:
        report["model_alone"] = model_alone(items, model)
        print(" ", report["model_alone"], flush=True)
    for name in args.configs:
        result = await run_config(name, items, args.concurrency, model)
        print(" ", result["summary"], flush=True)
        report["configs"].append(result)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--name", default="eot")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report = asyncio.run(main_async(args))
    report["started"] = started
    items = asyncio.run(labelled_set())
    report["vad"] = vad_compare(items)
    for line in report["vad"]:
        print(" ", line)
    write_results(args.name, report)


if __name__ == "__main__":
    main()
