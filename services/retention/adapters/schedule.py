"""The retention schedule in Redis: a view rebuilt from the clips topic if it is lost.

Keys (prefix `<kafka namespace>retention:`, so test runs sharing a Redis stay apart):
  due                     sorted set, member `<tenant>/<device>/<clip>`, score = due time
  clip:<member>           hash: object name `o`, KEK version `v`
  dev:<tenant>/<device>   sorted set of the camera's scheduled clips by due time
  tenant:<tenant>         set of the tenant's cameras with scheduled clips
  period:<tenant>/<v>     hash: `live` and `covered` clip counts, `start` of the period
  emptied                 set of `<tenant>/<v>` whose live count reached zero
  gone:<member>           a deleted clip, so a replayed ClipIngested does not bring it back
  view                    marker: the view is complete (absent: rebuild from Kafka)
Each change is one Lua script, so a crash never leaves a clip half-counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from services.retention.domain.model import PeriodCount, PeriodRef, ScheduledClip

_ADD = """
if redis.call('EXISTS', KEYS[6]) == 1 then return 0 end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], 'o', ARGV[3], 'v', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[5])
redis.call('HINCRBY', KEYS[5], 'live', 1)
redis.call('HINCRBY', KEYS[5], 'covered', 1)
if ARGV[6] ~= '' then redis.call('HSETNX', KEYS[5], 'start', ARGV[6]) end
return 1
"""

# One call for a whole batch (keys are built here, so this needs a standalone Redis or one
# hash slot, as the rest of the view does). The KEK version comes from the stored entry.
_REMOVE = """
local p, removed = ARGV[1], {}
for i = 3, #ARGV, 2 do
  local m, dev = ARGV[i], ARGV[i + 1]
  local tenant = string.match(m, '^([^/]+)/')
  redis.call('SET', p .. 'gone:' .. m, '1', 'EX', ARGV[2])
  local v = redis.call('HGET', p .. 'clip:' .. m, 'v')
  if redis.call('ZREM', KEYS[1], m) == 1 then
    redis.call('DEL', p .. 'clip:' .. m)
    redis.call('ZREM', p .. 'dev:' .. tenant .. '/' .. dev, m)
    if v and redis.call('HINCRBY', p .. 'period:' .. tenant .. '/' .. v, 'live', -1) <= 0 then
      redis.call('SADD', KEYS[2], tenant .. '/' .. v)
    end
    removed[#removed + 1] = m
  end
end
return removed
"""

_DUE = """
local scored = redis.call(
  'ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])
local out = {}
for i = 1, #scored, 2 do
  local fields = redis.call('HMGET', ARGV[3] .. scored[i], 'o', 'v')
  if fields[1] then
    out[#out + 1] = scored[i]
    out[#out + 1] = scored[i + 1]
    out[#out + 1] = fields[1]
    out[#out + 1] = fields[2]
  end
end
return out
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _epoch(moment: datetime) -> float:
    return moment.timestamp()


def _moment(value: float | bytes | str) -> datetime:
    return datetime.fromtimestamp(float(value), UTC)


class RedisSchedule:
    def __init__(self, redis: Redis, gone_ttl_seconds: int, prefix: str = "") -> None:
        self._redis = redis
        self._p = f"{prefix}retention:"
        self._gone_ttl = gone_ttl_seconds
        self._add = redis.register_script(_ADD)
        self._remove = redis.register_script(_REMOVE)
        self._due = redis.register_script(_DUE)

    def _period_key(self, period: PeriodRef) -> str:
        return f"{self._p}period:{period.tenant_id}/{period.key_version}"

    # --- the rebuild marker ---------------------------------------------------------

    async def is_complete(self) -> bool:
        return bool(await self._redis.exists(self._p + "view"))

    async def mark_complete(self) -> None:
        await self._redis.set(self._p + "view", "1")

    # --- changes ----------------------------------------------------------------------

    async def add(self, clip: ScheduledClip, period_start: datetime | None) -> bool:
        member = clip.member
        period = PeriodRef(clip.tenant_id, clip.key_version)
        added = await self._add(
            keys=[
                self._p + "due",
                f"{self._p}clip:{member}",
                f"{self._p}dev:{clip.tenant_id}/{clip.device_id}",
                f"{self._p}tenant:{clip.tenant_id}",
                self._period_key(period),
                f"{self._p}gone:{member}",
            ],
            args=[
                member,
                _epoch(clip.due_at),
                clip.object_name,
                clip.key_version,
                clip.device_id,
                "" if period_start is None else _epoch(period_start),
            ],
        )
        return bool(added)

    async def remove(self, clips: Sequence[ScheduledClip]) -> list[ScheduledClip]:
        if not clips:
            return []
        args: list[str | int] = [self._p, self._gone_ttl]
        for clip in clips:
            args += [clip.member, clip.device_id]
        removed = {
            _text(m)
            for m in await self._remove(keys=[self._p + "due", self._p + "emptied"], args=args)
        }
        return [clip for clip in clips if clip.member in removed]

    # --- reads ------------------------------------------------------------------------

    async def _load(self, scored: Any) -> list[ScheduledClip]:
        if not scored:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for member, _ in scored:
                pipe.hmget(f"{self._p}clip:{_text(member)}", ["o", "v"])
            details = await pipe.execute()
        clips = []
        for (member, score), (object_name, version) in zip(scored, details, strict=True):
            if object_name is None:
                continue  # removed between the two reads
            tenant, device, clip_id = _text(member).split("/", 2)
            clips.append(
                ScheduledClip(
                    tenant, device, clip_id, _text(object_name), int(version), _moment(score)
                )
            )
        return clips

    async def due(self, before: datetime, limit: int) -> list[ScheduledClip]:
        flat = await self._due(
            keys=[self._p + "due"], args=[_epoch(before), limit, self._p + "clip:"]
        )
        clips = []
        for at in range(0, len(flat), 4):
            member, score, object_name, version = flat[at : at + 4]
            tenant, device, clip_id = _text(member).split("/", 2)
            clips.append(
                ScheduledClip(
                    tenant, device, clip_id, _text(object_name), int(version), _moment(score)
                )
            )
        return clips

    async def get(self, tenant_id: str, device_id: str, clip_id: str) -> ScheduledClip | None:
        member = f"{tenant_id}/{device_id}/{clip_id}"
        score = await self._redis.zscore(self._p + "due", member)
        if score is None:
            return None
        found = await self._load([(member.encode(), score)])
        return found[0] if found else None

    async def device_clips(self, tenant_id: str, device_id: str) -> list[ScheduledClip]:
        scored = await self._redis.zrange(
            f"{self._p}dev:{tenant_id}/{device_id}", 0, -1, withscores=True
        )
        return await self._load(scored)

    async def tenant_clips(self, tenant_id: str) -> list[ScheduledClip]:
        devices = await self._redis.smembers(f"{self._p}tenant:{tenant_id}")
        clips: list[ScheduledClip] = []
        for device in sorted(devices):
            clips += await self.device_clips(tenant_id, _text(device))
        return clips

    async def next_due(self, tenant_id: str, device_id: str) -> datetime | None:
        first = await self._redis.zrange(
            f"{self._p}dev:{tenant_id}/{device_id}", 0, 0, withscores=True
        )
        return _moment(first[0][1]) if first else None

    async def emptied_periods(self) -> list[PeriodCount]:
        refs = sorted(_text(m) for m in await self._redis.smembers(self._p + "emptied"))
        counts = []
        for ref in refs:
            tenant, _, version = ref.rpartition("/")
            period = PeriodRef(tenant, int(version))
            live, covered, start = await self._redis.hmget(
                self._period_key(period), ["live", "covered", "start"]
            )
            if live is not None and int(live) > 0:
                # A late clip landed after the count reached zero: not empty after all.
                await self._redis.srem(self._p + "emptied", ref)
                continue
            counts.append(
                PeriodCount(
                    period,
                    live=0,
                    covered=int(covered or 0),
                    period_start=None if start is None else _moment(start),
                )
            )
        return counts

    async def forget_period(self, period: PeriodRef) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._period_key(period))
            pipe.srem(self._p + "emptied", f"{period.tenant_id}/{period.key_version}")
            await pipe.execute()

    async def forget_tenant(self, tenant_id: str) -> None:
        """Every key and member naming the tenant, so nothing of it stays in Redis."""
        doomed: list[str] = [f"{self._p}tenant:{tenant_id}"]
        for pattern in (
            f"{self._p}gone:{tenant_id}/*",
            f"{self._p}dev:{tenant_id}/*",
            f"{self._p}period:{tenant_id}/*",
            f"{self._p}clip:{tenant_id}/*",
        ):
            doomed += [_text(key) async for key in self._redis.scan_iter(match=pattern)]
        members = [
            _text(m)
            async for m, _ in self._redis.zscan_iter(self._p + "due", match=f"{tenant_id}/*")
        ]
        emptied = [
            _text(m)
            for m in await self._redis.smembers(self._p + "emptied")
            if _text(m).startswith(f"{tenant_id}/")
        ]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*doomed)
            if members:
                pipe.zrem(self._p + "due", *members)
            if emptied:
                pipe.srem(self._p + "emptied", *emptied)
            await pipe.execute()
