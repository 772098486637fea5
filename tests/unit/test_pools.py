from __future__ import annotations

import random
from collections import Counter
from datetime import datetime

import pytest

from gateway.backends import BackendSpec, ModelRoute
from gateway.breaker import CircuitBreakers
from gateway.cooldown import Cooldowns
from gateway.limiter import TokenBucket
from gateway.pools import Limits, is_worth_waiting_for, order_candidates, seconds_until_free, skip_reason
from gateway.proxy import seconds_until_next_month


def backend(name: str, pool: str = "primary", priority: int = 0, weight: int = 1, **kw) -> BackendSpec:
    models = kw.pop("models", (ModelRoute("m", "m"),))
    return BackendSpec(name=name, base_url="http://x", pool=pool, priority=priority, weight=weight, models=models, **kw)


def names(backends, model="m", seed=0):
    return [c.name for c in order_candidates(backends, model, random.Random(seed))]


def limits(**buckets: TokenBucket) -> Limits:
    return Limits(Cooldowns(), CircuitBreakers(failure_threshold=2, base_open_s=5), dict(buckets), {})


def test_primary_pool_comes_before_fallback_then_priority() -> None:
    pool = [backend("f0", "fallback"), backend("p2", priority=2), backend("p0"), backend("f1", "fallback", priority=1)]
    assert names(pool) == ["p0", "p2", "f0", "f1"]


def test_disabled_and_non_serving_backends_are_left_out() -> None:
    pool = [backend("off", enabled=False), backend("other", models=(ModelRoute("x", "x"),)), backend("on")]
    assert names(pool) == ["on"]


def test_alias_gives_each_backend_its_upstream_model() -> None:
    pool = [
        backend("a", models=(ModelRoute("fast", "gpt-4o-mini"),)),
        backend("b", models=(ModelRoute("fast", "llama"),)),
    ]
    assert sorted((c.name, c.upstream_model) for c in order_candidates(pool, "fast", random.Random(1))) == [
        ("a", "gpt-4o-mini"),
        ("b", "llama"),
    ]


def test_weight_spreads_first_choice_proportionally() -> None:
    pool = [backend("heavy", weight=3), backend("light", weight=1)]
    rng = random.Random(42)
    firsts = Counter(order_candidates(pool, "m", rng)[0].name for _ in range(4000))
    assert firsts["heavy"] / 4000 == pytest.approx(0.75, abs=0.03)


def test_cooling_backend_is_skipped_and_frees_after_its_cooldown() -> None:
    lim = limits()
    lim.cooldowns.on_rate_limited("a", now=100.0, hint_s=2.0, jitter=0.0)
    assert skip_reason("a", 101.0, lim, 10) == "cooldown"
    assert seconds_until_free("a", 101.0, lim, 10) == pytest.approx(1.0)
    assert skip_reason("a", 102.0, lim, 10) is None


def test_empty_bucket_skips_and_each_admission_takes_a_token() -> None:
    lim = limits(a=TokenBucket.per_minute(2, now=0.0))
    assert skip_reason("a", 0.0, lim, 1) is None
    assert skip_reason("a", 0.0, lim, 1) is None
    assert skip_reason("a", 0.0, lim, 1) == "bucket"
    assert seconds_until_free("a", 0.0, lim, 1) == pytest.approx(30.0)


def test_open_circuit_skips_then_allows_a_single_probe() -> None:
    lim = limits()
    lim.breakers.on_failure("a", 0.0)
    lim.breakers.on_failure("a", 0.0)
    assert skip_reason("a", 1.0, lim, 1) == "circuit"
    assert skip_reason("a", 5.0, lim, 1) is None  # the probe
    assert skip_reason("a", 5.0, lim, 1) == "circuit"  # only one probe at a time


def test_rate_limits_are_worth_waiting_for_but_open_circuits_are_not() -> None:
    lim = limits(a=TokenBucket.per_minute(1, now=0.0))
    lim.cooldowns.on_rate_limited("b", now=0.0, hint_s=1.0, jitter=0.0)
    assert skip_reason("a", 0.0, lim, 1) is None
    assert is_worth_waiting_for("a", lim)  # empty bucket
    assert is_worth_waiting_for("b", lim)  # cooling down
    lim.breakers.on_failure("c", 0.0)
    assert is_worth_waiting_for("c", lim)  # one failure: still closed
    lim.breakers.on_failure("c", 0.0)
    assert not is_worth_waiting_for("c", lim)  # open
    assert skip_reason("c", 5.0, lim, 1) is None  # the half-open probe goes...
    assert not is_worth_waiting_for("c", lim)  # ...and others do not wait for its verdict
    lim.breakers.on_success("c")
    assert is_worth_waiting_for("c", lim)


def test_request_deadline_allows_a_silent_backend_then_a_full_attempt() -> None:
    from gateway.config import RoutingSettings
    from gateway.pools import Candidate
    from gateway.proxy import request_deadline

    ordered = [Candidate(backend("a", timeout=10.0), "m"), Candidate(backend("b", timeout=4.0), "m")]
    settings = RoutingSettings(queue_timeout=2.0, fallback_after=3.0)
    assert request_deadline(100.0, ordered, settings) == 100.0 + 2 * 10.0 + 3.0


@pytest.mark.parametrize(
    ("now", "next_month"),
    [
        ("2026-11-29T17:00:00", "2026-12-01T00:00:00"),
        ("2026-12-31T23:59:59", "2027-01-01T00:00:00"),  # across the year
        ("2026-02-01T00:00:00", "2026-03-01T00:00:00"),  # the first second of a month counts to the next
    ],
)
def test_a_spent_budget_retries_after_the_month_ends(now: str, next_month: str) -> None:
    wall = datetime.fromisoformat(now + "+00:00").timestamp()
    expected = datetime.fromisoformat(next_month + "+00:00").timestamp() - wall
    assert seconds_until_next_month(wall) == expected
