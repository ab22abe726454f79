"""A rate limit that cannot be counted refuses with UNAVAILABLE (retry), not INTERNAL."""

from __future__ import annotations

import socket

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from services.common.errors import status_for
from services.common.ratelimit import Limit, RateLimiter


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the block ends


async def test_redis_out_of_reach_is_unavailable_and_names_no_address() -> None:
    redis = Redis(
        host="127.0.0.1", port=_closed_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    try:
        with pytest.raises(RedisConnectionError) as refused:
            await RateLimiter(redis, "test").check("Enroll", "192.0.2.1", Limit(5, 60))
    finally:
        await redis.aclose()
    code, message = status_for(refused.value)
    assert code.name == "UNAVAILABLE"
    assert "127.0.0.1" not in message
    assert "retry" in message
