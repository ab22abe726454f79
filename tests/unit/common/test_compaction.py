"""Compacted topics forget deleted records within `forget_within_seconds`.

The bound rests on two things checked here: the settings each compacted topic is created
with, and the two markers that follow every write so quiet partitions roll and are cleaned
twice (once for the values, once for the tombstones). The real broker's cleaner doing the
rest is shown by tests/integration/test_retention.py's cancellation test.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.common import topics
from services.common.compaction import MARKER_PREFIX, SegmentRoller, Timing, is_marker
from services.common.kafka import Topic, topic_configs
from services.common.settings import KafkaSettings


def settings(forget: int = 600) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers="unused:9092", security_protocol="PLAINTEXT", forget_within_seconds=forget
    )


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, int | None]] = []
        self.fail = False

    async def send_raw(
        self, topic: Topic[Any], key: bytes, value: bytes | None, partition: int | None = None
    ) -> tuple[int, int]:
        if self.fail:
            raise ConnectionError("broker away")
        self.sent.append((topic.name, key, value, partition))
        return partition or 0, len(self.sent) - 1


def test_compacted_topics_are_created_to_forget_within_the_bound() -> None:
    configs = topic_configs(settings(600), topics.IDENTITY_STATE)
    assert configs["cleanup.policy"] == "compact"
    assert configs["segment.ms"] == configs["max.compaction.lag.ms"] == "100000"
    assert configs["delete.retention.ms"] == "100000"
    assert topic_configs(settings(600), topics.ACCESS) == {}  # events keep their retention
    assert topic_configs(settings(600), topics.CLIPS) == dict(topics.CLIPS.config)


def test_a_topics_own_setting_wins() -> None:
    own = Topic("t", topics.KEY_STATE.message_type, compacted=True, config={"segment.ms": "60000"})
    assert topic_configs(settings(600), own)["segment.ms"] == "60000"
    timing = Timing.of(settings(600), own)
    assert (timing.segment, timing.compaction_lag, timing.tombstone_retention) == (60, 100, 100)


def test_the_bound_covers_both_cleaning_passes() -> None:
    timing = Timing.of(settings(600), topics.IDENTITY_STATE)
    first, second = timing.rolls_after
    assert first == 100
    # Second pass: after the first roll, its cleaning, the tombstones' retention, and a
    # roll of the first marker's segment; all inside the bound with room for the cleaner.
    assert second == 400
    assert second + timing.compaction_lag < 600


async def test_two_markers_follow_a_write_and_a_later_write_moves_only_the_second() -> None:
    now = [0.0]
    producer = Producer()
    roller = SegmentRoller(
        producer,  # type: ignore[arg-type]
        topics.IDENTITY_STATE,
        Timing.of(settings(600), topics.IDENTITY_STATE),
        now=lambda: now[0],
    )
    roller.wrote(2)
    assert await roller.send_due() == 0
    now[0] = 50.0
    roller.wrote(2)  # a second write before the first marker
    now[0] = 100.0
    assert await roller.send_due() == 1
    assert producer.sent == [(topics.IDENTITY_STATE.name, MARKER_PREFIX + b"2", None, 2)]
    now[0] = 420.0  # the first write's second marker would be due, the later write's not
    assert await roller.send_due() == 0
    now[0] = 450.0
    assert await roller.send_due() == 1
    assert roller.pending() == 0
    assert all(is_marker(key) and value is None for _, key, value, _ in producer.sent)


async def test_a_marker_that_failed_stays_due() -> None:
    now = [0.0]
    producer = Producer()
    roller = SegmentRoller(
        producer,  # type: ignore[arg-type]
        topics.REVOCATIONS,
        Timing.of(settings(60), topics.REVOCATIONS),
        now=lambda: now[0],
    )
    roller.wrote(0)
    now[0] = 10.0
    producer.fail = True
    with pytest.raises(ConnectionError):
        await roller.send_due()
    producer.fail = False
    assert await roller.send_due() == 1
    assert roller.pending() == 1  # the second marker


def test_three_replicas_mean_two_in_sync() -> None:
    three = settings().model_copy(update={"replication_factor": 3})
    assert topic_configs(three, topics.ACCESS)["min.insync.replicas"] == "2"
    assert topic_configs(three, topics.IDENTITY_STATE)["min.insync.replicas"] == "2"
    assert "min.insync.replicas" not in topic_configs(settings(), topics.ACCESS)
