"""Smoke test of the load bench harness: one call through the real server and fakes
produces a result document of the expected shape. No timing is asserted (bench/ measures,
tests do not)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import loadtest

STEP_KEYS = {
    "n",
    "turns",
    "missed_turns",
    "voice_to_voice_heard_ms",
    "voice_to_voice_server_ms",
    "overhead_heard_ms",
    "platform_overhead_server_ms",
    "barge_in",
    "stalls",
    "server",
    "server_kind",
}
DIST_KEYS = {"n", "p50", "p95", "p99", "max", "mean"}


@pytest.mark.timeout(60)
def test_one_call_produces_a_result_document(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    doc = loadtest.main(
        ["--n", "1", "--turns", "1", "--servers", "daphne", "--no-warmup", "--no-pin",
         "--out", str(out), "--name", "smoke"]
    )  # fmt: skip
    assert json.loads(out.read_text()) == doc
    assert {"machine", "versions", "fixed_latency_ms", "steps", "calls_per_core"} <= doc.keys()
    (step,) = doc["steps"]
    assert step.keys() >= STEP_KEYS
    assert step["voice_to_voice_heard_ms"].keys() == DIST_KEYS
    assert step["calls_connected"] == 1
    assert step["errors_sample"] == []
    assert step["turns"] == 2  # one question, then the barge-in over its reply
    assert {"cpu_percent_mean", "rss_per_call_mb"} <= step["server"].keys()
