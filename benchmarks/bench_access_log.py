"""Access log: appends with receipts against raw Kafka produce, and proof verification.

1. A real access_log process (real Kafka, MinIO, mutual TLS, the shared interceptor).
   The figure is Append: produce the AccessRecorded event (acks=all), wait until the log
   has applied it, sign a head, prove inclusion, answer. The baseline is what the log
   cannot avoid: producing the same AccessRecorded events with acks=all from this process
   (to a topic of their own, so the log does not consume them while the baseline runs).
   Both run 16 in flight, alternating rounds of about half a second; the ratio is the median
   of the ratios of adjacent rounds.
   Target: at least 0.5x (issue #24); the rest is one gRPC round trip over mTLS, the
   consumer's fetch and a signature.
2. Receipt verification as the key manager does it (signature, freshness, inclusion proof
   in a log of 100,000 entries, record parse) against the bare Ed25519 verification it
   contains. Target: at least 0.6x: the signature must stay the bulk of the cost (the
   17 proof hashes, the parse and the time checks add about 40% of one signature).
3. A client checking a page of 100 listed entries against a head of a log of 100,000
   entries (LogMonitor.verify_entries: one head signature, 100 inclusion proofs) against
   hashing each entry's record once (the least any check of 100 entries must do) plus one
   signature. Reported as pages per second; target at least 0.05x.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmarks import Result
from benchmarks.timing import Rates, best_seconds_per_call, paired_rates
from privacam.accesslog.v1 import access_log_service_pb2 as pb
from privacam.accesslog.v1 import access_log_service_pb2_grpc as pb_grpc
from privacam.accesslog.v1 import events_pb2, log_pb2
from privacam.types.v1 import types_pb2
from privacam_core.merkle import MerkleTree, leaf_hash
from privacam_core.receipts import (
    LogMonitor,
    sign_tree_head,
    tree_head_signing_input,
    verify_receipt,
)
from privacam_core.timestamps import to_timestamp
from services.common.kafka import EventProducer, Topic, ensure_topics
from services.common.settings import KafkaSettings
from stack import kafka_users
from tests.harness import (
    cleanup_namespace,
    kafka_admin,
    kafka_settings,
    local_stack,
    make_service,
    new_namespace,
)
from tests.pki_helpers import PkiFactory

APPEND_TARGET = 0.5
RECEIPT_TARGET = 0.6
PAGE_TARGET = 0.05
IN_FLIGHT = 16
ROUND_SECONDS = 0.5
ROUNDS = 6
LOG_SIZE = 100_000
PAGE = 100
RAW_TOPIC: Topic[events_pb2.AccessEvent] = Topic(
    "privacam.access.bench-raw.v1", events_pb2.AccessEvent
)


def _record(tenant: str, index: int = 0) -> log_pb2.AccessRecord:
    return log_pb2.AccessRecord(
        access_id=str(uuid.uuid4()),
        tenant_id=tenant,
        principal=types_pb2.Principal(
            kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=tenant, id="phone-1"
        ),
        resource=log_pb2.Resource(
            kind=log_pb2.RESOURCE_KIND_CLIP, device_id=str(uuid.UUID(int=index)), clip_id="c-1"
        ),
        purpose=types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
        service="clip_ingest",
        occurred_at=to_timestamp(datetime.now(UTC)),
    )


async def _appends(endpoint: str, pki: PkiFactory, kafka: KafkaSettings) -> Rates:
    tenants = [str(uuid.uuid4()) for _ in range(IN_FLIGHT)]
    producer = EventProducer(kafka, "bench-raw")
    await ensure_topics(kafka, [RAW_TOPIC])
    await producer.start()
    ca, cert, key = pki.service("clip_ingest").credentials()
    credentials = grpc.ssl_channel_credentials(ca, key, cert)
    try:
        async with grpc.aio.secure_channel(endpoint, credentials) as channel:
            log: pb_grpc.AccessLogServiceAsyncStub = pb_grpc.AccessLogServiceStub(channel)

            async def append(worker: int) -> None:
                await log.Append(pb.AppendRequest(record=_record(tenants[worker])))

            async def produce(worker: int) -> None:
                event = events_pb2.AccessEvent(
                    access_recorded=events_pb2.AccessRecorded(record=_record(tenants[worker]))
                )
                await producer.send_raw(
                    RAW_TOPIC, tenants[worker].encode(), RAW_TOPIC.encode(event)
                )

            return await paired_rates(
                append, produce, in_flight=IN_FLIGHT, rounds=ROUNDS, round_seconds=ROUND_SECONDS
            )
    finally:
        await producer.stop()


def _verification() -> list[Result]:
    key = Ed25519PrivateKey.generate()
    keys = {"bench": key.public_key()}
    tenant = str(uuid.uuid4())
    records = [_record(tenant, i).SerializeToString(deterministic=True) for i in range(LOG_SIZE)]
    tree = MerkleTree(leaf_hash(r) for r in records)
    now = datetime.now(UTC)
    head = sign_tree_head(key, "bench", tenant, tree.size, tree.root(), now)
    index = LOG_SIZE // 3
    receipt = log_pb2.Receipt(
        record=records[index],
        leaf_index=index,
        tree_head=head,
        inclusion_proof=log_pb2.InclusionProof(
            leaf_index=index, tree_size=tree.size, hashes=tree.inclusion_proof(index)
        ),
    )
    message = tree_head_signing_input(
        tenant, tree.size, head.timestamp.seconds * 10**9 + head.timestamp.nanos, tree.root()
    )
    public = key.public_key()
    start = LOG_SIZE - PAGE
    entries = [
        log_pb2.LogEntry(
            index=i,
            record=records[i],
            inclusion_proof=log_pb2.InclusionProof(
                leaf_index=i, tree_size=tree.size, hashes=tree.inclusion_proof(i)
            ),
        )
        for i in range(start, LOG_SIZE)
    ]
    monitor = LogMonitor(keys)
    monitor.observe(head)

    def receipt_check() -> None:
        verify_receipt(receipt, keys, tenant_id=tenant, now=now, max_age=timedelta(minutes=5))

    def bare_signature() -> None:
        public.verify(head.signature, message)

    def page_check() -> None:
        monitor.verify_entries(entries, head)

    def page_floor() -> None:
        public.verify(head.signature, message)
        for entry in entries:
            leaf_hash(entry.record)

    receipt_s, signature_s, page_s, floor_s = best_seconds_per_call(
        [receipt_check, bare_signature, page_check, page_floor], budget_seconds=3
    )
    return [
        Result.compare(
            f"receipt verification (log of {LOG_SIZE:,})",
            1 / receipt_s,
            "receipts/s",
            "bare Ed25519 verify",
            1 / signature_s,
            RECEIPT_TARGET,
        ),
        Result.compare(
            f"client check of {PAGE} entries (log of {LOG_SIZE:,})",
            1 / page_s,
            "pages/s",
            f"1 signature + {PAGE} leaf hashes",
            1 / floor_s,
            PAGE_TARGET,
        ),
    ]


def run() -> list[Result]:
    with local_stack() as stack, tempfile.TemporaryDirectory() as scratch:
        pki = PkiFactory(Path(scratch) / "pki")
        namespace = new_namespace(stack, "bench")
        # The baseline produces as access_log's own user, through the same TLS and SCRAM
        # listener, to a topic of its own that only this run grants it.
        raw = [
            kafka_users.Acl(
                kafka_users.username("access_log"),
                "topic",
                namespace + RAW_TOPIC.name,
                False,
                operation,
            )
            for operation in ("write", "create")
        ]
        kafka_users.grant_acls(kafka_admin(stack), raw)
        service = make_service("access_log", pki, stack, namespace, Path(scratch))
        service.start()
        try:
            service.wait_serving(timeout=180)
            kafka = kafka_settings(stack, "access_log", namespace).model_copy(
                update={"topic_partitions": 1}
            )
            appends = asyncio.run(_appends(service.endpoint, pki, kafka))
        finally:
            service.stop()
            cleanup_namespace(stack, namespace)
            kafka_users.revoke_acls(kafka_admin(stack), raw)
    return [
        Result.compare(
            "Append with receipt",
            appends.figure,
            "appends/s",
            "raw Kafka produce acks=all",
            appends.baseline,
            APPEND_TARGET,
            appends.ratio,
        ),
        *_verification(),
    ]
