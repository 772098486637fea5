"""A gateway with a primary and a fallback backend, each a FakeUpstream, and one client key.

Shared by the failover and stream tests: it adds the backends over the admin API, asks
through the real `openai` client and reads back what the gateway shows and recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import openai

from tests.fakes import FakeUpstream
from tests.servers import GatewayServer

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "hi"}]
T = TypeVar("T")


def poll(probe: Callable[[], T | None], timeout_s: float, interval_s: float = 0.02) -> T:
    """Call `probe` until it answers something truthy; fail after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last value: {value!r})")
        time.sleep(interval_s)


def parse_iso(value: str) -> float:
    """Wall-clock seconds of an ISO-8601 UTC time as the admin API writes it."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class TwoPools:
    gw: GatewayServer
    primary: FakeUpstream
    fallback: FakeUpstream
    key: str
    client: openai.OpenAI

    def ask(self, model: str = MODEL, **kwargs: Any) -> Any:
        """A chat completion through the gateway; the raw response (headers, .parse())."""
        return self.client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, **kwargs)

    def backend_of(self, **kwargs: Any) -> str:
        """Which backend answered a fresh request."""
        return str(self.ask(**kwargs).headers["x-gateway-backend"])

    def status(self) -> dict[str, dict[str, Any]]:
        response = self.gw.admin("GET", "/api/status")
        assert response.status_code == 200, response.text
        return {row["name"]: row for row in response.json()["data"]}

    def logged(self, request_id: str) -> dict[str, Any]:
        """The request log entry of `request_id`, once the recorder has written it."""

        def fetch() -> dict[str, Any] | None:
            self.gw.flush()
            response = self.gw.admin("GET", f"/api/requests/{request_id}")
            return response.json() if response.status_code == 200 else None

        return poll(fetch, timeout_s=5)

    def hourly(self) -> dict[tuple[str, str], Mapping[str, Any]]:
        """usage_hourly rows of this key, by (backend, model), after a flush."""
        assert self.gw.flush()
        rows = self.gw.query("SELECT * FROM usage_hourly WHERE api_key = 'tester'")
        return {(row["backend"], row["model"]): row for row in rows}


def two_pools(
    gw: GatewayServer,
    primary: FakeUpstream,
    fallback: FakeUpstream,
    *,
    models: list[Any] | None = None,
    fallback_models: list[Any] | None = None,
    primary_url: str | None = None,
    **primary_fields: Any,
) -> TwoPools:
    """Backends "primary" (extra fields go to it) and "fallback", and a client key named "tester"."""
    gw.add_backend("primary", primary_url or primary.url, models or [MODEL], **primary_fields)
    gw.add_backend("fallback", fallback.url, fallback_models or models or [MODEL], pool="fallback")
    key = gw.new_key("tester")
    return TwoPools(gw, primary, fallback, key, gw.client(key))
