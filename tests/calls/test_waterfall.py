"""The latency waterfall: bar geometry from a turn's timeline, and its SVG."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from django.template.loader import render_to_string

from calls.waterfall import STAGES, Waterfall, waterfall_layout
from tests.factories import turn_timeline
from voice.events import TurnKind, TurnTimeline

SVG = "{http://www.w3.org/2000/svg}"


def _scale(layout: Waterfall) -> float:
    return (layout.plot_right - layout.plot_left) / (layout.axis_end_ms - layout.axis_start_ms)


def test_one_row_per_turn_one_bar_per_stage_on_a_shared_axis() -> None:
    shape = {"vad_hangover_ms": 100.0, "llm_first_clause_ms": 35.0}
    turns = [
        turn_timeline(1, speech_end_ms=3000, llm_ttft_ms=300, **shape).as_dict(),
        turn_timeline(2, speech_end_ms=9000, llm_ttft_ms=900, **shape).as_dict(),
    ]
    layout = waterfall_layout(turns)

    assert [r.turn_index for r in layout.rows] == [1, 2]
    scale = _scale(layout)
    zero = layout.plot_left + (0 - layout.axis_start_ms) * scale
    for row, turn in zip(layout.rows, turns, strict=True):
        bars = {b.stage: b for b in row.bars}
        assert set(bars) == {s[0] for s in STAGES} | {"playback"}
        # Both rows start at the caller's last sound, whatever the call time; the VAD's
        # end of speech (where endpointing starts) is its hangover later.
        assert bars["vad_hangover"].x == pytest.approx(zero, abs=0.01)
        assert bars["endpointing"].x == pytest.approx(zero + 100 * scale, abs=0.01)
        assert bars["stt_lag"].x == pytest.approx(zero + 100 * scale, abs=0.01)
        stages = [s[0] for s in STAGES]
        for stage in stages:
            assert bars[stage].ms == pytest.approx(turn[f"{stage}_ms"], abs=0.05)
            assert bars[stage].width == pytest.approx(bars[stage].ms * scale, abs=0.05)
        # The stages (STT lag runs beside endpointing) add up to voice-to-voice, as the
        # caller hears it; overhead ends when the first audio left.
        in_series = sum(bars[s].ms for s in stages if s != "stt_lag")
        assert in_series == pytest.approx(turn["voice_to_voice_ms"], abs=0.2)
        v2v = 100 + 240 + turn["llm_ttft_ms"] + 35 + 120 + 12
        assert turn["voice_to_voice_ms"] == pytest.approx(v2v)
        sent_x = zero + turn["voice_to_voice_ms"] * scale
        overhead = bars["platform_overhead"]
        assert overhead.x + overhead.width == pytest.approx(sent_x, abs=0.05)
        assert row.bracket == pytest.approx((zero, sent_x), abs=0.05)
        # Lanes do not overlap.
        ys = [b.y for b in row.bars]
        assert len(set(ys)) == len(ys)
    # The slow LLM of turn 2 is a longer bar than turn 1's on the same axis.
    llm = [next(b for b in r.bars if b.stage == "llm_ttft") for r in layout.rows]
    assert llm[1].width == pytest.approx(3 * llm[0].width, abs=0.1)
    assert llm[1].x == pytest.approx(llm[0].x, abs=0.01)


def test_axis_ticks_are_round_numbers_covering_every_stage() -> None:
    layout = waterfall_layout([turn_timeline(1, speech_end_ms=2000).as_dict()])
    assert layout.axis_start_ms == 0
    assert layout.axis_end_ms >= 682 * 1.15
    values = [float(re.sub(r"[^\d.]", "", t.label)) for t in layout.ticks]
    step = values[1] - values[0]
    assert step in (100, 200, 250, 500)
    assert all(v % step == 0 for v in values)
    assert layout.ticks[-1].x == layout.plot_right


def test_playback_and_interruption_are_marked() -> None:
    played = turn_timeline(1, speech_end_ms=1000, playback_ms=2500).as_dict()
    cut = turn_timeline(2, speech_end_ms=9000, interrupted_after_ms=150).as_dict()
    layout = waterfall_layout([played, cut])

    first, second = layout.rows
    playback = next(b for b in first.bars if b.stage == "playback")
    assert playback.ms == 2500
    assert "finished" in playback.title
    # Long playback is clipped at the end of the axis, its title keeps the real length.
    assert playback.x + playback.width <= layout.plot_right + 0.01
    assert first.markers == []
    (marker,) = second.markers
    assert marker.kind == "interrupted"
    assert "832 ms" in marker.title  # 682 ms voice-to-voice + 150 ms of playback
    assert next(b for b in second.bars if b.stage == "playback").ms == 150


def test_a_greeting_has_no_caller_speech_to_anchor_on() -> None:
    greeting = TurnTimeline(
        turn_index=0,
        kind=TurnKind.GREETING,
        llm_request_ms=5.0,
        llm_first_token_ms=205.0,
        tts_first_text_ms=210.0,
        tts_first_audio_ms=330.0,
        first_audio_sent_ms=334.0,
    ).as_dict()
    layout = waterfall_layout([greeting])
    (row,) = layout.rows
    assert row.label == "Turn 0 · greeting"
    assert {b.stage for b in row.bars} == {"llm_ttft", "llm_first_clause", "tts_ttfb"}
    assert row.bracket is None and row.voice_to_voice_ms is None
    llm = next(b for b in row.bars if b.stage == "llm_ttft")
    assert llm.title == "Turn 0 · greeting · LLM first token: 200 ms (from 0 ms to 200 ms)"


def test_missing_and_junk_marks_do_not_break_the_layout() -> None:
    layout = waterfall_layout(
        [
            {"turn_index": 3, "kind": "reply"},
            {"turn_index": 4, "kind": "reply", "user_speech_end_ms": "x", "end_of_turn_ms": True},
        ]
    )
    assert [r.bars for r in layout.rows] == [[], []]
    assert layout.ticks and layout.axis_end_ms > layout.axis_start_ms
    assert waterfall_layout([]).rows == []


def test_svg_bars_carry_their_stage_and_a_title_with_the_numbers() -> None:
    layout = waterfall_layout(
        [
            turn_timeline(1, speech_end_ms=1000).as_dict(),
            turn_timeline(2, speech_end_ms=6000, interrupted_after_ms=300).as_dict(),
        ]
    )
    html = render_to_string("calls/_waterfall.html", {"waterfall": layout})
    svg = ET.fromstring(html[html.index("<svg") : html.index("</svg>") + 6])

    bars = svg.findall(f".//{SVG}rect[@data-stage]")
    assert {b.get("data-stage") for b in bars} == {
        "endpointing",
        "stt_lag",
        "llm_ttft",
        "llm_first_clause",
        "tts_ttfb",
        "platform_overhead",
        "playback",
    }  # no VAD hangover: these turns have no audible end (recorded before it existed)
    assert len(bars) == 14
    for bar in bars:
        title = bar.find(f"{SVG}title")
        assert title is not None and re.search(r"\d+(\.\d)? ms", title.text or "")
    llm = next(b for b in bars if b.get("data-stage") == "llm_ttft")
    llm_title = llm.find(f"{SVG}title")
    assert llm_title is not None and "LLM first token: 310 ms" in (llm_title.text or "")
    assert svg.find(f".//{SVG}line[@data-marker='interrupted']") is not None
    assert "voice-to-voice 682 ms" in html


def test_no_turns_says_so() -> None:
    html = render_to_string("calls/_waterfall.html", {"waterfall": waterfall_layout([])})
    assert "<svg" not in html and "No assistant turns" in html


def test_a_turn_whose_stages_all_took_no_time_still_draws() -> None:
    # A greeting from a fast local TTS: every mark at the same millisecond (was a
    # ZeroDivisionError, a 500 on the call's page).
    at = {"tts_first_text_ms": 40.0, "tts_first_audio_ms": 40.0, "first_audio_sent_ms": 40.0}
    layout = waterfall_layout([{"turn_index": 0, "kind": "greeting", **at}])
    [row] = layout.rows
    assert [bar.ms for bar in row.bars if bar.stage == "tts_ttfb"] == [0.0]
