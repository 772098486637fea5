"""The admin API (DESIGN 2.5): backends, keys, pricing, usage, requests, status, health."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import aiosqlite
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import db
from gateway.backends import BACKEND_FIELDS, NEW_BACKEND_DEFAULTS, InvalidBackend, validate_backend_fields
from gateway.client_api import error_response
from gateway.errors import BadRequest, Conflict, GatewayError, NotFound, Unauthorized, UpstreamFailed
from gateway.pricing import BUILTIN_PRICES, InvalidPrice, find_price, validate_price
from gateway.registry import backend_columns
from gateway.status import backend_status
from gateway.tokens import hash_secret, last4, new_client_key

if TYPE_CHECKING:
    from gateway.app import Gateway

Handler = Callable[[Request, "Gateway"], Awaitable[Any]]


def json_response(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status, media_type="application/json")


def is_admin(request: Request, gateway: Gateway) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token and gateway.is_admin_token(token.strip()):
        return True
    session_check = getattr(request.app.state, "session_check", None)
    return bool(session_check and session_check(request))


def admin(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Admin auth, then the handler; GatewayErrors become OpenAI-shaped errors."""

    async def endpoint(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        try:
            if not is_admin(request, gateway):
                raise Unauthorized("Admin token required: send 'Authorization: Bearer <admin token>'")
            result = await handler(request, gateway)
        except GatewayError as e:
            return error_response(e)
        except sqlite3.OperationalError as e:  # locked or read-only database: nothing was changed
            return error_response(UpstreamFailed(f"The database refused the change: {e}", 503, code="database_busy"))
        return result if isinstance(result, Response) else json_response(result)

    return endpoint


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"Request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"Request body must be a JSON object, not {type(body).__name__}")
    return body


# -- backends -------------------------------------------------------------------------------


def backend_view(row: sqlite3.Row, models: list[Mapping[str, str]]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "base_url": row["base_url"],
        # Write-only: reads show its last four characters (none of a key under 8 characters), null if unset.
        "api_key": row["api_key_last4"] if row["api_key_sealed"] else None,
        "api_key_set": row["api_key_sealed"] is not None,
        "pool": row["pool"],
        "models": models,
        "rpm": row["rpm"],
        "tpm": row["tpm"],
        "priority": row["priority"],
        "weight": row["weight"],
        "timeout": row["timeout"],
        "enabled": bool(row["enabled"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


async def backend_views(conn: aiosqlite.Connection) -> list[dict[str, Any]]:
    models: dict[str, list[Mapping[str, str]]] = {}
    for m in await db.list_backend_models(conn):
        entry = m["name"] if m["name"] == m["upstream"] else {"name": m["name"], "upstream": m["upstream"]}
        models.setdefault(m["backend"], []).append(entry)
    return [backend_view(r, models.get(r["name"], [])) for r in await db.list_backend_rows(conn)]


async def _backend_or_404(gateway: Gateway, name: str) -> dict[str, Any]:
    for view in await backend_views(gateway.writer):
        if view["name"] == name:
            return view
    raise NotFound(f"No backend named '{name}'")


def _validated(body: Mapping[str, Any], gateway: Gateway, *, partial: bool) -> dict[str, object]:
    try:
        # env: references in the admin API read the gateway process's environment.
        import os

        return validate_backend_fields(body, os.environ, partial=partial)
    except InvalidBackend as e:
        raise BadRequest(str(e), param=e.field) from None


async def list_backends(request: Request, gateway: Gateway) -> Any:
    return {"data": await backend_views(gateway.writer)}


async def create_backend(request: Request, gateway: Gateway) -> Any:
    fields = _validated(await json_body(request), gateway, partial=False)
    name = str(fields["name"])
    if await db.backend_exists(gateway.writer, name):
        raise Conflict(f"A backend named '{name}' already exists", param="name")
    columns = backend_columns({**NEW_BACKEND_DEFAULTS, **fields}, gateway.sealer)
    await db.write_config(gateway.writer, db.insert_backend_sql(columns, time.time()))
    await gateway.reload()
    return json_response(await _backend_or_404(gateway, name), 201)


async def get_backend(request: Request, gateway: Gateway) -> Any:
    return await _backend_or_404(gateway, request.path_params["name"])


async def patch_backend(request: Request, gateway: Gateway) -> Any:
    name = request.path_params["name"]
    await _backend_or_404(gateway, name)
    fields = _validated(await json_body(request), gateway, partial=True)
    new_name = str(fields.get("name", name))
    if new_name != name and await db.backend_exists(gateway.writer, new_name):
        raise Conflict(f"A backend named '{new_name}' already exists", param="name")
    columns = backend_columns(fields, gateway.sealer)
    await db.write_config(gateway.writer, db.update_backend_sql(name, columns, time.time()))
    await gateway.reload()
    return await _backend_or_404(gateway, new_name)


async def delete_backend(request: Request, gateway: Gateway) -> Any:
    name = request.path_params["name"]
    await _backend_or_404(gateway, name)
    await db.write_config(gateway.writer, db.delete_backend_sql(name))
    await gateway.reload()
    return {"name": name, "deleted": True}


# -- client keys ----------------------------------------------------------------------------


def _key_limits(body: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    allowed = {"name", "rpm", "budget_usd", "enabled"} if not partial else {"rpm", "budget_usd", "enabled"}
    for field in body:
        if field not in allowed:
            raise BadRequest(f"unknown field '{field}' (known: {', '.join(sorted(allowed))})", param=field)
    out: dict[str, Any] = {}
    if "rpm" in body:
        rpm = body["rpm"]
        if rpm is not None and (isinstance(rpm, bool) or not isinstance(rpm, int) or rpm < 1):
            raise BadRequest(f"rpm has value {rpm!r}; expected an integer >= 1 or null", param="rpm")
        out["rpm"] = rpm
    if "budget_usd" in body:
        budget = body["budget_usd"]
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 <= budget < 1e12
        ):
            raise BadRequest(f"budget_usd has value {budget!r}; expected a number >= 0 or null", param="budget_usd")
        out["budget_usd"] = None if budget is None else float(budget)
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise BadRequest(f"enabled has value {body['enabled']!r}; expected true or false", param="enabled")
        out["enabled"] = int(body["enabled"])
    return out


def key_view(row: sqlite3.Row, spent: float) -> dict[str, Any]:
    return {
        "name": row["name"],
        "key": None,
        "key_hint": f"...{row['key_last4']}",
        "rpm": row["rpm"],
        "budget_usd": row["budget_usd"],
        "enabled": bool(row["enabled"]) and row["revoked_at"] is None,
        "revoked": row["revoked_at"] is not None,
        "spend_this_month_usd": round(spent, 6),
        "created_at": row["created_at"],
        "revoked_at": row["revoked_at"],
        "last_used_at": row["last_used_at"],
    }


def validate_key_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 64 or name != name.strip() or "/" in name:
        raise BadRequest(
            f"name has value {name!r}; expected 1-64 characters without '/' or surrounding spaces", param="name"
        )
    return name


async def create_key(gateway: Gateway, name: str, limits: Mapping[str, Any]) -> dict[str, Any]:
    """Shared by the admin API and the dashboard: the answer carries the secret, once."""
    existing = await db.get_key_row(gateway.writer, name)
    if existing is not None and existing["revoked_at"] is None:
        raise Conflict(f"A key named '{name}' already exists", param="name")
    secret = new_client_key()
    enabled = bool(limits.get("enabled", 1))
    sql = db.insert_key_sql(
        name, hash_secret(secret), last4(secret), limits.get("rpm"), limits.get("budget_usd"), enabled, time.time()
    )
    await db.write_config(gateway.writer, [sql])
    await gateway.reload()
    row = await db.get_key_row(gateway.writer, name)
    assert row is not None
    view = key_view(row, 0.0)
    view["key"] = secret
    return view


async def list_keys(request: Request, gateway: Gateway) -> Any:
    spend = gateway.routing.spend if gateway.routing.spend_month == gateway.month_of(time.time()) else {}
    return {"data": [key_view(r, spend.get(r["name"], 0.0)) for r in await db.list_key_rows(gateway.writer)]}


async def post_key(request: Request, gateway: Gateway) -> Any:
    body = await json_body(request)
    name = validate_key_name(body.get("name"))
    return json_response(await create_key(gateway, name, _key_limits(body, partial=False)), 201)


async def patch_key(request: Request, gateway: Gateway) -> Any:
    name = request.path_params["name"]
    row = await db.get_key_row(gateway.writer, name)
    if row is None or row["revoked_at"] is not None:
        raise NotFound(f"No active key named '{name}'")
    changes = _key_limits(await json_body(request), partial=True)
    if changes:
        await db.write_config(gateway.writer, [db.update_key_sql(name, changes)])
        await gateway.reload()
    row = await db.get_key_row(gateway.writer, name)
    assert row is not None
    return key_view(row, gateway.routing.spend.get(name, 0.0))


async def revoke_key(gateway: Gateway, name: str) -> None:
    row = await db.get_key_row(gateway.writer, name)
    if row is None or row["revoked_at"] is not None:
        raise NotFound(f"No active key named '{name}'")
    await db.write_config(gateway.writer, [db.revoke_key_sql(name, time.time())])
    await gateway.reload()  # revoked for every following request, not after a poll


async def delete_key(request: Request, gateway: Gateway) -> Any:
    await revoke_key(gateway, request.path_params["name"])
    return {"name": request.path_params["name"], "revoked": True}


# -- pricing --------------------------------------------------------------------------------


async def list_pricing(request: Request, gateway: Gateway) -> Any:
    overrides = gateway.registry.prices
    rows = []
    for model in sorted({*BUILTIN_PRICES, *overrides}):
        price, source = find_price(model, overrides)
        assert price is not None
        rows.append({"model": model, **price.as_dict(), "source": source})
    return {"data": rows}


async def put_pricing(request: Request, gateway: Gateway) -> Any:
    model = request.path_params["model"]
    if not model.strip() or len(model) > 200:
        raise BadRequest("model must be 1-200 characters", param="model")
    try:
        price = validate_price(await json_body(request))
    except InvalidPrice as e:
        raise BadRequest(str(e), param=e.field) from None
    sql = db.upsert_price_sql(
        model, price.input_per_mtok, price.output_per_mtok, price.cached_input_per_mtok, time.time()
    )
    await db.write_config(gateway.writer, [sql])
    await gateway.reload()
    return {"model": model, **price.as_dict(), "source": "override"}


async def delete_pricing(request: Request, gateway: Gateway) -> Any:
    model = request.path_params["model"]
    if model not in gateway.registry.prices:
        raise NotFound(f"No price override for '{model}'")
    await db.write_config(gateway.writer, [db.delete_price_sql(model)])
    await gateway.reload()
    return {"model": model, "deleted": True}


async def status(request: Request, gateway: Gateway) -> Any:
    return {"data": backend_status(gateway)}


async def healthz(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    stats = gateway.recorder.stats
    body = {
        "status": "ok" if stats.last_error is None else "degraded",
        "usage": {
            "pending": gateway.recorder.backlog,
            "recorded": stats.recorded,
            "written": stats.written,
            "dropped": stats.dropped,
            "flush_failures": stats.flush_failures,
            "last_error": stats.last_error,
        },
    }
    return json_response(body)


async def metrics(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    if not gateway.settings.metrics_public and not is_admin(request, gateway):
        return error_response(Unauthorized("Admin token required for /metrics (or set [server].metrics_public)"))
    from gateway.metrics import CONTENT_TYPE

    return Response(gateway.metrics.render(), media_type=CONTENT_TYPE)


def admin_routes() -> list[Route]:
    from gateway.admin_usage import (
        active_requests,
        get_request,
        list_requests,
        usage_aggregate,
        usage_daily,
        usage_heatmap,
        usage_hourly,
        usage_summary,
    )

    api = [
        ("/api/backends", list_backends, "GET"),
        ("/api/backends", create_backend, "POST"),
        ("/api/backends/{name}", get_backend, "GET"),
        ("/api/backends/{name}", patch_backend, "PATCH"),
        ("/api/backends/{name}", delete_backend, "DELETE"),
        ("/api/keys", list_keys, "GET"),
        ("/api/keys", post_key, "POST"),
        ("/api/keys/{name}", patch_key, "PATCH"),
        ("/api/keys/{name}", delete_key, "DELETE"),
        ("/api/pricing", list_pricing, "GET"),
        ("/api/pricing/{model:path}", put_pricing, "PUT"),
        ("/api/pricing/{model:path}", delete_pricing, "DELETE"),
        ("/api/usage/summary", usage_summary, "GET"),
        ("/api/usage/aggregate", usage_aggregate, "GET"),
        ("/api/usage/hourly", usage_hourly, "GET"),
        ("/api/usage/daily", usage_daily, "GET"),
        ("/api/usage/heatmap", usage_heatmap, "GET"),
        ("/api/requests", list_requests, "GET"),
        ("/api/requests/active", active_requests, "GET"),
        ("/api/requests/{request_id}", get_request, "GET"),
        ("/api/status", status, "GET"),
    ]
    routes = [Route(path, admin(handler), methods=[method]) for path, handler, method in api]
    routes.append(Route("/healthz", healthz, methods=["GET"]))
    routes.append(Route("/metrics", metrics, methods=["GET"]))
    return routes


__all__ = ["BACKEND_FIELDS", "admin_routes", "create_key", "revoke_key"]
