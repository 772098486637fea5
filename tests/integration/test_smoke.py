from __future__ import annotations

from tests.fakes import FakeUpstream
from tests.servers import GatewayServer


def test_chat_through_gateway(gateway: GatewayServer, fake: FakeUpstream) -> None:
    gateway.add_backend("main", fake.url, ["gpt-4o-mini"], api_key="sk-upstream-secret")
    key = gateway.new_key("alice")
    reply = gateway.client(key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == "Hello!"
    assert fake.requests[-1].headers["authorization"] == "Bearer sk-upstream-secret"
    assert gateway.flush()
    rows = gateway.query("SELECT * FROM usage_hourly WHERE requests > 0")
    assert [(r["backend"], r["model"], r["api_key"], r["prompt_tokens"], r["completion_tokens"]) for r in rows] == [
        ("main", "gpt-4o-mini", "alice", 10, 5)
    ]
