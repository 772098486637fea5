"""AES-256-GCM sealing of upstream API keys at rest.

Blob layout: b"g1" | key id (8 bytes) | nonce (12 bytes) | ciphertext+tag.
The key id lets a wrong master key be told apart from a tampered blob.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_MAGIC = b"g1"
_NONCE_BYTES = 12
_KEY_ID_BYTES = 8


class SealError(ValueError):
    """A sealed value cannot be opened: wrong master key, or tampered/corrupt data."""


def key_id(master_key: bytes) -> bytes:
    return hashlib.sha256(b"gateway-key-id:" + master_key).digest()[:_KEY_ID_BYTES]


class Sealer:
    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._aead = AESGCM(master_key)
        self._key_id = key_id(master_key)

    def seal(self, plaintext: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        header = _MAGIC + self._key_id
        # The header is authenticated too, so a swapped key id is detected as tampering.
        return header + nonce + self._aead.encrypt(nonce, plaintext.encode(), header)

    def open(self, blob: bytes) -> str:
        header_len = len(_MAGIC) + _KEY_ID_BYTES
        if len(blob) < header_len + _NONCE_BYTES + 16 or not blob.startswith(_MAGIC):
            raise SealError("sealed value is corrupt (bad header or too short)")
        if blob[len(_MAGIC) : header_len] != self._key_id:
            raise SealError("sealed value was made with a different master key (GATEWAY_MASTER_KEY or master.key)")
        nonce = blob[header_len : header_len + _NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, blob[header_len + _NONCE_BYTES :], blob[:header_len]).decode()
        except InvalidTag:
            raise SealError("sealed value failed authentication: it was tampered with or corrupted") from None
