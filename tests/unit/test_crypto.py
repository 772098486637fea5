"""AES-256-GCM sealing of upstream keys: round trip, tamper detection, wrong master key."""

from __future__ import annotations

import pytest

from gateway.crypto import Sealer, SealError

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
HEADER_BYTES = 2 + 8  # magic + key id
NONCE_BYTES = 12


@pytest.mark.parametrize("plaintext", ["sk-proj-abc123", "", "ключ-🔑", "x" * 5000])
def test_seal_then_open_gives_the_plaintext_back(plaintext: str) -> None:
    sealer = Sealer(KEY_A)
    assert sealer.open(sealer.seal(plaintext)) == plaintext
    assert Sealer(KEY_A).open(sealer.seal(plaintext)) == plaintext  # same key, another instance


def test_the_blob_hides_the_plaintext_and_uses_a_fresh_nonce() -> None:
    sealer = Sealer(KEY_A)
    first, second = sealer.seal("sk-secret-value"), sealer.seal("sk-secret-value")
    assert b"sk-secret-value" not in first
    assert first != second
    assert first[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES] != second[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
    assert first[:HEADER_BYTES] == second[:HEADER_BYTES]  # same magic and key id


def flip(blob: bytes, index: int) -> bytes:
    changed = bytearray(blob)
    changed[index] ^= 0x01
    return bytes(changed)


@pytest.mark.parametrize(
    "where",
    [HEADER_BYTES + NONCE_BYTES, -1, -17, HEADER_BYTES, HEADER_BYTES + NONCE_BYTES - 1],
    ids=["ciphertext-first", "tag-last", "ciphertext-last", "nonce-first", "nonce-last"],
)
def test_a_flipped_byte_in_the_ciphertext_or_nonce_is_detected(where: int) -> None:
    sealer = Sealer(KEY_A)
    blob = sealer.seal("sk-proj-abc123")
    with pytest.raises(SealError, match="tampered"):
        sealer.open(flip(blob, where))


def test_a_flipped_byte_in_the_magic_is_detected() -> None:
    sealer = Sealer(KEY_A)
    with pytest.raises(SealError, match="corrupt"):
        sealer.open(flip(sealer.seal("sk-proj-abc123"), 0))


def test_a_flipped_byte_in_the_key_id_is_refused() -> None:
    sealer = Sealer(KEY_A)
    with pytest.raises(SealError):
        sealer.open(flip(sealer.seal("sk-proj-abc123"), 3))


@pytest.mark.parametrize("length", [0, 1, HEADER_BYTES, HEADER_BYTES + NONCE_BYTES + 15])
def test_a_truncated_blob_is_corrupt(length: int) -> None:
    sealer = Sealer(KEY_A)
    with pytest.raises(SealError, match="corrupt"):
        sealer.open(sealer.seal("sk-proj-abc123")[:length])


def test_a_wrong_master_key_is_named_as_such() -> None:
    blob = Sealer(KEY_A).seal("sk-proj-abc123")
    with pytest.raises(SealError) as caught:
        Sealer(KEY_B).open(blob)
    message = str(caught.value)
    assert "different master key" in message
    assert "GATEWAY_MASTER_KEY" in message and "master.key" in message
    assert "sk-proj" not in message


def test_a_header_swapped_to_the_right_key_id_still_fails_authentication() -> None:
    """The header is authenticated: grafting another key's id onto a blob does not open it."""
    blob_a = Sealer(KEY_A).seal("sk-proj-abc123")
    blob_b = Sealer(KEY_B).seal("sk-proj-abc123")
    grafted = blob_b[:HEADER_BYTES] + blob_a[HEADER_BYTES:]
    with pytest.raises(SealError, match="tampered"):
        Sealer(KEY_B).open(grafted)


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_the_master_key_must_be_32_bytes(size: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Sealer(b"k" * size)
