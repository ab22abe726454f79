"""The shared interceptor's load shedding: a bounded number of short calls in progress."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.common.interceptors import LoadShedder


def _shed(service: str) -> float:
    value = REGISTRY.get_sample_value("privacam_grpc_shed_total", {"grpc_service": service})
    return value or 0.0


def test_calls_beyond_the_limit_are_refused_and_counted() -> None:
    shedder = LoadShedder(limit=2)
    before = _shed("test.Shedding")
    assert shedder.admit("test.Shedding")
    assert shedder.admit("test.Shedding")
    assert not shedder.admit("test.Shedding")
    assert _shed("test.Shedding") == before + 1
    shedder.done()
    assert shedder.admit("test.Shedding")  # room again once a call ends
    assert shedder.in_flight == 2
