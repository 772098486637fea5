"""A logged-in browser stand-in for the dashboard: httpx with cookies, CSRF tokens read from pages."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx

from tests.servers import ADMIN_TOKEN, GatewayServer

_CSRF = re.compile(r'name="csrf" value="([^"]*)"')
_LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]*)"')


class Dashboard:
    def __init__(self, gateway: GatewayServer) -> None:
        self.gateway = gateway
        self.url = gateway.url
        self.http = httpx.Client(base_url=gateway.url, timeout=30)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def login(self, token: str = ADMIN_TOKEN, next_path: str = "/") -> httpx.Response:
        page = self.http.get("/login")
        found = _LOGIN_TOKEN.search(page.text)
        assert found, page.text
        return self.http.post(
            "/login",
            data={"login_token": found.group(1), "token": token, "next": next_path},
            headers={"origin": self.url},
        )

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def csrf(self, path: str = "/keys") -> str:
        found = _CSRF.search(self.http.get(path).text)
        assert found, f"no CSRF field on {path}"
        return html.unescape(found.group(1))

    def post(
        self, path: str, data: dict[str, str], *, csrf: str | None = None, origin: str | None = "same", **kwargs: Any
    ) -> httpx.Response:
        """A form POST as the browser sends it: CSRF field from a page, Origin of this server."""
        headers = dict(kwargs.pop("headers", {}))
        if origin == "same":
            headers["origin"] = self.url
        elif origin is not None:
            headers["origin"] = origin
        form = {"csrf": self.csrf() if csrf is None else csrf, **data}
        return self.http.post(path, data=form, headers=headers, **kwargs)


def card_displays(page: str) -> dict[str, str]:
    """The display text of each overview card, as rendered: data-card id -> value."""
    out = {}
    for card_id, value in re.findall(
        r'data-card="([^"]+)">\s*<h2>[^<]*</h2>\s*<p class="value" data-part="display">([^<]*)</p>', page
    ):
        out[card_id] = html.unescape(value)
    return out
