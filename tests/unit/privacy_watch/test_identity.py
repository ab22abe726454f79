"""The watch's identity rules on dict tables: wrong-PIN streaks, new installs, new grants."""

from __future__ import annotations

from typing import Any

from google.protobuf.duration_pb2 import Duration

from privacam.identity.v1 import events_pb2 as identity_pb2
from privacam.identity.v1 import identity_pb2 as grant_pb2
from privacam.types.v1 import types_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from services.common import topics
from services.privacy_watch.streams.identity import IdentityWatch
from tests.unit.privacy_watch.fakes import TENANT, Sink
from tests.unit.privacy_watch.fakes import identity_event as event

OTHER = "7d1e0b6a-2f93-4c41-9c41-7d1e0b6a2f93"


def app(tenant: str, install: str) -> types_pb2.Principal:
    return types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=tenant, id=install)


async def feed(watch: IdentityWatch, *events: identity_pb2.IdentityEvent, start: int = 0) -> None:
    for offset, each in enumerate(events, start):
        await watch.on_event(TENANT.encode(), topics.IDENTITY.encode(each), offset)


async def test_a_new_install_is_told_not_the_registering_one_nor_a_known_one() -> None:
    sink = Sink()
    watch = IdentityWatch({}, sink)
    enrolled = [
        event(app_install_enrolled=identity_pb2.AppInstallEnrolled(install_id=name))
        for name in ("phone", "tablet", "phone")
    ]
    await feed(watch, event(account_registered=identity_pb2.AccountRegistered()), *enrolled)
    assert [n.rule for n in sink.sent] == [watch_pb2.WATCH_RULE_NEW_APP_INSTALL]
    told = sink.sent[0]
    assert told.principal == app(TENANT, "tablet")
    assert told.source_event_id == enrolled[1].metadata.event_id
    assert not told.HasField("entry")


async def test_a_wrong_pin_streak_names_only_the_households_own_app() -> None:
    sink = Sink()
    watch = IdentityWatch({}, sink)
    own = event(
        pin_locked_out=identity_pb2.PinLockedOut(
            device_id="cam-1",
            failed_attempts=10,
            lockout=Duration(seconds=3600),
            last_attempt_by=app(TENANT, "phone"),
        )
    )
    stranger = event(
        pin_locked_out=identity_pb2.PinLockedOut(
            device_id="cam-1",
            failed_attempts=11,
            lockout=Duration(seconds=7200),
            last_attempt_by=app(OTHER, "their-phone"),
        )
    )
    await feed(watch, own, stranger)
    first, second = sink.sent
    assert first.rule == second.rule == watch_pb2.WATCH_RULE_WRONG_PIN_STREAK
    assert (first.device_id, first.count, first.window.seconds) == ("cam-1", 10, 3600)
    assert first.principal == app(TENANT, "phone")
    assert not second.HasField("principal")
    assert OTHER not in second.SerializeToString().decode(errors="replace")


async def test_a_new_grant_names_its_log_entry_and_a_replay_sends_nothing() -> None:
    sink = Sink()
    table: dict[str, Any] = {}
    watch = IdentityWatch(table, sink)
    grant = grant_pb2.Grant(
        grant_id="g-1", device_id="cam-1", owner_tenant_id=TENANT, grantee_tenant_id=OTHER
    )
    created = event(grant_created=identity_pb2.GrantCreated(grant=grant))
    created.metadata.actor.CopyFrom(app(TENANT, "phone"))
    await feed(watch, created)
    await feed(watch, created)  # replayed at the same offset after a restart
    (told,) = sink.sent
    assert told.rule == watch_pb2.WATCH_RULE_NEW_GRANT
    assert (told.grant_id, told.device_id) == ("g-1", "cam-1")
    assert told.entry.access_id == created.metadata.event_id  # device_auth's log entry
    assert told.principal == app(TENANT, "phone")
    assert OTHER not in told.SerializeToString().decode(errors="replace")


async def test_a_deleted_account_is_forgotten() -> None:
    sink = Sink()
    table: dict[str, Any] = {}
    watch = IdentityWatch(table, sink)
    await feed(
        watch,
        event(app_install_enrolled=identity_pb2.AppInstallEnrolled(install_id="phone")),
        event(account_deleted=identity_pb2.AccountDeleted(cancellation_id="c")),
        event(app_install_enrolled=identity_pb2.AppInstallEnrolled(install_id="tablet")),
    )
    assert len(sink.sent) == 1
    assert table[TENANT]["installs"] == []
