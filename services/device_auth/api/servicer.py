"""The DeviceAuthService servicer.

Its RPCs are declared in protos/privacam/identity/v1 and are built by issue #3;
until then the generated base class answers UNIMPLEMENTED.
"""

from privacam.identity.v1 import device_auth_service_pb2_grpc as pb_grpc


class DeviceAuthServicer(pb_grpc.DeviceAuthServiceServicer):
    pass
