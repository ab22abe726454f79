"""Claim tokens: 32 random bytes, 43 chars of base64url, stored only as a SHA-256 hash."""

from __future__ import annotations

import base64
import hashlib

from services.device_auth.domain.claim_tokens import hash_token, new_token, well_formed


def test_a_token_is_43_chars_of_unpadded_base64url_holding_32_random_bytes() -> None:
    token, _ = new_token()
    assert len(token) == 43
    assert "=" not in token
    assert len(base64.urlsafe_b64decode(token + "=")) == 32
    assert well_formed(token)


def test_only_the_sha256_of_the_token_is_kept() -> None:
    token, token_hash = new_token()
    assert token_hash == hashlib.sha256(token.encode()).hexdigest() == hash_token(token)
    assert token not in token_hash


def test_tokens_do_not_repeat() -> None:
    assert len({new_token()[0] for _ in range(1000)}) == 1000


def test_anything_but_43_base64url_chars_is_not_a_token() -> None:
    token, _ = new_token()
    for bad in ["", token[:-1], token + "A", token[:-1] + "=", token[:-1] + "/"]:
        assert not well_formed(bad)
