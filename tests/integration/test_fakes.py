"""The fake upstream, exercised over real TCP by httpx and the openai client."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.fakes import FakeUpstream, Reply, closed_port, embedding_vector


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream().start()
    try:
        yield upstream
    finally:
        upstream.stop()


@pytest.fixture
def client(fake: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.url, api_key="x", max_retries=0, timeout=2.0) as sdk:
        yield sdk


@pytest.fixture
def http(fake: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, timeout=2.0) as session:
        yield session


def sse_data(body: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    return [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: ")]


def test_chat_completion_echoes_model_and_reports_usage(fake: FakeUpstream, client: openai.OpenAI) -> None:
    fake.enqueue(Reply.ok(content="Bonjour", prompt_tokens=12, completion_tokens=3, cached_tokens=4))

    completion = client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}])

    assert completion.choices[0].message.content == "Bonjour"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-x"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        12,
        3,
        15,
    )
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 4


def test_streamed_chat_with_include_usage_parses_in_openai(fake: FakeUpstream, client: openai.OpenAI) -> None:
    fake.enqueue(Reply.ok(content="Hello world", completion_tokens=7, chunks=4, model="upstream-model"))

    stream = client.chat.completions.create(
        model="gpt-x",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(c.choices[0].delta.content or "" for c in content_chunks) == "Hello world"
    assert len(content_chunks) == 4
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (10, 7)
    assert {c.model for c in chunks} == {"upstream-model"}


def test_responses_api_non_stream(fake: FakeUpstream, client: openai.OpenAI) -> None:
    fake.enqueue(Reply.ok(content="Answer", prompt_tokens=20, completion_tokens=6, reasoning_tokens=2))

    response = client.responses.create(model="gpt-r", input="question")

    assert response.output_text == "Answer"
    assert response.status == "completed"
    assert response.model == "gpt-r"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (20, 6, 26)
    assert response.usage.output_tokens_details.reasoning_tokens == 2
    assert fake.requests[-1].path == "/v1/responses"


def test_responses_api_stream_through_openai_helper(fake: FakeUpstream, client: openai.OpenAI) -> None:
    fake.enqueue(Reply.ok(content="streamed text", completion_tokens=9, chunks=3))

    with client.responses.stream(model="gpt-r", input="question") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()

    assert deltas == ["stre", "amed ", "text"]
    assert final.output_text == "streamed text"
    assert final.usage is not None
    assert final.usage.output_tokens == 9
    assert fake.requests[-1].json["stream"] is True


def test_embeddings_one_vector_per_input(fake: FakeUpstream, client: openai.OpenAI, http: httpx.Client) -> None:
    fake.enqueue(Reply.ok(prompt_tokens=4), Reply.ok(prompt_tokens=1))

    via_sdk = client.embeddings.create(model="emb", input=["a", "b"])  # the SDK asks for base64
    via_http = http.post("/embeddings", json={"model": "emb", "input": "c", "encoding_format": "float"}).json()

    assert [item.embedding for item in via_sdk.data] == [embedding_vector(0), embedding_vector(1)]
    assert via_sdk.usage.prompt_tokens == 4
    assert via_http["data"] == [{"object": "embedding", "index": 0, "embedding": embedding_vector(0)}]
    assert via_http["usage"] == {"prompt_tokens": 1, "total_tokens": 1}


def test_error_reply_carries_status_headers_and_openai_body(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.enqueue(Reply.error(429, "slow down", code="rate_limit_exceeded", headers={"Retry-After": "2"}))

    response = http.post("/chat/completions", json={"model": "m", "messages": []})

    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.json() == {
        "error": {"message": "slow down", "type": "requests", "param": None, "code": "rate_limit_exceeded"}
    }


def test_queue_is_consumed_in_order_then_default_answers(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.default = Reply.ok(content="default")
    fake.enqueue(Reply.error(500), Reply.ok(content="second"))

    statuses = [http.post("/chat/completions", json={"model": "m"}) for _ in range(3)]

    assert [r.status_code for r in statuses] == [500, 200, 200]
    assert [r.json()["choices"][0]["message"]["content"] for r in statuses[1:]] == ["second", "default"]
    assert fake.queued == 0
    assert fake.post_hits == 3


def test_connections_are_kept_alive(fake: FakeUpstream, http: httpx.Client) -> None:
    for _ in range(3):
        http.post("/completions", json={"model": "m", "prompt": "p"}).raise_for_status()

    assert {request.connection for request in fake.requests} == {1}


def test_reset_is_a_connection_error(fake: FakeUpstream, client: openai.OpenAI) -> None:
    fake.enqueue(Reply.reset())

    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])

    assert fake.post_hits == 1


def test_hang_times_out_and_counts_the_disconnect(fake: FakeUpstream) -> None:
    fake.enqueue(Reply.hang())

    with httpx.Client(base_url=fake.url, timeout=0.2) as http, pytest.raises(httpx.ReadTimeout):
        http.post("/chat/completions", json={"model": "m"})

    assert fake.wait_for_disconnect(timeout=2.0)
    assert fake.disconnects == 1


def test_cut_after_is_an_incomplete_stream_in_openai(fake: FakeUpstream, client: openai.OpenAI) -> None:
    fake.enqueue(Reply.ok(content="abcdef", chunks=3, cut_after=2))
    received = []

    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)

    assert received == ["ab", "cd"]


def test_stall_holds_the_stream_until_the_client_leaves(fake: FakeUpstream) -> None:
    fake.enqueue(Reply.ok(stall_after=1))

    with httpx.Client(base_url=fake.url, timeout=0.2) as http:
        with http.stream("POST", "/chat/completions", json={"model": "m", "stream": True}) as response:
            lines = response.iter_lines()
            assert json.loads(next(lines).removeprefix("data: "))["choices"][0]["delta"]["content"] == "He"
            with pytest.raises(httpx.ReadTimeout):
                list(lines)

    assert fake.wait_for_disconnect(timeout=2.0)


def test_stream_shaping_garbage_no_done_and_cumulative_usage(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.enqueue(Reply.ok("abcd", completion_tokens=4, chunks=2, garbage_event_at=1, done=False, cumulative_usage=True))

    response = http.post("/chat/completions", json={"model": "m", "stream": True})

    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["transfer-encoding"] == "chunked"
    events = sse_data(response.text)
    assert events[1] == "{not json"
    assert "[DONE]" not in events
    usage_progress = [json.loads(event)["usage"]["completion_tokens"] for event in events if event != "{not json"]
    assert usage_progress == [2, 4, 4]


def test_first_event_error_is_the_whole_stream(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.enqueue(Reply.ok(first_event_error={"message": "overloaded", "type": "server_error"}))

    response = http.post("/chat/completions", json={"model": "m", "stream": True})

    assert response.status_code == 200
    assert sse_data(response.text) == ['{"error":{"message":"overloaded","type":"server_error"}}']


def test_records_method_path_headers_and_body(fake: FakeUpstream, http: httpx.Client) -> None:
    http.post("/chat/completions", json={"model": "m", "n": 1}, headers={"X-Trace": "abc", "Authorization": "Bearer k"})

    [recorded] = fake.requests
    assert (recorded.method, recorded.path) == ("POST", "/v1/chat/completions")
    assert recorded.headers["x-trace"] == "abc"
    assert recorded.headers["authorization"] == "Bearer k"
    assert recorded.json == {"model": "m", "n": 1}
    assert json.loads(recorded.body) == {"model": "m", "n": 1}
    fake.reset_records()
    assert (fake.requests, fake.hits, fake.post_hits) == ([], 0, 0)


def test_models_listing_and_its_override(fake: FakeUpstream, client: openai.OpenAI) -> None:
    fake.models = ["a", "b"]
    assert [model.id for model in client.models.list()] == ["a", "b"]

    fake.models_reply = Reply.error(503)
    with pytest.raises(openai.InternalServerError):
        client.models.list()
    assert (fake.hits, fake.post_hits) == (2, 0)


def test_raw_reply_is_sent_as_given(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.enqueue(Reply.raw(502, b"<html>bad gateway</html>", {"content-type": "text/html"}))

    response = http.post("/chat/completions", json={})

    assert (response.status_code, response.headers["content-type"], response.text) == (
        502,
        "text/html",
        "<html>bad gateway</html>",
    )


def test_closed_port_refuses_connections() -> None:
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", closed_port()))
