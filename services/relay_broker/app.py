"""Composition root of relay_broker: builds adapters, servicers and consumers for the runtime."""

from privacam.relay.v1 import relay_broker_service_pb2_grpc as pb_grpc
from services.common import topics
from services.common.clock import Clock
from services.common.kafka import EventProducer
from services.common.runtime import GrpcApi, ServiceParts
from services.common.stores import RedisStore
from services.relay_broker.api.policies import POLICIES, SERVICE_DESCRIPTOR
from services.relay_broker.api.servicer import RelayBrokerServicer
from services.relay_broker.settings import RelayBrokerSettings


def build(settings: RelayBrokerSettings, producer: EventProducer, clock: Clock) -> ServiceParts:
    # Until its issue lands, the generated base answers every RPC UNIMPLEMENTED.
    servicer = RelayBrokerServicer()  # type: ignore[abstract]
    return ServiceParts(
        apis=[
            GrpcApi.of(
                SERVICE_DESCRIPTOR, pb_grpc.add_RelayBrokerServiceServicer_to_server, servicer
            )
        ],
        policies=POLICIES,
        topics=[topics.RELAY, topics.IDENTITY, topics.ACCESS],
        components=[RedisStore(settings.redis)],
    )
