"""Per-camera tuning of the watch (issue #22): a rule the owner muted on a camera tells
nothing about that camera and still tells about the others; a camera's own burst count."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration

from privacam.identity.v1 import events_pb2 as identity_pb2
from privacam.identity.v1 import identity_pb2 as settings_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from services.common import topics
from services.privacy_watch.domain.rules import (
    Account,
    CameraTuning,
    Entry,
    Household,
    Kind,
    Principal,
    Purpose,
    Rule,
    Tuning,
    WatchPolicy,
)
from services.privacy_watch.streams.access import AccessWatch
from services.privacy_watch.streams.identity import IdentityWatch
from tests.unit.privacy_watch.fakes import T0, TENANT, Sink, access_event
from tests.unit.privacy_watch.fakes import identity_event as event


def access(access_id: str, camera: str, viewer: str) -> bytes:
    return access_event(TENANT, access_id, T0, viewer=viewer, device_id=camera)


POLICY = WatchPolicy(burst_count=3, usual_hours_min_views=5)
ALICE = Principal(Kind.APP, "t1", "alice-app")
OPERATOR = Principal(Kind.OPERATOR, "", "op.jane")


def entry(
    at: datetime, camera: str, principal: Principal = ALICE, purpose: Purpose = Purpose.LIVE_VIEW
) -> Entry:
    return Entry("t1", 0, str(uuid.uuid4()), at, principal, purpose, camera)


def told(household: Household, tuning: Tuning, *entries: Entry) -> list[tuple[Rule, str]]:
    return [(n.rule, e.device_id) for e in entries for n in household.observe(e, POLICY, tuning)]


def test_a_muted_new_viewer_is_told_of_the_other_camera_only() -> None:
    tuning = {"cam-a": CameraTuning(muted=frozenset({Rule.NEW_VIEWER}))}
    assert told(Household(), tuning, entry(T0, "cam-a")) == []
    assert told(Household(), tuning, entry(T0, "cam-b")) == [(Rule.NEW_VIEWER, "cam-b")]
    # muted means not told, not unseen: the viewer is known afterwards
    household = Household()
    told(household, tuning, entry(T0, "cam-a"))
    assert told(household, {}, entry(T0 + timedelta(minutes=1), "cam-b")) == []


def test_operator_access_muted_on_one_camera() -> None:
    tuning = {"cam-a": CameraTuning(muted=frozenset({Rule.OPERATOR_ACCESS}))}
    support = Purpose.OPERATOR_SUPPORT
    assert told(
        Household(),
        tuning,
        entry(T0, "cam-a", OPERATOR, support),
        entry(T0, "cam-b", OPERATOR, support),
    ) == [(Rule.OPERATOR_ACCESS, "cam-b")]
    # an operator access to no camera (the account) cannot be muted by a camera's tuning
    assert told(Household(), tuning, entry(T0, "", OPERATOR, support)) == [
        (Rule.OPERATOR_ACCESS, "")
    ]


def test_a_muted_burst_leaves_no_quiet_period_behind() -> None:
    tuning = {"cam-a": CameraTuning(muted=frozenset({Rule.BURST}))}
    household = Household()
    household.observe(entry(T0 - timedelta(days=1), "cam-a"), POLICY, tuning)
    plays = [
        entry(T0 + timedelta(minutes=i), "cam-a", purpose=Purpose.CLIP_PLAYBACK) for i in range(3)
    ]
    assert told(household, tuning, *plays) == []
    # the next playback, of cam-b, makes a burst that is told (no window spent by cam-a's)
    play_b = entry(T0 + timedelta(minutes=4), "cam-b", purpose=Purpose.CLIP_PLAYBACK)
    assert told(household, tuning, play_b) == [(Rule.BURST, "cam-b")]


def test_unmuting_restores_the_rule() -> None:
    household = Household()
    household.observe(entry(T0 - timedelta(days=1), "cam-a"), POLICY)
    muted = {"cam-a": CameraTuning(muted=frozenset({Rule.BURST}))}
    plays = [
        entry(T0 + timedelta(minutes=i), "cam-a", purpose=Purpose.CLIP_PLAYBACK) for i in range(3)
    ]
    assert told(household, muted, *plays) == []
    again = entry(T0 + timedelta(minutes=4), "cam-a", purpose=Purpose.CLIP_PLAYBACK)
    assert told(household, {}, again) == [(Rule.BURST, "cam-a")]


def test_a_cameras_own_burst_count_counts_its_playbacks() -> None:
    tuning = {"cam-a": CameraTuning(burst_count=5)}
    household = Household()
    household.observe(entry(T0 - timedelta(days=1), "cam-a"), POLICY, tuning)
    plays = [
        entry(T0 + timedelta(minutes=i), "cam-a", purpose=Purpose.CLIP_PLAYBACK) for i in range(4)
    ]
    assert told(household, tuning, *plays) == []  # 3 would do on another camera; cam-a needs 5
    fifth = entry(T0 + timedelta(minutes=5), "cam-a", purpose=Purpose.CLIP_PLAYBACK)
    notices = household.observe(fifth, POLICY, tuning)
    assert [(n.rule, n.count) for n in notices] == [(Rule.BURST, 5)]


def test_unusual_hours_muted_on_one_camera() -> None:
    household = Household()
    for i in range(5):
        household.observe(entry(T0 + timedelta(minutes=i), "cam-a"), POLICY)
    night = T0.replace(hour=3)
    tuning = {"cam-a": CameraTuning(muted=frozenset({Rule.OUTSIDE_USUAL_HOURS}))}
    assert told(household, tuning, entry(night, "cam-a")) == []
    # cam-a's view at 03:00 made that hour usual; 08:00 is not, and cam-b is told
    morning = T0.replace(hour=8)
    assert told(household, tuning, entry(morning, "cam-b")) == [(Rule.OUTSIDE_USUAL_HOURS, "cam-b")]


def test_tuning_round_trips_in_the_account_and_old_records_read() -> None:
    account = Account(cameras={"cam-a": CameraTuning(frozenset({Rule.BURST, Rule.NEW_GRANT}), 7)})
    assert Account.from_json(account.to_json()) == account
    old = {"offset": 3, "registered": True, "installs": [], "deleted": False}
    assert Account.from_json(old).cameras == {}
    household = Household()
    household.observe(entry(T0, "cam-a", purpose=Purpose.CLIP_PLAYBACK), POLICY)
    data = household.to_json()
    assert Household.from_json(data) == household
    data["viewers"][ALICE.key]["recent"] = [T0.isoformat()]  # written before the tuning
    assert Household.from_json(data).viewers[ALICE.key].recent == [(T0, "")]


def settings(
    camera: str, *muted: watch_pb2.WatchRule.ValueType, burst: int = 0
) -> identity_pb2.IdentityEvent:
    watch = settings_pb2.CameraWatchSettings(muted_rules=list(muted), burst_count=burst)
    changed = identity_pb2.CameraSettingsChanged(
        device_id=camera, settings=settings_pb2.CameraSettings(retention_days=7, watch=watch)
    )
    return event(camera_settings_changed=changed)


def lockout(camera: str) -> identity_pb2.IdentityEvent:
    return event(
        pin_locked_out=identity_pb2.PinLockedOut(
            device_id=camera, failed_attempts=10, lockout=Duration(seconds=900)
        )
    )


def grant(camera: str) -> identity_pb2.IdentityEvent:
    body = settings_pb2.Grant(grant_id="g-" + camera, device_id=camera, owner_tenant_id=TENANT)
    return event(grant_created=identity_pb2.GrantCreated(grant=body))


async def test_identity_rules_muted_per_camera_from_the_settings_event() -> None:
    sink = Sink()
    table: dict[str, Any] = {}
    watch = IdentityWatch(table, sink)
    events = [
        settings(
            "cam-a", watch_pb2.WATCH_RULE_WRONG_PIN_STREAK, watch_pb2.WATCH_RULE_NEW_GRANT, burst=9
        ),
        lockout("cam-a"),
        grant("cam-a"),
        lockout("cam-b"),
        grant("cam-b"),
        settings("cam-a"),  # unmuted: every rule, default thresholds
        lockout("cam-a"),
    ]
    for offset, each in enumerate(events):
        await watch.on_event(TENANT.encode(), topics.IDENTITY.encode(each), offset)
    assert [(n.rule, n.device_id) for n in sink.sent] == [
        (watch_pb2.WATCH_RULE_WRONG_PIN_STREAK, "cam-b"),
        (watch_pb2.WATCH_RULE_NEW_GRANT, "cam-b"),
        (watch_pb2.WATCH_RULE_WRONG_PIN_STREAK, "cam-a"),
    ]
    assert table[TENANT]["cameras"] == {}


async def test_the_access_agent_applies_the_tuning_the_identity_agent_keeps() -> None:
    accounts: dict[str, Any] = {}
    identity = IdentityWatch(accounts, Sink())
    mute = settings("cam-a", watch_pb2.WATCH_RULE_NEW_VIEWER)
    await identity.on_event(TENANT.encode(), topics.IDENTITY.encode(mute), 0)
    sink = Sink()
    watch = AccessWatch({}, {}, sink, POLICY, accounts=accounts)
    key = TENANT.encode()
    assert await watch.on_event(key, access("a-1", "cam-a", "alice"), 0) == 0
    assert await watch.on_event(key, access("a-2", "cam-b", "bob"), 1) == 1
    await identity.on_event(key, topics.IDENTITY.encode(settings("cam-a")), 1)  # unmuted
    assert await watch.on_event(key, access("a-3", "cam-a", "carol"), 2) == 1
    assert [(n.rule, n.device_id) for n in sink.sent] == [
        (watch_pb2.WATCH_RULE_NEW_VIEWER, "cam-b"),
        (watch_pb2.WATCH_RULE_NEW_VIEWER, "cam-a"),
    ]
