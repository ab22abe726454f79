"""Privacy-watch notices become household notices, keyed by the household they are about."""

from __future__ import annotations

from dataclasses import dataclass, field

from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.watch.v1 import events_pb2 as watch_pb2
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
    follower = WatchNoticeFollower(store)
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
    follower = WatchNoticeFollower(store)
    await follower.on_event(_notice(), Delivery("t", 0, 0, "another-tenant"))
    await follower.on_event(_notice(), Delivery("t", 0, 1, "NOT A TENANT"))
    no_id = _notice("")
    await follower.on_event(no_id, Delivery("t", 0, 2, TENANT))
    assert store.told == []
