"""Short-lived device_auth state in Redis: claim tokens, wrong-PIN and password counters.

Keys (app.py sets `prefix` to `<Kafka namespace>device_auth:`, KEY_PREFIX after the
namespace, which is empty in production: device_auth's Redis user may touch only keys
under it; tests use their own prefix to keep to their own keys):

    <prefix>claim:<sha256 hex>      a claim token's JSON, PX until its expires_at
    <prefix>claims:<tenant>         set of the tenant's token hashes (for purges),
                                    expiring with its longest-lived token
    <prefix>pin-attempts:<device>   a camera's PinAttemptState as JSON
    <prefix>password-tries:<sha256> password tries of one account in its window (an
                                    integer), PX until the window ends; the key is
                                    the SHA-256 of the domain's counter key

Only the token's SHA-256 is stored, never the token; no PIN or PIN hash at all;
no login at all (a password counter's key is a hash, naming neither login nor tenant).
Losing Redis costs unused claim tokens (the owner makes a new one) and resets
PIN and password counters (the backoff starts over, the lockout still needs 10
new tries; the password budget is full again).
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta

from redis.asyncio import Redis
from redis.exceptions import WatchError

from services.common.clock import Clock
from services.device_auth.adapters.codec import (
    dumps,
    loads,
    optional_time_text,
    parse_optional_time,
    parse_subject,
    parse_time,
    subject_json,
    time_text,
)
from services.device_auth.domain.records import ClaimToken, PasswordTries, PinAttemptState

KEY_PREFIX = "device_auth:"
"""What every key of device_auth starts with, after the Kafka namespace (the patterns of
its Redis ACL user, stack/redis_acl.py)."""

# SET the token, add its hash to the tenant's set, and make the set live at least
# as long as the token; atomic, so no token is ever missing from its tenant's set.
_STORE_CLAIM_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
"""

# Count one password try: the first opens the window (PX), later ones leave it. A key
# somehow without an expiry gets one, so no counter can block an account forever.
_ADD_TRY_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if count == 1 or left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {count, left}
"""

DEFAULT_PIN_STATE_TTL = timedelta(hours=48)


def _milliseconds(delta: timedelta) -> int:
    return math.ceil(delta / timedelta(milliseconds=1))


def _token_json(token: ClaimToken) -> bytes:
    return dumps(
        {
            "token_hash": token.token_hash,
            "tenant_id": token.tenant_id,
            "created_at": time_text(token.created_at),
            "expires_at": time_text(token.expires_at),
            "created_by": subject_json(token.created_by),
        }
    )


def _parse_token(data: bytes | str) -> ClaimToken:
    d = loads(data)
    return ClaimToken(
        token_hash=d["token_hash"],
        tenant_id=d["tenant_id"],
        created_at=parse_time(d["created_at"]),
        expires_at=parse_time(d["expires_at"]),
        created_by=parse_subject(d.get("created_by")),
    )


class RedisClaimTokens:
    """ClaimTokens port: entries vanish from Redis at their expires_at."""

    def __init__(self, redis: Redis, clock: Clock, prefix: str = "") -> None:
        self._redis = redis
        self._clock = clock
        self._prefix = prefix
        self._put = redis.register_script(_STORE_CLAIM_SCRIPT)

    def _token_key(self, token_hash: str) -> str:
        return f"{self._prefix}claim:{token_hash}"

    def _tenant_key(self, tenant_id: str) -> str:
        return f"{self._prefix}claims:{tenant_id}"

    async def put(self, token: ClaimToken) -> None:
        ttl = _milliseconds(token.expires_at - self._clock.now())
        if ttl <= 0:
            return  # already expired: nothing could take it
        await self._put(
            keys=[self._token_key(token.token_hash), self._tenant_key(token.tenant_id)],
            args=[_token_json(token), ttl, token.token_hash],
        )

    async def take(self, token_hash: str) -> ClaimToken | None:
        data: bytes | str | None = await self._redis.getdel(self._token_key(token_hash))
        if data is None:
            return None
        token = _parse_token(data)
        await self._redis.srem(self._tenant_key(token.tenant_id), token_hash)
        return token

    async def delete_for_tenant(self, tenant_id: str) -> int:
        tenant_key = self._tenant_key(tenant_id)
        members = await self._redis.smembers(tenant_key)
        if not members:
            return 0
        hashes = sorted(m.decode() if isinstance(m, bytes) else m for m in members)
        deleted: int = await self._redis.delete(*(self._token_key(h) for h in hashes))
        await self._redis.srem(tenant_key, *hashes)
        return deleted


def _pin_json(state: PinAttemptState) -> bytes:
    return dumps({"failures": state.failures, "next_try_at": optional_time_text(state.next_try_at)})


def _parse_pin(data: bytes | str) -> PinAttemptState:
    d = loads(data)
    return PinAttemptState(
        failures=d["failures"], next_try_at=parse_optional_time(d.get("next_try_at"))
    )


class RedisPinAttempts:
    """PinAttempts port: compare-and-set with WATCH/MULTI, comparing decoded states.

    A stored state lives `ttl` after the later of now and its `next_try_at`, so it
    always outlives its backoff or lockout (at most 24 h under the default policy);
    a camera left alone that long starts from a fresh count.
    """

    def __init__(
        self,
        redis: Redis,
        clock: Clock,
        ttl: timedelta = DEFAULT_PIN_STATE_TTL,
        prefix: str = "",
    ) -> None:
        if ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        self._redis = redis
        self._clock = clock
        self._ttl = ttl
        self._prefix = prefix

    def _key(self, device_id: str) -> str:
        return f"{self._prefix}pin-attempts:{device_id}"

    async def get(self, device_id: str) -> PinAttemptState:
        data: bytes | str | None = await self._redis.get(self._key(device_id))
        return PinAttemptState() if data is None else _parse_pin(data)

    async def compare_and_set(
        self, device_id: str, expected: PinAttemptState, new: PinAttemptState
    ) -> bool:
        key = self._key(device_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                data: bytes | str | None = await pipe.get(key)
                current = PinAttemptState() if data is None else _parse_pin(data)
                if current != expected:
                    return False  # leaving the pipeline unwatches the key
                pipe.multi()  # type: ignore[no-untyped-call]
                if new == PinAttemptState():
                    pipe.delete(key)  # absent is the fresh state
                else:
                    now = self._clock.now()
                    until = max(now, new.next_try_at or now) + self._ttl
                    pipe.set(key, _pin_json(new), px=_milliseconds(until - now))
                await pipe.execute()
            except WatchError:
                return False  # changed between our read and our write
        return True

    async def delete(self, device_id: str) -> None:
        await self._redis.delete(self._key(device_id))


class RedisPasswordAttempts:
    """PasswordAttempts port: one counter per key, INCR and PEXPIRE in one Lua script
    (atomic, so concurrent tries each get their own count and the window always ends)."""

    def __init__(self, redis: Redis, prefix: str = "") -> None:
        self._redis = redis
        self._prefix = prefix
        self._add = redis.register_script(_ADD_TRY_SCRIPT)

    def key(self, key: str) -> str:
        """The Redis key of a counter: a hash, never the domain's key in clear."""
        return f"{self._prefix}password-tries:{hashlib.sha256(key.encode()).hexdigest()}"

    async def add(self, key: str, window: timedelta) -> PasswordTries:
        window_ms = _milliseconds(window)
        if window_ms <= 0:
            raise ValueError("window must be positive")
        count, left = await self._add(keys=[self.key(key)], args=[window_ms])
        return PasswordTries(int(count), timedelta(milliseconds=int(left)))

    async def reset(self, key: str) -> None:
        await self._redis.delete(self.key(key))
