"""Column charts for the analytics pages, drawn server-side as SVG.

A pure function from categories and series of numbers to rectangles and ticks; the
template (templates/calls/_column_chart.html) only draws them. Every column has a
``<title>`` with its category, series and value, so the numbers are readable without a
mouse and without JavaScript.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

LEFT = 56
RIGHT = 8
TOP = 10
BOTTOM = 28


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    colour: str
    values: Sequence[float | None]


@dataclass(frozen=True, slots=True)
class Column:
    series: str
    category: str
    x: float
    y: float
    width: float
    height: float
    colour: str
    value: float
    title: str


@dataclass(frozen=True, slots=True)
class ChartTick:
    position: float
    label: str


@dataclass(frozen=True, slots=True)
class ColumnChart:
    title: str
    width: int
    height: int
    baseline: float
    plot_left: float
    plot_right: float
    columns: list[Column] = field(default_factory=list)
    y_ticks: list[ChartTick] = field(default_factory=list)
    x_labels: list[ChartTick] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (name, colour)
    empty: bool = True


def _step(top: float, target: int = 4) -> float:
    raw = max(top, 1e-9) / target
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _fmt(value: float, unit: str) -> str:
    text = f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:,.1f}"
    return f"{text} {unit}".rstrip()


def column_chart(
    *,
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    unit: str = "",
    width: int = 720,
    height: int = 220,
    label_every: int = 1,
) -> ColumnChart:
    """Grouped columns: one group per category, one column per series within it.

    A None value draws nothing (no data is not zero). ``label_every`` thins the category
    labels under the axis (every day of 90 would not fit); titles always name them.
    """
    values = [v for s in series for v in s.values if v is not None]
    top = max(values, default=0.0)
    step = _step(top) if top > 0 else 1.0
    axis_top = max(math.ceil(top / step), 1) * step
    plot_left, plot_right = float(LEFT), float(width - RIGHT)
    baseline = float(height - BOTTOM)
    plot_height = baseline - TOP
    slot = (plot_right - plot_left) / max(len(categories), 1)
    gap = min(slot * 0.2, 12.0)
    column_width = (slot - gap) / max(len(series), 1)
    columns: list[Column] = []
    for i, category in enumerate(categories):
        for j, s in enumerate(series):
            value = s.values[i] if i < len(s.values) else None
            if value is None:
                continue
            h = round(value / axis_top * plot_height, 2)
            x = round(plot_left + i * slot + gap / 2 + j * column_width, 2)
            name = f" · {s.name}" if len(series) > 1 or s.name else ""
            columns.append(
                Column(
                    series=s.name,
                    category=category,
                    x=x,
                    y=round(baseline - h, 2),
                    width=round(max(column_width - 1, 1.0), 2),
                    height=h,
                    colour=s.colour,
                    value=value,
                    title=f"{category}{name}: {_fmt(value, unit)}",
                )
            )
    ticks = round(axis_top / step)
    y_ticks = [
        ChartTick(
            position=round(baseline - k * step / axis_top * plot_height, 2),
            label=_fmt(k * step, unit),
        )
        for k in range(ticks + 1)
    ]
    x_labels = [
        ChartTick(position=round(plot_left + i * slot + slot / 2, 2), label=category)
        for i, category in enumerate(categories)
        if i % max(label_every, 1) == 0
    ]
    return ColumnChart(
        title=title,
        width=width,
        height=height,
        baseline=baseline,
        plot_left=plot_left,
        plot_right=plot_right,
        columns=columns,
        y_ticks=y_ticks,
        x_labels=x_labels,
        legend=[(s.name, s.colour) for s in series if s.name],
        empty=not values,
    )
