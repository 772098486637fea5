from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.records import HOURLY_COUNTERS, Attempt, RequestRecord, fold_hourly, iso_ts, month_of
from gateway.usage import Usage

T0 = 1_764_000_000.0  # 2025-11-24T16:00:00Z


def col(row, name):
    return row[HOURLY_COUNTERS.index(name)]


def test_failover_bills_only_the_answering_backend() -> None:
    rec = RequestRecord(
        "r1",
        T0 + 5,
        "chat",
        "alice",
        "fast",
        model="m-b",
        backend="b",
        pool="fallback",
        usage=Usage(100, 20, 40, 5),
        cost_usd=0.5,
        attempts=[
            Attempt("a", "m-a", 500, "5xx", 3.0),
            Attempt("a", "m-a", 0, "connect", 1.0),
            Attempt("b", "m-b", 200, "ok", 9.0),
        ],
        skips=[("c", "m-c", "cooldown")],
    )
    rows = fold_hourly([rec])
    hour = "2025-11-24T16:00:00Z"
    a, b, c = rows[(hour, "a", "m-a", "alice")], rows[(hour, "b", "m-b", "alice")], rows[(hour, "c", "m-c", "alice")]
    assert (
        col(a, "requests"),
        col(a, "attempts"),
        col(a, "errors"),
        col(a, "errors_5xx"),
        col(a, "errors_connect"),
    ) == (0, 2, 2, 1, 1)
    assert col(a, "prompt_tokens") == 0 and col(a, "cost_usd") == 0
    assert (col(b, "requests"), col(b, "attempts"), col(b, "errors"), col(b, "fallbacks")) == (1, 1, 0, 1)
    assert (
        col(b, "prompt_tokens"),
        col(b, "completion_tokens"),
        col(b, "cached_tokens"),
        col(b, "reasoning_tokens"),
    ) == (100, 20, 40, 5)
    assert col(b, "cost_usd") == 0.5
    assert col(c, "skips_cooldown") == 1 and col(c, "requests") == 0


def test_records_in_the_same_hour_add_up_and_the_next_hour_is_separate() -> None:
    def rec(ts: float, prompt: int) -> RequestRecord:
        return RequestRecord(
            "r",
            ts,
            "chat",
            "k",
            "m",
            model="m",
            backend="b",
            usage=Usage(prompt, 1),
            latency_ms=10.0,
            attempts=[Attempt("b", "m", 200, "ok", 8.0)],
        )

    rows = fold_hourly([rec(T0, 1), rec(T0 + 3599.999, 2), rec(T0 + 3600, 4)])
    first, second = rows[("2025-11-24T16:00:00Z", "b", "m", "k")], rows[("2025-11-24T17:00:00Z", "b", "m", "k")]
    assert (col(first, "requests"), col(first, "prompt_tokens"), col(first, "latency_ms_sum")) == (2, 3, 20.0)
    assert (col(second, "requests"), col(second, "prompt_tokens")) == (1, 4)


def test_request_refused_by_the_gateway_counts_as_a_failed_request_and_an_error() -> None:
    rows = fold_hourly([RequestRecord("r", T0, "chat", "k", "m", status=429, error="rate limited")])
    row = rows[("2025-11-24T16:00:00Z", "", "", "k")]
    assert (col(row, "requests"), col(row, "failed_requests"), col(row, "errors"), col(row, "attempts")) == (1, 1, 1, 0)


def test_usage_request_is_spliced_into_the_original_bytes() -> None:
    import orjson

    from gateway.proxy import Call
    from gateway.registry import ClientKey

    raw = b'{"model": "m", "stream": true, "messages": [], "extra": 123456789012345678901234567890}\n'
    payload = {"model": "m", "stream": True, "messages": [], "extra": 1.2e29}  # what a lossy parser would hold
    call = Call(
        "r",
        "chat",
        "/chat/completions",
        ClientKey("k", None, None, True),
        payload,
        raw,
        "m",
        True,
        False,
        True,
        0.0,
        0.0,
        0.0,
        RequestRecord("r", T0, "chat", "k", "m"),
    )
    body = call.body_for("m")
    assert body.startswith(raw.rstrip()[:-1])  # the client's bytes, untouched
    assert orjson.loads(body)["stream_options"] == {"include_usage": True}
    assert b"123456789012345678901234567890" in body


@pytest.mark.parametrize(
    "wall_ts",
    [0.0, 1_767_225_599.999, 1_767_225_600.0, 1_772_323_199.5, 1_764_435_600.25],  # month and year boundaries
)
def test_month_of_is_the_utc_month_of_the_timestamp(wall_ts: float) -> None:
    assert month_of(wall_ts) == iso_ts(wall_ts)[:7]
    assert month_of(wall_ts) == datetime.fromtimestamp(wall_ts, UTC).strftime("%Y-%m")
