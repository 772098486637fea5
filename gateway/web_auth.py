"""Dashboard security: the signed session cookie, CSRF tokens, the Origin check, security headers.

Everything is HMAC-SHA256 with the per-install random `session_secret` (settings table,
made at first start), each use under its own purpose label so a value signed for one
use is never accepted for another. Sessions are stateless cookies, also bound to the
admin token's hash: changing the admin token ends every session. A logout is remembered
in memory until the cookie would have expired anyway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import Forbidden

SESSION_COOKIE = "gw_session"
FLASH_COOKIE = "gw_flash"
SESSION_TTL_S = 12 * 3600
LOGIN_FORM_TTL_S = 3600
FAILED_LOGIN_DELAY_S = 1.0


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class Session:
    session_id: str
    expires_at: float  # POSIX seconds


class Signer:
    """Signs and checks short values with the install's secret, one purpose at a time."""

    def __init__(self, secret: bytes, binding: str = "") -> None:
        if len(secret) < 16:
            raise ValueError("the session secret is missing or too short")
        self._secret = secret
        self._binding = binding  # the admin token hash: a new token invalidates old signatures

    def sign(self, purpose: str, value: str) -> str:
        message = f"{purpose}\x00{self._binding}\x00{value}".encode()
        return _b64(hmac.new(self._secret, message, hashlib.sha256).digest())

    def is_valid(self, purpose: str, value: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(purpose, value), signature)

    # -- sessions ---------------------------------------------------------------------------

    def new_session_cookie(self, wall_now: float) -> str:
        value = f"{_b64(os.urandom(18))}.{int(wall_now + SESSION_TTL_S)}"
        return f"{value}.{self.sign('session', value)}"

    def read_session(self, cookie: str | None, wall_now: float) -> Session | None:
        if not cookie or cookie.count(".") != 2:
            return None
        session_id, expires, signature = cookie.split(".")
        if not expires.isdigit() or not self.is_valid("session", f"{session_id}.{expires}", signature):
            return None
        if int(expires) <= wall_now:
            return None
        return Session(session_id, float(expires))

    # -- CSRF -------------------------------------------------------------------------------

    def csrf_token(self, session: Session) -> str:
        return self.sign("csrf", session.session_id)

    def is_valid_csrf(self, session: Session, token: str) -> bool:
        return bool(token) and self.is_valid("csrf", session.session_id, token)

    def login_form_token(self, wall_now: float) -> str:
        """The login form has no session yet: its token is a signed, short-lived time stamp."""
        stamp = str(int(wall_now))
        return f"{stamp}.{self.sign('login', stamp)}"

    def is_valid_login_token(self, token: str, wall_now: float) -> bool:
        stamp, _, signature = token.partition(".")
        if not stamp.isdigit() or not self.is_valid("login", stamp, signature):
            return False
        return 0 <= wall_now - int(stamp) <= LOGIN_FORM_TTL_S


LOGGED_OUT_SETTING = "logged_out_sessions"


class LoggedOut:
    """Session ids ended by a logout, until their cookie would have expired anyway.

    Saved in the settings table (LOGGED_OUT_SETTING) at every logout and read at start, so a
    logged-out cookie stays refused across a restart.
    """

    def __init__(self, until: dict[str, float] | None = None) -> None:
        self._until: dict[str, float] = dict(until or {})

    @classmethod
    def from_json(cls, text: str | None, wall_now: float) -> LoggedOut:
        """The saved set, less what has expired; an unreadable value counts as none (cookies expire anyway)."""
        try:
            saved = json.loads(text) if text else {}
        except ValueError:
            saved = {}
        if not isinstance(saved, dict):
            saved = {}
        until = {sid: float(t) for sid, t in saved.items() if isinstance(t, int | float) and t > wall_now}
        return cls(until)

    def to_json(self) -> str:
        return json.dumps(self._until, sort_keys=True)

    def add(self, session: Session) -> None:
        self._until[session.session_id] = session.expires_at

    def __contains__(self, session: Session) -> bool:
        return session.session_id in self._until

    def prune(self, wall_now: float) -> None:
        self._until = {sid: until for sid, until in self._until.items() if until > wall_now}


def host_of(scope: Scope) -> str:
    """The Host header's name, lower-cased, without the port (an IPv6 literal keeps its brackets)."""
    for name, value in scope["headers"]:
        if name == b"host":
            host: str = value.decode("latin-1").lower()
            if host.startswith("["):
                return host[: host.find("]") + 1]
            return host.rsplit(":", 1)[0] if ":" in host else host
    return ""


def host_refusal(scope: Scope, allowed: frozenset[str]) -> Forbidden | None:
    """A Host that is not the bound address or an allowed name is refused (DNS rebinding)."""
    host = host_of(scope)
    if host in allowed:
        return None
    return Forbidden(f"Host '{host}' is not allowed; add it to [server].allowed_hosts")


def own_origin(request: Request) -> str:
    """scheme://host[:port] as the browser sees this server (Host was checked by HostCheck)."""
    return f"{request.url.scheme}://{request.headers.get('host', '')}".lower()


def is_same_origin(request: Request) -> bool:
    """A state-changing form must come from a page of this origin.

    Browsers send Origin on every POST; without it, a Referer from this origin will do.
    Referrer-Policy is `same-origin` (not `no-referrer`, which makes browsers send
    `Origin: null` on same-origin POSTs: Fetch standard, "serializing a request origin").
    """
    expected = own_origin(request)
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.lower() == expected
    referer = request.headers.get("referer")
    if not referer:
        return False
    parts = urlsplit(referer)
    return f"{parts.scheme}://{parts.netloc}".lower() == expected


def is_secure_request(request: Request) -> bool:
    return request.url.scheme == "https"


# -- security headers -------------------------------------------------------------------------

# No inline script or style anywhere: app.js and app.css are files, so CSP needs no nonce.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
_NAMES = frozenset(name for name, _ in SECURITY_HEADERS)


class SecurityHeaders:
    """Adds the security headers to every HTTP response. Pure ASGI: streams pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0].lower() not in _NAMES]
                message["headers"] = [*headers, *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
