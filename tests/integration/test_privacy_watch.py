"""The privacy watch (issue #22) against the real Kafka (SASL_SSL, ACLs): its own Faust
worker processes read access events a test writes to a namespace of their own, and the
notices they send are read back from the notices topic."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration

from privacam.accesslog.v1 import events_pb2
from privacam.identity.v1 import events_pb2 as identity_pb2
from privacam.identity.v1 import identity_pb2 as grant_pb2
from privacam.types.v1 import types_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from tests.harness import (
    ServiceProcess,
    cleanup_namespace,
    delete_namespace_topics,
    metric,
    new_namespace,
)
from tests.pki_helpers import PkiFactory
from tests.watch_events import (
    BASE,
    AccessWriter,
    NoticeReader,
    access,
    app,
    identity,
    watch_process,
)


@pytest.fixture(scope="module")
def namespace(stack_env: dict[str, str]) -> Iterator[str]:
    namespace = new_namespace(stack_env, "watch")
    try:
        yield namespace
    finally:
        cleanup_namespace(stack_env, namespace)


def by_entry(notices: list[watch_pb2.WatchNotice]) -> dict[tuple[str, str, int], int]:
    """(tenant, access id, rule) -> how many distinct notices name it."""
    counts: dict[tuple[str, str, int], int] = {}
    for notice in notices:
        key = (notice.tenant_id, notice.entry.access_id, notice.rule)
        counts[key] = counts.get(key, 0) + 1
    return counts


def rid(event: events_pb2.AccessEvent) -> str:
    return event.access_recorded.record.access_id


# --- the tests -------------------------------------------------------------------------


async def test_watch_rules_fire_once(
    stack_env: dict[str, str], pki: PkiFactory, namespace: str, tmp_path: Path
) -> None:
    worker = watch_process(
        pki, stack_env, namespace, tmp_path, burst_count="3", usual_hours_min_views="5"
    )
    worker.start()
    try:
        worker.wait_serving(180)
        tenant, other = str(uuid.uuid4()), str(uuid.uuid4())
        alice = app(tenant, str(uuid.uuid4()))
        guest = app(other, str(uuid.uuid4()))  # a member of another household, shared with
        operator = types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_OPERATOR, id="op.jane")
        playback = types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK
        first_view = access(tenant, alice, BASE - timedelta(days=2))
        usual = access(tenant, alice, BASE + timedelta(minutes=30))
        op = access(tenant, operator, BASE + timedelta(minutes=40), 5)
        newcomer = access(tenant, guest, BASE + timedelta(minutes=45))
        plays = [
            access(tenant, alice, BASE + timedelta(minutes=50 + i), playback) for i in range(4)
        ]
        night = access(tenant, alice, BASE + timedelta(hours=13))  # 03:00 UTC
        night_again = access(tenant, alice, BASE + timedelta(hours=13, minutes=10))
        history = [
            access(tenant, alice, BASE - timedelta(days=days, hours=hours))
            for days in (2, 1)
            for hours in (-1, 0, 1)
        ][1:]
        duplicate = access(tenant, alice, BASE + timedelta(minutes=35))
        duplicate.access_recorded.record.access_id = usual.access_recorded.record.access_id
        timeless = access(tenant, alice, None)  # the log refuses it: no index, no notice
        events = [
            first_view,  # index 0: NEW_VIEWER
            *history,  # 1-5: known viewer at usual hours
            usual,  # 6: nothing (a known viewer at a usual hour)
            duplicate,  # not a new entry: the log keeps the first
            timeless,
            op,  # 7: OPERATOR_ACCESS
            newcomer,  # 8: NEW_VIEWER
            *plays,  # 9-12: BURST on the third (11), not again on the fourth
            night,  # 13: OUTSIDE_USUAL_HOURS
            night_again,  # 14: nothing (told an hour ago at most)
        ]
        # The account's identity events: its registration and the registering install
        # (nothing), a second install (NEW_APP_INSTALL), the first again (nothing: a sign-in
        # of a known install), a wrong-PIN streak by a stranger (WRONG_PIN_STREAK, not
        # naming them) and a new grant (NEW_GRANT, naming the log entry's access id).
        install = alice.id
        at = BASE + timedelta(minutes=20)
        registered = identity(tenant, at, account_registered=identity_pb2.AccountRegistered())
        enrolled = [
            identity(tenant, at, app_install_enrolled=identity_pb2.AppInstallEnrolled(install_id=i))
            for i in (install, "tablet-" + install[:8], install)
        ]
        streak = identity(
            tenant,
            at,
            pin_locked_out=identity_pb2.PinLockedOut(
                device_id="cam-1",
                failed_attempts=10,
                lockout=Duration(seconds=3600),
                last_attempt_by=guest,
            ),
        )
        grant = grant_pb2.Grant(
            grant_id=str(uuid.uuid4()),
            device_id="cam-1",
            owner_tenant_id=tenant,
            grantee_tenant_id=other,
        )
        shared = identity(tenant, at, grant_created=identity_pb2.GrantCreated(grant=grant))
        shared.metadata.actor.CopyFrom(alice)
        async with (
            NoticeReader(stack_env, namespace) as reader,
            AccessWriter(stack_env, namespace) as writer,
        ):
            for event in events:
                await writer.write(event)
            for change in (registered, *enrolled, streak, shared):
                await writer.write_identity(change)
            notices = await reader.wait_for(8)
        got = {(n.rule, n.entry.index, n.entry.access_id) for n in notices}
        assert got == {
            (watch_pb2.WATCH_RULE_NEW_VIEWER, 0, rid(first_view)),
            (watch_pb2.WATCH_RULE_OPERATOR_ACCESS, 7, rid(op)),
            (watch_pb2.WATCH_RULE_NEW_VIEWER, 8, rid(newcomer)),
            (watch_pb2.WATCH_RULE_BURST, 11, rid(plays[2])),
            (watch_pb2.WATCH_RULE_OUTSIDE_USUAL_HOURS, 13, rid(night)),
            (watch_pb2.WATCH_RULE_NEW_APP_INSTALL, 0, ""),
            (watch_pb2.WATCH_RULE_WRONG_PIN_STREAK, 0, ""),
            (watch_pb2.WATCH_RULE_NEW_GRANT, 0, shared.metadata.event_id),
        }
        assert len(reader.received) == 8, "a notice was sent twice"
        for notice in notices:
            assert notice.tenant_id == tenant
            assert len(notice.summary) <= 256
            if notice.rule != watch_pb2.WATCH_RULE_NEW_APP_INSTALL:
                assert notice.device_id == "cam-1"
        new_install = next(n for n in notices if n.rule == watch_pb2.WATCH_RULE_NEW_APP_INSTALL)
        assert new_install.principal == app(tenant, "tablet-" + install[:8])
        assert new_install.source_event_id == enrolled[1].metadata.event_id
        pins = next(n for n in notices if n.rule == watch_pb2.WATCH_RULE_WRONG_PIN_STREAK)
        assert (pins.count, pins.window.seconds) == (10, 3600)
        assert pins.source_event_id == streak.metadata.event_id
        assert not pins.HasField("principal"), "a stranger's app named to the household"
        new_grant = next(n for n in notices if n.rule == watch_pb2.WATCH_RULE_NEW_GRANT)
        assert new_grant.grant_id == grant.grant_id
        assert new_grant.principal == alice
        assert other.encode() not in new_grant.SerializeToString()
        burst = next(n for n in notices if n.rule == watch_pb2.WATCH_RULE_BURST)
        assert burst.count == 3
        assert burst.window.seconds == 600
        assert burst.principal == alice
        assert burst.purpose == playback
        op_notice = next(n for n in notices if n.rule == watch_pb2.WATCH_RULE_OPERATOR_ACCESS)
        assert op_notice.principal == operator
        events_total = "privacam_privacy_watch_events_total"
        assert metric(worker.metrics_port, events_total, result="duplicate") == 1
    finally:
        worker.stop()


async def test_watch_muted_per_camera(
    stack_env: dict[str, str], pki: PkiFactory, namespace: str, tmp_path: Path
) -> None:
    """The owner mutes rules on camera A (device_auth's CameraSettingsChanged on the
    identity topic): A's operator access and wrong-PIN streak tell nothing while B's
    still do; unmuted, A's tell again."""
    worker = watch_process(pki, stack_env, namespace, tmp_path)
    worker.start()
    try:
        worker.wait_serving(180)
        tenant = str(uuid.uuid4())
        cam_a, cam_b = "cam-a-" + tenant[:8], "cam-b-" + tenant[:8]
        operator = types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_OPERATOR, id="op.jane")
        support = types_pb2.ACCESS_PURPOSE_OPERATOR_SUPPORT

        def tuned(*muted: watch_pb2.WatchRule.ValueType) -> identity_pb2.IdentityEvent:
            settings = grant_pb2.CameraSettings(retention_days=7)
            if muted:
                settings.watch.muted_rules.extend(muted)
            changed = identity_pb2.CameraSettingsChanged(device_id=cam_a, settings=settings)
            return identity(tenant, BASE, camera_settings_changed=changed)

        def lockout(camera: str) -> identity_pb2.IdentityEvent:
            locked = identity_pb2.PinLockedOut(
                device_id=camera, failed_attempts=10, lockout=Duration(seconds=900)
            )
            return identity(tenant, BASE, pin_locked_out=locked)

        def told(reader: NoticeReader) -> set[tuple[int, str]]:
            return {(n.rule, n.device_id) for n in reader.distinct() if n.tenant_id == tenant}

        async def wait_told(reader: NoticeReader, count: int) -> set[tuple[int, str]]:
            """Once `count` notices of this household arrived, and 1.5 s more for extras."""
            deadline = time.monotonic() + 60
            while len(told(reader)) < count:
                assert time.monotonic() < deadline, f"{told(reader)}: fewer than {count}"
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.5)
            return told(reader)

        pins, op_rule = watch_pb2.WATCH_RULE_WRONG_PIN_STREAK, watch_pb2.WATCH_RULE_OPERATOR_ACCESS
        async with (
            NoticeReader(stack_env, namespace) as reader,
            AccessWriter(stack_env, namespace) as writer,
        ):
            # Muted on A; B's streak, after A's in the same partition, says A's was applied.
            for change in (tuned(op_rule, pins), lockout(cam_a), lockout(cam_b)):
                await writer.write_identity(change)
            assert await wait_told(reader, 1) == {(pins, cam_b)}
            # The identity event is applied: A's operator access is not told, B's is.
            await writer.write(access(tenant, operator, BASE, support, device_id=cam_a))
            await writer.write(access(tenant, operator, BASE, support, device_id=cam_b))
            assert await wait_told(reader, 2) == {(pins, cam_b), (op_rule, cam_b)}
            # Unmuted: A's streak and operator access are told again.
            for change in (tuned(), lockout(cam_a)):
                await writer.write_identity(change)
            await wait_told(reader, 3)
            later = BASE + timedelta(minutes=5)
            await writer.write(access(tenant, operator, later, support, device_id=cam_a))
            assert await wait_told(reader, 4) == {
                (pins, cam_b),
                (op_rule, cam_b),
                (pins, cam_a),
                (op_rule, cam_a),
            }
    finally:
        worker.stop()


def kill_9(worker: ServiceProcess) -> float:
    assert worker.process is not None
    os.kill(worker.process.pid, signal.SIGKILL)
    worker.process.wait()
    return time.time()


@pytest.mark.xfail(
    strict=False,
    reason="open defect (#22): after a kill -9 the worker taking over can still drop records "
    "Faust fetched while resuming and apply later ones first (their notices then lost); the "
    "uncommitted-partition seek and the stall guard: still 3 of 10 runs failed on 2026-12-08",
)
async def test_watch_survives_kill(
    stack_env: dict[str, str], pki: PkiFactory, tmp_path: Path
) -> None:
    """Two workers share three partitions; one is killed -9 mid-stream. Every household's
    notices arrive, none twice (by id, or for the same access and rule under two ids)."""
    namespace = new_namespace(stack_env, "watchkill")
    settings = {"burst_count": "3", "commit_interval_seconds": "1"}
    first = watch_process(pki, stack_env, namespace, tmp_path, **settings)
    second = watch_process(pki, stack_env, namespace, tmp_path, **settings)
    for worker in (first, second):
        worker.env["PRIVACAM_KAFKA_TOPIC_PARTITIONS"] = "3"
    try:
        first.start()
        first.wait_serving(180)
        second.start()
        second.wait_serving(180)
        households = [str(uuid.uuid4()) for _ in range(60)]
        expected: set[tuple[str, str, int]] = set()
        async with (
            NoticeReader(stack_env, namespace) as reader,
            AccessWriter(stack_env, namespace) as writer,
        ):
            killed_at = 0.0
            for step in range(4):  # a view, then three playbacks: a new viewer, a burst
                for tenant in households:
                    viewer = app(tenant, "install-" + tenant[:8])
                    purpose = (
                        types_pb2.ACCESS_PURPOSE_LIVE_VIEW
                        if step == 0
                        else types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK
                    )
                    event = access(tenant, viewer, BASE + timedelta(minutes=step), purpose)
                    await writer.write(event)
                    rule = {0: watch_pb2.WATCH_RULE_NEW_VIEWER, 3: watch_pb2.WATCH_RULE_BURST}
                    if step in rule:
                        record = event.access_recorded.record
                        expected.add((tenant, record.access_id, rule[step]))
                    await asyncio.sleep(0.01)
                if step == 1:
                    assert reader.received, "no notice before the kill"
                    killed_at = kill_9(first)
            before = len(reader.distinct())
            notices = await reader.wait_for(len(expected), seconds=180)
        counts = by_entry(notices)
        assert set(counts) == expected, "a notice was lost or is unexpected"
        assert all(count == 1 for count in counts.values()), "told twice under two ids"
        resent = len(reader.received) - len(notices)
        last = max(r.at for r in reader.received)
        takeover = metric(second.metrics_port, "privacam_privacy_watch_recovery_seconds")
        restarts = metric(second.metrics_port, "privacam_privacy_watch_fetch_restarts_total")
        print(
            f"\nwatch kill -9: {len(expected)} notices, {before} before the kill settled; "
            f"{resent} re-sent with the same id (apps keep one per id); the second worker's "
            f"last table recovery took {takeover:.3f} s; "
            f"the last notice came {last - killed_at:.1f} s after the kill; "
            f"{restarts:.0f} fetch loop restarts by the stall guard"
        )
    finally:
        for worker in (first, second):
            worker.stop()
        await delete_namespace_topics(stack_env, namespace)
