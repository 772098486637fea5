"""The overall request deadline: silent backends cannot hold a client for max_attempts timeouts."""

from __future__ import annotations

import time

import openai
import pytest

from tests.fakes import FakeUpstream, Reply
from tests.servers import GatewayServer


def test_silent_backends_stop_at_the_request_deadline(make_gateway) -> None:
    gateway: GatewayServer = make_gateway(routing={"queue_timeout": 0, "max_attempts": 4})
    fakes = [FakeUpstream().start() for _ in range(3)]
    try:
        for i, fake in enumerate(fakes):
            fake.default = Reply.hang()
            gateway.add_backend(f"silent{i}", fake.url, ["m"], priority=i, timeout=1.5)
        key = gateway.new_key("k")
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as caught:
            gateway.client(key).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        elapsed = time.monotonic() - started
        assert caught.value.status_code == 504
        assert caught.value.response.headers["x-should-retry"] == "false"
        # deadline = 2 x 1.5 s (slowest timeout) + 0 s queue: two silent backends, never the third.
        assert [f.post_hits for f in fakes] == [1, 1, 0]
        assert 2.9 < elapsed < 4.5
    finally:
        for fake in fakes:
            fake.stop()
