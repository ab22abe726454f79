"""The RetentionService servicer.

Its RPCs are declared in protos/privacam/retention/v1 and are built by issue #7;
until then the generated base class answers UNIMPLEMENTED.
"""

from privacam.retention.v1 import retention_service_pb2_grpc as pb_grpc


class RetentionServicer(pb_grpc.RetentionServiceServicer):
    pass
