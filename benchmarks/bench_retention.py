"""Retention deletions through the sweeper against raw MinIO multi-object deletes.

Real processes on the local stack: key_manager and retention (Kafka with acks=all, Redis,
MinIO). 10,000 clip objects are stored and announced with ClipIngested, all due at the
same moment; then the retention service's development clock is moved to that moment and
the sweeper deletes them: MinIO multi-object delete, one ClipDeleted per clip on Kafka,
schedule updates in Redis. The baseline is the same MinIO client library deleting the same
number of freshly written keys with remove_objects, 1000 per request and 4 requests at a
time (the sweeper's default concurrency), in the same run.

Figures: deletions per second (target at least 0.7x the raw deletes'), and the deletion
lag p99 — how long after the due moment 99% of the clips were gone — as "objective 60 s /
measured p99" (target at least 1, i.e. p99 under 60 s). Two rounds per side, the best kept.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer
from minio import Minio
from minio.deleteobjects import DeleteObject
from redis.asyncio import Redis

from benchmarks import Result
from privacam.clips.v1 import events_pb2 as clip_events
from privacam.types.v1 import types_pb2
from privacam_core.timestamps import to_timestamp
from stack.minio_users import CLIP_BUCKET
from tests.harness import (
    cleanup_namespace,
    kafka_options,
    local_stack,
    make_services,
    new_namespace,
    retention_clock_file,
    running,
    stack_minio,
)
from tests.pki_helpers import PkiFactory

CLIPS = 10_000
ROUNDS = 2
CONCURRENCY = 4
THROUGHPUT_TARGET = 0.7
LAG_OBJECTIVE_SECONDS = 60.0
BUCKET = CLIP_BUCKET
"""The clip bucket itself: retention's MinIO user may delete there and nowhere else. The
benchmark's objects live under prefixes no clip uses, removed at the end."""
RAW_PREFIX = "bench-raw/"
OUR_PREFIX = "t/bench-"
PAYLOAD = secrets.token_bytes(1024)


def _put_all(minio: Minio, names: list[str]) -> None:
    def put(name: str) -> None:
        minio.put_object(BUCKET, name, io.BytesIO(PAYLOAD), len(PAYLOAD))

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(put, names))


def _raw_delete_rate(minio: Minio) -> float:
    names = [f"{RAW_PREFIX}{uuid.uuid4()}" for _ in range(CLIPS)]
    _put_all(minio, names)

    def delete(start: int) -> None:
        batch = [DeleteObject(n) for n in names[start : start + 1000]]
        errors = list(minio.remove_objects(BUCKET, batch))
        assert not errors, errors[:1]

    began = time.perf_counter()
    # As many requests in flight as the sweeper's default SWEEP_CONCURRENCY.
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(delete, range(0, CLIPS, 1000)))
    return CLIPS / (time.perf_counter() - began)


def _offset(clock_file: Path) -> float:
    return float(clock_file.read_text()) if clock_file.exists() else 0.0


async def _ours(
    minio: Minio, stack: dict[str, str], namespace: str, clock_file: Path
) -> tuple[float, float]:
    """(deletions per second, p99 lag in seconds) of one round through the sweeper."""
    tenant, device = f"{OUR_PREFIX.removeprefix('t/')}{uuid.uuid4()}", f"cam-{secrets.token_hex(4)}"
    names = [f"t/{tenant}/{device}/c{i:05d}" for i in range(CLIPS)]
    await asyncio.to_thread(_put_all, minio, names)
    now = datetime.now(UTC) + timedelta(seconds=_offset(clock_file))
    due = now + timedelta(days=7)
    # As clip_ingest, the owner of the clips topic, through the clients' TLS listener.
    producer = AIOKafkaProducer(**kafka_options(stack, "clip_ingest"), acks="all", linger_ms=5)
    await producer.start()
    try:
        sends = []
        for i, name in enumerate(names):
            event = clip_events.ClipEvent(
                metadata=types_pb2.EventMetadata(
                    event_id=str(uuid.uuid4()),
                    occurred_at=to_timestamp(now),
                    tenant_id=tenant,
                    producer="clip_ingest",
                ),
                clip_ingested=clip_events.ClipIngested(
                    tenant_id=tenant,
                    device_id=device,
                    clip_id=f"c{i:05d}",
                    ingested_at=to_timestamp(now),
                    key_version=1,
                    object_name=name,
                    delete_after=to_timestamp(due),
                ),
            )
            sends.append(
                await producer.send(
                    namespace + "privacam.clips.v1",
                    event.SerializeToString(),
                    key=tenant.encode(),
                )
            )
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    redis = Redis.from_url(stack["PRIVACAM_RETENTION_REDIS_URL"])
    camera = f"{namespace}retention:dev:{tenant}/{device}"
    try:
        while await redis.zcard(camera) < CLIPS:  # noqa: ASYNC110 - another process's progress
            await asyncio.sleep(0.05)
        # Every clip is due at `due`: move the service's clock there (it never goes back).
        offset = (due - datetime.now(UTC)).total_seconds()
        clock_file.with_suffix(".tmp").write_text(str(offset))
        clock_file.with_suffix(".tmp").replace(clock_file)
        began = time.perf_counter()
        p99_at = None
        while (left := await redis.zcard(camera)) > 0:
            if p99_at is None and left <= CLIPS // 100:
                p99_at = time.perf_counter()
            await asyncio.sleep(0.01)
        ended = time.perf_counter()
    finally:
        await redis.aclose()
    remaining = list(minio.list_objects(BUCKET, prefix=f"t/{tenant}/"))
    assert not remaining, f"{len(remaining)} objects left"
    return CLIPS / (ended - began), (p99_at or ended) - began


async def _measure(
    minio: Minio, stack: dict[str, str], namespace: str, clock: Path
) -> list[Result]:
    raw_rates, our_rates, lags = [], [], []
    for _ in range(ROUNDS):
        raw_rates.append(await asyncio.to_thread(_raw_delete_rate, minio))
        rate, lag = await _ours(minio, stack, namespace, clock)
        our_rates.append(rate)
        lags.append(lag)
    return [
        Result.compare(
            f"retention: {CLIPS:,} expired clips deleted",
            max(our_rates),
            "deletions/s",
            "raw MinIO remove_objects",
            max(raw_rates),
            THROUGHPUT_TARGET,
        ),
        Result.compare(
            "retention: deletion lag p99 (objective / p99)",
            LAG_OBJECTIVE_SECONDS,
            "s objective",
            "p99 lag, s",
            min(lags),
            1.0,
        ),
    ]


def run() -> list[Result]:
    with local_stack() as stack, tempfile.TemporaryDirectory() as scratch:
        pki = PkiFactory(Path(scratch) / "pki")
        namespace = new_namespace(stack, "bench")
        services = make_services(("key_manager", "retention"), pki, stack, namespace, Path(scratch))
        services["retention"].env.update({"PRIVACAM_RETENTION_SWEEP_INTERVAL_SECONDS": "0.1"})
        minio = stack_minio(stack, BUCKET)
        try:
            with running(*services.values()):
                return asyncio.run(_measure(minio, stack, namespace, retention_clock_file(pki)))
        finally:
            cleanup_namespace(stack, namespace)
            for prefix in (RAW_PREFIX, OUR_PREFIX):
                for item in minio.list_objects(BUCKET, prefix=prefix, recursive=True):
                    minio.remove_object(BUCKET, item.object_name or "")
