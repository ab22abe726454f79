"""Key-use events on privacam.keys.v1: which service used which tenant's key, for what.

Never key bytes. Published without waiting for the acknowledgement so key
operations stay fast; the authoritative record of a viewing access is the
access-log entry its receipt proves, which exists before the key is released.
Generated and rewrapped keys are gathered per tenant and sent as one KeyUseBatch
every `flush_seconds`: one Kafka record per key cost more than the key work.
"""

from __future__ import annotations

import asyncio
import uuid

from privacam.keys.v1 import events_pb2 as events
from privacam.keys.v1 import keys_pb2
from privacam.types.v1 import types_pb2
from privacam_core.identity import PrincipalKind
from privacam_core.timestamps import to_timestamp
from services.common import topics
from services.common.auth import current_principal
from services.common.clock import Clock
from services.common.errors import Unauthenticated
from services.common.kafka import EventProducer
from services.key_manager.domain.keyring import KeyContext
from services.key_manager.domain.service import Purpose, VersionInfo

PURPOSES = {
    Purpose.CLIP_PLAYBACK: types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
    Purpose.DATA_EXPORT: types_pb2.ACCESS_PURPOSE_DATA_EXPORT,
    Purpose.OPERATOR_SUPPORT: types_pb2.ACCESS_PURPOSE_OPERATOR_SUPPORT,
    Purpose.INCIDENT_RESPONSE: types_pb2.ACCESS_PURPOSE_INCIDENT_RESPONSE,
}
_STATES = {
    "active": keys_pb2.KEY_VERSION_STATE_ACTIVE,
    "decrypt_only": keys_pb2.KEY_VERSION_STATE_DECRYPT_ONLY,
    "destroyed": keys_pb2.KEY_VERSION_STATE_DESTROYED,
}
_KINDS = {
    PrincipalKind.CAMERA: types_pb2.PRINCIPAL_KIND_CAMERA,
    PrincipalKind.APP: types_pb2.PRINCIPAL_KIND_APP,
    PrincipalKind.SERVICE: types_pb2.PRINCIPAL_KIND_SERVICE,
    PrincipalKind.OPERATOR: types_pb2.PRINCIPAL_KIND_OPERATOR,
}


def context_pb(context: KeyContext) -> keys_pb2.KeyContext:
    return keys_pb2.KeyContext(
        tenant_id=context.tenant_id, device_id=context.device_id, clip_id=context.clip_id
    )


def version_pb(info: VersionInfo) -> keys_pb2.KeyVersion:
    message = keys_pb2.KeyVersion(
        tenant_id=info.tenant_id, version=info.version, state=_STATES[info.state]
    )
    if info.period_start is not None:
        message.period_start.CopyFrom(to_timestamp(info.period_start))
    if info.period_end is not None:
        message.period_end.CopyFrom(to_timestamp(info.period_end))
    if info.destroyed_at is not None:
        message.destroyed_at.CopyFrom(to_timestamp(info.destroyed_at))
    return message


class KafkaKeyEvents:
    """The KeyEvents port on privacam.keys.v1; a component (it flushes batches)."""

    def __init__(self, producer: EventProducer, clock: Clock, flush_seconds: float = 0.2) -> None:
        self._producer = producer
        self._clock = clock
        self._flush_seconds = flush_seconds
        self._batches: dict[str, events.KeyUseBatch] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_periodically(), name="key use batches")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        self.flush()

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            self.flush()

    def flush(self) -> None:
        batches, self._batches = self._batches, {}
        for tenant_id, batch in batches.items():
            self._emit(tenant_id, events.KeyEvent(key_uses=batch), with_actor=False)

    def _batch(self, tenant_id: str) -> events.KeyUseBatch:
        return self._batches.setdefault(tenant_id, events.KeyUseBatch())

    def _emit(self, tenant_id: str, event: events.KeyEvent, with_actor: bool = True) -> None:
        metadata = types_pb2.EventMetadata(
            event_id=str(uuid.uuid4()),
            occurred_at=to_timestamp(self._clock.now()),
            tenant_id=tenant_id,
            producer="key_manager",
        )
        try:
            caller = current_principal() if with_actor else None
        except Unauthenticated:  # platform-initiated: no actor
            caller = None
        if caller is not None:
            metadata.actor.CopyFrom(
                types_pb2.Principal(
                    kind=_KINDS[caller.kind], tenant_id=caller.tenant_id or "", id=caller.name
                )
            )
        event.metadata.CopyFrom(metadata)
        self._producer.publish_soon(topics.KEYS, tenant_id, event)

    def generated(self, context: KeyContext, version: int) -> None:
        self._batch(context.tenant_id).generated.add(
            context=context_pb(context), key_version=version
        )

    def unwrapped(
        self, context: KeyContext, version: int, purpose: Purpose, access_id: str, leaf_index: int
    ) -> None:
        event = events.DataKeyUnwrapped(
            context=context_pb(context),
            key_version=version,
            purpose=PURPOSES[purpose],
            access_id=access_id,
            log_leaf_index=leaf_index,
        )
        self._emit(context.tenant_id, events.KeyEvent(data_key_unwrapped=event))

    def rewrapped(self, context: KeyContext, from_version: int, to_version: int) -> None:
        self._batch(context.tenant_id).rewrapped.add(
            context=context_pb(context), from_key_version=from_version, to_key_version=to_version
        )

    def rotated(self, current: VersionInfo, previous: VersionInfo | None) -> None:
        event = events.KeyRotated(current=version_pb(current))
        if previous is not None:
            event.previous.CopyFrom(version_pb(previous))
        self._emit(current.tenant_id, events.KeyEvent(key_rotated=event))

    def period_destroyed(self, destroyed: VersionInfo) -> None:
        event = events.PeriodDestroyed(destroyed=version_pb(destroyed))
        self._emit(destroyed.tenant_id, events.KeyEvent(period_destroyed=event))

    def tenant_destroyed(self, tenant_id: str, count: int, cancellation_id: str) -> None:
        event = events.TenantDestroyed(versions_destroyed=count, cancellation_id=cancellation_id)
        self._emit(tenant_id, events.KeyEvent(tenant_destroyed=event))
