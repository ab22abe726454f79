"""Fixed-window rate limits in Redis, shared by every replica of a service.

Used for calls that come before any identity exists (account registration,
sign-in, camera enrollment), keyed by method and source address, so a flood
from one address is refused with RESOURCE_EXHAUSTED while others go on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common.errors import ResourceExhausted, Unavailable


@dataclass(frozen=True)
class Limit:
    calls: int
    per_seconds: int


class RateLimiter:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def check(self, name: str, key: str, limit: Limit) -> None:
        """Count one call of `key` against `limit`; ResourceExhausted once it is spent."""
        window = int(time.time()) // limit.per_seconds
        counter = f"{self._prefix}:{name}:{key}:{window}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(counter)
                pipe.expire(counter, limit.per_seconds + 1)
                count, _ = await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError):
            # Nothing has happened yet: the caller may simply try again (a CI run saw
            # INTERNAL here while the pool still held connections to a restarted Redis).
            raise Unavailable(
                "the service cannot count requests right now; retry shortly"
            ) from None
        if int(count) > limit.calls:
            retry = limit.per_seconds - int(time.time()) % limit.per_seconds
            raise ResourceExhausted(f"too many requests from this address; try again in {retry} s")
