"""What every dashboard page shares: templates, the session, CSRF-checked forms, flash messages.

`Web.page` wraps a GET handler (a logged-out visitor is sent to /login); `Web.action` wraps
a form POST (no session, a bad CSRF token or a foreign Origin: 403, and nothing changes).
Handlers return a Response, usually from `Web.render`, which adds `Cache-Control: no-store`
and a `Server-Timing` header with the time the server spent on the page.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from gateway import __version__, formats
from gateway.errors import GatewayError
from gateway.web_auth import (
    FLASH_COOKIE,
    SESSION_COOKIE,
    Session,
    Signer,
    is_same_origin,
    is_secure_request,
)

if TYPE_CHECKING:
    import jinja2

    from gateway.app import Gateway

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
MAX_FORM_BYTES = 256 * 1024

PageHandler = Callable[[Request, "Gateway"], Awaitable[Response]]
ActionHandler = Callable[[Request, "Gateway", dict[str, str]], Awaitable[Response]]


class FormRejected(Exception):
    """A state-changing form failed the session, CSRF or Origin check."""


def local_path(target: str | None, default: str = "/") -> str:
    """Only same-site paths are followed after login: no "//host", no "/\\host", no scheme."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    return target


def _static_version() -> str:
    digest = hashlib.sha256()
    for path in sorted((WEB_DIR / "static").glob("*")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def make_environment() -> jinja2.Environment:
    # Imported here: a gateway that only serves the API never pays for Jinja (about 2.5 MB of RSS).
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(WEB_DIR / "templates"),
        autoescape=True,  # every value is escaped, whatever the file name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        count=formats.count,
        compact=formats.compact,
        usd=formats.usd,
        percent=formats.percent,
        ms=formats.duration_ms,
        ts=formats.timestamp,
        countdown=formats.countdown,
    )
    env.globals.update(plural=formats.plural, ago=formats.ago, version=__version__)
    return env


class Web:
    """Templates and session handling for the dashboard; one per app."""

    def __init__(self) -> None:
        self._env: jinja2.Environment | None = None
        self.static_version = _static_version()

    @property
    def env(self) -> jinja2.Environment:
        """Built on the first page served."""
        if self._env is None:
            self._env = make_environment()
        return self._env

    # -- sessions ---------------------------------------------------------------------------

    @staticmethod
    def signer(gateway: Gateway) -> Signer:
        return Signer(gateway.session_secret, gateway.admin_token_hash or "")

    def session_of(self, request: Request) -> Session | None:
        gateway: Gateway = request.app.state.gateway
        if not gateway.session_secret:
            return None
        session = self.signer(gateway).read_session(request.cookies.get(SESSION_COOKIE), time.time())
        if session is None or session in gateway.logged_out:
            return None
        return session

    def session_check(self, request: Request) -> bool:
        """The admin API's hook (app.state.session_check): a valid dashboard session counts as admin."""
        return self.session_of(request) is not None

    # -- rendering --------------------------------------------------------------------------

    def render(self, request: Request, template: str, context: Mapping[str, Any], status: int = 200) -> HTMLResponse:
        gateway: Gateway = request.app.state.gateway
        session: Session | None = getattr(request.state, "session", None)
        flash = self._read_flash(request, gateway)
        page = self.env.get_template(template).render(
            request_path=request.url.path,
            csrf=self.signer(gateway).csrf_token(session) if session else "",
            logged_in=session is not None,
            flash=flash,
            static=lambda path: f"/static/{path}?v={self.static_version}",
            now=time.time(),
            **context,
        )
        response = HTMLResponse(page, status)
        response.headers["cache-control"] = "no-store"
        started = getattr(request.state, "started", None)
        if started is not None:
            response.headers["server-timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    def error_page(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self.render(request, "error.html", {"status": status, "message": message}, status)

    # -- flash messages: one signed cookie, read by the next page ------------------------------

    def redirect(self, request: Request, url: str, level: str = "", text: str = "") -> RedirectResponse:
        response = RedirectResponse(url, 303)
        if text:
            gateway: Gateway = request.app.state.gateway
            value = orjson.dumps([level, text]).hex()
            signed = f"{value}.{self.signer(gateway).sign('flash', value)}"
            response.set_cookie(
                FLASH_COOKIE,
                signed,
                max_age=60,
                path="/",
                httponly=True,
                samesite="strict",
                secure=is_secure_request(request),
            )
        return response

    def _read_flash(self, request: Request, gateway: Gateway) -> dict[str, str] | None:
        raw = request.cookies.get(FLASH_COOKIE)
        if not raw or "." not in raw or not gateway.session_secret:
            return None
        value, _, signature = raw.partition(".")
        if not self.signer(gateway).is_valid("flash", value, signature):
            return None
        try:
            level, text = orjson.loads(bytes.fromhex(value))
        except (ValueError, orjson.JSONDecodeError):
            return None
        return {"level": str(level), "text": str(text)}

    # -- decorators -------------------------------------------------------------------------

    def page(self, handler: PageHandler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            request.state.started = time.perf_counter()
            session = self.session_of(request)
            if session is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target, safe='')}", 303)
            request.state.session = session
            return await self._guarded(request, handler(request, request.app.state.gateway))

        return endpoint

    def action(self, handler: ActionHandler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            request.state.started = time.perf_counter()
            gateway: Gateway = request.app.state.gateway
            session = self.session_of(request)
            try:
                form = await read_form(request)
                if session is None:
                    raise FormRejected("Your session has ended: log in again.")
                request.state.session = session
                if not self.signer(gateway).is_valid_csrf(session, form.get("csrf", "")):
                    raise FormRejected("The form has expired or was not sent by this dashboard. Reload and retry.")
                if not is_same_origin(request):
                    raise FormRejected("The form was sent from another site (Origin check failed).")
            except FormRejected as e:
                return self.error_page(request, 403, str(e))
            return await self._guarded(request, handler(request, gateway, form))

        return endpoint

    async def _guarded(self, request: Request, work: Awaitable[Response]) -> Response:
        try:
            return await work
        except GatewayError as e:
            return self.error_page(request, e.status, e.message)
        except sqlite3.OperationalError as e:  # locked or read-only database
            return self.error_page(request, 503, f"The database is busy or read-only: {e}")


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body (all the dashboard sends), without python-multipart."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FormRejected("Forms must be sent as application/x-www-form-urlencoded.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormRejected("The form is too large.")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
