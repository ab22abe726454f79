"""Events retention publishes: ClipDeleted on the clips topic, the rest on its own topic."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from privacam.clips.v1 import clips_pb2
from privacam.clips.v1 import events_pb2 as clip_events
from privacam.retention.v1 import events_pb2 as pb
from privacam.retention.v1 import retention_pb2
from privacam.types.v1 import types_pb2
from privacam_core.timestamps import to_timestamp
from services.common import topics
from services.common.kafka import EventProducer
from services.retention import NAME
from services.retention.domain.model import (
    CancellationRecord,
    DeletionReason,
    ScheduledClip,
    ShredRecord,
)

# Event ids of deletions are derived from what was deleted, so a batch repeated whole after
# a crash publishes the very same event and consumers drop it by id (a batch cut
# differently is a new event; applying it again changes nothing).
_IDS = uuid.UUID("5f0c2d4e-7a51-4b8e-9a57-3c1f0e9b7d21")

_CLIP_REASONS = {
    DeletionReason.RETENTION_EXPIRED: clips_pb2.CLIP_DELETION_REASON_RETENTION_EXPIRED,
    DeletionReason.OWNER_REQUEST: clips_pb2.CLIP_DELETION_REASON_OWNER_REQUEST,
    DeletionReason.CONSENT_WITHDRAWN: clips_pb2.CLIP_DELETION_REASON_CONSENT_WITHDRAWN,
    DeletionReason.ACCOUNT_CANCELLED: clips_pb2.CLIP_DELETION_REASON_ACCOUNT_CANCELLED,
}


def deletion_event_id(clips: Sequence[ScheduledClip]) -> str:
    return str(uuid.uuid5(_IDS, "clips-deleted/" + ",".join(clip.member for clip in clips)))


def cancellation_record_pb(record: CancellationRecord) -> retention_pb2.AccountCancellationRecord:
    return retention_pb2.AccountCancellationRecord(
        cancellation_id=record.cancellation_id,
        tenant_id=record.tenant_id,
        requested_at=to_timestamp(record.requested_at),
        completed_at=to_timestamp(record.completed_at),
        clips_deleted=record.clips_deleted,
        exports_deleted=record.exports_deleted,
        cameras_removed=record.cameras_removed,
        app_installs_removed=record.app_installs_removed,
        grants_removed=record.grants_removed,
        certificates_revoked=record.certificates_revoked,
        key_versions_destroyed=record.key_versions_destroyed,
        records_tombstoned=record.records_tombstoned,
    )


class KafkaRetentionEvents:
    def __init__(self, producer: EventProducer) -> None:
        self._producer = producer

    @staticmethod
    def _metadata(
        tenant_id: str, now: datetime, event_id: str | None = None
    ) -> types_pb2.EventMetadata:
        return types_pb2.EventMetadata(
            event_id=event_id or str(uuid.uuid4()),
            occurred_at=to_timestamp(now),
            tenant_id=tenant_id,
            producer=NAME,
        )

    async def clips_deleted(
        self, clips: Sequence[ScheduledClip], reason: DeletionReason, now: datetime
    ) -> None:
        # One ClipsDeleted per camera in the batch, not one event per clip: a sweep of
        # thousands of clips would otherwise spend more on Kafka than on MinIO.
        by_camera: dict[tuple[str, str], list[ScheduledClip]] = {}
        for clip in clips:
            by_camera.setdefault((clip.tenant_id, clip.device_id), []).append(clip)
        await self._producer.publish_many(
            topics.CLIPS,
            [
                (
                    tenant_id,
                    clip_events.ClipEvent(
                        metadata=self._metadata(tenant_id, now, deletion_event_id(gone)),
                        clips_deleted=clip_events.ClipsDeleted(
                            device_id=device_id,
                            clips=[
                                clip_events.DeletedClip(
                                    clip_id=clip.clip_id, key_version=clip.key_version
                                )
                                for clip in gone
                            ],
                            reason=_CLIP_REASONS[reason],
                        ),
                    ),
                )
                for (tenant_id, device_id), gone in by_camera.items()
            ],
        )

    async def _publish(self, tenant_id: str, event: pb.RetentionEvent) -> None:
        await self._producer.publish(topics.RETENTION, tenant_id, event)

    async def key_period_expired(self, record: ShredRecord, now: datetime) -> None:
        event_id = str(uuid.uuid5(_IDS, f"period/{record.tenant_id}/{record.key_version}"))
        await self._publish(
            record.tenant_id,
            pb.RetentionEvent(
                metadata=self._metadata(record.tenant_id, now, event_id),
                key_period_expired=pb.KeyPeriodExpired(
                    key_version=record.key_version, clips_covered=record.clips_covered
                ),
            ),
        )

    async def cancellation_requested(
        self, tenant_id: str, cancellation_id: str, now: datetime
    ) -> None:
        await self._publish(
            tenant_id,
            pb.RetentionEvent(
                metadata=self._metadata(tenant_id, now),
                account_cancellation_requested=pb.AccountCancellationRequested(
                    cancellation_id=cancellation_id
                ),
            ),
        )

    async def cancellation_completed(self, record: CancellationRecord) -> None:
        await self._publish(
            record.tenant_id,
            pb.RetentionEvent(
                metadata=self._metadata(record.tenant_id, record.completed_at),
                account_cancellation_completed=pb.AccountCancellationCompleted(
                    record=cancellation_record_pb(record)
                ),
            ),
        )

    async def consent_withdrawn(
        self, tenant_id: str, device_id: str, keep: bool, now: datetime
    ) -> None:
        await self._publish(
            tenant_id,
            pb.RetentionEvent(
                metadata=self._metadata(tenant_id, now),
                consent_withdrawn=pb.ConsentWithdrawn(
                    device_id=device_id,
                    disposition=(
                        retention_pb2.CLIP_DISPOSITION_KEEP
                        if keep
                        else retention_pb2.CLIP_DISPOSITION_DELETE
                    ),
                ),
            ),
        )

    async def publish(self, tenant_id: str, event: pb.RetentionEvent) -> None:
        await self._publish(tenant_id, event)
