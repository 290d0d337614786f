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


@pytest.mark.timeout(90)
def test_a_burst_against_the_served_app_from_a_source_tree(tmp_path: Path) -> None:
    """Issue #15's shape: the server as `make run` serves it (with the loop-lag probe), from
    a named source tree, every call's turn at a shared moment."""
    out = tmp_path / "burst.json"
    root = Path(loadtest.stack.ROOT)
    doc = loadtest.main(
        ["--n", "1", "--turns", "1", "--servers", "serve", "--burst", "--burst-period-s", "3",
         "--trees", f"here={root}", "--no-warmup", "--no-pin", "--out", str(out),
         "--name", "burst"]
    )  # fmt: skip
    (step,) = doc["steps"]
    assert (step["server_kind"], step["mode"], step["server"]["launcher"]) == (
        "here",
        "burst",
        "serve",
    )
    assert step["calls_connected"] == 1 and step["errors_sample"] == []
    assert step["turns"] == 1  # no barge-in in burst mode
    assert len(step["burst_slots_s"]) == 1
    assert step["server"]["loop_lag_ms"].keys() == DIST_KEYS
    assert step["server"]["loop_lag_ms"]["n"] > 0  # the probe ran inside the server
    assert {"window_s", "per_burst", "mean"} <= step["server"]["burst_cpu_ms_per_turn"].keys()
    assert doc["config"]["trees"] == [{"label": "here", "root": str(root), "block": [], "env": {}}]
