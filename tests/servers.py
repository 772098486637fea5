"""A real gateway under uvicorn on a free port, in a background thread with its own loop.

Tests stay synchronous and use real clients (the `openai` package, httpx) over TCP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import uvicorn

from gateway.app import Gateway, create_app
from gateway.config import RoutingSettings, Settings

ADMIN_TOKEN = "test-admin-token-0123456789"
T = TypeVar("T")


class GatewayServer:
    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        routing = overrides.pop("routing", {})
        self.settings = Settings(
            data_dir=data_dir,
            admin_token=ADMIN_TOKEN,
            flush_interval=overrides.pop("flush_interval", 0.2),
            routing=dataclasses.replace(RoutingSettings(), **routing),
            **overrides,
        )
        self.app = create_app(self.settings)
        self.gateway: Gateway = self.app.state.gateway
        self._loop = asyncio.new_event_loop()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._clients: list[openai.OpenAI] = []  # closed on stop: an unclosed one warns when collected
        self.port = 0

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> GatewayServer:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, loop="none", http="httptools", log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start (see the log output above)")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        assert self._server is not None
        self._loop.run_until_complete(self._server.serve())
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
            self._server = None

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop (e.g. a flush) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def flush(self) -> bool:
        return self.run(self.gateway.recorder.flush())

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {ADMIN_TOKEN}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def add_backend(self, name: str, base_url: str, models: list[Any], **fields: Any) -> dict[str, Any]:
        response = self.admin(
            "POST", "/api/backends", json={"name": name, "base_url": base_url, "models": models, **fields}
        )
        assert response.status_code == 201, response.text
        return response.json()

    def new_key(self, name: str = "test", **limits: Any) -> str:
        response = self.admin("POST", "/api/keys", json={"name": name, **limits})
        assert response.status_code == 201, response.text
        return str(response.json()["key"])

    def client(self, key: str, **kwargs: Any) -> openai.OpenAI:
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 30)
        client = openai.OpenAI(base_url=self.url + "/v1", api_key=key, **kwargs)
        self._clients.append(client)
        return client

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Read the real SQLite file from another connection, as an operator would."""
        conn = sqlite3.connect(self.settings.db_path)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
