"""SQLite connection setup, migrations, and the SQL for configuration tables.

Usage reads and writes live in gateway/queries.py; SQL lives only in these two modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema.sql"
SCHEMA_VERSION = 3

Migration = Callable[[aiosqlite.Connection], Awaitable[None]]
# Ordered steps from version N to N+1, for files made by older releases (index 0: 1 -> 2).
MIGRATIONS: list[Migration] = []
migration = MIGRATIONS.append


def _schema_table(name: str) -> str:
    """The CREATE TABLE statement of one table, taken from schema.sql (its single source)."""
    found = re.search(rf"CREATE TABLE IF NOT EXISTS {name} \(.*?\)( WITHOUT ROWID)?;", SCHEMA_PATH.read_text(), re.S)
    assert found is not None, f"schema.sql has no table {name}"
    return found.group(0)


@migration
async def _add_rollups(conn: aiosqlite.Connection) -> None:
    """1 -> 2: the daily rollup (backfilled from the hour buckets) and the latency histograms."""
    await conn.execute(_schema_table("usage_daily"))
    await conn.execute(_schema_table("latency_hourly"))
    columns = [row[1] for row in await fetch_all(conn, "PRAGMA table_info(usage_daily)")][4:]
    sums = ", ".join(f"SUM({c})" for c in columns)
    await conn.execute(
        f"INSERT INTO usage_daily (day, backend, model, api_key, {', '.join(columns)}) "
        f"SELECT substr(hour, 1, 10), backend, model, api_key, {sums} FROM usage_hourly GROUP BY 1, 2, 3, 4"
    )


@migration
async def _add_long_rollups(conn: aiosqlite.Connection) -> None:
    """2 -> 3: the monthly rollup and the per-day totals, backfilled from the daily rollup."""
    await conn.execute(_schema_table("usage_monthly"))
    await conn.execute(_schema_table("usage_day_totals"))
    columns = [row[1] for row in await fetch_all(conn, "PRAGMA table_info(usage_daily)")][4:]
    names, sums = ", ".join(columns), ", ".join(f"SUM({c})" for c in columns)
    await conn.execute(
        f"INSERT INTO usage_monthly (month, backend, model, api_key, {names}) "
        f"SELECT substr(day, 1, 7), backend, model, api_key, {sums} FROM usage_daily GROUP BY 1, 2, 3, 4"
    )
    await conn.execute(f"INSERT INTO usage_day_totals (day, {names}) SELECT day, {sums} FROM usage_daily GROUP BY 1")


def iso_now(wall_now: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if wall_now is None else wall_now))


async def connect(path: Path) -> aiosqlite.Connection:
    """Open a connection with the pragmas every connection needs; the file is created if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(path, isolation_level=None)  # explicit BEGIN/COMMIT below
    conn.row_factory = sqlite3.Row
    await conn.execute("PRAGMA busy_timeout = 5000")
    await conn.execute("PRAGMA foreign_keys = ON")
    await conn.execute("PRAGMA synchronous = NORMAL")
    return conn


async def open_db(path: Path) -> aiosqlite.Connection:
    """Connect, switch to WAL and bring the schema to the current version."""
    conn = await connect(path)
    await conn.execute("PRAGMA journal_mode = WAL")
    await migrate(conn)
    return conn


async def migrate(conn: aiosqlite.Connection) -> None:
    version = await scalar(conn, "PRAGMA user_version")
    if version == 0:
        await conn.executescript(SCHEMA_PATH.read_text())
        await conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"database schema version {version} is newer than this gateway ({SCHEMA_VERSION})")
    for step in MIGRATIONS[version - 1 :]:
        async with write_transaction(conn):
            await step(conn)
            version += 1
            await conn.execute(f"PRAGMA user_version = {int(version)}")


async def scalar(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    async with conn.execute(sql, params) as cur:
        row = await cur.fetchone()
    return None if row is None else row[0]


async def fetch_all(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
    async with conn.execute(sql, params) as cur:
        return list(await cur.fetchall())


# One connection runs one transaction at a time: a second BEGIN on it fails, and that
# failure's rollback would undo the first. The usage writer and admin edits share the
# writer connection, so every write transaction takes the connection's lock.
_WRITE_LOCKS: weakref.WeakKeyDictionary[aiosqlite.Connection, asyncio.Lock] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def write_transaction(conn: aiosqlite.Connection) -> AsyncIterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, all or nothing, one at a time per connection."""
    async with _WRITE_LOCKS.setdefault(conn, asyncio.Lock()):
        try:
            # Inside the try: a BEGIN cancelled while it waits on a busy database may still
            # complete, and the rollback (a no-op without a transaction) then ends it.
            await conn.execute("BEGIN IMMEDIATE")
            yield
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise


async def transaction(conn: aiosqlite.Connection, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
    """Run statements in one write transaction; all or nothing."""
    async with write_transaction(conn):
        for sql, params in statements:
            await conn.execute(sql, params)


# -- settings -------------------------------------------------------------------------------


async def get_setting(conn: aiosqlite.Connection, key: str) -> str | None:
    value = await scalar(conn, "SELECT value FROM settings WHERE key = ?", (key,))
    return None if value is None else str(value)


def set_setting_sql(key: str, value: str) -> tuple[str, Sequence[Any]]:
    return (
        "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


async def set_setting(conn: aiosqlite.Connection, key: str, value: str) -> None:
    await transaction(conn, [set_setting_sql(key, value)])


# Any change to backends, keys or prices bumps this, in the same transaction, so a running
# gateway (polling it every second) picks up edits made by the CLI from another process.
BUMP_CONFIG_VERSION = (
    "INSERT INTO settings (key, value) VALUES ('config_version', '1') "
    "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
    (),
)


async def config_version(conn: aiosqlite.Connection) -> int:
    value = await scalar(conn, "SELECT value FROM settings WHERE key = 'config_version'")
    return int(value or 0)


async def write_config(conn: aiosqlite.Connection, statements: list[tuple[str, Sequence[Any]]]) -> None:
    await transaction(conn, [*statements, BUMP_CONFIG_VERSION])


# -- backends -------------------------------------------------------------------------------

BACKEND_COLUMNS = ("base_url", "pool", "rpm", "tpm", "priority", "weight", "timeout", "enabled")


async def list_backend_rows(conn: aiosqlite.Connection) -> list[sqlite3.Row]:
    return await fetch_all(conn, "SELECT * FROM backends ORDER BY pool = 'fallback', priority, name")


async def list_backend_models(conn: aiosqlite.Connection) -> list[sqlite3.Row]:
    return await fetch_all(conn, "SELECT backend, name, upstream FROM backend_models ORDER BY backend, position")


async def backend_exists(conn: aiosqlite.Connection, name: str) -> bool:
    return bool(await scalar(conn, "SELECT 1 FROM backends WHERE name = ?", (name,)))


def insert_backend_sql(values: dict[str, Any], wall_now: float) -> list[tuple[str, Sequence[Any]]]:
    """`values` holds name, the BACKEND_COLUMNS, api_key_sealed, api_key_last4 and models."""
    now = iso_now(wall_now)
    columns = ("name", *BACKEND_COLUMNS, "api_key_sealed", "api_key_last4")
    sql = (
        f"INSERT INTO backends ({', '.join(columns)}, created_at, updated_at) "
        f"VALUES ({', '.join('?' for _ in columns)}, ?, ?)"
    )
    return [(sql, (*(values[c] for c in columns), now, now)), *_models_sql(values["name"], values["models"])]


def update_backend_sql(name: str, changes: dict[str, Any], wall_now: float) -> list[tuple[str, Sequence[Any]]]:
    """UPDATE only the given columns; column names come from a fixed list, never from input."""
    allowed = {"name", *BACKEND_COLUMNS, "api_key_sealed", "api_key_last4"}
    columns = [c for c in changes if c in allowed]
    statements: list[tuple[str, Sequence[Any]]] = []
    sets = ", ".join(f"{c} = ?" for c in columns)
    statements.append(
        (
            f"UPDATE backends SET {sets}{', ' if sets else ''}updated_at = ? WHERE name = ?",
            (*(changes[c] for c in columns), iso_now(wall_now), name),
        )
    )
    if "models" in changes:
        new_name = changes.get("name", name)
        statements.append(("DELETE FROM backend_models WHERE backend = ?", (new_name,)))
        statements.extend(_models_sql(new_name, changes["models"]))
    return statements


def _models_sql(backend: str, models: Sequence[tuple[str, str]]) -> list[tuple[str, Sequence[Any]]]:
    return [
        (
            "INSERT INTO backend_models (backend, name, upstream, position) VALUES (?, ?, ?, ?)",
            (backend, name, upstream, i),
        )
        for i, (name, upstream) in enumerate(models)
    ]


def delete_backend_sql(name: str) -> list[tuple[str, Sequence[Any]]]:
    return [("DELETE FROM backends WHERE name = ?", (name,)), ("DELETE FROM cooldowns WHERE backend = ?", (name,))]


# -- client keys ----------------------------------------------------------------------------


async def list_key_rows(conn: aiosqlite.Connection, *, include_revoked: bool = True) -> list[sqlite3.Row]:
    where = "" if include_revoked else "WHERE revoked_at IS NULL"
    return await fetch_all(conn, f"SELECT * FROM client_keys {where} ORDER BY name")


async def get_key_row(conn: aiosqlite.Connection, name: str) -> sqlite3.Row | None:
    rows = await fetch_all(conn, "SELECT * FROM client_keys WHERE name = ?", (name,))
    return rows[0] if rows else None


def insert_key_sql(
    name: str, key_hash: str, last4: str, rpm: int | None, budget_usd: float | None, enabled: bool, wall_now: float
) -> tuple[str, Sequence[Any]]:
    # A revoked key's name may be reused: the new key replaces the old row.
    return (
        "INSERT INTO client_keys (name, key_hash, key_last4, rpm, budget_usd, enabled, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET key_hash = excluded.key_hash, "
        "key_last4 = excluded.key_last4, rpm = excluded.rpm, budget_usd = excluded.budget_usd, "
        "enabled = excluded.enabled, created_at = excluded.created_at, revoked_at = NULL, last_used_at = NULL "
        "WHERE client_keys.revoked_at IS NOT NULL",
        (name, key_hash, last4, rpm, budget_usd, int(enabled), iso_now(wall_now)),
    )


def update_key_sql(name: str, changes: dict[str, Any]) -> tuple[str, Sequence[Any]]:
    columns = [c for c in changes if c in ("rpm", "budget_usd", "enabled")]
    sets = ", ".join(f"{c} = ?" for c in columns)
    return (f"UPDATE client_keys SET {sets} WHERE name = ?", (*(changes[c] for c in columns), name))


def revoke_key_sql(name: str, wall_now: float) -> tuple[str, Sequence[Any]]:
    return (
        "UPDATE client_keys SET revoked_at = ?, enabled = 0 WHERE name = ? AND revoked_at IS NULL",
        (iso_now(wall_now), name),
    )


# -- prices ---------------------------------------------------------------------------------


async def list_price_rows(conn: aiosqlite.Connection) -> list[sqlite3.Row]:
    return await fetch_all(conn, "SELECT * FROM prices ORDER BY model")


def upsert_price_sql(
    model: str, input_per_mtok: float, output_per_mtok: float, cached: float | None, wall_now: float
) -> tuple[str, Sequence[Any]]:
    return (
        "INSERT INTO prices (model, input_per_mtok, output_per_mtok, cached_input_per_mtok, updated_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (model) DO UPDATE SET input_per_mtok = excluded.input_per_mtok, "
        "output_per_mtok = excluded.output_per_mtok, cached_input_per_mtok = excluded.cached_input_per_mtok, "
        "updated_at = excluded.updated_at",
        (model, input_per_mtok, output_per_mtok, cached, iso_now(wall_now)),
    )


def delete_price_sql(model: str) -> tuple[str, Sequence[Any]]:
    return ("DELETE FROM prices WHERE model = ?", (model,))


# -- cooldowns ------------------------------------------------------------------------------


async def load_cooldown_rows(conn: aiosqlite.Connection) -> list[sqlite3.Row]:
    return await fetch_all(conn, "SELECT backend, until_ts, consecutive_429, reason FROM cooldowns")


def replace_cooldowns_sql(rows: Sequence[tuple[str, float, int, str]]) -> list[tuple[str, Sequence[Any]]]:
    return [
        ("DELETE FROM cooldowns", ()),
        *(
            ("INSERT INTO cooldowns (backend, until_ts, consecutive_429, reason) VALUES (?, ?, ?, ?)", row)
            for row in rows
        ),
    ]
