"""Each backend's live state, as `GET /api/status` and `gateway backend list` show it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from gateway.records import iso_ts

if TYPE_CHECKING:
    from gateway.app import Gateway


def backend_status(gateway: Gateway) -> list[dict[str, Any]]:
    now, wall_now = time.monotonic(), time.time()
    routing = gateway.routing
    rows = []
    for b in gateway.registry.backends:
        cooling = routing.cooldowns.status(b.name, now)
        circuit = routing.breakers.state(b.name, now)
        state = cooling if cooling != "ok" else ("circuit_open" if circuit == "open" else "ok")
        remaining_s = routing.cooldowns.remaining_s(b.name, now)
        if state == "circuit_open":
            open_until = routing.breakers.open_until(b.name) or now
            remaining_s = max(0.0, open_until - now)
        bucket = routing.request_buckets.get(b.name)
        tokens = routing.token_buckets.get(b.name)
        rows.append(
            {
                "name": b.name,
                "pool": b.pool,
                "enabled": b.enabled,
                "state": state,
                "reason": routing.cooldowns.state_of(b.name).reason or None if cooling != "ok" else None,
                "cooldown_until": iso_ts(wall_now + remaining_s) if remaining_s > 0 else None,
                "consecutive_429": routing.cooldowns.state_of(b.name).consecutive_429,
                "circuit": circuit,
                "tokens_left": None if bucket is None else int(bucket.level(now)),
                "tpm_tokens_left": None if tokens is None else int(tokens.level(now)),
                "in_flight": routing.in_flight.get(b.name, 0),
            }
        )
    return rows
