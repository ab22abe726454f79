"""The privacy watch's throughput and notice latency (issue #22), on the local stack.

Throughput: EVENTS access events (HOUSEHOLDS households, a few viewers each, every
purpose that counts as a view) are written to a namespace's access topic first; then one
watch worker (a real process, Faust over SASL_SSL with its ACLs, tables backed by
changelogs on the same brokers) is started and its applied-events counter is read until
it has applied them all. The rate is counted from its first applied event, so table
recovery and partition assignment are not in it. The baseline is a raw aiokafka consumer
(assigned every partition, no group) reading and decoding the same records, right before:
the floor any Kafka consumer in Python pays. Target: >= 0.3x.

Latency: with the worker caught up, LATENCY_ACCESSES operator accesses at 20/s, each told
to the household (an operator access always is); from the access event's acknowledgement
by the brokers to its notice's arrival on the notices topic, read by a consumer of our
own. Its p99 against the household's promise of 5 s (a ratio of promise / p99, target 1).
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks import Result
from privacam.types.v1 import types_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from services.common import topics
from tests.harness import (
    cleanup_namespace,
    kafka_options,
    local_stack,
    metric,
    new_namespace,
    running,
)
from tests.pki_helpers import PkiFactory
from tests.watch_events import NoticeReader, access, app, watch_process

EVENTS = 20_000
HOUSEHOLDS = 200
LATENCY_ACCESSES = 200
PROMISE_SECONDS = 5.0
BASE = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
PURPOSES = (
    types_pb2.ACCESS_PURPOSE_LIVE_VIEW,
    types_pb2.ACCESS_PURPOSE_CLIP_LISTING,
    types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
)


def run() -> list[Result]:
    with local_stack() as stack, tempfile.TemporaryDirectory() as scratch:
        pki = PkiFactory(Path(scratch) / "pki")
        namespace = new_namespace(stack, "benchwatch")
        try:
            return asyncio.run(_measure(stack, namespace, pki, Path(scratch)))
        finally:
            cleanup_namespace(stack, namespace)


async def _measure(
    stack: dict[str, str], namespace: str, pki: PkiFactory, scratch: Path
) -> list[Result]:
    topic = namespace + topics.ACCESS.name
    households = [str(uuid.uuid4()) for _ in range(HOUSEHOLDS)]
    worker = watch_process(pki, stack, namespace, scratch)
    with running(worker):
        pass  # a first start makes the namespace's topics (the worker's own and its inputs)
    await _write_events(stack, topic, households)
    raw = await _raw_read_rate(stack, topic)
    with running(worker):
        watched = await asyncio.to_thread(_applied_rate, worker.metrics_port)
        latencies = await _notice_latencies(stack, namespace, households)
    p50, p99 = statistics.median(latencies), statistics.quantiles(latencies, n=100)[98]
    print(
        f"privacy watch: {watched:,.0f} events/s vs raw consumer {raw:,.0f}/s; "
        f"notice latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms "
        f"({len(latencies)} operator accesses at 20/s)"
    )
    return [
        Result.compare(
            "privacy watch events/s",
            watched,
            "events/s",
            "raw aiokafka consumer",
            raw,
            target=0.3,
        ),
        Result.compare(
            "privacy watch notice p50 (ms)",
            p50 * 1000,
            "ms",
            "promise 5,000 ms",
            PROMISE_SECONDS * 1000,
            target=None,
            ratio=PROMISE_SECONDS / p50,
        ),
        Result.compare(
            "privacy watch notice p99 (ms)",
            p99 * 1000,
            "ms",
            "promise 5,000 ms",
            PROMISE_SECONDS * 1000,
            target=1.0,
            ratio=PROMISE_SECONDS / p99,
        ),
    ]


async def _write_events(stack: dict[str, str], topic: str, households: list[str]) -> None:
    """EVENTS accesses, by four viewers per household, a few seconds apart."""
    producer = AIOKafkaProducer(**kafka_options(stack), acks="all", linger_ms=5)
    await producer.start()
    try:
        sends = []
        for n in range(EVENTS):
            tenant = households[n % HOUSEHOLDS]
            viewer = app(tenant, f"install-{n % 4}")
            event = access(tenant, viewer, BASE + timedelta(seconds=n), PURPOSES[n % 3])
            sends.append(
                await producer.send(topic, topics.ACCESS.encode(event), key=tenant.encode())
            )
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def _raw_read_rate(stack: dict[str, str], topic: str) -> float:
    """Records per second of a bare consumer reading the topic from its start."""
    consumer = AIOKafkaConsumer(**kafka_options(stack), enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # the topic is not in its metadata yet
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            raise RuntimeError(f"no partitions of {topic}")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        read, started = 0, time.perf_counter()
        while read < EVENTS:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                for record in records:
                    topics.ACCESS.decode(record.value or b"")  # as any reader must
                read += len(records)
        return read / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def _applied_rate(metrics_port: int) -> float:
    """Events per second the worker applies, from its first applied one to the last."""

    def applied() -> float:
        return metric(metrics_port, "privacam_privacy_watch_events_total", result="applied")

    deadline = time.monotonic() + 600
    while (first := applied()) == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the watch applied nothing")
        time.sleep(0.05)
    started = time.perf_counter()
    while (done := applied()) < EVENTS:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the watch applied {done:.0f} of {EVENTS}")
        time.sleep(0.05)
    return (done - first) / (time.perf_counter() - started)


async def _notice_latencies(
    stack: dict[str, str], namespace: str, households: list[str]
) -> list[float]:
    """Seconds from each operator access's acknowledgement to its notice's arrival."""
    producer = AIOKafkaProducer(**kafka_options(stack), acks="all")
    topic = namespace + topics.ACCESS.name
    written: dict[str, float] = {}
    await producer.start()
    try:
        async with NoticeReader(stack, namespace) as reader:
            for n in range(LATENCY_ACCESSES):
                tenant = households[n % HOUSEHOLDS]
                operator = types_pb2.Principal(
                    kind=types_pb2.PRINCIPAL_KIND_OPERATOR, id=f"operator-{secrets.token_hex(2)}"
                )
                event = access(tenant, operator, BASE + timedelta(hours=2, seconds=n))
                await producer.send_and_wait(
                    topic, topics.ACCESS.encode(event), key=tenant.encode()
                )
                written[event.access_recorded.record.access_id] = time.time()
                await asyncio.sleep(0.05)
            deadline = time.monotonic() + 60
            arrived: dict[str, float] = {}
            while len(arrived) < len(written) and time.monotonic() < deadline:
                for received in reader.received:
                    notice = received.notice
                    if notice.rule == watch_pb2.WATCH_RULE_OPERATOR_ACCESS:
                        arrived.setdefault(notice.entry.access_id, received.at)
                await asyncio.sleep(0.2)
    finally:
        await producer.stop()
    missing = len(written) - len(arrived)
    if missing:
        raise RuntimeError(f"{missing} of {len(written)} operator accesses were never told")
    return [arrived[access_id] - at for access_id, at in written.items()]
