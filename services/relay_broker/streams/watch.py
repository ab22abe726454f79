"""Consumer of privacam.watch.notices.v1: the privacy watch's notices become household
notices (`HouseholdNotice.privacy_watch`) on the apps' `StreamNotices`, kept for later.

The watch sends each notice at least once, with an id that is the same for the same
access and rule (UUID v5 of the tenant, the access id and the rule); this consumer is
at-least-once too. The store keeps and tells a notice only if its id is new
(adapters/watch_notices.py), so the apps hear of each access once per rule.

A notice is told to the household whose log holds the entry: the record's key, which
must be the notice's own tenant id. One consumer group for all replicas: the bus reaches
the stream wherever it is open.
"""

from __future__ import annotations

import logging
from typing import Protocol

from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.watch.v1 import events_pb2 as watch_pb2
from privacam_core.identity import ID_PATTERN
from services.common.kafka import Delivery
from services.relay_broker.adapters import metrics

log = logging.getLogger("privacam.relay_broker.watch")


class NoticeStore(Protocol):
    async def keep_and_tell(self, tenant_id: str, notice: pb.HouseholdNotice) -> bool: ...


def household_notice(notice: watch_pb2.WatchNotice) -> pb.HouseholdNotice:
    told = pb.HouseholdNotice(
        notice_id=notice.notice_id,
        occurred_at=notice.occurred_at,
        device_id=notice.device_id,
    )
    told.privacy_watch.CopyFrom(notice)
    return told


class WatchNoticeFollower:
    def __init__(self, store: NoticeStore) -> None:
        self._store = store

    async def on_event(self, notice: watch_pb2.WatchNotice, delivery: Delivery) -> None:
        tenant = notice.tenant_id
        if not ID_PATTERN.fullmatch(tenant) or delivery.key != tenant or not notice.notice_id:
            log.warning("watch notice ignored: not keyed by its household")
            metrics.WATCH_NOTICES.labels("ignored").inc()
            return
        new = await self._store.keep_and_tell(tenant, household_notice(notice))
        metrics.WATCH_NOTICES.labels("told" if new else "repeated").inc()
