"""The clip index in Redis: a view of the clip topic, rebuilt from it when lost.

Per camera, a sorted set whose members are `<capture time, ms, 13 digits>:<clip id>`
(all scores 0, so the set is ordered by that text: capture time, then clip id) and
one string per clip holding its record as JSON, and for a day after an upload the
clip's fingerprint key (domain/fingerprint.py), so a retry can be compared with what
is stored. Listing walks the set newest first
with ZREVRANGEBYLEX; the page cursor is the last member returned. Every record
names its tenant, camera and clip, and the domain checks that against where it
was found, so an entry copied under another key is never served.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from services.clip_ingest.domain.model import ClipRecord, Page

_PREFIX = "clip_ingest:"


def _camera_key(tenant_id: str, device_id: str) -> str:
    return f"{_PREFIX}clips:{tenant_id}:{device_id}"


def _clip_key(tenant_id: str, device_id: str, clip_id: str) -> str:
    return f"{_PREFIX}clip:{tenant_id}:{device_id}:{clip_id}"


def _claim_key(tenant_id: str, device_id: str, clip_id: str) -> str:
    return f"{_PREFIX}claim:{tenant_id}:{device_id}:{clip_id}"


def _fingerprint_key_key(tenant_id: str, device_id: str, clip_id: str) -> str:
    return f"{_PREFIX}fpkey:{tenant_id}:{device_id}:{clip_id}"


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _member(record: ClipRecord) -> str:
    return f"{_ms(record.captured_at):013d}:{record.clip_id}"


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def record_json(record: ClipRecord) -> str:
    return json.dumps(
        {
            "tenant_id": record.tenant_id,
            "device_id": record.device_id,
            "clip_id": record.clip_id,
            "captured_at": record.captured_at.isoformat(),
            "ingested_at": record.ingested_at.isoformat(),
            "duration_us": record.duration // timedelta(microseconds=1),
            "size_bytes": record.size_bytes,
            "content_type": record.content_type,
            "delete_after": record.delete_after.isoformat(),
            "key_version": record.key_version,
            "key_period_start": (
                record.key_period_start.isoformat() if record.key_period_start else None
            ),
            "object_name": record.object_name,
        },
        separators=(",", ":"),
    )


def record_from_json(raw: str | bytes) -> ClipRecord:
    data: dict[str, Any] = json.loads(raw)
    return ClipRecord(
        tenant_id=data["tenant_id"],
        device_id=data["device_id"],
        clip_id=data["clip_id"],
        captured_at=datetime.fromisoformat(data["captured_at"]).astimezone(UTC),
        ingested_at=datetime.fromisoformat(data["ingested_at"]).astimezone(UTC),
        duration=timedelta(microseconds=data["duration_us"]),
        size_bytes=data["size_bytes"],
        content_type=data["content_type"],
        delete_after=datetime.fromisoformat(data["delete_after"]).astimezone(UTC),
        key_version=data["key_version"],
        key_period_start=_time(data["key_period_start"]),
        object_name=data["object_name"],
    )


class RedisClipIndex:
    """The ClipIndex port."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def claim(
        self, tenant_id: str, device_id: str, clip_id: str, seconds: int
    ) -> tuple[bool, ClipRecord | None, bytes | None]:
        ids = (tenant_id, device_id, clip_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(_claim_key(*ids), b"1", nx=True, ex=seconds)
            pipe.get(_clip_key(*ids))
            pipe.get(_fingerprint_key_key(*ids))
            held, raw, key = await pipe.execute()
        record = record_from_json(raw) if raw is not None else None
        return bool(held), record, bytes(key) if key else None

    async def release(self, tenant_id: str, device_id: str, clip_id: str) -> None:
        await self._redis.delete(_claim_key(tenant_id, device_id, clip_id))

    async def renew(self, tenant_id: str, device_id: str, clip_id: str, seconds: int) -> None:
        await self._redis.expire(_claim_key(tenant_id, device_id, clip_id), seconds)

    async def put(
        self,
        record: ClipRecord,
        previous: ClipRecord | None = None,
        previous_known: bool = False,
        end_claim: bool = False,
        fingerprint_key: bytes | None = None,
        remember_seconds: int = 0,
    ) -> None:
        ids = (record.tenant_id, record.device_id, record.clip_id)
        clip_key, camera_key = _clip_key(*ids), _camera_key(record.tenant_id, record.device_id)
        if not previous_known:
            raw = await self._redis.get(clip_key)
            previous = record_from_json(raw) if raw is not None else None
        async with self._redis.pipeline(transaction=True) as pipe:
            if previous is not None and _member(previous) != _member(record):
                pipe.zrem(camera_key, _member(previous))
            pipe.set(clip_key, record_json(record))
            pipe.zadd(camera_key, {_member(record): 0})
            if end_claim:
                pipe.delete(_claim_key(*ids))
            if fingerprint_key is not None and remember_seconds > 0:
                pipe.set(_fingerprint_key_key(*ids), fingerprint_key, ex=remember_seconds)
            await pipe.execute()

    async def get(self, tenant_id: str, device_id: str, clip_id: str) -> ClipRecord | None:
        raw = await self._redis.get(_clip_key(tenant_id, device_id, clip_id))
        return record_from_json(raw) if raw is not None else None

    async def remove(self, tenant_id: str, device_id: str, clip_ids: Sequence[str]) -> None:
        if not clip_ids:
            return
        clip_keys = [_clip_key(tenant_id, device_id, clip_id) for clip_id in clip_ids]
        stored = await self._redis.mget(clip_keys)
        members = [_member(record_from_json(raw)) for raw in stored if raw is not None]
        async with self._redis.pipeline(transaction=True) as pipe:
            if members:
                pipe.zrem(_camera_key(tenant_id, device_id), *members)
            pipe.delete(*clip_keys)
            pipe.delete(*(_fingerprint_key_key(tenant_id, device_id, c) for c in clip_ids))
            await pipe.execute()

    async def page(
        self,
        tenant_id: str,
        device_id: str,
        start: datetime | None,
        end: datetime | None,
        cursor: str | None,
        limit: int,
    ) -> Page:
        # Bounds on the member text: end is exclusive ("<end ms" sorts before "<end ms>:x").
        upper = f"({_ms(end):013d}" if end is not None else "+"
        if cursor is not None and (upper == "+" or f"({cursor}" < upper):
            upper = f"({cursor}"
        lower = f"[{_ms(start):013d}" if start is not None else "-"
        members = await self._redis.zrevrangebylex(
            _camera_key(tenant_id, device_id), upper, lower, start=0, num=limit + 1
        )
        names = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        more = len(names) > limit
        names = names[:limit]
        clip_ids = [name.split(":", 1)[1] for name in names]
        raws = (
            await self._redis.mget([_clip_key(tenant_id, device_id, c) for c in clip_ids])
            if clip_ids
            else []
        )
        entries = [
            (clip_id, record_from_json(raw))
            for clip_id, raw in zip(clip_ids, raws, strict=True)
            if raw is not None
        ]
        return Page(entries, names[-1] if more and names else None)

    async def generation(self, namespace: str, make: str) -> str:
        """The index's generation (per Kafka namespace): set to `make` if Redis has none
        (empty or lost), so the follower knows to replay the clip topic from its start."""
        key = f"{_PREFIX}generation:{namespace}"
        await self._redis.set(key, make, nx=True)
        value = await self._redis.get(key)
        return value.decode() if isinstance(value, bytes) else str(value)
