"""key_manager on real Kafka and mutual TLS: keys survive restarts, shredding reaches the log."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from google.protobuf.timestamp_pb2 import Timestamp

from privacam.accesslog.v1 import log_pb2
from privacam.keys.v1 import key_manager_service_pb2 as pb
from privacam.keys.v1 import key_manager_service_pb2_grpc as pb_grpc
from privacam.keys.v1 import keys_pb2
from privacam.types.v1 import types_pb2
from privacam_core.merkle import MerkleTree
from privacam_core.receipts import sign_tree_head
from privacam_sdk import PrivacamClient
from tests.harness import Platform, access_log_key, kafka_options

CONTEXT = keys_pb2.KeyContext(tenant_id="tenant-km", device_id="cam-1", clip_id="clip-0001")


@pytest.fixture
async def keys(platform: Platform, profiles_home: Path) -> pb_grpc.KeyManagerServiceAsyncStub:
    # clip_ingest's identity: key_manager answers services only.
    profile = platform.profile("as-clip-ingest", platform.pki.service("clip_ingest"), profiles_home)
    client = PrivacamClient(profile)
    stub: pb_grpc.KeyManagerServiceAsyncStub = pb_grpc.KeyManagerServiceStub(
        client.channel("key_manager")
    )
    return stub


@pytest.fixture
async def shredder(platform: Platform, profiles_home: Path) -> pb_grpc.KeyManagerServiceAsyncStub:
    # retention's identity: the only service allowed to destroy key periods.
    profile = platform.profile("as-retention", platform.pki.service("retention"), profiles_home)
    return pb_grpc.KeyManagerServiceStub(PrivacamClient(profile).channel("key_manager"))


@pytest.fixture
async def rotator(platform: Platform, profiles_home: Path) -> pb_grpc.KeyManagerServiceAsyncStub:
    # No service rotates on demand: an operator does.
    profile = platform.profile("operator", platform.pki.operator(), profiles_home)
    return pb_grpc.KeyManagerServiceStub(PrivacamClient(profile).channel("key_manager"))


async def test_generate_then_rotate(
    keys: pb_grpc.KeyManagerServiceAsyncStub, rotator: pb_grpc.KeyManagerServiceAsyncStub
) -> None:
    generated = await keys.GenerateDataKey(pb.GenerateDataKeyRequest(context=CONTEXT), timeout=10)
    assert len(generated.plaintext_key) == 32
    assert generated.wrapped_key.key_version == 1
    rotated = await rotator.Rotate(pb.RotateRequest(tenant_id="tenant-km"), timeout=10)
    assert rotated.current.version == 2
    fresh = await keys.GenerateDataKey(pb.GenerateDataKeyRequest(context=CONTEXT), timeout=10)
    assert fresh.wrapped_key.key_version == 2


def _receipt(platform: Platform, context: keys_pb2.KeyContext, access_id: str) -> log_pb2.Receipt:
    """What the access log hands a service once it has appended this access."""
    record = log_pb2.AccessRecord(
        access_id=access_id,
        tenant_id=context.tenant_id,
        principal=types_pb2.Principal(
            kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=context.tenant_id, id="phone-1"
        ),
        resource=log_pb2.Resource(
            kind=log_pb2.RESOURCE_KIND_CLIP, device_id=context.device_id, clip_id=context.clip_id
        ),
        purpose=types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
        service="clip_ingest",
        occurred_at=Timestamp(seconds=int(time.time())),
    ).SerializeToString()
    tree = MerkleTree()
    tree.append_data(b"an earlier access")
    index = tree.append_data(record)
    head = sign_tree_head(
        access_log_key(platform.pki),
        "test-log-1",
        context.tenant_id,
        tree.size,
        tree.root(),
        datetime.now(UTC),
    )
    return log_pb2.Receipt(
        record=record,
        leaf_index=index,
        tree_head=head,
        inclusion_proof=log_pb2.InclusionProof(
            leaf_index=index, tree_size=tree.size, hashes=tree.inclusion_proof(index)
        ),
    )


async def test_log_before_decrypt(
    platform: Platform, keys: pb_grpc.KeyManagerServiceAsyncStub
) -> None:
    generated = await keys.GenerateDataKey(pb.GenerateDataKeyRequest(context=CONTEXT), timeout=10)

    def unwrap(receipt: log_pb2.Receipt | None) -> Any:
        request = pb.UnwrapRequest(
            wrapped_key=generated.wrapped_key,
            context=CONTEXT,
            purpose=types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
        )
        if receipt is not None:
            request.receipt.CopyFrom(receipt)
        return keys.Unwrap(request, timeout=10)

    with pytest.raises(grpc.aio.AioRpcError) as unlogged:
        await unwrap(None)
    assert unlogged.value.code() is grpc.StatusCode.PERMISSION_DENIED
    receipt = _receipt(platform, CONTEXT, str(uuid.uuid4()))
    assert (await unwrap(receipt)).plaintext_key == generated.plaintext_key
    with pytest.raises(grpc.aio.AioRpcError) as replayed:
        await unwrap(receipt)
    assert "already used" in (replayed.value.details() or "")
    other_clip = keys_pb2.KeyContext(
        tenant_id=CONTEXT.tenant_id, device_id=CONTEXT.device_id, clip_id="clip-0002"
    )
    with pytest.raises(grpc.aio.AioRpcError) as elsewhere:
        await unwrap(_receipt(platform, other_clip, str(uuid.uuid4())))
    assert "another access" in (elsewhere.value.details() or "")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.GenerateDataKeyRequest(), "context.clip_id"),
        (
            pb.GenerateDataKeyRequest(
                context=keys_pb2.KeyContext(tenant_id="Tenant A", device_id="cam-1", clip_id="c1")
            ),
            "context.tenant_id",
        ),
        (
            pb.GenerateDataKeyRequest(
                context=keys_pb2.KeyContext(tenant_id="t", device_id="cam-1", clip_id="a/b")
            ),
            "context.clip_id",
        ),
    ],
)
async def test_bad_input_is_invalid_argument(
    keys: pb_grpc.KeyManagerServiceAsyncStub, request_: pb.GenerateDataKeyRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await keys.GenerateDataKey(request_, timeout=10)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in (raised.value.details() or "")


async def test_keys_survive_a_restart_and_destroyed_ones_stay_destroyed(
    platform: Platform,
    keys: pb_grpc.KeyManagerServiceAsyncStub,
    shredder: pb_grpc.KeyManagerServiceAsyncStub,
    rotator: pb_grpc.KeyManagerServiceAsyncStub,
) -> None:
    context = keys_pb2.KeyContext(tenant_id="tenant-restart", device_id="cam-1", clip_id="c-1")
    kept = await keys.GenerateDataKey(pb.GenerateDataKeyRequest(context=context), timeout=10)
    await rotator.Rotate(pb.RotateRequest(tenant_id="tenant-restart"), timeout=10)
    await shredder.DestroyPeriod(
        pb.DestroyPeriodRequest(tenant_id="tenant-restart", key_version=1), timeout=10
    )

    service = platform.services["key_manager"]
    assert service.stop() == 0
    service.start()
    service.wait_serving()

    listed = await keys.ListKeyVersions(
        pb.ListKeyVersionsRequest(tenant_id="tenant-restart", include_destroyed=True), timeout=10
    )
    assert [(v.version, keys_pb2.KeyVersionState.Name(v.state)) for v in listed.versions] == [
        (1, "KEY_VERSION_STATE_DESTROYED"),
        (2, "KEY_VERSION_STATE_ACTIVE"),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await keys.Unwrap(
            pb.UnwrapRequest(
                wrapped_key=kept.wrapped_key,
                context=context,
                purpose=types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
                receipt=_receipt(platform, context, str(uuid.uuid4())),
            ),
            timeout=10,
        )
    assert raised.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "crypto-shredded" in (raised.value.details() or "")


async def _sealed_records(platform: Platform, tenant: str, version: int) -> int:
    """How many sealed KEK records of this version a full read of the topic returns."""
    topic = platform.namespace + "privacam.keys.state.v1"
    consumer = AIOKafkaConsumer(**kafka_options(platform.stack_env), enable_auto_commit=False)
    await consumer.start()
    try:
        producer = AIOKafkaProducer(**kafka_options(platform.stack_env))
        await producer.start()
        count = len(await producer.partitions_for(topic))
        await producer.stop()
        partitions = [TopicPartition(topic, p) for p in range(count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        prefix = f"kek/{tenant}/{version}/".encode()
        found = 0

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += sum(
                    1 for r in records if (r.key or b"").startswith(prefix) and r.value is not None
                )
        return found
    finally:
        await consumer.stop()


async def test_a_destroyed_key_leaves_the_compacted_log_in_bounded_time(
    platform: Platform,
    keys: pb_grpc.KeyManagerServiceAsyncStub,
    shredder: pb_grpc.KeyManagerServiceAsyncStub,
) -> None:
    context = keys_pb2.KeyContext(tenant_id="tenant-shred", device_id="cam-1", clip_id="c-1")
    await keys.GenerateDataKey(pb.GenerateDataKeyRequest(context=context), timeout=10)
    assert await _sealed_records(platform, "tenant-shred", 1) == 1
    await shredder.DestroyPeriod(
        pb.DestroyPeriodRequest(tenant_id="tenant-shred", key_version=1), timeout=10
    )
    started = time.monotonic()
    # Test settings: segment.ms and max.compaction.lag.ms of 2 s, broker cleaner back-off 1 s.
    while await _sealed_records(platform, "tenant-shred", 1):
        assert time.monotonic() - started < 90, "sealed key still in the log after 90 s"
        await asyncio.sleep(1)
    print(
        f"sealed key gone from the compacted log {time.monotonic() - started:.1f} s after "
        "DestroyPeriod"
    )


async def test_key_use_reaches_kafka_without_key_bytes(
    platform: Platform, keys: pb_grpc.KeyManagerServiceAsyncStub
) -> None:
    from privacam.keys.v1 import events_pb2

    context = keys_pb2.KeyContext(tenant_id="tenant-events", device_id="cam-7", clip_id="c-7")
    generated = await keys.GenerateDataKey(pb.GenerateDataKeyRequest(context=context), timeout=10)
    consumer = AIOKafkaConsumer(
        platform.namespace + "privacam.keys.v1",
        **kafka_options(platform.stack_env),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    assert generated.plaintext_key not in (record.value or b"")
                    event = events_pb2.KeyEvent.FromString(record.value or b"")
                    if event.metadata.tenant_id == "tenant-events" and any(
                        use.context == context for use in event.key_uses.generated
                    ):
                        assert event.metadata.producer == "key_manager"
                        return
        pytest.fail("no key-use event for the generated key")
    finally:
        await consumer.stop()
