"""Streams through the gateway (DESIGN section 4, rules 7 and 10).

Failover is possible until the first byte reaches the client; after that, a cut or a stall
must end with an explicit SSE error event and no `[DONE]`. Each stream is read both with
the `openai` client (what users see) and, where the bytes matter, with raw httpx.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import FakeUpstream, Reply
from tests.servers import GatewayServer
from tests.two_pools import MESSAGES, MODEL, TwoPools, poll, two_pools

MakeGateway = Callable[..., GatewayServer]


def stream_text(pair: TwoPools, **kwargs: Any) -> tuple[str, Any]:
    """Stream a chat completion with the openai client: (the text, the raw response)."""
    raw = pair.client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, stream=True, **kwargs)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    return text, raw


def raw_events(pair: TwoPools, **fields: Any) -> tuple[httpx.Response, list[bytes]]:
    """Stream with raw httpx and return the response and the `data:` payloads, in order."""
    body = {"model": MODEL, "messages": MESSAGES, "stream": True, **fields}
    with httpx.stream(
        "POST",
        pair.gw.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {pair.key}"},
        json=body,
        timeout=10,
    ) as response:
        data = response.read()
    events = [block for block in data.split(b"\n\n") if block.strip()]
    assert all(block.startswith(b"data: ") for block in events), data
    return response, [block.removeprefix(b"data: ") for block in events]


def assert_ends_with_error(events: list[bytes], code: str) -> dict[str, Any]:
    assert b"[DONE]" not in events
    last = json.loads(events[-1])
    assert set(last) == {"error"}
    assert last["error"]["code"] == code
    return dict(last["error"])


# -- failover before the first byte -------------------------------------------------------------


def test_a_first_token_slower_than_first_token_timeout_is_served_by_the_fallback(
    make_gateway: MakeGateway, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(make_gateway(routing={"first_token_timeout": 1}), fake, fake2)
    fake.enqueue(Reply.ok(content="late", first_chunk_delay_s=5))

    started = time.monotonic()
    text, raw = stream_text(pair)
    assert text == "Hello!"
    assert raw.headers["x-gateway-backend"] == "fallback"
    assert raw.headers["x-gateway-attempts"] == "2"
    assert 1.0 <= time.monotonic() - started < 3.0
    assert fake.wait_for_disconnect(timeout=2)  # the slow stream was closed, not left running
    chain = pair.logged(raw.headers["x-request-id"])["attempt_chain"]
    assert [(a["backend"], a["kind"]) for a in chain] == [("primary", "timeout"), ("fallback", "ok")]


def test_a_stream_whose_first_event_is_an_error_is_served_by_the_fallback(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.enqueue(Reply.ok(first_event_error={"message": "The server is overloaded", "type": "server_error"}))

    text, raw = stream_text(pair)
    assert text == "Hello!"
    assert raw.headers["x-gateway-backend"] == "fallback"
    assert (fake.post_hits, fake2.post_hits) == (1, 1)


def test_a_rate_limit_error_as_first_event_cools_the_backend_down(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.enqueue(Reply.ok(first_event_error={"message": "Rate limit reached", "type": "requests", "code": 429}))

    text, raw = stream_text(pair)
    assert text == "Hello!"
    assert raw.headers["x-gateway-backend"] == "fallback"
    assert pair.status()["primary"]["state"] == "cooling"


def test_a_request_error_as_first_event_is_the_clients_400_and_not_the_backends_fault(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)  # both pools serve the same upstream model
    too_long = {
        "message": "This model's maximum context length is 128000 tokens",
        "type": "invalid_request_error",
        "code": "context_length_exceeded",
    }
    bad_value = {"message": "Invalid 'temperature'", "type": "invalid_request_error", "param": "temperature"}
    fake.enqueue(*(Reply.ok(first_event_error=too_long) for _ in range(3)), Reply.ok(first_event_error=bad_value))

    for _ in range(3):  # as many as would open a circuit if they counted as failures
        with pytest.raises(openai.BadRequestError) as caught:
            stream_text(pair)
        assert caught.value.code == "context_length_exceeded"  # the same model elsewhere would refuse it too
    with pytest.raises(openai.BadRequestError) as caught:
        stream_text(pair)
    assert "temperature" in caught.value.message  # rule 6: no retry, no failover
    assert (fake.post_hits, fake2.post_hits) == (4, 0)
    assert pair.status()["primary"]["state"] == "ok"
    assert pair.backend_of() == "primary"


# -- after the first byte: no failover, explicit endings ----------------------------------------


def test_a_cut_stream_ends_with_an_error_event_and_no_done(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.enqueue(Reply.ok(content="abcdefgh", chunks=4, cut_after=2))

    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in pair.client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "abcd"  # the two chunks that came, then the error
    assert "cut" in caught.value.message

    fake.enqueue(Reply.ok(content="abcdefgh", chunks=4, cut_after=2))
    response, events = raw_events(pair)
    assert response.status_code == 200
    assert len(events) == 3
    assert_ends_with_error(events, "stream_cut")
    assert fake2.post_hits == 0  # once the first byte went out there is no failover

    entry = pair.logged(response.headers["x-request-id"])
    assert entry["error"] is not None and "cut" in entry["error"]


def test_a_backend_that_cuts_its_streams_counts_errors_and_opens_its_circuit(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)  # circuit_failures: 3
    fake.enqueue(*(Reply.ok(content="abcdefgh", chunks=4, cut_after=2) for _ in range(3)))
    ids = []
    for _ in range(3):
        response, events = raw_events(pair)
        assert_ends_with_error(events, "stream_cut")
        ids.append(response.headers["x-request-id"])

    assert pair.status()["primary"]["state"] == "circuit_open"
    text, raw = stream_text(pair)
    assert (text, raw.headers["x-gateway-backend"]) == ("Hello!", "fallback")
    chain = pair.logged(ids[-1])["attempt_chain"]
    assert [(a["backend"], a["kind"]) for a in chain] == [("primary", "connect")]
    primary = pair.hourly()[("primary", MODEL)]
    assert (primary["requests"], primary["attempts"], primary["errors"], primary["errors_connect"]) == (3, 3, 3, 3)


def test_a_stream_stalled_past_the_idle_timeout_ends_with_an_error_event(
    make_gateway: MakeGateway, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(make_gateway(routing={"stream_idle_timeout": 1}), fake, fake2)
    fake.enqueue(Reply.ok(content="Hello there, friend", chunks=4, stall_after=2))

    started = time.monotonic()
    response, events = raw_events(pair)
    assert 1.0 <= time.monotonic() - started < 3.0
    assert len(events) == 3
    error = assert_ends_with_error(events, "stream_stalled")
    assert "stream_idle_timeout" in error["message"]
    assert fake.wait_for_disconnect(timeout=2)  # the stalled upstream was closed
    assert fake2.post_hits == 0
    chain = pair.logged(response.headers["x-request-id"])["attempt_chain"]
    assert [(a["backend"], a["kind"]) for a in chain] == [("primary", "timeout")]  # an error of the backend


def test_a_slow_but_steady_stream_is_not_cut_by_the_idle_timeout(
    make_gateway: MakeGateway, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    # The idle timeout measures silence between events, not the length of the stream.
    pair = two_pools(make_gateway(routing={"stream_idle_timeout": 0.8}), fake, fake2)
    fake.enqueue(Reply.ok(content="abc", chunks=3, chunk_delay_s=0.3))  # 5 gaps: 1.5 s in all

    text, raw = stream_text(pair)
    assert text == "abc"
    assert raw.headers["x-gateway-backend"] == "primary"


def test_a_malformed_event_is_dropped_and_not_forwarded(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.enqueue(Reply.ok(content="Hello!", garbage_event_at=2))

    text, _ = stream_text(pair)
    assert text == "Hello!"  # the openai client would fail on an invalid JSON event

    fake.enqueue(Reply.ok(content="Hello!", garbage_event_at=2))
    _, events = raw_events(pair)
    assert b"{not json" not in b"".join(events)
    assert events[-1] == b"[DONE]"
    assert all(json.loads(event) for event in events[:-1])
    # ...and counted where an operator can see it.
    counted = 'gateway_stream_invalid_events_total{backend="primary"} 2.0'
    poll(lambda: counted in gateway.admin("GET", "/metrics").text, 2)


def test_a_stream_without_done_is_finalised_at_once(
    make_gateway: MakeGateway, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(make_gateway(routing={"stream_idle_timeout": 5}), fake, fake2)
    fake.enqueue(Reply.ok(content="Hello!", done=False))

    started = time.monotonic()
    response, events = raw_events(pair)
    assert time.monotonic() - started < 2.0
    assert events[-1] == b"[DONE]"
    assert all(b'"error"' not in event for event in events)
    assert pair.logged(response.headers["x-request-id"])["error"] is None

    fake.enqueue(Reply.ok(content="Hello!", done=False))
    text, _ = stream_text(pair)
    assert text == "Hello!"


def test_usage_is_asked_for_and_the_usage_chunk_is_only_forwarded_when_the_client_asked(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.enqueue(Reply.ok(prompt_tokens=12, completion_tokens=4))

    response, events = raw_events(pair)
    assert fake.requests[-1].json["stream_options"] == {"include_usage": True}
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["choices"] for chunk in chunks)  # the usage-only chunk was stripped
    entry = pair.logged(response.headers["x-request-id"])
    assert (entry["prompt_tokens"], entry["completion_tokens"]) == (12, 4)

    fake.enqueue(Reply.ok(prompt_tokens=12, completion_tokens=4))
    _, events = raw_events(pair, stream_options={"include_usage": True})
    assert json.loads(events[-2])["usage"]["completion_tokens"] == 4


# -- the client goes away -----------------------------------------------------------------------


def test_a_client_that_disconnects_closes_the_upstream_and_its_partial_usage_is_recorded(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    # Running usage on every chunk (as vLLM sends it): what was used so far is known.
    fake.enqueue(
        Reply.ok(content="abcdefghij", chunks=10, completion_tokens=10, chunk_delay_s=0.2, cumulative_usage=True)
    )

    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    with httpx.Client(timeout=10) as client:
        with client.stream(
            "POST", gateway.url + "/v1/chat/completions", headers={"authorization": f"Bearer {pair.key}"}, json=body
        ) as response:
            request_id = response.headers["x-request-id"]
            seen = 0
            for line in response.iter_lines():
                seen += line.startswith("data: ")
                if seen == 3:
                    break
        left_at = time.monotonic()
    assert fake.wait_for_disconnect(timeout=1.0)  # the upstream sees the close within a second
    assert time.monotonic() - left_at < 1.0

    entry = pair.logged(request_id)
    assert entry["error"] == "client disconnected"
    assert entry["prompt_tokens"] == 10
    assert 3 <= entry["completion_tokens"] < 10
    poll(lambda: pair.status()["primary"]["in_flight"] == 0, timeout_s=2)


def test_a_client_that_leaves_before_the_final_usage_is_billed_an_estimate(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    price = {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}
    assert gateway.admin("PUT", f"/api/pricing/{MODEL}", json=price).status_code == 200
    # As OpenAI sends it: usage only in the last chunk, which this client never waits for.
    fake.enqueue(Reply.ok(content="abcdefghij", chunks=10, completion_tokens=10, chunk_delay_s=0.2))

    body = json.dumps({"model": MODEL, "messages": MESSAGES, "stream": True}).encode()
    headers = {"authorization": f"Bearer {pair.key}", "content-type": "application/json"}
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", gateway.url + "/v1/chat/completions", headers=headers, content=body) as response:
            request_id = response.headers["x-request-id"]
            seen = 0
            for line in response.iter_lines():
                seen += line.startswith("data: ")
                if seen == 3:
                    break
    assert fake.wait_for_disconnect(timeout=1.0)

    entry = pair.logged(request_id)
    assert entry["error"] == "client disconnected; usage estimated"
    assert entry["prompt_tokens"] == -(-len(body) // 4)  # a token per 4 bytes of the request, as admission counts
    assert 3 <= entry["completion_tokens"] < 10  # a token per chunk relayed
    assert entry["cost_usd"] > 0  # billed, so leaving early is no way around a budget


_UNFINISHED_CHAT = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}\n\n'
)
_UNFINISHED_RESPONSE = (
    b"event: response.output_text.delta\n"
    b'data: {"type":"response.output_text.delta","item_id":"m1","output_index":0,"content_index":0,'
    b'"delta":"Hel","sequence_number":3}\n\n'
)


def test_a_stream_that_ends_cleanly_before_its_finish_ends_with_an_error_event(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    # A whole, well-framed body whose answer stops midway: no finish_reason, no [DONE].
    pair = two_pools(gateway, fake, fake2)
    fake.enqueue(Reply.raw(200, _UNFINISHED_CHAT, headers={"content-type": "text/event-stream"}))

    _, events = raw_events(pair)
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "Hel"
    assert_ends_with_error(events, "stream_incomplete")


def _responses_error_event(code: str) -> bytes:
    data = {"type": "error", "code": code, "message": f"upstream says {code}", "param": None, "sequence_number": 0}
    return b"event: error\ndata: " + json.dumps(data).encode() + b"\n\n"


def test_a_responses_stream_whose_first_event_is_an_error_fails_over(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    sse = {"content-type": "text/event-stream"}
    fake.enqueue(
        Reply.raw(200, _responses_error_event("server_error"), headers=sse),
        Reply.raw(200, _responses_error_event("rate_limit_exceeded"), headers=sse),
    )
    for _ in range(2):
        raw = pair.client.responses.with_raw_response.create(model=MODEL, input="hi", stream=True)
        assert raw.headers["x-gateway-backend"] == "fallback"
        kinds = [event.type for event in raw.parse()]
        assert kinds[-1] == "response.completed"
    assert (fake.post_hits, fake2.post_hits) == (2, 2)
    assert pair.status()["primary"]["state"] == "cooling"  # rate_limit_exceeded counts as a 429


def test_a_responses_stream_without_its_terminal_event_ends_with_an_error_event(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.enqueue(Reply.raw(200, _UNFINISHED_RESPONSE, headers={"content-type": "text/event-stream"}))

    with httpx.stream(
        "POST",
        gateway.url + "/v1/responses",
        headers={"authorization": f"Bearer {pair.key}"},
        json={"model": MODEL, "input": "hi", "stream": True},
        timeout=10,
    ) as response:
        body = response.read()
    last = body.strip().split(b"\n\n")[-1]
    assert last.startswith(b"data: ")
    assert json.loads(last.removeprefix(b"data: "))["error"]["code"] == "stream_incomplete"

    fake.enqueue(Reply.ok(content="Hello!"))  # a complete one passes untouched, without [DONE]
    with pair.client.responses.create(model=MODEL, input="hi", stream=True) as stream:
        kinds = [event.type for event in stream]
    assert kinds[-1] == "response.completed"
