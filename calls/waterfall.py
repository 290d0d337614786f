"""Geometry of a call's latency waterfall, drawn server-side as SVG.

One row per assistant turn, one lane per stage, on a millisecond axis shared by every
row: 0 is the moment the caller stopped speaking (their last audible sound, or the VAD's
end of speech for turns recorded before the audible end was), so rows line up and a slow
turn stands out. A pure function of the turns' timelines (``TurnTimeline.as_dict()``, as
stored in ``TurnMetric.timeline``); the template only draws what it returns.

The VAD's hangover (the caller's last sound -> the VAD's end of speech) and the LLM's
first clause (first token -> first speakable chunk to the TTS) are stages of their own:
neither is our processing. The platform's overhead is not one contiguous span: it is the
sum of the hand-offs between stages (end of turn -> LLM request, first clause -> TTS,
first audio -> sent). Its bar has that total length and ends where the first audio left
for the caller, so the bars of a row (less STT lag, which runs beside endpointing) add
up to voice-to-voice. A preemptive reply's LLM and TTS bars start before the end of turn
and overlap endpointing (by ``preemptive_hidden_ms``); the overlap is drawn where it
happened and counted once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# (stage key, label, raw start mark, raw end mark, colour). The colours keep a 3:1
# contrast against white and differ in lightness, so the lanes read in greyscale too.
STAGES: tuple[tuple[str, str, str, str, str], ...] = (
    ("vad_hangover", "VAD hangover", "user_audio_end_ms", "user_speech_end_ms", "#505a5f"),
    ("endpointing", "Endpointing", "user_speech_end_ms", "end_of_turn_ms", "#6b4fbb"),
    ("stt_lag", "STT lag", "user_speech_end_ms", "stt_final_ms", "#8f6a00"),
    ("llm_ttft", "LLM first token", "llm_request_ms", "llm_first_token_ms", "#1d70b8"),
    (
        "llm_first_clause",
        "LLM first clause",
        "llm_first_token_ms",
        "tts_first_text_ms",
        "#003078",
    ),
    ("tts_ttfb", "TTS first byte", "tts_first_text_ms", "tts_first_audio_ms", "#00703c"),
    ("platform_overhead", "Platform overhead", "", "first_audio_sent_ms", "#d4351c"),
)
PLAYBACK_COLOUR = "#b1b4b6"
INTERRUPT_COLOUR = "#d4351c"
# Where a row's zero is, in order of preference: a greeting has no caller speech.
ANCHORS = (
    "user_audio_end_ms",
    "user_speech_end_ms",
    "end_of_turn_ms",
    "llm_request_ms",
    "tts_first_text_ms",
)

LANE_HEIGHT = 8
LANE_GAP = 2
ROW_HEADER = 16
ROW_GAP = 10
AXIS_HEIGHT = 24
LABEL_WIDTH = 150


@dataclass(frozen=True, slots=True)
class Bar:
    stage: str
    colour: str
    x: float
    y: float
    width: float
    height: float
    ms: float
    title: str


@dataclass(frozen=True, slots=True)
class Marker:
    kind: str
    x: float
    y1: float
    y2: float
    title: str


@dataclass(frozen=True, slots=True)
class Row:
    turn_index: int
    label: str
    y: float
    bars: list[Bar]
    markers: list[Marker]
    voice_to_voice_ms: float | None
    # The voice-to-voice bracket over the lanes: x from, x to (None: not measured).
    bracket: tuple[float, float] | None


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str

    @property
    def anchor(self) -> str:
        """SVG text-anchor that keeps the label inside the chart at both ends."""
        return "start" if self.x <= LABEL_WIDTH else "middle"


@dataclass(frozen=True, slots=True)
class Waterfall:
    width: int
    height: int
    plot_left: float
    plot_right: float
    axis_start_ms: float
    axis_end_ms: float
    rows: list[Row] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    legend: list[tuple[str, str, str]] = field(default_factory=list)  # (stage, label, colour)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _fmt(ms: float) -> str:
    return f"{ms:,.0f} ms" if abs(ms) >= 10 or ms == 0 else f"{ms:.1f} ms"


def _nice_step(span: float, target_ticks: int = 6) -> float:
    raw = max(span, 1.0) / target_ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _spans(timeline: Mapping[str, Any]) -> tuple[float | None, dict[str, tuple[float, float]]]:
    """The row's zero (absolute ms) and each stage's [start, end] relative to it."""
    anchor = next((v for k in ANCHORS if (v := _num(timeline.get(k))) is not None), None)
    if anchor is None:
        return None, {}
    spans: dict[str, tuple[float, float]] = {}
    for stage, _, start_key, end_key, _ in STAGES:
        end = _num(timeline.get(end_key))
        if stage == "platform_overhead":
            overhead = _num(timeline.get("platform_overhead_ms"))
            if end is None or overhead is None:
                continue
            spans[stage] = (end - overhead - anchor, end - anchor)
            continue
        start = _num(timeline.get(start_key))
        if start is not None and end is not None:
            spans[stage] = (start - anchor, end - anchor)
    return anchor, spans


def waterfall_layout(turns: Sequence[Mapping[str, Any]], *, width: int = 960) -> Waterfall:
    """Lay out one row per turn. ``turns`` are timeline dicts, in turn order."""
    prepared = [(t, *_spans(t)) for t in turns]
    ends = [end for _, _, spans in prepared for _, end in spans.values()]
    starts = [start for _, _, spans in prepared for start, _ in spans.values()]
    # Leave room after the last stage for the start of playback.
    longest = max(ends, default=1000.0) * 1.15
    step = _nice_step(longest - min(0.0, *starts) if starts else longest)
    axis_start = math.floor(min(0.0, *starts) / step) * step if starts else 0.0
    axis_end = math.ceil(longest / step) * step
    if axis_end <= axis_start:  # every stage took 0 ms (a cached greeting, a fast local TTS)
        axis_end = axis_start + step
    plot_left, plot_right = float(LABEL_WIDTH), float(width - 12)

    def x_of(ms: float) -> float:
        ms = min(max(ms, axis_start), axis_end)
        return round(
            plot_left + (ms - axis_start) / (axis_end - axis_start) * (plot_right - plot_left), 2
        )

    lanes = len(STAGES) + 1  # + playback
    row_height = ROW_HEADER + lanes * (LANE_HEIGHT + LANE_GAP)
    rows: list[Row] = []
    y = float(AXIS_HEIGHT)
    for timeline, anchor, spans in prepared:
        index = int(_num(timeline.get("turn_index")) or 0)
        kind = str(timeline.get("kind") or "reply")
        label = f"Turn {index}" + ("" if kind == "reply" else f" · {kind}")
        # Anchored on the caller's end of speech (not a greeting's fallback anchor)?
        heard = any(
            _num(timeline.get(k)) is not None for k in ("user_audio_end_ms", "user_speech_end_ms")
        )
        bars: list[Bar] = []
        lane_y = y + ROW_HEADER
        for stage, stage_label, _, _, colour in STAGES:
            if stage in spans:
                start, end = spans[stage]
                ms = end - start
                if stage == "platform_overhead":
                    where = "the hand-offs between stages, ending when the first audio was sent"
                else:
                    where = f"from {_fmt(start)} to {_fmt(end)} after the caller stopped speaking"
                    if not heard:
                        where = f"from {_fmt(start)} to {_fmt(end)}"
                x1, x2 = x_of(start), x_of(end)
                bars.append(
                    Bar(
                        stage=stage,
                        colour=colour,
                        x=min(x1, x2),
                        y=lane_y,
                        width=max(abs(x2 - x1), 1.0),
                        height=LANE_HEIGHT,
                        ms=round(ms, 1),
                        title=f"{label} · {stage_label}: {_fmt(ms)} ({where})",
                    )
                )
            lane_y += LANE_HEIGHT + LANE_GAP
        markers: list[Marker] = []
        sent = _num(timeline.get("first_audio_sent_ms"))
        played = _num(timeline.get("playback_finished_ms"))
        cut = _num(timeline.get("interrupted_at_ms"))
        if anchor is not None and sent is not None:
            stop = cut if cut is not None else played
            if stop is not None:
                x1, x2 = x_of(sent - anchor), x_of(stop - anchor)
                how = "interrupted" if cut is not None else "finished"
                bars.append(
                    Bar(
                        stage="playback",
                        colour=PLAYBACK_COLOUR,
                        x=x1,
                        y=lane_y,
                        width=max(x2 - x1, 1.0),
                        height=LANE_HEIGHT,
                        ms=round(stop - sent, 1),
                        title=f"{label} · Playback: {_fmt(stop - sent)} (from the first audio "
                        f"sent until playback {how}, {_fmt(stop - anchor)})",
                    )
                )
        if anchor is not None and cut is not None:
            markers.append(
                Marker(
                    kind="interrupted",
                    x=x_of(cut - anchor),
                    y1=y + ROW_HEADER - 2,
                    y2=y + row_height,
                    title=f"{label} · Interrupted by the caller at {_fmt(cut - anchor)}",
                )
            )
        v2v = _num(timeline.get("voice_to_voice_ms"))
        bracket = None
        if heard and anchor is not None and sent is not None:
            bracket = (x_of(0.0), x_of(sent - anchor))
        rows.append(
            Row(
                turn_index=index,
                label=label,
                y=y,
                bars=bars,
                markers=markers,
                voice_to_voice_ms=None if v2v is None else round(v2v, 1),
                bracket=bracket,
            )
        )
        y += row_height + ROW_GAP
    step_count = round((axis_end - axis_start) / step)
    ticks = [
        Tick(x=x_of(axis_start + i * step), label=f"{axis_start + i * step:,.0f} ms")
        for i in range(step_count + 1)
    ]
    legend = [(s, lbl, c) for s, lbl, _, _, c in STAGES] + [
        ("playback", "Playback", PLAYBACK_COLOUR)
    ]
    return Waterfall(
        width=width,
        height=int(y + 4),
        plot_left=plot_left,
        plot_right=plot_right,
        axis_start_ms=axis_start,
        axis_end_ms=axis_end,
        rows=rows,
        ticks=ticks,
        legend=legend,
    )
