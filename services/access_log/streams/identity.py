"""Account deletion: when device_auth deletes an account, its access log goes too."""

from __future__ import annotations

import logging
import re
from typing import Protocol

from privacam.identity.v1.events_pb2 import IdentityEvent
from services.common.kafka import Delivery

log = logging.getLogger("privacam.access_log.identity")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class LogEraser(Protocol):
    async def delete_log(self, tenant_id: str, cancellation_id: str) -> None: ...


class AccountDeletions:
    """Handler of the identity topic (consumer group access_log): AccountDeleted becomes a
    LogDeleted marker on the access topic, in the tenant's partition, so every replica
    drops the log at the same point of the topic and a replay never brings it back."""

    def __init__(self, eraser: LogEraser) -> None:
        self._eraser = eraser

    async def __call__(self, event: IdentityEvent, delivery: Delivery) -> None:
        if event.WhichOneof("event") != "account_deleted":
            return
        tenant_id = event.metadata.tenant_id
        if not _ID.fullmatch(tenant_id):
            log.error("account deletion without a valid tenant id skipped")
            return
        await self._eraser.delete_log(tenant_id, event.account_deleted.cancellation_id)
