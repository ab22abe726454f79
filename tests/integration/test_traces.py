"""Traces SREs can follow: real spans exported over OTLP by every service, as one tree.

The services export with the standard OTLP exporter (configured by OTEL_* variables)
to a receiver the test session runs (tests/otlp_collector.py). Services record only
sampled traces; the test starts a sampled root span, so exactly its trace is recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind

from privacam_sdk import PrivacamClient
from privacam_sdk.clips import upload_clip
from services.common.telemetry import setup_tracing
from tests.harness import SERVICES, Platform
from tests.integration.test_clip_ingest import _home
from tests.media import make_mp4
from tests.otlp_collector import ReceivedSpan, SpanCollector

_ROOTS = TracerProvider(sampler=ALWAYS_ON).get_tracer("tests")


@contextmanager
def sampled_trace(name: str) -> Iterator[str]:
    """A sampled root span in this process; yields its trace id (hex)."""
    setup_tracing("integration-tests")  # the SDK client's interceptor propagates through it
    with _ROOTS.start_as_current_span(name) as root:
        yield format(root.get_span_context().trace_id, "032x")


def parent_of(span: ReceivedSpan, spans: list[ReceivedSpan]) -> ReceivedSpan | None:
    return next((s for s in spans if s.span_id == span.parent_span_id), None)


def ancestors(span: ReceivedSpan, spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    chain = []
    current = parent_of(span, spans)
    while current is not None:
        chain.append(current)
        current = parent_of(current, spans)
    return chain


async def test_a_probe_is_one_span_tree_across_grpc_and_kafka(
    operator_client: PrivacamClient, span_collector: SpanCollector
) -> None:
    with sampled_trace("operator sends a probe") as trace_id:
        sent = await operator_client.send_probe("device_auth")
    spans = await span_collector.wait_for(trace_id, services=set(SERVICES))
    assert {s.service for s in spans} >= set(SERVICES)
    # device_auth served the call: a server span for SendProbe ...
    (served,) = [
        s
        for s in spans
        if s.service == "device_auth"
        and s.kind == SpanKind.SERVER.value + 1
        and "SendProbe" in s.name
    ]
    # ... under which it produced to Kafka ...
    sends = [
        s for s in spans if s.service == "device_auth" and s.kind == SpanKind.PRODUCER.value + 1
    ]
    assert sends, [(s.service, s.name, s.kind) for s in spans]
    assert any(served in ancestors(send, spans) for send in sends)
    # ... and every service consumed the probe in a consumer span whose ancestry reaches
    # device_auth's producer span: one tree, not a trace id copied by hand.
    for service in SERVICES:
        received = [
            s for s in spans if s.service == service and s.kind == SpanKind.CONSUMER.value + 1
        ]
        assert received, f"{service} exported no consumer span for the probe"
        assert any(any(a in sends for a in ancestors(span, spans)) for span in received), (
            f"{service}'s consumer span is not under device_auth's producer span"
        )
    assert sent.trace_id == trace_id


async def test_a_clip_upload_is_one_span_tree_from_camera_to_retention(
    platform: Platform, profiles_home: Path, span_collector: SpanCollector
) -> None:
    """Issue #9's trace: camera upload → clip_ingest → key_manager (gRPC) and MinIO →
    Kafka → retention, one tree."""
    home = await _home(platform, profiles_home)
    async with PrivacamClient(home.camera) as camera:
        with sampled_trace("camera uploads an alert clip") as trace_id:
            await upload_clip(camera, make_mp4(2.0), "traced-clip")
    spans = await span_collector.wait_for(
        trace_id, services={"clip_ingest", "key_manager", "retention"}
    )
    described = [(s.service, s.name, s.kind) for s in spans]
    server = SpanKind.SERVER.value + 1

    def one(service: str, kind: int, name_part: str) -> ReceivedSpan:
        found = [
            s for s in spans if s.service == service and s.kind == kind and name_part in s.name
        ]
        assert found, f"no {service} span like {name_part!r}: {described}"
        return found[0]

    upload = one("clip_ingest", server, "UploadClip")
    generate = one("key_manager", server, "GenerateDataKey")
    assert upload in ancestors(generate, spans), "the key request is not under the upload"
    minio = platform.stack_env["PRIVACAM_MINIO_ENDPOINT"]
    stored = [
        s
        for s in spans
        if s.service == "clip_ingest"
        and s.kind == SpanKind.CLIENT.value + 1
        and any(minio in str(value) for value in s.attributes.values())
    ]
    assert stored, f"no MinIO span under the upload: {described}"
    assert all(upload in ancestors(s, spans) for s in stored)
    # Object names carry tenant and camera ids: MinIO spans keep the bucket only.
    assert not any(home.tenant in str(s.attributes) for s in stored)
    produced = one("clip_ingest", SpanKind.PRODUCER.value + 1, "clips")
    assert upload in ancestors(produced, spans)
    consumed = [
        s for s in spans if s.service == "retention" and s.kind == SpanKind.CONSUMER.value + 1
    ]
    assert consumed, f"retention did not continue the trace: {described}"
    assert any(produced in ancestors(s, spans) for s in consumed)
