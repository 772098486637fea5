"""Percentiles and medians of measured figures; pure functions, unit-tested."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """The pct-th percentile (0-100) of already sorted values, interpolated linearly; NaN when empty."""
    if not sorted_values:
        return math.nan
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be within 0-100, got {pct}")
    rank = (len(sorted_values) - 1) * pct / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(sorted_values[low])
    weight = rank - low
    return float(sorted_values[low]) * (1.0 - weight) + float(sorted_values[high]) * weight


def median(values: Iterable[float]) -> float:
    """The median of the finite values; NaN when there is none (a failed repetition is skipped)."""
    finite = sorted(v for v in values if v is not None and math.isfinite(v))
    return percentile(finite, 50.0)


def median_figures(repetitions: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Median of each figure across repetitions, figure by figure (so p99 is a median of p99s)."""
    names: list[str] = []
    for rep in repetitions:
        names.extend(name for name in rep if name not in names)
    return {name: median(rep.get(name, math.nan) for rep in repetitions) for name in names}


def ratio(value: float, floor: float) -> float:
    """value / floor, NaN when either is missing or the floor is zero."""
    if not (math.isfinite(value) and math.isfinite(floor)) or floor == 0:
        return math.nan
    return value / floor


def summarize_latencies_ms(latencies_s: Sequence[float], prefix: str) -> dict[str, float]:
    """p50/p90/p99/max of latencies given in seconds, as `{prefix}_p50_ms`, ... in milliseconds."""
    ordered = sorted(latencies_s)
    return {
        f"{prefix}_p50_ms": percentile(ordered, 50) * 1000.0,
        f"{prefix}_p90_ms": percentile(ordered, 90) * 1000.0,
        f"{prefix}_p99_ms": percentile(ordered, 99) * 1000.0,
        f"{prefix}_max_ms": (ordered[-1] * 1000.0) if ordered else math.nan,
    }
