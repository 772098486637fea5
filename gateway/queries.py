"""SQL for usage: the batched write of hour buckets and the request log, and every usage read."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import aiosqlite
import orjson

from gateway.db import fetch_all, write_transaction
from gateway.histogram import LatencyKey, fold_latency
from gateway.records import HOURLY_COUNTERS, HourKey, RequestRecord, iso_ts

_KEY_COLUMNS = ("hour", "backend", "model", "api_key")

UPSERT_HOURLY = (
    f"INSERT INTO usage_hourly ({', '.join(_KEY_COLUMNS + HOURLY_COUNTERS)}) "
    f"VALUES ({', '.join('?' for _ in _KEY_COLUMNS + HOURLY_COUNTERS)}) "
    "ON CONFLICT (hour, backend, model, api_key) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in HOURLY_COUNTERS)
)


def _upsert_rollup(table: str, key_columns: tuple[str, ...]) -> str:
    return (
        f"INSERT INTO {table} ({', '.join(key_columns + HOURLY_COUNTERS)}) "
        f"VALUES ({', '.join('?' for _ in key_columns + HOURLY_COUNTERS)}) "
        f"ON CONFLICT ({', '.join(key_columns)}) DO UPDATE SET "
        + ", ".join(f"{c} = {c} + excluded.{c}" for c in HOURLY_COUNTERS)
    )


# Rollups of the hour buckets (same counters) and latency histograms, written in the same
# transaction as the hour buckets so the dashboard's views always agree with them. Each entry:
# table, its key columns, and how an hour key (hour, backend, model, api_key) maps to its key.
ROLLUPS: tuple[tuple[str, tuple[str, ...], Callable[[HourKey], tuple[str, ...]]], ...] = (
    ("usage_daily", ("day", "backend", "model", "api_key"), lambda k: (k[0][:10], k[1], k[2], k[3])),
    ("usage_monthly", ("month", "backend", "model", "api_key"), lambda k: (k[0][:7], k[1], k[2], k[3])),
    ("usage_day_totals", ("day",), lambda k: (k[0][:10],)),
)
UPSERT_ROLLUPS = {table: _upsert_rollup(table, columns) for table, columns, _ in ROLLUPS}
UPSERT_LATENCY = (
    "INSERT INTO latency_hourly (hour, metric, bucket, count) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (hour, metric, bucket) DO UPDATE SET count = count + excluded.count"
)

_LOG_COLUMNS = (
    "request_id",
    "ts",
    "endpoint",
    "api_key",
    "requested_model",
    "model",
    "backend",
    "pool",
    "status",
    "stream",
    "fallback",
    "attempts",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "overhead_ms",
    "error",
    "attempt_chain",
)
# OR IGNORE: a request id is written once even if a batch is retried after an unclear failure.
INSERT_LOG = (
    f"INSERT OR IGNORE INTO request_log ({', '.join(_LOG_COLUMNS)}) VALUES ({', '.join('?' for _ in _LOG_COLUMNS)})"
)


def log_row(rec: RequestRecord) -> tuple[Any, ...]:
    u = rec.usage
    chain = orjson.dumps(
        [
            {"backend": a.backend, "model": a.model, "status": a.status, "kind": a.kind, "ms": round(a.ms, 2)}
            for a in rec.attempts
        ]
    ).decode()
    return (
        rec.request_id,
        iso_ts(rec.wall_ts),
        rec.endpoint,
        rec.api_key,
        rec.requested_model,
        rec.model,
        rec.backend,
        rec.pool,
        rec.status,
        int(rec.stream),
        int(rec.fallback),
        len(rec.attempts),
        u.prompt_tokens if u else 0,
        u.completion_tokens if u else 0,
        u.cached_tokens if u else 0,
        u.reasoning_tokens if u else 0,
        rec.cost_usd,
        round(rec.latency_ms, 3),
        None if rec.ttft_ms is None else round(rec.ttft_ms, 3),
        round(rec.overhead_ms, 3),
        rec.error,
        chain,
    )


async def write_usage(
    conn: aiosqlite.Connection,
    hourly: Mapping[HourKey, Sequence[float]],
    records: Sequence[RequestRecord],
    last_used: Mapping[str, str],
    latency: Mapping[LatencyKey, int] | None = None,
) -> None:
    """One transaction: UPSERT hour buckets (and their daily rollup), insert the request log, stamp keys' last use.

    `latency` histogram counts default to those of `records` (gateway/histogram.py).
    """
    async with write_transaction(conn):
        await conn.executemany(UPSERT_HOURLY, [(*key, *counters) for key, counters in hourly.items()])
        for table, _, key_of in ROLLUPS:
            await conn.executemany(UPSERT_ROLLUPS[table], rollup_rows(hourly, key_of))
        latency_counts = fold_latency(records) if latency is None else latency
        await conn.executemany(UPSERT_LATENCY, [(*key, n) for key, n in latency_counts.items()])
        await conn.executemany(INSERT_LOG, [log_row(r) for r in records])
        await conn.executemany(
            "UPDATE client_keys SET last_used_at = ? WHERE name = ? AND (last_used_at IS NULL OR last_used_at < ?)",
            [(ts, name, ts) for name, ts in last_used.items()],
        )


def rollup_rows(
    hourly: Mapping[HourKey, Sequence[float]], key_of: Callable[[HourKey], tuple[str, ...]]
) -> list[tuple[Any, ...]]:
    """Hour-bucket rows summed under a coarser key (a day, a month...)."""
    sums: dict[tuple[str, ...], list[float]] = {}
    for key, counters in hourly.items():
        found = sums.get(coarse := key_of(key))
        if found is None:
            sums[coarse] = list(counters)
        else:
            for i, value in enumerate(counters):
                found[i] += value
    return [(*key, *counters) for key, counters in sums.items()]


async def prune_request_log(conn: aiosqlite.Connection, before_iso: str) -> int:
    async with write_transaction(conn):
        cur = await conn.execute("DELETE FROM request_log WHERE ts < ?", (before_iso,))
    return cur.rowcount


# -- reads ----------------------------------------------------------------------------------

_SUMS = ", ".join(f"COALESCE(SUM({c}), 0) AS {c}" for c in HOURLY_COUNTERS)

# group_by value -> SQL expression over a usage table `u` LEFT JOIN backends `b`; never from input.
GROUPINGS = {
    "model": "u.model",
    "backend": "u.backend",
    "key": "u.api_key",
    "pool": "COALESCE(b.pool, '')",
}


async def usage_summary(conn: aiosqlite.Connection, start_hour: str, end_hour: str) -> dict[str, Any]:
    rows = await fetch_all(
        conn, f"SELECT {_SUMS} FROM usage_hourly WHERE hour >= ? AND hour < ?", (start_hour, end_hour)
    )
    return dict(rows[0])


async def usage_aggregate(
    conn: aiosqlite.Connection, group_by: str, start_hour: str, end_hour: str
) -> list[dict[str, Any]]:
    expr = GROUPINGS[group_by]
    sums = ", ".join(f"COALESCE(SUM(u.{c}), 0) AS {c}" for c in HOURLY_COUNTERS)
    rows = await fetch_all(
        conn,
        f"SELECT {expr} AS key, {sums} FROM usage_hourly u LEFT JOIN backends b ON b.name = u.backend "
        "WHERE u.hour >= ? AND u.hour < ? GROUP BY 1 ORDER BY cost_usd DESC, requests DESC, key",
        (start_hour, end_hour),
    )
    return [dict(r) for r in rows]


async def usage_hourly(
    conn: aiosqlite.Connection, start_hour: str, end_hour: str, filters: Mapping[str, str]
) -> list[dict[str, Any]]:
    where = ["hour >= ?", "hour < ?"]
    params: list[Any] = [start_hour, end_hour]
    for name, column in (("backend", "backend"), ("model", "model"), ("key", "api_key")):
        if name in filters:
            where.append(f"{column} = ?")
            params.append(filters[name])
    rows = await fetch_all(
        conn, f"SELECT hour, {_SUMS} FROM usage_hourly WHERE {' AND '.join(where)} GROUP BY hour ORDER BY hour", params
    )
    return [dict(r) for r in rows]


async def usage_daily(conn: aiosqlite.Connection, start_hour: str, end_hour: str) -> list[dict[str, Any]]:
    rows = await fetch_all(
        conn,
        f"SELECT substr(hour, 1, 10) AS day, {_SUMS} FROM usage_hourly WHERE hour >= ? AND hour < ? "
        "GROUP BY day ORDER BY day",
        (start_hour, end_hour),
    )
    return [dict(r) for r in rows]


_REQUEST_FILTERS = {
    "model": "(model = ? OR requested_model = ?)",
    "backend": "backend = ?",
    "key": "api_key = ?",
    "status": "status = ?",
    "stream": "stream = ?",
    "fallback": "fallback = ?",
}


async def list_requests(
    conn: aiosqlite.Connection, filters: Mapping[str, Any], limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    where: list[str] = []
    params: list[Any] = []
    for name, clause in _REQUEST_FILTERS.items():
        if name in filters:
            where.append(clause)
            params.extend([filters[name]] * clause.count("?"))
    sql_where = f"WHERE {' AND '.join(where)}" if where else ""
    total_rows = await fetch_all(conn, f"SELECT COUNT(*) FROM request_log {sql_where}", params)
    rows = await fetch_all(
        conn,
        f"SELECT * FROM request_log {sql_where} ORDER BY ts DESC, rowid DESC LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    return [request_dict(r) for r in rows], int(total_rows[0][0])


async def get_request(conn: aiosqlite.Connection, request_id: str) -> dict[str, Any] | None:
    rows = await fetch_all(conn, "SELECT * FROM request_log WHERE request_id = ?", (request_id,))
    return request_dict(rows[0]) if rows else None


def request_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["stream"] = bool(out["stream"])
    out["fallback"] = bool(out["fallback"])
    out["attempt_chain"] = orjson.loads(out["attempt_chain"])
    return out


async def spend_by_key(conn: aiosqlite.Connection, since_hour: str) -> dict[str, float]:
    rows = await fetch_all(
        conn, "SELECT api_key, SUM(cost_usd) FROM usage_hourly WHERE hour >= ? GROUP BY api_key", (since_hour,)
    )
    return {r[0]: float(r[1] or 0) for r in rows}


def counters_of(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [dict(r) for r in rows]
