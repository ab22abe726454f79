"""coturn's traffic reports (redis-statsdb) into privacam_relay_bytes_total and each
session's relayed bytes.

coturn publishes, per allocation, `turn/realm/<realm>/user/<username>/allocation/<id>/traffic`
with "rcvp=.., rcvb=.., sentp=.., sentb=.." counted since its previous report (and a last
one before the allocation goes). Our usernames are `<expiry>:<session>.<side>`, so each
report maps to a session without coturn knowing anything of ours. Every replica receives
every report; only the replica holding the `relay:turn-stats-leader` lease counts it, and
only for sessions it knows.
"""

from __future__ import annotations

import asyncio
import logging
import re

from redis.asyncio import Redis

from services.relay_broker.adapters.bus import Bus
from services.relay_broker.adapters.metrics import RELAY_BYTES
from services.relay_broker.adapters.redis_state import RedisSessions
from services.relay_broker.domain.turn import session_of

log = logging.getLogger("privacam.relay_broker.turn_stats")

PATTERN = "turn/realm/*/user/*/allocation/*/traffic"
_CHANNEL = re.compile(r"^turn/realm/[^/]+/user/([^/]+)/allocation/[^/]+/traffic$")
_FIELD = re.compile(r"(rcvb|sentb)=(\d+)")
_LEASE = "relay:turn-stats-leader"
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]); return 1
end
return 0
"""


def relayed_bytes(payload: str) -> int:
    return sum(int(value) for _, value in _FIELD.findall(payload))


class TurnStats:
    def __init__(
        self, redis: Redis, bus: Bus, sessions: RedisSessions, replica_id: str, namespace: str = ""
    ) -> None:
        self._bus = bus
        self._lease = namespace + _LEASE
        self._sessions = sessions
        self._replica = replica_id
        self._acquire = redis.register_script(_ACQUIRE)
        self.leader = False
        self._pending: set[asyncio.Task[None]] = set()

    async def _count(self, session_id: str, count: int) -> None:
        # Reports of every environment sharing this coturn arrive: count only our sessions.
        if await self._sessions.add_relayed(session_id, count):
            RELAY_BYTES.inc(count)

    async def start(self) -> None:
        await self._bus.psubscribe(PATTERN, self._on_report)

    async def stop(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def renew(self, lease_seconds: float) -> None:
        """Called every heartbeat tick: hold (or take over) the counting lease."""
        self.leader = bool(
            await self._acquire(keys=[self._lease], args=[self._replica, int(lease_seconds * 1000)])
        )

    def _on_report(self, channel: str, data: bytes) -> None:
        if not self.leader:
            return
        match = _CHANNEL.match(channel)
        session_id = session_of(match.group(1)) if match else None
        count = relayed_bytes(data.decode(errors="replace"))
        if session_id is None or count <= 0:
            return
        task = asyncio.create_task(self._count(session_id, count))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
