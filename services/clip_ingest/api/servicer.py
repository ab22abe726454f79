"""The ClipIngestService servicer.

Its RPCs are declared in protos/privacam/clips/v1 and are built by issue #5;
until then the generated base class answers UNIMPLEMENTED.
"""

from privacam.clips.v1 import clip_service_pb2_grpc as pb_grpc


class ClipIngestServicer(pb_grpc.ClipIngestServiceServicer):
    pass
