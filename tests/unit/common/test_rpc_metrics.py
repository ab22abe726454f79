"""The grpc_server_* series: counted without the client library's locks, exposed as it would
expose them (names, labels, cumulative buckets, `le` spelled as Go prints it)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from services.common.metrics import GRPC_SERVER

LABELS = {"grpc_service": "test.v1.Metrics", "grpc_method": "Count", "grpc_type": "unary"}


def _sample(name: str, **extra: str) -> float | None:
    return REGISTRY.get_sample_value(name, {**LABELS, **extra})


def test_calls_are_exposed_as_the_client_library_would() -> None:
    series = GRPC_SERVER.series("test.v1.Metrics", "Count", "unary")
    assert GRPC_SERVER.series("test.v1.Metrics", "Count", "unary") is series  # one per method
    for code, seconds in (("OK", 0.0004), ("OK", 0.001), ("NOT_FOUND", 0.02), ("OK", 45.0)):
        series.started += 1
        series.finished(code, seconds)
    series.refused("UNAVAILABLE")

    assert _sample("grpc_server_started_total") == 4
    assert _sample("grpc_server_handled_total", grpc_code="OK") == 3
    # grpc_code as Go spells it, which the convention's dashboards and alerts select.
    assert _sample("grpc_server_handled_total", grpc_code="NotFound") == 1
    assert _sample("grpc_server_handled_total", grpc_code="Unavailable") == 1
    # A bucket counts the calls at or below its bound; a refused call has no duration.
    assert _sample("grpc_server_handling_seconds_bucket", le="0.001") == 2
    assert _sample("grpc_server_handling_seconds_bucket", le="0.025") == 3
    assert _sample("grpc_server_handling_seconds_bucket", le="1.0") == 3
    assert _sample("grpc_server_handling_seconds_bucket", le="30.0") == 3
    assert _sample("grpc_server_handling_seconds_bucket", le="+Inf") == 4
    assert _sample("grpc_server_handling_seconds_count") == 4
    assert _sample("grpc_server_handling_seconds_sum") == pytest.approx(45.0214)
