"""What identity costs: authenticated calls against no-op calls over the same mutual TLS.

A real device_auth process (real Kafka and Redis) serves both sides, and the same app
certificate makes every call:
(a) a new mTLS channel per call (full TLS 1.3 handshake with client certificate) followed by
    one authenticated GetCamera, against a new channel followed by one grpc.health Check (the
    no-op: the same handshake, no authorization); target at least 0.8x;
(b) GetCamera on one reused channel (certificate parsed once and cached, policy check, the
    owner-or-grantee check, a lookup) against health Check on the same channel and server;
    target at least 0.85x.
Twenty rounds of about half a second alternate between the two sides; the ratio is the median
of the ratios of adjacent rounds (benchmarks/timing.py says why).
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks import Result
from benchmarks.timing import paired_rates
from privacam.identity.v1 import device_auth_service_pb2 as pb
from privacam.identity.v1 import device_auth_service_pb2_grpc as pb_grpc
from privacam_sdk import PrivacamClient
from privacam_sdk.enrollment import Enrollment
from tests.harness import cleanup_namespace, local_stack, make_service, new_namespace
from tests.pki_helpers import PkiFactory

IN_FLIGHT = 4
ROUND_SECONDS = 0.5
ROUNDS = 20


async def _measure(endpoint: str, enroll_endpoint: str, ca: bytes, home: Path) -> list[Result]:
    enrollment = Enrollment(ca, enroll_endpoint, {"device_auth": endpoint}, home=home)
    owner, _ = await enrollment.register_account(
        "bench", f"bench-{secrets.token_hex(3)}", "a long enough passphrase"
    )
    async with PrivacamClient(owner) as app:
        token = await app.device_auth().CreateClaimToken(pb.CreateClaimTokenRequest())
    _, device = await enrollment.enroll_camera("bench-cam", token.claim_token, "SN-BENCH")
    credentials = grpc.ssl_channel_credentials(
        owner.ca_file.read_bytes(), owner.key_file.read_bytes(), owner.cert_file.read_bytes()
    )
    get_camera = pb.GetCameraRequest(device_id=device)
    health = health_pb2.HealthCheckRequest()

    async def fresh_authenticated(_: int) -> None:
        async with grpc.aio.secure_channel(endpoint, credentials) as channel:
            await pb_grpc.DeviceAuthServiceStub(channel).GetCamera(get_camera)

    async def fresh_noop(_: int) -> None:
        async with grpc.aio.secure_channel(endpoint, credentials) as channel:
            await health_pb2_grpc.HealthStub(channel).Check(health)

    fresh = await paired_rates(
        fresh_authenticated,
        fresh_noop,
        in_flight=IN_FLIGHT,
        rounds=ROUNDS,
        round_seconds=ROUND_SECONDS,
    )
    async with grpc.aio.secure_channel(endpoint, credentials) as channel:
        identity = pb_grpc.DeviceAuthServiceStub(channel)
        probes = health_pb2_grpc.HealthStub(channel)

        async def reused_authenticated(_: int) -> None:
            await identity.GetCamera(get_camera)

        async def reused_noop(_: int) -> None:
            await probes.Check(health)

        reused = await paired_rates(
            reused_authenticated,
            reused_noop,
            in_flight=IN_FLIGHT,
            rounds=ROUNDS,
            round_seconds=ROUND_SECONDS,
        )
    return [
        Result.compare(
            "new mTLS channel + GetCamera",
            fresh.figure,
            "calls/s",
            "new mTLS channel + health Check",
            fresh.baseline,
            0.8,
            fresh.ratio,
        ),
        Result.compare(
            "GetCamera, reused channel",
            reused.figure,
            "calls/s",
            "health Check, same channel",
            reused.baseline,
            0.85,
            reused.ratio,
        ),
    ]


def run() -> list[Result]:
    with local_stack() as stack, tempfile.TemporaryDirectory() as scratch:
        pki = PkiFactory(Path(scratch) / "pki")
        namespace = new_namespace(stack, "bench")
        service = make_service("device_auth", pki, stack, namespace, Path(scratch))
        service.start()
        try:
            service.wait_serving()
            return asyncio.run(
                _measure(
                    service.endpoint,
                    f"127.0.0.1:{service.public_port}",
                    pki.ca_file.read_bytes(),
                    Path(scratch) / "home",
                )
            )
        finally:
            service.stop()
            cleanup_namespace(stack, namespace)
