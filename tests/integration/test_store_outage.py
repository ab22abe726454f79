"""A store that goes away fails calls UNAVAILABLE, which clients retry, and nothing more.

device_auth runs here against a Redis of its own (append-only, so a restart keeps its
data) that the test stops and starts again, with the stack's redis-server:
- while Redis is down, a call fails UNAVAILABLE at once (not INTERNAL, which clients do not
  retry) with a message that names no host, and the service stays up;
- the SDK's retries carry a call across a short restart, and once Redis is back every
  call made through the SDK succeeds (its retries absorb the pooled connections Redis
  dropped, which fail one call each).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from redis import Redis
from redis.exceptions import RedisError

from privacam.identity.v1 import device_auth_service_pb2 as pb
from privacam.identity.v1 import device_auth_service_pb2_grpc as pb_grpc
from privacam_sdk import PrivacamClient
from privacam_sdk.enrollment import Enrollment
from privacam_sdk.profile import Profile
from services.common.errors import UNREACHABLE_MESSAGE
from services.common.healthcheck import serving
from tests.harness import (
    ServiceProcess,
    cleanup_namespace,
    free_port,
    make_service,
    metric,
    mtls_channel,
    new_namespace,
    running,
)
from tests.pki_helpers import PkiFactory


class PrivateRedis:
    """A redis-server on a free loopback port that keeps its data across restarts."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                "redis-server",
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)),
                *("--appendonly", "yes", "--appendfsync", "always", "--save", ""),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with Redis.from_url(self.url, socket_connect_timeout=1) as client:
                    client.ping()
                return
            except RedisError:
                assert time.monotonic() < deadline, "the private Redis did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=20)
            self._process = None


@dataclass
class Outage:
    redis: PrivateRedis
    service: ServiceProcess
    owner: Profile
    enrollment: Enrollment
    device_id: str


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture
async def outage(
    stack_env: dict[str, str], pki: PkiFactory, private_redis: PrivateRedis, tmp_path: Path
) -> AsyncIterator[Outage]:
    namespace = new_namespace(stack_env, "outage")
    # The private Redis has no ACL users: its default user (no password) is all there is.
    store = {**stack_env, "PRIVACAM_DEVICE_AUTH_REDIS_URL": private_redis.url}
    service = make_service("device_auth", pki, store, namespace, tmp_path)
    try:
        with running(service):
            enrollment = Enrollment(
                pki.ca_file.read_bytes(),
                f"127.0.0.1:{service.public_port}",
                {"device_auth": service.endpoint},
                home=tmp_path / "profiles",
            )
            owner, _ = await enrollment.register_account(
                "owner", "outage-owner", "a long passphrase"
            )
            async with PrivacamClient(owner) as app:
                token = await app.device_auth().CreateClaimToken(pb.CreateClaimTokenRequest())
            _, device_id = await enrollment.enroll_camera("cam", token.claim_token, "SN-OUTAGE")
            yield Outage(private_redis, service, owner, enrollment, device_id)
    finally:
        await asyncio.to_thread(cleanup_namespace, stack_env, namespace)


def _unavailable_answers(service: ServiceProcess, method: str = "CreateClaimToken") -> float:
    return metric(
        service.metrics_port,
        "grpc_server_handled_total",
        grpc_method=method,
        grpc_code="Unavailable",
    )


async def _first_attempt_refused(
    service: ServiceProcess, method: str, refused_before: float, call: asyncio.Task[Any]
) -> None:
    """Until the call's first attempt has been answered UNAVAILABLE (Redis is down), while
    the call itself is still waiting to retry."""
    deadline = time.monotonic() + 5
    while _unavailable_answers(service, method) == refused_before:
        assert time.monotonic() < deadline, "the call's first attempt never reached Redis"
        assert not call.done()
        await asyncio.sleep(0.01)


async def test_a_call_fails_unavailable_while_redis_is_down(outage: Outage) -> None:
    request = pb.CreateClaimTokenRequest()  # stores the token's hash in Redis
    async with mtls_channel(outage.service.endpoint, outage.owner) as channel:
        stub = pb_grpc.DeviceAuthServiceStub(channel)
        assert (await stub.CreateClaimToken(request)).claim_token
        outage.redis.stop()
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateClaimToken(request, timeout=15)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert refused.value.details() == UNREACHABLE_MESSAGE
    assert time.monotonic() - started < 6, "a refused connection should fail at once"
    assert serving(f"127.0.0.1:{outage.service.health_port}")
    log = outage.service.log_file.read_text()
    warnings = [line for line in log.splitlines() if "a store is unreachable" in line]
    assert warnings
    assert "Traceback" not in log
    for line in warnings:  # the store by its error class only, never its address
        assert f":{outage.redis.port}" not in line
        assert "127.0.0.1" not in line


async def test_the_sdk_carries_calls_across_a_short_redis_restart(outage: Outage) -> None:
    request = pb.CreateClaimTokenRequest()
    async with PrivacamClient(outage.owner, timeout=20) as app:
        identity = app.device_auth()
        # Several connections in the service's pool, all of which the restart drops.
        await asyncio.gather(*(identity.CreateClaimToken(request) for _ in range(8)))
        outage.redis.stop()
        refused_before = _unavailable_answers(outage.service)

        async def create_token() -> pb.CreateClaimTokenResponse:
            return await identity.CreateClaimToken(request)

        call = asyncio.create_task(create_token())
        await _first_attempt_refused(outage.service, "CreateClaimToken", refused_before, call)
        await asyncio.to_thread(outage.redis.start)
        token = (await call).claim_token
        answers = await asyncio.gather(*(identity.CreateClaimToken(request) for _ in range(8)))
        assert all(answer.claim_token for answer in answers)
        # The token made across the restart was kept: it pairs a camera.
        _, device_id = await outage.enrollment.enroll_camera("cam-2", token, "SN-OUTAGE-2")
    assert device_id != outage.device_id


async def test_a_redis_restart_costs_the_service_no_call(outage: Outage) -> None:
    """Without the SDK's retries: the service itself finds the connections Redis dropped
    (checked before use, a command that met a dead one sent again on a fresh one)."""
    request = pb.CreateClaimTokenRequest()
    async with mtls_channel(outage.service.endpoint, outage.owner) as channel:
        stub = pb_grpc.DeviceAuthServiceStub(channel)
        # Several connections in the service's pool, all of which the restart drops.
        await asyncio.gather(*(stub.CreateClaimToken(request) for _ in range(8)))
        refused_before = _unavailable_answers(outage.service)
        await asyncio.to_thread(outage.redis.stop)
        await asyncio.to_thread(outage.redis.start)
        answers = await asyncio.gather(*(stub.CreateClaimToken(request) for _ in range(8)))
    assert all(answer.claim_token for answer in answers)
    assert _unavailable_answers(outage.service) == refused_before


async def test_enrollment_retries_across_a_short_redis_restart(outage: Outage) -> None:
    """A new user's first step, RegisterAccount (its per-account password limit lives in
    Redis), is carried across a restart by the SDK's retries like any later call."""
    await asyncio.to_thread(outage.redis.stop)
    refused_before = _unavailable_answers(outage.service, "RegisterAccount")
    call = asyncio.create_task(
        outage.enrollment.register_account("late", "outage-late", "a long passphrase")
    )
    await _first_attempt_refused(outage.service, "RegisterAccount", refused_before, call)
    await asyncio.to_thread(outage.redis.start)
    profile, tenant = await asyncio.wait_for(call, 30)
    assert tenant
    assert profile.cert_file.exists()
