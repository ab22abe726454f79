"""A minimal OTLP/gRPC trace receiver for tests: the services export real spans to it.

The services use the standard OTLP exporter configured by `OTEL_*` variables, exactly as
in production; this receiver only keeps what arrives, so a test can assert the span tree
of one trace across processes, gRPC, MinIO and Kafka.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent import futures
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, object]


class SpanCollector(otlp_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.port = 0

    def Export(
        self, request: otlp.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> otlp.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            service = next(
                (
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ),
                "",
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=service,
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={
                                a.key: a.value.string_value or a.value.int_value
                                for a in span.attributes
                            },
                        )
                    )
        with self._lock:
            self._spans += received
        return otlp.ExportTraceServiceResponse()

    def start(self) -> str:
        """Serve on a free loopback port; returns the endpoint URL for OTEL_EXPORTER_OTLP_*."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        otlp_grpc.add_TraceServiceServicer_to_server(self, server)  # type: ignore[no-untyped-call]
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self._spans if s.trace_id == trace_id]

    async def wait_for(
        self, trace_id: str, *, services: set[str], within: float = 15
    ) -> list[ReceivedSpan]:
        """The trace's spans once every named service has exported at least one."""
        deadline = time.monotonic() + within
        while True:
            spans = self.trace(trace_id)
            if services <= {s.service for s in spans} or time.monotonic() > deadline:
                return spans
            await asyncio.sleep(0.2)


def exporter_environment(endpoint: str) -> dict[str, str]:
    """What a service needs to export to the collector; only sampled traces are recorded
    (a test samples the traces it starts), so other tests pay nothing for it."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_TRACES_SAMPLER": "parentbased_always_off",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
