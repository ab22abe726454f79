"""The privacy watch's tests' tools (tests/integration/test_privacy_watch*.py and
benchmarks/bench_privacy_watch.py): a worker process of the watch, access and identity
events written to a namespace's topics as their producers write them, and the notices
topic read back from the beginning (all as the Kafka administrator)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from privacam.accesslog.v1 import events_pb2, log_pb2
from privacam.identity.v1 import events_pb2 as identity_pb2
from privacam.types.v1 import types_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from privacam_core.timestamps import to_timestamp
from services.common import topics
from tests.harness import Platform, ServiceProcess, kafka_options, make_service, peer_env
from tests.pki_helpers import PkiFactory

NAME = "privacy_watch"
BASE = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
"""The household's usual viewing time in these tests."""


def watch_process(
    pki: PkiFactory, stack: dict[str, str], namespace: str, log_dir: Path, **env: str
) -> ServiceProcess:
    process = make_service(NAME, pki, stack, namespace, log_dir)
    process.env.update({f"PRIVACAM_PRIVACY_WATCH_{k.upper()}": v for k, v in env.items()})
    process.env["PRIVACAM_PRIVACY_WATCH_DATA_DIR"] = str(log_dir / f"data-{process.grpc_port}")
    process.log_file = log_dir / f"{NAME}-{process.grpc_port}.log"
    return process


@contextmanager
def platform_watch(platform: Platform, log_dir: Path, **env: str) -> Iterator[ServiceProcess]:
    """A running worker reading the platform's own topics (`env` as in watch_process)."""
    worker = watch_process(platform.pki, platform.stack_env, platform.namespace, log_dir, **env)
    worker.env.update(peer_env(platform.services["relay_broker"]))
    worker.start()
    try:
        worker.wait_serving(180)
        yield worker
    finally:
        worker.stop()


# --- writing access events, reading notices (as the administrator) ------------------


def app(tenant: str, install: str) -> types_pb2.Principal:
    return types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=tenant, id=install)


def access(
    tenant: str,
    principal: types_pb2.Principal,
    at: datetime | None,
    purpose: int = types_pb2.ACCESS_PURPOSE_LIVE_VIEW,
    access_id: str | None = None,
    device_id: str = "cam-1",
) -> events_pb2.AccessEvent:
    record = log_pb2.AccessRecord(
        access_id=access_id or str(uuid.uuid4()),
        tenant_id=tenant,
        principal=principal,
        resource=log_pb2.Resource(kind=log_pb2.RESOURCE_KIND_CAMERA, device_id=device_id),
        purpose=purpose,  # type: ignore[arg-type]
        service="relay_broker",
    )
    if at is not None:
        record.occurred_at.CopyFrom(to_timestamp(at))
    return events_pb2.AccessEvent(
        metadata=types_pb2.EventMetadata(
            event_id=str(uuid.uuid4()), tenant_id=tenant, producer="relay_broker"
        ),
        access_recorded=events_pb2.AccessRecorded(record=record),
    )


class AccessWriter:
    def __init__(self, stack: dict[str, str], namespace: str) -> None:
        self.producer = AIOKafkaProducer(**kafka_options(stack), acks="all")
        self.topic = namespace + topics.ACCESS.name
        self.sent_at: dict[str, float] = {}
        """access id -> when it was acknowledged (time.time())."""

    async def __aenter__(self) -> AccessWriter:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def write(self, event: events_pb2.AccessEvent) -> None:
        tenant = event.metadata.tenant_id
        await self.producer.send_and_wait(
            self.topic, topics.ACCESS.encode(event), key=tenant.encode()
        )
        self.sent_at[event.access_recorded.record.access_id] = time.time()

    async def write_identity(self, event: identity_pb2.IdentityEvent) -> None:
        """As device_auth publishes it on the identity topic (keyed by tenant)."""
        await self.producer.send_and_wait(
            self.topic.replace(topics.ACCESS.name, topics.IDENTITY.name),
            topics.IDENTITY.encode(event),
            key=event.metadata.tenant_id.encode(),
        )


def identity(tenant: str, at: datetime, **body: object) -> identity_pb2.IdentityEvent:
    event = identity_pb2.IdentityEvent(**body)  # type: ignore[arg-type]
    event.metadata.CopyFrom(
        types_pb2.EventMetadata(
            event_id=str(uuid.uuid4()),
            tenant_id=tenant,
            producer="device_auth",
            occurred_at=to_timestamp(at),
        )
    )
    return event


@dataclass
class Received:
    notice: watch_pb2.WatchNotice
    at: float


class NoticeReader:
    """Every record of the notices topic, from the beginning, as it arrives."""

    def __init__(self, stack: dict[str, str], namespace: str) -> None:
        self.consumer = AIOKafkaConsumer(
            **kafka_options(stack), enable_auto_commit=False, fetch_max_wait_ms=20
        )
        self.topic = namespace + topics.WATCH_NOTICES.name
        self.received: list[Received] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> NoticeReader:
        await self.consumer.start()
        partitions = self.consumer.partitions_for_topic(self.topic) or set()
        deadline = time.monotonic() + 60
        while not partitions:
            assert time.monotonic() < deadline, "no notices topic"
            await asyncio.sleep(0.5)
            await self.consumer._client.force_metadata_update()
            partitions = self.consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in partitions]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for record in self.consumer:
            assert record.value is not None
            self.received.append(Received(topics.WATCH_NOTICES.decode(record.value), time.time()))

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.consumer.stop()

    async def wait_for(self, count: int, seconds: float = 60) -> list[watch_pb2.WatchNotice]:
        """Once `count` distinct notices arrived, and a second more for any extra."""
        deadline = time.monotonic() + seconds
        while len(self.distinct()) < count:
            assert time.monotonic() < deadline, f"{len(self.distinct())} of {count} notices"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)
        return self.distinct()

    def distinct(self) -> list[watch_pb2.WatchNotice]:
        seen: dict[str, watch_pb2.WatchNotice] = {}
        for received in self.received:
            seen.setdefault(received.notice.notice_id, received.notice)
        return list(seen.values())
