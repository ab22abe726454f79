"""The watch's rules on plain data, and its handler on dict tables (no Kafka)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from privacam.accesslog.v1 import events_pb2, log_pb2
from privacam.types.v1 import types_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from privacam_core.timestamps import to_timestamp
from services.common import topics
from services.privacy_watch.domain.rules import (
    Entry,
    Household,
    Kind,
    Principal,
    Purpose,
    Rule,
    WatchPolicy,
)
from services.privacy_watch.streams.access import AccessWatch
from tests.unit.privacy_watch.fakes import T0, Sink, access_event

POLICY = WatchPolicy(burst_count=3, usual_hours_min_views=5)
ALICE = Principal(Kind.APP, "t1", "alice-app")


def entry(
    at: datetime,
    principal: Principal = ALICE,
    purpose: Purpose = Purpose.LIVE_VIEW,
    index: int = 0,
) -> Entry:
    return Entry("t1", index, str(uuid.uuid4()), at, principal, purpose, "cam-1")


def rules(household: Household, *entries: Entry) -> list[Rule]:
    return [n.rule for e in entries for n in household.observe(e, POLICY)]


def test_a_new_viewer_is_told_once_and_again_after_the_look_back() -> None:
    household = Household()
    assert rules(household, entry(T0)) == [Rule.NEW_VIEWER]
    assert rules(household, entry(T0 + timedelta(days=29))) == []
    assert rules(household, entry(T0 + timedelta(days=60))) == [Rule.NEW_VIEWER]


def test_services_and_cameras_are_not_viewers() -> None:
    household = Household()
    service = Principal(Kind.SERVICE, "", "retention")
    assert rules(household, entry(T0, service, Purpose.OTHER)) == []
    assert rules(household, entry(T0, ALICE, Purpose.OTHER)) == []  # a settings change


def test_every_operator_access_is_told() -> None:
    household = Household()
    operator = Principal(Kind.OPERATOR, "", "op.jane")
    support = Purpose.OPERATOR_SUPPORT
    assert rules(household, entry(T0, operator, support), entry(T0, operator, support)) == [
        Rule.OPERATOR_ACCESS,
        Rule.OPERATOR_ACCESS,
    ]


def test_a_burst_is_told_once_per_window() -> None:
    household = Household()
    household.observe(entry(T0 - timedelta(days=1)), POLICY)
    plays = [entry(T0 + timedelta(minutes=i), purpose=Purpose.CLIP_PLAYBACK) for i in range(5)]
    assert rules(household, *plays) == [Rule.BURST]
    later = [entry(T0 + timedelta(minutes=30 + i), purpose=Purpose.DATA_EXPORT) for i in range(3)]
    assert rules(household, *later) == [Rule.BURST]


def test_playbacks_spread_out_are_no_burst() -> None:
    household = Household()
    household.observe(entry(T0 - timedelta(days=1)), POLICY)
    plays = [entry(T0 + timedelta(minutes=6 * i), purpose=Purpose.CLIP_PLAYBACK) for i in range(5)]
    assert rules(household, *plays) == []


def test_unusual_hours_need_a_history_and_are_told_at_most_hourly() -> None:
    household = Household()
    assert rules(household, entry(T0 - timedelta(hours=11))) == [Rule.NEW_VIEWER]  # 03:00
    household = Household()
    history = [entry(T0 - timedelta(days=d, minutes=m)) for d in (1, 2, 3) for m in (0, 30)]
    rules(household, *history)
    assert rules(household, entry(T0 + timedelta(minutes=50))) == []  # 14:50, usual
    assert rules(household, entry(T0 + timedelta(hours=1, minutes=30))) == []  # next to usual
    night = T0 + timedelta(hours=13)
    assert rules(household, entry(night)) == [Rule.OUTSIDE_USUAL_HOURS]
    assert rules(household, entry(night + timedelta(minutes=20))) == []
    assert rules(household, entry(night + timedelta(hours=3))) == [Rule.OUTSIDE_USUAL_HOURS]


def test_state_round_trips_and_forgets_old_viewers() -> None:
    household = Household()
    household.observe(entry(T0), POLICY)
    household.observe(entry(T0, purpose=Purpose.CLIP_PLAYBACK), POLICY)
    again = Household.from_json(household.to_json())
    assert again == household
    bob = Principal(Kind.APP, "t1", "bob-app")
    household.observe(entry(T0 + timedelta(days=31), bob), POLICY)
    assert list(household.viewers) == [bob.key]


def test_notice_ids_depend_on_the_access_and_rule_only() -> None:
    first = Household().observe(e := entry(T0), POLICY)
    second = Household().observe(e, POLICY)
    assert [n.notice_id for n in first] == [n.notice_id for n in second]
    assert first[0].notice_id != Household().observe(entry(T0), POLICY)[0].notice_id


# --- the handler ---------------------------------------------------------------------


async def test_entries_are_numbered_as_the_log_numbers_them() -> None:
    sink = Sink()
    watch = AccessWatch({}, {}, sink, POLICY)
    key = b"t1"
    await watch.on_event(key, b"\xff\xff", 0)  # undecodable
    await watch.on_event(key, access_event("t2", "a0", T0), 1)  # off its tenant's partition
    await watch.on_event(key, access_event("t1", "a1", T0), 2)  # index 0, new viewer
    await watch.on_event(key, access_event("t1", "a1", T0), 3)  # same access id: no leaf
    await watch.on_event(key, access_event("t1", "a2", T0), 4)  # index 1
    operator = log_pb2.AccessRecord(
        access_id="a3",
        tenant_id="t1",
        principal=types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_OPERATOR, id="op"),
        occurred_at=to_timestamp(T0),
    )
    event = events_pb2.AccessEvent(access_recorded=events_pb2.AccessRecorded(record=operator))
    await watch.on_event(key, topics.ACCESS.encode(event), 5)  # index 2, operator
    assert [(n.rule, n.entry.index, n.entry.access_id) for n in sink.sent] == [
        (watch_pb2.WATCH_RULE_NEW_VIEWER, 0, "a1"),
        (watch_pb2.WATCH_RULE_OPERATOR_ACCESS, 2, "a3"),
    ]


async def test_a_replayed_event_is_skipped_and_a_half_applied_one_told_again() -> None:
    households: dict[str, object] = {}
    entries: dict[str, object] = {}
    sink = Sink()
    watch = AccessWatch(households, entries, sink, POLICY)
    await watch.on_event(b"t1", access_event("t1", "a1", T0), 7)
    assert len(sink.sent) == 1
    await watch.on_event(b"t1", access_event("t1", "a1", T0), 7)  # replay after a crash
    assert len(sink.sent) == 1
    # Crashed after the notice and the entry, before the household's state: told again
    # with the same id, and numbered the same.
    fresh = Sink()
    del households["t1"]
    await AccessWatch(households, entries, fresh, POLICY).on_event(
        b"t1", access_event("t1", "a1", T0), 7
    )
    assert [n.notice_id for n in fresh.sent] == [sink.sent[0].notice_id]
    assert fresh.sent[0].entry.index == 0


async def test_nothing_is_kept_or_told_after_the_log_is_deleted() -> None:
    households: dict[str, object] = {}
    sink = Sink()
    watch = AccessWatch(households, {}, sink, POLICY)
    await watch.on_event(b"t1", access_event("t1", "a1", T0), 0)
    deleted = events_pb2.AccessEvent(log_deleted=events_pb2.LogDeleted(cancellation_id="c"))
    deleted.metadata.tenant_id = "t1"
    await watch.on_event(b"t1", topics.ACCESS.encode(deleted), 1)
    await watch.on_event(b"t1", access_event("t1", "a2", T0 + timedelta(days=40)), 2)
    assert len(sink.sent) == 1
    assert Household.from_json(households["t1"]).viewers == {}  # type: ignore[arg-type]
