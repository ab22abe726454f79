"""A short-lived view of which cameras may upload, kept honest by device_auth's events.

Asking device_auth for every upload costs a round trip per clip. This view remembers
only "alerts are on" (never "off": a camera whose owner just turned alerts on is asked
again at once) for at most `ttl` seconds, and forgets a camera as soon as
`CameraSettingsChanged` or `CertificateRevoked` for it (or `AccountDeleted` for anyone)
arrives on privacam.identity.v1, which it follows from the end in every replica. While
the follower is not reading (starting, or Kafka trouble), nothing is remembered.
Turning alerts off therefore takes effect within the event's delivery (milliseconds),
bounded by the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict

from aiokafka import AIOKafkaConsumer, TopicPartition

from privacam.identity.v1 import events_pb2 as identity_events
from services.clip_ingest.domain.model import Cameras, CameraSettings, Viewer
from services.common import topics
from services.common.kafka import EventProducer, client_options
from services.common.settings import KafkaSettings

log = logging.getLogger("privacam.clip_ingest.settings_view")
_MAX_CAMERAS = 100_000
_LIVE_SECONDS = 5.0


class CameraSettingsView:
    """The Cameras port over another one (device_auth), with the cache described above;
    also a late component (the follower)."""

    def __init__(
        self, inner: Cameras, kafka: KafkaSettings, producer: EventProducer, ttl: float
    ) -> None:
        self._inner = inner
        self._kafka = kafka
        self._producer = producer
        self._ttl = ttl
        self._enabled: OrderedDict[str, tuple[float, CameraSettings]] = OrderedDict()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_poll = 0.0

    def _live(self) -> bool:
        return self._ttl > 0 and time.monotonic() - self._last_poll < _LIVE_SECONDS

    async def upload_settings(self, device_id: str) -> CameraSettings:
        now = time.monotonic()
        remembered = self._enabled.get(device_id)
        if remembered is not None and now - remembered[0] < self._ttl and self._live():
            return remembered[1]
        asked_at = self._last_poll
        settings = await self._inner.upload_settings(device_id)
        # Remember only if no event was read while we asked (it could have been this one).
        if settings.alerts_enabled and self._live() and self._last_poll == asked_at:
            self._enabled[device_id] = (now, settings)
            self._enabled.move_to_end(device_id)
            if len(self._enabled) > _MAX_CAMERAS:
                self._enabled.popitem(last=False)
        else:
            self._enabled.pop(device_id, None)
        return settings

    async def authorize_viewer(self, device_id: str, check_pin: bool, pin: str) -> Viewer:
        return await self._inner.authorize_viewer(device_id, check_pin, pin)

    def apply(self, event: identity_events.IdentityEvent) -> None:
        kind = event.WhichOneof("event")
        if kind == "camera_settings_changed":
            self._enabled.pop(event.camera_settings_changed.device_id, None)
        elif kind in ("certificate_revoked", "account_deleted"):
            self._enabled.clear()  # rare: forget everyone rather than work out whom

    async def start(self) -> None:
        if self._ttl <= 0:
            return
        name = self._kafka.namespace + topics.IDENTITY.name
        consumer = AIOKafkaConsumer(
            **client_options(self._kafka),
            enable_auto_commit=False,
            isolation_level="read_committed",
            request_timeout_ms=self._kafka.request_timeout_ms,
        )
        await consumer.start()
        count = await self._producer.partition_count(topics.IDENTITY)
        assigned = [TopicPartition(name, p) for p in range(count)]
        consumer.assign(assigned)
        await consumer.seek_to_end(*assigned)
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow(consumer), name="camera settings view")

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
            except Exception:
                self._enabled.clear()
                log.warning("identity topic unreadable; camera settings are asked every time")
                await asyncio.sleep(1)
                continue
            for records in batches.values():
                for record in records:
                    with contextlib.suppress(Exception):  # an undecodable record changes nothing
                        self.apply(topics.IDENTITY.decode(record.value or b""))
            self._last_poll = time.monotonic()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
