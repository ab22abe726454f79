"""A Redis refusal (NOPERM) is our own configuration's fault: INTERNAL, logged, counted."""

from __future__ import annotations

import logging

import grpc
import pytest
from minio.error import S3Error
from redis.exceptions import NoPermissionError, ResponseError

from services.common import metrics
from services.common.errors import (
    object_store_refusal,
    report_store_refusal,
    status_for,
    store_refusal,
)


def _refusals() -> float:
    return float(metrics.STORE_REFUSALS.labels("redis")._value.get())


def test_refusals_are_classified_without_keys_or_values() -> None:
    command = NoPermissionError("this user has no permissions to run the 'flushall' command")
    key = NoPermissionError(
        "this user has no permissions to access one of the keys used as arguments"
    )
    channel = NoPermissionError(
        "this user has no permissions to access one of the channels used as arguments"
    )
    script = ResponseError(
        "The user executing the script can't access at least one of the keys mentioned in "
        "the command arguments script: af34, on @user_script:1."
    )
    assert store_refusal(command) == "command flushall"
    assert store_refusal(key) == "key"
    assert store_refusal(channel) == "channel"
    assert store_refusal(script) == "key in a script"
    assert store_refusal(ResponseError("WRONGTYPE Operation against a key")) is None
    for error in (command, key, channel, script):
        code, message = status_for(error)
        assert code is grpc.StatusCode.INTERNAL
        assert message == "internal error; the operators have been alerted"


def test_a_refusal_is_logged_for_operators_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    before = _refusals()
    error = NoPermissionError("this user has no permissions to run the 'keys' command")
    with caplog.at_level(logging.ERROR, logger="privacam.stores"):
        assert report_store_refusal(error, rpc_method="/x.v1.S/M")
    assert _refusals() == before + 1
    (record,) = caplog.records
    assert record.__dict__["refused"] == "command keys"
    assert record.__dict__["store"] == "redis"
    assert not report_store_refusal(ValueError("not a refusal"))
    assert _refusals() == before + 1


def test_a_minio_refusal_is_counted_without_the_object_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = float(metrics.STORE_REFUSALS.labels("minio")._value.get())
    error = S3Error(
        None,  # type: ignore[arg-type]
        "AccessDenied",
        "Access Denied.",
        resource="/privacam-clips/tenant-1234/camera-5678/clip",
        request_id="r",
        host_id="h",
    )
    assert object_store_refusal(error) == "AccessDenied"
    assert status_for(error)[0] is grpc.StatusCode.INTERNAL
    with caplog.at_level(logging.ERROR, logger="privacam.stores"):
        assert report_store_refusal(error, rpc_method="/x.v1.S/M")
    assert float(metrics.STORE_REFUSALS.labels("minio")._value.get()) == before + 1
    (record,) = caplog.records
    assert record.__dict__["store"] == "minio"
    assert record.__dict__["refused"] == "AccessDenied"
    assert "tenant-1234" not in caplog.text
    not_found = S3Error(None, "NoSuchKey", "gone", "/b/o", "r", "h")  # type: ignore[arg-type]
    assert object_store_refusal(not_found) is None
