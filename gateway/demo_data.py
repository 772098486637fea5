"""Synthetic usage history: hour buckets (and their rollup), latency histograms and a request log.

Used by `scripts/make_demo_data.py` (a year for 10 backends, 30 models and 20 keys, to measure
the dashboard) and by `gateway demo` (a month behind the live traffic). Rows go through
gateway/queries.py write_usage, the same write the gateway makes, so the rollups agree.
Traffic follows a day/night and weekday rhythm with slow growth; each client key uses a
few (model, backend) routes, as real clients do.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from gateway import db, queries
from gateway.histogram import LatencyKey, bucket_of
from gateway.pricing import Price, cost_usd, find_price
from gateway.records import HOURLY_COUNTERS, Attempt, HourKey, RequestRecord, iso_ts
from gateway.tokens import hash_secret, last4, new_client_key
from gateway.usage import Usage, hour_bucket

_INDEX = {name: i for i, name in enumerate(HOURLY_COUNTERS)}


@dataclass(frozen=True, slots=True)
class BackendDef:
    name: str
    pool: str
    models: tuple[str, ...]
    base_url: str = "http://127.0.0.1:9/v1"


@dataclass(frozen=True, slots=True)
class Route:
    key: str
    model: str
    backend: str
    pool: str
    per_hour: float  # mean requests per hour at the daily peak
    price: Price | None
    stream_share: float


def make_routes(
    backends: Sequence[BackendDef], keys: Sequence[str], rng: random.Random, per_key: int = 5, peak: float = 40.0
) -> list[Route]:
    pairs = [(m, b) for b in backends for m in b.models]
    # Every model gets at least one route (round robin over the keys), then each key picks more.
    first_pairs = {m: (m, b) for b in reversed(backends) for m in b.models}
    chosen = [(keys[i % len(keys)], pair) for i, pair in enumerate(first_pairs.values())]
    for key in keys:
        chosen.extend((key, pair) for pair in rng.sample(pairs, min(per_key, len(pairs))))
    return [
        Route(
            key,
            model,
            backend.name,
            backend.pool,
            peak * rng.lognormvariate(-1.0, 1.0),
            find_price(model, {})[0],
            rng.choice((0.0, 0.3, 0.8)),
        )
        for key, (model, backend) in dict.fromkeys(chosen)  # without repeats, in order
    ]


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 30:  # normal approximation: fast and close enough for synthetic data
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _hour_factor(wall_ts: float, start_ts: float, end_ts: float) -> float:
    t = time.gmtime(wall_ts)
    daily = 0.25 + 0.75 * max(0.0, math.sin(math.pi * (t.tm_hour - 6) / 16)) if 6 <= t.tm_hour < 22 else 0.15
    weekly = 0.45 if t.tm_wday >= 5 else 1.0
    growth = 0.4 + 0.6 * (wall_ts - start_ts) / max(1.0, end_ts - start_ts)
    return daily * weekly * growth


def _hour_rows(
    routes: Sequence[Route], wall_ts: float, factor: float, rng: random.Random
) -> tuple[dict[HourKey, list[float]], dict[LatencyKey, int]]:
    hour = hour_bucket(wall_ts)
    rows: dict[HourKey, list[float]] = {}
    latency: dict[LatencyKey, int] = {}
    for r in routes:
        n = _poisson(rng, r.per_hour * factor)
        if n == 0:
            continue
        row = [0.0] * len(HOURLY_COUNTERS)
        failed = sum(rng.random() < 0.02 for _ in range(min(n, 50))) * max(1, n // 50)
        prompt = round(n * rng.uniform(150, 1800))
        completion = round(n * rng.uniform(40, 450))
        cached = round(prompt * rng.choice((0.0, 0.1, 0.35)))
        streams = round(n * r.stream_share)
        latency_ms = rng.lognormvariate(6.6, 0.5)  # ~700 ms typical
        values = {
            "requests": n,
            "failed_requests": failed,
            "errors": failed,
            "attempts": n,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cached_tokens": cached,
            "latency_ms_sum": n * latency_ms,
            "ttft_ms_sum": streams * latency_ms * 0.3,
            "ttft_count": streams,
            "streams": streams,
            "fallbacks": n if r.pool == "fallback" else 0,
            "errors_429": failed // 2,
            "errors_5xx": failed - failed // 2,
        }
        if r.price is None:
            values["unpriced"] = n
        else:
            p = r.price
            cached_price = p.input_per_mtok if p.cached_input_per_mtok is None else p.cached_input_per_mtok
            values["cost_usd"] = (
                (prompt - cached) * p.input_per_mtok + cached * cached_price + completion * p.output_per_mtok
            ) / 1e6
        for name, value in values.items():
            row[_INDEX[name]] = value
        rows[(hour, r.backend, r.model, r.key)] = row
        for metric, typical, count in (("latency", latency_ms, n - failed), ("ttft", latency_ms * 0.3, streams)):
            for _ in range(min(count, 20)):
                key = (hour, metric, bucket_of(typical * rng.lognormvariate(0, 0.45)))
                latency[key] = latency.get(key, 0) + max(1, count // 20)
    return rows, latency


async def write_config(conn: aiosqlite.Connection, backends: Sequence[BackendDef], keys: Sequence[str]) -> None:
    """Backends (without upstream keys) and client keys (random secrets nobody keeps)."""
    statements: list[tuple[str, Sequence[object]]] = []
    wall_now = time.time()
    for b in backends:
        columns = {
            "name": b.name,
            "base_url": b.base_url,
            "pool": b.pool,
            "rpm": None,
            "tpm": None,
            "priority": 0,
            "weight": 1,
            "timeout": 60.0,
            "enabled": 1,
            "api_key_sealed": None,
            "api_key_last4": "",
            "models": [(m, m) for m in b.models],
        }
        if not await db.backend_exists(conn, b.name):
            statements.extend(db.insert_backend_sql(columns, wall_now))
    for name in keys:
        if await db.get_key_row(conn, name) is None:
            secret = new_client_key()
            statements.append(db.insert_key_sql(name, hash_secret(secret), last4(secret), None, None, True, wall_now))
    await db.write_config(conn, statements)


async def write_history(
    conn: aiosqlite.Connection,
    routes: Sequence[Route],
    start_ts: float,
    end_ts: float,
    rng: random.Random,
    log_since_ts: float | None = None,
    log_per_hour: int = 6,
) -> int:
    """Hour rows from start_ts to end_ts, a day per transaction; returns the rows written.

    From log_since_ts on, a sample of `log_per_hour` requests per hour also goes into the
    request log (so its pages have something to show; it is not meant to sum to the buckets).
    """
    written = 0
    t = start_ts - start_ts % 3600
    while t < end_ts:
        hourly: dict[HourKey, list[float]] = {}
        latency: dict[LatencyKey, int] = {}
        records: list[RequestRecord] = []
        day_end = min(end_ts, t + 86400 - t % 86400)
        while t < day_end:
            rows, counts = _hour_rows(routes, t, _hour_factor(t, start_ts, end_ts), rng)
            hourly.update(rows)
            for key, n in counts.items():
                latency[key] = latency.get(key, 0) + n
            if log_since_ts is not None and t >= log_since_ts:
                records.extend(_log_sample(routes, t, log_per_hour, rng))
            t += 3600
        await queries.write_usage(conn, hourly, records, {}, latency=latency)
        written += len(hourly)
    return written


def _log_sample(routes: Sequence[Route], hour_ts: float, n: int, rng: random.Random) -> list[RequestRecord]:
    out = []
    for r in rng.choices(routes, weights=[r.per_hour for r in routes], k=n):
        wall_ts = hour_ts + rng.uniform(0, 3599)
        ok = rng.random() > 0.03
        usage = Usage(rng.randint(100, 2000), rng.randint(20, 600), 0, 0) if ok else None
        ms = rng.lognormvariate(6.6, 0.5)
        attempts = [Attempt(r.backend, r.model, 200 if ok else 502, "ok" if ok else "5xx", ms)]
        rec = RequestRecord(
            request_id="req_" + os.urandom(12).hex(),
            wall_ts=wall_ts,
            endpoint="chat",
            api_key=r.key,
            requested_model=r.model,
            model=r.model,
            backend=r.backend,
            pool=r.pool,
            status=200 if ok else 502,
            stream=rng.random() < r.stream_share,
            usage=usage,
            latency_ms=ms,
            attempts=attempts,
            cost_usd=cost_usd(usage, r.price) if usage else 0.0,
            error=None if ok else "upstream answered 502",
        )
        out.append(rec)
    return out


def describe(rows: int, seconds: float) -> str:
    return f"{rows:,} hour rows in {seconds:.1f} s (until {iso_ts(time.time())[:16]}Z)"
