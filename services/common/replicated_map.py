"""A key-value map replicated through a compacted Kafka topic.

Every replica replays the topic into memory before it serves and follows it
afterwards, so reads are local and every replica converges on the same map.
Writes go to Kafka (acks from all in-sync replicas) and return once this
replica has applied them, so a caller reads its own writes.

`create` is first-writer-wins across replicas without a lock service: each
creation is proposed under its own record key (`<key>#<proposal>`), all
proposals for a key share a partition (the caller's `group`, e.g. the tenant,
or the key itself for global names such as logins), and the first proposal in
partition order owns the key everywhere. A losing proposal is tombstoned at once.
Updates and deletes address the owning proposal's record key, so compaction keeps
exactly one live record per entry.

Only the topic's writer uses it, so every replica re-asserts its entries over forged
records (services.common.kafka.Reassertion): a tombstone nobody signed does not get to
erase an entry from the log by compaction.
"""

from __future__ import annotations

import bisect
import itertools
import secrets
import zlib
from collections.abc import Iterator
from typing import Any

from services.common.compaction import SegmentRoller, Timing, is_marker
from services.common.kafka import EventProducer, Reassertion, Topic, TopicReplica
from services.common.settings import KafkaSettings

_SEPARATOR = "#"


class ReplicatedMap:
    def __init__(self, settings: KafkaSettings, topic: Topic[Any], producer: EventProducer) -> None:
        self._topic = topic
        self._producer = producer
        self._entries: dict[str, tuple[str, bytes]] = {}  # key -> (owning proposal, value)
        self._sorted_keys: list[str] = []  # for prefix scans in O(log n + matches)
        # Record keys of deleted entries (proposals are never reused), so a late update
        # from a replica that had not seen the delete cannot bring an entry back.
        self._deleted: set[str] = set()
        self._roller = SegmentRoller(producer, topic, Timing.of(settings, topic))
        self._replica = TopicReplica(
            settings,
            topic,
            producer,
            self._apply,
            reassert=Reassertion(self._current, self._roller.wrote),
        )

    async def start(self) -> None:
        await self._replica.start()
        self._roller.start()

    async def stop(self) -> None:
        await self._roller.stop()
        await self._replica.stop()

    async def catch_up(self) -> None:
        await self._replica.catch_up()

    def __len__(self) -> int:
        return len(self._entries)

    # --- reads: local -----------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        return entry[1] if entry else None

    def items(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        """Entries whose key starts with `prefix`, in key order."""
        start = bisect.bisect_left(self._sorted_keys, prefix)
        keys = []
        for key in itertools.islice(self._sorted_keys, start, None):
            if not key.startswith(prefix):
                break
            keys.append(key)
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None:
                yield key, entry[1]

    # --- writes: through Kafka ----------------------------------------------------

    def _partition(self, group: str) -> int:
        return zlib.crc32(group.encode()) % len(self._replica.partitions)

    async def _send(self, record_key: str, value: bytes | None, group: str) -> None:
        partition, offset = await self._producer.send_raw(
            self._topic, record_key.encode(), value, partition=self._partition(group)
        )
        self._roller.wrote(partition)  # so a deletion leaves the disks in bounded time
        await self._replica.wait_applied(partition, offset)

    async def create(self, key: str, value: bytes, group: str) -> bool:
        """Store `value` under `key` unless the key exists; True if this call created it."""
        if _SEPARATOR in key:
            raise ValueError(f"keys may not contain {_SEPARATOR!r}")
        if key in self._entries:
            return False
        proposal = secrets.token_hex(8)
        await self._send(f"{key}{_SEPARATOR}{proposal}", value, group)
        if self._entries.get(key, ("", b""))[0] == proposal:
            return True
        await self._send(f"{key}{_SEPARATOR}{proposal}", None, group)  # lost the race
        return False

    async def update(self, key: str, value: bytes, group: str) -> bool:
        """Replace the value of an existing key; False if it is absent, or was deleted (by
        any replica) before this write in partition order, which is then withdrawn."""
        entry = self._entries.get(key)
        if entry is None:
            return False
        record_key = f"{key}{_SEPARATOR}{entry[0]}"
        await self._send(record_key, value, group)
        if record_key in self._deleted:
            await self._send(record_key, None, group)
            return False
        return True

    async def delete(self, key: str, group: str) -> None:
        """Remove a key (a no-op if absent); compaction then erases its old values."""
        entry = self._entries.get(key)
        if entry is not None:
            await self._send(f"{key}{_SEPARATOR}{entry[0]}", None, group)

    # --- replay -----------------------------------------------------------------------

    def _current(self, record_key: bytes) -> bytes | None:
        """The value held under a record key: only the owning proposal's record has one."""
        key, _, proposal = record_key.decode().rpartition(_SEPARATOR)
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] == proposal else None

    def _apply(self, record_key: bytes, value: bytes | None) -> None:
        if is_marker(record_key):
            return
        text = record_key.decode()
        key, _, proposal = text.rpartition(_SEPARATOR)
        owner = self._entries.get(key)
        if value is None:
            if owner is not None and owner[0] == proposal:
                del self._entries[key]
                del self._sorted_keys[bisect.bisect_left(self._sorted_keys, key)]
                self._deleted.add(text)
            return
        if text in self._deleted:
            return  # a late update of a deleted entry
        if owner is None:
            bisect.insort(self._sorted_keys, key)
        if owner is None or owner[0] == proposal:
            self._entries[key] = (proposal, value)
