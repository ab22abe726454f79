"""The broker's Redis client: a pool that waits for a free connection instead of failing.

A fleet of cameras reconnecting at once (after a deploy or an outage) opens thousands of
control streams in seconds; each touches Redis once. redis-py's default pool raises "Too
many connections" past 100, which would turn a reconnect storm into errors; a blocking pool
queues the work for up to `timeout` seconds instead.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from services.common.settings import RedisSettings
from services.common.stores import redis_options, redis_start_failure

MAX_CONNECTIONS = 64
WAIT_SECONDS = 10


class BrokerRedis:
    """A runtime component: checked at start, closed at stop."""

    def __init__(self, settings: RedisSettings) -> None:
        pool = BlockingConnectionPool.from_url(
            settings.url.get_secret_value(),
            max_connections=MAX_CONNECTIONS,
            timeout=WAIT_SECONDS,
            socket_timeout=5,
            socket_connect_timeout=5,
            **redis_options(settings),
        )
        self._settings = settings
        self.client: Redis = Redis(connection_pool=pool)

    async def start(self) -> None:
        try:
            await self.client.ping()
        except RedisError as error:
            raise redis_start_failure(self._settings, error) from None

    async def stop(self) -> None:
        await self.client.aclose()
