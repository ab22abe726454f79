"""Claim tokens that pair a camera with an account: random, single use, short-lived.

The owner's app receives the token once; the service keeps only its SHA-256
hash. A plain hash suffices (no salt or slow hash): the token has 256 bits
of entropy, so nothing can be guessed from a leaked hash.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

TOKEN_BYTES = 32
TOKEN_LENGTH = 43
"""base64url of 32 bytes, without padding."""
DEFAULT_TTL = timedelta(minutes=10)

_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")


def new_token() -> tuple[str, str]:
    """(token to hand to the camera, hash to store)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def well_formed(token: str) -> bool:
    return _TOKEN_PATTERN.fullmatch(token) is not None
