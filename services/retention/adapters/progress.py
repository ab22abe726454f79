"""Progress of running account cancellations in Redis (`retention:cancel:<tenant>`).

Deleted when the cancellation completes, so nothing of the tenant stays in Redis.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from redis.asyncio import Redis

from services.common.errors import FailedPrecondition


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisCancellationProgress:
    def __init__(self, redis: Redis, prefix: str = "") -> None:
        self._redis = redis
        self._prefix = prefix

    def _key(self, tenant_id: str) -> str:
        return f"{self._prefix}retention:cancel:{tenant_id}"

    async def begin(self, tenant_id: str, cancellation_id: str, now: datetime) -> datetime:
        key = self._key(tenant_id)
        await self._redis.hsetnx(key, "id", cancellation_id)
        await self._redis.hsetnx(key, "requested_at", str(now.timestamp()))
        running, requested = await self._redis.hmget(key, ["id", "requested_at"])
        if running is None or requested is None or _text(running) != cancellation_id:
            raise FailedPrecondition(
                "another cancellation of this account is running; retry with its cancellation_id"
            )
        return datetime.fromtimestamp(float(_text(requested)), UTC)

    async def step(self, tenant_id: str, name: str) -> dict[str, int] | None:
        raw = await self._redis.hget(self._key(tenant_id), f"step:{name}")
        return None if raw is None else dict(json.loads(raw))

    async def finish_step(self, tenant_id: str, name: str, results: dict[str, int]) -> None:
        await self._redis.hset(self._key(tenant_id), f"step:{name}", json.dumps(results))

    async def end(self, tenant_id: str) -> None:
        await self._redis.delete(self._key(tenant_id))
