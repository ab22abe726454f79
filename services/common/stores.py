"""Connections to Redis and MinIO as runtime components: checked at start, closed at stop.

A service that cannot reach a store stops at start with a message naming the
store and its endpoint, instead of failing on the first request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from minio import Minio
from minio.error import S3Error
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from services.common.settings import MinioSettings, RedisSettings

log = logging.getLogger("privacam.stores")


class StoreUnavailable(RuntimeError):
    pass


REDIS_HEALTH_CHECK_SECONDS = 10
"""A pooled connection idle this long is PINGed before use, so one that died with a Redis
restart is replaced instead of failing the caller's command."""


def redis_options(settings: RedisSettings) -> dict[str, Any]:
    """Client options beyond the URL: dead pooled connections found before use and a command
    that met a broken connection sent again on a fresh one (a connection error means the
    command never reached Redis; timeouts are not retried, as the command may have run),
    and the CA that verifies a rediss:// server."""
    options: dict[str, Any] = {
        "health_check_interval": REDIS_HEALTH_CHECK_SECONDS,
        "retry": Retry(
            ExponentialWithJitterBackoff(base=0.05, cap=1.0),
            retries=3,
            supported_errors=(RedisConnectionError,),
        ),
    }
    if settings.ca_file is not None and settings.url.get_secret_value().startswith("rediss://"):
        options["ssl_ca_certs"] = str(settings.ca_file)
    return options


def redis_start_failure(settings: RedisSettings, error: RedisError) -> StoreUnavailable:
    """Why a service cannot use Redis at start, naming the variable to check (never the URL:
    it holds the password). A wrong user or password is an AuthenticationError; a user
    without PING, NoPermissionError."""
    return StoreUnavailable(
        f"cannot use Redis ({error.__class__.__name__}); check {settings.url_variable()}"
    )


class RedisStore:
    """Redis holds views, caches and counters that can be rebuilt from Kafka."""

    def __init__(self, settings: RedisSettings) -> None:
        self._settings = settings
        self.client: Redis = Redis.from_url(
            settings.url.get_secret_value(),
            socket_timeout=5,
            socket_connect_timeout=5,
            **redis_options(settings),
        )

    async def start(self) -> None:
        try:
            await self.client.ping()
        except RedisError as error:
            raise redis_start_failure(self._settings, error) from None

    async def stop(self) -> None:
        await self.client.aclose()


class ObjectStore:
    """MinIO buckets; the client is synchronous, so calls run in a worker thread."""

    def __init__(
        self,
        settings: MinioSettings,
        buckets: tuple[str, ...],
        client_class: type[Minio] = Minio,
    ) -> None:
        self.client = client_class(
            settings.endpoint,
            access_key=settings.access_key.get_secret_value(),
            secret_key=settings.secret_key.get_secret_value(),
            secure=settings.secure,
            region=settings.region,
        )
        self.buckets = buckets
        self._endpoint = settings.endpoint

    async def start(self) -> None:
        try:
            for bucket in self.buckets:
                await self._ensure_bucket(bucket)
        except Exception as error:  # the client raises several unrelated types
            raise StoreUnavailable(
                f"cannot use MinIO at {self._endpoint} ({error.__class__.__name__}: {error}); "
                "check PRIVACAM_MINIO_ENDPOINT and the access keys"
            ) from None

    async def _ensure_bucket(self, bucket: str) -> None:
        if await asyncio.to_thread(self.client.bucket_exists, bucket):
            return
        try:
            await asyncio.to_thread(self.client.make_bucket, bucket)
        except S3Error as error:
            # Services sharing a bucket start together: another one may create it
            # between our check and our request (seen in CI), and that is success.
            if error.code != "BucketAlreadyOwnedByYou":
                raise
            return
        log.info("bucket created", extra={"bucket": bucket})

    async def stop(self) -> None:
        """The MinIO client holds no connection worth closing."""
