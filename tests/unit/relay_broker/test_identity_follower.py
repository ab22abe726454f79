"""Identity events the broker acts on: revocations end sessions, lockouts become notices."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from google.protobuf.duration_pb2 import Duration

from privacam.identity.v1 import events_pb2 as identity_events
from privacam.types.v1 import types_pb2
from privacam_core.timestamps import to_timestamp
from services.common.clock import FakeClock
from services.common.kafka import Delivery
from services.relay_broker.streams.identity import IdentityFollower

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
DELIVERY = Delivery("privacam.identity.v1", 0, 0, "tenant-a")


@dataclass
class Recorder:
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    async def grant_revoked(self, grant_id: str) -> int:
        self.calls.append(("grant", grant_id))
        return 1

    async def principal_revoked(self, is_camera: bool, tenant_id: str, name: str) -> int:
        self.calls.append(("principal", is_camera, tenant_id, name))
        return 1

    async def pin_locked_out(
        self, tenant_id: str, device_id: str, lockout: Duration, at: datetime
    ) -> None:
        self.calls.append(("lockout", tenant_id, device_id, lockout.seconds))


def _event(at: datetime, **fields: Any) -> identity_events.IdentityEvent:
    event = identity_events.IdentityEvent(**fields)
    event.metadata.tenant_id = "tenant-a"
    event.metadata.occurred_at.CopyFrom(to_timestamp(at))
    return event


async def test_revocations_and_lockouts() -> None:
    recorder = Recorder()
    follower = IdentityFollower(cast(Any, recorder), cast(Any, recorder), FakeClock(NOW))
    await follower.on_event(
        _event(NOW, grant_revoked=identity_events.GrantRevoked(grant_id="g-1")), DELIVERY
    )
    subject = types_pb2.Principal(
        kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id="tenant-b", id="app-2"
    )
    await follower.on_event(
        _event(NOW, certificate_revoked=identity_events.CertificateRevoked(subject=subject)),
        DELIVERY,
    )
    lockout = identity_events.PinLockedOut(device_id="cam-1", lockout=Duration(seconds=3600))
    await follower.on_event(_event(NOW, pin_locked_out=lockout), DELIVERY)
    # A lockout replayed from long ago is history, not a notice.
    await follower.on_event(_event(NOW - timedelta(days=2), pin_locked_out=lockout), DELIVERY)
    assert recorder.calls == [
        ("grant", "g-1"),
        ("principal", False, "tenant-b", "app-2"),
        ("lockout", "tenant-a", "cam-1", 3600),
    ]
