"""The households' digests, sent on the worker's own timer: each period the digests table
says is over becomes a `WatchNotice` of rule DIGEST on the notices topic.

Sent from a timer, not from Faust's `on_window_close` (which does not receive the
window's data and loses windows across a rebalance), reading the digests table, which only
the access agent writes (domain/digest.py counts). Every worker sends the periods of the
households whose partitions it holds; a period is sent again after a restart or a
takeover with the same id (one per household and period), and relay_broker keeps one per
id, as for every notice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from privacam.types.v1 import types_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from privacam_core.identity import ID_PATTERN
from privacam_core.timestamps import to_timestamp
from services.common.clock import Clock
from services.privacy_watch.adapters import metrics
from services.privacy_watch.domain.digest import (
    DigestState,
    Period,
    digest_id,
    principal_parts,
)
from services.privacy_watch.domain.rules import Kind, Purpose
from services.privacy_watch.streams.access import NoticeSink

_KINDS = {
    Kind.CAMERA: types_pb2.PRINCIPAL_KIND_CAMERA,
    Kind.APP: types_pb2.PRINCIPAL_KIND_APP,
    Kind.SERVICE: types_pb2.PRINCIPAL_KIND_SERVICE,
    Kind.OPERATOR: types_pb2.PRINCIPAL_KIND_OPERATOR,
    Kind.OTHER: types_pb2.PRINCIPAL_KIND_UNSPECIFIED,
}
_PURPOSES = {
    Purpose.LIVE_VIEW: types_pb2.ACCESS_PURPOSE_LIVE_VIEW,
    Purpose.CLIP_LISTING: types_pb2.ACCESS_PURPOSE_CLIP_LISTING,
    Purpose.CLIP_PLAYBACK: types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
    Purpose.DATA_EXPORT: types_pb2.ACCESS_PURPOSE_DATA_EXPORT,
    Purpose.TALK_BACK: types_pb2.ACCESS_PURPOSE_TALK_BACK,
    Purpose.OPERATOR_SUPPORT: types_pb2.ACCESS_PURPOSE_OPERATOR_SUPPORT,
    Purpose.OTHER: types_pb2.ACCESS_PURPOSE_UNSPECIFIED,
}


def digest_pb(tenant_id: str, period: Period) -> watch_pb2.WatchNotice:
    """The period's digest as the notice relay_broker keeps and tells."""
    digest = watch_pb2.WatchDigest(
        period_start=to_timestamp(period.start),
        period_end=to_timestamp(period.end),
        first_index=period.first_index,
        end_index=period.end_index,
        views=period.views,
    )
    for key, count in sorted(period.by_viewer.items()):
        kind, tenant, ident = principal_parts(key)
        principal = types_pb2.Principal(kind=_KINDS[kind], tenant_id=tenant, id=ident)
        digest.by_viewer.add(principal=principal, count=count)
    for purpose, count in sorted(period.by_kind.items()):
        digest.by_kind.add(purpose=_PURPOSES[Purpose(purpose)], count=count)
    for device_id, count in sorted(period.by_camera.items()):
        digest.by_camera.add(device_id=device_id, count=count)
    viewers = len(period.by_viewer)
    return watch_pb2.WatchNotice(
        notice_id=digest_id(tenant_id, period.start),
        tenant_id=tenant_id,
        rule=watch_pb2.WATCH_RULE_DIGEST,
        occurred_at=to_timestamp(period.end),
        summary=(
            f"{period.views} views by {viewers} viewers from {period.start.date()} "
            f"to {period.end.date()} (log entries {period.first_index} to "
            f"{period.end_index - 1})"
        )[:256],
        digest=digest,
    )


class DigestSender:
    """Sends the digests that are due, once per worker run and period."""

    def __init__(
        self, digests: Mapping[str, Any], sink: NoticeSink, clock: Clock, grace: timedelta
    ) -> None:
        self._digests = digests
        """tenant id -> DigestState.to_json() (the households this worker holds)."""
        self._sink = sink
        self._clock = clock
        self._grace = grace
        self._sent: set[str] = set()

    async def send_due(self) -> int:
        """Send every due digest not yet sent by this worker; return how many were sent."""
        now = self._clock.now()
        sent = 0
        due: set[str] = set()
        for tenant, data in list(self._digests.items()):
            if not isinstance(tenant, str) or not ID_PATTERN.fullmatch(tenant):
                continue
            for period in DigestState.from_json(data).due(now, self._grace):
                if period.end_index <= period.first_index:
                    continue
                notice = digest_pb(tenant, period)
                due.add(notice.notice_id)
                if notice.notice_id in self._sent:
                    continue
                await self._sink.send(tenant, notice)
                self._sent.add(notice.notice_id)
                metrics.NOTICES.labels("digest").inc()
                sent += 1
        self._sent &= due
        return sent
