"""Used receipts on the key state log: the first claim of an access in partition order wins
on every replica, survives a restart (replay), and is tombstoned once no receipt for that
access could be accepted anyway.

The real KafkaStateLog runs against an in-memory topic: records are appended in order and
each replica applies them only when it waits for them, as a replica that lags behind the
log would; the integration test (test_receipts.py) does the same on real Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from privacam.keys.v1 import state_pb2 as pb
from services.common import topics
from services.common.clock import FakeClock
from services.common.settings import KafkaSettings
from services.key_manager.adapters.state_log import KafkaStateLog, claim_key
from services.key_manager.domain.keyring import Keyring
from tests.unit.kafka_fakes import PARTITIONS, FakeProducer, FakeTopic

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIFETIME = timedelta(minutes=6)  # receipt max age + clock skew


class FakeReplica:
    """TopicReplica's contract: records applied in partition order, wait_applied(p, o)
    returns once offset o of partition p is applied."""

    def __init__(self, topic: FakeTopic, apply: Callable[[bytes, bytes | None], None]) -> None:
        self.topic = topic
        self.apply = apply
        self.partitions = list(range(PARTITIONS))
        self.applied = [0] * PARTITIONS

    async def wait_applied(self, partition: int, offset: int) -> None:
        records = self.topic.partitions[partition]
        while self.applied[partition] <= offset:
            key, value = records[self.applied[partition]]
            self.applied[partition] += 1
            self.apply(key, value)
            await asyncio.sleep(0)

    async def catch_up(self) -> None:
        for partition, records in enumerate(self.topic.partitions):
            if records:
                await self.wait_applied(partition, len(records) - 1)


async def replica(topic: FakeTopic, clock: FakeClock) -> KafkaStateLog:
    """A key manager replica's state log, started: the whole topic replayed."""
    state = KafkaStateLog(
        KafkaSettings(bootstrap_servers="unused:9092", security_protocol="PLAINTEXT"),
        topics.KEY_STATE,
        FakeProducer(topic),  # type: ignore[arg-type]
        Keyring(),
        clock,
        claim_lifetime=LIFETIME,
    )
    fake = FakeReplica(topic, state._apply)
    state._replica = fake  # type: ignore[assignment]
    await fake.catch_up()  # what start() does before the service reports SERVING
    state._replaying = False
    return state


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def claims(topic: FakeTopic) -> list[tuple[bytes, bytes | None]]:
    return [record for records in topic.partitions for record in records]


async def test_two_replicas_claiming_one_receipt_at_once_first_in_the_log_wins(
    clock: FakeClock,
) -> None:
    topic = FakeTopic()
    first, second = await replica(topic, clock), await replica(topic, clock)
    occurred = NOW - timedelta(seconds=2)
    won = await asyncio.gather(
        first.claim_access("tenant-a", "access-1", occurred),
        second.claim_access("tenant-a", "access-1", occurred),
    )
    assert list(won) == [True, False]  # both wrote a claim; the first one in the partition won
    written = claims(topic)
    assert len(written) == 2
    assert {key for key, _ in written} == {claim_key("tenant-a", "access-1")}
    assert [pb.KeyStateRecord.FromString(v or b"").WhichOneof("record") for _, v in written] == [
        "access_claim",
        "access_claim",
    ]
    # From then on nobody wins it again, without even writing; a replica started later
    # (a restart) replays the claim and refuses too.
    later = await replica(topic, clock)
    for state in (first, second, later):
        assert not await state.claim_access("tenant-a", "access-1", occurred)
    assert len(claims(topic)) == 2
    # The same access id in another household's log is another receipt.
    assert await second.claim_access("tenant-b", "access-1", occurred)


async def test_the_record_names_no_household(clock: FakeClock) -> None:
    topic = FakeTopic()
    state = await replica(topic, clock)
    assert await state.claim_access("tenant-a", "access-1", NOW)
    ((key, value),) = claims(topic)
    assert key.startswith(b"used/")
    assert b"tenant-a" not in key + (value or b"")
    assert b"access-1" not in key + (value or b"")


async def test_claims_are_forgotten_and_tombstoned_once_too_old_to_matter(
    clock: FakeClock,
) -> None:
    topic = FakeTopic()
    first, second = await replica(topic, clock), await replica(topic, clock)
    occurred = NOW
    assert await first.claim_access("tenant-a", "access-1", occurred)
    assert not await second.claim_access("tenant-a", "access-1", occurred)
    restarted = await replica(topic, clock)

    clock.advance(LIFETIME)  # not yet: a receipt could still pass the age check somewhere
    for state in (first, second, restarted):
        await state.expire_claims()
    assert all(value is not None for _, value in claims(topic))
    assert not await restarted.claim_access("tenant-a", "access-1", occurred)

    clock.advance(timedelta(seconds=1))
    for state in (first, second, restarted):
        await state.expire_claims()
    tombstones = [key for key, value in claims(topic) if value is None]
    # The winner and the replica that replayed it tombstone it; the loser leaves it to them.
    assert tombstones == [claim_key("tenant-a", "access-1")] * 2
    assert [first._claims, second._claims, restarted._claims] == [{}, {}, {}]
    # A replica replaying the log now holds nothing of it.
    assert not (await replica(topic, clock))._claims
