"""The `gateway` command: serve | key create/list/revoke | backend list."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway import __version__, db
from gateway.backends import BackendSpec, ModelRoute
from gateway.bootstrap import FirstStart
from gateway.config import SETTINGS, ConfigError, Setting, Settings, load_settings

_COMMON_FLAGS = ("--data-dir", "--config")
_ADDRESS_FLAGS = ("--host", "--port")
NOT_YET_SERVED = "not yet served"
GIL_SWITCH_INTERVAL_S = 0.001


def _add_flag(parser: argparse.ArgumentParser, s: Setting, help_text: str) -> None:
    assert s.flag is not None
    parser.add_argument(s.flag, dest=s.flag, metavar=s.flag.lstrip("-").upper().replace("-", "_"), help=help_text)


def _add_common(parser: argparse.ArgumentParser) -> None:
    for s in SETTINGS:
        if s.flag in _COMMON_FLAGS:
            _add_flag(parser, s, s.help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="A one-process LLM gateway on SQLite.")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    for s in SETTINGS:
        if s.flag and s.flag not in _COMMON_FLAGS:
            _add_flag(serve, s, f"{s.help} (env {s.env})")
    _add_common(serve)

    key = commands.add_parser("key", help="manage client keys").add_subparsers(dest="action", required=True)
    create = key.add_parser("create", help="create a client key and print it once")
    create.add_argument("name")
    create.add_argument("--rpm", type=_positive_int, help="requests per minute allowed to this key")
    create.add_argument("--budget-usd", type=_budget, help="spend allowed per calendar month (UTC)")
    _add_common(create)
    listing = key.add_parser("list", help="list client keys")
    _add_common(listing)
    revoke = key.add_parser("revoke", help="revoke a client key (a running gateway refuses it within a second)")
    revoke.add_argument("name")
    _add_common(revoke)

    backend = commands.add_parser("backend", help="inspect backends").add_subparsers(dest="action", required=True)
    backend_list = backend.add_parser("list", help="name, pool, models, limits, cooldown state")
    for s in SETTINGS:
        if s.flag in _ADDRESS_FLAGS:
            # Live state comes from the running gateway's /api/status (with GATEWAY_ADMIN_TOKEN set).
            _add_flag(
                backend_list, s, f"{s.flag.lstrip('-')} of the running gateway to ask for live state (env {s.env})"
            )
    _add_common(backend_list)

    demo = commands.add_parser("demo", help="a throwaway gateway with fake upstreams and light traffic")
    demo.add_argument("--port", dest="--port", default="8080")
    return parser


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got '{text}'")
    return int(text)


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of USD, got '{text}'") from None
    if not 0 <= value < 1e12:
        raise argparse.ArgumentTypeError(f"expected a number of USD >= 0, got '{text}'")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k.startswith("--") and isinstance(v, str | None)}
    try:
        # Only `serve` sends upstream keys; the other commands work where their env: variables are unset.
        settings = load_settings(flags, os.environ, resolve_api_keys=args.command == "serve")
    except ConfigError as e:
        print(f"gateway: configuration error: {e}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve(settings)
    if args.command == "demo":
        from gateway.demo import run_demo

        port: str = vars(args)["--port"]
        return run_demo(int(port))
    try:
        return asyncio.run(_offline(args, settings))
    except CommandError as e:
        print(f"gateway: {e}", file=sys.stderr)
        return 1


class CommandError(Exception):
    pass


def announce(settings: Settings, first: FirstStart) -> None:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    lines = [f"gateway {__version__} listening on http://{host}:{settings.port}"]
    lines.append(f"  dashboard:  http://{host}:{settings.port}/")
    lines.append(f"  OpenAI API: http://{host}:{settings.port}/v1")
    if first.admin_token:
        lines.append(f"  admin token (shown once, stored only as a hash): {first.admin_token}")
    if first.client_key:
        lines.append(f"  first client key 'default' (shown once): {first.client_key}")
    print("\n".join(lines), flush=True)


def serve(settings: Settings) -> int:
    import uvicorn

    from gateway.app import create_app

    # The SQLite threads (aiosqlite) need the GIL briefly for every row they bind; with the default
    # 5 ms switch interval the event loop and a flushing writer hand it back and forth slowly. At 1 ms,
    # `make bench` measured 5-10% less gateway CPU per request with 256 requests in flight
    # (1,001 and 1,001 µs vs 1,043 and 1,084 µs in alternating runs; docs/performance.md).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    app = create_app(settings, on_started=lambda first: announce(settings, first))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    return 0


async def _offline(args: argparse.Namespace, settings: Settings) -> int:
    """Commands that work on the database directly; a running gateway picks changes up within a second."""
    if args.command == "backend":
        return await _backend_list(settings)
    conn = await db.open_db(settings.db_path)
    try:
        return await _key_command(conn, args)
    finally:
        await conn.close()


async def _key_command(conn: Any, args: argparse.Namespace) -> int:
    from gateway.tokens import hash_secret, last4, new_client_key

    if args.action == "create":
        row = await db.get_key_row(conn, args.name)
        if row is not None and row["revoked_at"] is None:
            raise CommandError(f"a key named '{args.name}' already exists")
        if not args.name.strip() or len(args.name) > 64 or "/" in args.name:
            raise CommandError("a key name has 1-64 characters and no '/'")
        secret = new_client_key()
        sql = db.insert_key_sql(
            args.name, hash_secret(secret), last4(secret), args.rpm, args.budget_usd, True, time.time()
        )
        await db.write_config(conn, [sql])
        print(secret)
        print(f"(key '{args.name}' created; this is the only time it is shown)", file=sys.stderr)
        return 0
    if args.action == "revoke":
        row = await db.get_key_row(conn, args.name)
        if row is None or row["revoked_at"] is not None:
            raise CommandError(f"no active key named '{args.name}'")
        await db.write_config(conn, [db.revoke_key_sql(args.name, time.time())])
        print(f"revoked key '{args.name}'")
        return 0
    rows = await db.list_key_rows(conn)
    table = [["NAME", "KEY", "RPM", "BUDGET_USD", "STATE", "LAST_USED"]]
    for r in rows:
        state = "revoked" if r["revoked_at"] else ("enabled" if r["enabled"] else "disabled")
        budget = "-" if r["budget_usd"] is None else f"{r['budget_usd']:g}"
        table.append([r["name"], f"...{r['key_last4']}", str(r["rpm"] or "-"), budget, state, r["last_used_at"] or "-"])
    _print_table(table)
    return 0


def _live_status(settings: Settings) -> dict[str, dict[str, Any]] | None:
    """A running gateway's /api/status, when GATEWAY_ADMIN_TOKEN is set and it answers; else None."""
    import json
    import urllib.error
    import urllib.request

    if not settings.admin_token:
        return None
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    request = urllib.request.Request(
        f"http://{host}:{settings.port}/api/status", headers={"authorization": f"Bearer {settings.admin_token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=1.0) as response:
            rows = json.load(response)["data"]
    except (OSError, ValueError, KeyError, urllib.error.URLError):
        return None
    return {row["name"]: row for row in rows}


def _state_label(state: str, until_iso: str | None) -> str:
    label = "cooling" if state == "rate_limited" else state
    return f"{label} until {until_iso[11:19]}Z" if until_iso and label != "ok" else label


async def _backend_list(settings: Settings) -> int:
    """Stored backends and their state, plus config-file backends the database does not hold yet."""
    stored: list[BackendSpec] = []
    cooldowns: dict[str, Any] = {}
    # Before the first `serve` there is no database, and listing does not create one.
    if settings.db_path.exists():
        conn = await db.open_db(settings.db_path)
        try:
            stored = await _stored_backends(conn)
            cooldowns = {r["backend"]: r for r in await db.load_cooldown_rows(conn)}
        finally:
            await conn.close()
    live = _live_status(settings)
    wall_now = time.time()
    states = {b.name: _backend_state(b.name, live, cooldowns, wall_now) for b in stored}
    # `serve` upserts the config file's backends at start; until then only the file has them.
    unserved = [b for b in settings.backends if b.name not in states]
    states.update((b.name, NOT_YET_SERVED) for b in unserved)
    table = [["NAME", "POOL", "MODELS", "RPM", "TPM", "PRIORITY", "WEIGHT", "ENABLED", "STATE"]]
    for b in sorted([*stored, *unserved], key=lambda b: (b.pool == "fallback", b.priority, b.name)):
        table.append(
            [
                b.name,
                b.pool,
                _models_label(b.models),
                str(b.rpm or "-"),
                str(b.tpm or "-"),
                str(b.priority),
                str(b.weight),
                "yes" if b.enabled else "no",
                states[b.name],
            ]
        )
    _print_table(table)
    return 0


async def _stored_backends(conn: Any) -> list[BackendSpec]:
    """The database's backends without their keys: listing never unseals an upstream key."""
    from gateway.registry import backend_from_row

    models: dict[str, list[ModelRoute]] = {}
    for m in await db.list_backend_models(conn):
        models.setdefault(m["backend"], []).append(ModelRoute(m["name"], m["upstream"]))
    return [backend_from_row(r, models.get(r["name"], []), None) for r in await db.list_backend_rows(conn)]


def _backend_state(
    name: str, live: Mapping[str, Mapping[str, Any]] | None, cooldowns: Mapping[str, Any], wall_now: float
) -> str:
    """Live state from the running gateway when reachable; else the cooldown it last saved."""
    if live is not None and name in live:
        return _state_label(live[name]["state"], live[name]["cooldown_until"])
    saved = cooldowns.get(name)
    if saved is not None and saved["until_ts"] > wall_now:
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(saved["until_ts"]))
        return _state_label(saved["reason"], until) + " (saved)"
    return "ok"


def _models_label(models: Iterable[ModelRoute]) -> str:
    return ",".join(m.name if m.name == m.upstream else f"{m.name}->{m.upstream}" for m in models) or "-"


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
