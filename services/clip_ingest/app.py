"""Composition root of clip_ingest: builds adapters, servicers and consumers for the runtime."""

from datetime import timedelta

from privacam.clips.v1 import clip_service_pb2_grpc as pb_grpc
from services.clip_ingest.adapters.events import KafkaClipEvents
from services.clip_ingest.adapters.index import RedisClipIndex
from services.clip_ingest.adapters.metrics import PrometheusClipMetrics
from services.clip_ingest.adapters.objects import MinioObjects, UnsignedPayloadMinio
from services.clip_ingest.adapters.peers import AccessLogClient, DeviceAuthCameras, KeyManagerKeys
from services.clip_ingest.api.policies import POLICIES, SERVICE_DESCRIPTOR
from services.clip_ingest.api.servicer import ClipIngestServicer
from services.clip_ingest.domain.service import ClipService, Limits
from services.clip_ingest.settings import ClipIngestSettings
from services.clip_ingest.streams.camera_settings import CameraSettingsView
from services.clip_ingest.streams.index_follower import IndexFollower
from services.common import topics
from services.common.clock import Clock
from services.common.kafka import EventProducer
from services.common.peers import Peers
from services.common.runtime import GrpcApi, ServiceParts
from services.common.stores import ObjectStore, RedisStore


def build(settings: ClipIngestSettings, producer: EventProducer, clock: Clock) -> ServiceParts:
    redis = RedisStore(settings.redis)
    store = ObjectStore(
        settings.minio, buckets=(settings.clip_bucket,), client_class=UnsignedPayloadMinio
    )
    objects = MinioObjects(
        store.client, settings.clip_bucket, settings.part_bytes, settings.storage_threads
    )
    peers = Peers(settings.peers, settings.tls)
    index = RedisClipIndex(redis.client)
    cameras = CameraSettingsView(
        DeviceAuthCameras(peers), settings.kafka, producer, settings.camera_settings_cache_seconds
    )
    clips = ClipService(
        cameras=cameras,
        keys=KeyManagerKeys(peers),
        access_log=AccessLogClient(peers, clock),
        objects=objects,
        index=index,
        events=KafkaClipEvents(producer, clock),
        metrics=PrometheusClipMetrics(),
        clock=clock,
        limits=Limits(
            max_clip_bytes=settings.max_clip_bytes,
            max_duration=timedelta(seconds=settings.max_clip_seconds),
            max_capture_skew=timedelta(seconds=settings.max_capture_skew_seconds),
            segment_size=settings.segment_bytes,
            min_chunk_bytes=settings.min_chunk_bytes,
            max_uploads_per_camera=settings.max_uploads_per_camera,
            retry_memory_seconds=settings.retry_memory_seconds,
        ),
    )
    servicer = ClipIngestServicer(
        clips,
        settings.max_clip_bytes,
        settings.upload_idle_seconds,
        settings.upload_deadline_seconds,
    )
    return ServiceParts(
        apis=[
            GrpcApi.of(
                SERVICE_DESCRIPTOR, pb_grpc.add_ClipIngestServiceServicer_to_server, servicer
            )
        ],
        policies=POLICIES,
        topics=[topics.CLIPS, topics.IDENTITY],
        components=[redis, store, objects, peers],
        # The follower starts once the clip topic exists.
        late_components=[IndexFollower(settings.kafka, index, clips, producer), cameras],
    )
