"""Store components against the real MinIO."""

from __future__ import annotations

import asyncio
import secrets

from services.common.stores import ObjectStore
from tests.harness import stack_minio, stack_minio_settings


async def test_services_sharing_a_bucket_start_together(stack_env: dict[str, str]) -> None:
    """Two services creating the same bucket at once both start (a CI run lost one to this)."""
    bucket = f"privacam-race-{secrets.token_hex(4)}"
    stores = [ObjectStore(stack_minio_settings(stack_env), (bucket,)) for _ in range(6)]
    try:
        await asyncio.gather(*(store.start() for store in stores))
        # The losing side of the race, every time: the bucket appears after the check.
        late = ObjectStore(stack_minio_settings(stack_env), (bucket,))
        late.client.bucket_exists = lambda _bucket: False  # type: ignore[method-assign,assignment]
        await late.start()
        assert stores[0].client.bucket_exists(bucket)
    finally:
        stack_minio(stack_env).remove_bucket(bucket)
