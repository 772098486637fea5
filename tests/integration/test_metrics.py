from __future__ import annotations

import httpx

from tests.fakes import FakeUpstream, Reply
from tests.servers import GatewayServer


def test_metrics_need_admin_token_and_count_requests(gateway: GatewayServer, fake: FakeUpstream) -> None:
    gateway.add_backend("main", fake.url, ["gpt-4o-mini"])
    key = gateway.new_key("m")
    fake.enqueue(Reply.error(500), Reply.ok(prompt_tokens=7, completion_tokens=3))
    gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])

    assert httpx.get(gateway.url + "/metrics").status_code == 401
    text = gateway.admin("GET", "/metrics").text
    assert 'gateway_requests_total{backend="main",model="gpt-4o-mini",outcome="ok"} 1.0' in text
    assert 'gateway_upstream_attempts_total{backend="main",kind="5xx"} 1.0' in text
    assert 'gateway_upstream_attempts_total{backend="main",kind="ok"} 1.0' in text
    assert 'gateway_tokens_total{backend="main",kind="prompt",model="gpt-4o-mini"} 7.0' in text
    assert 'gateway_backend_circuit_open{backend="main"} 0.0' in text
    assert "gateway_usage_events_dropped 0.0" in text


def test_metrics_public_when_configured(make_gateway) -> None:
    gateway = make_gateway(metrics_public=True)
    response = httpx.get(gateway.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
