"""`gateway demo`: a throwaway gateway with two fake upstreams, a month of history and live traffic.

Everything runs in one event loop: the gateway under uvicorn, a primary fake upstream that
rate-limits now and then (so cooldowns and failovers show), a steady fallback, and a few
clients using the `openai` package. The data directory is a temporary one, removed on exit;
Ctrl-C (or SIGTERM) stops everything and leaves nothing running.

The `openai` package is the client the issue asks the demo to use; it is not a runtime
dependency of the gateway, so it comes with `make demo` (the test extras) or the `demo`
extra (`pip install 'llm-gateway[demo]'`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import signal
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import uvicorn

from gateway import db
from gateway.backends import backend_from_fields, validate_backend_fields
from gateway.config import Settings
from gateway.demo_data import BackendDef, make_routes, write_history
from gateway.fake_upstream import Behaviour, FakeUpstreamServer
from gateway.tokens import new_admin_token

MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
UNPRICED_MODEL = "local-llama-8b"  # served by the fallback only, with no price: flagged on the dashboard
KEYS = ("alice", "bob", "ci-bot")
HISTORY_DAYS = 30


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the demo stops it after cleaning up its clients."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def run_demo(port: int) -> int:
    try:
        import openai  # noqa: F401
    except ImportError:
        print(
            "gateway demo drives traffic with the openai package: run `make demo`, or "
            "`pip install 'llm-gateway[demo]'` first."
        )
        return 2
    data_dir = Path(tempfile.mkdtemp(prefix="gateway-demo-"))
    try:
        return asyncio.run(_demo(port, data_dir))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _backend(name: str, url: str, pool: str, models: list[Any], **limits: Any) -> Any:
    fields = validate_backend_fields(
        {"name": name, "base_url": url, "pool": pool, "models": models, "api_key": f"sk-demo-{name}-0000", **limits},
        {},
        partial=False,
    )
    return backend_from_fields(fields)


async def _seed_history(settings: Settings, rng: random.Random) -> None:
    """A month of synthetic hour buckets, so the 30-day and 365-day charts have something to show."""
    conn = await db.open_db(settings.db_path)
    try:
        primary = [BackendDef("primary-fake", "primary", MODELS)]
        fallback = [BackendDef("fallback-fake", "fallback", MODELS)]
        # Mostly the primary pool, with a trickle through the fallback, as a healthy setup looks.
        routes = make_routes(primary, KEYS, rng, per_key=3, peak=120.0)
        routes += make_routes(fallback, KEYS, rng, per_key=1, peak=20.0)
        hour_start = time.time() // 3600 * 3600
        await write_history(conn, routes, hour_start - HISTORY_DAYS * 86400, hour_start, rng)
    finally:
        await conn.close()


async def _demo(port: int, data_dir: Path) -> int:
    from gateway.admin import create_key
    from gateway.app import create_app

    rng = random.Random()
    primary = FakeUpstreamServer(Behaviour(MODELS, random_429_share=0.05, busy_every_s=45, busy_for_s=10))
    fallback = FakeUpstreamServer(Behaviour((*MODELS, UNPRICED_MODEL)))
    await primary.start()
    await fallback.start()
    admin_token = new_admin_token()
    aliases: list[Any] = [*MODELS, {"name": "fast", "upstream": "gpt-4o-mini"}]
    settings = Settings(
        data_dir=data_dir,
        port=port,
        admin_token=admin_token,
        backends=(
            _backend("primary-fake", primary.url, "primary", aliases, rpm=80),
            _backend("fallback-fake", fallback.url, "fallback", [*aliases, UNPRICED_MODEL]),
        ),
    )
    await _seed_history(settings, rng)
    app = create_app(settings)
    server = _Server(uvicorn.Config(app, host=settings.host, port=port, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    traffic: list[asyncio.Task[None]] = []
    try:
        while not server.started:
            if serving.done():
                return 1
            await asyncio.sleep(0.05)
        bound = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://{settings.host}:{bound}"
        keys = {name: (await create_key(app.state.gateway, name, {}))["key"] for name in KEYS}
        _announce(url, admin_token, keys, data_dir, primary, fallback)
        traffic = [asyncio.create_task(_drive(url, keys, random.Random(i))) for i in range(2)]
        stop_wait = asyncio.create_task(stop.wait())
        await asyncio.wait([serving, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        return 0
    finally:
        for task in traffic:
            task.cancel()
        await asyncio.gather(*traffic, return_exceptions=True)
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
        await primary.stop()
        await fallback.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        print("\ngateway demo stopped; its temporary data is removed.", flush=True)


def _announce(
    url: str,
    admin_token: str,
    keys: dict[str, str],
    data_dir: Path,
    primary: FakeUpstreamServer,
    fallback: FakeUpstreamServer,
) -> None:
    lines = [
        f"gateway demo running (temporary data in {data_dir}, removed on exit)",
        f"  dashboard:   {url}/",
        f"  admin token: {admin_token}",
        f"  OpenAI API:  {url}/v1   (client key 'alice': {keys['alice']})",
        f"  upstreams:   primary {primary.url} (rate-limits now and then), fallback {fallback.url} (steady)",
        "Driving light traffic with the openai package; press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)


async def _drive(url: str, keys: dict[str, str], rng: random.Random) -> None:
    """Light traffic, forever: chat (some streamed), embeddings, an alias, a few mistakes."""
    import openai

    clients = {
        name: openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30)
        for name, key in keys.items()
    }
    try:
        while True:
            await asyncio.sleep(rng.uniform(0.2, 1.2))
            client = clients[rng.choices(list(clients), weights=(5, 3, 2))[0]]
            roll = rng.random()
            messages: Any = [{"role": "user", "content": "Say something about gateways."}]
            try:
                if roll < 0.55:
                    model = rng.choice(("gpt-4o-mini", "gpt-4o", "fast"))
                    await client.chat.completions.create(model=model, messages=messages)
                elif roll < 0.85:
                    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
                    async for _chunk in stream:
                        pass
                elif roll < 0.95:
                    await client.embeddings.create(model="text-embedding-3-small", input=["demo", "traffic"])
                elif roll < 0.98:
                    await client.chat.completions.create(model=UNPRICED_MODEL, messages=messages)
                else:
                    await client.chat.completions.create(model="no-such-model", messages=messages)
            except openai.APIError:
                pass  # the dashboard shows these; the demo carries on
    finally:
        for client in clients.values():
            await client.close()
