"""Shred records on a compacted topic (via ReplicatedMap): durable, replayed at start."""

from __future__ import annotations

from privacam.retention.v1 import retention_pb2
from privacam.types.v1 import types_pb2
from privacam_core.timestamps import to_datetime, to_timestamp
from services.common.replicated_map import ReplicatedMap
from services.retention.domain.model import ShredReason, ShredRecord

_REASONS = {
    ShredReason.RETENTION_EXPIRED: retention_pb2.SHRED_REASON_RETENTION_EXPIRED,
    ShredReason.ACCOUNT_CANCELLED: retention_pb2.SHRED_REASON_ACCOUNT_CANCELLED,
}
_REASONS_BACK = {value: key for key, value in _REASONS.items()}


def _key(tenant_id: str, version: int) -> str:
    return f"shred/{tenant_id}/{version:010d}"


def record_pb(record: ShredRecord) -> retention_pb2.ShredRecord:
    period = types_pb2.TimeRange()
    if record.period_start is not None:
        period.start.CopyFrom(to_timestamp(record.period_start))
    if record.period_end is not None:
        period.end.CopyFrom(to_timestamp(record.period_end))
    return retention_pb2.ShredRecord(
        tenant_id=record.tenant_id,
        key_version=record.key_version,
        period=period,
        destroyed_at=to_timestamp(record.destroyed_at),
        clips_covered=record.clips_covered,
        reason=_REASONS[record.reason],
    )


def record_from(message: retention_pb2.ShredRecord) -> ShredRecord:
    return ShredRecord(
        tenant_id=message.tenant_id,
        key_version=message.key_version,
        period_start=(
            to_datetime(message.period.start) if message.period.HasField("start") else None
        ),
        period_end=to_datetime(message.period.end) if message.period.HasField("end") else None,
        destroyed_at=to_datetime(message.destroyed_at),
        clips_covered=message.clips_covered,
        reason=_REASONS_BACK.get(message.reason, ShredReason.RETENTION_EXPIRED),
    )


class KafkaShredLog:
    def __init__(self, state: ReplicatedMap) -> None:
        self._state = state

    async def record(self, record: ShredRecord) -> bool:
        return await self._state.create(
            _key(record.tenant_id, record.key_version),
            record_pb(record).SerializeToString(deterministic=True),
            group=record.tenant_id,
        )

    def of_tenant(self, tenant_id: str) -> list[ShredRecord]:
        return [
            record_from(retention_pb2.ShredRecord.FromString(value))
            for _, value in self._state.items(f"shred/{tenant_id}/")
        ]

    async def forget_tenant(self, tenant_id: str) -> int:
        keys = [key for key, _ in self._state.items(f"shred/{tenant_id}/")]
        for key in keys:
            await self._state.delete(key, group=tenant_id)
        return len(keys)
