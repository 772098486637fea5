"""App assembly: the Gateway (state and background jobs) and the Starlette app around it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import aiosqlite
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import db, queries
from gateway.bootstrap import FirstStart, ensure_secrets, load_master_key
from gateway.client_api import (
    ClientEndpoint,
    client_endpoints,
    client_routes,
    error_response,
    http_error,
    new_request_id,
)
from gateway.config import Settings
from gateway.crypto import Sealer
from gateway.metrics import Metrics
from gateway.proxy import Call, Proxy
from gateway.recorder import UsageRecorder
from gateway.records import RequestRecord, iso_ts, month_of
from gateway.registry import Registry, load_registry, upsert_config_backends
from gateway.routing import RoutingState
from gateway.tokens import hash_secret
from gateway.upstream import new_session
from gateway.web_auth import LOGGED_OUT_SETTING, LoggedOut, host_refusal

log = logging.getLogger("gateway")

CONFIG_POLL_S = 0.5  # how often another process's edits (the CLI) are looked for
COOLDOWN_SAVE_S = 5.0
PRUNE_EVERY_S = 3600.0


class Gateway:
    """Everything a running gateway holds. Built by the lifespan, read by the routes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = Registry()
        self.routing = RoutingState(settings.routing)
        self.started_wall = time.time()
        self.first_start = FirstStart()
        self.admin_token_hash: str | None = None
        self.session_secret = b""  # signs dashboard sessions (gateway/web_auth.py); loaded by start()
        self.logged_out = LoggedOut()  # dashboard sessions ended by a logout; loaded by start()
        self.metrics = Metrics()
        self.allowed_hosts = allowed_hosts(settings)  # Host header names answered (HostCheck)
        self.active: dict[str, Call] = {}  # request id -> the request, from admission until it is recorded
        self._tasks: list[asyncio.Task[None]] = []
        # Set by start():
        self.writer: aiosqlite.Connection
        self.reader: aiosqlite.Connection
        self.sealer: Sealer
        self.session: aiohttp.ClientSession
        self.proxy: Proxy
        self.recorder: UsageRecorder

    async def start(self) -> None:
        settings = self.settings
        self.sealer = Sealer(load_master_key(settings))
        self.writer = await db.open_db(settings.db_path)
        self.reader = await db.connect(settings.db_path)
        self.first_start = await ensure_secrets(self.writer, settings)
        self.admin_token_hash = await db.get_setting(self.writer, "admin_token_hash")
        self.session_secret = base64.b64decode(await db.get_setting(self.writer, "session_secret") or "")
        self.logged_out = LoggedOut.from_json(await db.get_setting(self.writer, LOGGED_OUT_SETTING), time.time())
        await upsert_config_backends(self.writer, self.sealer, settings.backends)
        await self.reload()
        now, wall_now = time.monotonic(), time.time()
        rows = await db.load_cooldown_rows(self.writer)
        self.routing.cooldowns.load_rows([(r[0], r[1], r[2], r[3]) for r in rows], now, wall_now)
        month = self.month_of(wall_now)
        for key, spent in (await queries.spend_by_key(self.reader, month + "-01T00:00:00Z")).items():
            self.routing.add_spend(month, key, spent)
        self.session = new_session()
        self.proxy = Proxy(self.session, self.routing)
        self.recorder = UsageRecorder(self.writer, flush_interval_s=settings.flush_interval)
        self.metrics.attach(self)
        for job in (self.recorder.run, self._watch_config, self._save_cooldowns_often, self._prune_often):
            self._tasks.append(asyncio.create_task(job()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # A graceful stop loses nothing: retry the last flush a few times if the disk is busy.
        for _ in range(5):
            if await self.recorder.flush():
                break
            await asyncio.sleep(0.2)
        with contextlib.suppress(aiosqlite.Error):
            await self._save_cooldowns()
        await self.session.close()
        await self.reader.close()
        await self.writer.close()

    def is_admin_token(self, token: str) -> bool:
        return self.admin_token_hash is not None and hmac.compare_digest(hash_secret(token), self.admin_token_hash)

    def record(self, rec: RequestRecord) -> None:
        self.active.pop(rec.request_id, None)
        self.recorder.record(rec)
        self.metrics.observe(rec)
        if rec.cost_usd:
            self.routing.add_spend(self.month_of(rec.wall_ts), rec.api_key, rec.cost_usd)

    month_of = staticmethod(month_of)

    async def reload(self) -> None:
        """Re-read backends, keys and prices; buckets of unchanged backends keep their level."""
        self.registry = await load_registry(self.reader if hasattr(self, "reader") else self.writer, self.sealer)
        self.routing.sync(self.registry, time.monotonic())

    async def _watch_config(self) -> None:
        while True:
            await asyncio.sleep(CONFIG_POLL_S)
            try:
                if await db.config_version(self.reader) != self.registry.version:
                    await self.reload()
            except aiosqlite.Error as e:
                log.warning("could not re-read configuration: %s", e)

    async def _save_cooldowns(self) -> None:
        rows = self.routing.cooldowns.to_rows(time.monotonic(), time.time())
        await db.transaction(self.writer, db.replace_cooldowns_sql(rows))

    async def _save_cooldowns_often(self) -> None:
        last: list[Any] = []
        while True:
            await asyncio.sleep(COOLDOWN_SAVE_S)
            rows = self.routing.cooldowns.to_rows(time.monotonic(), time.time())
            if rows != last:
                try:
                    await self._save_cooldowns()
                    last = rows
                except aiosqlite.Error as e:
                    log.warning("could not save cooldowns: %s", e)

    async def _prune_often(self) -> None:
        while True:
            cutoff = iso_ts(time.time() - self.settings.request_log_days * 86400)
            try:
                deleted = await queries.prune_request_log(self.writer, cutoff)
                if deleted:
                    log.info("pruned %d request log rows older than %s", deleted, cutoff)
            except aiosqlite.Error as e:
                log.warning("could not prune the request log: %s", e)
            await asyncio.sleep(PRUNE_EVERY_S)


class HostCheck:
    """Refuse requests whose Host is not the bound address or an allowed name (DNS rebinding)."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (refusal := host_refusal(scope, self.allowed)) is not None:
            await error_response(refusal, new_request_id(), time.perf_counter())(scope, receive, send)
            return
        await self.app(scope, receive, send)


class GatewayApp(Starlette):
    """Starlette, except that POSTs to the /v1 endpoints go straight to them, before its middleware stack.

    Those endpoints check the Host, add the security headers and answer every error themselves, so
    Starlette's error and routing layers and the two wrapping middlewares (each a closure around `send`,
    called again for every chunk of a stream) would only add work on the path every request takes.
    """

    fast_paths: dict[str, ClientEndpoint]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.fast_paths.get(scope["path"])
            if endpoint is not None:
                scope["app"] = self
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def allowed_hosts(settings: Settings) -> frozenset[str]:
    bound = settings.host.lower()
    names = {*settings.allowed_hosts, bound, f"[{bound}]" if ":" in bound else bound}
    return frozenset(names)


def create_app(
    settings: Settings,
    extra_routes: list[BaseRoute] | None = None,
    on_started: Callable[[FirstStart], None] | None = None,
) -> Starlette:
    gateway = Gateway(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        if on_started is not None:
            on_started(gateway.first_start)
        try:
            yield
        finally:
            await gateway.stop()

    from gateway.admin import admin_routes
    from gateway.dashboard import Dashboard
    from gateway.web_auth import SecurityHeaders

    dashboard = Dashboard()
    endpoints = client_endpoints()
    routes = [*client_routes(endpoints), *admin_routes(), *dashboard.routes(), *(extra_routes or [])]
    app = GatewayApp(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.fast_paths = endpoints
    app.state.gateway = gateway
    app.state.session_check = dashboard.session_check
    app.add_middleware(HostCheck, allowed=gateway.allowed_hosts)
    app.add_middleware(SecurityHeaders)  # outermost: refusals by HostCheck carry the headers too
    return app
