"""Prometheus metrics at /metrics, fed from the same request records as the usage tables."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.records import RequestRecord

if TYPE_CHECKING:
    from gateway.app import Gateway

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """One registry per app (not the global default), so several gateways can live in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.requests = Counter(
            "gateway_requests",
            "Client requests by answering backend, model and outcome",
            ["backend", "model", "outcome"],
            registry=r,
        )
        self.refused = Counter(
            "gateway_refused_requests",
            "Client requests refused as bad input (key, body, model), by status",
            ["status"],
            registry=r,
        )
        self.attempts = Counter(
            "gateway_upstream_attempts", "Upstream attempts by backend and result kind", ["backend", "kind"], registry=r
        )
        self.skips = Counter(
            "gateway_backend_skips", "Candidates skipped by backend and reason", ["backend", "reason"], registry=r
        )
        self.latency = Histogram(
            "gateway_request_latency_seconds",
            "End-to-end request latency",
            ["backend"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.ttft = Histogram(
            "gateway_time_to_first_token_seconds",
            "Streams: time to first token",
            ["backend"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.tokens = Counter(
            "gateway_tokens", "Tokens by backend, model and kind", ["backend", "model", "kind"], registry=r
        )
        self.cost = Counter("gateway_cost_usd", "Cost in USD by backend and model", ["backend", "model"], registry=r)
        self.invalid_events = Counter(
            "gateway_stream_invalid_events",
            "Stream events that were not valid JSON, dropped instead of forwarded",
            ["backend"],
            registry=r,
        )

    def observe(self, rec: RequestRecord) -> None:
        outcome = "ok" if rec.status < 400 and rec.error is None else ("error_" + str(rec.status))
        self._child(self.requests, rec.backend, rec.model, outcome).inc()
        for attempt in rec.attempts:
            self._child(self.attempts, attempt.backend, attempt.kind).inc()
        for backend, _model, reason in rec.skips:
            self.skips.labels(backend, reason).inc()
        if rec.backend:
            self._child(self.latency, rec.backend).observe(rec.latency_ms / 1000.0)
            if rec.ttft_ms is not None:
                self._child(self.ttft, rec.backend).observe(rec.ttft_ms / 1000.0)
        if rec.usage is not None:
            u = rec.usage
            for kind, value in (
                ("prompt", u.prompt_tokens),
                ("completion", u.completion_tokens),
                ("cached", u.cached_tokens),
                ("reasoning", u.reasoning_tokens),
            ):
                if value:
                    self._child(self.tokens, rec.backend, rec.model, kind).inc(value)
        if rec.cost_usd:
            self._child(self.cost, rec.backend, rec.model).inc(rec.cost_usd)

    def _child(self, metric: Any, *labels: str) -> Any:
        """metric.labels(...) memoized: prometheus_client takes a lock and builds a key every call."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def attach(self, gateway: Gateway) -> None:
        self.registry.register(_LiveState(gateway))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LiveState(Collector):
    """Gauges read at scrape time from the live routing state and the usage writer."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gateway = self.gateway
        now = time.monotonic()
        routing = gateway.routing
        cooling = GaugeMetricFamily(
            "gateway_backend_cooldown_seconds", "Seconds left in a backend's cooldown", labels=["backend"]
        )
        circuit = GaugeMetricFamily(
            "gateway_backend_circuit_open", "1 when a backend's circuit is open", labels=["backend"]
        )
        in_flight = GaugeMetricFamily("gateway_backend_in_flight", "Requests in flight per backend", labels=["backend"])
        for b in gateway.registry.backends:
            cooling.add_metric([b.name], routing.cooldowns.remaining_s(b.name, now))
            circuit.add_metric([b.name], 1.0 if routing.breakers.state(b.name, now) == "open" else 0.0)
            in_flight.add_metric([b.name], routing.in_flight.get(b.name, 0))
        yield cooling
        yield circuit
        yield in_flight
        stats = gateway.recorder.stats
        yield GaugeMetricFamily(
            "gateway_usage_events_dropped", "Usage records dropped (queue full)", value=stats.dropped
        )
        yield GaugeMetricFamily(
            "gateway_usage_events_pending", "Usage records waiting to be written", value=gateway.recorder.backlog
        )
        yield GaugeMetricFamily("gateway_usage_flush_failures", "Failed usage flushes", value=stats.flush_failures)
