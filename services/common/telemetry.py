"""Structured JSON logs, OpenTelemetry tracing and the Prometheus endpoint.

Tracing is configured by the standard OTEL_* variables: OTEL_TRACES_EXPORTER
(otlp, console or none; default none, so a laptop needs no collector),
OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL (grpc or http/protobuf),
OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and friends. Context crosses
gRPC through the OpenTelemetry interceptors and Kafka through message headers.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import trace
from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from prometheus_client import start_http_server
from pythonjsonlogger.json import JsonFormatter

from services.common.settings import SettingsError

# Keys whose values must never reach a log line, whoever passes them in `extra`.
_REDACTED_KEYS = frozenset(
    {
        "password",
        "pin",
        "token",
        "claim_token",
        "key",
        "data_key",
        "secret",
        "login",
        "email",
        "authorization",
        "csr",
        "plaintext",
    }
)


class _TraceAndRedact(logging.Filter):
    """Adds the current trace and span ids; blanks any field named like a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            record.trace_id = format(span.trace_id, "032x")
            record.span_id = format(span.span_id, "016x")
        for key in _REDACTED_KEYS.intersection(record.__dict__):
            setattr(record, key, "[redacted]")
        return True


def setup_logging(service: str, level: str) -> None:
    # Written out line by line even into a file or a pipe (block-buffered otherwise): a process
    # that is killed must not take the last lines it logged, which tell why, with it.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
        )
    )
    handler.addFilter(_TraceAndRedact())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Client libraries are chatty at INFO and may print addresses; keep their warnings.
    for noisy in ("aiokafka", "kafka", "urllib3", "faust", "mode"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


_provider: TracerProvider | None = None
_unrecorded_roots: IdGenerator | None = None


def unrecorded_roots() -> IdGenerator | None:
    """The id generator of spans, when only a caller's sampled trace is ever recorded (the
    default while nothing is exported); None when the sampler decides. A server handling a
    call that brings no trace, or an unsampled one, can then make its span from ids alone, as
    the sampler would, without the SDK's span machinery: a tenth of a small RPC's
    interceptor time."""
    return _unrecorded_roots


def setup_tracing(service: str, extra_processor: SpanProcessor | None = None) -> TracerProvider:
    """Install the global tracer provider once per process; returns it."""
    global _provider, _unrecorded_roots
    if _provider is not None:
        if extra_processor is not None:
            _provider.add_span_processor(extra_processor)
        return _provider
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    sampler = None
    if exporter == "none" and "OTEL_TRACES_SAMPLER" not in os.environ:
        # Nothing is exported, so record nothing a caller did not ask for: spans stay
        # non-recording (trace ids are still made and still cross gRPC and Kafka), which
        # saves about a fifth of a small RPC's time. A sampled parent is still honoured.
        sampler = ParentBased(ALWAYS_OFF)
    provider = TracerProvider(resource=resource_for(service), sampler=sampler)
    if exporter == "otlp":
        provider.add_span_processor(BatchSpanProcessor(otlp_exporter()))
    elif exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    if extra_processor is not None:
        provider.add_span_processor(extra_processor)
    trace.set_tracer_provider(provider)
    # Producer spans and trace headers on every aiokafka send, consumer spans on receive.
    AIOKafkaInstrumentor().instrument(tracer_provider=provider)
    # Client spans for MinIO (its client speaks HTTP through urllib3).
    URLLib3Instrumentor().instrument(tracer_provider=provider, url_filter=redact_object_path)
    _provider = provider
    _unrecorded_roots = provider.id_generator if sampler is not None else None
    return provider


def resource_for(service: str) -> Resource:
    """The process's resource: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES as the SDK
    reads them, with the service's own name only where the operator named none."""
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    return Resource.create({} if named else {"service.name": service})


def otlp_exporter() -> SpanExporter:
    """The OTLP exporter the standard variables ask for: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
    or OTEL_EXPORTER_OTLP_PROTOCOL, `grpc` (the default) or `http/protobuf`; each exporter
    reads its own endpoint, headers, certificate and timeout variables."""
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpSpanExporter,
        )

        return HttpSpanExporter()
    raise SettingsError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported; use grpc or http/protobuf"
    )


def redact_object_path(url: str) -> str:
    """Object names carry tenant and camera ids, and queries carry upload ids: a span keeps
    the scheme, host and bucket only."""
    parts = urlsplit(url)
    bucket = parts.path.lstrip("/").split("/", 1)[0]
    return urlunsplit((parts.scheme, parts.netloc, f"/{bucket}/..." if bucket else "/", "", ""))


def shutdown_tracing() -> None:
    if _provider is not None:
        _provider.shutdown()


def start_metrics_server(host: str, port: int) -> Any:
    """Serve /metrics (with the client's own process, platform and GC collectors)."""
    server, thread = start_http_server(port, addr=host)
    return server, thread


def trace_id_hex() -> str:
    """The current trace id as 32 hex digits, or '' outside a trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
