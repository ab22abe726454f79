"""Composition root of retention: builds adapters, servicers and consumers for the runtime."""

from datetime import timedelta

from privacam.retention.v1 import retention_service_pb2_grpc as pb_grpc
from services.common import topics
from services.common.clock import Clock
from services.common.kafka import EventConsumer, EventProducer
from services.common.peers import Peers
from services.common.replicated_map import ReplicatedMap
from services.common.runtime import GrpcApi, ServiceParts
from services.common.stores import ObjectStore, RedisStore
from services.retention.adapters.dev_clock import OffsetFileClock
from services.retention.adapters.events import KafkaRetentionEvents
from services.retention.adapters.export_builds import RedisBuildProgress
from services.retention.adapters.exports import (
    Decryption,
    KafkaExportEvents,
    MinioArchiveStore,
    PeerExportSources,
    RedisExportStore,
)
from services.retention.adapters.lease import RedisExportLeases, RedisLease
from services.retention.adapters.metrics import PrometheusExportMetrics, PrometheusRetentionMetrics
from services.retention.adapters.objects import LifecycleBackstop, MinioObjects
from services.retention.adapters.peers import DeviceAuthAccounts, KeyManagerPeriods
from services.retention.adapters.progress import RedisCancellationProgress
from services.retention.adapters.schedule import RedisSchedule
from services.retention.adapters.shred_log import KafkaShredLog
from services.retention.api.policies import POLICIES, SERVICE_DESCRIPTOR
from services.retention.api.servicer import RetentionServicer
from services.retention.domain.export_build import ExportBuilder
from services.retention.domain.exports import Exports
from services.retention.domain.model import RetentionBounds
from services.retention.domain.rights import Rights
from services.retention.domain.sweeper import Sweeper
from services.retention.settings import RetentionSettings
from services.retention.streams.clips import ClipFeed
from services.retention.streams.exports import ExportBuildLoop, ExportWorker
from services.retention.streams.sweep_loop import SweepLoop


def build(settings: RetentionSettings, producer: EventProducer, clock: Clock) -> ServiceParts:
    # Access records are stamped with the wall clock the access log checks them against;
    # only retention's deadlines follow the development clock.
    wall_clock = clock
    if settings.dev_clock_file is not None:
        clock = OffsetFileClock(clock, settings.dev_clock_file)
    bounds = RetentionBounds(
        settings.default_retention_days, settings.min_retention_days, settings.max_retention_days
    )
    redis = RedisStore(settings.redis)
    store = ObjectStore(settings.minio, buckets=(settings.clip_bucket, settings.export_bucket))
    clips = MinioObjects(store.client, settings.clip_bucket)
    export_objects = MinioObjects(store.client, settings.export_bucket)
    peers = Peers(settings.peers, settings.tls)
    # A deleted clip is remembered as long as its ClipIngested could be replayed.
    schedule = RedisSchedule(
        redis.client,
        gone_ttl_seconds=(settings.max_retention_days + 7) * 86_400,
        prefix=settings.kafka.namespace,
    )
    shred_state = ReplicatedMap(settings.kafka, topics.RETENTION_STATE, producer)
    shreds = KafkaShredLog(shred_state)
    events = KafkaRetentionEvents(producer)
    metrics = PrometheusRetentionMetrics(settings.deletion_lag_objective_seconds)
    keys = KeyManagerPeriods(peers)
    sweeper = Sweeper(
        schedule,
        clips,
        events,
        keys,
        shreds,
        events,
        metrics,
        clock,
        batch_size=settings.sweep_batch_size,
        concurrency=settings.sweep_concurrency,
        period_grace=timedelta(seconds=settings.key_period_grace_seconds),
    )
    decryption = Decryption(peers, wall_clock)
    export_store = RedisExportStore(redis.client, settings.kafka.namespace)
    archives = MinioArchiveStore(peers, export_objects, decryption)
    builds = RedisBuildProgress(redis.client, export_store, settings.kafka.namespace)
    export_events = KafkaExportEvents(producer, clock)
    exports = Exports(export_store, archives, builds, export_events, clock)
    builder = ExportBuilder(
        export_store,
        PeerExportSources(peers, clips, decryption),
        archives,
        builds,
        RedisExportLeases(
            redis.client, int(settings.export_lease_seconds * 1000), settings.kafka.namespace
        ),
        schedule,
        export_events,
        PrometheusExportMetrics(),
        clock,
        timedelta(seconds=settings.export_ttl_seconds),
        renew_seconds=settings.export_lease_seconds / 3,
        max_attempts=settings.export_max_attempts,
    )
    build_loop = ExportBuildLoop(builder, poll_seconds=settings.export_poll_seconds)
    accounts = DeviceAuthAccounts(peers)
    lease_key = f"{settings.kafka.namespace}retention:sweep-lease"
    # A replica killed mid-sweep holds the lease at most this long (extended per batch).
    lease_ms = int(max(10.0, 3 * settings.sweep_interval_seconds) * 1000)
    rights = Rights(
        schedule=schedule,
        sweeper=sweeper,
        objects=clips,
        clip_events=events,
        keys=keys,
        shreds=shreds,
        accounts=accounts,
        cameras=accounts,
        progress=RedisCancellationProgress(redis.client, settings.kafka.namespace),
        exports=exports,
        exclusive=RedisLease(redis.client, lease_key, lease_ms),
        events=events,
        metrics=metrics,
        bounds=bounds,
        clock=clock,
    )
    feed = ClipFeed(schedule, bounds)
    loop = SweepLoop(
        sweeper,
        schedule,
        feed,
        RedisLease(redis.client, lease_key, lease_ms),
        events,
        settings.kafka,
        producer,
        clock,
        interval_seconds=settings.sweep_interval_seconds,
        after_sweep=exports.expire_due,
    )
    export_days = settings.export_ttl_seconds // 86_400 + 2
    return ServiceParts(
        apis=[
            GrpcApi.of(
                SERVICE_DESCRIPTOR,
                pb_grpc.add_RetentionServiceServicer_to_server,
                RetentionServicer(rights, exports),
            )
        ],
        policies=POLICIES,
        topics=[topics.RETENTION, topics.RETENTION_STATE, topics.CLIPS, topics.IDENTITY],
        consumers=[
            # A clip's deletion must not be skipped, and a dead letter does not skip it: a
            # ClipIngested set aside leaves that clip unscheduled until it is replayed, and
            # the bucket's lifecycle backstop (MAX_RETENTION_DAYS + 1) deletes it even if it
            # never is; a ClipDeleted set aside leaves an entry whose sweep finds nothing.
            # Blocking instead would leave every later clip of the partition unscheduled.
            EventConsumer(
                settings.kafka,
                topics.CLIPS,
                "retention.schedule",
                feed.on_event,
                producer=producer,
            ),
            # The job is queued by RequestExport itself; this only makes sure of it.
            EventConsumer(
                settings.kafka,
                topics.RETENTION,
                "retention.exports",
                ExportWorker(exports, build_loop).on_event,
                producer=producer,
            ),
        ],
        components=[
            redis,
            store,
            LifecycleBackstop(
                [(clips, settings.max_retention_days + 1), (export_objects, export_days)]
            ),
            peers,
        ],
        late_components=[shred_state, loop, build_loop],
    )
