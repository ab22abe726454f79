"""TURN REST credentials (coturn `use-auth-secret`): nothing to store, coturn recomputes them.

username = "<expiry unix seconds>:<session id>", password = base64(HMAC-SHA1(secret, username)).
coturn refuses a username whose expiry has passed, so a leaked credential dies on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta

from services.relay_broker.domain.model import Side, TurnGrant


def turn_username(expiry: datetime, session_id: str, side: Side) -> str:
    # The side in the name lets coturn's per-user quota and statistics tell the two apart.
    return f"{int(expiry.timestamp())}:{session_id}.{side.value}"


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
    expiry = now.replace(microsecond=0) + timedelta(seconds=ttl_seconds)
    username = turn_username(expiry, session_id, side)
    password = base64.b64encode(hmac.new(secret, username.encode(), hashlib.sha1).digest())
    return TurnGrant(uris, username, password.decode(), ttl_seconds, expiry)
