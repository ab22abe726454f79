"""The fleet signals: each counter moves once per applied event, not on a replay, and no
label value is a household, camera, viewer or any other id."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration
from prometheus_client import REGISTRY

from privacam.identity.v1 import events_pb2 as identity_pb2
from privacam.types.v1 import types_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from services.common import topics
from services.privacy_watch.adapters import metrics
from services.privacy_watch.domain.rules import WatchPolicy
from services.privacy_watch.streams.access import AccessWatch
from services.privacy_watch.streams.identity import IdentityWatch
from tests.unit.privacy_watch.fakes import T0, TENANT, Sink, access_event, identity_event

CAMERA = "3c9d2e1f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
FLEET = (
    "privacam_privacy_watch_fleet_pin_lockouts_total",
    "privacam_privacy_watch_fleet_wrong_pins_total",
    "privacam_privacy_watch_fleet_enrollments_total",
    "privacam_privacy_watch_fleet_bursts_total",
)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def counts() -> dict[str, float]:
    return {
        "lockouts": value(FLEET[0]),
        "wrong_pins": value(FLEET[1]),
        **{k: value(FLEET[2], kind=k) for k in metrics.ENROLLMENT_KINDS},
        **{f"burst_{k}": value(FLEET[3], principal_kind=k) for k in metrics.PRINCIPAL_KINDS},
    }


def moved(before: dict[str, float]) -> dict[str, float]:
    return {k: v - before[k] for k, v in counts().items() if v != before[k]}


def identity(**body: Any) -> bytes:
    return topics.IDENTITY.encode(identity_event(**body))


def playback(access_id: str, at: datetime) -> bytes:
    return access_event(
        TENANT, access_id, at, types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK, device_id=CAMERA
    )


def locked(failed: int) -> bytes:
    return identity(
        pin_locked_out=identity_pb2.PinLockedOut(
            device_id=CAMERA, failed_attempts=failed, lockout=Duration(seconds=3600)
        )
    )


async def test_enrollments_count_once_each_and_not_on_a_replay() -> None:
    watch = IdentityWatch({}, Sink())
    key = TENANT.encode()
    registered = identity(account_registered=identity_pb2.AccountRegistered())
    camera = identity(camera_enrolled=identity_pb2.CameraEnrolled(device_id=CAMERA))
    install = identity(app_install_enrolled=identity_pb2.AppInstallEnrolled(install_id="phone"))
    before = counts()
    await watch.on_event(key, registered, 0)
    await watch.on_event(key, install, 1)
    await watch.on_event(key, camera, 2)
    assert moved(before) == {"account": 1, "app_install": 1, "camera": 1}
    before = counts()
    for offset, again in enumerate((registered, install, camera)):  # replayed after a crash
        await watch.on_event(key, again, offset)
    await watch.on_event(key, b"\xff\xff", 3)  # undecodable: not applied
    assert moved(before) == {}


async def test_lockouts_count_each_wrong_try_once_across_a_streak() -> None:
    watch = IdentityWatch({}, Sink())
    key = TENANT.encode()
    before = counts()
    # A streak locks at its 10th wrong try, publishes again at the 11th and 12th; replays
    # of the 11th count nothing; a correct PIN (no event) and a new streak of 10.
    await watch.on_event(key, locked(10), 0)
    await watch.on_event(key, locked(11), 1)
    await watch.on_event(key, locked(11), 1)
    await watch.on_event(key, locked(12), 2)
    await watch.on_event(key, locked(10), 3)
    assert moved(before) == {"lockouts": 4, "wrong_pins": 22}
    # The owner set a new PIN: the next lockout starts a streak whatever its count.
    before = counts()
    await watch.on_event(
        key,
        identity(
            pin_changed=identity_pb2.PinChanged(
                device_id=CAMERA, change=identity_pb2.PIN_CHANGE_SET
            )
        ),
        4,
    )
    await watch.on_event(key, locked(12), 5)
    assert moved(before) == {"lockouts": 1, "wrong_pins": 12}


async def test_a_muted_wrong_pin_streak_still_counts_for_the_fleet() -> None:
    table: dict[str, Any] = {}
    sink = Sink()
    watch = IdentityWatch(table, sink)
    key = TENANT.encode()
    settings = identity_pb2.CameraSettingsChanged(device_id=CAMERA)
    settings.settings.watch.muted_rules.append(watch_pb2.WATCH_RULE_WRONG_PIN_STREAK)
    await watch.on_event(key, identity(camera_settings_changed=settings), 0)
    before = counts()
    await watch.on_event(key, locked(10), 1)
    assert sink.sent == []
    assert moved(before) == {"lockouts": 1, "wrong_pins": 10}


async def test_a_burst_counts_once_by_principal_kind_and_not_on_a_replay() -> None:
    households: dict[str, Any] = {}
    watch = AccessWatch(households, {}, Sink(), WatchPolicy(burst_count=3))
    key = TENANT.encode()
    events = [playback(f"a{i}", T0 + timedelta(seconds=i)) for i in range(4)]
    before = counts()
    for offset, each in enumerate(events):
        await watch.on_event(key, each, offset)
    assert moved(before) == {"burst_app": 1}
    before = counts()
    await watch.on_event(key, events[2], 2)  # the burst's own event, replayed
    assert moved(before) == {}


async def test_no_fleet_label_value_is_an_id() -> None:
    # Whatever ran before in this process, the fleet series' labels are from fixed sets.
    allowed = {
        "kind": set(metrics.ENROLLMENT_KINDS),
        "principal_kind": set(metrics.PRINCIPAL_KINDS),
    }
    await test_enrollments_count_once_each_and_not_on_a_replay()
    await test_a_burst_counts_once_by_principal_kind_and_not_on_a_replay()
    seen = 0
    for family in REGISTRY.collect():
        if not family.name.startswith("privacam_privacy_watch"):
            continue
        for sample in family.samples:
            for label, text in sample.labels.items():
                assert not any(i in text for i in (TENANT, CAMERA, "app-1", "phone"))
                if family.name in {f.removesuffix("_total") for f in FLEET}:
                    assert text in allowed[label], (sample.name, label, text)
                    seen += 1
    assert seen >= len(metrics.ENROLLMENT_KINDS) + len(metrics.PRINCIPAL_KINDS)
