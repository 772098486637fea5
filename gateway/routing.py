"""Live routing state owned by the app: cooldowns, circuits, buckets, in-flight counts, spend.

The decisions on it are pure (gateway/pools.py, cooldown.py, breaker.py, limiter.py); this
class only holds the state and keeps it in step with the registry.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from gateway.breaker import CircuitBreakers
from gateway.config import RoutingSettings
from gateway.cooldown import Cooldowns
from gateway.limiter import TokenBucket
from gateway.pools import Limits
from gateway.registry import Registry


@dataclass
class RoutingState:
    settings: RoutingSettings
    rng: random.Random = field(default_factory=random.Random)
    cooldowns: Cooldowns = field(default_factory=Cooldowns)
    breakers: CircuitBreakers = field(init=False)
    request_buckets: dict[str, TokenBucket] = field(default_factory=dict)
    token_buckets: dict[str, TokenBucket] = field(default_factory=dict)
    key_buckets: dict[str, TokenBucket] = field(default_factory=dict)
    in_flight: Counter[str] = field(default_factory=Counter)
    spend_month: str = ""  # "2026-11": the calendar month (UTC) `spend` covers
    spend: dict[str, float] = field(default_factory=dict)  # client key name -> USD this month
    limits: Limits = field(init=False)
    _limits_seen: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.breakers = CircuitBreakers(
            failure_threshold=self.settings.circuit_failures, max_open_s=self.settings.circuit_max_open
        )
        self.limits = Limits(self.cooldowns, self.breakers, self.request_buckets, self.token_buckets)

    def sync(self, registry: Registry, now: float) -> None:
        """Create, resize or drop buckets after the registry changed; untouched buckets keep their level."""
        names = {b.name for b in registry.backends}
        for b in registry.backends:
            if self._limits_seen.get(b.name) == (b.rpm, b.tpm):
                continue
            self._limits_seen[b.name] = (b.rpm, b.tpm)
            _set_bucket(self.request_buckets, b.name, b.rpm, now)
            _set_bucket(self.token_buckets, b.name, b.tpm, now)
        for gone in set(self._limits_seen) - names:
            del self._limits_seen[gone]
            self.request_buckets.pop(gone, None)
            self.token_buckets.pop(gone, None)
            self.cooldowns.forget(gone)
            self.breakers.forget(gone)
        keys = {k.name: k.rpm for k in registry.keys_by_hash.values()}
        for name, rpm in keys.items():
            bucket = self.key_buckets.get(name)
            if rpm is None:
                self.key_buckets.pop(name, None)
            elif bucket is None or bucket.capacity != rpm:
                self.key_buckets[name] = TokenBucket.per_minute(rpm, now)
        for gone in set(self.key_buckets) - set(keys):
            del self.key_buckets[gone]

    def add_spend(self, month: str, key_name: str, cost_usd: float) -> None:
        if month != self.spend_month:
            self.spend_month = month
            self.spend.clear()
        self.spend[key_name] = self.spend.get(key_name, 0.0) + cost_usd


def _set_bucket(buckets: dict[str, TokenBucket], name: str, per_minute: int | None, now: float) -> None:
    if per_minute is None:
        buckets.pop(name, None)
    else:
        buckets[name] = TokenBucket.per_minute(per_minute, now)
