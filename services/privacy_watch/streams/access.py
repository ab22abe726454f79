"""Access events in, notices out: the watch's one handler, free of Faust so it is tested
with plain dicts for tables (the Faust agent in adapters/worker.py only calls it).

Entries are numbered as the access log numbers its leaves (services/access_log: partition
order, one leaf per new access id, nothing after the household's LogDeleted), so each
notice names the entry by its index in the household's log as well as by its access id.

Across a kill -9 nothing is lost or told twice:
  - a notice is sent and acknowledged (acks=all) before the household's state records
    the event, and the state is what tells a replayed event from a new one (`offset`);
  - so an event replayed after a crash either finds its state recorded (skipped: its
    notices were acknowledged before) or not (evaluated again on the same state, giving
    the same notices with the same ids: uuid5 of access id and rule);
  - the agent acknowledges an event to Faust only once its changelog writes are
    acknowledged (adapters/worker.py, ChangelogAcks: Faust's own flush before a commit
    can give up early), so a committed event's state is in the changelog for whoever
    takes the partition over.
The one duplicate left is a notice acknowledged just before the crash whose state was not
yet in the changelog: it is sent again with the same notice id, and readers keep one per id.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError

from privacam.accesslog.v1 import log_pb2
from privacam.types.v1 import types_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from privacam_core.identity import ID_PATTERN
from privacam_core.timestamps import to_datetime, to_timestamp
from services.common import topics
from services.privacy_watch.adapters import metrics
from services.privacy_watch.domain.digest import DigestState
from services.privacy_watch.domain.rules import (
    Account,
    Entry,
    Household,
    Kind,
    Notice,
    Principal,
    Purpose,
    Rule,
    WatchPolicy,
)

_KINDS = {
    types_pb2.PRINCIPAL_KIND_CAMERA: Kind.CAMERA,
    types_pb2.PRINCIPAL_KIND_APP: Kind.APP,
    types_pb2.PRINCIPAL_KIND_SERVICE: Kind.SERVICE,
    types_pb2.PRINCIPAL_KIND_OPERATOR: Kind.OPERATOR,
}
_PURPOSES = {
    types_pb2.ACCESS_PURPOSE_LIVE_VIEW: Purpose.LIVE_VIEW,
    types_pb2.ACCESS_PURPOSE_CLIP_LISTING: Purpose.CLIP_LISTING,
    types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK: Purpose.CLIP_PLAYBACK,
    types_pb2.ACCESS_PURPOSE_DATA_EXPORT: Purpose.DATA_EXPORT,
    types_pb2.ACCESS_PURPOSE_TALK_BACK: Purpose.TALK_BACK,
    types_pb2.ACCESS_PURPOSE_OPERATOR_SUPPORT: Purpose.OPERATOR_SUPPORT,
}
_RULES = {
    Rule.NEW_VIEWER: watch_pb2.WATCH_RULE_NEW_VIEWER,
    Rule.OPERATOR_ACCESS: watch_pb2.WATCH_RULE_OPERATOR_ACCESS,
    Rule.BURST: watch_pb2.WATCH_RULE_BURST,
    Rule.OUTSIDE_USUAL_HOURS: watch_pb2.WATCH_RULE_OUTSIDE_USUAL_HOURS,
}


class NoticeSink(Protocol):
    async def send(self, tenant_id: str, notice: watch_pb2.WatchNotice) -> None:
        """Return once the notice is acknowledged by the brokers."""
        ...


def notice_pb(notice: Notice, record: log_pb2.AccessRecord) -> watch_pb2.WatchNotice:
    entry = notice.entry
    message = watch_pb2.WatchNotice(
        notice_id=notice.notice_id,
        tenant_id=entry.tenant_id,
        rule=_RULES[notice.rule],
        occurred_at=to_timestamp(entry.occurred_at),
        device_id=entry.device_id,
        entry=watch_pb2.LogEntryRef(index=entry.index, access_id=entry.access_id),
        principal=record.principal,
        purpose=record.purpose,
        count=notice.count,
        summary=notice.summary,
    )
    if notice.window is not None:
        message.window.CopyFrom(Duration(seconds=int(notice.window.total_seconds())))
    return message


class AccessWatch:
    """Applies access events to the households' tables and sends their notices."""

    def __init__(
        self,
        households: MutableMapping[str, Any],
        entries: MutableMapping[str, Any],
        sink: NoticeSink,
        policy: WatchPolicy,
        digests: MutableMapping[str, Any] | None = None,
        digest_period: timedelta = timedelta(days=7),
        digest_grace: timedelta = timedelta(hours=1),
        accounts: Mapping[str, Any] | None = None,
    ) -> None:
        self._households = households
        """tenant id -> Household.to_json(): the changelog-backed state."""
        self._entries = entries
        """"<tenant>/<access id>" -> log index: the access ids already in each log."""
        self._sink = sink
        self._policy = policy
        self._digests = digests
        """tenant id -> DigestState.to_json(): the household's digest periods."""
        self._digest_period = digest_period
        self._digest_grace = digest_grace
        self._accounts = accounts
        """tenant id -> Account.to_json(), read only: the identity agent writes it, and
        the cameras' tuning in it (from CameraSettingsChanged) decides what is told."""

    async def on_event(
        self,
        key: bytes | None,
        value: bytes,
        offset: int,
        appended_at: datetime | None = None,
    ) -> int:
        """Apply the access event at `offset` of its partition (appended to the topic at
        `appended_at`, the record's time); return the notices sent."""
        try:
            event = topics.ACCESS.decode(value)
        except DecodeError:
            metrics.EVENTS.labels("invalid").inc()
            return 0
        tenant = (key or b"").decode(errors="replace")
        kind = event.WhichOneof("event")
        if kind == "log_deleted":
            if ID_PATTERN.fullmatch(tenant) and event.metadata.tenant_id == tenant:
                household = self._household(tenant)
                if household.offset < offset:
                    household.delete()
                    if self._digests is not None and tenant in self._digests:
                        del self._digests[tenant]
                    household.offset = offset
                    self._households[tenant] = household.to_json()
                    metrics.EVENTS.labels("log_deleted").inc()
            return 0
        if kind != "access_recorded":
            metrics.EVENTS.labels("not_an_entry").inc()
            return 0
        record = event.access_recorded.record
        if (
            not ID_PATTERN.fullmatch(record.tenant_id)
            or not record.access_id
            or not record.HasField("occurred_at")
            or record.tenant_id != tenant
        ):
            metrics.EVENTS.labels("invalid").inc()  # the log does not append it either
            return 0
        household = self._household(tenant)
        if household.offset >= offset:
            metrics.EVENTS.labels("replayed").inc()
            return 0
        if household.deleted:
            metrics.EVENTS.labels("deleted_log").inc()
            return 0
        entry_key = f"{tenant}/{record.access_id}"
        known = self._entries.get(entry_key)
        if known is not None and int(known) < household.size:
            # Already a leaf of the log: the log appends no second one, nor do we.
            household.offset = offset
            self._households[tenant] = household.to_json()
            metrics.EVENTS.labels("duplicate").inc()
            return 0
        entry = Entry(
            tenant_id=tenant,
            index=household.size,
            access_id=record.access_id,
            occurred_at=to_datetime(record.occurred_at),
            principal=Principal(
                _KINDS.get(record.principal.kind, Kind.OTHER),
                record.principal.tenant_id,
                record.principal.id,
            ),
            purpose=_PURPOSES.get(record.purpose, Purpose.OTHER),
            device_id=record.resource.device_id,
        )
        account = (
            Account.from_json(self._accounts.get(tenant)) if self._accounts is not None else None
        )
        notices = household.observe(entry, self._policy, account.cameras if account else None)
        for notice in notices:
            await self._sink.send(tenant, notice_pb(notice, record))
            metrics.NOTICES.labels(notice.rule.value).inc()
        self._entries[entry_key] = entry.index
        if self._digests is not None:
            digest = DigestState.from_json(self._digests.get(tenant))
            digest.observe(entry, self._digest_period, appended_at, self._digest_grace)
            self._digests[tenant] = digest.to_json()
        household.size += 1
        household.offset = offset
        self._households[tenant] = household.to_json()
        metrics.EVENTS.labels("applied").inc()
        # The fleet's count, once the state holds the event (a replay of it counts nothing).
        for notice in notices:
            if notice.rule is Rule.BURST:
                metrics.FLEET_BURSTS.labels(entry.principal.kind.value).inc()
        return len(notices)

    def _household(self, tenant: str) -> Household:
        return Household.from_json(self._households.get(tenant))
