"""TURN REST credentials (coturn `use-auth-secret`): nothing to store, coturn recomputes them.

username = "<expiry unix seconds>:<session id>", password = base64(HMAC-SHA1(secret, username)).
coturn refuses a username whose expiry has passed, so a leaked credential dies on its own.
"""

from __future__ import annotations

import base64
import hmac
from datetime import UTC, datetime

from services.relay_broker.domain.model import Side, TurnGrant


def turn_username(expiry_seconds: int, session_id: str, side: Side) -> str:
    # The side in the name lets coturn's per-user quota and statistics tell the two apart.
    return f"{expiry_seconds}:{session_id}.{side.value}"


def session_of(username: str) -> str | None:
    """The session id a TURN username was minted for (None when not one of ours)."""
    _, _, rest = username.partition(":")
    session, dot, _ = rest.rpartition(".")
    return session if dot and session else None


def issue(
    secret: bytes,
    uris: tuple[str, ...],
    session_id: str,
    side: Side,
    now: datetime,
    ttl_seconds: int,
) -> TurnGrant:
    expiry = int(now.timestamp()) + ttl_seconds  # whole seconds, as coturn reads them
    username = turn_username(expiry, session_id, side)
    password = base64.b64encode(hmac.digest(secret, username.encode(), "sha1")).decode()
    return TurnGrant(uris, username, password, ttl_seconds, datetime.fromtimestamp(expiry, UTC))
