"""Every bad input gets a precise OpenAI-shaped error and changes nothing stored.

"Nothing stored" is checked on the real SQLite file: every table is read before and after
the bad request (after a flush of the usage writer), and must be identical.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import FakeUpstream
from tests.servers import GatewayServer

MESSAGES = [{"role": "user", "content": "hi"}]
ENDPOINT_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")
CHAT = "/v1/chat/completions"


def start_gateway(data_dir: Path, fake: FakeUpstream, **settings: Any) -> tuple[GatewayServer, str]:
    gateway = GatewayServer(data_dir, **settings).start()
    gateway.add_backend("main", fake.url, ["gpt-4o-mini"], api_key="sk-upstream")
    key = gateway.new_key("alice")
    # One good request first, so the tables hold usage that a bad request could disturb.
    gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    return gateway, key


@pytest.fixture(scope="module")
def shared_fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, shared_fake: FakeUpstream) -> Iterator[tuple[GatewayServer, str]]:
    """One gateway for the tests that change nothing (each checks so itself): starting one costs time."""
    gateway, key = start_gateway(tmp_path_factory.mktemp("shared"), shared_fake)
    yield gateway, key
    gateway.stop()


@pytest.fixture
def setup(shared: tuple[GatewayServer, str], shared_fake: FakeUpstream) -> tuple[GatewayServer, FakeUpstream, str]:
    shared_fake.reset_records()
    return shared[0], shared_fake, shared[1]


@pytest.fixture
def own(tmp_path: Path, shared_fake: FakeUpstream) -> Iterator[tuple[GatewayServer, FakeUpstream, str]]:
    """A gateway of the test's own, for tests that change keys or backends."""
    gateway, key = start_gateway(tmp_path / "own", shared_fake)
    shared_fake.reset_records()
    yield gateway, shared_fake, key
    gateway.stop()


def snapshot(gateway: GatewayServer) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, after the usage writer has flushed what it holds."""
    assert gateway.flush()
    conn = sqlite3.connect(gateway.settings.db_path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        conn.close()


def assert_error(
    response: httpx.Response, status: int, *, param: str | None, code: str | None, says: tuple[str, ...]
) -> dict[str, Any]:
    """The response is exactly OpenAI's error shape with this status, param and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert sorted(error) == ["code", "message", "param", "type"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert error["param"] == param, error
    assert error["code"] == code, error
    for words in says:
        assert words.lower() in error["message"].lower(), error["message"]
    if response.request.url.path.startswith("/v1"):
        # Every /v1 answer carries its id and what the gateway added: all of the time, for a refusal.
        assert response.headers["x-request-id"].startswith("req_")
        assert float(response.headers["x-gateway-overhead-ms"]) >= 0
    return dict(error)


@pytest.fixture
def unchanged(
    setup: tuple[GatewayServer, FakeUpstream, str],
) -> Iterator[Callable[[], None]]:
    """Yields a check that the database is as it was and the upstream saw nothing."""
    gateway, fake, _key = setup
    before = snapshot(gateway)

    def check() -> None:
        assert snapshot(gateway) == before
        assert fake.post_hits == 0

    yield check


def post(gateway: GatewayServer, path: str, key: str | None, content: bytes, **headers: str) -> httpx.Response:
    all_headers = {"content-type": "application/json", **headers}
    if key is not None:
        all_headers["authorization"] = f"Bearer {key}"
    return httpx.post(gateway.url + path, content=content, headers=all_headers, timeout=10)


# -- client API: the body --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"model": "gpt-4o-mini", "messages": [', ("not valid JSON",)),
        (b"{'model': 'gpt-4o-mini'}", ("not valid JSON",)),
        (b'{"model": "gpt-4o-mini", "temperature": NaN}', ("not valid JSON", "NaN")),
        (b"\xff\xfe{}", ("not valid JSON",)),
        (b"", ("empty",)),
        (b"   \n", ("empty",)),
    ],
    ids=["truncated", "single-quotes", "nan", "not-utf8", "empty", "blank"],
)
def test_malformed_json_is_400(
    setup: tuple[GatewayServer, FakeUpstream, str],
    unchanged: Callable[[], None],
    content: bytes,
    says: tuple[str, ...],
) -> None:
    gateway, _fake, key = setup
    for path in ENDPOINT_PATHS:
        response = post(gateway, path, key, content)
        error = assert_error(response, 400, param=None, code=None, says=says)
        assert error["type"] == "invalid_request_error"
        assert response.headers["x-request-id"].startswith("req_")
        assert "x-gateway-backend" not in response.headers  # no upstream was reached
    unchanged()


@pytest.mark.parametrize(
    ("content", "kind"),
    [(b"[1, 2]", "list"), (b'"gpt-4o-mini"', "str"), (b"42", "int"), (b"null", "NoneType"), (b"true", "bool")],
)
def test_body_that_is_not_an_object_is_400(
    setup: tuple[GatewayServer, FakeUpstream, str], unchanged: Callable[[], None], content: bytes, kind: str
) -> None:
    gateway, _fake, key = setup
    response = post(gateway, CHAT, key, content)
    assert_error(response, 400, param=None, code=None, says=("must be a JSON object", kind))
    unchanged()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"messages": MESSAGES}, ("missing", "model")),
        ({"model": None, "messages": MESSAGES}, ("missing", "model")),
        ({"model": 42, "messages": MESSAGES}, ("model", "string")),
        ({"model": ["gpt-4o-mini"], "messages": MESSAGES}, ("model", "string")),
        ({"model": {"name": "gpt-4o-mini"}, "messages": MESSAGES}, ("model", "string")),
        ({"model": "", "messages": MESSAGES}, ("model", "non-empty")),
        ({"model": "   ", "messages": MESSAGES}, ("model", "non-empty")),
    ],
    ids=["absent", "null", "int", "list", "object", "empty", "blank"],
)
def test_missing_or_non_string_model_is_400(
    setup: tuple[GatewayServer, FakeUpstream, str],
    unchanged: Callable[[], None],
    body: dict[str, Any],
    says: tuple[str, ...],
) -> None:
    gateway, _fake, key = setup
    response = post(gateway, CHAT, key, json.dumps(body).encode())
    assert_error(response, 400, param="model", code=None, says=says)
    unchanged()


def test_non_boolean_stream_is_400(
    setup: tuple[GatewayServer, FakeUpstream, str], unchanged: Callable[[], None]
) -> None:
    gateway, _fake, key = setup
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": "yes"}
    assert_error(post(gateway, CHAT, key, json.dumps(body).encode()), 400, param="stream", code=None, says=("stream",))
    unchanged()


def test_unknown_model_is_404_model_not_found(
    setup: tuple[GatewayServer, FakeUpstream, str], unchanged: Callable[[], None]
) -> None:
    gateway, _fake, key = setup
    body = {"model": "gpt-9-imaginary", "messages": MESSAGES, "input": "x", "prompt": "x"}
    for path in ENDPOINT_PATHS:
        response = post(gateway, path, key, json.dumps(body).encode())
        assert_error(response, 404, param="model", code="model_not_found", says=("gpt-9-imaginary",))
    unchanged()


def test_model_of_a_disabled_backend_is_404(
    own: tuple[GatewayServer, FakeUpstream, str],
) -> None:
    gateway, fake, key = own
    assert gateway.admin("PATCH", "/api/backends/main", json={"enabled": False}).status_code == 200
    with pytest.raises(openai.NotFoundError) as caught:
        gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.code == "model_not_found"
    assert fake.post_hits == 0


def test_openai_sdk_sees_the_errors_as_its_own_exceptions(
    setup: tuple[GatewayServer, FakeUpstream, str], unchanged: Callable[[], None]
) -> None:
    gateway, _fake, key = setup
    client = gateway.client(key)
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert not_found.value.code == "model_not_found"
    assert not_found.value.param == "model"  # type: ignore[attr-defined]
    with pytest.raises(openai.AuthenticationError):
        gateway.client("sk-gw-not-a-real-key").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_body={"stream": 1})
    assert bad.value.param == "stream"  # type: ignore[attr-defined]
    unchanged()


# -- client API: the key ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "sk-gw-no-scheme",
        "Bearer sk-gw-this-key-does-not-exist",
        "Bearer sk-upstream",  # the backend's key is not a client key
        "Bearer test-admin-token-0123456789",  # nor is the admin token
    ],
)
def test_missing_or_malformed_client_key_is_401(
    setup: tuple[GatewayServer, FakeUpstream, str],
    unchanged: Callable[[], None],
    authorization: str | None,
) -> None:
    gateway, _fake, _key = setup
    headers = {} if authorization is None else {"authorization": authorization}
    body = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "input": "x", "prompt": "x"}).encode()
    for path in ENDPOINT_PATHS:
        response = post(gateway, path, None, body, **headers)
        assert_error(response, 401, param=None, code="invalid_api_key", says=("key",))
        assert response.headers["x-request-id"].startswith("req_")
    response = httpx.get(gateway.url + "/v1/models", headers=headers, timeout=10)
    assert_error(response, 401, param=None, code="invalid_api_key", says=("key",))
    unchanged()


def test_unknown_paths_and_methods_answer_openai_errors(
    setup: tuple[GatewayServer, FakeUpstream, str], unchanged: Callable[[], None]
) -> None:
    gateway, _fake, key = setup
    wrong_method = httpx.get(gateway.url + CHAT, headers={"authorization": f"Bearer {key}"}, timeout=10)
    assert_error(wrong_method, 405, param=None, code="method_not_allowed", says=("GET", CHAT))
    assert "POST" in wrong_method.headers["allow"]
    unknown = post(gateway, "/v1/chat/complete", key, b"{}")
    assert_error(unknown, 404, param=None, code="not_found", says=("Invalid URL (POST /v1/chat/complete)",))
    admin_unknown = gateway.admin("GET", "/api/nothing")
    assert_error(admin_unknown, 404, param=None, code="not_found", says=("/api/nothing",))
    page = httpx.get(gateway.url + "/no-such-page", timeout=10)  # the dashboard's paths keep plain answers
    assert page.status_code == 404 and not page.headers["content-type"].startswith("application/json")
    unchanged()


def test_key_is_checked_before_the_body(
    setup: tuple[GatewayServer, FakeUpstream, str], unchanged: Callable[[], None]
) -> None:
    gateway, _fake, _key = setup
    # Without a valid key, nothing about the body or the models is revealed.
    assert post(gateway, CHAT, "sk-gw-wrong", b"not json").status_code == 401
    body = json.dumps({"model": "secret-model-name", "messages": MESSAGES}).encode()
    assert post(gateway, CHAT, "sk-gw-wrong", body).status_code == 401
    unchanged()


def test_revoked_key_is_401_and_changes_nothing(own: tuple[GatewayServer, FakeUpstream, str]) -> None:
    gateway, fake, key = own
    assert gateway.admin("DELETE", "/api/keys/alice").status_code == 200
    before = snapshot(gateway)

    body = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES}).encode()
    response = post(gateway, CHAT, key, body)

    assert_error(response, 401, param=None, code="invalid_api_key", says=("revoked",))
    assert snapshot(gateway) == before
    assert fake.post_hits == 0


def test_disabled_key_is_401(own: tuple[GatewayServer, FakeUpstream, str]) -> None:
    gateway, fake, key = own
    assert gateway.admin("PATCH", "/api/keys/alice", json={"enabled": False}).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert gateway.admin("PATCH", "/api/keys/alice", json={"enabled": True}).status_code == 200
    gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert fake.post_hits == 1


# -- client API: the size --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, shared_fake: FakeUpstream) -> Iterator[tuple[GatewayServer, str]]:
    gateway, key = start_gateway(tmp_path_factory.mktemp("small"), shared_fake, max_body_mb=0.01)  # 10,485 bytes
    yield gateway, key
    gateway.stop()


def big_body(size: int) -> bytes:
    filler = "x" * size
    return json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": filler}]}).encode()


def test_body_over_the_limit_is_413(small: tuple[GatewayServer, str], shared_fake: FakeUpstream) -> None:
    gateway, key = small
    fake = shared_fake
    fake.reset_records()
    before = snapshot(gateway)

    response = post(gateway, CHAT, key, big_body(20_000))

    assert_error(response, 413, param=None, code="request_too_large", says=("10485 bytes",))
    assert snapshot(gateway) == before
    assert fake.post_hits == 0


def test_chunked_body_over_the_limit_is_413(small: tuple[GatewayServer, str], shared_fake: FakeUpstream) -> None:
    gateway, key = small
    fake = shared_fake
    fake.reset_records()
    before = snapshot(gateway)
    body = big_body(50_000)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = httpx.post(
        gateway.url + CHAT,
        content=chunks(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        timeout=10,
    )

    assert_error(response, 413, param=None, code="request_too_large", says=("10485 bytes",))
    assert snapshot(gateway) == before
    assert fake.post_hits == 0


def test_body_just_under_the_limit_is_served(small: tuple[GatewayServer, str], shared_fake: FakeUpstream) -> None:
    gateway, key = small
    fake = shared_fake
    fake.reset_records()
    body = big_body(10_000)
    assert len(body) <= 10_485
    assert post(gateway, CHAT, key, body).status_code == 200
    assert fake.requests[-1].body == body


def test_openai_sdk_gets_413_as_an_api_error(small: tuple[GatewayServer, str]) -> None:
    gateway, key = small
    with pytest.raises(openai.APIStatusError) as caught:
        gateway.client(key).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * 20_000}]
        )
    assert caught.value.status_code == 413


# -- admin API -------------------------------------------------------------------------------------


@pytest.fixture
def admin_unchanged(setup: tuple[GatewayServer, FakeUpstream, str]) -> Iterator[Callable[[], None]]:
    gateway = setup[0]
    before = snapshot(gateway)

    def check() -> None:
        assert snapshot(gateway) == before

    yield check


@pytest.fixture
def gateway(setup: tuple[GatewayServer, FakeUpstream, str]) -> GatewayServer:
    """The shared gateway (overrides conftest's: the admin tests below only check they change nothing)."""
    return setup[0]


@pytest.fixture
def fake(setup: tuple[GatewayServer, FakeUpstream, str]) -> FakeUpstream:
    return setup[1]


def valid_backend(fake: FakeUpstream, **changes: Any) -> dict[str, Any]:
    return {"name": "second", "base_url": fake.url, "models": ["gpt-4o-mini"], **changes}


@pytest.mark.parametrize(
    ("base_url", "says"),
    [
        ("ftp://example.com/v1", ("base_url", "ftp://example.com/v1", "http")),
        ("file:///etc/passwd", ("base_url", "http")),
        ("javascript:alert(1)", ("base_url", "http")),
        ("http://", ("base_url", "http")),
        ("https:///v1", ("base_url", "http")),
        ("example.com/v1", ("base_url", "http")),
        ("", ("base_url",)),
        ("http://169.254.169.254/latest/meta-data", ("base_url", "metadata")),
        ("http://metadata.google.internal/computeMetadata/v1", ("base_url", "metadata")),
        ("http://[fd00:ec2::254]/", ("base_url", "metadata")),
        ("http://169.254.170.2/v2/credentials", ("base_url", "metadata")),
        # Other spellings of 169.254.169.254 that the resolver (and aiohttp) accept.
        ("http://0xa9fea9fe/latest", ("base_url", "metadata")),
        ("http://2852039166/latest", ("base_url", "metadata")),
        ("http://0251.0376.0251.0376/", ("base_url", "metadata")),
        ("http://[::ffff:169.254.169.254]/", ("base_url", "metadata")),
        ("http://metadata.google.internal./computeMetadata/v1", ("base_url", "metadata")),
        ("http://user:pass@example.com/v1", ("base_url", "credentials")),
        ("http://example.com:99999/v1", ("base_url",)),
    ],
)
def test_invalid_base_url_is_400(
    gateway: GatewayServer,
    fake: FakeUpstream,
    admin_unchanged: Callable[[], None],
    base_url: str,
    says: tuple[str, ...],
) -> None:
    response = gateway.admin("POST", "/api/backends", json=valid_backend(fake, base_url=base_url))
    assert_error(response, 400, param="base_url", code=None, says=says)
    admin_unchanged()


def test_invalid_base_url_in_a_patch_is_400(gateway: GatewayServer, admin_unchanged: Callable[[], None]) -> None:
    response = gateway.admin("PATCH", "/api/backends/main", json={"base_url": "http://169.254.169.254/"})
    assert_error(response, 400, param="base_url", code=None, says=("metadata",))
    admin_unchanged()


def test_duplicate_backend_name_is_409(
    gateway: GatewayServer, fake: FakeUpstream, admin_unchanged: Callable[[], None]
) -> None:
    response = gateway.admin("POST", "/api/backends", json=valid_backend(fake, name="main"))
    assert_error(response, 409, param="name", code="conflict", says=("main", "already exists"))
    admin_unchanged()


def test_renaming_onto_an_existing_backend_is_409(own: tuple[GatewayServer, FakeUpstream, str]) -> None:
    gateway, fake, _key = own
    gateway.add_backend("other", fake.url, ["b"])
    before = snapshot(gateway)
    response = gateway.admin("PATCH", "/api/backends/other", json={"name": "main"})
    assert_error(response, 409, param="name", code="conflict", says=("main",))
    assert snapshot(gateway) == before


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("pool", "secondary", ("pool", "'secondary'")),
        ("pool", None, ("pool", "None")),
        ("rpm", -1, ("rpm", "-1")),
        ("rpm", 0, ("rpm", "0")),
        ("tpm", -500, ("tpm", "-500")),
        ("priority", -1, ("priority", "-1")),
        ("weight", 0, ("weight", "0")),
        ("weight", -3, ("weight", "-3")),
        ("timeout", -1, ("timeout", "-1")),
        ("timeout", 0, ("timeout", "0")),
        ("rpm", "500", ("rpm", "'500'")),
        ("rpm", 1.5, ("rpm", "1.5")),
        ("rpm", True, ("rpm", "True")),
        ("tpm", [1], ("tpm",)),
        ("priority", "high", ("priority", "'high'")),
        ("weight", None, ("weight", "None")),
        ("timeout", "60", ("timeout", "'60'")),
        ("enabled", "yes", ("enabled", "'yes'")),
        ("enabled", 1, ("enabled", "1")),
        ("models", "gpt-4o-mini", ("models", "'gpt-4o-mini'")),
        ("models", {"gpt": 1}, ("models",)),
        ("name", 5, ("name", "5")),
        ("name", "", ("name",)),
        ("name", "a/b", ("name", "'a/b'")),
        ("api_key", 12345, ("api_key",)),
    ],
)
def test_wrong_types_and_negative_limits_are_400_naming_the_field(
    gateway: GatewayServer,
    fake: FakeUpstream,
    admin_unchanged: Callable[[], None],
    field: str,
    value: Any,
    says: tuple[str, ...],
) -> None:
    response = gateway.admin("POST", "/api/backends", json=valid_backend(fake, **{field: value}))
    assert_error(response, 400, param=field, code=None, says=says)
    if field != "name":
        patched = gateway.admin("PATCH", "/api/backends/main", json={field: value})
        assert_error(patched, 400, param=field, code=None, says=says)
    admin_unchanged()


@pytest.mark.parametrize(
    ("models", "param"),
    [
        ([5], "models[0]"),
        (["a", ""], "models[1].name"),
        ([{"name": "fast", "upstream": 3}], "models[0].upstream"),
        ([{"name": "fast", "target": "x"}], "models[0]"),
        (["a", "a"], "models[1]"),
    ],
)
def test_bad_model_entries_are_400_naming_the_entry(
    gateway: GatewayServer, fake: FakeUpstream, admin_unchanged: Callable[[], None], models: list[Any], param: str
) -> None:
    response = gateway.admin("POST", "/api/backends", json=valid_backend(fake, models=models))
    assert_error(response, 400, param=param, code=None, says=(param,))
    admin_unchanged()


def test_unknown_and_missing_backend_fields_are_400(
    gateway: GatewayServer, fake: FakeUpstream, admin_unchanged: Callable[[], None]
) -> None:
    response = gateway.admin("POST", "/api/backends", json=valid_backend(fake, api_kye="sk-typo"))
    assert_error(response, 400, param="api_kye", code=None, says=("unknown field", "api_kye"))
    assert "sk-typo" not in response.text  # a mistyped key field may hold a secret: never echoed
    response = gateway.admin("POST", "/api/backends", json={"name": "second"})
    assert_error(response, 400, param="base_url", code=None, says=("base_url", "required"))
    response = gateway.admin("POST", "/api/backends", json={"base_url": fake.url})
    assert_error(response, 400, param="name", code=None, says=("name", "required"))
    admin_unchanged()


def test_missing_env_variable_in_api_key_is_400(
    gateway: GatewayServer, fake: FakeUpstream, admin_unchanged: Callable[[], None]
) -> None:
    body = valid_backend(fake, api_key="env:GATEWAY_TEST_SURELY_UNSET_VARIABLE")
    response = gateway.admin("POST", "/api/backends", json=body)
    assert_error(response, 400, param="api_key", code=None, says=("GATEWAY_TEST_SURELY_UNSET_VARIABLE",))
    admin_unchanged()


@pytest.mark.parametrize(
    ("content", "says"),
    [(b"{", ("not valid JSON",)), (b"[]", ("JSON object", "list")), (b"", ("not valid JSON",))],
)
def test_admin_body_that_is_not_a_json_object_is_400(
    gateway: GatewayServer, admin_unchanged: Callable[[], None], content: bytes, says: tuple[str, ...]
) -> None:
    for method, path in (("POST", "/api/backends"), ("PATCH", "/api/backends/main"), ("POST", "/api/keys")):
        response = gateway.admin(method, path, content=content, headers={"content-type": "application/json"})
        assert_error(response, 400, param=None, code=None, says=says)
    admin_unchanged()


def test_unknown_backend_is_404(gateway: GatewayServer, admin_unchanged: Callable[[], None]) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = gateway.admin(method, "/api/backends/nope", json={"rpm": 5} if method == "PATCH" else None)
        assert_error(response, 404, param=None, code="not_found", says=("nope",))
    admin_unchanged()


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"name": "bob", "rpm": -1}, "rpm", ("rpm", "-1")),
        ({"name": "bob", "rpm": "10"}, "rpm", ("rpm", "'10'")),
        ({"name": "bob", "budget_usd": -5}, "budget_usd", ("budget_usd", "-5")),
        ({"name": "bob", "budget_usd": "lots"}, "budget_usd", ("budget_usd", "'lots'")),
        ({"name": "bob", "enabled": "no"}, "enabled", ("enabled", "'no'")),
        ({"name": "bob", "colour": "red"}, "colour", ("unknown field", "colour")),
        ({"name": ""}, "name", ("name",)),
        ({"name": 7}, "name", ("name", "7")),
        ({}, "name", ("name",)),
        ({"name": "alice"}, "name", ("alice", "already exists")),
    ],
)
def test_bad_client_key_fields_are_rejected_naming_the_field(
    gateway: GatewayServer, admin_unchanged: Callable[[], None], body: dict[str, Any], param: str, says: tuple[str, ...]
) -> None:
    response = gateway.admin("POST", "/api/keys", json=body)
    status = 409 if body.get("name") == "alice" else 400
    assert_error(response, status, param=param, code="conflict" if status == 409 else None, says=says)
    admin_unchanged()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input_per_mtok": -1, "output_per_mtok": 1}, "input_per_mtok"),
        ({"input_per_mtok": 1, "output_per_mtok": "2"}, "output_per_mtok"),
        ({"input_per_mtok": 1, "output_per_mtok": 2, "cached_input_per_mtok": -0.5}, "cached_input_per_mtok"),
        ({"input_per_mtok": True, "output_per_mtok": 2}, "input_per_mtok"),
        ({"output_per_mtok": 2}, "input_per_mtok"),
        ({"input_per_mtok": 1, "output_per_mtok": 2, "per_request": 1}, "per_request"),
    ],
)
def test_bad_prices_are_400_naming_the_field(
    gateway: GatewayServer, admin_unchanged: Callable[[], None], body: dict[str, Any], param: str
) -> None:
    response = gateway.admin("PUT", "/api/pricing/gpt-4o-mini", json=body)
    assert_error(response, 400, param=param, code=None, says=(param,))
    admin_unchanged()


ADMIN_CALLS = (
    ("GET", "/api/backends", None),
    ("POST", "/api/backends", {"name": "evil", "base_url": "http://example.com/v1", "models": ["m"]}),
    ("PATCH", "/api/backends/main", {"base_url": "http://example.com/v1"}),
    ("DELETE", "/api/backends/main", None),
    ("GET", "/api/keys", None),
    ("POST", "/api/keys", {"name": "evil"}),
    ("DELETE", "/api/keys/alice", None),
    ("PUT", "/api/pricing/gpt-4o-mini", {"input_per_mtok": 0, "output_per_mtok": 0}),
    ("GET", "/api/usage/summary", None),
    ("GET", "/api/requests", None),
    ("GET", "/api/status", None),
    ("GET", "/metrics", None),
)


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-admin-token-0000000", "test-admin-token-0123456789", "Bearer"]
)
def test_admin_api_without_the_admin_token_is_401(
    gateway: GatewayServer, admin_unchanged: Callable[[], None], authorization: str | None
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    for method, path, body in ADMIN_CALLS:
        response = httpx.request(method, gateway.url + path, json=body, headers=headers, timeout=10)
        assert response.status_code == 401, (method, path)
        if path.startswith("/api/"):
            assert_error(response, 401, param=None, code="invalid_api_key", says=("admin token",))
    admin_unchanged()


def test_a_client_key_is_not_an_admin_token(own: tuple[GatewayServer, FakeUpstream, str]) -> None:
    gateway = own[0]
    key = gateway.admin("POST", "/api/keys", json={"name": "bob"}).json()["key"]
    before = snapshot(gateway)
    response = httpx.post(
        gateway.url + "/api/keys", json={"name": "mallory"}, headers={"authorization": f"Bearer {key}"}, timeout=10
    )
    assert_error(response, 401, param=None, code="invalid_api_key", says=("admin token",))
    assert snapshot(gateway) == before


def test_refused_requests_are_counted_in_metrics_only(own: tuple[GatewayServer, FakeUpstream, str]) -> None:
    gateway, _fake, key = own
    before = snapshot(gateway)
    post(gateway, CHAT, key, b"{")
    post(gateway, CHAT, key, b"[]")
    post(gateway, CHAT, key, json.dumps({"model": "nope", "messages": MESSAGES}).encode())
    post(gateway, CHAT, None, b"{}")

    assert snapshot(gateway) == before
    metrics = gateway.admin("GET", "/metrics").text
    assert 'gateway_refused_requests_total{status="400"} 2.0' in metrics
    assert 'gateway_refused_requests_total{status="404"} 1.0' in metrics
    assert 'gateway_refused_requests_total{status="401"} 1.0' in metrics
