"""Composition root of key_manager: builds adapters, servicers and consumers for the runtime."""

from privacam.keys.v1 import key_manager_service_pb2_grpc as pb_grpc
from services.common import topics
from services.common.clock import Clock
from services.common.kafka import EventProducer
from services.common.runtime import GrpcApi, ServiceParts
from services.key_manager.api.policies import POLICIES, SERVICE_DESCRIPTOR
from services.key_manager.api.servicer import KeyManagerServicer
from services.key_manager.settings import KeyManagerSettings


def build(settings: KeyManagerSettings, producer: EventProducer, clock: Clock) -> ServiceParts:
    # Until its issue lands, the generated base answers every RPC UNIMPLEMENTED.
    servicer = KeyManagerServicer()  # type: ignore[abstract]
    return ServiceParts(
        apis=[
            GrpcApi.of(
                SERVICE_DESCRIPTOR, pb_grpc.add_KeyManagerServiceServicer_to_server, servicer
            )
        ],
        policies=POLICIES,
        topics=[topics.KEYS],
        components=[],
    )
