"""Bounded forgetting on compacted topics: a deleted record leaves the brokers' disks in time.

Compaction alone gives no bound. Kafka never compacts a partition's active segment, and
rolls a segment only when a record is appended after `segment.ms`: the tombstones of a
cancelled household on a quiet partition, and the values they delete, would sit there
until someone else happened to write. Nor does it drop a tombstone until a cleaning pass
after `delete.retention.ms`, which again needs something new to clean.

So each writer of a compacted topic appends a marker (a tombstone of a key no reader
uses) to every partition it wrote to, twice: once the segment holding its write may
roll, which lets the cleaner remove the superseded values within
`max.compaction.lag.ms`; and once the tombstones' retention has passed, which rolls the
segment holding the first marker so the next pass drops the tombstones themselves.
With the platform's topic settings (services.common.kafka.topic_configs) that is all
done within `forget_within_seconds` plus the cleaner's back-off. Kafka offers no
time-based roll of an idle segment, hence the markers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.common.kafka import EventProducer, Topic
from services.common.settings import KafkaSettings

log = logging.getLogger("privacam.compaction")

MARKER_PREFIX = b"~roll/"
"""Key prefix of the markers; readers ignore tombstones of keys they never saw."""


def is_marker(key: bytes) -> bool:
    return key.startswith(MARKER_PREFIX)


@dataclass(frozen=True)
class Timing:
    """Seconds of the topic's `segment.ms`, `max.compaction.lag.ms`, `delete.retention.ms`."""

    segment: float
    compaction_lag: float
    tombstone_retention: float

    @classmethod
    def of(cls, settings: KafkaSettings, topic: Topic[Any]) -> Timing:
        """The timing `ensure_topics` creates `topic` with (its own settings win)."""
        sixth = settings.forget_within_seconds / 6

        def seconds(name: str) -> float:
            return int(topic.config[name]) / 1000 if name in topic.config else sixth

        return cls(
            seconds("segment.ms"),
            seconds("max.compaction.lag.ms"),
            seconds("delete.retention.ms"),
        )

    @property
    def rolls_after(self) -> tuple[float, float]:
        """When the two markers follow a write: the first rolls the write's segment; the
        second comes once the tombstones' retention has run from the pass that the first
        one allowed, and rolls the first marker's segment so a second pass happens."""
        first = self.segment
        return first, first + self.compaction_lag + self.tombstone_retention + self.segment


class SegmentRoller:
    """Appends the markers for the partitions this replica writes to."""

    def __init__(
        self,
        producer: EventProducer,
        topic: Topic[Any],
        timing: Timing,
        *,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._timing = timing
        self._now = now
        self._due: dict[tuple[int, int], float] = {}  # (partition, which marker) -> when
        self._task: asyncio.Task[None] | None = None

    def wrote(self, partition: int) -> None:
        """Note a write (value or tombstone) to `partition`; markers follow in time. A
        later write moves the second marker later, never the first: under steady writes
        the segment rolls by itself, and the cleaner runs since there is always new data."""
        now = self._now()
        first, second = self._timing.rolls_after
        self._due.setdefault((partition, 0), now + first)
        self._due[(partition, 1)] = now + second

    def pending(self) -> int:
        return len(self._due)

    async def send_due(self) -> int:
        """Send the markers that are due; how many went out (a failed one stays due)."""
        now = self._now()
        sent = 0
        for slot, at in sorted(self._due.items(), key=lambda item: item[1]):
            if at > now:
                continue
            partition = slot[0]
            key = MARKER_PREFIX + str(partition).encode()
            await self._producer.send_raw(self._topic, key, None, partition=partition)
            if self._due.get(slot) == at:  # not moved by a newer write meanwhile
                del self._due[slot]
            sent += 1
        return sent

    async def _run(self) -> None:
        interval = max(self._timing.segment / 4, 0.25)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.send_due()
            except Exception:  # Kafka briefly away: what is due stays due
                log.warning(
                    "segment markers not all sent; retrying",
                    extra={"topic": self._topic.name},
                    exc_info=True,
                )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"roll {self._topic.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
