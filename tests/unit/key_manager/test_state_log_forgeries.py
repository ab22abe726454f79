"""Forged records on the key state log: key_manager writes again, signed, what it holds for
the key (a used receipt's claim, a sealed KEK, a destroyed or "tenant gone" marker), so
compaction keeps it; the sharpest case is a forged tombstone of a used receipt's claim,
which would let the receipt be used again once key_manager restarts.

The real KafkaStateLog and TopicReplica run over an in-memory topic (tests.unit.kafka_fakes);
the integration test (test_insider.py) does the same on real Kafka."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

import pytest

from privacam.keys.v1 import state_pb2 as pb
from services.common import topics
from services.common.clock import FakeClock
from services.common.settings import KafkaSettings
from services.key_manager.adapters.state_log import (
    KafkaStateLog,
    claim_key,
    destroyed_key,
    kek_key,
)
from services.key_manager.domain.keyring import Keyring, SealedKek, VersionDestroyed, tenant_digest
from tests.unit.kafka_fakes import PARTITIONS, FakeProducer, FakeTopic, follow

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PERIOD = datetime(2026, 3, 1, tzinfo=UTC)


async def replica(topic: FakeTopic) -> KafkaStateLog:
    """A key manager replica's state log over the fake topic, started: the topic replayed."""
    state = KafkaStateLog(
        KafkaSettings(bootstrap_servers="unused:9092", security_protocol="PLAINTEXT"),
        topics.KEY_STATE,
        FakeProducer(topic),  # type: ignore[arg-type]
        Keyring(),
        FakeClock(NOW),
        claim_lifetime=timedelta(minutes=6),
    )
    await follow(state._replica, topic)
    state._replaying = False
    return state


def kek(tenant_id: str, version: int) -> SealedKek:
    return SealedKek(tenant_id, version, PERIOD, NOW, f"proposal-{version}", "root-1", b"sealed")


def home(key_or_tenant: bytes | str) -> int:
    """The partition key_manager writes to: a claim's own (by key), or its tenant's."""
    data = key_or_tenant.encode() if isinstance(key_or_tenant, str) else key_or_tenant
    return zlib.crc32(data) % PARTITIONS


async def test_what_the_key_manager_holds_is_written_again_over_forged_tombstones() -> None:
    topic = FakeTopic()
    state = await replica(topic)
    assert await state.claim_access("tenant-a", "access-1", NOW - timedelta(seconds=5))
    await state.propose(kek("tenant-a", 1))
    await state.propose(kek("tenant-a", 2))
    await state.destroy("tenant-a", 2, NOW, PERIOD, ["proposal-2"])
    await state.propose(kek("tenant-b", 1))
    await state.destroy("tenant-b", 1, NOW, PERIOD, ["proposal-1"])
    await state.forget_tenant("tenant-b", [1], NOW)
    gone = f"gone/{tenant_digest('tenant-b').hex()}".encode()
    held = {
        (home(claim_key("tenant-a", "access-1")), claim_key("tenant-a", "access-1")),
        (home("tenant-a"), kek_key("tenant-a", 1, "proposal-1")),
        (home("tenant-a"), destroyed_key("tenant-a", 2)),
        (home("tenant-b"), gone),
    }
    shredded = (home("tenant-a"), kek_key("tenant-a", 2, "proposal-2"))
    values = {(p, key): topic.latest(p, key)[0] for p, key in held}

    for partition, key in [*held, shredded]:
        topic.forge(partition, key, None)
    erased = topic.compacted()  # what compaction would leave without the re-assertions
    await state.catch_up()
    await state._replica.wait_reasserted()

    for partition, key in held:  # the newest record of each: key_manager's, signed
        assert topic.latest(partition, key) == (values[(partition, key)], True), key
    # A destroyed version's KEK is not brought back: its own tombstone stays the newest.
    assert topic.latest(*shredded) == (None, False)
    assert [key for key, _ in topic.partitions[shredded[0]]].count(shredded[1]) == 3

    # key_manager restarts after compaction: the receipt is still used, the keys the same.
    restarted = await replica(topic.compacted())
    assert not await restarted.claim_access("tenant-a", "access-1", NOW - timedelta(seconds=5))
    assert restarted._keyring.sealed("tenant-a", 1) == kek("tenant-a", 1)
    with pytest.raises(VersionDestroyed):
        restarted._keyring.sealed("tenant-a", 2)
    assert restarted._keyring.gone("tenant-b")
    # Without them, the forged tombstones would have erased all of it.
    lost = await replica(erased)
    assert await lost.claim_access("tenant-a", "access-1", NOW - timedelta(seconds=5))
    assert lost._keyring.tenant("tenant-a").versions == {}
    assert not lost._keyring.gone("tenant-b")
    for state_log in (state, restarted, lost):
        await state_log.stop()


async def test_a_forged_claim_is_answered_with_the_first_claim_as_written() -> None:
    # The claim that won, byte for byte (its claim id), not the forged one.
    topic = FakeTopic()
    state = await replica(topic)
    occurred = NOW - timedelta(seconds=5)
    assert await state.claim_access("tenant-a", "access-1", occurred)
    key = claim_key("tenant-a", "access-1")
    partition = home(key)
    ((_, claim),) = topic.partitions[partition]
    forged = pb.KeyStateRecord(access_claim=pb.AccessClaim(claim_id="forged"))
    topic.forge(partition, key, forged.SerializeToString())
    await state.catch_up()
    await state._replica.wait_reasserted()
    assert topic.latest(partition, key) == (claim, True)
    await state.stop()
