"""Backends from the dashboard: the form <-> fields mapping, saving, and the "test" probe.

Validation is the admin API's (gateway/backends.py), so a form accepts exactly what
`POST /api/backends` accepts. The probe calls the backend's `/models` through the gateway's
shared client, with the backend's own key, and reports what came back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from gateway import db
from gateway.backends import NEW_BACKEND_DEFAULTS, InvalidBackend, validate_backend_fields
from gateway.errors import BadRequest, Conflict, NotFound
from gateway.registry import backend_columns

if TYPE_CHECKING:
    from gateway.app import Gateway

PROBE_TIMEOUT_S = 10.0
PROBE_MAX_BYTES = 1 << 20


def form_values(view: Mapping[str, Any] | None) -> dict[str, str]:
    """The form's text fields for an existing backend (its admin API view), or for a new one."""
    if view is None:
        return {
            "name": "",
            "base_url": "",
            "pool": "primary",
            "models": "",
            "rpm": "",
            "tpm": "",
            "priority": "0",
            "weight": "1",
            "timeout": "60",
            "enabled": "on",
        }
    lines = [m if isinstance(m, str) else f"{m['name']} = {m['upstream']}" for m in view["models"]]
    return {
        "name": view["name"],
        "base_url": view["base_url"],
        "pool": view["pool"],
        "models": "\n".join(lines),
        "rpm": "" if view["rpm"] is None else str(view["rpm"]),
        "tpm": "" if view["tpm"] is None else str(view["tpm"]),
        "priority": str(view["priority"]),
        "weight": str(view["weight"]),
        "timeout": f"{view['timeout']:g}",
        "enabled": "on" if view["enabled"] else "",
    }


def _number(
    form: Mapping[str, str], name: str, kind: type[int] | type[float], default: float | None = None
) -> int | float | None:
    text = form.get(name, "").strip()
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        expected = "a whole number" if kind is int else "a number"
        raise InvalidBackend(name, f"{name} has value '{text}'; expected {expected}") from None


def parse_models(text: str) -> list[object]:
    """One model per line (or comma-separated); `alias = upstream` (or `alias -> upstream`) maps a name."""
    models: list[object] = []
    for item in text.replace(",", "\n").splitlines():
        item = item.strip()
        if not item:
            continue
        for sep in ("->", "="):
            if sep in item:
                name, _, upstream = item.partition(sep)
                models.append({"name": name.strip(), "upstream": upstream.strip()})
                break
        else:
            models.append(item)
    return models


def fields_from_form(form: Mapping[str, str], *, is_new: bool) -> dict[str, object]:
    """Validated backend fields; a blank key on an edit keeps the stored one unless 'clear_key' is ticked."""
    raw: dict[str, object] = {
        "name": form.get("name", "").strip(),
        "base_url": form.get("base_url", "").strip(),
        "pool": form.get("pool", "primary"),
        "models": parse_models(form.get("models", "")),
        "rpm": _number(form, "rpm", int),
        "tpm": _number(form, "tpm", int),
        "priority": _number(form, "priority", int, 0),
        "weight": _number(form, "weight", int, 1),
        "timeout": _number(form, "timeout", float, 60.0),
        "enabled": form.get("enabled") == "on",
    }
    api_key = form.get("api_key", "")
    if api_key or is_new or form.get("clear_key") == "on":
        raw["api_key"] = api_key.strip()
    # env: references read the gateway process's environment, as in the admin API.
    return validate_backend_fields(raw, os.environ, partial=not is_new)


async def save_backend(gateway: Gateway, fields: dict[str, object], old_name: str | None) -> str:
    """Insert (old_name None) or update a backend; returns its name. Raises Conflict or NotFound."""
    name = str(fields.get("name", old_name))
    if old_name is not None and not await db.backend_exists(gateway.writer, old_name):
        raise NotFound(f"No backend named '{old_name}'")
    if name != old_name and await db.backend_exists(gateway.writer, name):
        raise Conflict(f"A backend named '{name}' already exists", param="name")
    if old_name is None:
        columns = backend_columns({**NEW_BACKEND_DEFAULTS, **fields}, gateway.sealer)
        await db.write_config(gateway.writer, db.insert_backend_sql(columns, time.time()))
    else:
        columns = backend_columns(fields, gateway.sealer)
        await db.write_config(gateway.writer, db.update_backend_sql(old_name, columns, time.time()))
    await gateway.reload()
    return name


async def set_enabled(gateway: Gateway, name: str, enabled: bool) -> None:
    await save_backend(gateway, {"enabled": enabled}, name)


async def delete_backend(gateway: Gateway, name: str) -> None:
    if not await db.backend_exists(gateway.writer, name):
        raise NotFound(f"No backend named '{name}'")
    await db.write_config(gateway.writer, db.delete_backend_sql(name))
    await gateway.reload()


def invalid(e: InvalidBackend) -> BadRequest:
    return BadRequest(str(e), param=e.field)


async def probe_backend(gateway: Gateway, name: str) -> dict[str, Any]:
    """GET {base_url}/models with the backend's key; never follows a redirect."""
    backend = gateway.registry.backend(name)
    if backend is None:
        raise NotFound(f"No backend named '{name}'")
    headers = {k: v for k, v in gateway.registry.auth_headers.get(name, {}).items() if k != "content-type"}
    url = backend.base_url + "/models"
    started = time.perf_counter()
    result: dict[str, Any] = {"name": name, "url": url, "ok": False, "status": None, "models": [], "ms": None}
    timeout = aiohttp.ClientTimeout(total=min(backend.timeout, PROBE_TIMEOUT_S))
    try:
        async with gateway.session.get(url, headers=headers, timeout=timeout, allow_redirects=False) as response:
            body = await response.content.read(PROBE_MAX_BYTES)
            result["status"] = response.status
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        result["ms"] = round((time.perf_counter() - started) * 1000, 1)
        result["message"] = f"No answer from {url}: {type(e).__name__} {e}".strip()
        return result
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if 200 <= response.status < 300:
        items = parsed.get("data") if isinstance(parsed, dict) else None
        ids = [str(m.get("id")) for m in items if isinstance(m, dict)] if isinstance(items, list) else []
        result.update(ok=True, models=ids[:200], model_count=len(ids))
        listed = ", ".join(ids[:8]) + (", ..." if len(ids) > 8 else "")
        result["message"] = f"HTTP {response.status} in {result['ms']:.0f} ms: {len(ids)} models ({listed or 'none'})"
    else:
        error = parsed.get("error") if isinstance(parsed, dict) else None
        detail = error.get("message") if isinstance(error, dict) else None
        text = str(detail or body[:200].decode("utf-8", "replace")).strip()[:300]
        result["message"] = f"HTTP {response.status} in {result['ms']:.0f} ms: {text or 'no details'}"
    return result
