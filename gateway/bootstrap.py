"""First-start secrets: the master key file, the admin token, and a first client key."""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from gateway import db
from gateway.config import Settings
from gateway.tokens import hash_secret, last4, new_admin_token, new_client_key

MASTER_KEY_FILE = "master.key"
FIRST_KEY_NAME = "default"


class MasterKeyError(RuntimeError):
    pass


def load_master_key(settings: Settings) -> bytes:
    """GATEWAY_MASTER_KEY, else <data-dir>/master.key, generated with mode 0600 when missing."""
    if settings.master_key is not None:
        return settings.master_key
    path = settings.data_dir / MASTER_KEY_FILE
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_master_key(path)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    return _read_master_key(path)


def _read_master_key(path: Path) -> bytes:
    try:
        key = base64.b64decode(path.read_text().strip(), validate=True)
    except (ValueError, OSError) as e:
        raise MasterKeyError(f"{path} is unreadable or not base64: {e}") from None
    if len(key) != 32:
        raise MasterKeyError(f"{path} holds {len(key)} bytes; expected a 32-byte key in base64")
    return key


@dataclass(frozen=True, slots=True)
class FirstStart:
    """Secrets generated on this start, to be printed once and never again."""

    admin_token: str | None = None
    client_key: str | None = None


async def ensure_secrets(conn: aiosqlite.Connection, settings: Settings) -> FirstStart:
    statements = []
    admin_token: str | None = None
    stored = await db.get_setting(conn, "admin_token_hash")
    if settings.admin_token is not None:
        if stored != hash_secret(settings.admin_token):
            statements.append(db.set_setting_sql("admin_token_hash", hash_secret(settings.admin_token)))
    elif stored is None:
        admin_token = new_admin_token()
        statements.append(db.set_setting_sql("admin_token_hash", hash_secret(admin_token)))
    if await db.get_setting(conn, "session_secret") is None:
        statements.append(db.set_setting_sql("session_secret", base64.b64encode(os.urandom(32)).decode()))
    client_key: str | None = None
    if await db.get_setting(conn, "first_key_created") is None:
        statements.append(db.set_setting_sql("first_key_created", "1"))
        if await db.get_key_row(conn, FIRST_KEY_NAME) is None:
            client_key = new_client_key()
            statements.append(
                db.insert_key_sql(
                    FIRST_KEY_NAME, hash_secret(client_key), last4(client_key), None, None, True, time.time()
                )
            )
    if statements:
        await db.write_config(conn, statements)
    return FirstStart(admin_token, client_key)
