"""The failover loop: one client request, tried on candidates in order (DESIGN section 4).

One loop, no nested retries: each pass walks the ordered candidates, skipping the ones
cooling down, out of tokens or with an open circuit, and stops at the first answer that
must reach the client. Between passes it may wait a little (rules 8 and 9).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from starlette.responses import Response

from gateway.config import RoutingSettings
from gateway.cooldown import draw_jitter, retry_hint_s
from gateway.errors import GatewayError, QuotaExceeded, RateLimited, UpstreamFailed
from gateway.limiter import estimate_tokens
from gateway.pools import (
    Candidate,
    Limits,
    is_worth_waiting_for,
    order_candidates,
    seconds_until_free,
    skip_reason,
)
from gateway.records import Attempt, RequestRecord
from gateway.registry import ClientKey, Registry
from gateway.routing import RoutingState
from gateway.upstream import Answer, send

# Attempt kinds after which the same backend is not tried again within this request.
_EXCLUDING = frozenset({"5xx", "timeout", "connect", "auth", "quota", "stream_error"})


@dataclass(slots=True)
class Call:
    """One client request on its way through the gateway."""

    request_id: str
    endpoint: str  # "chat", "completions", "embeddings", "responses"
    path: str  # upstream path after the base URL, e.g. "/chat/completions"
    key: ClientKey
    payload: dict[str, Any]
    raw: bytes
    model: str
    stream: bool
    wants_usage: bool  # the client asked for stream_options.include_usage itself
    inject_usage: bool  # the gateway must ask for it
    started: float  # perf_counter
    now: float  # monotonic, read once
    wall_now: float
    record: RequestRecord
    upstream_ms: float = 0.0  # time spent waiting on upstreams
    attempt_started: float = 0.0  # monotonic start of the latest attempt
    deadline: float = 0.0  # monotonic time after which no attempt starts (request_deadline)
    estimated_tokens: int = 0  # what admission charged a TPM bucket; corrected from real usage
    backend: str = ""  # the backend of the latest attempt (GET /api/requests/active)
    bodies: dict[str, bytes] = field(default_factory=dict)

    def body_for(self, upstream_model: str) -> bytes:
        """The original bytes when nothing must change; else re-serialized once per model."""
        if upstream_model == self.model and not self.inject_usage:
            return self.raw
        body = self.bodies.get(upstream_model)
        if body is None and upstream_model == self.model and "stream_options" not in self.payload:
            # Only the usage request is added: splice it in rather than re-serialize the body.
            # The payload is a JSON object with a "model", so the bytes end with '}' after it.
            closed = self.raw.rstrip()
            if closed.endswith(b"}"):
                body = self.bodies[upstream_model] = closed[:-1] + b',"stream_options":{"include_usage":true}}'
        if body is None:
            changed = dict(self.payload)
            changed["model"] = upstream_model
            if self.inject_usage:
                options = changed.get("stream_options")
                changed["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
            body = self.bodies[upstream_model] = dumps(changed)
        return body


def dumps(value: object) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer beyond 64 bits: let the standard library keep it exact
        import json

        return json.dumps(value, ensure_ascii=False).encode()


@dataclass(slots=True)
class Served:
    """An answer that reaches the client (success or an upstream error returned as it is)."""

    candidate: Candidate
    answer: Answer


def seconds_until_next_month(wall_ts: float) -> float:
    """Until 00:00 UTC on the 1st of the next month, when monthly budgets start again."""
    now = datetime.fromtimestamp(wall_ts, UTC)
    first = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return first.timestamp() - wall_ts


class Proxy:
    def __init__(self, session: aiohttp.ClientSession, state: RoutingState) -> None:
        self.session = session
        self.state = state

    def check_client_key(self, call: Call, month: str) -> None:
        """Rule 1: the key's own rate limit and monthly budget (the key itself is already valid)."""
        key = call.key
        bucket = self.state.key_buckets.get(key.name)
        if bucket is not None and not bucket.try_take(call.now):
            wait_s = bucket.seconds_until(call.now)
            raise RateLimited(f"Rate limit of {key.rpm} requests per minute reached for key '{key.name}'", wait_s)
        if key.budget_usd is not None:
            spent = self.state.spend.get(key.name, 0.0) if self.state.spend_month == month else 0.0
            if spent >= key.budget_usd:
                raise QuotaExceeded(
                    f"Key '{key.name}' has used its monthly budget of ${key.budget_usd:.2f} (spent ${spent:.2f})",
                    seconds_until_next_month(call.wall_now),
                )

    async def route(self, call: Call, registry: Registry) -> Served:
        """Try candidates until one answers; raise a GatewayError when none can."""
        settings = self.state.settings
        ordered = order_candidates(registry.serving.get(call.model, ()), call.model, self.state.rng)
        limits = self.state.limits
        estimated = call.estimated_tokens = estimate_tokens(len(call.raw), _max_tokens(call.payload))
        attempts_left = settings.max_attempts
        excluded: set[str] = set()  # failed in a way that rules them out for this request
        refused_models: set[str] = set()  # upstream models that answered context_length_exceeded
        skips_seen: set[tuple[str, str]] = set()
        context_refusal: Served | None = None
        last_failure: Answer | None = None
        last_failed_backend = ""
        only_rate_limited = True  # every obstacle so far was a 429, a cooldown or an empty bucket
        waited_s = 0.0
        record = call.record
        call.deadline = request_deadline(call.now, ordered, settings)
        while attempts_left > 0 and time.monotonic() < call.deadline:
            now = time.monotonic()
            wait_for_primary_s: float | None = None
            for index, cand in enumerate(ordered):
                name = cand.name
                if name in excluded or cand.upstream_model in refused_models:
                    continue
                if cand.backend.pool == "fallback" and settings.fallback_after > waited_s:
                    # Rule 8: a primary backend that frees up within fallback_after is worth the wait.
                    soon = _primary_free_in(ordered[:index], excluded, now, limits, estimated)
                    if soon is not None and soon <= settings.fallback_after - waited_s:
                        wait_for_primary_s = soon
                        break
                reason = skip_reason(name, now, limits, estimated)
                if reason is not None:
                    if (name, reason) not in skips_seen:
                        skips_seen.add((name, reason))
                        record.skips.append((name, cand.upstream_model, reason))
                    if reason == "circuit" or limits.cooldowns.status(name, now) != "cooling":
                        only_rate_limited = only_rate_limited and reason == "bucket"
                    continue
                retried = False
                while True:
                    answer = await self._attempt(call, cand, registry)
                    attempts_left -= 1
                    now = time.monotonic()
                    if answer.kind == "ok" or (
                        answer.kind == "client_error" and answer.error_code != "context_length_exceeded"
                    ):
                        if answer.kind == "client_error":
                            # The backend is up, but a refused request is no success: the 429 back-off stays.
                            self.state.breakers.on_success(name, call.attempt_started)
                        elif answer.response is None:
                            self._on_success(name, call.attempt_started)
                        else:  # a stream being relayed: its circuit's verdict comes when it ends (stream_ended)
                            self.state.cooldowns.on_success(name, call.attempt_started)
                        return Served(cand, answer)
                    self._on_failure(name, answer, now, call.wall_now)
                    if answer.kind == "client_error":  # context_length_exceeded: only another model may help
                        refused_models.add(cand.upstream_model)
                        context_refusal = context_refusal or Served(cand, answer)
                        break
                    last_failure, last_failed_backend = answer, name
                    only_rate_limited = only_rate_limited and answer.kind == "429"
                    if answer.retry_same and not retried and attempts_left > 0 and self._is_closed(name, now):
                        retried = True
                        continue  # rule 5: one more try on the same backend for a reset, 500 or 502
                    if answer.kind in _EXCLUDING:
                        excluded.add(name)
                    break
                if attempts_left <= 0 or now >= call.deadline:
                    break
            if attempts_left <= 0:
                break
            if wait_for_primary_s is not None:
                wait_s: float | None = max(wait_for_primary_s, 0.005)
            else:
                wait_s = self._wait_budget(ordered, excluded, refused_models, now, estimated, waited_s)
            if wait_s is None or now + wait_s >= call.deadline:
                break
            await asyncio.sleep(wait_s)
            waited_s += wait_s
        if context_refusal is not None:
            return context_refusal  # nothing with a larger window answered: the 400 goes back as it was
        error = self._exhausted(call, last_failure, last_failed_backend, only_rate_limited, ordered, excluded)
        if record.attempts:  # the answer reached upstreams, so it says how often (DESIGN 2.4)
            overhead_ms = (time.perf_counter() - call.started) * 1000.0 - call.upstream_ms
            error.extra_headers["x-gateway-backend"] = record.attempts[-1].backend  # the last one tried
            error.extra_headers["x-gateway-attempts"] = str(len(record.attempts))
            error.extra_headers["x-gateway-overhead-ms"] = f"{max(overhead_ms, 0.0):.2f}"
        raise error

    def _wait_budget(
        self,
        ordered: list[Candidate],
        excluded: set[str],
        refused_models: set[str],
        now: float,
        estimated: int,
        waited_s: float,
    ) -> float | None:
        """How long to sleep before another pass, or None to give up (rules 8 and 9)."""
        settings = self.state.settings
        limits = self.state.limits
        frees = [
            seconds_until_free(c.name, now, limits, estimated)
            for c in ordered
            if c.name not in excluded
            and c.upstream_model not in refused_models
            and is_worth_waiting_for(c.name, limits)
        ]
        if not frees:
            return None
        soonest = min(frees)
        budget = max(settings.queue_timeout, settings.fallback_after) - waited_s
        if soonest > budget:
            return None
        return max(soonest, 0.005)

    def _exhausted(
        self,
        call: Call,
        last: Answer | None,
        backend: str,
        only_rate_limited: bool,
        ordered: list[Candidate],
        excluded: set[str],
    ) -> GatewayError:
        now = time.monotonic()
        limits = self.state.limits
        if only_rate_limited:
            # When this request fits again: a TPM bucket must hold its estimate, not just a token.
            frees = [
                seconds_until_free(c.name, now, limits, call.estimated_tokens)
                for c in ordered
                if c.name not in excluded
            ]
            retry_after = min(frees) if frees else 1.0
            return RateLimited(
                f"Every backend serving '{call.model}' is rate limited; retry in {max(1, round(retry_after))}s",
                retry_after,
            )
        if last is None:
            return UpstreamFailed(
                f"No backend serving '{call.model}' is available now (circuits open or credentials rejected)", 503
            )
        status = 504 if last.kind == "timeout" else 503 if last.status == 503 else 502
        detail = f" (HTTP {last.status})" if last.status else ""
        return UpstreamFailed(
            f"All backends failed for model '{call.model}'; last error from '{backend}': {last.message}{detail}",
            status,
        )

    async def _attempt(self, call: Call, cand: Candidate, registry: Registry) -> Answer:
        settings = self.state.settings
        backend = cand.backend
        headers = registry.auth_headers[backend.name]
        self.state.in_flight[backend.name] += 1
        started = time.perf_counter()
        call.attempt_started = time.monotonic()
        call.backend = backend.name
        try:
            answer = await send(
                self.session,
                backend.base_url + call.path,
                call.body_for(cand.upstream_model),
                headers,
                stream=call.stream,
                # The overall deadline shortens the last attempts, never the first one.
                header_timeout_s=max(min(backend.timeout, call.deadline - time.monotonic()), 0.001),
                first_token_timeout_s=settings.first_token_timeout,
            )
        except asyncio.CancelledError:
            self.state.breakers.release_probe(backend.name)  # the client left: no verdict on the backend
            if call.stream:
                self.state.in_flight[backend.name] -= 1
            raise
        finally:
            if not call.stream:
                self.state.in_flight[backend.name] -= 1
        ms = (time.perf_counter() - started) * 1000.0
        call.upstream_ms += ms
        if answer.response is None and call.stream:
            self.state.in_flight[backend.name] -= 1  # a stream that is not relayed ends here
        call.record.attempts.append(Attempt(backend.name, cand.upstream_model, answer.status, answer.kind, ms))
        return answer

    def _is_closed(self, name: str, now: float) -> bool:
        """False once this failure opened the circuit: then not even the one same-backend retry goes."""
        return self.state.breakers.state(name, now) == "closed"

    def stream_ended(self, name: str, started_at: float, failure: str | None, client_gone: bool) -> None:
        """A relayed stream's verdict on its backend's circuit: cut or stalled is a failure (rule 5)."""
        breakers = self.state.breakers
        if failure is not None:
            breakers.on_failure(name, time.monotonic())
        elif client_gone:
            breakers.release_probe(name)  # no verdict on the backend
        else:
            breakers.on_success(name, started_at)

    def _on_success(self, name: str, started_at: float) -> None:
        self.state.cooldowns.on_success(name, started_at)
        self.state.breakers.on_success(name, started_at)

    def _on_failure(self, name: str, answer: Answer, now: float, wall_now: float) -> None:
        state = self.state
        kind = answer.kind
        if kind == "429":
            hint = retry_hint_s(answer.headers, answer.error_json, wall_now)
            state.cooldowns.on_rate_limited(name, now, hint, draw_jitter(state.rng))
            state.breakers.release_probe(name)
        elif kind == "quota":
            state.cooldowns.on_quota_exhausted(name, now)
            state.breakers.release_probe(name)
        elif kind == "auth":
            state.cooldowns.on_credential_rejected(name, now)
            state.breakers.release_probe(name)
        elif kind in ("5xx", "timeout", "connect", "stream_error"):
            state.breakers.on_failure(name, now)
        else:
            state.breakers.release_probe(name)


def request_deadline(now: float, ordered: list[Candidate], settings: RoutingSettings) -> float:
    """When a request stops trying: two of its slowest candidate's header timeouts plus the longest wait.

    Enough for a silent backend followed by a full attempt elsewhere; without it, `max_attempts`
    silent backends would hold a client for `max_attempts` timeouts.
    """
    slowest_s = max((c.backend.timeout for c in ordered), default=0.0)
    return now + 2 * slowest_s + max(settings.queue_timeout, settings.fallback_after)


def _primary_free_in(
    primaries: list[Candidate], excluded: set[str], now: float, limits: Limits, estimated: int
) -> float | None:
    """Seconds until the first skipped primary backend may be tried, None when none is waiting."""
    frees = [
        seconds_until_free(c.name, now, limits, estimated)
        for c in primaries
        if c.backend.pool == "primary" and c.name not in excluded and is_worth_waiting_for(c.name, limits)
    ]
    positive = [f for f in frees if f > 0]
    return min(positive) if positive else None


def _max_tokens(payload: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = payload.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def passthrough_response(answer: Answer, headers: dict[str, str]) -> Response:
    return Response(answer.body, answer.status, headers=headers, media_type=answer.content_type)
