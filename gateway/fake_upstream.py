"""A small fake OpenAI-compatible upstream for `gateway demo` (aiohttp.web, runs in the demo's loop).

Not for tests (tests/fakes.py scripts every byte); this one just behaves plausibly:
answers chat (JSON or SSE, with usage), completions, embeddings and /models after a short
random delay, and when `busy_every_s` is set it has a rate-limited spell every so often
(429 with Retry-After), plus a few random 429s, so the demo shows cooldowns and failover.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

CREATED_TS = 1_700_000_000
WORDS = ("the", "gateway", "routes", "each", "request", "to", "a", "backend", "and", "records", "what", "it", "cost")


@dataclass
class Behaviour:
    models: Sequence[str]
    delay_s: tuple[float, float] = (0.05, 0.4)
    random_429_share: float = 0.0
    busy_every_s: float = 0.0  # 0: never busy
    busy_for_s: float = 8.0
    retry_after_s: int = 5


class FakeUpstreamServer:
    def __init__(self, behaviour: Behaviour, seed: int | None = None) -> None:
        self.behaviour = behaviour
        self.rng = random.Random(seed)
        self.started_at = time.monotonic()
        self.hits = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.chat)
        app.router.add_post("/v1/embeddings", self.embeddings)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _is_busy(self) -> bool:
        b = self.behaviour
        if b.busy_every_s <= 0:
            return False
        return (time.monotonic() - self.started_at) % b.busy_every_s < b.busy_for_s

    def _rate_limited(self) -> web.Response | None:
        if self._is_busy() or self.rng.random() < self.behaviour.random_429_share:
            body = {
                "error": {
                    "message": "Rate limit reached (fake)",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            }
            return web.json_response(body, status=429, headers={"retry-after": str(self.behaviour.retry_after_s)})
        return None

    async def models(self, request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "created": CREATED_TS, "owned_by": "demo"} for m in self.behaviour.models]
        return web.json_response({"object": "list", "data": data})

    async def embeddings(self, request: web.Request) -> web.Response:
        self.hits += 1
        payload = await request.json()
        await asyncio.sleep(self.rng.uniform(*self.behaviour.delay_s) / 3)
        if (limited := self._rate_limited()) is not None:
            return limited
        items = payload.get("input")
        count = len(items) if isinstance(items, list) else 1
        data = [
            {"object": "embedding", "index": i, "embedding": [self.rng.uniform(-1, 1) for _ in range(8)]}
            for i in range(count)
        ]
        tokens = 8 * count
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": payload.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        payload = await request.json()
        await asyncio.sleep(self.rng.uniform(*self.behaviour.delay_s))
        if (limited := self._rate_limited()) is not None:
            return limited
        model = str(payload.get("model", "fake"))
        text = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(5, 40)))
        usage = {"prompt_tokens": self.rng.randint(20, 1500), "completion_tokens": len(text.split()) * 2}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        is_chat = request.path.endswith("/chat/completions")
        if not payload.get("stream"):
            choice = (
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                if is_chat
                else {"index": 0, "text": text, "finish_reason": "stop"}
            )
            return web.json_response(
                {
                    "id": f"chatcmpl-demo{self.hits}",
                    "object": "chat.completion",
                    "created": CREATED_TS,
                    "model": model,
                    "choices": [choice],
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await response.prepare(request)
        base = {
            "id": f"chatcmpl-demo{self.hits}",
            "object": "chat.completion.chunk",
            "created": CREATED_TS,
            "model": model,
        }
        words = text.split()
        for i in range(0, len(words), 4):
            delta = {"content": " ".join(words[i : i + 4]) + " "}
            if i == 0:
                delta["role"] = "assistant"
            await response.write(_sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}))
            await asyncio.sleep(0.02)
        await response.write(_sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        if (payload.get("stream_options") or {}).get("include_usage"):
            await response.write(_sse({**base, "choices": [], "usage": usage}))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _sse(payload: object) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
