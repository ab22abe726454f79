"""The key manager's durable state: a compacted Kafka topic, materialized in memory.

Why Kafka and not a database: the platform already runs it with replication,
compaction gives exactly "latest record per key, tombstones remove", and every
replica rebuilds the same keyring by replaying it. Records are sealed under the
root key, so the topic (and its backups) hold nothing readable without it.

Every record of a tenant goes to one partition (crc32 of the tenant id), so
partition order settles races between replicas: the first proposal of a
version wins everywhere. A destroyed version's sealed records are tombstoned;
compaction removes them, and then their tombstones, within the bound of
services.common.compaction, whose markers roll the active segment even when nothing
else is written.

Used receipts live here too: before a key is released against an access-log receipt,
a claim record `used/<digest of tenant and access id>` is written to the partition its
key picks and waited for; the first claim of a key in partition order wins on every
replica, and survives restarts by replay. Claims are kept in memory only while a receipt
for that access could still be accepted (its occurred_at + max age + clock skew); then
they are forgotten and tombstoned by the replica that won them (or replayed them at
start, in case the winner is gone), so compaction removes them.

A record key_manager did not sign is skipped on replay, but compaction would still let it
erase the record it shadows: a forged tombstone of a used receipt's claim would let the
receipt be used again after a restart. Every replica writes what it holds for that key
again, signed (services.common.kafka.Reassertion, with `_current`).
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import logging
import secrets
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from privacam.keys.v1 import state_pb2 as pb
from privacam_core.timestamps import to_datetime, to_timestamp
from services.common.clock import Clock
from services.common.compaction import SegmentRoller, Timing, is_marker
from services.common.kafka import EventProducer, Reassertion, Topic, TopicReplica
from services.common.settings import KafkaSettings
from services.key_manager.domain.keyring import Keyring, SealedKek, tenant_digest

log = logging.getLogger("privacam.key_manager.state")


def kek_key(tenant_id: str, version: int, proposal_id: str) -> bytes:
    return f"kek/{tenant_id}/{version}/{proposal_id}".encode()


def destroyed_key(tenant_id: str, version: int) -> bytes:
    return f"destroyed/{tenant_id}/{version}".encode()


def claim_key(tenant_id: str, access_id: str) -> bytes:
    """`used/<hex SHA-256 of tenant id NUL access id>`: names no tenant or person, and two
    households' access ids cannot collide."""
    digest = hashlib.sha256(f"{tenant_id}\x00{access_id}".encode()).hexdigest()
    return f"used/{digest}".encode()


def _kek_record(kek: SealedKek) -> pb.KeyStateRecord:
    return pb.KeyStateRecord(
        kek=pb.SealedKek(
            tenant_id=kek.tenant_id,
            version=kek.version,
            period_start=to_timestamp(kek.period_start),
            created_at=to_timestamp(kek.created_at),
            proposal_id=kek.proposal_id,
            root_key_id=kek.root_key_id,
            sealed_key=kek.sealed_key,
        )
    )


@dataclass
class _Claim:
    claim_id: str
    forget_at: datetime
    mine: bool
    """This replica tombstones it when it expires: it won it, or replayed it at start."""
    record: bytes
    """The claim as written, to write again over a forged record of its key."""


class KafkaStateLog:
    """StateLog port over a compacted topic, and the component that materializes it."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: Topic[pb.KeyStateRecord],
        producer: EventProducer,
        keyring: Keyring,
        clock: Clock,
        claim_lifetime: timedelta = timedelta(minutes=6),
    ) -> None:
        self._topic = topic
        self._producer = producer
        self._keyring = keyring
        self._clock = clock
        self._claim_lifetime = claim_lifetime
        timing = Timing.of(settings, topic)
        self._roller = SegmentRoller(producer, topic, timing)
        self._replica = TopicReplica(
            settings,
            topic,
            producer,
            self._apply,
            reassert=Reassertion(self._current, self._roller.wrote),
        )
        self._roller_interval = timing.segment / 4
        self._ticker: asyncio.Task[None] | None = None
        # used receipts: claim key -> the first claim applied; expiry order in a heap
        self._claims: dict[bytes, _Claim] = {}
        self._claim_expiry: list[tuple[datetime, bytes]] = []
        self._replaying = True
        # "tenant gone" markers as written (the keyring keeps only their digests)
        self._gone_records: dict[bytes, bytes] = {}

    async def start(self) -> None:
        """Replay the whole topic before the service takes calls."""
        await self._replica.start()
        self._replaying = False
        self._ticker = asyncio.create_task(self._tick(), name="roll key state segments")
        log.info(
            "key state replayed",
            extra={
                "records": self._replica.records_applied,
                "tenants": self._keyring.tenant_count(),
                "used_receipts": len(self._claims),
            },
        )

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        await self._replica.stop()

    async def catch_up(self) -> None:
        await self._replica.catch_up()

    def _apply(self, key: bytes, value: bytes | None) -> None:
        if is_marker(key):
            return
        if value is None:
            # A tombstone: its key's record was already applied and superseded; a used
            # receipt's is written once the receipt would be refused on age anyway.
            self._claims.pop(key, None)
            self._gone_records.pop(key, None)
            return
        record = pb.KeyStateRecord.FromString(value)
        kind = record.WhichOneof("record")
        if kind == "kek":
            kek = record.kek
            self._keyring.apply_kek(
                SealedKek(
                    tenant_id=kek.tenant_id,
                    version=kek.version,
                    period_start=to_datetime(kek.period_start),
                    created_at=to_datetime(kek.created_at),
                    proposal_id=kek.proposal_id,
                    root_key_id=kek.root_key_id,
                    sealed_key=kek.sealed_key,
                )
            )
        elif kind == "destroyed":
            gone = record.destroyed
            self._keyring.apply_destroyed(
                gone.tenant_id,
                gone.version,
                to_datetime(gone.destroyed_at),
                to_datetime(gone.period_start) if gone.HasField("period_start") else None,
            )
        elif kind == "tenant_gone":
            self._keyring.apply_tenant_gone(record.tenant_gone.tenant_digest)
            self._gone_records[key] = value
        elif kind == "access_claim" and key not in self._claims:
            # The first claim of an access in partition order is the one; later ones lost.
            claim = record.access_claim
            forget_at = to_datetime(claim.occurred_at) + self._claim_lifetime
            self._claims[key] = _Claim(claim.claim_id, forget_at, self._replaying, value)
            heapq.heappush(self._claim_expiry, (forget_at, key))

    def _current(self, key: bytes) -> bytes | None:
        """What this replica holds for a record key, as a record (None: nothing, or a
        proposal that lost): the claim, the kek, the destroyed or "tenant gone" marker."""
        kind, _, rest = key.decode().partition("/")
        record: pb.KeyStateRecord | None = None
        if kind == "used":
            claim = self._claims.get(key)
            return claim.record if claim is not None else None
        if kind == "gone":
            return self._gone_records.get(key)
        if kind == "kek":
            tenant_id, version, proposal_id = rest.rsplit("/", 2)
            kek = self._keyring.tenant(tenant_id).versions.get(int(version))
            if kek is not None and kek.proposal_id == proposal_id:
                record = _kek_record(kek)
        elif kind == "destroyed":
            tenant_id, version = rest.rsplit("/", 1)
            destroyed = self._keyring.tenant(tenant_id).destroyed.get(int(version))
            if destroyed is not None:
                marker = pb.DestroyedVersion(
                    tenant_id=tenant_id,
                    version=int(version),
                    destroyed_at=to_timestamp(destroyed[0]),
                )
                if destroyed[1] is not None:
                    marker.period_start.CopyFrom(to_timestamp(destroyed[1]))
                record = pb.KeyStateRecord(destroyed=marker)
        return None if record is None else record.SerializeToString(deterministic=True)

    # --- writing --------------------------------------------------------------------

    def _partition(self, tenant_id: str) -> int:
        return zlib.crc32(tenant_id.encode()) % len(self._replica.partitions)

    def _claim_partition(self, key: bytes) -> int:
        return zlib.crc32(key) % len(self._replica.partitions)

    async def _send(self, tenant_id: str, key: bytes, record: pb.KeyStateRecord | None) -> int:
        value = None if record is None else record.SerializeToString(deterministic=True)
        _, offset = await self._producer.send_raw(
            self._topic, key, value, partition=self._partition(tenant_id)
        )
        return offset

    async def propose(self, kek: SealedKek) -> None:
        offset = await self._send(
            kek.tenant_id, kek_key(kek.tenant_id, kek.version, kek.proposal_id), _kek_record(kek)
        )
        await self._replica.wait_applied(self._partition(kek.tenant_id), offset)

    async def discard(self, kek: SealedKek) -> None:
        await self._send(kek.tenant_id, kek_key(kek.tenant_id, kek.version, kek.proposal_id), None)
        self._roller.wrote(self._partition(kek.tenant_id))

    async def destroy(
        self,
        tenant_id: str,
        version: int,
        destroyed_at: datetime,
        period_start: datetime | None,
        proposal_ids: list[str],
    ) -> None:
        marker = pb.DestroyedVersion(
            tenant_id=tenant_id, version=version, destroyed_at=to_timestamp(destroyed_at)
        )
        if period_start is not None:
            marker.period_start.CopyFrom(to_timestamp(period_start))
        # The marker first: from here on, no replica can use or recreate the version.
        offset = await self._send(
            tenant_id, destroyed_key(tenant_id, version), pb.KeyStateRecord(destroyed=marker)
        )
        # Gone from live state at once, not when the consumer gets there.
        self._keyring.apply_destroyed(tenant_id, version, destroyed_at, period_start)
        for proposal_id in proposal_ids:
            await self._send(tenant_id, kek_key(tenant_id, version, proposal_id), None)
        self._roller.wrote(self._partition(tenant_id))
        await self._replica.wait_applied(self._partition(tenant_id), offset)

    async def forget_tenant(
        self, tenant_id: str, versions: list[int], destroyed_at: datetime
    ) -> None:
        """After every version of a cancelled tenant is destroyed: one marker naming it by a
        digest, then tombstones for its per-version markers, so nothing names it."""
        digest = tenant_digest(tenant_id)
        marker = pb.TenantGone(
            tenant_digest=digest, destroyed_at=to_timestamp(destroyed_at), versions=len(versions)
        )
        offset = await self._send(
            tenant_id, f"gone/{digest.hex()}".encode(), pb.KeyStateRecord(tenant_gone=marker)
        )
        self._keyring.apply_tenant_gone(digest)
        for version in versions:
            await self._send(tenant_id, destroyed_key(tenant_id, version), None)
        self._roller.wrote(self._partition(tenant_id))
        await self._replica.wait_applied(self._partition(tenant_id), offset)

    async def claim_access(self, tenant_id: str, access_id: str, occurred_at: datetime) -> bool:
        key = claim_key(tenant_id, access_id)
        if key in self._claims:
            return False  # known here already: no need to ask the log
        claim_id = secrets.token_hex(16)
        record = pb.KeyStateRecord(
            access_claim=pb.AccessClaim(
                claim_id=claim_id,
                occurred_at=to_timestamp(occurred_at),
                claimed_at=to_timestamp(self._clock.now()),
            )
        )
        partition = self._claim_partition(key)
        _, offset = await self._producer.send_raw(
            self._topic, key, record.SerializeToString(deterministic=True), partition=partition
        )
        await self._replica.wait_applied(partition, offset)
        winner = self._claims.get(key)
        if winner is None or winner.claim_id != claim_id:
            return False  # another replica's claim came first (a lost claim is not
            # tombstoned: compaction keeps a key's last record, and any claim means used)
        winner.mine = True
        return True

    async def expire_claims(self) -> None:
        """Forget the claims of receipts too old to be accepted anyway, and tombstone the
        ones this replica answers for."""
        now = self._clock.now()
        while self._claim_expiry and self._claim_expiry[0][0] < now:
            forget_at, key = heapq.heappop(self._claim_expiry)
            claim = self._claims.get(key)
            if claim is None or claim.forget_at != forget_at:
                continue  # tombstoned already
            if claim.mine:
                partition = self._claim_partition(key)
                try:
                    await self._producer.send_raw(self._topic, key, None, partition=partition)
                except Exception:
                    heapq.heappush(self._claim_expiry, (forget_at, key))  # next round
                    raise
                self._roller.wrote(partition)
            if self._claims.get(key) is claim:
                del self._claims[key]

    async def _tick(self) -> None:
        """Tombstones the claims that expired, and sends the segment markers that are due
        (services.common.compaction), so compaction reaches destroyed keys in time."""
        while True:
            await asyncio.sleep(self._roller_interval)
            try:
                await self.expire_claims()
            except Exception:  # the rest is retried on the next round
                log.warning("used receipts not all tombstoned; retrying", exc_info=True)
            try:
                await self._roller.send_due()
            except Exception:  # what is due stays due
                log.warning("segment markers not all sent; retrying", exc_info=True)
