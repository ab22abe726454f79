"""Fixed-window rate limits in Redis, shared by every replica of a service.

Used for calls that come before any identity exists (account registration,
sign-in, camera enrollment), keyed by method and source address, so a flood
from one address is refused with RESOURCE_EXHAUSTED while others go on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from services.common.errors import ResourceExhausted


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
        # Redis out of reach fails the call UNAVAILABLE (services/common/errors.py): nothing
        # has happened yet, so the caller may simply try again.
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(counter)
            pipe.expire(counter, limit.per_seconds + 1)
            count, _ = await pipe.execute()
        if int(count) > limit.calls:
            retry = limit.per_seconds - int(time.time()) % limit.per_seconds
            raise ResourceExhausted(f"too many requests from this address; try again in {retry} s")
