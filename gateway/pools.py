"""Which backends a request may try, in which order, and which must be skipped now. Pure.

Rule 2 of DESIGN section 4: primary pool first, then fallback; inside a pool lower
`priority` first; among equals, a weighted random order (each backend leads with a
probability proportional to its `weight`). Rule 3: a backend cooling down, with an open
circuit, or with an empty bucket is skipped and counted.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.backends import BackendSpec
from gateway.breaker import CircuitBreakers
from gateway.cooldown import Cooldowns
from gateway.limiter import TokenBucket


@dataclass(frozen=True, slots=True)
class Candidate:
    backend: BackendSpec
    upstream_model: str

    @property
    def name(self) -> str:
        return self.backend.name


def order_candidates(backends: Sequence[BackendSpec], model: str, rng: random.Random) -> list[Candidate]:
    """Enabled backends serving `model`, in the order they should be tried."""
    keyed: list[tuple[int, int, float, Candidate]] = []
    for b in backends:
        upstream = b.upstream_model(model)
        if upstream is None or not b.enabled:
            continue
        # Weighted shuffle (Efraimidis-Spirakis): sorting by u**(1/w) descending picks each
        # backend first with probability weight / sum(weights).
        spread = rng.random() ** (1.0 / b.weight)
        keyed.append((b.pool != "primary", b.priority, -spread, Candidate(b, upstream)))
    keyed.sort(key=lambda k: k[:3])
    return [k[3] for k in keyed]


@dataclass(slots=True)
class Limits:
    """The mutable per-backend state the admission check reads (owned by the shell)."""

    cooldowns: Cooldowns
    breakers: CircuitBreakers
    request_buckets: Mapping[str, TokenBucket]
    token_buckets: Mapping[str, TokenBucket]


def skip_reason(name: str, now: float, limits: Limits, estimated_tokens: int) -> str | None:
    """None when the backend may be tried now (its tokens are then taken), else why it is skipped."""
    if limits.cooldowns.is_cooling(name, now):
        return "cooldown"
    rpm = limits.request_buckets.get(name)
    tpm = limits.token_buckets.get(name)
    if rpm is not None and rpm.seconds_until(now) > 0:
        return "bucket"
    if tpm is not None and tpm.seconds_until(now, min(estimated_tokens, tpm.capacity)) > 0:
        return "bucket"
    # The breaker is asked last: allow() reserves the single half-open probe.
    if not limits.breakers.allow(name, now):
        return "circuit"
    if rpm is not None:
        rpm.try_take(now)
    if tpm is not None:
        tpm.try_take(now, min(estimated_tokens, tpm.capacity))
    return None


def seconds_until_free(name: str, now: float, limits: Limits, estimated_tokens: int) -> float:
    """When a skipped backend could be tried again (0 if now)."""
    waits = [limits.cooldowns.remaining_s(name, now)]
    rpm = limits.request_buckets.get(name)
    if rpm is not None:
        waits.append(rpm.seconds_until(now))
    tpm = limits.token_buckets.get(name)
    if tpm is not None:
        waits.append(tpm.seconds_until(now, min(estimated_tokens, tpm.capacity)))
    open_until = limits.breakers.open_until(name)
    if open_until is not None:
        waits.append(open_until - now)
    return max(0.0, *waits)


def is_worth_waiting_for(name: str, limits: Limits) -> bool:
    """Whether a skipped backend may be waited for (rules 8 and 9): rate limits yes, circuits no.

    A cooldown or an empty bucket ends on its own and the request then succeeds; a circuit
    opened on failures, and a request that waited for its probe would most likely fail too.
    """
    return limits.breakers.open_until(name) is None
