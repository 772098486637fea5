"""The dashboard at `/`: login, overview, usage and requests pages, and their JSON twins.

Backends, keys and pricing (the pages that change configuration) are in gateway/manage.py.
Every page reads a view model that is also served as JSON under /api/, so tests assert on
data and the templates only show it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import aiosqlite
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway import admin, admin_usage, db, manage, usage_report
from gateway.errors import BadRequest, GatewayError
from gateway.overview import build_overview
from gateway.pages import WEB_DIR, FormRejected, Web, local_path, read_form
from gateway.reports import HOURLY_STACKS
from gateway.web_auth import (
    FAILED_LOGIN_DELAY_S,
    LOGGED_OUT_SETTING,
    SESSION_COOKIE,
    SESSION_TTL_S,
    is_same_origin,
    is_secure_request,
)

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("gateway")

REFRESH_S = 3  # how often the overview polls its JSON twin


def _stack(request: Request) -> str:
    stack = request.query_params.get("by") or "backend"
    if stack not in HOURLY_STACKS:
        raise BadRequest(f"by has value '{stack}'; expected backend or pool", param="by")
    return stack


class Dashboard:
    """Holds the shared Web machinery and answers for every dashboard route."""

    def __init__(self) -> None:
        self.web = Web()
        self.failed_login_delay_s = FAILED_LOGIN_DELAY_S
        self.manage = manage.Manage(self.web)

    def session_check(self, request: Request) -> bool:
        """app.state.session_check: a dashboard session counts as admin on /api/*.

        Reads are fine; a change (POST, PUT, PATCH, DELETE) must also come from this origin, since
        SameSite does not separate two ports of localhost (same site, different origins).
        """
        if not self.web.session_check(request):
            return False
        return request.method in ("GET", "HEAD") or is_same_origin(request)

    # -- login ------------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        if self.web.session_of(request) is not None:
            return RedirectResponse(local_path(request.query_params.get("next")), 303)
        return self._login_form(request, "", 200)

    def _login_form(self, request: Request, error: str, status: int) -> Response:
        gateway: Gateway = request.app.state.gateway
        context = {
            "login_token": self.web.signer(gateway).login_form_token(time.time()),
            "next": local_path(request.query_params.get("next")),
            "error": error,
        }
        return self.web.render(request, "login.html", context, status)

    async def login(self, request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        wall_now = time.time()
        signer = self.web.signer(gateway)
        try:
            form = await read_form(request)
        except FormRejected:
            form = {}
        if not signer.is_valid_login_token(form.get("login_token", ""), wall_now) or not is_same_origin(request):
            return self.web.error_page(request, 403, "The login form has expired or came from another site. Reload it.")
        if not gateway.is_admin_token(form.get("token", "").strip()):
            await asyncio.sleep(self.failed_login_delay_s)  # slows guessing; says nothing about why
            return self._login_form(request, "Wrong token.", 401)
        response = RedirectResponse(local_path(form.get("next")), 303)
        response.set_cookie(
            SESSION_COOKIE,
            signer.new_session_cookie(wall_now),
            max_age=SESSION_TTL_S,
            path="/",
            httponly=True,
            samesite="strict",
            secure=is_secure_request(request),
        )
        return response

    async def logout(self, request: Request, gateway: Gateway, form: dict[str, str]) -> Response:
        gateway.logged_out.add(request.state.session)
        gateway.logged_out.prune(time.time())
        try:
            await db.set_setting(gateway.writer, LOGGED_OUT_SETTING, gateway.logged_out.to_json())
        except aiosqlite.Error as e:  # still logged out until a restart; the cookie expires within 12 hours
            log.warning("could not save the logout: %s", e)
        response = self.web.redirect(request, "/login", "info", "Logged out.")
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # -- overview ---------------------------------------------------------------------------

    async def overview(self, request: Request, gateway: Gateway) -> Response:
        view = await build_overview(gateway, time.time(), _stack(request))
        return self.web.render(request, "overview.html", {"view": view, "refresh_ms": REFRESH_S * 1000})

    async def overview_json(self, request: Request, gateway: Gateway) -> Any:
        return await build_overview(gateway, time.time(), _stack(request))

    # -- usage ------------------------------------------------------------------------------

    async def usage(self, request: Request, gateway: Gateway) -> Response:
        params = dict(request.query_params)
        try:
            view = await usage_report.build_usage(gateway.reader, params, time.time())
            error = ""
        except BadRequest as e:
            view = await usage_report.build_usage(gateway.reader, {}, time.time())
            error = e.message
        context = {
            "view": view,
            "error": error,
            "columns": usage_report.COLUMNS,
            "group_labels": usage_report.GROUP_LABELS,
        }
        return self.web.render(request, "usage.html", context, 400 if error else 200)

    async def usage_json(self, request: Request, gateway: Gateway) -> Any:
        return await usage_report.build_usage(gateway.reader, request.query_params, time.time())

    async def usage_csv(self, request: Request, gateway: Gateway) -> Response:
        view = await usage_report.build_usage(gateway.reader, request.query_params, time.time())
        filename = f"usage-by-{view['group_by']}-{view['start']}-{view['end']}.csv"
        return Response(
            usage_report.to_csv(view),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{filename}"', "cache-control": "no-store"},
        )

    # -- requests ---------------------------------------------------------------------------

    async def requests(self, request: Request, gateway: Gateway) -> Response:
        try:
            found = await admin_usage.list_requests(request, gateway)
            error = ""
        except GatewayError as e:
            found, error = {"data": [], "total": 0, "limit": 50, "offset": 0}, e.message
        keys = [r["name"] for r in await manage.key_rows(gateway)]
        models = sorted({*gateway.registry.serving, *(m.upstream for b in gateway.registry.backends for m in b.models)})
        filters = {k: v for k in admin_filters() if (v := request.query_params.get(k))}
        limit, offset, total = found["limit"], found["offset"], found["total"]

        def page_url(at: int) -> str:
            return "/requests?" + urlencode({**filters, "offset": at, "limit": limit})

        context = {
            "found": found,
            "error": error,
            "prev_url": page_url(max(0, offset - limit)) if offset > 0 else "",
            "next_url": page_url(offset + limit) if offset + limit < total else "",
            "filters": {k: request.query_params.get(k, "") for k in admin_filters()},
            "options": {"model": models, "backend": [b.name for b in gateway.registry.backends], "key": keys},
        }
        return self.web.render(request, "requests.html", context, 400 if error else 200)

    async def request_detail(self, request: Request, gateway: Gateway) -> Response:
        found = await admin_usage.get_request(request, gateway)
        slowest = max((a["ms"] for a in found["attempt_chain"]), default=0) or 1
        return self.web.render(request, "request_detail.html", {"r": found, "slowest_ms": slowest})

    # -- routes -----------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        page, action = self.web.page, self.web.action
        return [
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", action(self.logout), methods=["POST"]),
            Route("/", page(self.overview), methods=["GET"]),
            Route("/usage", page(self.usage), methods=["GET"]),
            Route("/usage.csv", page(self.usage_csv), methods=["GET"]),
            Route("/requests", page(self.requests), methods=["GET"]),
            Route("/requests/{request_id}", page(self.request_detail), methods=["GET"]),
            Route("/api/overview", admin.admin(self.overview_json), methods=["GET"]),
            Route("/api/usage", admin.admin(self.usage_json), methods=["GET"]),
            *self.manage.routes(),
            Mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static"),
        ]


def admin_filters() -> tuple[str, ...]:
    return ("model", "backend", "key", "status", "stream", "fallback")
