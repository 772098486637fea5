"""The TPM bucket: charged an estimate at admission, corrected from the usage the upstream reports."""

from __future__ import annotations

import openai
import pytest

from tests.fakes import FakeUpstream, Reply
from tests.servers import GatewayServer
from tests.two_pools import poll, two_pools


def test_an_over_estimate_is_given_back(gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream) -> None:
    pair = two_pools(gateway, fake, fake2, tpm=1000)
    fake.enqueue(Reply.ok(prompt_tokens=10, completion_tokens=5))
    # Admission charges about body/4 + max_tokens = 500+ tokens; the upstream reports 15.
    assert pair.backend_of(max_tokens=500) == "primary"
    left = poll(lambda: pair.status()["primary"]["tpm_tokens_left"] or None, 2)
    assert 980 <= left <= 1000  # 1000 - 15, plus a little refill; uncorrected it would be under 520


def test_an_under_estimate_becomes_debt_and_the_next_request_goes_elsewhere(
    gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    pair = two_pools(gateway, fake, fake2, tpm=1000)
    fake.enqueue(Reply.ok(prompt_tokens=10, completion_tokens=1490))
    assert pair.backend_of(max_tokens=5) == "primary"  # estimated at a few dozen tokens
    poll(lambda: pair.status()["primary"]["tpm_tokens_left"] < 0, 2)  # 1000 - 1500: in debt
    assert pair.backend_of(max_tokens=5) == "fallback"


def test_retry_after_says_when_the_bucket_holds_this_request(gateway: GatewayServer, fake: FakeUpstream) -> None:
    gateway.add_backend("main", fake.url, ["gpt-4o-mini"], tpm=1000)
    client = gateway.client(gateway.new_key("k"))
    ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 400}
    fake.enqueue(Reply.ok(prompt_tokens=10, completion_tokens=790))
    client.chat.completions.create(**ask)  # leaves about 200 tokens; refills at 1000 a minute
    poll(lambda: gateway.admin("GET", "/api/status").json()["data"][0]["tpm_tokens_left"] < 300, 2)

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(**ask)  # needs 400+: about 13 s away, past the queue wait
    # Not "1": a client that retries then would be refused again.
    assert 10 <= int(caught.value.response.headers["retry-after"]) <= 16
    assert fake.post_hits == 1
