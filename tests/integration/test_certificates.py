"""Certificates rotated live (services.common.certificates): every service's certificate
files replaced the way cert-manager and the kubelet replace them, and a camera renewing its
own, while an SDK client's calls cross the services and their peers; no call fails."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.identity.v1.revocations_pb2 import RevocationRecord
from privacam_core.identity import PrincipalKind, spiffe_uri, subject_digest
from privacam_sdk import PrivacamClient, Profile
from privacam_sdk.clips import download_clip, list_clips, upload_clip
from privacam_sdk.enrollment import renew_certificate
from services.common import topics
from services.common.devpki import service_id
from services.common.kafka import EventProducer
from tests.harness import (
    SERVICES,
    Platform,
    ServiceProcess,
    cleanup_namespace,
    kafka_settings,
    make_services,
    metric,
    new_namespace,
    running,
    state_signing,
)
from tests.integration.test_replicas import home
from tests.media import make_mp4
from tests.pki_helpers import PkiFactory, write_secret_volume

EXPIRY = "privacam_certificate_expiry_timestamp_seconds"
RELOAD_INTERVAL_SECONDS = 0.5


@dataclass
class Rotating:
    platform: Platform
    volumes: dict[str, Path]
    """Each service's mounted Secret: ca.crt, tls.crt, tls.key behind ..data."""


def _issue(pki: PkiFactory, service: str, volume: Path, lifetime: timedelta) -> x509.Certificate:
    leaf, cert, key = pki.service_certificate(service, lifetime)
    write_secret_volume(
        volume, {"ca.crt": pki.ca_file.read_bytes(), "tls.crt": cert, "tls.key": key}
    )
    return leaf


@pytest.fixture(scope="module")
def rotating(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rotating]:
    """The six services on a PKI of their own, each reading its certificate from a
    Secret-volume layout this test may replace."""
    pki = PkiFactory(tmp_path_factory.mktemp("rotating-pki"))
    volumes = {name: tmp_path_factory.mktemp(f"secret-{name}") for name in SERVICES}
    for name, volume in volumes.items():
        _issue(pki, name, volume, timedelta(days=7))
    namespace = new_namespace(stack_env, "rotation")
    services = make_services(
        SERVICES,
        pki,
        stack_env,
        namespace,
        tmp_path_factory.mktemp("rotation-logs"),
        {"PRIVACAM_TLS_RELOAD_INTERVAL_SECONDS": str(RELOAD_INTERVAL_SECONDS)},
    )
    for name, service in services.items():
        service.env |= {
            "PRIVACAM_TLS_CA_FILE": str(volumes[name] / "ca.crt"),
            "PRIVACAM_TLS_CERT_FILE": str(volumes[name] / "tls.crt"),
            "PRIVACAM_TLS_KEY_FILE": str(volumes[name] / "tls.key"),
        }
    try:
        with running(*services.values()):
            yield Rotating(Platform(services, pki, namespace, stack_env), volumes)
    finally:
        cleanup_namespace(stack_env, namespace)


def presented_serial(service: ServiceProcess, ca_file: Path) -> int:
    """The serial of the certificate a service presents in a new TLS handshake."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", service.grpc_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def presents(service: ServiceProcess, ca_file: Path, serial: int) -> bool:
    return presented_serial(service, ca_file) == serial


def leaf_of(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


async def revoke_serials(platform: Platform, serials: dict[str, int]) -> None:
    """Revocation records of single certificates (by serial), as device_auth writes them:
    from then on every service refuses a caller still presenting one of them."""
    producer = EventProducer(
        kafka_settings(platform.stack_env, "device_auth", platform.namespace),
        "test-rotation",
        state_signing(platform.pki, "device_auth"),
    )
    await producer.start()
    try:
        now = datetime.now(UTC)
        for uri, serial in serials.items():
            record = RevocationRecord(
                subject_digest=subject_digest(uri),
                serial_numbers=[f"{serial:x}"],
                all_certificates=False,
            )
            record.revoked_at.FromDatetime(now)
            record.covers_until.FromDatetime(now + timedelta(days=7))
            await producer.send_raw(
                topics.REVOCATIONS, f"serial/{serial:x}".encode(), record.SerializeToString()
            )
    finally:
        await producer.stop()


@dataclass
class Traffic:
    calls: int = 0
    failures: list[BaseException] = field(default_factory=list)


async def camera_uploads(camera: Profile, stop: asyncio.Event, traffic: Traffic) -> None:
    """Uploads (clip_ingest, which calls device_auth and key_manager) one after another,
    over one client for the whole run, as a camera that stays up."""
    clip = make_mp4(2.0, seed=71)
    async with PrivacamClient(camera, timeout=20) as client:
        n = 0
        while not stop.is_set():
            try:
                assert (await upload_clip(client, clip, f"rotation-{n}")).created
            except Exception as error:  # every failure is the finding
                traffic.failures.append(error)
            traffic.calls += 1
            n += 1


async def app_calls(owner: Profile, device: str, stop: asyncio.Event, traffic: Traffic) -> None:
    """An app listing and playing clips (clip_ingest, then device_auth, access_log and
    key_manager for each play), and asking every service's health over mTLS."""
    async with PrivacamClient(owner, timeout=20) as client:
        while not stop.is_set():
            try:
                clips = [c async for c in list_clips(client, device)]
                if clips:
                    await download_clip(client, device, clips[0].clip_id)
                for service in ("relay_broker", "retention", "key_manager", "access_log"):
                    assert await client.health(service) == "SERVING"
                await client.device_auth().GetCamera(id_pb.GetCameraRequest(device_id=device))
            except Exception as error:
                traffic.failures.append(error)
            traffic.calls += 1


async def wait_for(check: Callable[[], bool], what: str, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.2)


async def test_certificates_rotate_live(rotating: Rotating, profiles_home: Path) -> None:
    """While a camera uploads and an app lists, plays and checks every service, every
    service's certificate files are swapped for new ones (kubelet-style) and the camera
    renews its own. Each service then presents its new certificate, its expiry gauge
    moves, and once the old certificates are revoked (by serial, so a caller still
    presenting one is refused) calls go on: every peer and the camera present new ones."""
    platform = rotating.platform
    services, pki = platform.services, platform.pki
    owner, camera, device = await home(platform, profiles_home)
    old = {name: leaf_of(volume / "tls.crt") for name, volume in rotating.volumes.items()}
    old_camera_pem = camera.cert_file.read_bytes()
    old_camera = x509.load_pem_x509_certificate(old_camera_pem)
    for name, service in services.items():
        assert presented_serial(service, pki.ca_file) == old[name].serial_number
        assert metric(service.metrics_port, EXPIRY, certificate="service") == (
            old[name].not_valid_after_utc.timestamp()
        )

    stop, traffic = asyncio.Event(), Traffic()
    load = [
        asyncio.create_task(camera_uploads(camera, stop, traffic)),
        asyncio.create_task(app_calls(owner, device, stop, traffic)),
    ]
    try:
        await asyncio.sleep(3)
        before = traffic.calls
        new = {
            name: _issue(pki, name, volume, timedelta(days=3))
            for name, volume in rotating.volumes.items()
        }
        async with PrivacamClient(camera) as renewing:
            new_camera = await renew_certificate(renewing)
        for name, service in services.items():
            await wait_for(
                partial(presents, service, pki.ca_file, new[name].serial_number),
                f"{name} presents its new certificate",
            )
            assert metric(service.metrics_port, EXPIRY, certificate="service") == (
                new[name].not_valid_after_utc.timestamp()
            )
        # Calls open on old peer channels end within their deadlines; then the old
        # certificates are revoked: any caller still presenting one is refused from now on.
        await asyncio.sleep(3)
        revoked = {
            spiffe_uri(
                pki.trust_domain, PrincipalKind.SERVICE, service_id(name)
            ): leaf.serial_number
            for name, leaf in old.items()
        }
        names = old_camera.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        camera_uri = names.value.get_values_for_type(x509.UniformResourceIdentifier)[0]
        revoked[camera_uri] = old_camera.serial_number
        await revoke_serials(platform, revoked)
        after_revocation = traffic.calls
        await asyncio.sleep(6)
    finally:
        stop.set()
        await asyncio.gather(*load)

    print(
        f"\n{traffic.calls} calls ({before} before the swap, {traffic.calls - after_revocation} "
        f"after the old certificates were revoked); camera serial {old_camera.serial_number:x} "
        f"renewed as {new_camera.serial_number:x}; failures: {traffic.failures}"
    )
    assert traffic.failures == []
    assert traffic.calls - after_revocation >= 4, "calls went on after the revocation"
    assert new_camera.serial_number != old_camera.serial_number
    assert leaf_of(camera.cert_file).serial_number == new_camera.serial_number
    # The revocation took: the camera's old certificate is refused now, so calls went on
    # only because every caller presented its new one.
    stale = Profile.create(
        f"{camera.name}-old",
        camera.ca_file.read_bytes(),
        old_camera_pem,
        camera.key_file.read_bytes(),
        camera.endpoints,
        camera.trust_domain,
        profiles_home,
    )
    async with PrivacamClient(stale) as client:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await renew_certificate(client)
    assert refused.value.code() in (
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    ), refused.value
