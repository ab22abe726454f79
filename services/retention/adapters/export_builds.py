"""Build progress of open exports in Redis, next to their jobs.

Why Redis and not a compacted Kafka topic: this state is worth only what the job it
belongs to is worth, and jobs live in Redis (short-lived copies, lost with it). Lost, it
costs a rebuild from the start, never a wrong archive (an upload it named is dropped by
MinIO after 24 h), and nothing here is secret or plaintext (ids, ETags, offsets, CRCs,
digests, the archive's public header). It also changes at every part, which a compacted
topic would keep until compaction.

Keys, under `retention:export-build:<tenant>:<export>`: the hash itself (attempts, clip
count, upload id, header, and the checkpoint: sealed segments, where the current entry
starts, its digest so far, how many entries are stored) and the lists `:clips` (the
export's clip list, fixed when an attempt starts afresh), `:etags` and `:entries` (the
finished ZIP entries, appended as checkpoints go by); the set `retention:export-builds`
names every export that has some (`<tenant>/<export>`). Every write is one transaction
that first checks, under WATCH, that the export's job still exists.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from services.retention.adapters.exports import RedisExportStore
from services.retention.domain.archive import Checkpoint, ZipEntry
from services.retention.domain.export_build import BuildState
from services.retention.domain.model import ScheduledClip

_PAGE = 500


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(entry: ZipEntry) -> str:
    return json.dumps(
        [entry.name, entry.offset, entry.crc, entry.compressed, entry.size, entry.deflated]
    )


def _clip(clip: ScheduledClip) -> str:
    return json.dumps(
        [clip.device_id, clip.clip_id, clip.object_name, clip.key_version, clip.due_at.timestamp()]
    )


class RedisBuildProgress:
    def __init__(self, redis: Redis, jobs: RedisExportStore, prefix: str = "") -> None:
        self._redis = redis
        self._jobs = jobs
        self._p = f"{prefix}retention:export-build:"
        self._index = f"{prefix}retention:export-builds"

    def _key(self, tenant_id: str, export_id: str) -> str:
        return f"{self._p}{tenant_id}:{export_id}"

    async def _while_job(
        self, tenant_id: str, export_id: str, queue: Callable[[Pipeline], object]
    ) -> list[Any] | None:
        """Run the queued commands in one transaction if the job exists; their results."""
        job = self._jobs.job_key(tenant_id, export_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(job)
                    if not await pipe.exists(job):
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return None
                    pipe.multi()  # type: ignore[no-untyped-call]
                    queue(pipe)
                    return list(await pipe.execute())
                except WatchError:
                    continue

    async def load(self, tenant_id: str, export_id: str) -> BuildState | None:
        key = self._key(tenant_id, export_id)
        raw = {_text(k): _text(v) for k, v in (await self._redis.hgetall(key)).items()}
        if not raw:
            return None
        checkpoint = None
        if raw.get("sealed"):
            count = int(raw["entries"])
            etags = [_text(e) for e in await self._redis.lrange(f"{key}:etags", 0, -1)]
            entries = []
            for start in range(0, count, _PAGE):
                page = await self._redis.lrange(
                    f"{key}:entries", start, min(count, start + _PAGE) - 1
                )
                for item in page:
                    name, offset, crc, compressed, size, deflated = json.loads(item)
                    entries.append(ZipEntry(name, offset, crc, compressed, size, deflated))
            if len(entries) == count:
                checkpoint = Checkpoint(
                    sealed_segments=int(raw["sealed"]),
                    entry_start=int(raw["entry_start"]),
                    prefix_digest=bytes.fromhex(raw["digest"]),
                    etags=tuple(etags),
                    entries=tuple(entries),
                )
        return BuildState(
            attempts=int(raw.get("attempts", "0")),
            clips_total=int(raw.get("clips_total", "0")),
            upload_id=raw.get("upload_id", ""),
            header=bytes.fromhex(raw.get("header", "")),
            checkpoint=checkpoint,
        )

    async def attempt(self, tenant_id: str, export_id: str) -> int:
        key = self._key(tenant_id, export_id)

        def count(pipe: Pipeline) -> None:
            pipe.hincrby(key, "attempts", 1)
            pipe.sadd(self._index, f"{tenant_id}/{export_id}")

        done = await self._while_job(tenant_id, export_id, count)
        return 0 if done is None else int(done[0])

    async def begin(self, tenant_id: str, export_id: str, clips: Sequence[ScheduledClip]) -> bool:
        key = self._key(tenant_id, export_id)

        def reset(pipe: Pipeline) -> None:
            pipe.delete(f"{key}:clips", f"{key}:etags", f"{key}:entries")
            pipe.hdel(key, "upload_id", "header", "sealed", "entry_start", "digest", "entries")
            pipe.hset(key, "clips_total", str(len(clips)))

        if await self._while_job(tenant_id, export_id, reset) is None:
            return False
        for start in range(0, len(clips), 1000):
            page = [_clip(clip) for clip in clips[start : start + 1000]]

            def push(pipe: Pipeline, page: list[str] = page) -> None:
                pipe.rpush(f"{key}:clips", *page)

            pushed = await self._while_job(tenant_id, export_id, push)
            if pushed is None:
                return False
        return True

    async def started(self, tenant_id: str, export_id: str, upload_id: str, header: bytes) -> bool:
        key = self._key(tenant_id, export_id)
        done = await self._while_job(
            tenant_id,
            export_id,
            lambda pipe: pipe.hset(key, mapping={"upload_id": upload_id, "header": header.hex()}),
        )
        return done is not None

    async def clips(
        self, tenant_id: str, export_id: str, start: int
    ) -> AsyncIterator[ScheduledClip]:
        key = f"{self._key(tenant_id, export_id)}:clips"
        while True:
            page = await self._redis.lrange(key, start, start + _PAGE - 1)
            for item in page:
                device, clip, name, version, due = json.loads(item)
                yield ScheduledClip(
                    tenant_id, device, clip, name, version, datetime.fromtimestamp(due, UTC)
                )
            if len(page) < _PAGE:
                return
            start += _PAGE

    async def save(
        self, tenant_id: str, export_id: str, checkpoint: Checkpoint, saved_entries: int
    ) -> bool:
        key = self._key(tenant_id, export_id)
        new_entries = [_entry(entry) for entry in checkpoint.entries[saved_entries:]]
        stored_etags = await self._redis.llen(f"{key}:etags")
        new_etags = list(checkpoint.etags[stored_etags:])

        def write(pipe: Pipeline) -> None:
            # Entries and ETags only grow within an attempt (one builder holds the lease),
            # and each save is one transaction: appending the new ones keeps the lists and
            # the hash in step.
            if new_entries:
                pipe.rpush(f"{key}:entries", *new_entries)
            if new_etags:
                pipe.rpush(f"{key}:etags", *new_etags)
            pipe.hset(
                key,
                mapping={
                    "sealed": str(checkpoint.sealed_segments),
                    "entry_start": str(checkpoint.entry_start),
                    "digest": checkpoint.prefix_digest.hex(),
                    "entries": str(len(checkpoint.entries)),
                },
            )

        return await self._while_job(tenant_id, export_id, write) is not None

    async def builds(self) -> list[tuple[str, str]]:
        found = []
        for member in await self._redis.smembers(self._index):
            tenant, _, export = _text(member).partition("/")
            found.append((tenant, export))
        return sorted(found)

    async def exports_of(self, tenant_id: str) -> list[str]:
        return [export for tenant, export in await self.builds() if tenant == tenant_id]

    async def clear(self, tenant_id: str, export_id: str) -> None:
        key = self._key(tenant_id, export_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key, f"{key}:clips", f"{key}:etags", f"{key}:entries")
            pipe.srem(self._index, f"{tenant_id}/{export_id}")
            await pipe.execute()

    async def forget_tenant(self, tenant_id: str) -> None:
        for export_id in await self.exports_of(tenant_id):
            await self.clear(tenant_id, export_id)
