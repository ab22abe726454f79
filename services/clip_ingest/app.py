"""Composition root of clip_ingest: builds adapters, servicers and consumers for the runtime."""

from privacam.clips.v1 import clip_service_pb2_grpc as pb_grpc
from services.clip_ingest.api.policies import POLICIES, SERVICE_DESCRIPTOR
from services.clip_ingest.api.servicer import ClipIngestServicer
from services.clip_ingest.settings import ClipIngestSettings
from services.common import topics
from services.common.clock import Clock
from services.common.kafka import EventProducer
from services.common.runtime import GrpcApi, ServiceParts
from services.common.stores import ObjectStore, RedisStore


def build(settings: ClipIngestSettings, producer: EventProducer, clock: Clock) -> ServiceParts:
    # Until its issue lands, the generated base answers every RPC UNIMPLEMENTED.
    servicer = ClipIngestServicer()  # type: ignore[abstract]
    return ServiceParts(
        apis=[
            GrpcApi.of(
                SERVICE_DESCRIPTOR, pb_grpc.add_ClipIngestServiceServicer_to_server, servicer
            )
        ],
        policies=POLICIES,
        topics=[topics.CLIPS, topics.IDENTITY, topics.ACCESS],
        components=[
            RedisStore(settings.redis),
            ObjectStore(settings.minio, buckets=(settings.clip_bucket,)),
        ],
    )
