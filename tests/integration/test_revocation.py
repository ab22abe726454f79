"""A revocation written to Kafka reaches another service within 2 seconds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from aiokafka import AIOKafkaProducer

from privacam.clips.v1 import clip_service_pb2 as clips_pb
from privacam.clips.v1 import clip_service_pb2_grpc as clips_grpc
from privacam.identity.v1.revocations_pb2 import RevocationRecord
from privacam_core.identity import Principal, PrincipalKind, subject_digest
from privacam_core.timestamps import to_timestamp
from privacam_sdk import PrivacamClient
from services.common import topics
from services.common.kafka import EventProducer, ensure_topics
from services.common.revocations import RevocationList
from services.common.settings import KafkaSettings
from tests.harness import (
    Platform,
    delete_namespace_topics,
    kafka_options,
    kafka_settings,
    new_namespace,
    state_signing,
)
from tests.pki_helpers import PkiFactory


async def _list_clips(client: PrivacamClient) -> grpc.StatusCode:
    stub: clips_grpc.ClipIngestServiceAsyncStub = clips_grpc.ClipIngestServiceStub(
        client.channel("clip_ingest")
    )
    try:
        await stub.ListClips(clips_pb.ListClipsRequest(), timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_a_revoked_app_is_refused_by_another_service_within_2_seconds(
    platform: Platform, profiles_home: Path
) -> None:
    identity = platform.pki.app("tenant-rv", "phone-lost")
    async with PrivacamClient(platform.profile("lost-phone", identity, profiles_home)) as phone:
        # Authenticated and authorized: the empty request reaches the RPC's validation.
        assert await _list_clips(phone) is grpc.StatusCode.INVALID_ARGUMENT

        # A record in the older form (naming the subject by its URI, not its digest):
        # still honoured, so records written before the change keep revoking.
        record = RevocationRecord(
            subject_uri="spiffe://privacam.local/tenant/tenant-rv/app/phone-lost",
            all_certificates=True,
        )
        # Signed as device_auth, its only writer: readers skip anything else.
        value, key = record.SerializeToString(), record.subject_uri.encode()
        signer = state_signing(platform.pki, "device_auth").signer
        producer = AIOKafkaProducer(
            **kafka_options(platform.stack_env),
            acks="all",
            enable_idempotence=True,
        )
        await producer.start()
        try:
            await producer.send_and_wait(
                platform.namespace + topics.REVOCATIONS.name,
                value,
                key=key,
                headers=signer.headers(topics.REVOCATIONS.name, key, value),
            )
        finally:
            await producer.stop()
        written = time.monotonic()

        while (code := await _list_clips(phone)) is not grpc.StatusCode.UNAUTHENTICATED:
            assert code is grpc.StatusCode.INVALID_ARGUMENT
            assert time.monotonic() - written < 2, "revocation not enforced within 2 s"
            await asyncio.sleep(0.05)
        print(f"refused {time.monotonic() - written:.2f} s after the revocation was written")

    # Another app of the same household is unaffected.
    other = platform.pki.app("tenant-rv", "phone-kept")
    async with PrivacamClient(platform.profile("kept-phone", other, profiles_home)) as kept:
        assert await _list_clips(kept) is grpc.StatusCode.INVALID_ARGUMENT


@contextlib.asynccontextmanager
async def revocation_topic(
    stack_env: dict[str, str], pki: PkiFactory, name: str
) -> AsyncIterator[tuple[KafkaSettings, EventProducer]]:
    """A revocations topic in a namespace of its own, and a producer for it (signing as
    device_auth, the topic's writer)."""
    namespace = new_namespace(stack_env, name)
    settings = kafka_settings(stack_env, "device_auth", namespace)
    await ensure_topics(settings, [topics.REVOCATIONS])
    producer = EventProducer(settings, f"test-{name}", state_signing(pki, "device_auth"))
    await producer.start()
    try:
        yield settings, producer
    finally:
        await producer.stop()
        await delete_namespace_topics(stack_env, namespace)


async def test_records_that_outlived_their_certificates_are_pruned(
    stack_env: dict[str, str], pki: PkiFactory
) -> None:
    # The writer tombstones a record an hour after the last certificate it covers
    # expired; a replica started afterwards replays only the live ones.
    now = datetime.now(UTC)
    records = {
        "long-gone": now - timedelta(days=3),
        "just-expired": now - timedelta(minutes=10),  # within the grace: kept
        "alive": now + timedelta(days=2),
    }
    async with revocation_topic(stack_env, pki, "rv-prune") as (settings, producer):
        for name, covers_until in records.items():
            record = RevocationRecord(
                subject_digest=subject_digest(f"spiffe://privacam.local/tenant/t/app/{name}"),
                all_certificates=True,
                revoked_at=to_timestamp(now - timedelta(days=5)),
                covers_until=to_timestamp(covers_until),
            )
            await producer.send_raw(topics.REVOCATIONS, name.encode(), record.SerializeToString())
        writer = RevocationList(settings, producer)
        await writer.start()
        try:
            assert len(writer) == 3
            assert await writer.prune() == 1
        finally:
            await writer.stop()
        later = RevocationList(settings, producer)
        await later.start()
        try:
            assert len(later) == 2
            assert await later.prune() == 0
        finally:
            await later.stop()


async def test_a_record_that_cannot_be_applied_does_not_stop_later_revocations(
    stack_env: dict[str, str], pki: PkiFactory
) -> None:
    # A replica that died on one bad record would stop enforcing every later revocation
    # without a word: it logs and skips the record, and keeps following.
    async with revocation_topic(stack_env, pki, "rv-poison") as (settings, producer):
        replica = RevocationList(settings, producer)
        await replica.start()
        try:
            await producer.send_raw(topics.REVOCATIONS, b"garbage", b"\xff\xff not a record")
            uri = "spiffe://privacam.local/tenant/t/app/stolen-phone"
            record = RevocationRecord(subject_digest=subject_digest(uri), all_certificates=True)
            await producer.send_raw(topics.REVOCATIONS, b"stolen", record.SerializeToString())
            stolen = Principal(
                PrincipalKind.APP, "stolen-phone", "t", "privacam.local", 7, datetime.now(UTC)
            )
            deadline = time.monotonic() + 5
            while not replica.is_revoked(stolen):
                assert time.monotonic() < deadline, "the revocation after the bad record was lost"
                await asyncio.sleep(0.05)
        finally:
            await replica.stop()
