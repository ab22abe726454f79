"""The RelayBrokerService servicer.

Its RPCs are declared in protos/privacam/relay/v1 and are built by issue #6;
until then the generated base class answers UNIMPLEMENTED.
"""

from privacam.relay.v1 import relay_broker_service_pb2_grpc as pb_grpc


class RelayBrokerServicer(pb_grpc.RelayBrokerServiceServicer):
    pass
