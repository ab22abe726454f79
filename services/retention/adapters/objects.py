"""Clip and export objects in MinIO: streamed reads, batch deletes, tenant listings, the
lifecycle backstop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence

from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.deleteobjects import DeleteObject
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from services.common.errors import Unavailable

BACKSTOP_RULE_ID = "privacam-retention-backstop"
CHUNK_BYTES = 256 * 1024


def tenant_prefix(tenant_id: str) -> str:
    """Where clip_ingest stores a tenant's clips (and retention its exports): `t/<tenant>/`."""
    return f"t/{tenant_id}/"


class MinioObjects:
    """One bucket of a MinIO client; the client is synchronous, so calls run in a thread."""

    def __init__(self, client: Minio, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    async def delete(self, names: Sequence[str]) -> None:
        if not names:
            return

        def run() -> list[str]:
            # remove_objects is lazy: the request is sent while its errors are iterated.
            errors = self.client.remove_objects(self.bucket, [DeleteObject(name) for name in names])
            return [error.code for error in errors if error.code != "NoSuchKey"]

        failed = await asyncio.to_thread(run)
        if failed:
            raise Unavailable(
                f"object storage refused {len(failed)} of {len(names)} deletions ({failed[0]}); "
                "they will be retried"
            )

    async def read_range(self, name: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset` (fewer at the object's end)."""

        def run() -> bytes:
            response = self.client.get_object(self.bucket, name, offset=offset, length=length)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return await asyncio.to_thread(run)

    async def read_chunks(self, name: str, chunk_bytes: int = CHUNK_BYTES) -> AsyncGenerator[bytes]:
        """The object a chunk at a time: one GET, read as the caller goes."""
        response = await asyncio.to_thread(self.client.get_object, self.bucket, name)
        try:
            while chunk := await asyncio.to_thread(response.read, chunk_bytes):
                yield chunk
        finally:
            response.close()
            response.release_conn()

    async def tenant_objects(self, tenant_id: str) -> list[str]:
        def run() -> list[str]:
            return [
                obj.object_name
                for obj in self.client.list_objects(
                    self.bucket, prefix=tenant_prefix(tenant_id), recursive=True
                )
                if obj.object_name is not None
            ]

        return await asyncio.to_thread(run)

    async def ensure_expiry(self, days: int) -> None:
        """Expire every object `days` after it was written (idempotent): a backstop should
        the sweeper stop, never the primary deletion path."""
        rule = Rule(
            ENABLED,
            rule_filter=Filter(prefix=""),
            rule_id=BACKSTOP_RULE_ID,
            expiration=Expiration(days=days),
        )
        await asyncio.to_thread(
            self.client.set_bucket_lifecycle, self.bucket, LifecycleConfig([rule])
        )

    async def start(self) -> None:
        """Nothing to open: the runtime's ObjectStore checked the bucket."""

    async def stop(self) -> None:
        """The MinIO client holds no connection worth closing."""


class LifecycleBackstop:
    """Sets the lifecycle rules at start, after the runtime's ObjectStore made the buckets."""

    def __init__(self, rules: Sequence[tuple[MinioObjects, int]]) -> None:
        self._rules = rules

    async def start(self) -> None:
        for objects, days in self._rules:
            await objects.ensure_expiry(days)

    async def stop(self) -> None:
        """Rules stay on the bucket."""
