"""The privacy watch's notices, kept per household in Redis and told once to its open streams.

Keys (after the Kafka namespace, `relay:` prefix):
  watch-notices:<tenant>  hash: notice id -> the HouseholdNotice (serialized)
  watch-order:<tenant>    sorted set: notice id by the access's time (ms)
  watch-digests:<tenant>, watch-digest-order:<tenant>: the same for the household's digests,
  kept apart and longer (a year of weekly digests by default), so a busy week's notices
  never push the digest the household checks its log against out of the store.

One Lua script keeps a notice and publishes it on the household's notice channel only if
its id is new (HSETNX), so a notice the watch or this consumer replays after a crash
(at-least-once on both sides, same id) reaches the apps once. Each household keeps its
newest `kept` notices for `keep` (both refreshed with each new one), and its newest
`digests_kept` digests for `digests_keep`: the store the apps' later reads come from
(`recent`). A notice trimmed or expired and replayed after would be
told again: replays are the last second of the topic, never weeks old. A deleted account's
notices are deleted with it (`forget`, from the identity topic's AccountDeleted).
"""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from redis.asyncio import Redis

from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.watch.v1 import events_pb2 as watch_pb2
from services.relay_broker.adapters.links import notice_channel
from services.relay_broker.adapters.redis_state import PREFIX

_KEEP = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if extra > 0 then
  local old = redis.call('ZRANGE', KEYS[2], 0, extra - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1)
  redis.call('HDEL', KEYS[1], unpack(old))
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
"""


class RedisWatchNotices:
    def __init__(
        self,
        redis: Redis,
        namespace: str,
        kept: int,
        keep: timedelta,
        digests_kept: int = 53,
        digests_keep: timedelta = timedelta(days=400),
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._p = namespace + PREFIX
        self._limits = {False: (kept, _ms(keep)), True: (digests_kept, _ms(digests_keep))}
        self._keep = redis.register_script(_KEEP)

    def _keys(self, tenant_id: str, digests: bool = False) -> list[str]:
        if digests:
            return [
                f"{self._p}watch-digests:{tenant_id}",
                f"{self._p}watch-digest-order:{tenant_id}",
            ]
        return [f"{self._p}watch-notices:{tenant_id}", f"{self._p}watch-order:{tenant_id}"]

    async def keep_and_tell(self, tenant_id: str, notice: pb.HouseholdNotice) -> bool:
        """Keep the notice and tell the household's open streams; False if already kept."""
        digest = notice.privacy_watch.rule == watch_pb2.WATCH_RULE_DIGEST
        kept, keep_ms = self._limits[digest]
        stored = notice.SerializeToString()
        told = pb.StreamNoticesResponse(notice=notice).SerializeToString()
        new = await self._keep(
            keys=self._keys(tenant_id, digest),
            args=[
                notice.notice_id,
                stored,
                notice.occurred_at.ToMilliseconds(),
                kept,
                keep_ms,
                self._namespace + notice_channel(tenant_id),
                told,
            ],
        )
        return bool(new)

    async def forget(self, tenant_id: str) -> None:
        """The household's account was deleted: its kept notices and digests go with it."""
        await self._redis.delete(*self._keys(tenant_id), *self._keys(tenant_id, True))

    async def _newest(self, keys: list[str], limit: int) -> list[pb.HouseholdNotice]:
        hash_key, order_key = keys
        ids = await self._redis.zrevrange(order_key, 0, max(0, limit - 1))
        if not ids:
            return []
        values = await self._redis.hmget(hash_key, cast(list[bytes], ids))
        return [pb.HouseholdNotice.FromString(v) for v in values if isinstance(v, bytes)]

    async def recent(
        self, tenant_id: str, limit: int = 100, digests_only: bool = False
    ) -> list[pb.HouseholdNotice]:
        """The household's kept notices and digests (or its digests only), newest first."""
        digests = await self._newest(self._keys(tenant_id, True), limit)
        if digests_only:
            return digests
        notices = await self._newest(self._keys(tenant_id), limit)
        merged = sorted(
            notices + digests, key=lambda n: n.occurred_at.ToNanoseconds(), reverse=True
        )
        return merged[:limit]


def _ms(span: timedelta) -> int:
    return int(span.total_seconds() * 1000)
