from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from aiokafka import errors as kafka_errors
from redis import exceptions as redis_errors
from urllib3 import HTTPConnectionPool
from urllib3.exceptions import MaxRetryError

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


@pytest.mark.parametrize(
    "error",
    [
        redis_errors.ConnectionError("Error 111 connecting to 10.0.0.7:6379. Connection refused."),
        redis_errors.TimeoutError("Timeout reading from 10.0.0.7:6379"),
        redis_errors.BusyLoadingError("Redis is loading the dataset in memory"),
        kafka_errors.KafkaConnectionError("Unable to bootstrap from [('10.0.0.7', 9092)]"),
        kafka_errors.KafkaTimeoutError("Failed to update metadata after 40.0 secs."),
        # A broker restarting: its partitions have no leader for a while.
        kafka_errors.LeaderNotAvailableError(),
        kafka_errors.NotLeaderForPartitionError(),
        MaxRetryError(HTTPConnectionPool("10.0.0.7", 9000), "/clips/x", ConnectionRefusedError()),
    ],
)
def test_a_store_out_of_reach_is_unavailable_and_names_no_host(error: Exception) -> None:
    code, message = status_for(error)
    assert code is grpc.StatusCode.UNAVAILABLE  # clients retry it with backoff
    assert "10.0.0.7" not in message
    assert "retry" in message


def test_other_store_errors_are_still_bugs() -> None:
    """A wrong command or a broken script will not work on retry: INTERNAL, as before."""
    assert status_for(redis_errors.ResponseError("WRONGTYPE"))[0] is grpc.StatusCode.INTERNAL
    assert status_for(ConnectionError("a socket of our own"))[0] is grpc.StatusCode.INTERNAL
    assert status_for(kafka_errors.RecordTooLargeError())[0] is grpc.StatusCode.INTERNAL
