"""Composition root of device_auth: builds adapters, servicers and consumers for the runtime."""

from privacam.identity.v1 import device_auth_service_pb2_grpc as pb_grpc
from services.common import topics
from services.common.clock import Clock
from services.common.kafka import EventProducer
from services.common.runtime import GrpcApi, ServiceParts
from services.common.stores import RedisStore
from services.device_auth.api.policies import POLICIES, SERVICE_DESCRIPTOR
from services.device_auth.api.servicer import DeviceAuthServicer
from services.device_auth.settings import DeviceAuthSettings


def build(settings: DeviceAuthSettings, producer: EventProducer, clock: Clock) -> ServiceParts:
    # Until its issue lands, the generated base answers every RPC UNIMPLEMENTED.
    servicer = DeviceAuthServicer()  # type: ignore[abstract]
    return ServiceParts(
        apis=[
            GrpcApi.of(
                SERVICE_DESCRIPTOR, pb_grpc.add_DeviceAuthServiceServicer_to_server, servicer
            )
        ],
        policies=POLICIES,
        topics=[topics.IDENTITY],
        components=[RedisStore(settings.redis)],
    )
