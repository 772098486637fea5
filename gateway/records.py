"""What one client request did, and how it folds into hour buckets and the request log. Pure."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.usage import Usage, hour_bucket

# Attempt outcomes. "ok" reached the client as a success; the rest are failures of that attempt.
ATTEMPT_KINDS = ("ok", "429", "quota", "5xx", "timeout", "connect", "auth", "client_error", "stream_error")
_ERROR_COLUMN = {
    "429": "errors_429",
    "quota": "errors_429",
    "5xx": "errors_5xx",
    "timeout": "errors_timeout",
    "connect": "errors_connect",
    "auth": "errors_auth",
}
SKIP_KINDS = ("cooldown", "bucket", "circuit")

# Counter columns of usage_hourly, in a fixed order shared with gateway/queries.py.
HOURLY_COUNTERS = (
    "requests",
    "failed_requests",
    "errors",
    "attempts",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "unpriced",
    "latency_ms_sum",
    "ttft_ms_sum",
    "ttft_count",
    "streams",
    "fallbacks",
    "errors_429",
    "errors_5xx",
    "errors_timeout",
    "errors_connect",
    "errors_auth",
    "skips_cooldown",
    "skips_bucket",
    "skips_circuit",
)
_INDEX = {name: i for i, name in enumerate(HOURLY_COUNTERS)}

HourKey = tuple[str, str, str, str]  # hour, backend, model, api_key


@dataclass(slots=True)
class Attempt:
    backend: str
    model: str  # the upstream model asked of this backend
    status: int  # HTTP status, 0 when no response arrived
    kind: str  # one of ATTEMPT_KINDS
    ms: float


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    wall_ts: float
    endpoint: str
    api_key: str
    requested_model: str
    model: str = ""  # upstream model that answered; '' when no backend answered
    backend: str = ""
    pool: str = ""
    status: int = 200
    stream: bool = False
    usage: Usage | None = None
    cost_usd: float = 0.0
    unpriced: bool = False
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    overhead_ms: float = 0.0
    error: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    skips: list[tuple[str, str, str]] = field(default_factory=list)  # (backend, model, kind)

    @property
    def fallback(self) -> bool:
        return self.pool == "fallback"


def fold_hourly(records: Iterable[RequestRecord]) -> dict[HourKey, list[float]]:
    """Sum records into hour-bucket counter rows (columns in HOURLY_COUNTERS order)."""
    rows: dict[HourKey, list[float]] = {}

    def row(key: HourKey) -> list[float]:
        found = rows.get(key)
        if found is None:
            found = rows[key] = [0] * len(HOURLY_COUNTERS)
        return found

    for rec in records:
        hour = hour_of(rec.wall_ts)
        final = row((hour, rec.backend, rec.model, rec.api_key))
        final[_INDEX["requests"]] += 1
        failed = rec.status >= 400 or rec.error is not None
        if failed:
            final[_INDEX["failed_requests"]] += 1
            if not rec.attempts:  # refused by the gateway itself: no attempt carries the error
                final[_INDEX["errors"]] += 1
        if rec.usage is not None:
            u = rec.usage
            final[_INDEX["prompt_tokens"]] += u.prompt_tokens
            final[_INDEX["completion_tokens"]] += u.completion_tokens
            final[_INDEX["cached_tokens"]] += u.cached_tokens
            final[_INDEX["reasoning_tokens"]] += u.reasoning_tokens
        final[_INDEX["cost_usd"]] += rec.cost_usd
        final[_INDEX["unpriced"]] += rec.unpriced
        final[_INDEX["latency_ms_sum"]] += rec.latency_ms
        if rec.ttft_ms is not None:
            final[_INDEX["ttft_ms_sum"]] += rec.ttft_ms
            final[_INDEX["ttft_count"]] += 1
        final[_INDEX["streams"]] += rec.stream
        final[_INDEX["fallbacks"]] += rec.fallback
        for attempt in rec.attempts:
            r = row((hour, attempt.backend, attempt.model, rec.api_key))
            r[_INDEX["attempts"]] += 1
            if attempt.kind != "ok":
                r[_INDEX["errors"]] += 1
                column = _ERROR_COLUMN.get(attempt.kind)
                if column:
                    r[_INDEX[column]] += 1
        for backend, model, kind in rec.skips:
            rows_key = (hour, backend, model, rec.api_key)
            row(rows_key)[_INDEX["skips_" + kind]] += 1
    return rows


@functools.lru_cache(maxsize=4096)
def _iso_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def iso_ts(wall_ts: float) -> str:
    """ISO-8601 UTC with milliseconds: "2026-11-22T14:05:09.123Z"."""
    second = int(wall_ts)
    return f"{_iso_second(second)}.{int((wall_ts - second) * 1000):03d}Z"


@functools.lru_cache(maxsize=1024)
def _hour_string(hour_index: int) -> str:
    return hour_bucket(hour_index * 3600)


def hour_of(wall_ts: float) -> str:
    """hour_bucket(), memoized per hour: a flush folds thousands of records from a few hours."""
    return _hour_string(int(wall_ts // 3600))


def month_of(wall_ts: float) -> str:
    """ "2026-11": the calendar month (UTC) that monthly budgets count in; read twice per request."""
    return hour_of(wall_ts)[:7]
