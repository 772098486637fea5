"""The pages that change configuration: backends, client keys and prices.

Each change is a CSRF-checked form POST answered by a redirect with a flash message,
except key creation, whose answer is the page showing the new key once (never stored,
never put in a cookie or a URL). Their JSON twins are the admin API's own endpoints.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway import admin, backend_forms, db, reports
from gateway.backends import InvalidBackend
from gateway.errors import BadRequest, GatewayError
from gateway.overview import backend_states
from gateway.pages import Web
from gateway.pricing import find_price, validate_price

if TYPE_CHECKING:
    from gateway.app import Gateway


async def key_rows(gateway: Gateway) -> list[dict[str, Any]]:
    spend = gateway.routing.spend if gateway.routing.spend_month == gateway.month_of(time.time()) else {}
    return [admin.key_view(r, spend.get(r["name"], 0.0)) for r in await db.list_key_rows(gateway.writer)]


def _key_limits(form: dict[str, str], *, with_enabled: bool) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    rpm_text, budget_text = form.get("rpm", "").strip(), form.get("budget_usd", "").strip()
    if rpm_text and (not rpm_text.isdigit() or int(rpm_text) < 1):
        raise BadRequest(f"rpm has value '{rpm_text}'; expected a whole number >= 1, or blank for none", param="rpm")
    limits["rpm"] = int(rpm_text) if rpm_text else None
    try:
        budget = float(budget_text) if budget_text else None
    except ValueError:
        budget = -1.0
    if budget is not None and not 0 <= budget < 1e12:
        raise BadRequest(f"budget has value '{budget_text}'; expected USD >= 0, or blank for none", param="budget_usd")
    limits["budget_usd"] = budget
    if with_enabled:
        limits["enabled"] = int(form.get("enabled") == "on")
    return limits


class Manage:
    def __init__(self, web: Web) -> None:
        self.web = web

    # -- backends ---------------------------------------------------------------------------

    async def _backends_page(
        self, request: Request, gateway: Gateway, form: dict[str, str] | None = None, error: str = "", status: int = 200
    ) -> Response:
        views = await admin.backend_views(gateway.writer)
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        fmt = "%Y-%m-%dT%H:00:00Z"
        attempts = await reports.attempts_by_backend(
            gateway.reader, (end - timedelta(hours=24)).strftime(fmt), end.strftime(fmt)
        )
        states = {s["name"]: s for s in backend_states(gateway, attempts)}
        context = {
            "backends": [{**v, "live": states.get(v["name"])} for v in views],
            "form": form if form is not None else backend_forms.form_values(None),
            "error": error,
        }
        return self.web.render(request, "backends.html", context, status)

    async def backends(self, request: Request, gateway: Gateway) -> Response:
        return await self._backends_page(request, gateway)

    async def create_backend(self, request: Request, gateway: Gateway, form: dict[str, str]) -> Response:
        try:
            name = await backend_forms.save_backend(gateway, backend_forms.fields_from_form(form, is_new=True), None)
        except InvalidBackend as e:
            return await self._backends_page(request, gateway, form, str(e), 400)
        except GatewayError as e:
            return await self._backends_page(request, gateway, form, e.message, e.status)
        return self.web.redirect(request, "/backends", "ok", f"Backend '{name}' added.")

    async def edit_backend(self, request: Request, gateway: Gateway) -> Response:
        name = request.path_params["name"]
        view = await admin.get_backend(request, gateway)
        return self._edit_page(request, name, view, backend_forms.form_values(view), "", 200)

    def _edit_page(
        self, request: Request, name: str, view: dict[str, Any], form: dict[str, str], error: str, status: int
    ) -> Response:
        context = {"name": name, "backend": view, "form": form, "error": error}
        return self.web.render(request, "backend_edit.html", context, status)

    async def update_backend(self, request: Request, gateway: Gateway, form: dict[str, str]) -> Response:
        name = request.path_params["name"]
        view = await admin.get_backend(request, gateway)
        try:
            fields = backend_forms.fields_from_form(form, is_new=False)
            new_name = await backend_forms.save_backend(gateway, fields, name)
        except InvalidBackend as e:
            return self._edit_page(request, name, view, form, str(e), 400)
        except GatewayError as e:
            return self._edit_page(request, name, view, form, e.message, e.status)
        return self.web.redirect(request, "/backends", "ok", f"Backend '{new_name}' saved.")

    async def enable_backend(self, request: Request, gateway: Gateway, form: dict[str, str]) -> Response:
        name = request.path_params["name"]
        await backend_forms.set_enabled(gateway, name, True)
        return self.web.redirect(request, "/backends", "ok", f"Backend '{name}' enabled.")

    async def disable_backend(self, request: Request, gateway: Gateway, form: dict[str, str]) -> Response:
        name = request.path_params["name"]
        await backend_forms.set_enabled(gateway, name, False)
        return self.web.redirect(request, "/backends", "ok", f"Backend '{name}' disabled.")

    async def delete_backend(self, request: Request, gateway: Gateway, form: dict[str, str]) -> Response:
        name = request.path_params["name"]
        await backend_forms.delete_backend(gateway, name)
        return self.web.redirect(request, "/backends", "ok", f"Backend '{name}' deleted.")

    async def test_backend(self, request: Request, gateway: Gateway, form: dict[str, str]) -> Response:
        name = request.path_params["name"]
        result = await backend_forms.probe_backend(gateway, name)
        level = "ok" if result["ok"] else "error"
        return self.web.redirect(request, "/backends", level, f"Test of '{name}': {result['message']}")

    async def test_backend_json(self, request: Request, gateway: Gateway) -> Any:
        return await backend_forms.probe_backend(gateway, request.path_params["name"])

    # -- keys -------------------------------------------------------------------------------

    async def _keys_page(
        self,
        request: Request,
        gateway: Gateway,
        new_key: dict[str, Any] | None = None,
        error: str = "",
        status: int = 200,
    ) -> Response:
        context = {"keys": await key_rows(gateway), "new_key": new_key, "error": error}
        return self.web.render(request, "keys.html", context, status)

    async def keys(self, request: Request, gateway: Gateway) -> Response:
        return await self._keys_page(request, gateway)

    async def create_key(self, request: Request, gateway: Gateway, form: dict[str, str]) -> Response:
        try:
            name = admin.validate_key_name(form.get("name", "").strip())
            created = await admin.create_key(gateway, name, _key_limits(form, with_enabled=False))
        except GatewayError as e:
            return await self._keys_page(request, gateway, error=e.message, status=e.status)
        # The answer itself shows the key: a redirect would have to carry it somewhere.
        return await self._keys_page(request, gateway, new_key=created)

    async def update_key(self, request: Request, gateway: Gateway, form: dict[str, str]) -> Response:
        name = request.path_params["name"]
        row = await db.get_key_row(gateway.writer, name)
        if row is None or row["revoked_at"] is not None:
            return self.web.error_page(request, 404, f"No active key named '{name}'")
        try:
            limits = _key_limits(form, with_enabled=True)
        except GatewayError as e:
            return await self._keys_page(request, gateway, error=e.message, status=e.status)
        await db.write_config(gateway.writer, [db.update_key_sql(name, limits)])
        await gateway.reload()
        return self.web.redirect(request, "/keys", "ok", f"Key '{name}' saved.")

    async def revoke_key(self, request: Request, gateway: Gateway, form: dict[str, str]) -> Response:
        name = request.path_params["name"]
        await admin.revoke_key(gateway, name)
        return self.web.redirect(request, "/keys", "ok", f"Key '{name}' revoked: it is refused from now on.")

    # -- pricing ----------------------------------------------------------------------------

    async def unpriced(self, request: Request, gateway: Gateway) -> dict[str, Any]:
        """Models served or used in the last 30 days that have no price: they are counted at $0."""
        since = (datetime.now(UTC).date() - timedelta(days=29)).isoformat()
        used = await reports.unpriced_models(gateway.reader, since)
        served: dict[str, list[str]] = {}
        for b in gateway.registry.backends:
            for m in b.models:
                served.setdefault(m.upstream, []).append(b.name)
        rows = []
        for model in sorted({*used, *served}):
            if find_price(model, gateway.registry.prices)[0] is None:
                rows.append(
                    {
                        "model": model,
                        "unpriced_requests_30d": used.get(model, 0),
                        "served_by": sorted(served.get(model, [])),
                    }
                )
        return {"data": rows}

    async def pricing(self, request: Request, gateway: Gateway) -> Response:
        prices = await admin.list_pricing(request, gateway)
        unknown = await self.unpriced(request, gateway)
        context = {"prices": prices["data"], "unknown": unknown["data"], "edit": request.query_params.get("model", "")}
        return self.web.render(request, "pricing.html", context)

    async def set_price(self, request: Request, gateway: Gateway, form: dict[str, str]) -> Response:
        try:
            model = await self._save_price(gateway, form)
        except BadRequest as e:
            return self.web.redirect(request, "/pricing", "error", f"Price not saved: {e.message}")
        return self.web.redirect(request, "/pricing", "ok", f"Price of '{model}' saved (override).")

    async def _save_price(self, gateway: Gateway, form: dict[str, str]) -> str:
        model = form.get("model", "").strip()
        if not model or len(model) > 200:
            raise BadRequest("model must be 1-200 characters", param="model")
        raw: dict[str, object] = {}
        for field in ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok"):
            text = form.get(field, "").strip()
            try:
                raw[field] = float(text) if text else None
            except ValueError:
                raise BadRequest(f"{field} has value '{text}'; expected USD per million tokens", param=field) from None
        for required in ("input_per_mtok", "output_per_mtok"):
            if raw[required] is None:
                raise BadRequest(f"{required} is required", param=required)
        try:
            price = validate_price(raw)
        except ValueError as e:
            raise BadRequest(str(e)) from None
        sql = db.upsert_price_sql(
            model, price.input_per_mtok, price.output_per_mtok, price.cached_input_per_mtok, time.time()
        )
        await db.write_config(gateway.writer, [sql])
        await gateway.reload()
        return model

    async def reset_price(self, request: Request, gateway: Gateway, form: dict[str, str]) -> Response:
        model = form.get("model", "")
        if model not in gateway.registry.prices:
            raise BadRequest(f"No price override for '{model}'")
        await db.write_config(gateway.writer, [db.delete_price_sql(model)])
        await gateway.reload()
        return self.web.redirect(request, "/pricing", "ok", f"Override of '{model}' removed.")

    # -- routes -----------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        page, action = self.web.page, self.web.action
        return [
            Route("/backends", page(self.backends), methods=["GET"]),
            Route("/backends", action(self.create_backend), methods=["POST"]),
            Route("/backends/{name}/edit", page(self.edit_backend), methods=["GET"]),
            Route("/backends/{name}", action(self.update_backend), methods=["POST"]),
            Route("/backends/{name}/enable", action(self.enable_backend), methods=["POST"]),
            Route("/backends/{name}/disable", action(self.disable_backend), methods=["POST"]),
            Route("/backends/{name}/delete", action(self.delete_backend), methods=["POST"]),
            Route("/backends/{name}/test", action(self.test_backend), methods=["POST"]),
            Route("/api/backends/{name}/test", admin.admin(self.test_backend_json), methods=["POST"]),
            Route("/keys", page(self.keys), methods=["GET"]),
            Route("/keys", action(self.create_key), methods=["POST"]),
            Route("/keys/{name}", action(self.update_key), methods=["POST"]),
            Route("/keys/{name}/revoke", action(self.revoke_key), methods=["POST"]),
            Route("/pricing", page(self.pricing), methods=["GET"]),
            Route("/pricing", action(self.set_price), methods=["POST"]),
            Route("/pricing/reset", action(self.reset_price), methods=["POST"]),
            Route("/api/pricing/unpriced", admin.admin(self.unpriced), methods=["GET"]),
        ]
