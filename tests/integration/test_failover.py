"""Failover between a primary and a fallback backend (DESIGN section 4, rules 3-9 and 11).

Real gateway under uvicorn, real fake upstreams over TCP, the real `openai` client with
max_retries=0. Time-dependent checks use upstream receive times (`Recorded.at`) and
deadlines rather than fixed sleeps, so they hold on a loaded machine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import FakeUpstream, Reply, closed_port
from tests.servers import GatewayServer
from tests.two_pools import MESSAGES, MODEL, TwoPools, parse_iso, poll, two_pools

MakeGateway = Callable[..., GatewayServer]


def chain_of(pair: TwoPools, response: Any) -> list[tuple[str, int, str]]:
    entry = pair.logged(response.headers["x-request-id"])
    return [(a["backend"], a["status"], a["kind"]) for a in entry["attempt_chain"]]


# -- 429 and cooldowns (rule 4) -----------------------------------------------------------------


def test_429_with_retry_after_is_answered_by_fallback_and_primary_rests_for_it(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.enqueue(Reply.error(429, "Rate limit reached", headers={"retry-after": "2"}))

    before = time.time()
    first = pair.ask()
    after = time.time()
    assert first.headers["x-gateway-backend"] == "fallback"
    assert first.headers["x-gateway-attempts"] == "2"
    assert first.parse().choices[0].message.content == "Hello!"
    limited_at = fake.requests[0].at
    status = pair.status()["primary"]
    assert status["state"] == "cooling"
    assert status["consecutive_429"] == 1
    assert before + 2 - 0.01 <= parse_iso(status["cooldown_until"]) <= after + 2 + 0.01

    # While the cooldown lasts, the primary receives nothing.
    served_by_fallback = 0
    while time.monotonic() < limited_at + 1.6:
        assert pair.backend_of() == "fallback"
        served_by_fallback += 1
        time.sleep(0.05)
    assert served_by_fallback >= 2
    assert fake.post_hits == 1

    # Then it is used again.
    poll(lambda: pair.backend_of() == "primary", timeout_s=limited_at + 6 - time.monotonic(), interval_s=0.05)
    assert fake.post_hits == 2
    assert fake.requests[1].at - limited_at >= 2.0
    assert pair.status()["primary"]["state"] == "ok"
    assert pair.status()["primary"]["consecutive_429"] == 0  # a success resets the back-off


def test_a_clients_400_between_two_429s_does_not_reset_the_back_off(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.enqueue(Reply.error(429, "Rate limit reached", headers={"retry-after": "1"}))
    assert pair.backend_of() == "fallback"
    poll(lambda: pair.status()["primary"]["state"] == "ok", timeout_s=3)
    fake.enqueue(Reply.error(400, "Invalid 'temperature'", type="invalid_request_error"))
    with pytest.raises(openai.BadRequestError):
        pair.ask()  # the client's fault: answered as it is (rule 6)
    assert pair.status()["primary"]["consecutive_429"] == 1  # not a success: the back-off stays
    fake.enqueue(Reply.error(429, "Rate limit reached", headers={"retry-after": "1"}))
    assert pair.backend_of() == "fallback"
    assert pair.status()["primary"]["consecutive_429"] == 2


def test_an_upstream_redirect_is_never_followed(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    # Only the operator decides where a backend points: a 3xx is a misconfigured backend, not a new address.
    pair = two_pools(gateway, fake, fake2, fallback_models=["other-model"])  # no fallback for MODEL
    fake.enqueue(Reply.raw(307, headers={"location": fake2.url + "/chat/completions"}))

    with pytest.raises(openai.APIStatusError) as caught:
        pair.ask()
    assert caught.value.status_code == 502
    assert fake2.post_hits == 0  # the redirect's target never saw the request (nor its upstream key)
    chain = [
        (a["backend"], a["status"], a["kind"])
        for a in pair.logged(caught.value.response.headers["x-request-id"])["attempt_chain"]
    ]
    assert chain == [("primary", 307, "5xx")]


def test_persistent_429_without_hint_backs_off_exponentially_and_spares_the_primary(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.default = Reply.error(429, "Rate limit reached")  # no Retry-After, no reset headers

    served = 0

    def primary_hit_three_times() -> bool:
        nonlocal served
        assert pair.backend_of() == "fallback"
        served += 1
        return fake.post_hits >= 3

    # Back-off is 1 s, then 2 s (each stretched by at most 25% jitter): three hits take 3-4 s.
    poll(primary_hit_three_times, timeout_s=8, interval_s=0.02)
    hits = [r.at for r in fake.requests]
    first_gap, second_gap = hits[1] - hits[0], hits[2] - hits[1]
    assert 1.0 <= first_gap < 2.0
    assert second_gap >= 2.0
    assert second_gap > first_gap
    assert served > 3  # the clients kept being answered meanwhile, by the fallback
    assert fake.post_hits == 3
    status = pair.status()["primary"]
    assert status["state"] == "cooling"
    assert status["consecutive_429"] == 3
    assert parse_iso(status["cooldown_until"]) - time.time() > 2.5  # the third wait is about 4 s


def test_every_backend_cooling_answers_429_with_retry_after(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.enqueue(Reply.error(429, headers={"retry-after": "30"}))
    fake2.enqueue(Reply.error(429, headers={"retry-after": "20"}))

    with pytest.raises(openai.RateLimitError) as first:
        pair.ask()
    # The first backend frees up in 20 s; the queue wait (2 s) is too short for it.
    assert 19 <= int(first.value.response.headers["retry-after"]) <= 20
    assert first.value.code == "rate_limit_exceeded"
    assert first.value.response.headers["x-gateway-attempts"] == "2"
    assert first.value.response.headers["x-gateway-backend"] == "fallback"  # the last one tried

    with pytest.raises(openai.RateLimitError) as second:
        pair.ask()
    assert 18 <= int(second.value.response.headers["retry-after"]) <= 20
    assert (fake.post_hits, fake2.post_hits) == (1, 1)  # both skipped: no upstream attempt
    status = pair.status()
    assert status["primary"]["state"] == status["fallback"]["state"] == "cooling"


def test_short_cooldowns_everywhere_are_waited_out_within_the_queue_time(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.enqueue(Reply.error(429, headers={"retry-after": "1"}))
    fake2.enqueue(Reply.error(429, headers={"retry-after": "1"}))

    started = time.monotonic()
    response = pair.ask()
    assert 1.0 <= time.monotonic() - started < 2.5
    assert response.headers["x-gateway-backend"] == "primary"
    assert response.headers["x-gateway-attempts"] == "3"


# -- transient failures (rule 5) ----------------------------------------------------------------


def test_500_once_is_retried_once_on_the_same_backend(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.enqueue(Reply.error(500, "boom"))

    response = pair.ask()
    assert response.headers["x-gateway-backend"] == "primary"
    assert response.headers["x-gateway-attempts"] == "2"
    assert (fake.post_hits, fake2.post_hits) == (2, 0)
    assert chain_of(pair, response) == [("primary", 500, "5xx"), ("primary", 200, "ok")]


def test_500_twice_moves_on_after_one_retry(gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.enqueue(Reply.error(500), Reply.error(500))

    response = pair.ask()
    assert response.headers["x-gateway-backend"] == "fallback"
    assert response.headers["x-gateway-attempts"] == "3"
    assert (fake.post_hits, fake2.post_hits) == (2, 1)


def test_503_opens_the_circuit_and_the_recovered_primary_is_probed_and_used_again(
    make_gateway: MakeGateway, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    gw = make_gateway(routing={"circuit_failures": 2, "circuit_max_open": 1})
    pair = two_pools(gw, fake, fake2)
    fake.default = Reply.error(503, "overloaded")

    for _ in range(2):
        response = pair.ask()
        assert response.headers["x-gateway-backend"] == "fallback"
        assert response.headers["x-gateway-attempts"] == "2"  # a 503 is not retried on itself
    assert fake.post_hits == 2
    assert pair.status()["primary"]["state"] == "circuit_open"

    # While the circuit is open the primary only gets one probe per open period (1 s).
    window_end = time.monotonic() + 1.5
    served = 0
    while time.monotonic() < window_end:
        response = pair.ask()
        assert response.headers["x-gateway-backend"] == "fallback"
        served += 1
        time.sleep(0.02)
    assert served >= 2
    assert fake.post_hits <= 2 + 2

    fake.default = Reply.ok()
    recovered_at = time.monotonic()
    poll(lambda: pair.backend_of() == "primary", timeout_s=4)
    assert time.monotonic() - recovered_at < 3.0
    assert pair.status()["primary"]["state"] == "ok"
    assert pair.status()["primary"]["circuit"] == "closed"


def test_backends_with_open_circuits_cost_clients_nothing(
    make_gateway: MakeGateway, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(make_gateway(routing={"circuit_failures": 2}), fake, fake2)
    fake.default = fake2.default = Reply.error(500, "boom")
    with pytest.raises(openai.InternalServerError):
        pair.ask()
    assert (fake.post_hits, fake2.post_hits) == (2, 2)
    assert {row["state"] for row in pair.status().values()} == {"circuit_open"}

    # Both circuits are open for 2 s: the answer comes at once, without waiting for a probe.
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        pair.ask()
    assert time.monotonic() - started < 1.5
    assert caught.value.status_code == 503
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert (fake.post_hits, fake2.post_hits) == (2, 2)


def test_a_failure_that_opens_the_circuit_is_not_retried_on_the_same_backend(
    make_gateway: MakeGateway, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(make_gateway(routing={"circuit_failures": 1}), fake, fake2)
    fake.enqueue(Reply.error(500, "boom"))

    response = pair.ask()
    assert response.headers["x-gateway-backend"] == "fallback"
    assert (fake.post_hits, fake2.post_hits) == (1, 1)


def test_silent_primary_fails_over_after_the_header_timeout_and_is_not_retried(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2, timeout=1)
    fake.enqueue(Reply.hang())

    started = time.monotonic()
    response = pair.ask()
    elapsed = time.monotonic() - started
    assert response.headers["x-gateway-backend"] == "fallback"
    assert 1.0 <= elapsed < 3.0
    assert fake.post_hits == 1  # a silent backend is not asked again within the request
    assert fake.wait_for_disconnect(timeout=2)  # and its connection was given up
    assert chain_of(pair, response) == [("primary", 0, "timeout"), ("fallback", 200, "ok")]


def test_reset_before_headers_is_retried_once_on_the_same_backend(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.enqueue(Reply.reset())

    response = pair.ask()
    assert response.headers["x-gateway-backend"] == "primary"
    assert response.headers["x-gateway-attempts"] == "2"
    assert chain_of(pair, response) == [("primary", 0, "connect"), ("primary", 200, "ok")]


def test_resets_that_persist_fail_over(gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.default = Reply.reset()

    response = pair.ask()
    assert response.headers["x-gateway-backend"] == "fallback"
    assert (fake.post_hits, fake2.post_hits) == (2, 1)


def test_connection_refused_fails_over(gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream) -> None:
    pair = two_pools(gateway, fake, fake2, primary_url=f"http://127.0.0.1:{closed_port()}/v1")

    response = pair.ask()
    assert response.headers["x-gateway-backend"] == "fallback"
    assert chain_of(pair, response) == [("primary", 0, "connect"), ("fallback", 200, "ok")]


# -- 4xx (rule 6) -------------------------------------------------------------------------------


def test_400_is_returned_unchanged_after_one_attempt_without_cooldown(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    error = {"message": "Invalid value for 'temperature'", "type": "invalid_request_error", "param": "temperature"}
    upstream_body = (
        b'{"error": {"message": "Invalid value for \'temperature\'", "type": "invalid_request_error", '
        b'"param": "temperature", "code": "invalid_value"}}'
    )
    fake.enqueue(Reply.error(400, body=upstream_body))

    with pytest.raises(openai.BadRequestError) as caught:
        pair.ask(temperature=1.0)
    assert caught.value.status_code == 400
    assert caught.value.body == {**error, "code": "invalid_value"}
    assert caught.value.response.headers["x-gateway-attempts"] == "1"
    assert caught.value.response.headers["x-gateway-backend"] == "primary"

    fake.enqueue(Reply.error(400, body=upstream_body))
    raw = httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {pair.key}"},
        json={"model": MODEL, "messages": MESSAGES},
        timeout=10,
    )
    assert raw.status_code == 400
    assert raw.content == upstream_body  # byte for byte

    assert (fake.post_hits, fake2.post_hits) == (2, 0)
    primary = pair.status()["primary"]
    assert (primary["state"], primary["cooldown_until"], primary["consecutive_429"]) == ("ok", None, 0)
    assert pair.backend_of() == "primary"


def test_401_fails_over_and_flags_the_backend_credential_rejected(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.default = Reply.error(401, "Incorrect API key provided", code="invalid_api_key")

    response = pair.ask()
    assert response.headers["x-gateway-backend"] == "fallback"
    status = pair.status()["primary"]
    assert status["state"] == "credential_rejected"
    assert parse_iso(status["cooldown_until"]) - time.time() > 60  # long, not seconds
    assert pair.backend_of() == "fallback"
    assert fake.post_hits == 1
    assert chain_of(pair, response) == [("primary", 401, "auth"), ("fallback", 200, "ok")]


def test_insufficient_quota_fails_over_and_flags_quota_exhausted_for_long(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.default = Reply.error(
        429, "You exceeded your current quota", type="insufficient_quota", code="insufficient_quota"
    )

    response = pair.ask()
    assert response.headers["x-gateway-backend"] == "fallback"
    status = pair.status()["primary"]
    assert status["state"] == "quota_exhausted"
    assert parse_iso(status["cooldown_until"]) - time.time() > 30 * 60
    assert pair.backend_of() == "fallback"
    assert fake.post_hits == 1


def test_context_length_exceeded_moves_to_a_backend_with_another_upstream_model(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(
        gateway,
        fake,
        fake2,
        models=[{"name": "smart", "upstream": "gpt-4o-mini"}],
        fallback_models=[{"name": "smart", "upstream": "gpt-4o"}],
    )
    fake.enqueue(
        Reply.error(400, "This model's maximum context length is 128000 tokens", code="context_length_exceeded")
    )

    response = pair.ask(model="smart")
    assert response.headers["x-gateway-backend"] == "fallback"
    assert response.parse().model == "gpt-4o"
    assert fake2.requests[0].json["model"] == "gpt-4o"
    assert pair.status()["primary"]["state"] == "ok"  # the model's answer, not the backend's fault


def test_context_length_exceeded_is_returned_when_the_fallback_has_the_same_upstream_model(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(
        gateway,
        fake,
        fake2,
        models=[{"name": "smart", "upstream": "gpt-4o-mini"}],
        fallback_models=[{"name": "smart", "upstream": "gpt-4o-mini"}],
    )
    fake.enqueue(
        Reply.error(400, "This model's maximum context length is 128000 tokens", code="context_length_exceeded")
    )

    with pytest.raises(openai.BadRequestError) as caught:
        pair.ask(model="smart")
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.response.headers["x-gateway-attempts"] == "1"
    assert (fake.post_hits, fake2.post_hits) == (1, 0)


# -- limits (rules 1 and 3) ---------------------------------------------------------------------


def test_a_burst_beyond_a_backend_rpm_goes_to_the_next_backend(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2, rpm=3)

    assert [pair.backend_of() for _ in range(5)] == ["primary"] * 3 + ["fallback"] * 2
    assert (fake.post_hits, fake2.post_hits) == (3, 2)
    assert pair.status()["primary"]["tokens_left"] == 0
    assert pair.hourly()[("primary", MODEL)]["skips_bucket"] == 2


def test_client_key_rpm_answers_429_rate_limit_exceeded(gateway: GatewayServer, fake: FakeUpstream) -> None:
    gateway.add_backend("main", fake.url, [MODEL])
    client = gateway.client(gateway.new_key("limited", rpm=2))
    for _ in range(2):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] in ("29", "30")  # one token per 30 s
    assert fake.post_hits == 2


def test_client_key_budget_answers_429_insufficient_quota(gateway: GatewayServer, fake: FakeUpstream) -> None:
    gateway.add_backend("main", fake.url, [MODEL])
    price = {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}  # 15 tokens cost $0.015
    assert gateway.admin("PUT", f"/api/pricing/{MODEL}", json=price).status_code == 200
    client = gateway.client(gateway.new_key("frugal", budget_usd=0.01))
    client.chat.completions.create(model=MODEL, messages=MESSAGES)

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.code == "insufficient_quota"
    assert "$0.01" in caught.value.message
    assert fake.post_hits == 1
    headers = caught.value.response.headers
    # The budget starts again on the 1st (UTC): the SDK is told when, and not to retry meanwhile.
    assert 1 <= int(headers["retry-after"]) <= 31 * 86400
    assert headers["x-should-retry"] == "false"


# -- fallback_after (rule 8) --------------------------------------------------------------------


def test_fallback_after_waits_for_a_primary_that_frees_up_soon(
    make_gateway: MakeGateway, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(make_gateway(routing={"fallback_after": 3}), fake, fake2)
    fake.enqueue(Reply.error(429, headers={"retry-after": "1"}))

    started = time.monotonic()
    response = pair.ask()
    assert 1.0 <= time.monotonic() - started < 2.8
    assert response.headers["x-gateway-backend"] == "primary"
    assert response.headers["x-gateway-attempts"] == "2"
    assert fake2.post_hits == 0


def test_without_fallback_after_the_fallback_answers_at_once(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.enqueue(Reply.error(429, headers={"retry-after": "3"}))

    started = time.monotonic()
    assert pair.backend_of() == "fallback"
    assert time.monotonic() - started < 2.5  # waiting for the primary would take 3 s


# -- nothing left (rule 9) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "status"),
    [(Reply.error(500, "boom"), 502), (Reply.error(503, "overloaded"), 503), (Reply.reset(), 502)],
)
def test_failures_everywhere_answer_5xx_with_should_retry_false(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream, reply: Reply, status: int
) -> None:
    pair = two_pools(gateway, fake, fake2)
    fake.default = fake2.default = reply

    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {pair.key}"},
        json={"model": MODEL, "messages": MESSAGES},
        timeout=10,
    )
    assert response.status_code == status
    assert response.headers["x-should-retry"] == "false"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "fallback" in error["message"]  # the last upstream error is named
    assert fake.post_hits >= 1 and fake2.post_hits >= 1


def test_a_silent_only_backend_answers_504_with_should_retry_false(gateway: GatewayServer, fake: FakeUpstream) -> None:
    gateway.add_backend("slow", fake.url, [MODEL], timeout=1)
    client = gateway.client(gateway.new_key("tester"))
    fake.default = Reply.hang()

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.status_code == 504
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert fake.post_hits == 1


def test_a_slow_non_stream_answer_is_not_cut_by_the_stream_idle_timeout(
    make_gateway: MakeGateway, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    # stream_idle_timeout is about silence inside a stream; a non-stream answer may take
    # up to the backend's own `timeout` to arrive.
    pair = two_pools(make_gateway(routing={"stream_idle_timeout": 0.5}), fake, fake2, timeout=10)
    fake.enqueue(Reply.ok(delay_s=1.2))

    assert pair.backend_of() == "primary"
    assert fake.post_hits == 1


# -- accounting (rule 11) -----------------------------------------------------------------------


def test_failover_is_accounted_to_the_answering_backend_and_failed_attempts_are_not_billed(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(
        gateway,
        fake,
        fake2,
        models=[{"name": "smart", "upstream": "gpt-4o-mini"}],
        fallback_models=[{"name": "smart", "upstream": "gpt-4o"}],
    )
    for model in ("gpt-4o-mini", "gpt-4o"):
        price = {"input_per_mtok": 100.0, "output_per_mtok": 200.0}
        assert gateway.admin("PUT", f"/api/pricing/{model}", json=price).status_code == 200
    fake.enqueue(Reply.error(503, "overloaded"))
    fake2.enqueue(Reply.ok(prompt_tokens=20, completion_tokens=7))

    response = pair.ask(model="smart")
    assert response.headers["x-gateway-attempts"] == "2"
    assert response.headers["x-gateway-backend"] == "fallback"

    rows = pair.hourly()
    assert set(rows) == {("primary", "gpt-4o-mini"), ("fallback", "gpt-4o")}
    failed, served = rows[("primary", "gpt-4o-mini")], rows[("fallback", "gpt-4o")]
    assert (failed["attempts"], failed["errors"], failed["errors_5xx"]) == (1, 1, 1)
    assert (failed["requests"], failed["prompt_tokens"], failed["completion_tokens"], failed["cost_usd"]) == (
        0,
        0,
        0,
        0,
    )
    assert (served["requests"], served["attempts"], served["errors"], served["fallbacks"]) == (1, 1, 0, 1)
    assert (served["prompt_tokens"], served["completion_tokens"]) == (20, 7)
    assert served["cost_usd"] == pytest.approx((20 * 100 + 7 * 200) / 1e6)

    entry = pair.logged(response.headers["x-request-id"])
    assert (entry["requested_model"], entry["model"], entry["backend"], entry["fallback"]) == (
        "smart",
        "gpt-4o",
        "fallback",
        True,
    )
    assert entry["attempts"] == 2
    assert [(a["backend"], a["model"], a["status"], a["kind"]) for a in entry["attempt_chain"]] == [
        ("primary", "gpt-4o-mini", 503, "5xx"),
        ("fallback", "gpt-4o", 200, "ok"),
    ]
    assert all(a["ms"] >= 0 for a in entry["attempt_chain"])


# -- /api/status (DESIGN 2.5) -------------------------------------------------------------------


def test_status_shows_every_backend_with_its_live_state(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2, rpm=10)
    fake.enqueue(Reply.ok(delay_s=1.5))
    slow = threading.Thread(target=pair.ask)
    slow.start()
    try:
        in_flight = poll(lambda: pair.status()["primary"]["in_flight"], timeout_s=5)
    finally:
        slow.join(10)
    assert in_flight == 1

    status = pair.status()
    required = {"name", "pool", "enabled", "state", "cooldown_until", "consecutive_429", "tokens_left", "in_flight"}
    assert all(required <= set(row) for row in status.values())
    primary, fallback = status["primary"], status["fallback"]
    assert (primary["pool"], primary["enabled"], primary["state"], primary["cooldown_until"]) == (
        "primary",
        True,
        "ok",
        None,
    )
    assert (primary["tokens_left"], primary["in_flight"], primary["consecutive_429"]) == (9, 0, 0)
    assert (fallback["pool"], fallback["tokens_left"], fallback["in_flight"]) == ("fallback", None, 0)
