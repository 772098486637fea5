"""The dashboard over real HTTP: pages, JSON twins, and its security (auth, CSRF, Host, escaping, headers)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import openai
import pytest

from tests.dashboard_client import Dashboard, card_displays
from tests.fakes import FakeUpstream, Reply
from tests.servers import ADMIN_TOKEN, GatewayServer

PAGES = ["/", "/?by=pool", "/backends", "/keys", "/usage", "/usage?group_by=key", "/requests", "/pricing"]
TWINS = [
    "/api/overview",
    "/api/usage",
    "/api/backends",
    "/api/status",
    "/api/keys",
    "/api/requests",
    "/api/pricing",
    "/api/pricing/unpriced",
]


@pytest.fixture
def web(gateway: GatewayServer) -> Iterator[Dashboard]:
    dashboard = Dashboard(gateway)
    assert dashboard.login().status_code == 303
    yield dashboard
    dashboard.close()


def send_traffic(gateway: GatewayServer, fake: FakeUpstream, key_name: str = "alice") -> str:
    """Three chats and a stream through a backend 'main'; returns the client key."""
    gateway.add_backend(
        "main",
        fake.url,
        ["gpt-4o-mini", {"name": "fast", "upstream": "gpt-4o-mini"}],
        api_key="sk-upstream-secret-9876",
    )
    key = gateway.new_key(key_name)
    client = gateway.client(key)
    for model in ("gpt-4o-mini", "fast", "gpt-4o-mini"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    for _ in client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    ):
        pass
    # A stream is recorded when the server side of it ends, which may be just after the client's.
    deadline = time.monotonic() + 5
    while gateway.gateway.recorder.stats.recorded < 4:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert gateway.flush()
    return key


# -- pages and twins ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_page_renders_on_an_empty_database(web: Dashboard, path: str) -> None:
    response = web.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert "<h1>" in response.text


@pytest.mark.parametrize("path", TWINS)
def test_json_twin_answers_on_an_empty_database(web: Dashboard, path: str) -> None:
    response = web.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"


def test_every_page_renders_with_traffic(web: Dashboard, gateway: GatewayServer, fake: FakeUpstream) -> None:
    send_traffic(gateway, fake)
    for path in [
        *PAGES,
        "/backends/main/edit",
        "/usage?group_by=backend",
        "/usage?group_by=pool",
        "/requests?model=fast",
        "/requests?stream=true&limit=1&offset=1",
    ]:
        response = web.get(path)
        assert response.status_code == 200, (path, response.text)
    request_id = web.get("/api/requests").json()["data"][0]["request_id"]
    detail = web.get(f"/requests/{request_id}")
    assert detail.status_code == 200
    assert "Attempt chain" in detail.text and "main" in detail.text
    assert web.get("/requests/req_nope").status_code == 404


def test_overview_numbers_equal_the_json_twin_and_usage_hourly(
    web: Dashboard, gateway: GatewayServer, fake: FakeUpstream
) -> None:
    send_traffic(gateway, fake)
    today = datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z")
    sums = gateway.query(
        "SELECT SUM(requests) AS requests, SUM(prompt_tokens + completion_tokens) AS tokens, SUM(cost_usd) AS cost, "
        "SUM(fallbacks) AS fallbacks, SUM(errors_429) AS e429 FROM usage_hourly WHERE hour >= ?",
        (today,),
    )[0]
    twin = web.get("/api/overview").json()
    cards = {c["id"]: c for c in twin["cards"]}
    assert cards["requests"]["value"] == sums["requests"] == 4
    assert cards["tokens"]["value"] == sums["tokens"] == 60
    assert cards["cost_usd"]["value"] == pytest.approx(sums["cost"])
    assert cards["cost_usd"]["value"] > 0
    assert cards["fallbacks"]["value"] == sums["fallbacks"]
    assert cards["errors_429"]["value"] == sums["e429"]
    assert cards["latency_p50_ms"]["value"] is not None and cards["ttft_p50_ms"]["value"] is not None
    assert twin["month"]["cost_usd"] == pytest.approx(sums["cost"])
    assert sum(r["h"] > 0 for r in twin["charts"]["hourly"]["rects"] if r["cls"] != "grid") == 1
    page = web.get("/").text
    shown = card_displays(page)
    assert shown == {**{c["id"]: c["display"] for c in twin["cards"]}, "month": twin["month"]["display"]}
    assert shown["requests"] == "4" and shown["tokens"] == "60"
    assert [b["name"] for b in twin["backends"]] == ["main"]
    assert twin["backends"][0]["success_rate_24h"] == 1.0


def test_overview_shows_a_cooldown_with_its_countdown_and_the_fallback(
    web: Dashboard, gateway: GatewayServer, fake: FakeUpstream, fake2: FakeUpstream
) -> None:
    gateway.add_backend("main", fake.url, ["gpt-4o-mini"])
    gateway.add_backend("spare", fake2.url, ["gpt-4o-mini"], pool="fallback")
    fake.enqueue(Reply.error(429, headers={"retry-after": "30"}))
    key = gateway.new_key("k")
    gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert gateway.flush()
    view = web.get("/api/overview").json()
    main = next(b for b in view["backends"] if b["name"] == "main")
    assert (main["state"], main["state_label"], main["reason"]) == ("cooling", "cooling down", "rate_limited")
    assert 25 < main["remaining_s"] <= 30 and main["remaining_display"].endswith(" s")
    cards = {c["id"]: c["value"] for c in view["cards"]}
    assert (cards["requests"], cards["fallbacks"], cards["errors_429"]) == (1, 1, 1)
    page = web.get("/").text
    assert f'data-until="{main["cooldown_until"]}"' in page and "cooling down" in page


def test_overview_counts_requests_in_flight(web: Dashboard, gateway: GatewayServer, fake: FakeUpstream) -> None:
    gateway.add_backend("main", fake.url, ["gpt-4o-mini"])
    fake.enqueue(Reply.ok(delay_s=3))
    client = gateway.client(gateway.new_key("k"))
    slow = threading.Thread(
        target=lambda: client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    )
    slow.start()
    try:
        deadline = time.monotonic() + 5
        while (in_flight := web.get("/api/overview").json()["in_flight"])["total"] != 1:
            assert time.monotonic() < deadline, in_flight
            time.sleep(0.05)
        assert in_flight["by_backend"] == [{"backend": "main", "in_flight": 1}]
        assert "main: 1" in web.get("/").text
    finally:
        slow.join()


def test_daily_rollup_and_latency_histogram_follow_the_hour_buckets(gateway: GatewayServer, fake: FakeUpstream) -> None:
    send_traffic(gateway, fake)
    hourly = gateway.query("SELECT SUM(requests), SUM(cost_usd), SUM(prompt_tokens) FROM usage_hourly")[0]
    daily = gateway.query("SELECT SUM(requests), SUM(cost_usd), SUM(prompt_tokens) FROM usage_daily")[0]
    assert tuple(hourly) == pytest.approx(tuple(daily))
    counts = {r[0]: r[1] for r in gateway.query("SELECT metric, SUM(count) FROM latency_hourly GROUP BY metric")}
    assert counts == {"latency": 4, "ttft": 1}


def test_usage_twin_matches_the_admin_aggregate_and_exports_csv(
    web: Dashboard, gateway: GatewayServer, fake: FakeUpstream
) -> None:
    send_traffic(gateway, fake)
    today = datetime.now(UTC).date().isoformat()
    for group_by in ("model", "backend", "key", "pool"):
        mine = web.get(f"/api/usage?group_by={group_by}&start={today}&end={today}").json()
        theirs = web.get(f"/api/usage/aggregate?group_by={group_by}&start={today}&end={today}").json()
        assert [(r["key"], r["requests"], r["cost_usd"]) for r in mine["data"]] == [
            (r["key"], r["requests"], r["cost_usd"]) for r in theirs["data"]
        ]
        assert mine["totals"]["requests"] == 4
    page = web.get("/usage?group_by=key&sort=requests&dir=asc")
    assert page.status_code == 200 and "alice" in page.text
    csv_text = web.get(f"/usage.csv?group_by=model&start={today}&end={today}")
    assert csv_text.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv_text.headers["content-disposition"]
    lines = csv_text.text.splitlines()
    assert lines[0].startswith("model,requests,") and lines[1].startswith("gpt-4o-mini,4,")
    assert lines[-1].startswith("Total,4,")
    assert web.get("/usage?start=yesterday").status_code == 400
    assert web.get("/api/usage?sort=nope").status_code == 400


# -- managing configuration through forms ------------------------------------------------------------


def test_backend_forms_add_edit_test_disable_delete(web: Dashboard, gateway: GatewayServer, fake: FakeUpstream) -> None:
    fake.models = ["gpt-4o-mini", "gpt-4o"]
    form = {
        "name": "up",
        "base_url": fake.url,
        "api_key": "sk-secret-value-WXYZ",
        "pool": "primary",
        "models": "gpt-4o-mini\nfast = gpt-4o-mini",
        "rpm": "",
        "tpm": "",
        "priority": "0",
        "weight": "1",
        "timeout": "30",
        "enabled": "on",
    }
    response = web.post("/backends", form)
    assert response.status_code == 303 and response.headers["location"] == "/backends"
    listing = web.get("/backends").text
    assert "Backend &#39;up&#39; added." in listing and "...WXYZ" in listing
    assert "sk-secret-value" not in listing
    created = web.get("/api/backends/up").json()
    assert created["models"] == ["gpt-4o-mini", {"name": "fast", "upstream": "gpt-4o-mini"}]
    assert created["timeout"] == 30

    # Editing without a key keeps the stored one.
    edit = web.get("/backends/up/edit").text
    assert "sk-secret-value" not in edit and "...WXYZ" in edit
    assert web.post("/backends/up", {**form, "api_key": "", "rpm": "60"}).status_code == 303
    assert web.get("/api/backends/up").json()["api_key"] == "WXYZ"  # its last four characters only
    assert web.get("/api/backends/up").json()["rpm"] == 60

    tested = web.post("/backends/up/test", {})
    assert tested.status_code == 303
    flash = web.get("/backends").text
    assert "Test of &#39;up&#39;: HTTP 200" in flash and "2 models (gpt-4o-mini, gpt-4o)" in flash
    assert fake.requests[-1].path.endswith("/models")
    assert fake.requests[-1].headers["authorization"] == "Bearer sk-secret-value-WXYZ"
    probe = gateway.admin("POST", "/api/backends/up/test").json()
    assert probe["ok"] is True and probe["models"] == ["gpt-4o-mini", "gpt-4o"]

    assert web.post("/backends/up/disable", {}).status_code == 303
    assert web.get("/api/backends/up").json()["enabled"] is False
    assert web.post("/backends/up/enable", {}).status_code == 303
    assert web.get("/api/backends/up").json()["enabled"] is True

    bad = web.post("/backends", {**form, "name": "other", "base_url": "http://169.254.169.254/v1"})
    assert bad.status_code == 400 and "cloud metadata" in bad.text
    assert web.post("/backends", form).status_code == 409  # the name is taken

    assert web.post("/backends/up/delete", {}).status_code == 303
    assert web.get("/api/backends").json()["data"] == []


def test_backend_test_button_reports_an_upstream_that_refuses(
    web: Dashboard, gateway: GatewayServer, fake: FakeUpstream
) -> None:
    gateway.add_backend("main", fake.url, ["gpt-4o-mini"])
    fake.models_reply = Reply.error(401, "Incorrect API key provided")
    web.post("/backends/main/test", {})
    assert "HTTP 401" in web.get("/backends").text
    assert "Incorrect API key provided" in gateway.admin("POST", "/api/backends/main/test").json()["message"]


def test_key_is_shown_once_then_limits_edit_and_revocation_apply(
    web: Dashboard, gateway: GatewayServer, fake: FakeUpstream
) -> None:
    gateway.add_backend("main", fake.url, ["gpt-4o-mini"])
    created = web.post("/keys", {"name": "laptop", "rpm": "", "budget_usd": "5"})
    assert created.status_code == 200 and created.headers["cache-control"] == "no-store"
    secret = re.search(r'<code id="new-key">([^<]+)</code>', created.text)
    assert secret is not None and secret.group(1).startswith("sk-gw-")
    key = secret.group(1)
    assert key not in web.get("/keys").text  # shown once
    client = gateway.client(key)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

    assert web.post("/keys/laptop", {"rpm": "7", "budget_usd": "", "enabled": "on"}).status_code == 303
    view = next(k for k in web.get("/api/keys").json()["data"] if k["name"] == "laptop")
    assert (view["rpm"], view["budget_usd"], view["enabled"]) == (7, None, True)
    assert web.post("/keys/laptop", {"rpm": "0"}).status_code == 400

    assert web.post("/keys/laptop/revoke", {}).status_code == 303
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert web.post("/keys", {"name": "default"}).status_code == 409  # the first-start key exists


def test_pricing_override_is_marked_and_can_be_removed(web: Dashboard, gateway: GatewayServer) -> None:
    page = web.get("/pricing").text
    assert "gpt-4o-mini" in page and "built-in" in page
    assert (
        web.post(
            "/pricing",
            {"model": "gpt-4o-mini", "input_per_mtok": "1", "output_per_mtok": "2", "cached_input_per_mtok": ""},
        ).status_code
        == 303
    )
    row = next(p for p in web.get("/api/pricing").json()["data"] if p["model"] == "gpt-4o-mini")
    assert (row["input_per_mtok"], row["output_per_mtok"], row["source"]) == (1.0, 2.0, "override")
    assert "overridden" in web.get("/pricing").text
    refused = web.post("/pricing", {"model": "x", "input_per_mtok": "-1", "output_per_mtok": "2"})
    assert refused.status_code == 303 and "Price not saved" in web.get("/pricing").text
    assert web.post("/pricing/reset", {"model": "gpt-4o-mini"}).status_code == 303
    row = next(p for p in web.get("/api/pricing").json()["data"] if p["model"] == "gpt-4o-mini")
    assert row["source"] == "builtin"


def test_models_without_a_price_are_flagged(web: Dashboard, gateway: GatewayServer, fake: FakeUpstream) -> None:
    gateway.add_backend("local", fake.url, ["my-local-model"])
    key = gateway.new_key("k")
    gateway.client(key).chat.completions.create(model="my-local-model", messages=[{"role": "user", "content": "x"}])
    assert gateway.flush()
    unpriced = web.get("/api/pricing/unpriced").json()["data"]
    assert unpriced == [{"model": "my-local-model", "unpriced_requests_30d": 1, "served_by": ["local"]}]
    assert "Models without a price" in web.get("/pricing").text
    assert "no price" in web.get("/usage").text
    assert web.get("/api/overview").json()["unpriced_today"] == 1


def test_request_log_filters_and_pagination(web: Dashboard, gateway: GatewayServer, fake: FakeUpstream) -> None:
    send_traffic(gateway, fake)
    first = web.get("/requests?limit=2")
    assert first.status_code == 200 and "Older" in first.text and "1–2 of 4" in first.text
    assert len(re.findall(r'href="/requests/req_', web.get("/requests?stream=true").text)) == 1
    assert len(re.findall(r'href="/requests/req_', web.get("/requests?model=fast").text)) == 1
    assert web.get("/requests?status=abc").status_code == 400


# -- security ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/", "/backends", "/keys", "/usage", "/requests", "/pricing", "/usage.csv", "/backends/x/edit", "/requests/req_x"],
)
def test_pages_send_a_visitor_without_session_to_login(gateway: GatewayServer, path: str) -> None:
    response = httpx.get(gateway.url + path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize("path", TWINS)
def test_json_twins_need_the_session_or_the_admin_token(gateway: GatewayServer, path: str) -> None:
    assert httpx.get(gateway.url + path).status_code == 401
    assert gateway.admin("GET", path).status_code == 200


def test_login_sets_a_strict_httponly_session_and_follows_only_local_next(gateway: GatewayServer) -> None:
    with Dashboard(gateway) as web, Dashboard(gateway) as other:
        response = web.login(next_path="/keys")
        assert response.status_code == 303 and response.headers["location"] == "/keys"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("gw_session=")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert other.login(next_path="//evil.example/x").headers["location"] == "/"
        assert web.get("/login").status_code == 303  # already logged in


def test_wrong_token_gets_a_plain_message_after_a_delay(gateway: GatewayServer) -> None:
    with Dashboard(gateway) as web:
        started = time.monotonic()
        response = web.login(token="not-the-token")
        assert time.monotonic() - started >= 0.9
        assert response.status_code == 401
        assert "Wrong token." in response.text
        assert "set-cookie" not in response.headers
        assert web.get("/").status_code == 303


def test_tampered_or_expired_session_cookie_is_refused(gateway: GatewayServer, web: Dashboard) -> None:
    cookie = web.http.cookies["gw_session"]
    session_id, expires, signature = cookie.split(".")
    for forged in (
        f"{session_id}.{int(expires) + 999}.{signature}",
        f"x{session_id}.{expires}.{signature}",
        f"{session_id}.{expires}.{signature[:-2]}AA",
        "garbage",
    ):
        assert httpx.get(gateway.url + "/api/keys", cookies={"gw_session": forged}).status_code == 401
    assert httpx.get(gateway.url + "/api/keys", cookies={"gw_session": cookie}).status_code == 200


def test_logout_ends_the_session_even_if_the_cookie_is_replayed(gateway: GatewayServer, web: Dashboard) -> None:
    cookie = web.http.cookies["gw_session"]
    response = web.post("/logout", {})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert httpx.get(gateway.url + "/api/keys", cookies={"gw_session": cookie}).status_code == 401
    assert httpx.get(gateway.url + "/", cookies={"gw_session": cookie}).status_code == 303


def test_a_logout_is_remembered_across_a_restart(tmp_path: Path) -> None:
    first = GatewayServer(tmp_path / "data").start()
    try:
        with Dashboard(first) as leaving, Dashboard(first) as staying:
            assert leaving.login().status_code == 303 and staying.login().status_code == 303
            ended, kept = leaving.http.cookies["gw_session"], staying.http.cookies["gw_session"]
            assert leaving.post("/logout", {}).status_code == 303
    finally:
        first.stop()
    second = GatewayServer(tmp_path / "data").start()
    try:
        assert httpx.get(second.url + "/api/keys", cookies={"gw_session": ended}).status_code == 401
        assert httpx.get(second.url + "/api/keys", cookies={"gw_session": kept}).status_code == 200
    finally:
        second.stop()


def test_client_api_never_accepts_the_dashboard_session(
    gateway: GatewayServer, fake: FakeUpstream, web: Dashboard
) -> None:
    gateway.add_backend("main", fake.url, ["gpt-4o-mini"])
    cookies = {"gw_session": web.http.cookies["gw_session"]}
    assert httpx.get(gateway.url + "/v1/models", cookies=cookies).status_code == 401
    chat = httpx.post(
        gateway.url + "/v1/chat/completions",
        cookies=cookies,
        headers={"origin": gateway.url},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status_code == 401
    assert fake.post_hits == 0
    # Nor the admin token: /v1 takes client keys only.
    admin = httpx.get(gateway.url + "/v1/models", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert admin.status_code == 401


def test_admin_api_changes_with_a_session_must_come_from_this_origin(gateway: GatewayServer, web: Dashboard) -> None:
    cookies = {"gw_session": web.http.cookies["gw_session"]}
    foreign = httpx.post(
        gateway.url + "/api/keys", cookies=cookies, json={"name": "x"}, headers={"origin": "http://127.0.0.1:1"}
    )
    assert foreign.status_code == 401
    assert httpx.post(gateway.url + "/api/keys", cookies=cookies, json={"name": "x"}).status_code == 401
    same = httpx.post(gateway.url + "/api/keys", cookies=cookies, json={"name": "x"}, headers={"origin": gateway.url})
    assert same.status_code == 201
    assert [k["name"] for k in gateway.admin("GET", "/api/keys").json()["data"]] == ["default", "x"]


FORMS = [
    ("/keys", {"name": "sneaky"}),
    ("/backends", {"name": "sneaky", "base_url": "http://127.0.0.1:9/v1", "models": "m", "enabled": "on"}),
    ("/keys/default/revoke", {}),
    ("/pricing", {"model": "gpt-4o-mini", "input_per_mtok": "9", "output_per_mtok": "9"}),
    ("/logout", {}),
]


def _state(gateway: GatewayServer) -> tuple[object, ...]:
    return (
        gateway.admin("GET", "/api/keys").json(),
        gateway.admin("GET", "/api/backends").json(),
        gateway.admin("GET", "/api/pricing").json(),
    )


@pytest.mark.parametrize(("path", "form"), FORMS)
@pytest.mark.parametrize("attack", ["no token", "wrong token", "foreign origin", "no origin", "no session"])
def test_form_without_valid_csrf_and_origin_gets_403_and_changes_nothing(
    gateway: GatewayServer, web: Dashboard, path: str, form: dict[str, str], attack: str
) -> None:
    before = _state(gateway)
    good = web.csrf()
    if attack == "no token":
        response = web.post(path, form, csrf="")
    elif attack == "wrong token":
        response = web.post(path, form, csrf=good[:-3] + "abc")
    elif attack == "foreign origin":
        response = web.post(path, form, csrf=good, origin="http://evil.example")
    elif attack == "no origin":
        response = web.post(path, form, csrf=good, origin=None)
    else:
        response = httpx.post(gateway.url + path, data={"csrf": good, **form}, headers={"origin": gateway.url})
    assert response.status_code == 403
    assert _state(gateway) == before
    assert web.get("/api/keys").status_code == 200  # still logged in


def test_login_form_needs_its_token_and_this_origin(gateway: GatewayServer) -> None:
    bare = httpx.post(gateway.url + "/login", data={"token": ADMIN_TOKEN}, headers={"origin": gateway.url})
    assert bare.status_code == 403 and "set-cookie" not in bare.headers
    with Dashboard(gateway) as web:
        token = re.search(r'name="login_token" value="([^"]*)"', web.get("/login").text)
        assert token is not None
        foreign = web.http.post(
            "/login",
            data={"login_token": token.group(1), "token": ADMIN_TOKEN},
            headers={"origin": "http://evil.example"},
        )
        assert foreign.status_code == 403 and "set-cookie" not in foreign.headers


@pytest.mark.parametrize("path", ["/", "/login", "/api/overview", "/static/app.css", "/v1/models"])
def test_foreign_host_header_is_refused(gateway: GatewayServer, path: str) -> None:
    response = httpx.get(gateway.url + path, headers={"host": "evil.example"})
    assert response.status_code == 403
    assert "evil.example" in response.json()["error"]["message"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-request-id"].startswith("req_")


def test_client_api_posts_check_the_host_and_carry_security_headers(gateway: GatewayServer, fake: FakeUpstream) -> None:
    # POSTs to /v1 are dispatched before the middlewares (GatewayApp): they do both themselves.
    gateway.add_backend("main", fake.url, ["gpt-4o-mini"])
    auth = {"authorization": f"Bearer {gateway.new_key('k')}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
    url = gateway.url + "/v1/chat/completions"
    foreign = httpx.post(url, json=body, headers={**auth, "host": "evil.example"})
    assert foreign.status_code == 403 and "evil.example" in foreign.json()["error"]["message"]
    assert fake.post_hits == 0
    answers = [
        foreign,
        httpx.post(url, json=body, headers=auth),
        httpx.post(url, json={**body, "stream": True}, headers=auth),
        httpx.post(url, json=body),  # 401
        httpx.post(url, content=b"{", headers=auth),  # 400
    ]
    assert [r.status_code for r in answers] == [403, 200, 200, 401, 400]
    for response in answers:
        assert response.headers["x-request-id"].startswith("req_")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(
    "path", ["/", "/login", "/keys", "/api/overview", "/static/app.js", "/v1/models", "/nowhere", "/healthz"]
)
def test_every_response_carries_security_headers(gateway: GatewayServer, web: Dashboard, path: str) -> None:
    response = web.get(path)
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-frame-options"] == "DENY"


def test_pages_have_no_inline_script_or_style(web: Dashboard, gateway: GatewayServer, fake: FakeUpstream) -> None:
    send_traffic(gateway, fake)
    for path in PAGES:
        page = web.get(path).text
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == []
        assert " style=" not in page and "<style" not in page
        assert re.search(r"<[^>]+\son[a-z]+=", page) is None


def test_hostile_names_are_shown_literally(web: Dashboard, gateway: GatewayServer, fake: FakeUpstream) -> None:
    script = "<script>alert(1)</script>"
    template = "{{7*7}}"
    gateway.add_backend("{{7*7}}<img src=x onerror=alert(1)>", fake.url, [script, template])
    gateway.admin("PUT", f"/api/pricing/{template}", json={"input_per_mtok": 1, "output_per_mtok": 1})
    key = gateway.new_key("<i>k{{7*7}}")  # key names cannot hold "/"
    client = gateway.client(key)
    client.chat.completions.create(model=script, messages=[{"role": "user", "content": "x"}])
    client.chat.completions.create(model=template, messages=[{"role": "user", "content": "x"}])
    assert gateway.flush()
    request_id = web.get("/api/requests").json()["data"][0]["request_id"]
    for path in [*PAGES, "/usage?group_by=backend", f"/requests/{request_id}"]:
        page = web.get(path).text
        assert script not in page, path
        assert "<img src=x" not in page and "<i>k" not in page, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in web.get("/backends").text
    # The CSV holds the names as data, served as an attachment that browsers do not sniff into HTML.
    csv_export = web.get("/usage.csv")
    assert (
        csv_export.headers["content-type"].startswith("text/csv")
        and "attachment" in csv_export.headers["content-disposition"]
    )
    assert "{{7*7}}" in web.get("/backends").text and "{{7*7}}" in web.get("/pricing").text
    assert "&lt;i&gt;k{{7*7}}" in web.get("/keys").text
    overview = web.get("/api/overview").json()
    assert overview["backends"][0]["name"] == "{{7*7}}<img src=x onerror=alert(1)>"


def test_static_files_are_served_without_login(gateway: GatewayServer) -> None:
    css = httpx.get(gateway.url + "/static/app.css")
    assert css.status_code == 200 and "prefers-color-scheme: dark" in css.text
    assert httpx.get(gateway.url + "/static/app.js").status_code == 200


def test_overview_can_stack_by_pool_and_refuses_other_stacks(
    web: Dashboard, gateway: GatewayServer, fake: FakeUpstream
) -> None:
    send_traffic(gateway, fake)
    legend = web.get("/api/overview?by=pool").json()["charts"]["hourly"]["legend"]
    assert [item["name"] for item in legend] == ["primary"]
    assert web.get("/api/overview?by=model").status_code == 400
    assert web.get("/?by=model").status_code == 400
