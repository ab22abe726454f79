"""The interceptor's server span: a caller's trace is continued and recorded when sampled;
a call without one gets ids (for logs and Kafka headers) and nothing recorded."""

from __future__ import annotations

from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.propagate import get_global_textmap
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from services.common.interceptors import _ServerSpan

METHOD = "/privacam.identity.v1.DeviceAuthService/GetCamera"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class _Context:
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> Any:
        return self._metadata

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50123"


def _server_span(
    fast_roots: bool, ids: IdGenerator | None = None
) -> tuple[_ServerSpan, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF), id_generator=ids)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = _ServerSpan(
        provider.get_tracer("test"),
        METHOD,
        frozenset(get_global_textmap().fields),
        provider.id_generator if fast_roots else None,
    )
    return span, exporter


def _call(span: _ServerSpan, metadata: tuple[tuple[str, str], ...]) -> trace.SpanContext:
    began = span.begin(_Context(metadata))  # type: ignore[arg-type]
    try:
        current = trace.get_current_span().get_span_context()
        assert current == began[0].get_span_context()
    finally:
        span.end(began, grpc.StatusCode.OK, None)
    assert trace.get_current_span() is trace.INVALID_SPAN  # the context is restored
    return current


def test_a_call_without_a_trace_gets_ids_and_records_nothing() -> None:
    for fast_roots in (True, False):
        span, exporter = _server_span(fast_roots)
        first = _call(span, (("user-agent", "grpc-python"),))
        second = _call(span, ())
        assert first.is_valid
        assert second.is_valid
        assert first.trace_id != second.trace_id
        assert not first.trace_flags.sampled
        assert exporter.get_finished_spans() == ()


def test_a_sampled_caller_trace_is_continued_and_recorded() -> None:
    span, exporter = _server_span(fast_roots=True)
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    context = _call(span, (("user-agent", "grpc-python"), ("traceparent", traceparent)))
    assert format(context.trace_id, "032x") == TRACE_ID
    (recorded,) = exporter.get_finished_spans()
    assert recorded.name == METHOD
    assert recorded.kind is trace.SpanKind.SERVER
    assert recorded.attributes is not None
    assert recorded.attributes["rpc.method"] == "GetCamera"
    assert recorded.attributes["rpc.grpc.status_code"] == 0
    assert recorded.attributes["net.peer.ip"] == "127.0.0.1"


def test_an_unsampled_caller_trace_is_continued_unrecorded() -> None:
    metadata = (
        ("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-00"),
        ("tracestate", "vendor=value"),
    )
    made = []
    for fast_roots in (True, False):  # from ids alone, as the SDK would make it
        span, exporter = _server_span(fast_roots)
        context = _call(span, metadata)
        assert format(context.trace_id, "032x") == TRACE_ID
        assert context.span_id != 0x00F067AA0BA902B7
        assert exporter.get_finished_spans() == ()
        made.append((context.trace_flags, context.trace_state, context.is_remote))
    assert made[0] == made[1]
    assert made[0][1].get("vendor") == "value"


class _CountingIds(RandomIdGenerator):
    def __init__(self) -> None:
        self.made = 0

    def generate_span_id(self) -> int:
        self.made += 1
        return super().generate_span_id()


def test_an_unrecorded_spans_ids_are_made_once_and_only_when_read() -> None:
    ids = _CountingIds()
    span, _ = _server_span(fast_roots=True, ids=ids)
    unread = span.begin(_Context(()))  # type: ignore[arg-type]
    span.end(unread, grpc.StatusCode.OK, None)
    assert ids.made == 0  # a call that never logs nor calls onwards needs none
    read = span.begin(_Context(()))  # type: ignore[arg-type]
    try:
        first = trace.get_current_span().get_span_context()
        assert first.is_valid
        assert trace.get_current_span().get_span_context() == first
        assert ids.made == 1
    finally:
        span.end(read, grpc.StatusCode.OK, None)
