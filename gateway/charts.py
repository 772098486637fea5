"""Server-side SVG charts as plain geometry. Pure: no I/O, no templates.

A chart is a dict of rectangles and labels in a fixed viewBox. `_macros.html` draws it as
SVG (every rectangle with a <title>, so values show on hover without JavaScript), and
web/static/app.js redraws the same dict from the overview's JSON twin: one geometry, two
renderers, and neither computes anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from gateway import formats

PALETTE_SIZE = 8  # series classes s0..s7 in app.css; the rest is grouped as "other"
OTHER = "other"

Chart = dict[str, Any]
Format = Callable[[float], str]


def top_series(totals: Mapping[str, float], limit: int = PALETTE_SIZE) -> list[str]:
    """The names that get their own colour (largest first); the rest fold into "other"."""
    ranked = sorted((name for name, v in totals.items() if v > 0), key=lambda n: (-totals[n], n))
    return ranked if len(ranked) <= limit else ranked[: limit - 1]


def nice_max(value: float, *, integer: bool = False) -> float:
    """The axis top: four equal gridline steps of a round size that reach value (whole steps for counts)."""
    if value <= 0:
        return 4.0 if integer else 1.0
    quarter = value / 4
    exponent = math.floor(math.log10(quarter))
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        size = step * 10.0**exponent
        if integer and size < 1:
            continue
        if size >= quarter * 0.9999 and not (integer and not float(size).is_integer()):
            return 4 * size
    return 4 * 10.0 ** (exponent + 1)


def stacked_bars(
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    value_format: Format,
    axis_format: Format,
    tick_every: int,
    tick_label: Callable[[str], str] = lambda label: label,
    integer: bool = False,
    width: int = 720,
    height: int = 220,
) -> Chart:
    """Columns for `labels`, each stacked from `series` (name -> one value per label)."""
    pad_right, pad_top, pad_bottom = 8, 10, 22
    totals = {name: sum(values) for name, values in series.items()}
    names = top_series(totals)
    grouped: dict[str, list[float]] = {name: list(series[name]) for name in names}
    rest = [name for name in series if name not in names]
    if rest:
        grouped[OTHER] = [sum(series[n][i] for n in rest) for i in range(len(labels))]
    classes = {name: (f"s{i}" if name != OTHER else "s-other") for i, name in enumerate(grouped)}
    column_totals = [sum(values[i] for values in grouped.values()) for i in range(len(labels))]
    top = nice_max(max(column_totals, default=0), integer=integer)
    ticks = [axis_format(top * k / 4) for k in range(5)]
    pad_left = max(30, 10 + 6 * max(len(t) for t in ticks))  # room for the longest label at 10px
    plot_w, plot_h = width - pad_left - pad_right, height - pad_top - pad_bottom
    rects: list[dict[str, Any]] = []
    texts: list[dict[str, Any]] = []
    for k, tick in enumerate(ticks):  # gridlines and the y axis at 0, 1/4 ... top
        y = pad_top + plot_h - plot_h * k / 4
        rects.append({"x": pad_left, "y": round(y, 2), "w": plot_w, "h": 0.6, "cls": "grid", "title": ""})
        texts.append({"x": pad_left - 6, "y": round(y + 3.5, 2), "text": tick, "anchor": "end"})
    slot = plot_w / max(1, len(labels))
    bar_w = max(1.0, slot * 0.78)
    for i, label in enumerate(labels):
        x = pad_left + i * slot + (slot - bar_w) / 2
        y = pad_top + plot_h
        for name, values in grouped.items():
            value = values[i]
            if value <= 0:
                continue
            h = plot_h * value / top
            y -= h
            tip = f"{label} \u00b7 {name}: {value_format(value)} (total {value_format(column_totals[i])})"
            rects.append(
                {
                    "x": round(x, 2),
                    "y": round(y, 2),
                    "w": round(bar_w, 2),
                    "h": round(h, 2),
                    "cls": classes[name],
                    "title": tip,
                }
            )
        if i % tick_every == 0:
            texts.append({"x": round(x + bar_w / 2, 2), "y": height - 6, "text": tick_label(label), "anchor": "middle"})
    total = sum(column_totals)
    return {
        "id": chart_id,
        "title": title,
        "width": width,
        "height": height,
        "rects": rects,
        "texts": texts,
        "legend": [
            {"name": name, "cls": classes[name], "total": value_format(totals_of(grouped[name]))} for name in grouped
        ],
        "summary": f"{title}: {value_format(total)} in total" if total else f"{title}: no data yet",
    }


def totals_of(values: Sequence[float]) -> float:
    return float(sum(values))


def heatmap(chart_id: str, title: str, last_day: date, days: int, cells: Mapping[str, tuple[float, float]]) -> Chart:
    """A calendar of `days` days up to `last_day`: one column per week (Monday on top).

    `cells` maps "YYYY-MM-DD" to (requests, cost_usd); the shade follows requests, in five
    levels split at the quartiles of the active days.
    """
    size, gap, pad_left, pad_top = 11, 2, 28, 16
    first = last_day - timedelta(days=days - 1)
    start = first - timedelta(days=first.weekday())
    weeks = (last_day - start).days // 7 + 1
    active = sorted(v[0] for v in cells.values() if v[0] > 0)
    bounds = [active[min(len(active) - 1, int(len(active) * q))] for q in (0.25, 0.5, 0.75)] if active else []
    rects: list[dict[str, Any]] = []
    texts: list[dict[str, Any]] = []
    for name, row in (("Mon", 0), ("Wed", 2), ("Fri", 4)):
        texts.append({"x": pad_left - 4, "y": pad_top + row * (size + gap) + size - 2, "text": name, "anchor": "end"})
    last_month, last_label_week = first.month if first.day > 7 else None, -3
    day = first
    while day <= last_day:
        week = (day - start).days // 7
        x = pad_left + week * (size + gap)
        y = pad_top + day.weekday() * (size + gap)
        requests, cost = cells.get(day.isoformat(), (0.0, 0.0))
        level = 0 if requests <= 0 else 1 + sum(requests > b for b in bounds)
        tip = f"{day.isoformat()}: {formats.plural(requests, 'request')}, {formats.usd(cost)}"
        rects.append({"x": x, "y": y, "w": size, "h": size, "cls": f"h{level}", "title": tip})
        # A month is labelled above its first full week, if that leaves room after the last label.
        if day.month != last_month and day.weekday() == 0 and week - last_label_week >= 3:
            texts.append({"x": x, "y": pad_top - 5, "text": day.strftime("%b"), "anchor": "start"})
            last_month, last_label_week = day.month, week
        day += timedelta(days=1)
    total_requests = sum(v[0] for v in cells.values())
    return {
        "id": chart_id,
        "title": title,
        "width": pad_left + weeks * (size + gap),
        "height": pad_top + 7 * (size + gap),
        "rects": rects,
        "texts": texts,
        "legend": [
            {"name": label, "cls": f"h{i}", "total": ""} for i, label in enumerate(("none", "", "", "", "most"))
        ],
        "summary": f"{title}: {formats.plural(total_requests, 'request')} on {len(active)} active days",
    }
