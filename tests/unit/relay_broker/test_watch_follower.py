"""Privacy-watch notices become household notices, keyed by the household they are about."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from privacam.accesslog.v1 import log_pb2
from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.watch.v1 import events_pb2 as watch_pb2
from services.common.errors import Unavailable
from services.common.kafka import Delivery
from services.relay_broker.streams.watch import WatchNoticeFollower

TENANT = "3f1e2d4c-0000-4000-8000-000000000001"


@dataclass
class Store:
    kept: dict[str, pb.HouseholdNotice] = field(default_factory=dict)
    told: list[tuple[str, str]] = field(default_factory=list)

    async def keep_and_tell(self, tenant_id: str, notice: pb.HouseholdNotice) -> bool:
        if notice.notice_id in self.kept:
            return False
        self.kept[notice.notice_id] = notice
        self.told.append((tenant_id, notice.notice_id))
        return True


@dataclass
class Heads:
    """The access log's heads as relay_broker asks for them: None once a log is deleted."""

    size: int | None = 12
    asked: list[str] = field(default_factory=list)

    async def tree_head(self, tenant_id: str) -> log_pb2.SignedTreeHead | None:
        self.asked.append(tenant_id)
        if self.size is None:
            return None
        return log_pb2.SignedTreeHead(
            tenant_id=tenant_id, tree_size=self.size, root_hash=b"r" * 32, signature=b"s" * 64
        )


def _notice(notice_id: str = "n-1") -> watch_pb2.WatchNotice:
    notice = watch_pb2.WatchNotice(
        notice_id=notice_id,
        tenant_id=TENANT,
        rule=watch_pb2.WATCH_RULE_NEW_VIEWER,
        device_id="cam-1",
        entry=watch_pb2.LogEntryRef(index=7, access_id="a-1"),
        summary="a viewer not seen in 30 days: live view of camera cam-1",
    )
    notice.occurred_at.seconds = 1_800_000_000
    return notice


async def test_a_watch_notice_is_told_once_to_its_household() -> None:
    store = Store()
    follower = WatchNoticeFollower(store, Heads())
    delivery = Delivery("privacam.watch.notices.v1", 0, 0, TENANT)
    for _ in range(2):  # a replay: same id
        await follower.on_event(_notice(), delivery)
    assert store.told == [(TENANT, "n-1")]
    told = store.kept["n-1"]
    assert told.WhichOneof("notice") == "privacy_watch"
    assert told.privacy_watch == _notice()
    assert told.device_id == "cam-1"
    assert told.occurred_at.seconds == 1_800_000_000


async def test_a_notice_keyed_by_another_household_is_ignored() -> None:
    store = Store()
    follower = WatchNoticeFollower(store, Heads())
    await follower.on_event(_notice(), Delivery("t", 0, 0, "another-tenant"))
    await follower.on_event(_notice(), Delivery("t", 0, 1, "NOT A TENANT"))
    no_id = _notice("")
    await follower.on_event(no_id, Delivery("t", 0, 2, TENANT))
    assert store.told == []


def _digest(end_index: int = 10) -> watch_pb2.WatchNotice:
    notice = watch_pb2.WatchNotice(
        notice_id="d-1",
        tenant_id=TENANT,
        rule=watch_pb2.WATCH_RULE_DIGEST,
        digest=watch_pb2.WatchDigest(first_index=0, end_index=end_index, views=3),
    )
    notice.occurred_at.seconds = 1_800_000_000
    return notice


async def test_a_digest_is_kept_with_the_logs_signed_head() -> None:
    store, heads = Store(), Heads(size=12)
    follower = WatchNoticeFollower(store, heads)
    await follower.on_event(_digest(end_index=10), Delivery("t", 0, 0, TENANT))
    kept = store.kept["d-1"].privacy_watch.digest
    assert kept.tree_head.tree_size == 12
    assert kept.tree_head.tenant_id == TENANT
    assert heads.asked == [TENANT]
    # Other rules are kept as sent, without asking the log.
    await follower.on_event(_notice(), Delivery("t", 0, 1, TENANT))
    assert heads.asked == [TENANT]
    assert not store.kept["n-1"].privacy_watch.HasField("digest")


async def test_a_digest_waits_for_a_head_covering_its_entries() -> None:
    store = Store()
    follower = WatchNoticeFollower(store, Heads(size=9))
    with pytest.raises(Unavailable):  # the consumer retries the event with back-off
        await follower.on_event(_digest(end_index=10), Delivery("t", 0, 0, TENANT))
    assert store.told == []


async def test_a_deleted_logs_digest_is_dropped() -> None:
    store = Store()
    follower = WatchNoticeFollower(store, Heads(size=None))
    await follower.on_event(_digest(), Delivery("t", 0, 0, TENANT))
    assert store.told == []
