"""The admin API's read-only usage and request-log endpoints (DESIGN 2.5)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from gateway import queries
from gateway.errors import BadRequest, NotFound
from gateway.records import iso_ts

if TYPE_CHECKING:
    from gateway.app import Gateway


# -- usage ----------------------------------------------------------------------------------


def parse_time(value: str, name: str) -> datetime:
    """An ISO-8601 date or date-time; UTC when no offset is given."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} has value '{value}'; expected an ISO-8601 date or date-time", param=name) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def hour_range(request: Request, default: timedelta) -> tuple[str, str]:
    """[start, end) as hour-bucket strings; `end` defaults to now, `start` to end - default."""
    params = request.query_params
    end = parse_time(params["end"], "end") if params.get("end") else datetime.now(UTC)
    start = parse_time(params["start"], "start") if params.get("start") else end - default
    if start > end:
        raise BadRequest("start must not be after end", param="start")
    fmt = "%Y-%m-%dT%H:00:00Z"
    # A date-only end means the whole day; otherwise the hour holding `end` is included.
    if params.get("end") and len(params["end"]) == 10:
        end_bucket = (end + timedelta(days=1)).strftime(fmt)
    else:
        end_bucket = (end + timedelta(hours=1)).strftime(fmt)
    return start.strftime(fmt), end_bucket


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.lstrip("-").isdigit() or not low <= int(raw) <= high:
        raise BadRequest(f"{name} has value '{raw}'; expected an integer from {low} to {high}", param=name)
    return int(raw)


async def usage_summary(request: Request, gateway: Gateway) -> Any:
    start, end = hour_range(request, timedelta(days=30))
    return {"start": start, "end": end, **await queries.usage_summary(gateway.reader, start, end)}


async def usage_aggregate(request: Request, gateway: Gateway) -> Any:
    group_by = request.query_params.get("group_by", "model")
    if group_by not in queries.GROUPINGS:
        raise BadRequest(
            f"group_by has value '{group_by}'; expected one of model, backend, key, pool", param="group_by"
        )
    start, end = hour_range(request, timedelta(days=30))
    rows = await queries.usage_aggregate(gateway.reader, group_by, start, end)
    return {"group_by": group_by, "start": start, "end": end, "data": rows}


async def usage_hourly(request: Request, gateway: Gateway) -> Any:
    start, end = hour_range(request, timedelta(hours=24))
    filters = {k: v for k in ("backend", "model", "key") if (v := request.query_params.get(k))}
    return {"start": start, "end": end, "data": await queries.usage_hourly(gateway.reader, start, end, filters)}


async def usage_daily(request: Request, gateway: Gateway) -> Any:
    days = int_param(request, "days", 30, 1, 3660)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = (end - timedelta(days=days)).replace(hour=0)
    fmt = "%Y-%m-%dT%H:00:00Z"
    return {"days": days, "data": await queries.usage_daily(gateway.reader, start.strftime(fmt), end.strftime(fmt))}


async def usage_heatmap(request: Request, gateway: Gateway) -> Any:
    days = int_param(request, "days", 365, 1, 3660)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = (end - timedelta(days=days)).replace(hour=0)
    fmt = "%Y-%m-%dT%H:00:00Z"
    rows = await queries.usage_daily(gateway.reader, start.strftime(fmt), end.strftime(fmt))
    cells = [{"day": r["day"], "requests": r["requests"], "cost_usd": r["cost_usd"]} for r in rows]
    return {"days": days, "data": cells}


# -- requests -------------------------------------------------------------------------------


async def list_requests(request: Request, gateway: Gateway) -> Any:
    params = request.query_params
    filters: dict[str, Any] = {}
    for name in ("model", "backend", "key"):
        if params.get(name):
            filters[name] = params[name]
    if params.get("status"):
        filters["status"] = int_param(request, "status", 0, 0, 999)
    for flag in ("stream", "fallback"):
        if params.get(flag):
            if params[flag] not in ("true", "false", "1", "0"):
                raise BadRequest(f"{flag} has value '{params[flag]}'; expected true or false", param=flag)
            filters[flag] = int(params[flag] in ("true", "1"))
    limit = int_param(request, "limit", 50, 1, 1000)
    offset = int_param(request, "offset", 0, 0, 10_000_000)
    rows, total = await queries.list_requests(gateway.reader, filters, limit, offset)
    return {"data": rows, "total": total, "limit": limit, "offset": offset}


async def get_request(request: Request, gateway: Gateway) -> Any:
    request_id = request.path_params["request_id"]
    found = await queries.get_request(gateway.reader, request_id)
    if found is None:
        raise NotFound(f"No request '{request_id}' in the request log (it may not be flushed yet, or was pruned)")
    return found


async def active_requests(request: Request, gateway: Gateway) -> Any:
    """The requests in flight now, oldest first, and how many each backend is serving."""
    now = time.perf_counter()
    data = [
        {
            "request_id": call.request_id,
            "ts": iso_ts(call.wall_now),
            "endpoint": call.endpoint,
            "api_key": call.key.name,
            "requested_model": call.model,
            "model": call.record.model,  # '' until a backend answers
            "backend": call.backend,  # of the latest attempt; '' before the first
            "stream": call.stream,
            "attempts": len(call.record.attempts),
            "elapsed_ms": round((now - call.started) * 1000.0, 1),
        }
        for call in sorted(gateway.active.values(), key=lambda c: c.started)
    ]
    in_flight = gateway.routing.in_flight
    by_backend = [{"backend": name, "in_flight": n} for name, n in sorted(in_flight.items()) if n > 0]
    return {"data": data, "by_backend": by_backend}
