"""The KeyManagerService servicer.

Its RPCs are declared in protos/privacam/keys/v1 and are built by issue #4;
until then the generated base class answers UNIMPLEMENTED.
"""

from privacam.keys.v1 import key_manager_service_pb2_grpc as pb_grpc


class KeyManagerServicer(pb_grpc.KeyManagerServiceServicer):
    pass
