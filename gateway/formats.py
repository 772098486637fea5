"""How numbers, money, durations and times read on the dashboard. Pure: no I/O, no clock.

The overview's JSON twin carries these same display strings, so the page and its live
updates (web/static/app.js) show exactly what the server rendered.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

DASH = "\u2014"  # shown for "no value"


def count(value: float | None) -> str:
    """Thousands separators: 1234567 -> "1,234,567"."""
    if value is None:
        return DASH
    return f"{round(value):,}"


def compact(value: float | None) -> str:
    """Short counts for cards and axes: 950, 12.3k, 4.5M."""
    if value is None:
        return DASH
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            scaled = value / limit
            return f"{scaled:.1f}{suffix}" if abs(scaled) < 100 else f"{scaled:.0f}{suffix}"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def usd(value: float | None) -> str:
    """Dollars with cents; small amounts keep enough digits to be seen: "$0.000014"."""
    if value is None:
        return DASH
    if value == 0:
        return "$0.00"
    if abs(value) >= 0.01:
        return f"${value:,.2f}"
    if abs(value) >= 0.000001:
        return f"${value:.6f}".rstrip("0")
    return "<$0.000001"


def usd_short(value: float) -> str:
    """Axis labels: "$0", "$2.5", "$250", "$1.2k"."""
    if value >= 1000:
        return "$" + compact(value)
    if 0 < value < 0.01:
        return usd(value)
    return f"${value:.2f}".rstrip("0").rstrip(".") if value else "$0"


def percent(value: float | None, digits: int = 1) -> str:
    """A ratio as a percentage: 0.0123 -> "1.2%"."""
    if value is None:
        return DASH
    return f"{value * 100:.{digits}f}%"


def duration_ms(value: float | None) -> str:
    """Milliseconds read naturally: "850 ms", "1.24 s", "2 min 5 s"."""
    if value is None:
        return DASH
    if value < 1:
        return f"{value:.2f} ms"
    if value < 1000:
        return f"{value:.0f} ms"
    seconds = value / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def countdown(seconds: float | None) -> str:
    """Seconds left, for cooldowns: "45 s", "12 min", "2 h 5 min"."""
    if seconds is None:
        return DASH
    s = max(0, math.ceil(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def change(current: float | None, previous: float | None) -> tuple[float | None, str]:
    """Relative change against a previous value, as a number (percent) and its display."""
    if current is None or previous is None:
        return None, DASH
    if previous == 0:
        return (None, "new") if current else (0.0, "\u00b10%")
    pct = (current - previous) / previous * 100
    if abs(pct) < 0.5:
        return pct, "\u00b10%"
    sign = "+" if pct > 0 else "\u2212"
    return pct, f"{sign}{abs(pct):.0f}%"


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def ago(value: str | None, wall_now: float) -> str:
    """An ISO-8601 UTC time relative to now: "just now", "5 min ago", "3 d ago"."""
    if not value:
        return "never"
    s = wall_now - parse_iso(value).timestamp()
    if s < 45:
        return "just now"
    for limit, unit, size in ((3600, "min", 60), (86400, "h", 3600), (86400 * 60, "d", 86400)):
        if s < limit:
            return f"{int(s // size)} {unit} ago"
    return value[:10]


def timestamp(value: str | None) -> str:
    """ "2026-11-22T14:05:09.123Z" -> "2026-11-22 14:05:09"."""
    if not value:
        return DASH
    return value[:19].replace("T", " ")


def plural(n: float, word: str, words: str | None = None) -> str:
    return f"{count(n)} {word if n == 1 else (words or word + 's')}"
