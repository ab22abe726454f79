"""Identity events in, notices out: a wrong-PIN streak, a new app install, a new grant.

The identity topic (`privacam.identity.v1`, keyed by tenant) says what the access log does
not: a camera's PIN checks were locked after a streak of wrong tries (device_auth counts
single wrong tries in Redis and publishes only the lockout, `PinLockedOut`), and an app
install enrolled. A new grant is both an identity event (`GrantCreated`) and a log entry
(device_auth logs it as a SHARING_CHANGE under the event's id as access id), and only the
identity event tells a grant's creation from its end: the notice comes from the event and
names the log entry by that access id.

As for the access topic (streams/access.py): a notice is sent and acknowledged before the
account's state records the event, the state's last applied offset makes a replayed event
a no-op, and a notice sent again after a crash carries the same id (UUID v5 of tenant,
event id and rule).

No more than the event and the household's log hold: the last wrong try's principal is
named only when it is an app of the household itself (a member of another household the
camera is shared with is not named to the owner by the watch, as relay_broker's notices
do not), and a grant's grantee is not named (the log entry names the grant only).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from privacam.identity.v1 import events_pb2 as identity_pb2
from privacam.identity.v1 import identity_pb2 as identity_types_pb2
from privacam.types.v1 import types_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from privacam_core.identity import ID_PATTERN
from services.common import topics
from services.privacy_watch.adapters import metrics
from services.privacy_watch.domain.rules import Account, CameraTuning, Rule, notice_id, tells
from services.privacy_watch.streams.access import NoticeSink

_RULES = {
    Rule.WRONG_PIN_STREAK: watch_pb2.WATCH_RULE_WRONG_PIN_STREAK,
    Rule.NEW_APP_INSTALL: watch_pb2.WATCH_RULE_NEW_APP_INSTALL,
    Rule.NEW_GRANT: watch_pb2.WATCH_RULE_NEW_GRANT,
}


def _notice(rule: Rule, event: identity_pb2.IdentityEvent) -> watch_pb2.WatchNotice:
    tenant = event.metadata.tenant_id
    event_id = event.metadata.event_id
    return watch_pb2.WatchNotice(
        notice_id=notice_id(tenant, event_id, rule),
        tenant_id=tenant,
        rule=_RULES[rule],
        occurred_at=event.metadata.occurred_at,
        source_event_id=event_id,
    )


_MUTABLE = {
    watch_pb2.WATCH_RULE_NEW_VIEWER: Rule.NEW_VIEWER,
    watch_pb2.WATCH_RULE_OPERATOR_ACCESS: Rule.OPERATOR_ACCESS,
    watch_pb2.WATCH_RULE_BURST: Rule.BURST,
    watch_pb2.WATCH_RULE_OUTSIDE_USUAL_HOURS: Rule.OUTSIDE_USUAL_HOURS,
    watch_pb2.WATCH_RULE_WRONG_PIN_STREAK: Rule.WRONG_PIN_STREAK,
    watch_pb2.WATCH_RULE_NEW_GRANT: Rule.NEW_GRANT,
}


def tuning_of(settings: identity_types_pb2.CameraWatchSettings) -> CameraTuning:
    """A camera's tuning as device_auth published it (a rule it cannot mute is ignored)."""
    return CameraTuning(
        muted=frozenset(_MUTABLE[r] for r in settings.muted_rules if r in _MUTABLE),
        burst_count=settings.burst_count,
    )


def notices_of(event: identity_pb2.IdentityEvent, account: Account) -> list[watch_pb2.WatchNotice]:
    """Apply one identity event to the account's state; the notices it gives."""
    tenant = event.metadata.tenant_id
    which = event.WhichOneof("event")
    if which == "account_deleted":
        account.delete()
        return []
    if account.deleted:
        return []
    if which == "account_registered":
        account.registered = True
        return []
    if which == "camera_settings_changed":
        changed = event.camera_settings_changed
        if changed.device_id:
            account.tune(changed.device_id, tuning_of(changed.settings.watch))
        return []
    if which == "app_install_enrolled":
        install = event.app_install_enrolled.install_id
        if not install or not account.app_installed(install):
            return []
        notice = _notice(Rule.NEW_APP_INSTALL, event)
        notice.principal.CopyFrom(
            types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=tenant, id=install)
        )
        notice.summary = "a new app was installed on the account"
        return [notice]
    if which == "pin_locked_out":
        locked = event.pin_locked_out
        if not tells(account.cameras, locked.device_id, Rule.WRONG_PIN_STREAK):
            return []
        notice = _notice(Rule.WRONG_PIN_STREAK, event)
        notice.device_id = locked.device_id
        notice.count = locked.failed_attempts
        notice.window.CopyFrom(locked.lockout)
        by = locked.last_attempt_by
        if by.kind == types_pb2.PRINCIPAL_KIND_APP and by.tenant_id == tenant:
            notice.principal.CopyFrom(by)
        minutes = locked.lockout.seconds // 60
        notice.summary = (
            f"{locked.failed_attempts} wrong PINs in a row on camera {locked.device_id}: "
            f"its PIN checks are locked for {minutes} min"
        )[:256]
        return [notice]
    if which == "grant_created":
        grant = event.grant_created.grant
        if grant.owner_tenant_id and grant.owner_tenant_id != tenant:
            return []
        if not tells(account.cameras, grant.device_id, Rule.NEW_GRANT):
            return []
        notice = _notice(Rule.NEW_GRANT, event)
        notice.device_id = grant.device_id
        notice.grant_id = grant.grant_id
        # device_auth logs the grant's creation under the event's id (adapters/events.py).
        notice.entry.access_id = event.metadata.event_id
        notice.purpose = types_pb2.ACCESS_PURPOSE_SHARING_CHANGE
        if event.metadata.HasField("actor"):
            notice.principal.CopyFrom(event.metadata.actor)
        notice.summary = f"camera {grant.device_id} was shared (grant {grant.grant_id})"[:256]
        return [notice]
    return []


_ENROLLMENTS = {
    "account_registered": "account",
    "camera_enrolled": "camera",
    "app_install_enrolled": "app_install",
}


@dataclass(frozen=True)
class FleetSignal:
    """What one identity event adds to the fleet's counts (no household, camera or id)."""

    lockouts: int = 0
    wrong_pins: int = 0
    enrollment: str = ""
    """A kind of metrics.ENROLLMENT_KINDS, or empty."""

    def count(self) -> None:
        if self.lockouts:
            metrics.FLEET_PIN_LOCKOUTS.inc(self.lockouts)
            metrics.FLEET_WRONG_PINS.inc(self.wrong_pins)
        if self.enrollment:
            metrics.FLEET_ENROLLMENTS.labels(self.enrollment).inc()


def fleet_signal(event: identity_pb2.IdentityEvent, account: Account) -> FleetSignal:
    """The event's part of the fleet's counts, muted or not; a lockout's streak is recorded
    in the account so the next lockout of the streak adds only its new wrong tries."""
    which = event.WhichOneof("event")
    if which == "pin_locked_out":
        locked = event.pin_locked_out
        return FleetSignal(
            lockouts=1, wrong_pins=account.wrong_pins(locked.device_id, locked.failed_attempts)
        )
    if which == "pin_changed":
        account.pin_changed(event.pin_changed.device_id)
    return FleetSignal(enrollment=_ENROLLMENTS.get(which or "", ""))


class IdentityWatch:
    """Applies identity events to the accounts' table and sends their notices."""

    def __init__(self, accounts: MutableMapping[str, Any], sink: NoticeSink) -> None:
        self._accounts = accounts
        """tenant id -> Account.to_json(): the changelog-backed state."""
        self._sink = sink

    async def on_event(self, key: bytes | None, value: bytes, offset: int) -> int:
        """Apply the identity event at `offset` of its partition; return the notices sent."""
        try:
            event = topics.IDENTITY.decode(value)
        except DecodeError:
            metrics.IDENTITY_EVENTS.labels("invalid").inc()
            return 0
        tenant = (key or b"").decode(errors="replace")
        if (
            not ID_PATTERN.fullmatch(tenant)
            or event.metadata.tenant_id != tenant
            or not event.metadata.event_id
        ):
            metrics.IDENTITY_EVENTS.labels("invalid").inc()
            return 0
        account = Account.from_json(self._accounts.get(tenant))
        if account.offset >= offset:
            metrics.IDENTITY_EVENTS.labels("replayed").inc()
            return 0
        fleet = fleet_signal(event, account)
        notices = notices_of(event, account)
        for notice in notices:
            await self._sink.send(tenant, notice)
            metrics.NOTICES.labels(watch_pb2.WatchRule.Name(notice.rule)[11:].lower()).inc()
        account.offset = offset
        self._accounts[tenant] = account.to_json()
        metrics.IDENTITY_EVENTS.labels("applied").inc()
        fleet.count()  # once the state holds the event: a replay of it counts nothing
        return len(notices)
