"""A Redis lease: one holder at a time across replicas, expiring if its holder dies.

The sweeper holds it for each sweep, and an account cancellation for its deletions, so a
sweep can never record a shred of a tenant whose records the cancellation just erased.
Each export being built has one of its own (`RedisExportLeases`).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from services.common.errors import Unavailable

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class RedisLease:
    def __init__(self, redis: Redis, key: str, ttl_ms: int) -> None:
        self._redis = redis
        self._key = key
        self._ttl_ms = ttl_ms
        self._token = secrets.token_hex(8)
        self._release = redis.register_script(_RELEASE)
        self._extend = redis.register_script(_EXTEND)

    async def try_acquire(self) -> bool:
        return bool(await self._redis.set(self._key, self._token, px=self._ttl_ms, nx=True))

    async def extend(self) -> bool:
        """Renew the hold; False if this holder no longer has it."""
        return bool(await self._extend(keys=[self._key], args=[self._token, self._ttl_ms]))

    async def release(self) -> None:
        await self._release(keys=[self._key], args=[self._token])

    @asynccontextmanager
    async def hold(self, wait_seconds: float) -> AsyncIterator[None]:
        """Hold the lease for a block, waiting for it at most `wait_seconds`."""
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while not await self.try_acquire():
            if asyncio.get_running_loop().time() > deadline:
                raise Unavailable("the retention service is busy; try again shortly")
            await asyncio.sleep(0.05)
        try:
            yield
        finally:
            await self.release()


class RedisExportLeases:
    """One lease per export (`retention:export-lease:<tenant>/<export>`), held by the
    replica building it and renewed while it does."""

    def __init__(self, redis: Redis, ttl_ms: int, prefix: str = "") -> None:
        self._redis = redis
        self._ttl_ms = ttl_ms
        self._prefix = f"{prefix}retention:export-lease:"

    def lease(self, tenant_id: str, export_id: str) -> RedisLease:
        return RedisLease(self._redis, f"{self._prefix}{tenant_id}/{export_id}", self._ttl_ms)
