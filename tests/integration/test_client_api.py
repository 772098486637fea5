"""The OpenAI-compatible client API end to end: real uvicorn, a fake upstream over TCP, the `openai` SDK.

Each test reads what the upstream received (`fake.requests`) and what the gateway stored
(the real SQLite file), not the gateway's internals.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from gateway import client_api
from gateway.usage import hour_bucket
from tests.fakes import EMBEDDING_DIMENSIONS, FakeUpstream, Reply, embedding_vector
from tests.servers import GatewayServer

UPSTREAM_KEY = "sk-upstream-secret-9f8e"
MESSAGES = [{"role": "user", "content": "hi"}]
SUMMED = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")


@pytest.fixture
def setup(gateway: GatewayServer, fake: FakeUpstream) -> Iterator[tuple[GatewayServer, FakeUpstream, str]]:
    """A gateway with one backend on the fake serving a chat, a legacy and an embedding model."""
    gateway.add_backend(
        "main",
        fake.url,
        ["gpt-4o-mini", "gpt-3.5-turbo-instruct", "text-embedding-3-small"],
        api_key=UPSTREAM_KEY,
    )
    yield gateway, fake, gateway.new_key("alice")


def flush(gateway: GatewayServer, recorded: int) -> None:
    """Write usage once `recorded` requests are accounted for.

    A stream is recorded as its relay ends, just after the client has read the last byte,
    so a test that flushes at once could run ahead of it.
    """
    deadline = time.monotonic() + 5
    while httpx.get(gateway.url + "/healthz", timeout=5).json()["usage"]["recorded"] < recorded:
        assert time.monotonic() < deadline, f"fewer than {recorded} requests were recorded"
        time.sleep(0.01)
    assert gateway.flush()


def usage_rows(gateway: GatewayServer, recorded: int) -> list[tuple[Any, ...]]:
    flush(gateway, recorded)
    rows = gateway.query(
        f"SELECT backend, model, api_key, {', '.join(SUMMED)} FROM usage_hourly WHERE requests > 0 "
        "ORDER BY backend, model, api_key"
    )
    return [tuple(r) for r in rows]


def request_log(gateway: GatewayServer, recorded: int) -> list[dict[str, Any]]:
    flush(gateway, recorded)
    return [dict(r) for r in gateway.query("SELECT * FROM request_log ORDER BY ts, rowid")]


def sse_payloads(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]


def assert_gateway_headers(headers: httpx.Headers, backend: str = "main", attempts: int = 1) -> None:
    assert headers["x-request-id"].startswith("req_")
    assert headers["x-gateway-backend"] == backend
    assert headers["x-gateway-attempts"] == str(attempts)
    assert float(headers["x-gateway-overhead-ms"]) >= 0.0


# -- each endpoint -----------------------------------------------------------------------------


def test_chat_non_stream(setup: tuple[GatewayServer, FakeUpstream, str]) -> None:
    gateway, fake, key = setup
    fake.enqueue(Reply.ok(content="Bonjour", prompt_tokens=12, completion_tokens=3, cached_tokens=4))

    raw = gateway.client(key).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    reply = raw.parse()

    assert reply.choices[0].message.content == "Bonjour"
    assert reply.model == "gpt-4o-mini"
    assert reply.usage is not None and (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (12, 3)
    assert_gateway_headers(raw.headers)
    assert fake.requests[-1].path == "/v1/chat/completions"
    assert fake.requests[-1].json["messages"] == MESSAGES
    assert usage_rows(gateway, 1) == [("main", "gpt-4o-mini", "alice", 1, 12, 3, 4, 0)]
    [logged] = request_log(gateway, 1)
    assert logged["request_id"] == raw.headers["x-request-id"]
    assert (logged["endpoint"], logged["status"], logged["stream"], logged["attempts"]) == ("chat", 200, 0, 1)


def test_chat_stream_strips_the_usage_chunk_the_client_did_not_ask_for(
    setup: tuple[GatewayServer, FakeUpstream, str],
) -> None:
    gateway, fake, key = setup
    fake.enqueue(Reply.ok(content="Hello there", prompt_tokens=7, completion_tokens=4, chunks=3))

    with gateway.client(key).chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ) as raw:
        headers = raw.headers
        chunks = list(raw.parse())

    # The gateway asked the upstream for usage on the client's behalf...
    sent = fake.requests[-1].json
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    # ...and the client, which did not ask, never sees the usage-only chunk.
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there"
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert_gateway_headers(headers)
    assert headers["content-type"].startswith("text/event-stream")
    # The stripped chunk was still counted.
    assert usage_rows(gateway, 1) == [("main", "gpt-4o-mini", "alice", 1, 7, 4, 0, 0)]
    [logged] = request_log(gateway, 1)
    assert logged["stream"] == 1 and logged["ttft_ms"] is not None and logged["error"] is None


def test_chat_stream_keeps_the_usage_chunk_when_the_client_asked(
    setup: tuple[GatewayServer, FakeUpstream, str],
) -> None:
    gateway, fake, key = setup
    fake.enqueue(Reply.ok(content="Hi", prompt_tokens=9, completion_tokens=2))

    chunks = list(
        gateway.client(key).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    assert fake.requests[-1].json["stream_options"] == {"include_usage": True}
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (9, 2)
    assert usage_rows(gateway, 1) == [("main", "gpt-4o-mini", "alice", 1, 9, 2, 0, 0)]


def test_stream_is_relayed_byte_for_byte_and_ends_with_done(setup: tuple[GatewayServer, FakeUpstream, str]) -> None:
    gateway, fake, key = setup
    fake.enqueue(Reply.ok(content="abcdef", chunks=3))
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}

    response = httpx.post(
        gateway.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=10
    )

    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["ab", "cd", "ef", None]
    assert all(c["choices"] for c in chunks)  # no usage-only chunk


def test_completions_non_stream_and_stream(setup: tuple[GatewayServer, FakeUpstream, str]) -> None:
    gateway, fake, key = setup
    client = gateway.client(key)
    fake.enqueue(
        Reply.ok(content="once upon", prompt_tokens=5, completion_tokens=2),
        Reply.ok(content="a time", prompt_tokens=6, completion_tokens=3),
    )

    raw = client.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct", prompt="Tell")
    streamed = list(client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Tell", stream=True))

    assert raw.parse().choices[0].text == "once upon"
    assert_gateway_headers(raw.headers)
    assert "".join(c.choices[0].text for c in streamed) == "a time"
    assert all(c.choices and c.usage is None for c in streamed)
    assert [r.path for r in fake.requests] == ["/v1/completions"] * 2
    assert fake.requests[1].json["stream_options"] == {"include_usage": True}
    assert usage_rows(gateway, 2) == [("main", "gpt-3.5-turbo-instruct", "alice", 2, 11, 5, 0, 0)]


def test_embeddings(setup: tuple[GatewayServer, FakeUpstream, str]) -> None:
    gateway, fake, key = setup
    fake.enqueue(Reply.ok(prompt_tokens=8))

    raw = gateway.client(key).embeddings.with_raw_response.create(model="text-embedding-3-small", input=["one", "two"])
    reply = raw.parse()

    assert [item.embedding for item in reply.data] == [embedding_vector(0), embedding_vector(1)]
    assert_gateway_headers(raw.headers)
    assert fake.requests[-1].path == "/v1/embeddings"
    assert fake.requests[-1].json["input"] == ["one", "two"]
    assert usage_rows(gateway, 1) == [("main", "text-embedding-3-small", "alice", 1, 8, 0, 0, 0)]


def test_embeddings_base64_is_passed_through(setup: tuple[GatewayServer, FakeUpstream, str]) -> None:
    gateway, _fake, key = setup
    response = httpx.post(
        gateway.url + "/v1/embeddings",
        json={"model": "text-embedding-3-small", "input": "x", "encoding_format": "base64"},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )
    encoded = response.json()["data"][0]["embedding"]
    assert list(struct.unpack(f"<{EMBEDDING_DIMENSIONS}f", base64.b64decode(encoded))) == embedding_vector(0)


def test_responses_non_stream_and_stream(setup: tuple[GatewayServer, FakeUpstream, str]) -> None:
    gateway, fake, key = setup
    client = gateway.client(key)
    fake.enqueue(
        Reply.ok(content="Salut", prompt_tokens=11, completion_tokens=4, cached_tokens=3, reasoning_tokens=2),
        Reply.ok(content="Streamed!", prompt_tokens=20, completion_tokens=6, chunks=4),
    )

    raw = client.responses.with_raw_response.create(model="gpt-4o-mini", input="hi")
    reply = raw.parse()
    with client.responses.with_streaming_response.create(model="gpt-4o-mini", input="hi", stream=True) as streaming:
        stream_headers = streaming.headers
        events = list(streaming.parse())

    assert reply.output_text == "Salut"
    assert_gateway_headers(raw.headers)
    assert_gateway_headers(stream_headers)
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Streamed!"
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage is not None and events[-1].response.usage.output_tokens == 6
    assert [r.path for r in fake.requests] == ["/v1/responses"] * 2
    # The Responses API reports usage in its final event: nothing is injected into its body.
    assert "stream_options" not in fake.requests[1].json
    assert usage_rows(gateway, 2) == [("main", "gpt-4o-mini", "alice", 2, 31, 10, 3, 2)]


def test_models_lists_the_union_of_enabled_backends(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    gateway.add_backend("a", fake.url, ["gpt-4o-mini", {"name": "fast", "upstream": "gpt-4o-mini"}])
    gateway.add_backend("b", fake2.url, ["gpt-4o-mini", "llama-3.1-8b"], pool="fallback")
    gateway.add_backend("off", fake2.url, ["only-on-a-disabled-backend"], enabled=False)
    key = gateway.new_key()
    client = gateway.client(key)

    assert sorted(m.id for m in client.models.list()) == ["fast", "gpt-4o-mini", "llama-3.1-8b"]

    assert gateway.admin("PATCH", "/api/backends/b", json={"enabled": False}).status_code == 200
    assert sorted(m.id for m in client.models.list()) == ["fast", "gpt-4o-mini"]
    assert gateway.admin("PATCH", "/api/backends/off", json={"enabled": True}).status_code == 200
    assert sorted(m.id for m in client.models.list()) == ["fast", "gpt-4o-mini", "only-on-a-disabled-backend"]
    assert fake.hits == 0 and fake2.hits == 0  # answered from the gateway's own configuration


def test_models_needs_a_client_key(setup: tuple[GatewayServer, FakeUpstream, str]) -> None:
    gateway, _fake, _key = setup
    response = httpx.get(gateway.url + "/v1/models", timeout=10)
    assert response.status_code == 401
    assert response.headers["x-request-id"].startswith("req_")


# -- keys ----------------------------------------------------------------------------------------


def test_upstream_sees_the_backend_key_never_the_client_key(setup: tuple[GatewayServer, FakeUpstream, str]) -> None:
    gateway, fake, key = setup
    client = gateway.client(key)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    client.embeddings.create(model="text-embedding-3-small", input="x")
    client.responses.create(model="gpt-4o-mini", input="hi")

    assert len(fake.requests) == 4
    for received in fake.requests:
        assert received.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert key not in json.dumps(received.headers)
        assert key.encode() not in received.body


def test_backend_without_a_key_gets_no_authorization_header(gateway: GatewayServer, fake: FakeUpstream) -> None:
    gateway.add_backend("local", fake.url, ["llama"])
    key = gateway.new_key()
    gateway.client(key).chat.completions.create(model="llama", messages=MESSAGES)
    assert "authorization" not in fake.requests[-1].headers
    assert key not in json.dumps(fake.requests[-1].headers)


def test_revoked_key_is_refused_on_the_next_request(setup: tuple[GatewayServer, FakeUpstream, str]) -> None:
    gateway, fake, key = setup
    other = gateway.new_key("bob")
    client = gateway.client(key)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    response = gateway.admin("DELETE", "/api/keys/alice")
    assert response.status_code == 200, response.text

    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert refused.value.status_code == 401
    assert refused.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert fake.post_hits == 1  # the refused request never reached the upstream
    gateway.client(other).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert fake.post_hits == 2


# -- aliases, pass-through -----------------------------------------------------------------------


def test_alias_maps_to_the_upstream_name(gateway: GatewayServer, fake: FakeUpstream) -> None:
    gateway.add_backend("main", fake.url, [{"name": "fast", "upstream": "gpt-4o-mini"}], api_key=UPSTREAM_KEY)
    key = gateway.new_key("alice")
    client = gateway.client(key)

    reply = client.chat.completions.create(model="fast", messages=MESSAGES)
    list(client.chat.completions.create(model="fast", messages=MESSAGES, stream=True))

    assert [r.json["model"] for r in fake.requests] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert reply.model == "gpt-4o-mini"  # the model that answered (DESIGN 4, rule 11)
    assert usage_rows(gateway, 2) == [("main", "gpt-4o-mini", "alice", 2, 20, 10, 0, 0)]
    logged = request_log(gateway, 2)
    assert [(r["requested_model"], r["model"]) for r in logged] == [("fast", "gpt-4o-mini")] * 2
    with pytest.raises(openai.NotFoundError):  # the upstream name is not itself a model clients may ask for
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def test_unknown_fields_pass_through_untouched(setup: tuple[GatewayServer, FakeUpstream, str]) -> None:
    gateway, fake, key = setup
    extra = {
        "vendor_option": {"nested": [1, 2.5, None, True, "x"]},
        "temperature": 0.25,
        "logit_bias": {"50256": -100},
        "huge": 123456789012345678901234567890,  # beyond 64 bits: still exact
        "unicode": "héllo \u2603",
    }
    raw_body = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, **extra}).encode()

    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=raw_body,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        timeout=10,
    )

    assert response.status_code == 200, response.text
    assert fake.requests[-1].body == raw_body  # nothing to change: the very bytes go upstream

    # A stream is re-serialized to ask for usage; every other field is kept as it was.
    gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_body=extra)
    sent = fake.requests[-1].json
    assert {k: sent[k] for k in extra} == extra
    assert sent["stream_options"] == {"include_usage": True}


def test_client_stream_options_are_kept_when_usage_is_injected(
    setup: tuple[GatewayServer, FakeUpstream, str],
) -> None:
    gateway, fake, key = setup
    list(
        gateway.client(key).chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_body={"stream_options": {"include_obfuscation": False}},
        )
    )
    assert fake.requests[-1].json["stream_options"] == {"include_obfuscation": False, "include_usage": True}


# -- accounting ----------------------------------------------------------------------------------


def test_usage_rows_equal_what_the_upstream_reported(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    gateway.add_backend("east", fake.url, ["gpt-4o-mini", "text-embedding-3-small"], api_key="sk-east")
    gateway.add_backend("west", fake2.url, ["claude-x", {"name": "big", "upstream": "llama-70b"}], api_key="sk-west")
    clients = {name: gateway.client(gateway.new_key(name)) for name in ("alice", "bob", "carol")}
    plan: list[tuple[str, str, str, bool, int, int, int]] = [
        # key, model asked, upstream model, stream, prompt, completion, cached
        ("alice", "gpt-4o-mini", "gpt-4o-mini", False, 10, 5, 0),
        ("alice", "gpt-4o-mini", "gpt-4o-mini", True, 21, 8, 4),
        ("bob", "gpt-4o-mini", "gpt-4o-mini", False, 33, 2, 16),
        ("bob", "claude-x", "claude-x", True, 40, 11, 0),
        ("alice", "claude-x", "claude-x", False, 7, 7, 0),
        ("carol", "big", "llama-70b", False, 100, 50, 20),
        ("carol", "big", "llama-70b", True, 3, 1, 0),
        ("bob", "text-embedding-3-small", "text-embedding-3-small", False, 13, 0, 0),
    ]
    expected: Counter[tuple[str, str, str, str, str]] = Counter()
    for index, (key, model, upstream, stream, prompt, completion, cached) in enumerate(plan):
        target = fake if upstream in ("gpt-4o-mini", "text-embedding-3-small") else fake2
        target.enqueue(Reply.ok(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached))
        client = clients[key]
        before = time.time()
        if model.startswith("text-embedding"):
            raw: Any = client.embeddings.with_raw_response.create(model=model, input="x")
        elif stream:
            with client.chat.completions.with_streaming_response.create(
                model=model, messages=MESSAGES, stream=True
            ) as raw:
                list(raw.parse())
        else:
            raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
        after = time.time()
        flush(gateway, index + 1)
        [logged] = gateway.query("SELECT ts FROM request_log WHERE request_id = ?", (raw.headers["x-request-id"],))
        hour = logged["ts"][:13] + ":00:00Z"
        assert hour in (hour_bucket(before), hour_bucket(after))
        backend = "east" if target is fake else "west"
        row = (hour, backend, upstream, key)
        expected[(*row, "requests")] += 1
        expected[(*row, "prompt_tokens")] += prompt
        expected[(*row, "completion_tokens")] += completion
        expected[(*row, "cached_tokens")] += cached

    flush(gateway, len(plan))
    stored: Counter[tuple[str, str, str, str, str]] = Counter()
    for r in gateway.query("SELECT * FROM usage_hourly"):
        for column in ("requests", "prompt_tokens", "completion_tokens", "cached_tokens"):
            if r[column]:
                stored[(r["hour"], r["backend"], r["model"], r["api_key"], column)] += r[column]
    assert stored == expected
    by_backend = {r["key"]: r for r in gateway.admin("GET", "/api/usage/aggregate?group_by=backend").json()["data"]}
    assert by_backend["east"]["prompt_tokens"] == 10 + 21 + 33 + 13
    assert by_backend["west"]["completion_tokens"] == 11 + 7 + 50 + 1


def test_cost_matches_the_price_set_through_the_api(setup: tuple[GatewayServer, FakeUpstream, str]) -> None:
    gateway, fake, key = setup
    price = {"input_per_mtok": 2.0, "output_per_mtok": 8.0, "cached_input_per_mtok": 0.5}
    response = gateway.admin("PUT", "/api/pricing/gpt-4o-mini", json=price)
    assert response.status_code == 200, response.text
    fake.enqueue(
        Reply.ok(prompt_tokens=1000, completion_tokens=500, cached_tokens=400),
        Reply.ok(prompt_tokens=3000, completion_tokens=0, cached_tokens=0),
    )
    client = gateway.client(key)

    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))

    first = (600 * 2.0 + 400 * 0.5 + 500 * 8.0) / 1e6
    second = 3000 * 2.0 / 1e6
    flush(gateway, 2)
    [row] = gateway.query("SELECT cost_usd, unpriced FROM usage_hourly WHERE requests > 0")
    assert row["cost_usd"] == pytest.approx(first + second, rel=1e-9)
    assert row["unpriced"] == 0
    costs = [r["cost_usd"] for r in gateway.query("SELECT cost_usd FROM request_log ORDER BY ts, rowid")]
    assert costs == pytest.approx([first, second], rel=1e-9)
    summary = gateway.admin("GET", "/api/usage/summary").json()
    assert summary["cost_usd"] == pytest.approx(first + second, rel=1e-9)


def test_cost_without_a_cached_price_charges_cached_tokens_at_the_input_price(
    setup: tuple[GatewayServer, FakeUpstream, str],
) -> None:
    gateway, fake, key = setup
    response = gateway.admin("PUT", "/api/pricing/my-model", json={"input_per_mtok": 3, "output_per_mtok": 5})
    assert response.status_code == 200, response.text
    gateway.add_backend("mine", fake.url, [{"name": "mine", "upstream": "my-model"}])
    fake.enqueue(Reply.ok(prompt_tokens=100, completion_tokens=10, cached_tokens=60))

    gateway.client(key).chat.completions.create(model="mine", messages=MESSAGES)

    flush(gateway, 1)
    [row] = gateway.query("SELECT model, cost_usd FROM usage_hourly WHERE requests > 0")
    assert row["model"] == "my-model"  # priced by the upstream name, not the alias
    assert row["cost_usd"] == pytest.approx((100 * 3 + 10 * 5) / 1e6, rel=1e-9)


def test_unknown_model_price_costs_nothing_and_is_flagged(gateway: GatewayServer, fake: FakeUpstream) -> None:
    gateway.add_backend("main", fake.url, ["no-price-model-zz"])
    gateway.client(gateway.new_key()).chat.completions.create(model="no-price-model-zz", messages=MESSAGES)
    flush(gateway, 1)
    [row] = gateway.query("SELECT cost_usd, unpriced FROM usage_hourly WHERE requests > 0")
    assert (row["cost_usd"], row["unpriced"]) == (0, 1)


# -- secrets at rest -----------------------------------------------------------------------------


def test_upstream_and_client_keys_are_never_stored_in_plaintext(gateway: GatewayServer, fake: FakeUpstream) -> None:
    secret = "sk-proj-PLAINTEXT-must-not-be-stored-0123456789"
    view = gateway.add_backend("main", fake.url, ["gpt-4o-mini"], api_key=secret)
    assert (view["api_key"], view["api_key_set"]) == ("6789", True)
    client_key = gateway.new_key("alice")
    gateway.client(client_key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert fake.requests[-1].headers["authorization"] == f"Bearer {secret}"  # it was usable, so it is stored
    flush(gateway, 1)

    listed = gateway.admin("GET", "/api/backends").text + gateway.admin("GET", "/api/backends/main").text
    assert secret not in listed
    data_files = [p for p in gateway.settings.data_dir.iterdir() if p.is_file()]
    assert any(p.name.startswith("gateway.db") for p in data_files)
    for path in data_files:  # the database, its WAL and shared-memory files, the master key
        content = path.read_bytes()
        for plaintext in (secret, secret[3:20], client_key, client_key[-20:]):
            assert plaintext.encode() not in content, f"{plaintext!r} found in {path.name}"


def test_requests_in_flight_are_listed_until_they_end(setup: tuple[GatewayServer, FakeUpstream, str]) -> None:
    gateway, fake, key = setup
    client = gateway.client(key)
    slow = Reply.ok(delay_s=1.0, chunks=3, chunk_delay_s=0.3)
    fake.enqueue(slow, slow)

    def plain() -> str:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        raw.parse()
        return raw.headers["x-request-id"]

    def streamed() -> str:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        list(raw.parse())
        return raw.headers["x-request-id"]

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(plain), pool.submit(streamed)]
        deadline = time.monotonic() + 5
        while len(active := gateway.admin("GET", "/api/requests/active").json()["data"]) < 2:
            assert time.monotonic() < deadline, active
            time.sleep(0.02)
        ids = [f.result() for f in futures]
    assert sorted(r["request_id"] for r in active) == sorted(ids)
    by_stream = {r["stream"]: r for r in active}
    assert set(by_stream) == {False, True}
    for row in active:
        assert (row["endpoint"], row["api_key"], row["requested_model"]) == ("chat", "alice", "gpt-4o-mini")
        assert row["backend"] == "main" and row["attempts"] == 0  # the first attempt is still under way
        assert row["elapsed_ms"] > 0 and row["ts"].endswith("Z")
    deadline = time.monotonic() + 5  # a stream is recorded just after the client read its last byte
    while (left := gateway.admin("GET", "/api/requests/active").json()) != {"data": [], "by_backend": []}:
        assert time.monotonic() < deadline, left
        time.sleep(0.02)


def test_a_bug_in_the_gateway_is_an_openai_shaped_500_and_leaves_nothing_in_flight(
    setup: tuple[GatewayServer, FakeUpstream, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway, fake, key = setup

    def broken(*args: Any) -> None:
        raise RuntimeError("a bug")

    def ask() -> httpx.Response:
        return httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
            headers={"authorization": f"Bearer {key}"},
        )

    with monkeypatch.context() as patch:  # before any upstream attempt
        patch.setattr(gateway.gateway.proxy, "check_client_key", broken)
        before = ask()
    with monkeypatch.context() as patch:  # after the upstream answered
        patch.setattr(client_api, "_body_usage", broken)
        after = ask()
    for response in (before, after):
        assert response.status_code == 500
        assert response.json()["error"]["message"] == "The gateway failed; see its log"
        assert response.headers["x-request-id"].startswith("req_")
    assert gateway.admin("GET", "/api/requests/active").json()["data"] == []
    assert fake.post_hits == 1
