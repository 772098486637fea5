"""Micro-benchmark: the cost of one routing decision (issue 3: under 50 µs per request).

    .venv/bin/python -m bench.routing_decision

One decision is what `Proxy.route()` does before its first upstream attempt: order the
candidates for the model (pools, priority, weighted shuffle), then admit the first one
(cooldown, RPM and TPM buckets, circuit breaker). Measured for 2 backends (a primary and a
fallback, both with buckets) and for 10 backends where the first 9 are cooling down.
"""

from __future__ import annotations

import random
import statistics
import time

from gateway.backends import BackendSpec, ModelRoute
from gateway.breaker import CircuitBreakers
from gateway.cooldown import Cooldowns
from gateway.limiter import TokenBucket, estimate_tokens
from gateway.pools import Limits, order_candidates, skip_reason


def scenario(count: int, cooling: int) -> tuple[list[BackendSpec], Limits]:
    backends = [
        BackendSpec(
            name=f"b{i}",
            base_url="http://127.0.0.1:1/v1",
            pool="primary" if i < count // 2 or count == 1 else "fallback",
            models=(ModelRoute("fast", f"model-{i}"),),
            rpm=10_000_000,
            tpm=10_000_000_000,
            priority=i % 3,
            weight=1 + i % 2,
        )
        for i in range(count)
    ]
    limits = Limits(
        Cooldowns(),
        CircuitBreakers(),
        {b.name: TokenBucket.per_minute(10_000_000, 0.0) for b in backends},
        {b.name: TokenBucket.per_minute(10_000_000_000, 0.0) for b in backends},
    )
    for b in backends[:cooling]:
        limits.cooldowns.on_rate_limited(b.name, 0.0, 1e9, 0.0)
    return backends, limits


def decide(backends: list[BackendSpec], limits: Limits, rng: random.Random, now: float) -> str:
    estimated = estimate_tokens(600, 256)
    for candidate in order_candidates(backends, "fast", rng):
        if skip_reason(candidate.name, now, limits, estimated) is None:
            return candidate.name
    raise AssertionError("no candidate admitted")


def measure(count: int, cooling: int, decisions: int = 20_000) -> float:
    backends, limits = scenario(count, cooling)
    rng = random.Random(1)
    started = time.perf_counter()
    for i in range(decisions):
        decide(backends, limits, rng, 1.0 + i * 1e-6)
    return (time.perf_counter() - started) / decisions * 1e6


def main() -> None:
    for count, cooling in ((2, 0), (10, 9)):
        runs = [measure(count, cooling) for _ in range(5)]
        print(f"{count:>2} backends, {cooling} cooling: {statistics.median(runs):6.2f} µs per decision (median of 5)")


if __name__ == "__main__":
    main()
