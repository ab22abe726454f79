"""The synthetic Kafka probe every service serves: SREs' end-to-end check of the event path."""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from privacam.diagnostics.v1 import diagnostics_service_pb2 as pb
from privacam.diagnostics.v1 import diagnostics_service_pb2_grpc as pb_grpc
from privacam.diagnostics.v1.events_pb2 import DiagnosticsEvent, ProbeSent
from privacam_core.timestamps import to_timestamp
from services.common.auth import OPERATOR, MethodPolicies
from services.common.clock import Clock
from services.common.errors import InvalidArgument
from services.common.kafka import Delivery, EventProducer, Topic
from services.common.telemetry import trace_id_hex

DIAGNOSTICS_TOPIC: Topic[DiagnosticsEvent] = Topic("privacam.diagnostics.v1", DiagnosticsEvent)
SERVICE_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["DiagnosticsService"]
# Operators probe the platform; no service calls another's diagnostics.
POLICIES: MethodPolicies = {
    f"/{SERVICE_DESCRIPTOR.full_name}/SendProbe": OPERATOR,
    f"/{SERVICE_DESCRIPTOR.full_name}/GetProbe": OPERATOR,
}
_KEEP = 1000
# Probes are keyed by a fixed pseudo-tenant: they belong to no household.
_PROBE_KEY = "platform"


@dataclass(frozen=True)
class ReceivedProbe:
    origin_service: str
    trace_id: str
    received_at: datetime


class Diagnostics(pb_grpc.DiagnosticsServiceServicer):
    def __init__(self, service: str, producer: EventProducer, clock: Clock) -> None:
        self._service = service
        self._producer = producer
        self._clock = clock
        self._received: OrderedDict[str, ReceivedProbe] = OrderedDict()

    async def SendProbe(
        self, request: pb.SendProbeRequest, context: object
    ) -> pb.SendProbeResponse:
        probe_id = secrets.token_hex(16)
        event = DiagnosticsEvent(
            probe_sent=ProbeSent(
                probe_id=probe_id,
                origin_service=self._service,
                sent_at=to_timestamp(self._clock.now()),
            )
        )
        await self._producer.publish(DIAGNOSTICS_TOPIC, _PROBE_KEY, event)
        return pb.SendProbeResponse(probe_id=probe_id, trace_id=trace_id_hex())

    async def GetProbe(self, request: pb.GetProbeRequest, context: object) -> pb.GetProbeResponse:
        if len(request.probe_id) != 32 or not all(
            c in "0123456789abcdef" for c in request.probe_id
        ):
            raise InvalidArgument("probe_id must be the 32 hex digits SendProbe returned")
        probe = self._received.get(request.probe_id)
        if probe is None:
            return pb.GetProbeResponse(received=False)
        return pb.GetProbeResponse(
            received=True,
            origin_service=probe.origin_service,
            trace_id=probe.trace_id,
            received_at=to_timestamp(probe.received_at),
        )

    async def on_event(self, event: DiagnosticsEvent, delivery: Delivery) -> None:
        if event.WhichOneof("event") != "probe_sent":
            return
        probe = event.probe_sent
        self._received[probe.probe_id] = ReceivedProbe(
            probe.origin_service, trace_id_hex(), self._clock.now()
        )
        while len(self._received) > _KEEP:
            self._received.popitem(last=False)
