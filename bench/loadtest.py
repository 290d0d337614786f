"""End-to-end load bench (issue #5): the real ASGI server, the real webhook + media
WebSocket path, fake providers with fixed latencies, N concurrent simulated Twilio
callers, and the server's own per-turn metrics read back through the REST API.

    python -m bench.loadtest                       # make bench: the default run
    python -m bench.loadtest --n 1 10 --turns 2 --servers daphne --name quick
    python -m bench.loadtest --memory-calls 300    # plus sequential calls for RSS drift
    python -m bench.loadtest --n --memory-calls 200 --recording off dual  # recordings' cost

Fixed provider latencies: Deepgram endpointing 300 ms (audio clock), OpenAI first token
200 ms, Cartesia first byte 100 ms; "overhead" below is voice-to-voice minus those 600 ms.
On a 2-core machine the server is pinned to CPU 0 and the fakes and callers to CPU 1
(``--no-pin`` to share), so "calls per core" means what it says. Writes
``bench/results/<name>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import profile_parts, stack
from bench.callers import Plan, burst_slots, run_callers

RESULTS = stack.ROOT / "bench" / "results"
OVERHEAD_P95_TARGET_MS = 100.0  # issue #15 (it was 50 ms in issue #5)
PROFILE_RATE_HZ = 200


@dataclass(frozen=True, slots=True)
class Tree:
    """A source tree to serve from (``--trees before=/tmp/old after=.``): compare two
    versions of the code in one run, alternating step by step."""

    label: str
    root: Path
    block: tuple[str, ...] = ()  # modules hidden from that server (uvloop, httptools)
    env: tuple[tuple[str, str], ...] = ()  # extra environment for that server


def _tree(text: str) -> Tree:
    """``LABEL=PATH[:module,module][+NAME=VALUE...]``"""
    spec, *assignments = text.split("+")
    label, _, rest = spec.partition("=")
    path, _, block = rest.partition(":")
    env = tuple((a.partition("=")[0], a.partition("=")[2]) for a in assignments if "=" in a)
    if not label or not path or len(env) != len(assignments):
        raise argparse.ArgumentTypeError(
            f"use LABEL=PATH[:module,module][+NAME=VALUE...]: {text!r}"
        )
    blocked = tuple(b for b in block.split(",") if b)
    return Tree(label, Path(path).resolve(), blocked, env)


# -- statistics -----------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (no interpolation: p99 of 40 samples is the max)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return round(ordered[rank - 1], 1)


def dist(values: Iterable[float | None]) -> dict[str, Any]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    return {
        "n": len(vals),
        "p50": pct(vals, 50),
        "p95": pct(vals, 95),
        "p99": pct(vals, 99),
        "max": round(max(vals), 1),
        "mean": round(statistics.fmean(vals), 1),
    }


# -- server resource sampling ---------------------------------------------------------


class Sampler:
    """RSS and CPU of one process (and its children) every ``interval_s``."""

    def __init__(self, pid: int, interval_s: float = 0.5) -> None:
        self.proc = psutil.Process(pid)
        self.interval_s = interval_s
        self.samples: list[tuple[float, float, float]] = []  # (t, cpu %, rss MB)
        self.wall: list[float] = []  # time.time() of each sample (callers report wall time)
        self.per_cpu: list[tuple[float, list[float]]] = []  # (t, busy % of each CPU)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def procs(self) -> list[psutil.Process]:
        return [self.proc, *self.proc.children(recursive=True)]

    def rss_mb(self) -> float:
        return sum(p.memory_info().rss for p in self.procs()) / 2**20

    def cpu_s(self) -> float:
        total = 0.0
        for p in self.procs():
            t = p.cpu_times()
            total += t.user + t.system
        return total

    def _run(self) -> None:
        last_t, last_cpu = time.monotonic(), self.cpu_s()
        psutil.cpu_percent(percpu=True)
        while not self._stop.wait(self.interval_s):
            now, cpu = time.monotonic(), self.cpu_s()
            self.per_cpu.append((now, psutil.cpu_percent(percpu=True)))
            self.samples.append((now, 100 * (cpu - last_cpu) / (now - last_t), self.rss_mb()))
            self.wall.append(time.time())
            last_t, last_cpu = now, cpu

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- reading the server's metrics back -------------------------------------------------


def fetch_calls(base: str, api_key: str, sids: set[str], timeout_s: float = 60.0) -> dict[str, Any]:
    """carrier_call_sid -> call detail (with ``metrics``), once each call has ended."""
    headers = {"Authorization": f"Bearer {api_key}"}
    found: dict[str, Any] = {}
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        ids: dict[str, int] = {}
        while True:
            url: str | None = "/api/v1/calls/?page_size=100"
            while url:
                page = http.get(url).raise_for_status().json()
                for call in page["results"]:
                    if call["carrier_call_sid"] in sids and call["ended_at"]:
                        ids[call["carrier_call_sid"]] = call["id"]
                url = page.get("next")
            if len(ids) >= len(sids) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for sid, call_id in ids.items():
            found[sid] = http.get(f"/api/v1/calls/{call_id}/").raise_for_status().json()
    return found


# -- one load step ----------------------------------------------------------------------


def analyse(
    n: int,
    callers: list[dict[str, Any]],
    calls: dict[str, Any],
    sampler: Sampler,
    baseline_rss_mb: float,
    window: tuple[float, float],
) -> dict[str, Any]:
    heard_v2v: list[float] = []
    missed = 0
    turns_total = 0
    clear_ms: list[float] = []
    clear_after_decision: list[float] = []
    stalls: list[float] = []
    errors: list[str] = []
    late_frames = 0
    max_send_lag = 0.0
    for c in callers:
        errors += c["errors"]
        late_frames += c["late_frames"]
        max_send_lag = max(max_send_lag, c["max_send_lag_ms"])
        for t in c["turns"]:
            turns_total += 1
            stalls += t["stalls_ms"]
            if t["voice_to_voice_ms"] is None:
                missed += 1
            else:
                heard_v2v.append(t["voice_to_voice_ms"])
            if t["barge_in"] and t["clear_ms"] is not None:
                clear_ms.append(t["clear_ms"])
    # A caller that never got its turns in (refused, dropped) misses all of them.
    expected_turns = max((len(c["turns"]) for c in callers), default=0)
    for c in callers:
        missed += expected_turns - len(c["turns"])
        turns_total += expected_turns - len(c["turns"])

    server_v2v: list[float] = []
    server_overhead: list[float] = []
    stage: dict[str, list[float]] = {
        k: []
        for k in (
            "vad_hangover_ms",
            "endpointing_ms",
            "llm_ttft_ms",
            "llm_first_clause_ms",
            "tts_ttfb_ms",
            "stt_lag_ms",
        )
    }
    # Per turn, what the caller heard minus what the server says (the glass box's error).
    v2v_gap: list[float] = []
    decision_ms: list[float] = []
    for c in callers:
        call = calls.get(c["call_sid"])
        if call is None:
            continue
        metrics = sorted(
            (m for m in call["metrics"] if m["kind"] == "reply"), key=lambda m: m["turn_index"]
        )
        for m in metrics:
            if m["voice_to_voice_ms"] is not None:
                server_v2v.append(m["voice_to_voice_ms"])
            if m["platform_overhead_ms"] is not None:
                server_overhead.append(m["platform_overhead_ms"])
            for k, vals in stage.items():
                # servers before issue 16 have neither the column nor the timeline key
                value = m.get(k, m["timeline"].get(k))
                if value is not None:
                    vals.append(value)
        # Each caller utterance gets one reply, in order.
        for heard_turn, m in zip(c["turns"], metrics, strict=False):
            heard, server = heard_turn["voice_to_voice_ms"], m["voice_to_voice_ms"]
            if heard is not None and server is not None and not heard_turn["barge_in"]:
                v2v_gap.append(heard - server)
        # Barge-in: the interrupted turn's interrupted_at minus the next turn's VAD
        # speech start = how long the engine took to decide; the caller's onset -> clear
        # minus that = decision -> clear heard.
        ordered = sorted(call["metrics"], key=lambda m: m["turn_index"])
        barge = next((t for t in c["turns"] if t["barge_in"]), None)
        for prev, nxt in itertools.pairwise(ordered):
            at = prev["timeline"].get("interrupted_at_ms")
            onset = nxt["timeline"].get("user_speech_start_ms")
            if prev["interrupted"] and at is not None and onset is not None:
                decision_ms.append(at - onset)
                if barge is not None and barge["clear_ms"] is not None:
                    clear_after_decision.append(barge["clear_ms"] - (at - onset))
                break

    t0, t1 = window
    active = [s for s in sampler.samples if t0 <= s[0] <= t1]
    peak_rss = max((s[2] for s in sampler.samples), default=baseline_rss_mb)
    cpu_mean = statistics.fmean(s[1] for s in active) if active else None
    per_cpu = [c for t, c in sampler.per_cpu if t0 <= t <= t1]
    machine_cpu = (
        [round(statistics.fmean(c[i] for c in per_cpu), 1) for i in range(len(per_cpu[0]))]
        if per_cpu
        else []
    )
    talking = talking_cpu(callers, sampler, n)
    heard_overhead = [v - stack.FIXED_MS for v in heard_v2v]
    server_minus_fixed = [v - stack.FIXED_MS for v in server_v2v]
    return {
        "n": n,
        "calls_connected": sum(1 for c in callers if c["connected"]),
        "calls_with_errors": sum(1 for c in callers if c["errors"]),
        "calls_recorded": len(calls),
        "turns": turns_total,
        "missed_turns": missed,
        "voice_to_voice_heard_ms": dist(heard_v2v),
        "voice_to_voice_server_ms": dist(server_v2v),
        "overhead_heard_ms": dist(heard_overhead),
        "overhead_server_v2v_minus_fixed_ms": dist(server_minus_fixed),
        "platform_overhead_server_ms": dist(server_overhead),
        "v2v_heard_minus_server_ms": dist(v2v_gap),
        # the stream's ``start`` sent -> the greeting's first audio received (issue 16
        # item 4: fixed lines come from the line cache)
        "greeting_heard_ms": dist(
            [c["greeting_ms"] for c in callers if c["greeting_ms"] is not None]
        ),
        "stages_server_ms": {k: dist(v) for k, v in stage.items()},
        "barge_in": {
            "onset_to_clear_heard_ms": dist(clear_ms),
            "onset_to_decision_server_ms": dist(decision_ms),
            "decision_to_clear_ms": dist(clear_after_decision),
        },
        "stalls": {
            "count": len(stalls),
            "per_turn": round(len(stalls) / turns_total, 3) if turns_total else None,
            "ms": dist(stalls),
        },
        "server": {
            "cpu_percent_mean": round(cpu_mean, 1) if cpu_mean is not None else None,
            "cpu_percent_max": round(max((s[1] for s in active), default=0.0), 1),
            "cpu_percent_per_call": round(cpu_mean / n, 2) if cpu_mean is not None else None,
            "rss_baseline_mb": round(baseline_rss_mb, 1),
            "rss_peak_mb": round(peak_rss, 1),
            "rss_per_call_mb": round((peak_rss - baseline_rss_mb) / n, 2),
            **talking,
        },
        "machine_cpu_percent_per_cpu": machine_cpu,
        "callers": {
            "late_frames": late_frames,
            "max_send_lag_ms": round(max_send_lag, 1),
        },
        "wall_s": round(t1 - t0, 1),
        "errors_sample": errors[:10],
    }


BURST_WINDOW_S = 1.5


def burst_cpu(sampler: Sampler, speech_ends: list[float], n: int) -> dict[str, Any]:
    """Server CPU that a burst costs, per turn: CPU in the ``BURST_WINDOW_S`` after every
    call's speech ended at once (end of turn, LLM request, TTS context, the reply's first
    audio), minus what the same window costs with every caller talking and the bot silent
    (the ``BURST_WINDOW_S`` before the speech end), divided by the calls. Robust to a busy
    machine: it counts CPU time the server used, not how long it waited."""

    def cpu_s(t0: float, t1: float) -> float:
        total = 0.0
        prev_w = None
        for (_, pct, _), w in zip(sampler.samples, sampler.wall, strict=False):
            if prev_w is not None and t0 <= w <= t1:
                total += pct / 100 * (w - prev_w)
            prev_w = w
        return total

    per_turn = []
    for end in speech_ends:
        burst = cpu_s(end, end + BURST_WINDOW_S)
        quiet = cpu_s(end - BURST_WINDOW_S, end)
        per_turn.append((burst - quiet) / n * 1000)
    return {
        "window_s": BURST_WINDOW_S,
        "per_burst": [round(v, 2) for v in per_turn],
        "mean": round(statistics.fmean(per_turn), 2) if per_turn else None,
    }


def talking_cpu(callers: list[dict[str, Any]], sampler: Sampler, n: int) -> dict[str, Any]:
    """Server CPU while every call is up and past its greeting, and none has hung up:
    both directions streaming, no call setup or teardown in the window."""
    began = [c["began_at"] for c in callers if c["connected"]]
    ended = [c["ended_at"] for c in callers if c["connected"]]
    if not began:
        return {"cpu_talking_percent_mean": None, "cpu_talking_percent_per_call": None}
    t0, t1 = max(began) + 4.0, min(ended) - 0.5
    vals = [s[1] for s, w in zip(sampler.samples, sampler.wall, strict=False) if t0 <= w <= t1]
    if len(vals) < 4:
        return {"cpu_talking_percent_mean": None, "cpu_talking_percent_per_call": None}
    mean = statistics.fmean(vals)
    return {
        "cpu_talking_window_s": round(t1 - t0, 1),
        "cpu_talking_percent_mean": round(mean, 1),
        "cpu_talking_percent_max": round(max(vals), 1),
        "cpu_talking_percent_per_call": round(mean / n, 3),
    }


def warm_up(plan: Plan) -> None:
    """One short call so lazy imports and first-connection costs are not counted."""
    run_callers(
        Plan(**{**_plan_fields(plan), "turns": 1, "barge_in": False, "ramp_s": 0}), 1, lead_s=0.5
    )


def _plan_fields(plan: Plan) -> dict[str, Any]:
    return {f: getattr(plan, f) for f in plan.__dataclass_fields__ if not f.startswith("burst")}


def load_step(
    kind: str,
    n: int,
    env: dict[str, str],
    tenant: stack.Tenant,
    args: argparse.Namespace,
    tmp: Path,
    tree: Tree | None = None,
) -> dict[str, Any]:
    port = stack.free_port()
    env = {**env, "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", **dict(tree.env if tree else ())}
    base = env["PUBLIC_BASE_URL"]
    plan = Plan(
        base_url=base,
        account_sid=tenant.account_sid,
        auth_token=tenant.auth_token,
        to_number=tenant.number,
        turns=args.turns,
        barge_in=not args.no_barge_in,
        ramp_s=min(args.ramp_s, 0.05 * n),
        cpus=args.client_cpus,
        burst_period_s=args.burst_period_s if args.burst else 0.0,
        # every call connected and greeted before the first burst
        burst_first_s=min(args.ramp_s, 0.05 * n) + 4.0 + 0.03 * n,
    )
    label = tree.label if tree else kind
    root, block = (tree.root, tree.block) if tree else (stack.ROOT, ())
    log = tmp / f"{label}.log"
    lag_file = tmp / f"{label}-{n}.lag"
    env["BENCH_LAG_FILE"] = str(lag_file)
    with stack.server(kind, env, port, log, args.server_cpus, root=root, block=block) as proc:
        sampler = Sampler(proc.pid, interval_s=0.1)
        fakes = Sampler(_fakes_pid(), interval_s=0.25)
        if not args.no_warmup:
            warm_up(plan)
            time.sleep(0.5)
        baseline = sampler.rss_mb()
        collapsed = tmp / f"{label}-{n}.collapsed"
        profiler = _profile(proc.pid, collapsed) if args.profile else None
        with sampler, fakes:
            t0 = time.monotonic()
            start_at = time.time() + 2.0 + 0.3 * n / 20
            callers = run_callers(plan, n, start_at=start_at)
            t1 = time.monotonic()
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(30)
        calls = fetch_calls(base, tenant.api_key, {c["call_sid"] for c in callers})
    result = analyse(n, callers, calls, sampler, baseline, (t0, t1))
    result["server_kind"] = label
    result["server"]["launcher"] = kind
    result["server"]["loop_lag_ms"] = loop_lag(lag_file, (t0, t1))
    busy = [c for _, c, _ in fakes.samples]
    result["fakes_cpu_percent"] = {
        "mean": round(statistics.fmean(busy), 1) if busy else None,
        "max": round(max(busy), 1) if busy else None,
    }
    result["mode"] = "burst" if args.burst else "steady"
    if args.burst:
        slots = burst_slots(plan, start_at)
        result["burst_slots_s"] = [round(t - start_at, 2) for t in slots]
        result["server"]["burst_cpu_ms_per_turn"] = burst_cpu(
            sampler, [t + plan.utterance_ms / 1000 for t in slots], n
        )
    if profiler is not None and collapsed.exists():
        result["profile"] = profile_parts.summarize(
            collapsed, rate_hz=PROFILE_RATE_HZ, turns=result["turns"], n=n, wall_s=t1 - t0
        )
    return result


def loop_lag(path: Path, window: tuple[float, float]) -> dict[str, Any]:
    """How late the server's event loop woke a 10 ms timer during the step (``serve``
    only; bench/serve_lag.py)."""
    if not path.exists():
        return dist([])
    lags = []
    for line in path.read_text().splitlines():
        t, lag = json.loads(line)
        if window[0] <= t <= window[1]:
            lags.append(lag)
    return dist(lags)


def _fakes_pid() -> int:
    """The fake providers' process (a child of this one), to see whether the load
    generator's side keeps up."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "tests.fakes.run" in " ".join(child.cmdline()):
                return child.pid
    raise RuntimeError("the fake providers' process is not running")


def _profile(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy on the server (idle time excluded) until SIGINT; collapsed stacks to ``out``."""
    cmd = [
        str(stack.BIN / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--rate",
        str(PROFILE_RATE_HZ),
        "--output",
        str(out),
        "--nonblocking",
        "--gil",  # only the thread running Python code: CPU, not threads waiting on the GIL
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# -- memory over sequential calls --------------------------------------------------------


def memory_run(
    kind: str,
    total: int,
    lanes: int,
    env: dict[str, str],
    tenant: stack.Tenant,
    args: argparse.Namespace,
    tmp: Path,
    tree: Tree | None = None,
    recording: str = "off",
) -> dict[str, Any]:
    """``total`` short calls (greeting + one turn), ``lanes`` at a time, in waves; RSS
    after each wave (with every call of the wave ended). ``recording``: the agent's mode."""
    stack.set_recording(env, tenant, recording)
    recordings = tmp / "media" / "recordings"
    stored_before = _files(recordings)
    port = stack.free_port()
    env = {**env, "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", **dict(tree.env if tree else ())}
    plan = Plan(
        base_url=env["PUBLIC_BASE_URL"],
        account_sid=tenant.account_sid,
        auth_token=tenant.auth_token,
        to_number=tenant.number,
        turns=1,
        barge_in=False,
        ramp_s=0.5,
        cpus=args.client_cpus,
    )
    points: list[dict[str, Any]] = []
    done = 0
    errors = 0
    label = tree.label if tree else kind
    root, block = (tree.root, tree.block) if tree else (stack.ROOT, ())
    log = tmp / f"{label}-memory.log"
    with stack.server(kind, env, port, log, args.server_cpus, root=root, block=block) as proc:
        sampler = Sampler(proc.pid)
        warm_up(plan)
        points.append({"calls": 0, "rss_mb": round(sampler.rss_mb(), 1)})
        started = time.monotonic()
        while done < total:
            wave = min(lanes, total - done)
            results = run_callers(plan, wave, lead_s=1.0)
            errors += sum(1 for r in results if r["errors"])
            done += wave
            time.sleep(0.3)  # let the recorders write each call's end
            points.append({"calls": done, "rss_mb": round(sampler.rss_mb(), 1)})
            if env.get("BENCH_TRACEMALLOC"):  # bench/serve_lag.py: a snapshot, calls ended
                os.kill(proc.pid, signal.SIGUSR1)
        wall = time.monotonic() - started
    first_half = [p["rss_mb"] for p in points if 0 < p["calls"] <= total // 2]
    second_half = [p["rss_mb"] for p in points if p["calls"] > total // 2]
    growth = (
        (statistics.fmean(second_half) - statistics.fmean(first_half)) / (total / 2) * 1024
        if first_half and second_half
        else None
    )
    stored = _files(recordings)[len(stored_before) :]
    return {
        "server_kind": label,
        "recording": recording,
        "recordings_stored": len(stored),
        "recording_kb_mean": round(statistics.fmean(stored) / 1024, 1) if stored else None,
        "calls": total,
        "concurrent": lanes,
        "calls_with_errors": errors,
        "rss_points": points,
        "rss_growth_kb_per_call": round(growth, 1) if growth is not None else None,
        "wall_s": round(wall, 1),
    }


def _files(directory: Path) -> list[int]:
    """Sizes of the files under ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    files = [p for p in directory.rglob("*") if p.is_file()]
    return [p.stat().st_size for p in sorted(files, key=lambda p: p.stat().st_mtime)]


# -- report ------------------------------------------------------------------------------


def holds(step: dict[str, Any], metric: str = "overhead_heard_ms") -> bool:
    """No missed turns and p95 of ``metric`` under the target. As heard, the overhead has
    a ~100 ms floor at any N (local VAD end detection, see docs/benchmarks.md), so the
    server's own ``platform_overhead_ms`` is reported beside it."""
    p95 = step[metric]["p95"]
    return step["missed_turns"] == 0 and p95 is not None and p95 < OVERHEAD_P95_TARGET_MS


def summarize(doc: dict[str, Any], server_cpus: int) -> None:
    kinds = dict.fromkeys(s["server_kind"] for s in doc["steps"])
    for key, metric in (
        ("max_calls_holding_target", "overhead_heard_ms"),
        ("max_calls_holding_target_server_metric", "platform_overhead_server_ms"),
    ):
        doc[key] = {
            kind: max(
                (s["n"] for s in doc["steps"] if s["server_kind"] == kind and holds(s, metric)),
                default=0,
            )
            for kind in kinds
        }
    cores = max(1, server_cpus)
    doc["calls_per_core"] = {k: v / cores for k, v in doc["max_calls_holding_target"].items()}
    doc["calls_per_core_server_metric"] = {
        k: v / cores for k, v in doc["max_calls_holding_target_server_metric"].items()
    }


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    return {
        p: _version(p)
        for p in (
            "django",
            "channels",
            "daphne",
            "uvicorn",
            "twisted",
            "websockets",
            "uvloop",
            "httptools",
            "orjson",
        )
    }


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def table(steps: list[dict[str, Any]]) -> str:
    head = (
        "server   N  v2v heard p50/p95/p99     v2v server p50/p95/p99    overhead heard p50/p95"
        "  srv platform_overhead p50/p95  missed  clear p50/p95  stalls  cpu% mean/max"
        "  talk%/call  lag p95/max  MB/call"
    )
    rows = [head]
    for s in steps:
        h, sv = s["voice_to_voice_heard_ms"], s["voice_to_voice_server_ms"]
        oh, po = s["overhead_heard_ms"], s["platform_overhead_server_ms"]
        cl = s["barge_in"]["onset_to_clear_heard_ms"]
        lag = s["server"].get("loop_lag_ms") or {}
        rows.append(
            f"{s['server_kind']:7} {s['n']:3}  {h['p50']}/{h['p95']}/{h['p99']}".ljust(38)
            + f"{sv['p50']}/{sv['p95']}/{sv['p99']}".ljust(26)
            + f"{oh['p50']}/{oh['p95']}".ljust(25)
            + f"{po['p50']}/{po['p95']}".ljust(32)
            + f"{s['missed_turns']}/{s['turns']}".ljust(8)
            + f"{cl['p50']}/{cl['p95']}".ljust(15)
            + f"{s['stalls']['count']}".ljust(8)
            + f"{s['server']['cpu_percent_mean']}/{s['server']['cpu_percent_max']}".ljust(14)
            + f"{s['server'].get('cpu_talking_percent_per_call')}".ljust(12)
            + f"{lag.get('p95')}/{lag.get('max')}".ljust(13)
            + f"{s['server']['rss_per_call_mb']}"
        )
    return "\n".join(rows)


def _cpus(text: str) -> tuple[int, ...]:
    return tuple(int(c) for c in text.split(",") if c.strip())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.loadtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n", type=int, nargs="*", default=[1, 10, 25, 50, 100])
    p.add_argument("--servers", nargs="+", default=list(stack.SERVERS), choices=stack.SERVERS)
    p.add_argument("--turns", type=int, default=3, help="question/answer turns before the barge-in")
    p.add_argument("--ramp-s", type=float, default=3.0, help="spread call starts over this")
    p.add_argument("--memory-calls", type=int, default=0, help="sequential short calls (0: skip)")
    p.add_argument("--memory-lanes", type=int, default=10)
    p.add_argument(
        "--recording",
        nargs="+",
        default=["off"],
        choices=["off", "mono", "dual"],
        help="the agent's recording mode for the memory runs (one run each, in order)",
    )
    p.add_argument("--name", default="latest")
    p.add_argument("--out", type=Path, help="results file (default: bench/results/NAME.json)")
    p.add_argument("--no-barge-in", action="store_true")
    p.add_argument(
        "--llm-token-delay-ms",
        type=float,
        default=0.0,
        help="the fake LLM's pause between tokens (issue 16's harness: 10)",
    )
    p.add_argument("--no-warmup", action="store_true", help="skip the uncounted warm-up call")
    p.add_argument("--memory-servers", nargs="+", choices=stack.SERVERS, help="default: --servers")
    p.add_argument("--no-pin", action="store_true", help="do not pin server / clients to CPUs")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (DB, server logs)")
    p.add_argument("--profile", action="store_true", help="py-spy the server (implies --keep)")
    p.add_argument(
        "--burst",
        action="store_true",
        help="every call's turns end at the same moments (no barge-in); see --burst-period-s",
    )
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run server, fakes and callers at this niceness (negative needs root): on a "
        "shared machine, other jobs then take less of the server's core",
    )
    p.add_argument("--burst-period-s", type=float, default=7.0, help="seconds between bursts")
    p.add_argument(
        "--trees",
        type=_tree,
        nargs="+",
        help="serve from these source trees, alternating per N: LABEL=PATH[:mod,mod] "
        "(mods are hidden from that server, e.g. before=/tmp/old:uvloop,httptools)",
    )
    args = p.parse_args(argv)
    args.keep = args.keep or args.profile
    cpus = sorted(os.sched_getaffinity(0))
    if args.no_pin or len(cpus) < 2:
        args.server_cpus = args.client_cpus = ()
    else:
        args.server_cpus, args.client_cpus = (cpus[0],), tuple(cpus[1:])
    return args


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks that stop the children


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.nice:
        os.environ["BENCH_NICE"] = str(args.nice)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    started = datetime.now(UTC)
    doc: dict[str, Any] = {
        "name": args.name,
        "started_at": started.isoformat(timespec="seconds"),
        "command": "python -m bench.loadtest " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "versions": versions(),
        "fixed_latency_ms": {
            "endpointing": stack.ENDPOINTING_MS,
            "llm_ttft": stack.LLM_TTFT_MS,
            "tts_ttfb": stack.TTS_TTFB_MS,
            "total": stack.FIXED_MS,
        },
        "config": {
            "n": args.n,
            "servers": args.servers,
            "turns": args.turns,
            "barge_in": not args.no_barge_in,
            "memory_calls": args.memory_calls,
            "memory_lanes": args.memory_lanes,
            "recording": args.recording,
            "ramp_s": args.ramp_s,
            "llm_token_delay_ms": args.llm_token_delay_ms,
            "server_cpus": list(args.server_cpus),
            "client_cpus": list(args.client_cpus),
            "nice": args.nice,
            "burst": args.burst,
            "burst_period_s": args.burst_period_s if args.burst else None,
            "trees": [
                {"label": t.label, "root": str(t.root), "block": list(t.block), "env": dict(t.env)}
                for t in args.trees or []
            ],
        },
        "steps": [],
        "memory": [],
    }
    with stack.workdir(args.keep) as tmp:
        env = stack.base_env(tmp, 0)
        tenant = stack.prepare_db(env)
        with stack.fakes(
            env, tmp / "fakes.log", args.client_cpus, llm_token_delay_ms=args.llm_token_delay_ms
        ) as urls:
            env.update(urls)
            if args.trees:
                for n in args.n:
                    for kind in args.servers:
                        for tree in args.trees:
                            print(
                                f"[{datetime.now(UTC):%H:%M:%S}] {tree.label} ({kind}) N={n} ...",
                                flush=True,
                            )
                            step = load_step(kind, n, env, tenant, args, tmp, tree)
                            doc["steps"].append(step)
                            print(table([step]).splitlines()[1], flush=True)
            for kind in [] if args.trees else args.servers:
                for n in args.n:
                    print(f"[{datetime.now(UTC):%H:%M:%S}] {kind} N={n} ...", flush=True)
                    step = load_step(kind, n, env, tenant, args, tmp)
                    doc["steps"].append(step)
                    print(table([step]).splitlines()[1], flush=True)
            if args.memory_calls:
                for kind in args.memory_servers or args.servers:
                    for tree, mode in itertools.product(args.trees or [None], args.recording):
                        label = tree.label if tree else kind
                        print(
                            f"[{datetime.now(UTC):%H:%M:%S}] {label} memory: "
                            f"{args.memory_calls} calls, recording {mode}",
                            flush=True,
                        )
                        doc["memory"].append(
                            memory_run(
                                kind,
                                args.memory_calls,
                                args.memory_lanes,
                                env,
                                tenant,
                                args,
                                tmp,
                                tree,
                                recording=mode,
                            )
                        )
        if args.keep:
            print(f"kept {tmp}")
    summarize(doc, len(args.server_cpus) or (os.cpu_count() or 1))
    doc["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    out = args.out or RESULTS / f"{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print()
    print(table(doc["steps"]))
    for m in doc["memory"]:
        print(
            f"memory {m['server_kind']} recording {m.get('recording', 'off')}: "
            f"{m['rss_points']} growth {m['rss_growth_kb_per_call']} KB/call, "
            f"{m.get('recordings_stored', 0)} recordings stored"
        )
    print(
        f"largest N holding p95 overhead < {OVERHEAD_P95_TARGET_MS:g} ms, no missed turns: "
        f"{doc['max_calls_holding_target']} as heard, "
        f"{doc['max_calls_holding_target_server_metric']} by the server's platform_overhead_ms"
    )
    print(f"wrote {out}")
    return doc


if __name__ == "__main__":
    main()
