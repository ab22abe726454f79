"""Consumer of privacam.watch.notices.v1: the privacy watch's notices become household
notices (`HouseholdNotice.privacy_watch`) on the apps' `StreamNotices`, kept for later.

The watch sends each notice at least once, with an id that is the same for the same
access and rule (UUID v5 of the tenant, the access id and the rule); this consumer is
at-least-once too. The store keeps and tells a notice only if its id is new
(adapters/watch_notices.py), so the apps hear of each access once per rule.

A notice is told to the household whose log holds the entry: the record's key, which
must be the notice's own tenant id. One consumer group for all replicas: the bus reaches
the stream wherever it is open.

A digest is kept with the access log's signed head (`WatchDigest.tree_head`), asked for
when the digest arrives, after its period closed: the watch holds no log key. The head
must cover the digest's entries; a log replica that has not read them yet is asked again
(the event is retried, UNAVAILABLE), and a deleted log's digest is dropped.
"""

from __future__ import annotations

import logging
from typing import Protocol

from privacam.accesslog.v1 import log_pb2
from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.watch.v1 import events_pb2 as watch_pb2
from privacam_core.identity import ID_PATTERN
from services.common.errors import Unavailable
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


class LogHeads(Protocol):
    async def tree_head(self, tenant_id: str) -> log_pb2.SignedTreeHead | None: ...


class WatchNoticeFollower:
    def __init__(self, store: NoticeStore, heads: LogHeads) -> None:
        self._store = store
        self._heads = heads

    async def on_event(self, notice: watch_pb2.WatchNotice, delivery: Delivery) -> None:
        tenant = notice.tenant_id
        if not ID_PATTERN.fullmatch(tenant) or delivery.key != tenant or not notice.notice_id:
            log.warning("watch notice ignored: not keyed by its household")
            metrics.WATCH_NOTICES.labels("ignored").inc()
            return
        if notice.rule == watch_pb2.WATCH_RULE_DIGEST and not notice.digest.HasField("tree_head"):
            head = await self._heads.tree_head(tenant)
            if head is None:
                log.info("digest dropped: the household's log is deleted")
                metrics.WATCH_NOTICES.labels("ignored").inc()
                return
            if head.tree_size < notice.digest.end_index:
                raise Unavailable("the access log has not read the digest's entries yet")
            notice.digest.tree_head.CopyFrom(head)
        new = await self._store.keep_and_tell(tenant, household_notice(notice))
        metrics.WATCH_NOTICES.labels("told" if new else "repeated").inc()
