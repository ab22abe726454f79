"""Sessions and presence in Redis, shared by every broker replica.

Everything here may be lost: a session is minutes long, presence is refreshed every
heartbeat, and both expire on their own (a replica that dies leaves nothing behind
for long; the leases below make sure its sessions still end, logged). Keys (`relay:`
prefix):
  session:<id>            hash: the session, joined sides, end reason, relayed bytes
  session-leases          sorted set: `<id>/app`, `<id>/camera` by the time (ms) their
                          lease runs out; renewed by the replica holding that side's
                          Signal stream, dropped when the session ends
  camera-sessions:<dev>   set of open session ids on a camera  (per-camera limit)
  app-sessions:<t>/<app>  set of open session ids of an app     (per-app limit)
  grant-sessions:<grant>  set of open session ids under a grant (revocation)
  presence:<dev>          hash: replica stream id, since, max sessions; TTL 3 heartbeats
  offline-since:<dev>     when the camera last went offline (kept a week)
  talk:<dev>              hash: the camera's running talk-back (its session and times);
                          expires a minute after the talk-back's latest end
  talk-deadlines          sorted set: `<dev>/<session>` by the talk-back's latest end
                          (ms), so any replica ends it if the one timing it died
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from redis.asyncio import Redis

from services.relay_broker.domain.errors import TooManySessions
from services.relay_broker.domain.model import (
    EndReason,
    Presence,
    Role,
    Session,
    Side,
    Talk,
    Viewer,
)

PREFIX = "relay:"
"""Key prefix, after the Kafka namespace (environments sharing a Redis never meet)."""

# Reserve within both limits or not at all; drops members whose session has expired.
_CREATE = """
local function live(set)
  for _, sid in ipairs(redis.call('SMEMBERS', set)) do
    local h = ARGV[6] .. sid
    if redis.call('EXISTS', h) == 0 or redis.call('HEXISTS', h, 'ended') == 1 then
      redis.call('SREM', set, sid)
    end
  end
  return redis.call('SCARD', set)
end
if live(KEYS[2]) >= tonumber(ARGV[3]) then return 'camera' end
if live(KEYS[3]) >= tonumber(ARGV[4]) then return 'app' end
redis.call('HSET', KEYS[1], unpack(cjson.decode(ARGV[1])))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[5]); redis.call('PEXPIRE', KEYS[2], ARGV[7])
redis.call('SADD', KEYS[3], ARGV[5]); redis.call('PEXPIRE', KEYS[3], ARGV[7])
if KEYS[4] ~= KEYS[1] then
  redis.call('SADD', KEYS[4], ARGV[5]); redis.call('PEXPIRE', KEYS[4], ARGV[7])
end
redis.call('ZADD', KEYS[5], ARGV[8], ARGV[5] .. '/app', ARGV[8], ARGV[5] .. '/camera')
return 'ok'
"""

# First caller ends it; the sets and leases forget it. Returns the hash, or nil if
# already ended.
_END = """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
if redis.call('HSETNX', KEYS[1], 'ended', ARGV[1]) == 0 then return nil end
redis.call('SREM', KEYS[2], ARGV[2]); redis.call('SREM', KEYS[3], ARGV[2])
if KEYS[4] ~= KEYS[1] then redis.call('SREM', KEYS[4], ARGV[2]) end
redis.call('ZREM', KEYS[5], ARGV[2] .. '/app', ARGV[2] .. '/camera')
redis.call('PEXPIRE', KEYS[1], 60000)
return redis.call('HGETALL', KEYS[1])
"""

_JOIN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HSETNX', KEYS[1], 'joined_' .. ARGV[1], '1') == 0 then return 0 end
local n = redis.call('HINCRBY', KEYS[1], 'joined', 1)
if n == 2 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n
"""

# Only the stream that registered presence may clear it (a reconnect may have replaced it).
_OFFLINE = """
if redis.call('HGET', KEYS[1], 'stream') == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', 604800)
  return redis.call('DEL', KEYS[1])
end
return 0
"""


# One talk-back per camera: store it unless one runs; else the running one's session.
_TALK_RESERVE = """
local running = redis.call('HGET', KEYS[1], 'session_id')
if running then return running end
redis.call('HSET', KEYS[1], unpack(cjson.decode(ARGV[1])))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return nil
"""

# First caller ends it, and only if it is that session's; its deadline goes in any case.
_TALK_END = """
redis.call('ZREM', KEYS[2], ARGV[2])
if redis.call('HGET', KEYS[1], 'session_id') ~= ARGV[1] then return nil end
local talk = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return talk
"""


def _ms(delta: timedelta) -> int:
    return max(1, int(delta.total_seconds() * 1000))


def _epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _fields(session: Session) -> dict[str, str]:
    return {
        "device": session.device_id,
        "owner": session.owner_tenant_id,
        "viewer_tenant": session.viewer.tenant_id,
        "viewer_app": session.viewer.app_id,
        "role": session.role.value,
        "grant": session.grant_id,
        "started": session.started_at.isoformat(),
        "expires": session.expires_at.isoformat(),
    }


def _session(session_id: str, raw: dict[str, str]) -> Session:
    return Session(
        session_id=session_id,
        device_id=raw["device"],
        owner_tenant_id=raw["owner"],
        viewer=Viewer(raw["viewer_tenant"], raw["viewer_app"]),
        role=Role(raw["role"]),
        grant_id=raw["grant"],
        started_at=datetime.fromisoformat(raw["started"]),
        expires_at=datetime.fromisoformat(raw["expires"]),
    )


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _text(raw: Mapping[Any, Any] | list[Any]) -> dict[str, str]:
    if isinstance(raw, list):  # HGETALL from a script: flat [k, v, k, v, ...]
        raw = dict(zip(raw[::2], raw[1::2], strict=True))
    return {_str(k): _str(v) for k, v in raw.items()}


class RedisSessions:
    def __init__(self, redis: Redis, max_duration: timedelta, namespace: str = "") -> None:
        self._redis = redis
        self._p = namespace + PREFIX
        self._leases = f"{self._p}session-leases"
        self._set_ttl = max_duration + timedelta(minutes=5)
        self._create = redis.register_script(_CREATE)
        self._end = redis.register_script(_END)
        self._join = redis.register_script(_JOIN)

    def _session_key(self, session_id: str) -> str:
        return f"{self._p}session:{session_id}"

    def _keys(self, session: Session) -> list[str]:
        """Session, camera set, app set, grant set, leases; without a grant the fourth is
        the session's key again (the scripts skip it then): every key a script is handed
        must be one of ours, or Redis refuses the call for the broker's ACL user."""
        session_key = self._session_key(session.session_id)
        return [
            session_key,
            f"{self._p}camera-sessions:{session.device_id}",
            f"{self._p}app-sessions:{session.viewer.tenant_id}/{session.viewer.app_id}",
            f"{self._p}grant-sessions:{session.grant_id}" if session.grant_id else session_key,
            self._leases,
        ]

    async def create(
        self,
        session: Session,
        camera_limit: int,
        app_limit: int,
        ttl: timedelta,
        lease_until: datetime,
    ) -> None:
        flat = [item for pair in _fields(session).items() for item in pair]
        result = await self._create(
            keys=self._keys(session),
            args=[
                json.dumps(flat),
                _ms(ttl),
                camera_limit,
                app_limit,
                session.session_id,
                f"{self._p}session:",
                _ms(self._set_ttl),
                _epoch_ms(lease_until),
            ],
        )
        if result == b"camera":
            raise TooManySessions(
                f"the camera already serves its maximum of {camera_limit} live views"
            )
        if result == b"app":
            raise TooManySessions(f"this app already holds its maximum of {app_limit} live views")

    async def discard(self, session: Session) -> None:
        session_key, *sets, leases = self._keys(session)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(session_key)
            for key in sets:
                if key != session_key:
                    pipe.srem(key, session.session_id)
            pipe.zrem(leases, *_lease_members(session.session_id))
            await pipe.execute()

    async def get(self, session_id: str) -> tuple[Session, bool] | None:
        raw = _text(await self._redis.hgetall(self._session_key(session_id)))
        if "device" not in raw:
            return None
        return _session(session_id, raw), "ended" in raw

    async def join(self, session_id: str, side: Side, ttl: timedelta) -> int | None:
        count = int(
            await self._join(keys=[self._session_key(session_id)], args=[side.value, _ms(ttl)])
        )
        return None if count <= 0 else count

    async def joined(self, session_id: str) -> int:
        value = await self._redis.hget(self._session_key(session_id), "joined")
        return int(value or 0)

    async def end(self, session_id: str, reason: EndReason) -> tuple[Session, int] | None:
        found = await self.get(session_id)
        if found is None:
            return None
        raw = await self._end(keys=self._keys(found[0]), args=[reason.value, session_id])
        if raw is None:
            return None
        fields = _text(raw)
        return _session(session_id, fields), int(fields.get("relayed_bytes", "0"))

    async def renew(self, leases: Sequence[tuple[str, Side, datetime]]) -> None:
        """One round trip for every side this replica holds (XX: an ended session's
        leases are gone and stay gone)."""
        if leases:
            mapping = {f"{sid}/{side.value}": _epoch_ms(until) for sid, side, until in leases}
            await self._redis.zadd(self._leases, mapping, xx=True)

    async def lapsed(self, now: datetime, limit: int) -> list[str]:
        members = await _by_score(self._redis, self._leases, now, limit)
        return list(dict.fromkeys(m.rpartition("/")[0] for m in members))

    async def forget(self, session_id: str) -> None:
        await self._redis.zrem(self._leases, *_lease_members(session_id))

    async def add_relayed(self, session_id: str, count: int) -> bool:
        """Add to a session's relayed bytes; False when it is not ours (or long gone)."""
        key = self._session_key(session_id)
        # Only while the session exists: a late report must not recreate its key.
        if not await self._redis.exists(key):
            return False
        await self._redis.hincrby(key, "relayed_bytes", count)
        return True

    async def _members(self, key: str) -> list[str]:
        return sorted(_str(m) for m in await self._redis.smembers(key))

    async def of_camera(self, device_id: str) -> list[str]:
        return await self._members(f"{self._p}camera-sessions:{device_id}")

    async def of_app(self, viewer: Viewer) -> list[str]:
        return await self._members(f"{self._p}app-sessions:{viewer.tenant_id}/{viewer.app_id}")

    async def of_grant(self, grant_id: str) -> list[str]:
        return await self._members(f"{self._p}grant-sessions:{grant_id}")


async def _by_score(redis: Redis, key: str, until: datetime, limit: int) -> list[str]:
    """Members of a sorted set of deadlines (ms since 1970) due by ``until``, oldest first."""
    members = await redis.zrangebyscore(key, "-inf", _epoch_ms(until), start=0, num=limit)
    return [_str(cast(bytes, m)) for m in members]


def _lease_members(session_id: str) -> tuple[str, ...]:
    return tuple(f"{session_id}/{side.value}" for side in Side)


class RedisPresence:
    def __init__(self, redis: Redis, ttl: timedelta, namespace: str = "") -> None:
        self._redis = redis
        self._p = namespace + PREFIX
        self._ttl_ms = _ms(ttl)
        self._offline = redis.register_script(_OFFLINE)

    def _key(self, device_id: str) -> str:
        return f"{self._p}presence:{device_id}"

    async def online(
        self, device_id: str, stream_id: str, since: datetime, max_sessions: int
    ) -> None:
        key = self._key(device_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(
                key,
                mapping={
                    "stream": stream_id,
                    "since": since.isoformat(),
                    "max_sessions": str(max_sessions),
                },
            )
            pipe.pexpire(key, self._ttl_ms)
            await pipe.execute()

    async def refresh(self, device_ids: list[str]) -> None:
        """One round trip for every camera of this replica, each heartbeat."""
        if not device_ids:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for device_id in device_ids:
                pipe.pexpire(self._key(device_id), self._ttl_ms)
            await pipe.execute()

    async def offline(self, device_id: str, stream_id: str, at: datetime) -> bool:
        """Clear presence if this stream still holds it; True when the camera is now offline."""
        return bool(
            await self._offline(
                keys=[self._key(device_id), f"{self._p}offline-since:{device_id}"],
                args=[stream_id, at.isoformat()],
            )
        )

    async def get(self, device_ids: list[str]) -> list[Presence]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for device_id in device_ids:
                pipe.hgetall(self._key(device_id))
                pipe.get(f"{self._p}offline-since:{device_id}")
            rows = await pipe.execute()
        result = []
        for device_id, row, left in zip(device_ids, rows[::2], rows[1::2], strict=True):
            raw = _text(row)
            if "since" in raw:
                result.append(
                    Presence(
                        device_id,
                        True,
                        datetime.fromisoformat(raw["since"]).astimezone(UTC),
                        int(raw["max_sessions"]),
                    )
                )
            else:
                since = datetime.fromisoformat(left.decode()).astimezone(UTC) if left else None
                result.append(Presence(device_id, False, since))
        return result


class RedisTalks:
    """The TalkStore port: a camera's running talk-back, shared by every replica."""

    def __init__(self, redis: Redis, namespace: str = "") -> None:
        self._redis = redis
        self._p = namespace + PREFIX
        self._deadlines = f"{self._p}talk-deadlines"
        self._reserve = redis.register_script(_TALK_RESERVE)
        self._end = redis.register_script(_TALK_END)

    def _key(self, device_id: str) -> str:
        return f"{self._p}talk:{device_id}"

    async def reserve(self, talk: Talk, ttl: timedelta) -> str | None:
        fields = {
            **_fields(talk.session),
            "session_id": talk.session.session_id,
            "talk_started": talk.started_at.isoformat(),
            "talk_expires": talk.expires_at.isoformat(),
            "camera_name": talk.camera_name,
        }
        flat = [item for pair in fields.items() for item in pair]
        device_id, session_id = talk.session.device_id, talk.session.session_id
        running = await self._reserve(
            keys=[self._key(device_id), self._deadlines],
            args=[
                json.dumps(flat),
                _ms(ttl),
                _epoch_ms(talk.expires_at),
                f"{device_id}/{session_id}",
            ],
        )
        return None if running is None else _str(running)

    async def due(self, before: datetime, limit: int) -> list[tuple[str, str]]:
        members = await _by_score(self._redis, self._deadlines, before, limit)
        due = []
        for member in members:
            device_id, _, session_id = member.partition("/")
            due.append((device_id, session_id))
        return due

    async def end(self, device_id: str, session_id: str) -> Talk | None:
        raw = await self._end(
            keys=[self._key(device_id), self._deadlines],
            args=[session_id, f"{device_id}/{session_id}"],
        )
        if not raw:
            return None
        fields = _text(raw)
        return Talk(
            session=_session(session_id, fields),
            started_at=datetime.fromisoformat(fields["talk_started"]),
            expires_at=datetime.fromisoformat(fields["talk_expires"]),
            camera_name=fields["camera_name"],
        )
