"""retention against the real stack: clips vanish on time, periods are crypto-shredded, a
killed sweeper loses nothing and repeats only the same events, a lost view is rebuilt from
Kafka, an account cancellation leaves nothing behind, and an export holds exactly the user's
data.

The retention service runs on a development clock (PRIVACAM_RETENTION_DEV_CLOCK_FILE,
set by tests/harness.py): `advance()` lets days pass for it; the other services keep
the wall clock. Clips are published as clip_ingest publishes them (ClipIngested on the
clips topic) with real ciphertext in MinIO, encrypted under real key-manager keys.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import secrets
import signal
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from google.protobuf.json_format import MessageToDict
from minio import Minio
from redis.asyncio import Redis

from privacam.accesslog.v1 import log_pb2
from privacam.clips.v1 import clips_pb2
from privacam.clips.v1 import events_pb2 as clip_events
from privacam.identity.v1 import device_auth_service_pb2 as identity_pb
from privacam.keys.v1 import key_manager_service_pb2 as keys_pb
from privacam.keys.v1 import key_manager_service_pb2_grpc as keys_grpc
from privacam.keys.v1 import keys_pb2
from privacam.retention.v1 import retention_pb2
from privacam.retention.v1 import retention_service_pb2 as pb
from privacam.retention.v1 import retention_service_pb2_grpc as pb_grpc
from privacam.types.v1 import types_pb2
from privacam_core import clip_format
from privacam_core.merkle import MerkleTree
from privacam_core.receipts import sign_tree_head
from privacam_core.timestamps import to_timestamp
from privacam_sdk import PrivacamClient, Profile
from privacam_sdk.access_log import AccessLogReader
from privacam_sdk.clips import download_clip, list_clips, upload_clip
from services.clip_ingest.domain.model import object_name
from services.common import topics
from services.common.clip_events import ClipDeletion, clip_deletions
from services.retention.adapters.exports import RedisExportStore
from services.retention.domain.exports import ExportJob, ExportState
from services.retention.settings import RetentionSettings
from tests.harness import (
    FORGET_WITHIN_SECONDS,
    Platform,
    access_log_key,
    clip_events_of,
    kafka_options,
    metric,
    partitions_of,
    process_memory_kib,
    read_all,
    redis_setup_url,
    retention_clock_file,
    stack_minio,
)
from tests.media import make_mp4

PASSWORD = "a long enough passphrase"
pytestmark = pytest.mark.moves_retention_clock  # see conftest.py

CLIP_BUCKET = "privacam-clips"
EXPORT_BUCKET = "privacam-exports"


# --- the development clock --------------------------------------------------------------


def offset(platform: Platform) -> float:
    path = retention_clock_file(platform.pki)
    return float(path.read_text()) if path.exists() else 0.0


def retention_now(platform: Platform) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=offset(platform))


def advance(platform: Platform, delta: timedelta) -> None:
    path = retention_clock_file(platform.pki)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(str(offset(platform) + delta.total_seconds()))
    temporary.replace(path)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


# --- clients ----------------------------------------------------------------------------


def minio(platform: Platform) -> Minio:
    return stack_minio(platform.stack_env)


def object_exists(client: Minio, name: str) -> bool:
    return any(True for _ in client.list_objects(CLIP_BUCKET, prefix=name))


@pytest.fixture
async def redis(platform: Platform) -> AsyncIterator[Redis]:
    # The setup user: a test below searches all of Redis for what names a tenant.
    client = Redis.from_url(redis_setup_url())
    yield client
    await client.aclose()


@pytest.fixture
async def keys(platform: Platform, profiles_home: Path) -> keys_grpc.KeyManagerServiceAsyncStub:
    # As clip_ingest does: key_manager answers services only.
    profile = platform.profile("as-clip-ingest", platform.pki.service("clip_ingest"), profiles_home)
    client = PrivacamClient(profile)
    stub: keys_grpc.KeyManagerServiceAsyncStub = keys_grpc.KeyManagerServiceStub(
        client.channel("key_manager")
    )
    return stub


@pytest.fixture
async def rotator(platform: Platform, profiles_home: Path) -> keys_grpc.KeyManagerServiceAsyncStub:
    # No service rotates on demand: an operator does.
    profile = platform.profile("operator", platform.pki.operator(), profiles_home)
    return keys_grpc.KeyManagerServiceStub(PrivacamClient(profile).channel("key_manager"))


@pytest.fixture
async def producer(platform: Platform) -> AsyncIterator[AIOKafkaProducer]:
    # Hand-built clip events come from clip_ingest's own Kafka user, the clips topic's owner.
    kafka = AIOKafkaProducer(
        **kafka_options(platform.stack_env, "clip_ingest"),
        acks="all",
        linger_ms=5,
    )
    await kafka.start()
    yield kafka
    await kafka.stop()


@dataclass
class Household:
    owner: Profile
    tenant: str
    device: str
    camera: Profile


async def new_household(platform: Platform, home: Path) -> Household:
    enrollment = platform.enrollment(home)
    suffix = secrets.token_hex(4)
    owner, tenant = await enrollment.register_account(
        f"ret-owner-{suffix}", f"ret-owner-{suffix}", PASSWORD
    )
    async with PrivacamClient(owner) as app:
        token = await app.device_auth().CreateClaimToken(identity_pb.CreateClaimTokenRequest())
    camera, device = await enrollment.enroll_camera(
        f"ret-cam-{suffix}", token.claim_token, f"SN-{suffix}"
    )
    return Household(owner, tenant, device, camera)


@pytest.fixture
async def household(platform: Platform, profiles_home: Path) -> Household:
    return await new_household(platform, profiles_home)


async def scheduled_settings(
    retention: pb_grpc.RetentionServiceAsyncStub, device: str
) -> pb.GetRetentionSettingsResponse:
    """The camera's retention settings, once retention has a clip of it scheduled."""

    async def scheduled() -> bool:
        settings = await retention.GetRetentionSettings(
            pb.GetRetentionSettingsRequest(device_id=device)
        )
        return settings.HasField("next_deletion_at")

    await eventually(scheduled)
    return await retention.GetRetentionSettings(pb.GetRetentionSettingsRequest(device_id=device))


def retention_stub(client: PrivacamClient) -> pb_grpc.RetentionServiceAsyncStub:
    stub: pb_grpc.RetentionServiceAsyncStub = pb_grpc.RetentionServiceStub(
        client.channel("retention")
    )
    return stub


# --- clips as clip_ingest stores and announces them ---------------------------------------


@dataclass
class StoredClip:
    tenant: str
    device: str
    clip_id: str
    object_name: str
    key_version: int
    plaintext: bytes
    ciphertext: bytes


async def store_clip(
    platform: Platform,
    keys: keys_grpc.KeyManagerServiceAsyncStub,
    tenant: str,
    device: str,
    clip_id: str | None = None,
    size: int = 2060,
    client: Minio | None = None,
) -> StoredClip:
    """A clip of `size` random bytes under its own data key, stored as clip_ingest stores
    it (no event: tests announce it when they choose)."""
    clip_id = clip_id or f"clip-{secrets.token_hex(6)}"
    context = keys_pb2.KeyContext(tenant_id=tenant, device_id=device, clip_id=clip_id)
    generated = await keys.GenerateDataKey(keys_pb.GenerateDataKeyRequest(context=context))
    plaintext = b"\x00\x00\x00\x18ftypmp42" + secrets.token_bytes(size - 12)
    ciphertext = clip_format.encrypt_all(
        plaintext,
        generated.plaintext_key,
        generated.wrapped_key.SerializeToString(deterministic=True),
        clip_format.ClipBinding(tenant, device, clip_id),
    )
    name = f"t/{tenant}/{device}/{clip_id}"
    await asyncio.to_thread(
        (client or minio(platform)).put_object,
        CLIP_BUCKET,
        name,
        io.BytesIO(ciphertext),
        len(ciphertext),
    )
    return StoredClip(
        tenant, device, clip_id, name, generated.wrapped_key.key_version, plaintext, ciphertext
    )


def ingested(clip: StoredClip, at: datetime, retention: timedelta) -> bytes:
    return clip_events.ClipEvent(
        metadata=types_pb2.EventMetadata(
            event_id=str(uuid.uuid4()),
            occurred_at=to_timestamp(at),
            tenant_id=clip.tenant,
            producer="clip_ingest",
        ),
        clip_ingested=clip_events.ClipIngested(
            tenant_id=clip.tenant,
            device_id=clip.device,
            clip_id=clip.clip_id,
            ingested_at=to_timestamp(at),
            captured_at=to_timestamp(at),
            size_bytes=len(clip.plaintext),
            key_version=clip.key_version,
            key_period_start=to_timestamp(at),
            object_name=clip.object_name,
            delete_after=to_timestamp(at + retention),
        ),
    ).SerializeToString()


async def announce(
    platform: Platform,
    producer: AIOKafkaProducer,
    clips: list[StoredClip],
    at: datetime,
    retention: timedelta = timedelta(days=7),
) -> None:
    topic = platform.namespace + "privacam.clips.v1"
    sent = [
        await producer.send(topic, ingested(clip, at, retention), key=clip.tenant.encode())
        for clip in clips
    ]
    await asyncio.gather(*sent)


def receipt_for(
    platform: Platform,
    context: keys_pb2.KeyContext,
    purpose: int = types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
) -> log_pb2.Receipt:
    """A valid access-log receipt for this access (signed with the test run's log key)."""
    record = log_pb2.AccessRecord(
        access_id=str(uuid.uuid4()),
        tenant_id=context.tenant_id,
        principal=types_pb2.Principal(
            kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=context.tenant_id, id="phone-1"
        ),
        resource=log_pb2.Resource(
            kind=log_pb2.RESOURCE_KIND_CLIP, device_id=context.device_id, clip_id=context.clip_id
        ),
        purpose=purpose,  # type: ignore[arg-type]
        service="clip_ingest",
        occurred_at=to_timestamp(datetime.now(UTC)),
    ).SerializeToString()
    tree = MerkleTree()
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


async def version_state(
    keys: keys_grpc.KeyManagerServiceAsyncStub, tenant: str, version: int
) -> str:
    listed = await keys.ListKeyVersions(
        keys_pb.ListKeyVersionsRequest(tenant_id=tenant, include_destroyed=True)
    )
    states = {v.version: keys_pb2.KeyVersionState.Name(v.state) for v in listed.versions}
    return states.get(version, "absent")


# --- tests ------------------------------------------------------------------------------


async def test_the_clip_bucket_has_the_lifecycle_backstop(platform: Platform) -> None:
    config = minio(platform).get_bucket_lifecycle(CLIP_BUCKET)
    assert config is not None
    rules = {rule.rule_id: rule for rule in config.rules}
    backstop = rules["privacam-retention-backstop"]
    assert backstop.status == "Enabled"
    assert backstop.expiration is not None
    assert backstop.expiration.days == 31  # max 30 + 1


async def test_clips_vanish_on_time_and_their_key_period_is_shredded(
    platform: Platform,
    household: Household,
    keys: keys_grpc.KeyManagerServiceAsyncStub,
    rotator: keys_grpc.KeyManagerServiceAsyncStub,
    producer: AIOKafkaProducer,
) -> None:
    tenant, device = household.tenant, household.device
    clips = [await store_clip(platform, keys, tenant, device) for _ in range(3)]
    assert {clip.key_version for clip in clips} == {1}
    start = retention_now(platform)
    await announce(platform, producer, clips, start)
    leaked = clips[0].ciphertext  # a copy taken out of MinIO before expiry ("a backup")
    # A new period starts: version 1 wraps no new key, so it may go once its clips are gone.
    await rotator.Rotate(keys_pb.RotateRequest(tenant_id=tenant))

    async with PrivacamClient(household.owner) as app:
        retention = retention_stub(app)

        settings = await scheduled_settings(retention, device)
        assert (settings.retention_days, settings.default_retention_days) == (7, 7)
        assert (settings.min_retention_days, settings.max_retention_days) == (1, 30)
        due = settings.next_deletion_at.ToDatetime(tzinfo=UTC)
        assert abs((due - (start + timedelta(days=7))).total_seconds()) < 1

        # Six days and 23 hours later nothing is gone.
        advance(platform, timedelta(days=6, hours=23))
        await asyncio.sleep(2)  # four sweep intervals
        client = minio(platform)
        assert all(object_exists(client, clip.object_name) for clip in clips)
        assert await version_state(keys, tenant, 1) == "KEY_VERSION_STATE_DECRYPT_ONLY"

        # A week passes: the clips go, then their period's key.
        advance(platform, timedelta(hours=1, seconds=5))

        async def gone() -> bool:
            return not any(object_exists(client, clip.object_name) for clip in clips)

        await eventually(gone)

        async def shredded() -> bool:
            return await version_state(keys, tenant, 1) == "KEY_VERSION_STATE_DESTROYED"

        await eventually(shredded)

        deleted = [d for e in await clip_events_of(platform, tenant) for d in clip_deletions(e)]
        assert sorted(d.clip_id for d in deleted) == sorted(c.clip_id for c in clips)
        assert {d.reason for d in deleted} == {clips_pb2.CLIP_DELETION_REASON_RETENTION_EXPIRED}
        assert {d.key_version for d in deleted} == {1}

        records = await retention.ListShredRecords(pb.ListShredRecordsRequest())
        assert [(r.key_version, r.clips_covered, r.reason) for r in records.records] == [
            (1, 3, retention_pb2.SHRED_REASON_RETENTION_EXPIRED)
        ]
        assert records.records[0].tenant_id == tenant
        settings = await retention.GetRetentionSettings(
            pb.GetRetentionSettingsRequest(device_id=device)
        )
        assert not settings.HasField("next_deletion_at")

    # The copy taken out before expiry can no longer be opened: its key is gone everywhere.
    header = clip_format.read_header(leaked)
    context = keys_pb2.KeyContext(tenant_id=tenant, device_id=device, clip_id=clips[0].clip_id)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await keys.Unwrap(
            keys_pb.UnwrapRequest(
                wrapped_key=keys_pb2.WrappedKey.FromString(header.key_reference),
                context=context,
                purpose=types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
                receipt=receipt_for(platform, context),
            )
        )
    assert raised.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "crypto-shredded" in (raised.value.details() or "")


async def test_another_tenants_camera_is_not_found_and_bad_input_is_refused(
    platform: Platform, household: Household, profiles_home: Path
) -> None:
    stranger = await new_household(platform, profiles_home)
    async with PrivacamClient(stranger.owner) as app:
        retention = retention_stub(app)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await retention.GetRetentionSettings(
                pb.GetRetentionSettingsRequest(device_id=household.device)
            )
        assert raised.value.code() is grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await retention.WithdrawConsent(
                pb.WithdrawConsentRequest(
                    device_id=household.device, disposition=retention_pb2.CLIP_DISPOSITION_DELETE
                )
            )
        assert raised.value.code() is grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await retention.WithdrawConsent(pb.WithdrawConsentRequest(device_id=stranger.device))
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "disposition" in (raised.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await retention.CancelAccount(
                pb.CancelAccountRequest(password=PASSWORD, cancellation_id="not-a-uuid")
            )
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await retention.CancelAccount(
                pb.CancelAccountRequest(
                    password="wrong password", cancellation_id=str(uuid.uuid4())
                )
            )
        assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_withdrawing_consent_keeps_or_deletes_as_the_owner_chooses(
    platform: Platform,
    household: Household,
    keys: keys_grpc.KeyManagerServiceAsyncStub,
    producer: AIOKafkaProducer,
    redis: Redis,
) -> None:
    clips = [await store_clip(platform, keys, household.tenant, household.device) for _ in range(2)]
    await announce(platform, producer, clips, retention_now(platform))
    member = f"{household.tenant}/{household.device}/{clips[0].clip_id}"

    async def scheduled() -> bool:
        return await redis.zscore(platform.namespace + "retention:due", member) is not None

    await eventually(scheduled)
    async with PrivacamClient(household.owner) as app:
        retention = retention_stub(app)
        await app.device_auth().UpdateCameraSettings(
            identity_pb.UpdateCameraSettingsRequest(
                device_id=household.device, activity_alerts_enabled=True
            )
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await retention.WithdrawConsent(
                pb.WithdrawConsentRequest(
                    device_id=household.device, disposition=retention_pb2.CLIP_DISPOSITION_DELETE
                )
            )
        assert raised.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        await app.device_auth().UpdateCameraSettings(
            identity_pb.UpdateCameraSettingsRequest(
                device_id=household.device, activity_alerts_enabled=False
            )
        )
        kept = await retention.WithdrawConsent(
            pb.WithdrawConsentRequest(
                device_id=household.device, disposition=retention_pb2.CLIP_DISPOSITION_KEEP
            )
        )
        assert (kept.clips_kept, kept.clips_deleted) == (2, 0)
        assert all(object_exists(minio(platform), clip.object_name) for clip in clips)
        deleted = await retention.WithdrawConsent(
            pb.WithdrawConsentRequest(
                device_id=household.device, disposition=retention_pb2.CLIP_DISPOSITION_DELETE
            )
        )
        assert (deleted.clips_kept, deleted.clips_deleted) == (0, 2)
        assert not any(object_exists(minio(platform), clip.object_name) for clip in clips)
    events = await clip_events_of(platform, household.tenant)
    reasons = {d.reason for e in events for d in clip_deletions(e)}
    assert reasons == {clips_pb2.CLIP_DELETION_REASON_CONSENT_WITHDRAWN}


async def test_killing_the_sweeper_mid_sweep_loses_nothing_repeats_same_events_only(
    platform: Platform,
    keys: keys_grpc.KeyManagerServiceAsyncStub,
    producer: AIOKafkaProducer,
    redis: Redis,
) -> None:
    tenant, device, count = f"t-{uuid.uuid4()}", f"d-{secrets.token_hex(4)}", 2500
    context = keys_pb2.KeyContext(tenant_id=tenant, device_id=device, clip_id="c")
    generated = await keys.GenerateDataKey(keys_pb.GenerateDataKeyRequest(context=context))
    client = minio(platform)
    clips = [
        StoredClip(tenant, device, f"c{i:05d}", f"t/{tenant}/{device}/c{i:05d}", 1, b"", b"")
        for i in range(count)
    ]
    ciphertext = clip_format.encrypt_all(
        b"clip",
        generated.plaintext_key,
        generated.wrapped_key.SerializeToString(),
        clip_format.ClipBinding(tenant, device, "c"),
    )

    def put(clip: StoredClip) -> None:
        client.put_object(CLIP_BUCKET, clip.object_name, io.BytesIO(ciphertext), len(ciphertext))

    sem = asyncio.Semaphore(32)

    async def put_one(clip: StoredClip) -> None:
        async with sem:
            await asyncio.to_thread(put, clip)

    await asyncio.gather(*(put_one(clip) for clip in clips))
    await announce(platform, producer, clips, retention_now(platform))
    camera_key = f"{platform.namespace}retention:dev:{tenant}/{device}"

    async def waiting() -> int:
        return int(await redis.zcard(camera_key))

    async def all_scheduled() -> bool:
        return await waiting() == count

    await eventually(all_scheduled, within=60)

    service = platform.services["retention"]
    assert service.process is not None
    advance(platform, timedelta(days=7, seconds=1))
    while await waiting() >= count:  # noqa: ASYNC110 - polls another process's progress
        await asyncio.sleep(0.005)
    service.process.send_signal(signal.SIGKILL)
    service.process.wait()
    left_at_kill = await waiting()
    print(f"killed with {left_at_kill} of {count} clips not yet unscheduled")
    assert 0 < left_at_kill < count, "the kill did not land mid-sweep"

    service.start()
    service.wait_serving()

    async def swept() -> bool:
        return await waiting() == 0

    await eventually(swept, within=90)
    assert not any(True for _ in client.list_objects(CLIP_BUCKET, prefix=f"t/{tenant}/"))
    events = [e for e in await clip_events_of(platform, tenant) if clip_deletions(e)]
    # Every clip deleted, each by exactly one event: a batch in flight at the kill may be
    # published again, but only whole, under the same event id and naming the same clips,
    # so a consumer that has it already sees nothing new. A batch unscheduled before the
    # kill is never published again.
    first: dict[str, list[ClipDeletion]] = {}
    ids_of: dict[str, set[str]] = {}
    for event in events:
        event_id, named = event.metadata.event_id, clip_deletions(event)
        assert first.setdefault(event_id, named) == named, f"{event_id} repeated differently"
        for deletion in named:
            ids_of.setdefault(deletion.clip_id, set()).add(event_id)
    assert sorted(ids_of) == sorted(clip.clip_id for clip in clips)
    assert [c for c, ids in ids_of.items() if len(ids) != 1] == []
    repeats = len(events) - len(first)
    batch_size = RetentionSettings.model_fields["sweep_batch_size"].default
    in_flight = -(-left_at_kill // batch_size)  # batches still scheduled at the kill
    assert repeats <= in_flight
    print(
        f"deletion events: {len(events)} ({len(first)} distinct) for {count} clips; "
        f"{repeats} repeated, of {in_flight} batches in flight at the kill"
    )


async def test_a_lost_view_is_rebuilt_from_kafka(
    platform: Platform,
    keys: keys_grpc.KeyManagerServiceAsyncStub,
    producer: AIOKafkaProducer,
    redis: Redis,
) -> None:
    tenant, device = f"t-{uuid.uuid4()}", f"d-{secrets.token_hex(4)}"
    clips = [await store_clip(platform, keys, tenant, device) for _ in range(3)]
    now = retention_now(platform)
    await announce(platform, producer, clips[:2], now, timedelta(days=7))
    await announce(platform, producer, clips[2:], now, timedelta(days=20))
    due_key = platform.namespace + "retention:due"

    async def scheduled() -> bool:
        return all(
            [
                await redis.zscore(due_key, f"{tenant}/{device}/{clip.clip_id}") is not None
                for clip in clips
            ]
        )

    # Long enough for a consumer-group rebalance after an earlier test's kill -9 (the dead
    # member is dropped after Kafka's session timeout).
    await eventually(scheduled, within=45)
    service = platform.services["retention"]
    assert service.stop() == 0
    doomed = [key async for key in redis.scan_iter(match=platform.namespace + "retention:*")]
    await redis.delete(*doomed)
    service.start()
    service.wait_serving()
    assert await scheduled()  # replayed before it served
    advance(platform, timedelta(days=7, seconds=1))
    client = minio(platform)

    async def first_two_gone() -> bool:
        return not any(object_exists(client, clip.object_name) for clip in clips[:2])

    await eventually(first_two_gone)
    assert object_exists(client, clips[2].object_name)


async def raw_records(platform: Platform) -> list[tuple[str, bytes, bytes | None]]:
    """Every record still on the brokers in every topic of this run, superseded values and
    tombstones included: what a backup or a stolen disk holds, not the compacted view."""
    consumer = AIOKafkaConsumer(**kafka_options(platform.stack_env))
    await consumer.start()
    try:
        names = [t for t in await consumer.topics() if t.startswith(platform.namespace)]
    finally:
        await consumer.stop()
    return [
        (tp.topic.removeprefix(platform.namespace), key, value)
        for tp, key, value in await read_all(platform, await partitions_of(platform, names))
    ]


COMPACTED = frozenset(topic.name for topic in topics.ALL if topic.compacted)


def is_compacted(topic: str) -> bool:
    return topic in COMPACTED


async def test_cancelling_an_account_leaves_nothing_behind(
    platform: Platform,
    household: Household,
    keys: keys_grpc.KeyManagerServiceAsyncStub,
    producer: AIOKafkaProducer,
    redis: Redis,
) -> None:
    tenant = household.tenant
    clips = [await store_clip(platform, keys, tenant, household.device) for _ in range(2)]
    await announce(platform, producer, clips, retention_now(platform))
    member = f"{tenant}/{household.device}/{clips[0].clip_id}"

    async def scheduled() -> bool:
        return await redis.zscore(platform.namespace + "retention:due", member) is not None

    await eventually(scheduled)
    cancellation = str(uuid.uuid4())
    async with PrivacamClient(household.owner) as app:
        response = await retention_stub(app).CancelAccount(
            pb.CancelAccountRequest(password=PASSWORD, cancellation_id=cancellation), timeout=60
        )
    record = response.record
    assert (record.cancellation_id, record.tenant_id) == (cancellation, tenant)
    assert (record.clips_deleted, record.cameras_removed, record.app_installs_removed) == (2, 1, 1)
    assert record.certificates_revoked >= 2
    assert record.key_versions_destroyed >= 1
    assert record.completed_at.ToDatetime() >= record.requested_at.ToDatetime()
    assert await version_state(keys, tenant, 1) in ("KEY_VERSION_STATE_DESTROYED", "absent")

    # MinIO: no object of any bucket names the tenant.
    client = minio(platform)
    for bucket in client.list_buckets():
        names = [o.object_name or "" for o in client.list_objects(bucket.name, recursive=True)]
        assert not [n for n in names if tenant in n], bucket.name
    # Redis: no key or value names the tenant.
    needle = tenant.encode()
    async for key in redis.scan_iter(count=1000):
        assert needle not in key, key
        raw_kind = await redis.type(key)
        kind = raw_kind.decode() if isinstance(raw_kind, bytes) else raw_kind
        values: list[Any] = []
        if kind == "string":
            values = [await redis.get(key)]
        elif kind == "hash":
            values = [*(await redis.hgetall(key)).items()]
        elif kind == "set":
            values = list(await redis.smembers(key))
        elif kind == "zset":
            values = list(await redis.zrange(key, 0, -1))
        elif kind == "list":
            values = list(await redis.lrange(key, 0, -1))
        assert needle not in repr(values).encode(), key
    # Kafka, record by record: the state topics forget the household within the bound
    # their settings and markers give (services.common.compaction), tombstones included;
    # no topic ever held its login or camera serial outside them.
    suffix = household.owner.name.removeprefix("ret-owner-")
    personal = (household.owner.name.encode(), f"SN-{suffix}".encode())
    started = time.monotonic()

    async def state_leftovers() -> list[tuple[str, bytes]]:
        records = await raw_records(platform)
        assert records, "no topic of this run found"
        assert not [
            (topic, key)
            for topic, key, value in records
            if not is_compacted(topic) and any(p in key + (value or b"") for p in personal)
        ]
        return [
            (topic, key)
            for topic, key, value in records
            if is_compacted(topic) and (needle in key or needle in (value or b""))
        ]

    # Records that must outlive the account (revocations until its certificates expire,
    # the key manager's "never again" marker) name it only by a digest.
    deadline = started + FORGET_WITHIN_SECONDS + 60
    while leftovers := await state_leftovers():
        assert time.monotonic() < deadline, f"still on the brokers: {leftovers[:10]}"
        await asyncio.sleep(2)
    events = [t for t, key, value in await raw_records(platform) if needle in key + (value or b"")]
    print(
        f"state topics forgot the household in {time.monotonic() - started:.0f} s "
        f"(bound {FORGET_WITHIN_SECONDS} s + the cleaner's back-off); {len(events)} event records "
        "still name its random tenant id until their topic's retention"
    )


async def download(retention: pb_grpc.RetentionServiceAsyncStub, export_id: str) -> bytes:
    parts: list[bytes] = []
    stream = retention.DownloadExport(pb.DownloadExportRequest(export_id=export_id))
    first = True
    async for message in stream:
        if first:
            assert message.HasField("header")
            assert message.header.content_type == "application/zip"
            first = False
            continue
        assert message.chunk.offset == sum(len(p) for p in parts)
        parts.append(message.chunk.data)
    return b"".join(parts)


async def ready_export(
    retention: pb_grpc.RetentionServiceAsyncStub, within: float = 45
) -> retention_pb2.Export:
    requested = await retention.RequestExport(pb.RequestExportRequest())
    assert requested.export.state == retention_pb2.EXPORT_STATE_PENDING
    export_id = requested.export.export_id
    seen: list[tuple[int, int, int]] = []

    async def ready() -> bool:
        export = (await retention.GetExport(pb.GetExportRequest(export_id=export_id))).export
        seen.append((export.state, export.items_done, export.items_total))
        assert export.state != retention_pb2.EXPORT_STATE_FAILED, export.failure_reason
        return export.state == retention_pb2.EXPORT_STATE_READY

    await eventually(ready, within=within)
    export = (await retention.GetExport(pb.GetExportRequest(export_id=export_id))).export
    assert export.items_done == export.items_total > 0
    return export


async def test_an_export_holds_exactly_the_users_data(
    platform: Platform,
    household: Household,
    profiles_home: Path,
    keys: keys_grpc.KeyManagerServiceAsyncStub,
    producer: AIOKafkaProducer,
    redis: Redis,
) -> None:
    other = await new_household(platform, profiles_home)
    theirs = await store_clip(platform, keys, other.tenant, other.device)
    await announce(platform, producer, [theirs], retention_now(platform))
    await eventually(lambda: scheduled(platform, redis, [theirs]))
    async with PrivacamClient(household.owner) as app:
        await app.device_auth().UpdateCameraSettings(
            identity_pb.UpdateCameraSettingsRequest(device_id=household.device, label="porch")
        )
        retention = retention_stub(app)
        export = await ready_export(retention)
        # One export builds at a time (a ready one does not count), even when asked twice at
        # once: the second is refused unless the first was already built by then (a small
        # account's export can finish within the same moment).
        both = await asyncio.gather(
            retention.RequestExport(pb.RequestExportRequest()),
            retention.RequestExport(pb.RequestExportRequest()),
            return_exceptions=True,
        )
        refused = [r for r in both if isinstance(r, grpc.aio.AioRpcError)]
        accepted = [r for r in both if isinstance(r, pb.RequestExportResponse)]
        assert [r.code() for r in refused] in ([grpc.StatusCode.FAILED_PRECONDITION], [])
        assert len(accepted) + len(refused) == 2
        for extra in accepted:
            await retention.DeleteExport(pb.DeleteExportRequest(export_id=extra.export.export_id))
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await retention.GetExport(pb.GetExportRequest(export_id=extra.export.export_id))
            assert raised.value.code() is grpc.StatusCode.NOT_FOUND
        archive = await download(retention, export.export_id)
        assert len(archive) == export.size_bytes
        listed = await retention.ListExports(pb.ListExportsRequest())
        assert [e.export_id for e in listed.exports] == [export.export_id]

    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        assert opened.namelist() == ["export.json"]
        document = json.loads(opened.read("export.json"))
    assert document["tenant_id"] == household.tenant
    assert document["clips"] == []
    cameras = document["account"]["cameras"]
    assert [(c["device_id"], c["settings"]["label"]) for c in cameras] == [
        (household.device, "porch")
    ]
    assert document["account"]["login"].startswith("ret-owner-")
    # The household's own log (entries of other tenants would name them: checked below),
    # which names device_auth's read of the account for this export, asked by retention,
    # logged before the account was read.
    assert isinstance(document["access_log"], list)
    account_reads = [
        (e["principal"], e["purpose"])
        for e in document["access_log"]
        if e["service"] == "device_auth" and e["resource"].get("export_id") == export.export_id
    ]
    assert account_reads == [
        ({"kind": "PRINCIPAL_KIND_SERVICE", "id": "retention"}, "ACCESS_PURPOSE_DATA_EXPORT")
    ]
    text = json.dumps(document)
    assert other.tenant not in text
    assert other.device not in text
    assert theirs.clip_id not in text

    # Another account sees nothing of it: NOT_FOUND, like an export that does not exist.
    async with PrivacamClient(other.owner) as stranger:
        retention = retention_stub(stranger)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await retention.GetExport(pb.GetExportRequest(export_id=export.export_id))
        assert raised.value.code() is grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await retention.DeleteExport(pb.DeleteExportRequest(export_id=export.export_id))
        assert raised.value.code() is grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await download(retention, export.export_id)
        assert raised.value.code() is grpc.StatusCode.NOT_FOUND


async def scheduled(platform: Platform, redis: Redis, clips: list[StoredClip]) -> bool:
    due = platform.namespace + "retention:due"
    members = [f"{c.tenant}/{c.device}/{c.clip_id}" for c in clips]
    return all([await redis.zscore(due, member) is not None for member in members])


async def test_an_export_holds_the_users_clips_decrypted(
    platform: Platform,
    household: Household,
    keys: keys_grpc.KeyManagerServiceAsyncStub,
    producer: AIOKafkaProducer,
    redis: Redis,
) -> None:
    mine = await store_clip(platform, keys, household.tenant, household.device)
    await announce(platform, producer, [mine], retention_now(platform))
    await eventually(lambda: scheduled(platform, redis, [mine]))
    async with PrivacamClient(household.owner) as app:
        retention = retention_stub(app)
        export = await ready_export(retention)
        archive = await download(retention, export.export_id)
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        media = opened.read(f"clips/{household.device}/{mine.clip_id}.mp4")
        document = json.loads(opened.read("export.json"))
    assert media == mine.plaintext
    assert [c["clip_id"] for c in document["clips"]] == [mine.clip_id]


async def test_the_export_store_never_writes_back_a_deleted_export(redis: Redis) -> None:
    # The builder's progress and READY writes race the user's DeleteExport; the store's
    # update is atomic with its existence check, so a delete always wins.
    store = RedisExportStore(redis, prefix=f"test-{uuid.uuid4().hex[:8]}:")
    tenant = str(uuid.uuid4())
    job = ExportJob(str(uuid.uuid4()), tenant, ExportState.PENDING, datetime.now(UTC))
    assert await store.create(job)
    building = ExportJob(job.export_id, tenant, ExportState.BUILDING, job.requested_at, 1, 3)
    assert await store.update(building)
    stored = await store.get(tenant, job.export_id)
    assert stored is not None
    assert (stored.state, stored.items_done) == (ExportState.BUILDING, 1)

    async def delete_soon() -> None:
        await store.remove(tenant, job.export_id)

    # Many writers against one delete: after it, nothing of the export exists.
    writes = [store.update(building) for _ in range(50)]
    await asyncio.gather(*writes[:25], delete_soon(), *writes[25:])
    assert await store.get(tenant, job.export_id) is None
    assert await store.of_tenant(tenant) == []
    assert not await store.update(building)
    assert await store.get(tenant, job.export_id) is None


# --- a large export -------------------------------------------------------------------


async def store_many(
    platform: Platform,
    keys: keys_grpc.KeyManagerServiceAsyncStub,
    tenant: str,
    device: str,
    count: int,
    size: int,
    start: int = 0,
) -> list[StoredClip]:
    """`count` clips of `size` random bytes, each under its own data key, as clip_ingest
    stores them; 16 at a time."""
    client = minio(platform)
    sem = asyncio.Semaphore(16)

    async def one(index: int) -> StoredClip:
        async with sem:
            stored = await store_clip(
                platform, keys, tenant, device, f"clip-{index:05d}", size, client
            )
        return dataclasses.replace(stored, ciphertext=b"")  # a thousand need not stay in memory

    return list(await asyncio.gather(*(one(i) for i in range(start, start + count))))


def reset_peak_memory(pid: int) -> None:
    """Start VmHWM over from the current RSS (Linux: `5` to /proc/<pid>/clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def unfinished_uploads(platform: Platform, tenant: str, export_id: str) -> list[str]:
    """Upload ids of the export's unfinished multipart uploads (MinIO lists them by the
    object's exact name only)."""
    name = f"t/{tenant}/{export_id}.zip.pcv1"
    pending = minio(platform)._list_multipart_uploads(EXPORT_BUCKET, prefix=name)
    return [upload.upload_id or "" for upload in pending.uploads if upload.object_name == name]


async def test_large_export_bounded_memory(
    platform: Platform,
    household: Household,
    keys: keys_grpc.KeyManagerServiceAsyncStub,
    producer: AIOKafkaProducer,
    redis: Redis,
) -> None:
    """An export of 1,000 clips (33 MB) peaks at the memory of one of 10 clips (VmHWM of the
    retention process, reset before each build), and one killed (SIGKILL) half-way is
    finished by the restarted process from its last part: every clip once, no unfinished
    upload left, the export's own log section as it was written before the kill."""
    tenant, device = household.tenant, household.device
    service = platform.services["retention"]
    # A short lease, so that the restarted process takes the killed one's export over
    # after seconds rather than the default 30 s.
    service.env["PRIVACAM_RETENTION_EXPORT_LEASE_SECONDS"] = "4"
    service.stop()
    service.start()
    service.wait_serving()
    assert service.process is not None
    camera_key = f"{platform.namespace}retention:dev:{tenant}/{device}"

    async def scheduled_count() -> int:
        return int(await redis.zcard(camera_key))

    try:
        started = time.monotonic()
        clips = await store_many(platform, keys, tenant, device, 10, 32 * 1024)
        await announce(platform, producer, clips, retention_now(platform))
        await eventually(lambda: _equals(scheduled_count, 10))
        async with PrivacamClient(household.owner) as app:
            retention = retention_stub(app)
            await ready_export(retention)  # the first build after a start warms up
            reset_peak_memory(service.process.pid)
            small = await ready_export(retention)
            small_peak = process_memory_kib(service.process.pid, "VmHWM")
            clips += await store_many(platform, keys, tenant, device, 990, 32 * 1024, start=10)
            await announce(platform, producer, clips[10:], retention_now(platform))
            await eventually(lambda: _equals(scheduled_count, 1000), within=60)
            stored_seconds = time.monotonic() - started
            reset_peak_memory(service.process.pid)
            t0 = time.monotonic()
            large = await ready_export(retention, within=120)
            large_seconds = time.monotonic() - t0
            large_peak = process_memory_kib(service.process.pid, "VmHWM")
            print(
                f"stored 1000 clips of 32 KiB in {stored_seconds:.1f} s; retention's peak "
                f"RSS {small_peak:,} KiB building 10 clips ({small.size_bytes:,} bytes), "
                f"{large_peak:,} KiB building 1000 ({large.size_bytes:,} bytes, "
                f"{large_seconds:.1f} s): {large_peak / small_peak:.2f}x"
            )
            assert large.size_bytes > 32_000_000
            assert large_peak <= 1.2 * small_peak

            # Kill the builder half-way; the restarted process goes on from its last part.
            export_id = (await retention.RequestExport(pb.RequestExportRequest())).export.export_id

            async def half_done() -> bool:
                export = (
                    await retention.GetExport(pb.GetExportRequest(export_id=export_id))
                ).export
                assert export.state != retention_pb2.EXPORT_STATE_FAILED, export.failure_reason
                return export.items_done >= 3 + 500

            await eventually(half_done, within=60)
            service.process.send_signal(signal.SIGKILL)
            service.process.wait()
            killed_at = time.monotonic()
            job_key = f"{platform.namespace}retention:export:{tenant}:{export_id}"
            state, done, total = await redis.hmget(job_key, ["state", "items_done", "items_total"])
            assert state == b"building"
            assert len(unfinished_uploads(platform, tenant, export_id)) == 1
            service.start()
            service.wait_serving()
            resumed = await ready_export_of(retention, export_id, within=90)
            finished_seconds = time.monotonic() - killed_at
            attempts = {
                start: metric(
                    service.metrics_port, "privacam_retention_export_attempts_total", start=start
                )
                for start in ("fresh", "resumed", "restarted")
            }
            sent_after = metric(service.metrics_port, "privacam_retention_export_part_bytes_total")
            archive = await download(retention, export_id)
    finally:
        service.env.pop("PRIVACAM_RETENTION_EXPORT_LEASE_SECONDS", None)
    print(
        f"killed at {int(done or 0)}/{int(total or 0)} items; READY "
        f"{finished_seconds:.1f} s later (lease 4 s); attempts after the restart: {attempts}; "
        f"{sent_after:,.0f} of the archive's {resumed.size_bytes:,} bytes sent after it"
    )
    assert attempts == {"fresh": 0.0, "resumed": 1.0, "restarted": 0.0}
    # Parts sent before the last checkpoint were not sent again.
    assert 0 < sent_after < 0.75 * resumed.size_bytes
    assert unfinished_uploads(platform, tenant, export_id) == []
    assert len(archive) == resumed.size_bytes
    assert hashlib.sha256(archive).digest() == resumed.sha256
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        assert opened.testzip() is None
        names = opened.namelist()
        expected = {f"clips/{device}/{clip.clip_id}.mp4": clip.plaintext for clip in clips}
        assert len(names) == len(set(names)) == 1001  # every clip exactly once
        assert set(names) == {"export.json", *expected}
        for name, plaintext in expected.items():
            assert opened.read(name) == plaintext
        document = json.loads(opened.read("export.json"))
    assert sorted(c["file"] for c in document["clips"]) == sorted(expected)
    # export.json went out before the kill and was not written again: one account read
    # for this export in its log section, as for any export.
    account_reads = [
        e
        for e in document["access_log"]
        if e["service"] == "device_auth" and e["resource"].get("export_id") == export_id
    ]
    assert len(account_reads) == 1


async def ready_export_of(
    retention: pb_grpc.RetentionServiceAsyncStub, export_id: str, within: float
) -> retention_pb2.Export:
    async def ready() -> bool:
        export = (await retention.GetExport(pb.GetExportRequest(export_id=export_id))).export
        assert export.state != retention_pb2.EXPORT_STATE_FAILED, export.failure_reason
        return export.state == retention_pb2.EXPORT_STATE_READY

    await eventually(ready, within=within)
    return (await retention.GetExport(pb.GetExportRequest(export_id=export_id))).export


async def _equals(read: Callable[[], Awaitable[int]], expected: int) -> bool:
    return await read() == expected


# --- a clip from the real clip_ingest ---------------------------------------------------


async def test_retention_deletes_real_clip(
    platform: Platform,
    profiles_home: Path,
    keys: keys_grpc.KeyManagerServiceAsyncStub,
    rotator: keys_grpc.KeyManagerServiceAsyncStub,
    redis: Redis,
) -> None:
    """A clip uploaded by a camera through the real clip_ingest, with the retention its owner
    set (a day more than retention's clock is already ahead from earlier tests, so the clip
    is not yet due when it arrives): played once, exported (the export's clip is the MP4, and
    its access-log section is exactly the household's log as ListEntries proves it), then its
    days pass on retention's clock and the object, clip_ingest's index entry and the listing
    are gone and the key period it was wrapped in is destroyed (crypto-shredded: a copy of
    the object taken before opens no more)."""
    days = int(offset(platform) // 86_400) + 2
    household = await new_household(platform, profiles_home)
    owner, tenant, device, camera = (
        household.owner,
        household.tenant,
        household.device,
        household.camera,
    )
    async with PrivacamClient(owner) as app:
        await app.device_auth().UpdateCameraSettings(
            identity_pb.UpdateCameraSettingsRequest(
                device_id=device, activity_alerts_enabled=True, retention_days=days
            )
        )
    data, clip_id = make_mp4(6.0, seed=53), "kept-a-day"
    async with PrivacamClient(camera) as cam:
        uploaded = await upload_clip(cam, data, clip_id)
    assert uploaded.created
    ingested_at = uploaded.ingested_at.ToDatetime(tzinfo=UTC)
    name = object_name(tenant, device, clip_id)
    client = minio(platform)
    leaked = client.get_object(CLIP_BUCKET, name).read()  # "a backup" taken before expiry
    wrapped = keys_pb2.WrappedKey.FromString(clip_format.read_header(leaked).key_reference)
    index_key = f"clip_ingest:clip:{tenant}:{device}:{clip_id}"
    assert await redis.exists(index_key) == 1

    async with PrivacamClient(owner) as app:
        _, played = await download_clip(app, device, clip_id)
        assert played == data
        retention = retention_stub(app)

        settings = await scheduled_settings(retention, device)
        assert settings.retention_days == days
        due = settings.next_deletion_at.ToDatetime(tzinfo=UTC)
        assert abs((due - (ingested_at + timedelta(days=days))).total_seconds()) < 1, due
        assert due - retention_now(platform) > timedelta(hours=23)
        # A new period starts: the clip's period wraps no new key and may go with its clips.
        await rotator.Rotate(keys_pb.RotateRequest(tenant_id=tenant))

        export = await ready_export(retention)
        archive = await download(retention, export.export_id)
        listing = await AccessLogReader(app).list()
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        assert opened.read(f"clips/{device}/{clip_id}.mp4") == data
        document = json.loads(opened.read("export.json"))
    assert [c["clip_id"] for c in document["clips"]] == [clip_id]
    exported = document["access_log"]
    proven = {
        entry.index: {"index": entry.index}
        | MessageToDict(entry.record, preserving_proto_field_name=True)
        for entry in listing.entries
    }
    # The export's section is the log as it was when the export read it: a prefix of the
    # verified listing, entry for entry; what came later is the export's own reads.
    assert [e["index"] for e in exported] == list(range(len(exported)))
    assert exported == [proven[e["index"]] for e in exported]
    assert sorted(proven) == list(range(listing.head.tree_size))
    later = [proven[i] for i in sorted(proven) if i >= len(exported)]
    print(
        f"export log section: {len(exported)} entries, identical to ListEntries 0.."
        f"{len(exported) - 1}; the listing (head {listing.head.tree_size}) adds "
        f"{[(e['service'], e['purpose']) for e in later]}"
    )
    playbacks = [
        e
        for e in proven.values()
        if e["purpose"] == "ACCESS_PURPOSE_CLIP_PLAYBACK"
        and e["resource"].get("clip_id") == clip_id
    ]
    assert len(playbacks) == 1
    assert playbacks[0]["index"] < len(exported)
    exported_reads = [
        e
        for e in proven.values()
        if e["purpose"] == "ACCESS_PURPOSE_DATA_EXPORT"
        and e["resource"].get("clip_id") == clip_id
        and e["service"] == "retention"
    ]
    assert len(exported_reads) == 1
    assert await version_state(keys, tenant, wrapped.key_version) == (
        "KEY_VERSION_STATE_DECRYPT_ONLY"
    )

    # Its days pass on retention's clock.
    advance(platform, due - retention_now(platform) + timedelta(seconds=5))

    async def gone() -> bool:
        return not object_exists(client, name) and not await redis.exists(index_key)

    await eventually(gone)

    async def shredded() -> bool:
        state = await version_state(keys, tenant, wrapped.key_version)
        return state == "KEY_VERSION_STATE_DESTROYED"

    await eventually(shredded)
    async with PrivacamClient(owner) as app:
        assert [c.clip_id async for c in list_clips(app, device)] == []
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await download_clip(app, device, clip_id)
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND
        records = await retention_stub(app).ListShredRecords(pb.ListShredRecordsRequest())
    assert [(r.key_version, r.clips_covered, r.reason) for r in records.records] == [
        (wrapped.key_version, 1, retention_pb2.SHRED_REASON_RETENTION_EXPIRED)
    ]
    assert await redis.zcard(f"clip_ingest:clips:{tenant}:{device}") == 0
    deleted = [d for e in await clip_events_of(platform, tenant) for d in clip_deletions(e)]
    assert [(d.clip_id, d.reason) for d in deleted] == [
        (clip_id, clips_pb2.CLIP_DELETION_REASON_RETENTION_EXPIRED)
    ]
    # The copy taken before expiry no longer opens: its key is gone everywhere.
    context = keys_pb2.KeyContext(tenant_id=tenant, device_id=device, clip_id=clip_id)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await keys.Unwrap(
            keys_pb.UnwrapRequest(
                wrapped_key=wrapped,
                context=context,
                purpose=types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
                receipt=receipt_for(platform, context),
            )
        )
    assert raised.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "crypto-shredded" in (raised.value.details() or "")
