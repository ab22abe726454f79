"""Relay events on privacam.relay.v1 (keyed by the owner's tenant): sessions and presence.
No SDP, candidates or credentials. Published without waiting for the acknowledgement:
the authoritative record of a live view is its access-log entry, made before it starts."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from google.protobuf.duration_pb2 import Duration

from privacam.relay.v1 import events_pb2 as events
from privacam.types.v1 import types_pb2
from privacam_core.timestamps import to_timestamp
from services.common import topics
from services.common.clock import Clock
from services.common.kafka import EventProducer
from services.relay_broker import NAME
from services.relay_broker.adapters.links import END_REASONS, ROLES, viewer_pb
from services.relay_broker.domain.model import EndReason, Session


def _duration(delta: timedelta) -> Duration:
    duration = Duration()
    duration.FromTimedelta(max(delta, timedelta(0)))
    return duration


class KafkaRelayEvents:
    def __init__(self, producer: EventProducer, clock: Clock) -> None:
        self._producer = producer
        self._clock = clock

    def _envelope(
        self, tenant_id: str, at: datetime, actor: types_pb2.Principal | None
    ) -> events.RelayEvent:
        metadata = types_pb2.EventMetadata(
            event_id=str(uuid.uuid4()),
            occurred_at=to_timestamp(at),
            tenant_id=tenant_id,
            producer=NAME,
        )
        if actor is not None:
            metadata.actor.CopyFrom(actor)
        return events.RelayEvent(metadata=metadata)

    def session_started(self, session: Session) -> None:
        event = self._envelope(session.owner_tenant_id, session.started_at, viewer_pb(session))
        event.session_started.CopyFrom(
            events.SessionStarted(
                session_id=session.session_id,
                device_id=session.device_id,
                viewer=viewer_pb(session),
                viewer_role=ROLES[session.role],
            )
        )
        self._producer.publish_soon(topics.RELAY, session.owner_tenant_id, event)

    def session_ended(
        self, session: Session, reason: EndReason, at: datetime, relayed_bytes: int
    ) -> None:
        event = self._envelope(session.owner_tenant_id, at, None)
        event.session_ended.CopyFrom(
            events.SessionEnded(
                session_id=session.session_id,
                device_id=session.device_id,
                viewer=viewer_pb(session),
                reason=END_REASONS[reason],
                duration=_duration(at - session.started_at),
                relayed_bytes=relayed_bytes,
            )
        )
        self._producer.publish_soon(topics.RELAY, session.owner_tenant_id, event)

    def camera_online(self, tenant_id: str, device_id: str, firmware: str) -> None:
        event = self._envelope(tenant_id, self._clock.now(), None)
        event.camera_online.CopyFrom(
            events.CameraOnline(device_id=device_id, firmware_version=firmware)
        )
        self._producer.publish_soon(topics.RELAY, tenant_id, event)

    def camera_offline(self, tenant_id: str, device_id: str, online_for: timedelta) -> None:
        event = self._envelope(tenant_id, self._clock.now(), None)
        event.camera_offline.CopyFrom(
            events.CameraOffline(device_id=device_id, online_for=_duration(online_for))
        )
        self._producer.publish_soon(topics.RELAY, tenant_id, event)
