"""The usage page's view model: sums per model, backend, key or pool over whole UTC days.

Read from the daily rollup; derived columns (rates, averages) come from sums and counts.
Served as HTML (/usage), JSON (/api/usage) and CSV (/usage.csv) from the same rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiosqlite

from gateway import reports
from gateway.errors import BadRequest
from gateway.records import HOURLY_COUNTERS

DEFAULT_DAYS = 30
MAX_DAYS = 3660

# (id, label, format) in display order; every id is a sortable key of a row.
COLUMNS = (
    ("key", "", "text"),
    ("requests", "Requests", "count"),
    ("failed_requests", "Failed", "count"),
    ("error_rate", "Error rate", "percent"),
    ("prompt_tokens", "Prompt tokens", "count"),
    ("completion_tokens", "Completion tokens", "count"),
    ("cached_tokens", "Cached tokens", "count"),
    ("cost_usd", "Cost", "usd"),
    ("avg_latency_ms", "Avg latency", "ms"),
    ("avg_ttft_ms", "Avg TTFT", "ms"),
    ("fallbacks", "Fallbacks", "count"),
    ("errors_429", "429s", "count"),
)
SORTABLE = frozenset(c[0] for c in COLUMNS)
GROUP_LABELS = {"model": "Model", "backend": "Backend", "key": "Client key", "pool": "Pool"}


def _day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} has value '{value}'; expected a date such as 2026-01-31", param=name) from None


def parse_params(params: Mapping[str, str], wall_now: float) -> dict[str, Any]:
    """group_by, start and end (inclusive UTC dates), sort and dir, validated, with defaults."""
    today = datetime.fromtimestamp(wall_now, UTC).date()
    group_by = params.get("group_by") or "model"
    if group_by not in reports.DAILY_GROUPINGS:
        raise BadRequest(
            f"group_by has value '{group_by}'; expected one of model, backend, key, pool", param="group_by"
        )
    end = _day(params["end"], "end") if params.get("end") else today
    start = _day(params["start"], "start") if params.get("start") else end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise BadRequest("start must not be after end", param="start")
    if (end - start).days >= MAX_DAYS:
        raise BadRequest(f"the range may span at most {MAX_DAYS} days", param="start")
    sort = params.get("sort") or "cost_usd"
    if sort not in SORTABLE:
        raise BadRequest(f"sort has value '{sort}'; expected one of {', '.join(sorted(SORTABLE))}", param="sort")
    direction = params.get("dir") or ("asc" if sort == "key" else "desc")
    if direction not in ("asc", "desc"):
        raise BadRequest(f"dir has value '{direction}'; expected asc or desc", param="dir")
    return {"group_by": group_by, "start": start.isoformat(), "end": end.isoformat(), "sort": sort, "dir": direction}


def _derive(row: dict[str, Any]) -> dict[str, Any]:
    requests = row["requests"]
    return {
        **row,
        "error_rate": row["failed_requests"] / requests if requests else None,
        "avg_latency_ms": row["latency_ms_sum"] / requests if requests else None,
        "avg_ttft_ms": row["ttft_ms_sum"] / row["ttft_count"] if row["ttft_count"] else None,
    }


async def build_usage(conn: aiosqlite.Connection, params: Mapping[str, str], wall_now: float) -> dict[str, Any]:
    chosen = parse_params(params, wall_now)
    end_excl = (date.fromisoformat(chosen["end"]) + timedelta(days=1)).isoformat()
    rows = [_derive(r) for r in await reports.aggregate_days(conn, chosen["group_by"], chosen["start"], end_excl)]
    sort, reverse = chosen["sort"], chosen["dir"] == "desc"
    # None (no data for an average) sorts last either way.
    present = [r for r in rows if r[sort] is not None]
    rows = sorted(present, key=lambda r: r[sort], reverse=reverse) + [r for r in rows if r[sort] is None]
    totals = _derive({"key": "Total", **{c: sum(r[c] for r in rows) for c in HOURLY_COUNTERS}})
    return {**chosen, "totals": totals, "data": rows}


def to_csv(view: Mapping[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([view["group_by"], *HOURLY_COUNTERS, "error_rate", "avg_latency_ms", "avg_ttft_ms"])
    for row in [*view["data"], view["totals"]]:
        writer.writerow(
            [
                _cell(row["key"]),
                *(row[c] for c in HOURLY_COUNTERS),
                *("" if row[c] is None else round(row[c], 6) for c in ("error_rate", "avg_latency_ms", "avg_ttft_ms")),
            ]
        )
    return out.getvalue()


def _cell(text: str) -> str:
    # A name starting with = + - @ would run as a formula in a spreadsheet (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
