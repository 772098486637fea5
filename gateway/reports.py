"""SQL reads behind the dashboard: hour buckets for the last day, the rollups beyond it.

Companion of gateway/queries.py (which holds the writes and the admin API's reads); SQL
lives only in db.py, queries.py and here. Nothing here reads the request log.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import aiosqlite

from gateway.db import fetch_all
from gateway.queries import GROUPINGS
from gateway.records import HOURLY_COUNTERS

_DAILY_SUMS = ", ".join(f"COALESCE(SUM(u.{c}), 0) AS {c}" for c in HOURLY_COUNTERS)

# group_by value -> SQL expression over usage_daily u LEFT JOIN backends b; never from input.
DAILY_GROUPINGS = GROUPINGS
# How the overview's 24-hour chart may be stacked.
HOURLY_STACKS = {"backend": "u.backend", "pool": "COALESCE(b.pool, '')"}


async def hourly_by(conn: aiosqlite.Connection, stack: str, start_hour: str, end_hour: str) -> list[dict[str, Any]]:
    """Per hour and backend (or pool): requests, attempts and errors."""
    expr = HOURLY_STACKS[stack]
    rows = await fetch_all(
        conn,
        f"SELECT u.hour AS hour, {expr} AS name, SUM(u.requests) AS requests, SUM(u.attempts) AS attempts, "
        "SUM(u.errors) AS errors FROM usage_hourly u LEFT JOIN backends b ON b.name = u.backend "
        "WHERE u.hour >= ? AND u.hour < ? GROUP BY 1, 2 ORDER BY 1, 2",
        (start_hour, end_hour),
    )
    return [dict(r) for r in rows]


async def attempts_by_backend(conn: aiosqlite.Connection, start_hour: str, end_hour: str) -> dict[str, tuple[int, int]]:
    """backend -> (attempts, failed attempts) over an hour range.

    A request refused before any attempt is counted under backend '', so a backend's
    errors are exactly its failed attempts.
    """
    rows = await fetch_all(
        conn,
        # The hour range must drive this query (the primary key), not the (backend, hour) index.
        "SELECT +backend, SUM(attempts), SUM(errors) FROM usage_hourly WHERE hour >= ? AND hour < ? GROUP BY 1",
        (start_hour, end_hour),
    )
    return {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in rows if r[0]}


async def daily_by_model(conn: aiosqlite.Connection, start_day: str, end_day: str) -> list[dict[str, Any]]:
    """Per day and model: cost and requests, from the daily rollup; end_day is excluded."""
    rows = await fetch_all(
        conn,
        "SELECT day, model, SUM(cost_usd) AS cost_usd, SUM(requests) AS requests FROM usage_daily "
        "WHERE day >= ? AND day < ? GROUP BY 1, 2 ORDER BY 1, 2",
        (start_day, end_day),
    )
    return [dict(r) for r in rows]


async def daily_totals(conn: aiosqlite.Connection, start_day: str, end_day: str) -> list[dict[str, Any]]:
    """Requests and cost per day (one row per day, from usage_day_totals); end_day is excluded."""
    rows = await fetch_all(
        conn,
        "SELECT day, requests, cost_usd FROM usage_day_totals WHERE day >= ? AND day < ? ORDER BY day",
        (start_day, end_day),
    )
    return [dict(r) for r in rows]


async def cost_since(conn: aiosqlite.Connection, start_day: str) -> float:
    rows = await fetch_all(conn, "SELECT COALESCE(SUM(cost_usd), 0) FROM usage_day_totals WHERE day >= ?", (start_day,))
    return float(rows[0][0])


def _whole_months(start: date, end: date) -> tuple[date, date]:
    """[first, last) of the calendar months that lie wholly inside [start, end); first >= last if none."""
    first = start if start.day == 1 else (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first, end.replace(day=1)


async def aggregate_days(
    conn: aiosqlite.Connection, group_by: str, start_day: str, end_day: str
) -> list[dict[str, Any]]:
    """Sums per model, backend, key or pool over whole days [start_day, end_day).

    Whole calendar months come from usage_monthly and only the days around them from
    usage_daily, so a year costs about twelve months of rows plus two partial months.
    """
    expr = DAILY_GROUPINGS[group_by]
    start, end = date.fromisoformat(start_day), date.fromisoformat(end_day)
    first, last = _whole_months(start, end)
    if first >= last:
        first = last = end  # no whole month: every day from the daily rollup
    columns = ", ".join(HOURLY_COUNTERS)
    rows = await fetch_all(
        conn,
        f"SELECT {expr} AS key, {_DAILY_SUMS} FROM ("
        f"SELECT backend, model, api_key, {columns} FROM usage_daily "
        "WHERE (day >= ? AND day < ?) OR (day >= ? AND day < ?) "
        f"UNION ALL SELECT backend, model, api_key, {columns} FROM usage_monthly WHERE month >= ? AND month < ?"
        ") u LEFT JOIN backends b ON b.name = u.backend GROUP BY 1 ORDER BY cost_usd DESC, requests DESC, key",
        (start_day, first.isoformat(), last.isoformat(), end_day, first.isoformat()[:7], last.isoformat()[:7]),
    )
    return [dict(r) for r in rows]


async def latency_counts(conn: aiosqlite.Connection, start_hour: str, end_hour: str) -> dict[str, dict[int, int]]:
    """metric ("latency", "ttft") -> bucket -> count, over an hour range."""
    rows = await fetch_all(
        conn,
        "SELECT metric, bucket, SUM(count) FROM latency_hourly WHERE hour >= ? AND hour < ? GROUP BY 1, 2",
        (start_hour, end_hour),
    )
    out: dict[str, dict[int, int]] = {"latency": {}, "ttft": {}}
    for metric, bucket, n in rows:
        out.setdefault(metric, {})[int(bucket)] = int(n)
    return out


async def unpriced_models(conn: aiosqlite.Connection, start_day: str) -> dict[str, int]:
    """Models that had requests with tokens but no known price since a day: model -> requests."""
    rows = await fetch_all(
        conn,
        "SELECT model, SUM(unpriced) FROM usage_daily WHERE day >= ? AND unpriced > 0 GROUP BY model ORDER BY model",
        (start_day,),
    )
    return {r[0]: int(r[1]) for r in rows}
