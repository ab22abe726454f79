"""What the watch's unit tests share: a notice sink in place of Kafka's producer, and the
access and identity events the agents read, encoded as the topics carry them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from privacam.accesslog.v1 import events_pb2 as access_pb2
from privacam.accesslog.v1 import log_pb2
from privacam.identity.v1 import events_pb2 as identity_pb2
from privacam.types.v1 import types_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from privacam_core.timestamps import to_timestamp
from services.common import topics

TENANT = "0e6f2a8c-1b2d-4c3e-8f90-0a1b2c3d4e5f"
T0 = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)


class Sink:
    """The notices sent, in order; each must be sent keyed by its own household."""

    def __init__(self) -> None:
        self.sent: list[watch_pb2.WatchNotice] = []

    async def send(self, tenant_id: str, notice: watch_pb2.WatchNotice) -> None:
        assert tenant_id == notice.tenant_id
        self.sent.append(notice)

    def digests(self) -> list[watch_pb2.WatchNotice]:
        return [n for n in self.sent if n.rule == watch_pb2.WATCH_RULE_DIGEST]


def identity_event(**body: Any) -> identity_pb2.IdentityEvent:
    """An identity event of TENANT with a new id."""
    message = identity_pb2.IdentityEvent(**body)
    message.metadata.event_id = str(uuid.uuid4())
    message.metadata.tenant_id = TENANT
    message.metadata.occurred_at.seconds = 1_800_000_000
    return message


def access_event(
    tenant: str,
    access_id: str,
    at: datetime,
    purpose: types_pb2.AccessPurpose.ValueType = types_pb2.ACCESS_PURPOSE_LIVE_VIEW,
    viewer: str = "app-1",
    device_id: str = "",
) -> bytes:
    """An access by one of the household's apps, as the access topic carries it."""
    record = log_pb2.AccessRecord(
        access_id=access_id,
        tenant_id=tenant,
        principal=types_pb2.Principal(
            kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=tenant, id=viewer
        ),
        purpose=purpose,
        occurred_at=to_timestamp(at),
        resource=log_pb2.Resource(device_id=device_id),
    )
    return topics.ACCESS.encode(
        access_pb2.AccessEvent(access_recorded=access_pb2.AccessRecorded(record=record))
    )
