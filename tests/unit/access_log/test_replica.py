"""The replica's apply and segment writing, without Kafka or MinIO: what enters a log from
the access topic, and what a flush stores before it moves the checkpoint."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from privacam.accesslog.v1 import events_pb2, log_pb2
from privacam.types.v1 import types_pb2
from privacam_core.timestamps import to_timestamp
from services.access_log.adapters.segments import Checkpoint
from services.access_log.domain.log import LogBook
from services.access_log.streams.replica import AccessReplica
from services.common import topics
from services.common.settings import KafkaSettings


class MemorySegments:
    def __init__(self) -> None:
        self.segments: dict[tuple[str, int], list[bytes]] = {}
        self.deleted: list[str] = []
        self.checkpoints: list[Checkpoint] = []

    async def write_segment(self, tenant_id: str, first: int, records: list[bytes]) -> None:
        self.segments[(tenant_id, first)] = records

    async def delete_tenant(self, tenant_id: str) -> int:
        self.deleted.append(tenant_id)
        return 0

    async def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.checkpoints.append(checkpoint)


def replica() -> tuple[AccessReplica, LogBook, MemorySegments]:
    book, store = LogBook(), MemorySegments()
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:9", security_protocol="PLAINTEXT")
    node = AccessReplica(settings, None, book, store, 2, 60.0)  # type: ignore[arg-type]
    return node, book, store


def recorded(tenant: str, access_id: str | None = None) -> bytes:
    record = log_pb2.AccessRecord(
        access_id=access_id or str(uuid.uuid4()),
        tenant_id=tenant,
        principal=types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_SERVICE, id="retention"),
        resource=log_pb2.Resource(kind=log_pb2.RESOURCE_KIND_ACCOUNT),
        purpose=types_pb2.ACCESS_PURPOSE_DATA_EXPORT,
        service="retention",
        occurred_at=to_timestamp(datetime(2026, 11, 24, tzinfo=UTC)),
    )
    event = events_pb2.AccessEvent(access_recorded=events_pb2.AccessRecorded(record=record))
    return topics.ACCESS.encode(event)


def deleted(tenant: str) -> bytes:
    event = events_pb2.AccessEvent(
        metadata=types_pb2.EventMetadata(tenant_id=tenant),
        log_deleted=events_pb2.LogDeleted(cancellation_id=str(uuid.uuid4())),
    )
    return topics.ACCESS.encode(event)


def size(book: LogBook, tenant: str) -> int:
    log = book.get(tenant)
    return log.size if log else 0


def test_only_well_formed_records_on_their_tenants_partition_enter_the_log() -> None:
    node, book, _ = replica()
    node._apply(b"t-1", recorded("t-1", "a-1"))
    node._apply(b"t-1", recorded("t-1", "a-1"))  # a retried produce
    node._apply(b"t-2", recorded("t-1"))  # keyed by another tenant
    node._apply(b"t-1", b"\xff\xff not protobuf")
    node._apply(b"t-1", recorded("Not An Id"))
    node._apply(
        b"t-1",
        topics.ACCESS.encode(
            events_pb2.AccessEvent(incident_declared=events_pb2.IncidentDeclared())
        ),
    )
    assert (size(book, "t-1"), size(book, "t-2")) == (1, 0)


async def test_a_flush_stores_new_entries_and_deletions_then_the_checkpoint() -> None:
    node, book, store = replica()
    node._applied = {0: 7}
    for _ in range(3):
        node._apply(b"t-1", recorded("t-1"))
    node._apply(b"t-2", recorded("t-2"))
    assert node._flush_now.is_set()  # t-1 reached segment_max_entries
    await node.flush()
    assert {k: len(v) for k, v in store.segments.items()} == {("t-1", 0): 3, ("t-2", 0): 1}
    assert store.checkpoints[-1].offsets == {0: 7}
    node._apply(b"t-1", recorded("t-1"))
    node._apply(b"t-2", deleted("t-2"))
    node._apply(b"t-2", recorded("t-2"))  # after its deletion: never applied
    node._applied = {0: 10}
    await node.flush()
    assert ("t-1", 3) in store.segments
    assert store.deleted == ["t-2"]
    checkpoint = store.checkpoints[-1]
    assert (checkpoint.offsets, checkpoint.deleted) == ({0: 10}, {"t-2"})
    # How the log ended is kept, for its deletion statement after a restart.
    assert checkpoint.endings["t-2"].size == 1
    assert Checkpoint.from_json(checkpoint.to_json()) == checkpoint
    legacy = Checkpoint.from_json(b'{"offsets": {"0": 3}, "deleted": ["t-9"]}')
    assert legacy.endings["t-9"].size == 0
    assert book.get("t-2") is None
    await node.flush()  # nothing new: the same checkpoint, no segment rewritten
    assert len(store.segments) == 3
    assert store.deleted == ["t-2"]


def test_a_deletion_marker_keyed_by_another_tenant_is_ignored() -> None:
    node, book, _ = replica()
    node._apply(b"t-1", recorded("t-1"))
    node._apply(b"t-9", deleted("t-1"))
    assert size(book, "t-1") == 1
