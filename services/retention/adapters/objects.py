"""Clip and export objects in MinIO: batch deletes, tenant listings, the lifecycle backstop."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence

from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.deleteobjects import DeleteObject
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from services.common.errors import Unavailable

BACKSTOP_RULE_ID = "privacam-retention-backstop"


def tenant_prefix(tenant_id: str) -> str:
    """Where clip_ingest stores a tenant's clips (and retention its exports): `t/<tenant>/`."""
    return f"t/{tenant_id}/"


class MinioObjects:
    """One bucket of a MinIO client; the client is synchronous, so calls run in a thread."""

    def __init__(self, client: Minio, bucket: str) -> None:
        self._client = client
        self.bucket = bucket

    async def delete(self, names: Sequence[str]) -> None:
        if not names:
            return

        def run() -> list[str]:
            # remove_objects is lazy: the request is sent while its errors are iterated.
            errors = self._client.remove_objects(
                self.bucket, [DeleteObject(name) for name in names]
            )
            return [error.code for error in errors if error.code != "NoSuchKey"]

        failed = await asyncio.to_thread(run)
        if failed:
            raise Unavailable(
                f"object storage refused {len(failed)} of {len(names)} deletions ({failed[0]}); "
                "they will be retried"
            )

    async def read(self, name: str) -> bytes:
        def run() -> bytes:
            response = self._client.get_object(self.bucket, name)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return await asyncio.to_thread(run)

    async def write(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(
            self._client.put_object,
            self.bucket,
            name,
            io.BytesIO(data),
            len(data),
            content_type="application/octet-stream",
        )

    async def tenant_objects(self, tenant_id: str) -> list[str]:
        def run() -> list[str]:
            return [
                obj.object_name
                for obj in self._client.list_objects(
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
            self._client.set_bucket_lifecycle, self.bucket, LifecycleConfig([rule])
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
