"""Where the server's CPU goes, by part, from a py-spy profile (``--format raw``).

    python -m bench.profile_parts FILE.collapsed [--turns T] [--n N] [--wall-s S]

Each sample (one stack; idle stacks, as py-spy or ``IDLE_LEAVES`` see them, left out)
goes to the first part below whose marker appears anywhere in its stack, so an SDK's own
JSON parsing or logging counts for that SDK, and what is left of the event loop is the
loop itself. With the number of
turns in the profiled step this gives µs of CPU per turn for each part; the per-frame
parts (carrier frames, VAD, audio conversion, STT audio) are also given per call-second.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

# (part, markers): first match wins. Markers are substrings of py-spy's frame names
# ("function (package/module.py:line)").
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("llm: openai sdk", ("openai/", "httpx2/", "httpcore")),
    ("tts: cartesia sdk", ("cartesia/",)),
    ("stt: deepgram sdk", ("deepgram/",)),
    ("recorder + database", ("calls/recorder.py", "django/db/", "sqlite3", "psycopg")),
    ("call setup (webhook, token, config)", ("twilio_views.py", "callconfig.py", "services.py")),
    ("logging", ("logging/__init__.py",)),
    ("vad", ("voice/vad.py", "webrtcvad")),
    ("audio conversion", ("voice/audio.py", "soxr")),
    ("machine (reducer)", ("voice/machine.py", "voice/turns.py")),
    ("turn: speaker, playback", ("voice/speaking.py", "voice/playback.py", "voice/chunker.py")),
    ("engine shell", ("voice/conversation.py",)),
    ("carrier frames: json + base64", ("carriers/twilio.py", "json/", "base64", "orjson")),
    ("media route", ("calls/media.py",)),
    ("websocket + http server", ("uvicorn/", "websockets/", "h11/", "httptools")),
    ("django request handling", ("django/", "rest_framework/", "asgiref/", "channels/")),
    ("event loop", ("asyncio/", "uvloop/", "selectors.py")),
)
PER_FRAME = frozenset(
    {
        "stt: deepgram sdk",
        "vad",
        "audio conversion",
        "carrier frames: json + base64",
        "media route",
        "websocket + http server",
    }
)


# py-spy's idle detection misses a loop blocked in epoll (``--nonblocking``) and worker
# threads parked on their queue: a stack ending in one of these is idle, not CPU.
IDLE_LEAVES = (
    "select (selectors.py",
    "Condition.wait (threading.py",
    "_worker (concurrent/futures/thread.py",
)


def part_of(stack: str) -> str:
    leaf = stack.rpartition(";")[2]
    if any(m in leaf for m in IDLE_LEAVES):
        return "idle"
    for part, markers in PARTS:
        if any(m in stack for m in markers):
            return part
    return "other"


def read_raw(path: Path) -> Counter[str]:
    parts: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            parts[part_of(stack)] += int(count)
    return parts


def summarize(
    path: Path, *, rate_hz: int, turns: int = 0, n: int = 0, wall_s: float = 0.0
) -> dict[str, Any]:
    """Samples by part, as CPU ms (samples / rate), µs per turn and µs per call-second."""
    counts = read_raw(path)
    idle = counts.pop("idle", 0)
    total = sum(counts.values()) or 1
    call_s = n * wall_s
    rows = {}
    for part, samples in counts.most_common():
        cpu_us = samples / rate_hz * 1e6
        rows[part] = {
            "samples": samples,
            "share_percent": round(100 * samples / total, 1),
            "cpu_ms": round(cpu_us / 1000, 1),
            "us_per_turn": round(cpu_us / turns) if turns else None,
            "us_per_call_second": round(cpu_us / call_s) if call_s else None,
            "per_frame_part": part in PER_FRAME,
        }
    return {
        "rate_hz": rate_hz,
        "samples": total,
        "idle_samples": idle,
        "cpu_ms": round(total / rate_hz * 1000, 1),
        "turns": turns,
        "parts": rows,
    }


def table(profile: dict[str, Any]) -> str:
    rows = [
        "| part | share % | CPU ms | µs per turn | µs per call-second |",
        "|---|---:|---:|---:|---:|",
    ]
    for part, r in profile["parts"].items():
        rows.append(
            f"| {part} | {r['share_percent']} | {r['cpu_ms']} | {r['us_per_turn']} "
            f"| {r['us_per_call_second']} |"
        )
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.profile_parts", description=__doc__)
    p.add_argument("file", type=Path)
    p.add_argument("--rate", type=int, default=200)
    p.add_argument("--turns", type=int, default=0)
    p.add_argument("--n", type=int, default=0)
    p.add_argument("--wall-s", type=float, default=0.0)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    profile = summarize(a.file, rate_hz=a.rate, turns=a.turns, n=a.n, wall_s=a.wall_s)
    print(json.dumps(profile, indent=2) if a.json else table(profile))


if __name__ == "__main__":
    main()
