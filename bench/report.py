"""Markdown tables from a load-bench results file (for docs/benchmarks.md).

python -m bench.report bench/results/final.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _d(dist: dict[str, Any], *keys: str) -> str:
    vals = [dist.get(k) for k in keys]
    return " / ".join("-" if v is None else f"{v:g}" for v in vals)


def latency_table(doc: dict[str, Any]) -> str:
    rows = [
        "| server | N | v2v heard p50 / p95 / p99 | v2v server p50 / p95 / p99 "
        "| overhead heard p50 / p95 / p99 | server platform_overhead p50 / p95 / p99 "
        "| missed turns |",
        "|---|---:|---|---|---|---|---|",
    ]
    for s in doc["steps"]:
        rows.append(
            f"| {s['server_kind']} | {s['n']} "
            f"| {_d(s['voice_to_voice_heard_ms'], 'p50', 'p95', 'p99')} "
            f"| {_d(s['voice_to_voice_server_ms'], 'p50', 'p95', 'p99')} "
            f"| {_d(s['overhead_heard_ms'], 'p50', 'p95', 'p99')} "
            f"| {_d(s['platform_overhead_server_ms'], 'p50', 'p95', 'p99')} "
            f"| {s['missed_turns']} / {s['turns']} |"
        )
    return "\n".join(rows)


def stage_table(doc: dict[str, Any]) -> str:
    rows = [
        "| server | N | endpointing p50 / p95 | STT lag p50 / p95 | LLM TTFT p50 / p95 "
        "| TTS TTFB p50 / p95 |",
        "|---|---:|---|---|---|---|",
    ]
    for s in doc["steps"]:
        st = s["stages_server_ms"]
        rows.append(
            f"| {s['server_kind']} | {s['n']} | {_d(st['endpointing_ms'], 'p50', 'p95')} "
            f"| {_d(st['stt_lag_ms'], 'p50', 'p95')} | {_d(st['llm_ttft_ms'], 'p50', 'p95')} "
            f"| {_d(st['tts_ttfb_ms'], 'p50', 'p95')} |"
        )
    return "\n".join(rows)


def truth_table(doc: dict[str, Any], label: str = "") -> str:
    """Does the server's timeline match what the caller heard (issue 16, item 6)?"""
    rows = [
        "| run | server | N | v2v heard p50 / p95 | v2v server p50 / p95 "
        "| heard - server per turn p50 / p95 / max | VAD hangover p50 | LLM first clause p50 "
        "| server platform_overhead p50 / p95 |",
        "|---|---|---:|---|---|---|---:|---:|---|",
    ]
    for s in doc["steps"]:
        st = s["stages_server_ms"]
        none: dict[str, Any] = {}
        rows.append(
            f"| {label or doc['name']} | {s['server_kind']} | {s['n']} "
            f"| {_d(s['voice_to_voice_heard_ms'], 'p50', 'p95')} "
            f"| {_d(s['voice_to_voice_server_ms'], 'p50', 'p95')} "
            f"| {_d(s.get('v2v_heard_minus_server_ms', none), 'p50', 'p95', 'max')} "
            f"| {_d(st.get('vad_hangover_ms', none), 'p50')} "
            f"| {_d(st.get('llm_first_clause_ms', none), 'p50')} "
            f"| {_d(s['platform_overhead_server_ms'], 'p50', 'p95')} |"
        )
    return "\n".join(rows)


def resource_table(doc: dict[str, Any]) -> str:
    rows = [
        "| server | N | barge-in onset→clear p50 / p95 | decision→clear p50 / p95 "
        "| stalls (count, p95 ms) | server CPU % mean (max) | CPU % per call "
        "| RSS base → peak MB | RSS MB per call | machine CPU % [cpu0, cpu1] "
        "| caller late frames |",
        "|---|---:|---|---|---|---|---:|---|---:|---|---:|",
    ]
    for s in doc["steps"]:
        b, sv = s["barge_in"], s["server"]
        rows.append(
            f"| {s['server_kind']} | {s['n']} "
            f"| {_d(b['onset_to_clear_heard_ms'], 'p50', 'p95')} "
            f"| {_d(b['decision_to_clear_ms'], 'p50', 'p95')} "
            f"| {s['stalls']['count']}, {_d(s['stalls']['ms'], 'p95')} "
            f"| {sv['cpu_percent_mean']} ({sv['cpu_percent_max']}) | {sv['cpu_percent_per_call']} "
            f"| {sv['rss_baseline_mb']} → {sv['rss_peak_mb']} | {sv['rss_per_call_mb']} "
            f"| {s.get('machine_cpu_percent_per_cpu')} | {s['callers']['late_frames']} |"
        )
    return "\n".join(rows)


def memory_table(doc: dict[str, Any]) -> str:
    out = []
    for m in doc.get("memory", []):
        pts = ", ".join(f"{p['calls']}: {p['rss_mb']}" for p in m["rss_points"])
        out.append(
            f"- **{m['server_kind']}**: {m['calls']} calls, {m['concurrent']} at a time, "
            f"{m['calls_with_errors']} with errors, {m['wall_s']} s; RSS MB after N calls: {pts}; "
            f"growth (second half vs first half) {m['rss_growth_kb_per_call']} KB/call"
        )
    return "\n".join(out)


def main(argv: list[str]) -> None:
    doc = json.loads(Path(argv[0]).read_text())
    print("### Latency\n")
    print(latency_table(doc))
    print("\n### Server-side stages\n")
    print(stage_table(doc))
    print("\n### The timeline against what the caller heard\n")
    print(truth_table(doc))
    print("\n### Barge-in, playback, resources\n")
    print(resource_table(doc))
    if doc.get("memory"):
        print("\n### Memory over sequential calls\n")
        print(memory_table(doc))
    print(
        f"\nLargest N with no missed turns and overhead p95 < 50 ms: as heard "
        f"{doc['max_calls_holding_target']}, by the server's platform_overhead_ms "
        f"{doc.get('max_calls_holding_target_server_metric')}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
