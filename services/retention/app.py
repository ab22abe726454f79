"""Composition root of retention: builds adapters, servicers and consumers for the runtime."""

from privacam.retention.v1 import retention_service_pb2_grpc as pb_grpc
from services.common import topics
from services.common.clock import Clock
from services.common.kafka import EventProducer
from services.common.runtime import GrpcApi, ServiceParts
from services.common.stores import ObjectStore, RedisStore
from services.retention.api.policies import POLICIES, SERVICE_DESCRIPTOR
from services.retention.api.servicer import RetentionServicer
from services.retention.settings import RetentionSettings


def build(settings: RetentionSettings, producer: EventProducer, clock: Clock) -> ServiceParts:
    # Until its issue lands, the generated base answers every RPC UNIMPLEMENTED.
    servicer = RetentionServicer()  # type: ignore[abstract]
    return ServiceParts(
        apis=[
            GrpcApi.of(SERVICE_DESCRIPTOR, pb_grpc.add_RetentionServiceServicer_to_server, servicer)
        ],
        policies=POLICIES,
        topics=[topics.RETENTION, topics.CLIPS, topics.IDENTITY],
        components=[
            RedisStore(settings.redis),
            ObjectStore(settings.minio, buckets=(settings.clip_bucket,)),
        ],
    )
