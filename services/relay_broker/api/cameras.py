"""The control streams of the cameras connected to this replica.

One ticker per replica (not a timer per camera, which would cost memory per idle
camera) sends every stream its heartbeat, closes the ones that missed three, and
refreshes all their presence keys in one Redis round trip. A replica that dies stops
refreshing, so its cameras' presence expires within three heartbeats anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from google.protobuf.duration_pb2 import Duration

from privacam.relay.v1 import relay_broker_service_pb2 as pb
from services.common.clock import Clock
from services.relay_broker.adapters.bus import Bus
from services.relay_broker.adapters.events import KafkaRelayEvents
from services.relay_broker.adapters.links import BusLinks, camera_channel
from services.relay_broker.adapters.metrics import CAMERAS_ONLINE
from services.relay_broker.adapters.redis_state import RedisPresence
from services.relay_broker.domain.live_views import LiveViews

log = logging.getLogger("privacam.relay_broker.cameras")

Outgoing = pb.CameraControlResponse | BaseException | None
"""A message for the camera, an error to end its stream with, or None to close it."""


class CameraStream:
    __slots__ = (
        "connected_at",
        "deliver",
        "device_id",
        "last_echo",
        "outbox",
        "sequence",
        "stream_id",
        "tenant_id",
    )

    def __init__(self, device_id: str, tenant_id: str, now: float) -> None:
        self.device_id = device_id
        self.tenant_id = tenant_id
        self.stream_id = uuid.uuid4().hex
        self.connected_at = now
        self.outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        self.last_echo = now
        self.sequence = 0
        self.deliver: Callable[[bytes], None] = self._deliver

    def _deliver(self, data: bytes) -> None:
        self.outbox.put_nowait(pb.CameraControlResponse.FromString(data))


class CameraHub:
    def __init__(
        self,
        bus: Bus,
        presence: RedisPresence,
        views: LiveViews,
        links: BusLinks,
        events: KafkaRelayEvents,
        clock: Clock,
        heartbeat: timedelta,
        on_tick: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._bus = bus
        self._presence = presence
        self._views = views
        self._links = links
        self._events = events
        self._clock = clock
        self.heartbeat = heartbeat
        self._on_tick = on_tick
        self._streams: dict[str, CameraStream] = {}
        self._ticker: asyncio.Task[None] | None = None
        CAMERAS_ONLINE.set_function(lambda: len(self._streams))

    def welcome(self) -> pb.CameraControlResponse:
        interval = Duration()
        interval.FromTimedelta(self.heartbeat)
        return pb.CameraControlResponse(welcome=pb.CameraWelcome(heartbeat_interval=interval))

    async def connect(
        self, device_id: str, tenant_id: str, firmware: str, max_sessions: int
    ) -> CameraStream:
        stream = CameraStream(device_id, tenant_id, self._clock.monotonic())
        previous = self._streams.get(device_id)
        if previous is not None:
            previous.outbox.put_nowait(None)  # a reconnect replaces the stale stream
        self._streams[device_id] = stream
        await self._bus.subscribe(camera_channel(device_id), stream.deliver)
        await self._presence.online(device_id, stream.stream_id, self._clock.now(), max_sessions)
        self._events.camera_online(tenant_id, device_id, firmware)
        await self._links.presence_changed(tenant_id, device_id, True, self._clock.now())
        return stream

    def echoed(self, stream: CameraStream) -> None:
        stream.last_echo = self._clock.monotonic()

    async def disconnect(self, stream: CameraStream) -> None:
        if self._streams.get(stream.device_id) is stream:
            del self._streams[stream.device_id]
        await self._bus.unsubscribe(camera_channel(stream.device_id), stream.deliver)
        now = self._clock.now()
        if await self._presence.offline(stream.device_id, stream.stream_id, now):
            online_for = timedelta(seconds=self._clock.monotonic() - stream.connected_at)
            self._events.camera_offline(stream.tenant_id, stream.device_id, online_for)
            await self._links.presence_changed(stream.tenant_id, stream.device_id, False, now)
            await self._views.camera_gone(stream.device_id)

    async def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick_forever())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for stream in list(self._streams.values()):
            stream.outbox.put_nowait(None)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat.total_seconds())
            try:
                await self.tick()
            except Exception as error:  # a Redis hiccup must not stop the heartbeats
                log.warning("heartbeat tick failed", extra={"error": type(error).__name__})

    async def tick(self) -> None:
        deadline = self._clock.monotonic() - 3 * self.heartbeat.total_seconds()
        alive = []
        for stream in list(self._streams.values()):
            if stream.last_echo < deadline:
                stream.outbox.put_nowait(None)  # missed three heartbeats: offline
                continue
            stream.sequence += 1
            stream.outbox.put_nowait(
                pb.CameraControlResponse(heartbeat=pb.Heartbeat(sequence=stream.sequence))
            )
            alive.append(stream.device_id)
        await self._presence.refresh(alive)
        if self._on_tick is not None:
            await self._on_tick()

    def __len__(self) -> int:
        return len(self._streams)
