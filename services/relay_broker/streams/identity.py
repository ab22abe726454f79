"""Consumer of privacam.identity.v1: revoked grants and certificates end live views at once;
PIN lockouts become household notices; an owner's new privacy statement goes to its camera
(which verifies it against the owner keys it pinned) and becomes a household notice; a
deleted account's kept privacy-watch notices are deleted.

One consumer group for all replicas: ending a session is global (Redis and the bus),
so each event needs handling once. Handling is idempotent (a session ends once).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Protocol

from privacam.identity.v1 import events_pb2 as identity_events
from privacam.types.v1 import types_pb2
from privacam_core.privacy import StatementError, mode_of, parse
from privacam_core.timestamps import to_datetime
from services.common.clock import Clock
from services.common.kafka import Delivery
from services.relay_broker.adapters.links import BusLinks
from services.relay_broker.domain.live_views import LiveViews

NOTICE_MAX_AGE = timedelta(minutes=5)
log = logging.getLogger("privacam.relay_broker.identity")


class KeptNotices(Protocol):
    async def forget(self, tenant_id: str) -> None: ...


class IdentityFollower:
    def __init__(
        self,
        views: LiveViews,
        links: BusLinks,
        clock: Clock,
        kept_notices: KeptNotices | None = None,
    ) -> None:
        self._views = views
        self._links = links
        self._clock = clock
        self._kept_notices = kept_notices

    async def on_event(self, event: identity_events.IdentityEvent, delivery: Delivery) -> None:
        which = event.WhichOneof("event")
        ended = 0
        if which == "grant_revoked":
            ended = await self._views.grant_revoked(event.grant_revoked.grant_id)
        elif which == "certificate_revoked":
            subject = event.certificate_revoked.subject
            if subject.kind in (types_pb2.PRINCIPAL_KIND_CAMERA, types_pb2.PRINCIPAL_KIND_APP):
                ended = await self._views.principal_revoked(
                    subject.kind == types_pb2.PRINCIPAL_KIND_CAMERA, subject.tenant_id, subject.id
                )
        elif which == "pin_locked_out" and event.metadata.tenant_id:
            # The owner's apps are told while their notice streams are open; a replayed old
            # lockout is history, not news.
            at = to_datetime(event.metadata.occurred_at)
            if self._clock.now() - at < NOTICE_MAX_AGE:
                locked = event.pin_locked_out
                await self._links.pin_locked_out(
                    event.metadata.tenant_id, locked.device_id, locked.lockout, at
                )
        elif which == "privacy_mode_changed":
            await self._privacy_changed(event)
        elif which == "account_deleted" and self._kept_notices and event.metadata.tenant_id:
            await self._kept_notices.forget(event.metadata.tenant_id)
        if ended:
            log.info("live views ended by a revocation", extra={"sessions": ended})

    async def _privacy_changed(self, event: identity_events.IdentityEvent) -> None:
        changed = event.privacy_mode_changed
        # Always forwarded, however old: the camera keeps the newest it verified.
        await self._links.privacy_statement(changed.device_id, changed.statement)
        at = to_datetime(event.metadata.occurred_at)
        if self._clock.now() - at >= NOTICE_MAX_AGE:
            return
        try:
            summary = f"privacy mode: {mode_of(parse(changed.statement.statement)).describe()}"
        except StatementError:
            summary = "privacy mode changed (the statement does not parse)"
        await self._links.privacy_changed(
            list(changed.household_tenant_ids), changed.device_id, changed.statement, summary, at
        )
