from __future__ import annotations

import math

import pytest

from gateway.limiter import DEFAULT_COMPLETION_TOKENS, TokenBucket, estimate_stream_usage, estimate_tokens


def drained(limit: float = 60.0, now: float = 0.0) -> TokenBucket:
    bucket = TokenBucket.per_minute(limit, now=now)
    assert bucket.try_take(now, cost=limit)
    return bucket


def test_per_minute_starts_full():
    bucket = TokenBucket.per_minute(120, now=5.0)
    assert bucket == TokenBucket(capacity=120, refill_per_s=2.0, tokens=120, updated_at=5.0)


@pytest.mark.parametrize("limit", [0, -1, math.nan, math.inf])
def test_per_minute_rejects_a_limit_that_is_not_positive(limit):
    with pytest.raises(ValueError, match="positive"):
        TokenBucket.per_minute(limit, now=0.0)


def test_burst_up_to_capacity_then_refused():
    bucket = TokenBucket.per_minute(60, now=0.0)
    assert all(bucket.try_take(now=0.0) for _ in range(60))
    assert not bucket.try_take(now=0.0)
    assert bucket.level(now=0.0) == pytest.approx(0.0)


def test_refill_is_continuous():
    bucket = drained(60)  # one token per second
    assert bucket.level(now=0.5) == pytest.approx(0.5)
    assert not bucket.try_take(now=0.5)
    assert bucket.try_take(now=1.0)
    assert bucket.level(now=1.0) == pytest.approx(0.0)
    assert bucket.level(now=1.25) == pytest.approx(0.25)


def test_refill_stops_at_capacity():
    bucket = drained(60)
    assert bucket.level(now=3600.0) == pytest.approx(60.0)
    assert sum(bucket.try_take(now=3600.0) for _ in range(100)) == 60


def test_a_refused_take_costs_nothing():
    bucket = drained(60)
    assert not bucket.try_take(now=0.5, cost=2.0)
    assert bucket.level(now=0.5) == pytest.approx(0.5)


def test_seconds_until():
    bucket = drained(60)
    assert bucket.seconds_until(now=0.0) == pytest.approx(1.0)
    assert bucket.seconds_until(now=0.25) == pytest.approx(0.75)
    assert bucket.seconds_until(now=0.25, cost=5.0) == pytest.approx(4.75)
    assert bucket.seconds_until(now=2.0) == 0.0
    assert bucket.seconds_until(now=2.0, cost=2.0) == 0.0


def test_seconds_until_for_a_cost_above_capacity_is_time_until_full():
    bucket = TokenBucket.per_minute(10, now=0.0)  # 1/6 token per second
    assert bucket.try_take(now=0.0, cost=4.0)
    assert bucket.seconds_until(now=0.0, cost=25.0) == pytest.approx(24.0)
    assert bucket.seconds_until(now=24.0, cost=25.0) == 0.0


def test_a_cost_above_capacity_is_admitted_from_a_full_bucket_into_debt():
    bucket = TokenBucket.per_minute(10, now=0.0)
    assert bucket.try_take(now=0.0, cost=25.0)
    assert bucket.level(now=0.0) == pytest.approx(-15.0)
    assert bucket.seconds_until(now=0.0) == pytest.approx(96.0)  # (1 + 15) * 6
    assert bucket.seconds_until(now=0.0, cost=25.0) == pytest.approx(150.0)  # until full: 25 * 6


def test_give_back_is_clamped_to_capacity():
    bucket = drained(60)
    bucket.give_back(now=0.0, amount=3.0)
    assert bucket.level(now=0.0) == pytest.approx(3.0)
    bucket.give_back(now=0.0, amount=1000.0)
    assert bucket.level(now=0.0) == pytest.approx(60.0)


def test_give_back_and_take_debt_ignore_negative_amounts():
    bucket = drained(60)
    bucket.give_back(now=0.0, amount=-5.0)
    bucket.take_debt(now=0.0, amount=-5.0)
    assert bucket.level(now=0.0) == pytest.approx(0.0)


def test_debt_goes_negative_and_delays_the_next_take():
    bucket = TokenBucket.per_minute(60, now=0.0)
    assert bucket.try_take(now=0.0, cost=50.0)
    bucket.take_debt(now=0.0, amount=20.0)  # the request really used 70
    assert bucket.level(now=0.0) == pytest.approx(-10.0)
    assert not bucket.try_take(now=10.0)
    assert bucket.seconds_until(now=10.0) == pytest.approx(1.0)
    assert bucket.try_take(now=11.0)


def test_debt_is_floored_at_minus_capacity():
    bucket = drained(60)
    bucket.take_debt(now=0.0, amount=1_000_000.0)
    assert bucket.level(now=0.0) == pytest.approx(-60.0)
    assert bucket.seconds_until(now=0.0) == pytest.approx(61.0)


def test_an_older_now_adds_nothing_and_counts_no_interval_twice():
    bucket = drained(60, now=10.0)
    assert bucket.level(now=9.0) == pytest.approx(0.0)
    assert bucket.updated_at == 10.0
    assert bucket.level(now=11.0) == pytest.approx(1.0)


def test_a_bucket_without_refill_waits_forever():
    bucket = TokenBucket(capacity=5.0, refill_per_s=0.0, tokens=0.0, updated_at=0.0)
    assert bucket.seconds_until(now=100.0) == math.inf
    assert bucket.seconds_until(now=100.0, cost=0.0) == 0.0


@pytest.mark.parametrize(
    ("body_len_bytes", "max_tokens", "expected"),
    [
        (400, 100, 200),
        (401, 100, 201),  # rounded up
        (400, None, 100 + DEFAULT_COMPLETION_TOKENS),
        (400, 0, 100 + DEFAULT_COMPLETION_TOKENS),
        (400, -3, 100 + DEFAULT_COMPLETION_TOKENS),
        (0, 16, 16),
        (-10, 16, 16),
    ],
)
def test_estimate_tokens(body_len_bytes, max_tokens, expected):
    assert estimate_tokens(body_len_bytes, max_tokens) == expected


def test_default_completion_estimate_is_modest():
    assert DEFAULT_COMPLETION_TOKENS == 256


def test_a_stream_that_ended_early_is_estimated_from_its_request_and_chunks() -> None:
    usage = estimate_stream_usage(body_len_bytes=401, chunks=7)
    assert (usage.prompt_tokens, usage.completion_tokens) == (101, 7)  # 401 bytes / 4, rounded up
    assert estimate_stream_usage(0, 0).total_tokens == 0
