"""Clip events on privacam.clips.v1 (keyed by tenant): no clip content, no key bytes."""

from __future__ import annotations

import uuid

from google.protobuf.duration_pb2 import Duration

from privacam.clips.v1 import clips_pb2
from privacam.clips.v1 import events_pb2 as events
from privacam.types.v1 import types_pb2
from privacam_core.identity import PrincipalKind
from privacam_core.timestamps import to_datetime, to_timestamp
from services.clip_ingest import NAME
from services.clip_ingest.domain.model import ClipRecord
from services.common import topics
from services.common.auth import current_principal
from services.common.clock import Clock
from services.common.errors import Unauthenticated
from services.common.kafka import EventProducer

_KINDS = {
    PrincipalKind.CAMERA: types_pb2.PRINCIPAL_KIND_CAMERA,
    PrincipalKind.APP: types_pb2.PRINCIPAL_KIND_APP,
    PrincipalKind.SERVICE: types_pb2.PRINCIPAL_KIND_SERVICE,
    PrincipalKind.OPERATOR: types_pb2.PRINCIPAL_KIND_OPERATOR,
}
_REASONS = {"OWNER_REQUEST": clips_pb2.CLIP_DELETION_REASON_OWNER_REQUEST}


def _actor() -> types_pb2.Principal | None:
    try:
        caller = current_principal()
    except Unauthenticated:  # a consumer, not a call: no actor
        return None
    return types_pb2.Principal(
        kind=_KINDS[caller.kind], tenant_id=caller.tenant_id or "", id=caller.name
    )


def _duration(record: ClipRecord) -> Duration:
    duration = Duration()
    duration.FromTimedelta(record.duration)
    return duration


def ingested_pb(record: ClipRecord) -> events.ClipIngested:
    message = events.ClipIngested(
        tenant_id=record.tenant_id,
        device_id=record.device_id,
        clip_id=record.clip_id,
        captured_at=to_timestamp(record.captured_at),
        ingested_at=to_timestamp(record.ingested_at),
        size_bytes=record.size_bytes,
        duration=_duration(record),
        key_version=record.key_version,
        object_name=record.object_name,
        delete_after=to_timestamp(record.delete_after),
    )
    if record.key_period_start is not None:
        message.key_period_start.CopyFrom(to_timestamp(record.key_period_start))
    return message


def record_from_ingested(message: events.ClipIngested) -> ClipRecord:
    return ClipRecord(
        tenant_id=message.tenant_id,
        device_id=message.device_id,
        clip_id=message.clip_id,
        captured_at=to_datetime(message.captured_at),
        ingested_at=to_datetime(message.ingested_at),
        duration=message.duration.ToTimedelta(),
        size_bytes=message.size_bytes,
        content_type="video/mp4",
        delete_after=to_datetime(message.delete_after),
        key_version=message.key_version,
        key_period_start=(
            to_datetime(message.key_period_start) if message.HasField("key_period_start") else None
        ),
        object_name=message.object_name,
    )


def clip_pb(record: ClipRecord) -> clips_pb2.Clip:
    return clips_pb2.Clip(
        clip_id=record.clip_id,
        device_id=record.device_id,
        captured_at=to_timestamp(record.captured_at),
        ingested_at=to_timestamp(record.ingested_at),
        duration=_duration(record),
        size_bytes=record.size_bytes,
        content_type=record.content_type,
        delete_after=to_timestamp(record.delete_after),
    )


class KafkaClipEvents:
    """The ClipEvents port."""

    def __init__(self, producer: EventProducer, clock: Clock) -> None:
        self._producer = producer
        self._clock = clock

    def _envelope(self, tenant_id: str) -> events.ClipEvent:
        metadata = types_pb2.EventMetadata(
            event_id=str(uuid.uuid4()),
            occurred_at=to_timestamp(self._clock.now()),
            tenant_id=tenant_id,
            producer=NAME,
        )
        actor = _actor()
        if actor is not None:
            metadata.actor.CopyFrom(actor)
        return events.ClipEvent(metadata=metadata)

    async def ingested(self, record: ClipRecord) -> None:
        event = self._envelope(record.tenant_id)
        event.clip_ingested.CopyFrom(ingested_pb(record))
        await self._producer.publish(topics.CLIPS, record.tenant_id, event)

    async def deleted(self, record: ClipRecord, reason: str) -> None:
        event = self._envelope(record.tenant_id)
        event.clip_deleted.CopyFrom(
            events.ClipDeleted(
                device_id=record.device_id,
                clip_id=record.clip_id,
                reason=_REASONS[reason],
                key_version=record.key_version,
            )
        )
        await self._producer.publish(topics.CLIPS, record.tenant_id, event)

    def accessed(self, tenant_id: str, device_id: str, clip_id: str, access_id: str) -> None:
        event = self._envelope(tenant_id)
        accessed = events.ClipAccessed(
            device_id=device_id,
            clip_id=clip_id,
            purpose=(
                types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK
                if clip_id
                else types_pb2.ACCESS_PURPOSE_CLIP_LISTING
            ),
            access_id=access_id,
        )
        if event.metadata.HasField("actor"):
            accessed.principal.CopyFrom(event.metadata.actor)
        event.clip_accessed.CopyFrom(accessed)
        self._producer.publish_soon(topics.CLIPS, tenant_id, event)
