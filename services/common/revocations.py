"""The revocation list every service enforces, replayed from privacam.revocations.v1.

device_auth writes a record when a camera or app is removed, signs out, or its
account is cancelled. Every replica of every service reads the whole compacted
topic before it takes calls and follows it; from then on the authorization hook
refuses the revoked identity and the interceptor cancels its open streams, all
within the time Kafka takes to deliver one record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from privacam.identity.v1.revocations_pb2 import RevocationRecord
from privacam_core.identity import Principal, subject_digest
from services.common import topics
from services.common.compaction import SegmentRoller, Timing, is_marker
from services.common.kafka import EventProducer, Reassertion, TopicReplica
from services.common.settings import KafkaSettings

log = logging.getLogger("privacam.revocations")

PRUNE_GRACE = timedelta(hours=1)
"""How long a record stays after the last certificate it covers expired: a margin for
clocks that run behind, since TLS checks expiry against each host's own clock."""

Listener = Callable[[Callable[[Principal], bool]], object]
"""Told of each new revocation, with a predicate matching the principals it revokes."""


def _subject(record: RevocationRecord) -> bytes:
    return record.subject_digest or subject_digest(record.subject_uri)


class RevocationList:
    def __init__(
        self, settings: KafkaSettings, producer: EventProducer, *, writer: bool = False
    ) -> None:
        """`writer`: this replica belongs to the topic's writer (device_auth), which
        re-asserts a revocation that a forged record tried to remove (Reassertion)."""
        self._producer = producer
        self._subjects: set[bytes] = set()
        self._serials: set[int] = set()
        self._by_key: dict[bytes, RevocationRecord] = {}
        self._listeners: list[Listener] = []
        # Only the writer (device_auth) ever notes writes; elsewhere it stays idle.
        self._roller = SegmentRoller(
            producer, topics.REVOCATIONS, Timing.of(settings, topics.REVOCATIONS)
        )
        reassert = Reassertion(self._current, self._roller.wrote) if writer else None
        self._replica = TopicReplica(
            settings, topics.REVOCATIONS, producer, self._apply, reassert=reassert
        )

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        await self._replica.start()
        self._roller.start()
        log.info("revocations replayed", extra={"records": len(self._by_key)})

    async def stop(self) -> None:
        await self._roller.stop()
        await self._replica.stop()

    def is_revoked(self, principal: Principal) -> bool:
        return principal.certificate_serial in self._serials or principal.subject in self._subjects

    def __len__(self) -> int:
        return len(self._by_key)

    async def prune(self, now: datetime | None = None) -> int:
        """Tombstone the records whose certificates have all expired (a TLS handshake
        refuses those already), so the list every replica holds stays as small as the
        set of certificates still alive. Writers only (device_auth); repeats are harmless.
        How many records were tombstoned."""
        cutoff = (now or datetime.now(UTC)) - PRUNE_GRACE
        outlived = [
            key
            for key, record in self._by_key.items()
            if record.HasField("covers_until") and record.covers_until.ToDatetime(UTC) < cutoff
        ]
        for key in outlived:
            partition, _ = await self._producer.send_raw(topics.REVOCATIONS, key, None)
            self._roller.wrote(partition)
        return len(outlived)

    def _current(self, key: bytes) -> bytes | None:
        record = self._by_key.get(key)
        return None if record is None else record.SerializeToString(deterministic=True)

    def _apply(self, key: bytes, value: bytes | None) -> None:
        if is_marker(key):
            return
        if value is None:
            # Tombstoned once everything it covered expired: rebuild from the rest.
            self._by_key.pop(key, None)
            self._rebuild()
            return
        record = RevocationRecord.FromString(value)
        self._by_key[key] = record
        serials = {int(serial, 16) for serial in record.serial_numbers}
        subject = _subject(record)
        if record.all_certificates:
            self._subjects.add(subject)
        self._serials |= serials

        def revoked(principal: Principal) -> bool:
            return (record.all_certificates and principal.subject == subject) or (
                principal.certificate_serial in serials
            )

        for listener in self._listeners:
            listener(revoked)

    def _rebuild(self) -> None:
        self._subjects = {_subject(r) for r in self._by_key.values() if r.all_certificates}
        self._serials = {int(s, 16) for r in self._by_key.values() for s in r.serial_numbers}
