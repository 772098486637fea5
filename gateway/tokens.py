"""Client keys and the admin token: generated once, shown once, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets

CLIENT_KEY_PREFIX = "sk-gw-"
ADMIN_TOKEN_PREFIX = "gwadmin-"


def hash_secret(secret: str) -> str:
    # Keys are 256-bit random, so a fast unsalted hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def new_client_key() -> str:
    return CLIENT_KEY_PREFIX + secrets.token_urlsafe(32)


def new_admin_token() -> str:
    return ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)


def matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def last4(secret: str) -> str:
    return secret[-4:] if len(secret) >= 8 else ""
