"""Privacy mode's pure parts: schedule parsing and evaluation, statement checks, and the
camera's verification (sdk/privacam_sdk/privacy.py, core/privacam_core/privacy.py)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from privacam.identity.v1 import privacy_pb2
from privacam_core import privacy as platform
from privacam_sdk import privacy as sdk

TENANT, DEVICE, INSTALL = "tenant-1", "device-1", "install-1"
MONDAY_NOON = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # a Monday


def signed(
    mode: sdk.Mode, key: ec.EllipticCurvePrivateKey, at: datetime, **names: str
) -> privacy_pb2.SignedPrivacyStatement:
    fields = {"tenant_id": TENANT, "device_id": DEVICE, "install_id": INSTALL, **names}
    return sdk.sign_statement(sdk.make_statement(mode, issued_at=at, **fields), key)


@pytest.fixture
def owner() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def cam(owner: ec.EllipticCurvePrivateKey, tmp_path: Path) -> sdk.CameraPrivacy:
    return sdk.CameraPrivacy(
        tenant_id=TENANT,
        device_id=DEVICE,
        owner_keys={INSTALL: owner.public_key()},
        state_file=tmp_path / "privacy-state.json",
    )


# --- schedules ---------------------------------------------------------------------------


def test_a_schedule_parses_days_ranges_and_overnight_windows() -> None:
    mode = sdk.parse_schedule("weekdays 22:00-07:00, sat 00:00-24:00", "+01:00")
    assert mode.utc_offset_minutes == 60
    assert [w.day for w in mode.windows] == [0, 1, 2, 3, 4, 5]
    assert mode.windows[0] == sdk.Window(0, 22 * 60, 7 * 60)
    assert mode.windows[-1] == sdk.Window(5, 0, 1440)
    assert [w.day for w in sdk.parse_schedule("fri-mon 10:00-11:00").windows] == [4, 5, 6, 0]


@pytest.mark.parametrize(
    ("spec", "offset", "message"),
    [
        ("mon 22:00", "+00:00", "must look like 'mon-fri 22:00-07:00'"),
        ("funday 10:00-11:00", "+00:00", "'funday' is not a day"),
        ("mon 25:00-26:00", "+00:00", "25:00 is not a time of day"),
        ("mon 10:61-11:00", "+00:00", "10:61 is not a time of day"),
        ("mon 10:00-10:00", "+00:00", "is empty"),
        ("mon 10:00-11:00", "+15:00", "must be -12:00 to +14:00"),
        ("mon 10:00-11:00", "CET", "must look like +01:00"),
        (", ".join(["daily 10:00-11:00"] * 5), "+00:00", "at most 28 windows"),
    ],
)
def test_a_malformed_schedule_is_refused_with_a_clear_message(
    spec: str, offset: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        sdk.parse_schedule(spec, offset)


def test_a_schedule_is_evaluated_in_the_households_local_time() -> None:
    mode = sdk.parse_schedule("mon-fri 22:00-07:00", "+01:00")
    # Monday 21:30 UTC is 22:30 local: private; Saturday 06:00 local ends Friday's night.
    assert mode.private_reason(datetime(2026, 12, 7, 21, 30, tzinfo=UTC)) is not None
    assert mode.private_reason(datetime(2026, 12, 7, 20, 30, tzinfo=UTC)) is None
    assert mode.private_reason(datetime(2026, 12, 12, 5, 0, tzinfo=UTC)) is not None
    assert mode.private_reason(datetime(2026, 12, 12, 6, 0, tzinfo=UTC)) is None
    # Sunday night into Monday wraps around the week.
    sunday = sdk.parse_schedule("sun 23:00-01:00")
    assert sunday.private_reason(datetime(2026, 12, 7, 0, 30, tzinfo=UTC)) is not None


def test_the_camera_and_the_platform_evaluate_with_one_code() -> None:
    """No second copy of the evaluation to drift: the SDK's is the platform's."""
    assert sdk.Mode is platform.Mode
    assert sdk.mode_of is platform.mode_of


# --- statements at the platform -------------------------------------------------------------


def test_the_platform_refuses_malformed_statements_naming_the_field(
    owner: ec.EllipticCurvePrivateKey,
) -> None:
    statement = sdk.make_statement(
        sdk.Mode("on"),
        tenant_id=TENANT,
        device_id=DEVICE,
        install_id=INSTALL,
        issued_at=MONDAY_NOON,
    )
    statement.ClearField("mode")
    with pytest.raises(platform.StatementError, match="must set a mode"):
        platform.mode_of(statement)
    statement.until.until.FromDatetime(MONDAY_NOON - timedelta(minutes=1))
    with pytest.raises(platform.StatementError, match=r"until\.until must be after issued_at"):
        platform.mode_of(statement)
    statement.schedule.windows.add(day=privacy_pb2.DAY_OF_WEEK_UNSPECIFIED, end_minute=10)
    with pytest.raises(platform.StatementError, match=r"windows\[0\].day must be a day"):
        platform.mode_of(statement)
    with pytest.raises(platform.StatementError, match="not a serialized PrivacyStatement"):
        platform.parse(b"\xff\xff")


def test_the_platform_verifies_the_signature_with_the_callers_key(
    owner: ec.EllipticCurvePrivateKey,
) -> None:
    statement = signed(sdk.Mode("off"), owner, MONDAY_NOON)
    assert platform.verify_signature(statement, owner.public_key())
    other = ec.generate_private_key(ec.SECP256R1())
    assert not platform.verify_signature(statement, other.public_key())
    message = platform.refusal(DEVICE, platform.Mode("on"), MONDAY_NOON, platform.Feature.LIVE_VIEW)
    assert message == (
        f"camera {DEVICE} is in privacy mode (private until the owner turns it off): "
        "live view refused"
    )


# --- the camera ------------------------------------------------------------------------------


def test_the_camera_applies_its_owners_statement_and_keeps_it(
    cam: sdk.CameraPrivacy, owner: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    assert cam.private_reason(MONDAY_NOON) is None
    statement = signed(sdk.Mode("on"), owner, MONDAY_NOON)
    assert cam.apply(statement, MONDAY_NOON)
    assert not cam.apply(statement, MONDAY_NOON)  # the same one again changes nothing
    with pytest.raises(sdk.PrivacyRefused, match="no live view"):
        cam.check(sdk.Feature.LIVE_VIEW, MONDAY_NOON)
    with pytest.raises(sdk.PrivacyRefused, match="no talk-back"):
        cam.check(sdk.Feature.TALK_BACK, MONDAY_NOON)
    restarted = sdk.CameraPrivacy(
        tenant_id=TENANT,
        device_id=DEVICE,
        owner_keys={INSTALL: owner.public_key()},
        state_file=tmp_path / "privacy-state.json",
    )
    assert restarted.private_reason(MONDAY_NOON) is not None


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("another key", "signature does not verify with the owner app's key"),
        ("unpaired install", "not signed by an owner app paired with this camera"),
        ("another camera", "for another camera"),
        ("replay", "older than the one applied"),
        ("future", "dated in the future"),
    ],
)
def test_the_camera_refuses_what_its_owner_did_not_sign_and_stays_private(
    cam: sdk.CameraPrivacy, owner: ec.EllipticCurvePrivateKey, case: str, reason: str
) -> None:
    off_before = signed(sdk.Mode("off"), owner, MONDAY_NOON - timedelta(minutes=1))
    cam.apply(signed(sdk.Mode("on"), owner, MONDAY_NOON), MONDAY_NOON)
    later = MONDAY_NOON + timedelta(seconds=1)
    forger = ec.generate_private_key(ec.SECP256R1())
    attempt = {
        "another key": signed(sdk.Mode("off"), forger, later),
        "unpaired install": signed(sdk.Mode("off"), forger, later, install_id="install-2"),
        "another camera": signed(sdk.Mode("off"), owner, later, device_id="device-2"),
        "replay": off_before,
        "future": signed(sdk.Mode("off"), owner, MONDAY_NOON + timedelta(minutes=6)),
    }[case]
    with pytest.raises(sdk.PrivacyRefused, match=reason):
        cam.apply(attempt, later)
    assert cam.private_reason(later) is not None


def test_until_ends_by_itself(cam: sdk.CameraPrivacy, owner: ec.EllipticCurvePrivateKey) -> None:
    ends = MONDAY_NOON + timedelta(hours=2)
    cam.apply(signed(sdk.Mode("until", until=ends), owner, MONDAY_NOON), MONDAY_NOON)
    assert cam.private_reason(ends - timedelta(seconds=1)) is not None
    assert cam.private_reason(ends) is None
    cam.check(sdk.Feature.CLIP_RECORDING, ends)


# --- ending what runs when the camera turns private ------------------------------------------


def test_the_next_change_is_the_next_edge_of_a_window_or_the_end_of_until() -> None:
    nights = sdk.parse_schedule("mon-fri 22:00-07:00", "+01:00")
    # Monday 13:00 local: Monday's night begins at 22:00 local, 21:00 UTC.
    assert nights.next_change(MONDAY_NOON) == datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
    # In it, at 22:30 local: it ends Tuesday 07:00 local.
    inside = datetime(2026, 12, 7, 21, 30, 15, tzinfo=UTC)
    assert nights.next_change(inside) == datetime(2026, 12, 8, 6, 0, tzinfo=UTC)
    # Exactly on an edge: the next one, not the same.
    assert nights.next_change(datetime(2026, 12, 7, 21, 0, tzinfo=UTC)) == datetime(
        2026, 12, 8, 6, 0, tzinfo=UTC
    )
    # Friday's night ends Saturday morning; the next begins on Monday (around the week).
    assert nights.next_change(datetime(2026, 12, 12, 12, 0, tzinfo=UTC)) == datetime(
        2026, 12, 14, 21, 0, tzinfo=UTC
    )
    ends = MONDAY_NOON + timedelta(hours=2)
    assert sdk.Mode("until", until=ends).next_change(MONDAY_NOON) == ends
    assert sdk.Mode("until", until=ends).next_change(ends) is None
    assert sdk.Mode("on").next_change(MONDAY_NOON) is None
    assert sdk.Mode("off").next_change(MONDAY_NOON) is None


@settings(max_examples=300, deadline=None)
@given(
    windows=st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 1439), st.integers(1, 1440)).filter(
            lambda w: w[1] != w[2]
        ),
        min_size=1,
        max_size=5,
    ),
    offset=st.integers(-720, 840),
    seconds=st.integers(0, 60 * 60 * 24 * 14),
)
def test_a_schedule_changes_state_only_at_its_next_change(
    windows: list[tuple[int, int, int]], offset: int, seconds: int
) -> None:
    """Whatever the schedule, the state holds from any moment until the next change, and
    that change comes within a week: an enforcer waking there misses no window."""
    mode = sdk.Mode("schedule", None, offset, tuple(sdk.Window(*w) for w in windows))
    now = MONDAY_NOON + timedelta(seconds=seconds)
    change = mode.next_change(now)
    assert change is not None
    assert now < change <= now + timedelta(weeks=1)
    private = mode.private_reason(now) is not None
    for moment in (now + (change - now) / 2, change - timedelta(microseconds=1)):
        assert (mode.private_reason(moment) is not None) == private
    beyond = change + timedelta(seconds=1)
    if (mode.private_reason(change) is not None) != private:
        assert (mode.private_reason(beyond) is not None) != private


async def test_the_enforcer_ends_what_runs_when_a_window_begins_and_at_each_change(
    cam: sdk.CameraPrivacy, owner: ec.EllipticCurvePrivateKey
) -> None:
    begins = datetime(2026, 12, 7, 22, 0, tzinfo=UTC)  # a Monday
    shift = begins - timedelta(seconds=0.3) - datetime.now(UTC)

    def clock() -> datetime:  # the camera's clock, 0.3 s before the window
        return datetime.now(UTC) + shift

    ended: list[tuple[datetime, str]] = []

    async def end_running(reason: str) -> None:
        ended.append((clock(), reason))
        if len(ended) == 2:
            raise RuntimeError("a peer would not close")  # the enforcer goes on regardless

    cam.apply(signed(sdk.parse_schedule("mon 22:00-23:00"), owner, clock()), clock())
    enforcer = sdk.PrivacyEnforcer(cam, end_running, clock=clock)
    enforcer.start()
    await asyncio.sleep(0.15)
    assert ended == []  # not private yet: nothing to end
    await asyncio.sleep(0.4)
    ((at, reason),) = ended  # the window began while "a view ran": ended then, unasked
    assert begins <= at < begins + timedelta(seconds=0.2)
    assert reason.startswith("private on schedule, mon 22:00-23:00")
    # A statement applied: looked at at once (the camera calls changed()).
    cam.apply(signed(sdk.Mode("on"), owner, clock()), clock())
    enforcer.changed()
    await asyncio.sleep(0.05)
    assert len(ended) == 2
    cam.apply(signed(sdk.Mode("on"), owner, clock()), clock())
    enforcer.changed()
    await asyncio.sleep(0.05)
    assert len(ended) == 3  # still watching after the failed end
    cam.apply(signed(sdk.Mode("off"), owner, clock()), clock())
    enforcer.changed()
    await asyncio.sleep(0.05)
    assert len(ended) == 3  # not private: nothing ended
    await enforcer.stop()
