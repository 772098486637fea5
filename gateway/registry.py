"""The in-memory view of configuration (backends, client keys, prices) the request path reads.

Loaded from SQLite at start and again whenever `config_version` changes, so an edit made
through the admin API, the dashboard or the CLI (another process) applies within a second.
Upstream keys are decrypted once here, never per request.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from gateway import db
from gateway.backends import BACKEND_FIELDS, BackendSpec, ModelRoute
from gateway.crypto import Sealer
from gateway.pricing import Price, find_price
from gateway.tokens import hash_secret, last4


@dataclass(frozen=True, slots=True)
class ClientKey:
    name: str
    rpm: int | None
    budget_usd: float | None
    enabled: bool


_MEMO_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Registry:
    version: int = 0
    backends: tuple[BackendSpec, ...] = ()
    keys_by_hash: Mapping[str, ClientKey] = field(default_factory=dict)
    prices: Mapping[str, Price] = field(default_factory=dict)
    # requested model -> enabled backends serving it (any pool, unordered)
    serving: Mapping[str, tuple[BackendSpec, ...]] = field(default_factory=dict)
    auth_headers: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Memos for the request path. A reload builds a new Registry, so they never outlive a change
    # (a revoked key, a new price).
    _keys_by_token: dict[str, ClientKey] = field(default_factory=dict, compare=False, repr=False)
    _price_by_model: dict[str, Price | None] = field(default_factory=dict, compare=False, repr=False)

    def key_for_token(self, token: str) -> ClientKey | None:
        """The client key a bearer token belongs to; the SHA-256 is computed once per token."""
        key = self._keys_by_token.get(token)
        if key is None:
            key = self.keys_by_hash.get(hash_secret(token))
            # Only valid tokens are remembered: guessing cannot grow the memo.
            if key is not None and len(self._keys_by_token) < _MEMO_LIMIT:
                self._keys_by_token[token] = key
        return key

    def price_for(self, model: str) -> Price | None:
        try:
            return self._price_by_model[model]
        except KeyError:
            price, _ = find_price(model, self.prices)
            if len(self._price_by_model) < _MEMO_LIMIT:
                self._price_by_model[model] = price
            return price

    def backend(self, name: str) -> BackendSpec | None:
        return next((b for b in self.backends if b.name == name), None)

    def model_names(self) -> list[str]:
        return sorted(self.serving)


async def load_registry(conn: aiosqlite.Connection, sealer: Sealer) -> Registry:
    version = await db.config_version(conn)
    models: dict[str, list[ModelRoute]] = {}
    for row in await db.list_backend_models(conn):
        models.setdefault(row["backend"], []).append(ModelRoute(row["name"], row["upstream"]))
    backends = tuple(
        backend_from_row(row, models.get(row["name"], []), sealer) for row in await db.list_backend_rows(conn)
    )
    keys = {
        row["key_hash"]: ClientKey(row["name"], row["rpm"], row["budget_usd"], bool(row["enabled"]))
        for row in await db.list_key_rows(conn, include_revoked=False)
    }
    prices = {
        row["model"]: Price(row["input_per_mtok"], row["output_per_mtok"], row["cached_input_per_mtok"])
        for row in await db.list_price_rows(conn)
    }
    return build_registry(version, backends, keys, prices)


def build_registry(
    version: int, backends: Iterable[BackendSpec], keys: Mapping[str, ClientKey], prices: Mapping[str, Price]
) -> Registry:
    backends = tuple(backends)
    serving: dict[str, list[BackendSpec]] = {}
    for b in backends:
        if b.enabled:
            for route in b.models:
                serving.setdefault(route.name, []).append(b)
    # Built once per reload: the request path only looks these up.
    auth_headers = {
        b.name: {"authorization": f"Bearer {b.api_key}", "content-type": "application/json"}
        if b.api_key
        else {"content-type": "application/json"}
        for b in backends
    }
    return Registry(
        version, backends, dict(keys), dict(prices), {m: tuple(bs) for m, bs in serving.items()}, auth_headers
    )


def backend_from_row(row: Any, models: list[ModelRoute], sealer: Sealer | None) -> BackendSpec:
    """A stored backend; without a sealer its upstream key stays sealed and the spec has none."""
    sealed = row["api_key_sealed"]
    return BackendSpec(
        name=row["name"],
        base_url=row["base_url"],
        api_key=sealer.open(sealed) if sealed and sealer is not None else "",
        pool=row["pool"],
        models=tuple(models),
        rpm=row["rpm"],
        tpm=row["tpm"],
        priority=row["priority"],
        weight=row["weight"],
        timeout=row["timeout"],
        enabled=bool(row["enabled"]),
    )


def backend_columns(fields: Mapping[str, object], sealer: Sealer) -> dict[str, Any]:
    """Validated backend fields -> column values (the key sealed, models as pairs)."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "api_key":
            assert isinstance(value, str)
            out["api_key_sealed"] = sealer.seal(value) if value else None
            out["api_key_last4"] = last4(value)
        elif key == "models":
            assert isinstance(value, tuple)
            out["models"] = [(m.name, m.upstream) for m in value]
        elif key == "enabled":
            out["enabled"] = int(bool(value))
        else:
            out[key] = value
    return out


async def upsert_config_backends(conn: aiosqlite.Connection, sealer: Sealer, specs: Iterable[BackendSpec]) -> None:
    """Backends from the config file are upserted by name at start (DESIGN 2.3)."""
    statements: list[tuple[str, Any]] = []
    wall_now = time.time()
    for spec in specs:
        fields = {name: getattr(spec, name) for name in BACKEND_FIELDS}
        columns = backend_columns(fields, sealer)
        if await db.backend_exists(conn, spec.name):
            statements.extend(db.update_backend_sql(spec.name, columns, wall_now))
        else:
            statements.extend(db.insert_backend_sql(columns, wall_now))
    if statements:
        await db.write_config(conn, statements)
