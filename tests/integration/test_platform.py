"""The skeleton's promises against real Kafka and real mutual TLS."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import grpc
import pytest
from opentelemetry import trace

from privacam_sdk import PrivacamClient
from services.common.telemetry import setup_tracing
from tests.harness import SERVICES, Platform, make_service


async def test_every_service_reports_serving_over_mtls(operator_client: PrivacamClient) -> None:
    for service in SERVICES:
        assert await operator_client.health(service) == "SERVING"


async def test_an_event_crosses_kafka_to_every_service_in_one_trace(
    operator_client: PrivacamClient,
) -> None:
    setup_tracing("integration-tests")
    with trace.get_tracer("tests").start_as_current_span("operator runs a probe") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        sent = await operator_client.send_probe("device_auth")
    # The gRPC call carried the caller's trace into device_auth ...
    assert sent.trace_id == trace_id
    # ... and the Kafka headers carried it to every consumer.
    seen: dict[str, str] = {}
    for _ in range(150):
        for service in SERVICES:
            if service not in seen:
                probe = await operator_client.get_probe(service, sent.probe_id)
                if probe.received:
                    assert probe.origin_service == "device_auth"
                    seen[service] = probe.trace_id
        if len(seen) == len(SERVICES):
            break
        await asyncio.sleep(0.1)
    assert seen == dict.fromkeys(SERVICES, trace_id)


async def _health_with(platform: Platform, credentials: grpc.ChannelCredentials) -> str:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.secure_channel(
        platform.services["clip_ingest"].endpoint, credentials
    ) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    return str(response.status)


async def test_a_call_without_client_certificate_is_refused(platform: Platform) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=platform.pki.ca_file.read_bytes())
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _health_with(platform, credentials)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_certificate_from_another_ca_is_refused(platform: Platform) -> None:
    ca, cert, key = platform.pki.foreign_operator().credentials()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _health_with(platform, grpc.ssl_channel_credentials(ca, key, cert))
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_camera_cannot_reach_operator_diagnostics(
    platform: Platform, profiles_home: Path
) -> None:
    profile = platform.profile("camera", platform.pki.camera("tenant-a", "cam-1"), profiles_home)
    async with PrivacamClient(profile) as camera:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await camera.send_probe("clip_ingest")
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_key_manager_is_closed_to_apps(platform: Platform, profiles_home: Path) -> None:
    from privacam.keys.v1 import key_manager_service_pb2 as keys_pb
    from privacam.keys.v1 import key_manager_service_pb2_grpc as keys_grpc

    profile = platform.profile("app", platform.pki.app("tenant-a", "phone-1"), profiles_home)
    async with PrivacamClient(profile) as app:
        stub = keys_grpc.KeyManagerServiceStub(app.channel("key_manager"))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GenerateDataKey(keys_pb.GenerateDataKeyRequest(), timeout=5)
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_prometheus_scrapes_every_service(platform: Platform) -> None:
    url = platform.stack_env["PRIVACAM_PROMETHEUS_URL"] + "/api/v1/targets?state=active"
    env = platform.namespace.rstrip(".")
    healthy: set[str] = set()
    for _ in range(60):
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            targets = json.load(response)["data"]["activeTargets"]
        healthy = {
            t["labels"]["service"]
            for t in targets
            if t["labels"].get("env") == env and t["health"] == "up"
        }
        if healthy == set(SERVICES):
            break
        import time

        time.sleep(1)
    assert healthy == set(SERVICES)


def test_sigterm_stops_a_service_gracefully(platform: Platform, tmp_path: Path) -> None:
    service = make_service(
        "retention", platform.pki, platform.stack_env, platform.namespace, tmp_path
    )
    service.start()
    service.wait_serving()
    assert service.stop(timeout=20) == 0
    log = service.log_file.read_text()
    assert '"message": "stopped"' in log


def test_helm_test_identity_reaches_health_over_mtls_and_nothing_else(platform: Platform) -> None:
    """The chart's `helm test` (services.common.healthcheck --mtls) against real services: its
    identity, a URI of no kind any service admits, gets SERVING over mutual TLS and checks the
    SPIFFE ID the server presents; a wrong expected ID fails the test; a real RPC refuses it."""
    import subprocess
    import sys

    from privacam.identity.v1 import device_auth_service_pb2 as device_pb
    from privacam.identity.v1 import device_auth_service_pb2_grpc as device_grpc

    test_id = f"spiffe://{platform.pki.trust_domain}/test/helm"
    identity = platform.pki.leaf("helm-test", test_id, issuer=platform.pki.service_ca)
    tls_dir = identity.cert_file.parent
    (tls_dir / "ca.crt").write_bytes(identity.ca_file.read_bytes())

    def check(service: str, expect: str) -> subprocess.CompletedProcess[str]:
        process = platform.services[service]
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "services.common.healthcheck",
                f"127.0.0.1:{process.health_port}",
                "--wait",
                "5",
                "--mtls",
                process.endpoint,
                "--tls-dir",
                str(tls_dir),
                "--expect-id",
                expect,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    for service in SERVICES:
        own = f"spiffe://{platform.pki.trust_domain}/service/{service.replace('_', '-')}"
        passed = check(service, own)
        assert passed.returncode == 0, passed.stderr
        assert "SERVING over mutual TLS" in passed.stdout
    wrong = check("key_manager", f"spiffe://{platform.pki.trust_domain}/service/device-auth")
    assert wrong.returncode != 0
    assert "presents" in wrong.stderr

    ca, cert, key = identity.credentials()
    with (
        grpc.secure_channel(
            platform.services["device_auth"].endpoint, grpc.ssl_channel_credentials(ca, key, cert)
        ) as channel,
        pytest.raises(grpc.RpcError) as refused,
    ):
        device_grpc.DeviceAuthServiceStub(channel).ListCameras(
            device_pb.ListCamerasRequest(), timeout=5
        )
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
