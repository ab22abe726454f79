from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from services.common.clock import FakeClock
from services.common.errors import NotFound, status_for


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock()
    start, mono = clock.now(), clock.monotonic()
    clock.advance(timedelta(days=7))
    assert clock.now() - start == timedelta(days=7)
    assert clock.monotonic() - mono == 7 * 86400
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(timedelta(seconds=-1))


def test_domain_errors_map_to_their_status_and_bugs_say_nothing() -> None:
    assert status_for(NotFound("camera not found")) == (
        grpc.StatusCode.NOT_FOUND,
        "camera not found",
    )
    code, message = status_for(KeyError("tenant-secret-id"))
    assert code is grpc.StatusCode.INTERNAL
    assert "tenant-secret-id" not in message
