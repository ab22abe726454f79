"""Certificate files read again when they change (services.common.certificates), and the
servers, peer channels and Kafka TLS contexts that follow them, over real TLS in-process."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from prometheus_client import REGISTRY

from services.common.certificates import WatchedFiles, client_context
from services.common.peers import Peers, PeerSettings
from services.common.settings import TlsSettings
from services.common.signed_state import StateSigning
from services.common.tls import server_credentials, service_certificates
from tests.pki_helpers import PkiFactory, write_secret_volume

EXPIRY = "privacam_certificate_expiry_timestamp_seconds"
RELOADS = "privacam_certificate_reloads_total"


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@dataclass
class Files:
    """A service's three files, written in place (not as a Secret volume)."""

    folder: Path
    pki: PkiFactory

    @property
    def settings(self) -> TlsSettings:
        return TlsSettings(
            ca_file=self.pki.ca_file,
            cert_file=self.folder / "tls.crt",
            key_file=self.folder / "tls.key",
        )

    def issue(
        self, lifetime: timedelta = timedelta(days=7)
    ) -> tuple[x509.Certificate, bytes, bytes]:
        return self.pki.service_certificate("key_manager", lifetime)

    def write(self, cert_pem: bytes, key_pem: bytes) -> None:
        (self.folder / "tls.crt").write_bytes(cert_pem)
        (self.folder / "tls.key").write_bytes(key_pem)


@pytest.fixture
def files(pki: PkiFactory, tmp_path: Path) -> Files:
    made = Files(tmp_path, pki)
    _, cert, key = made.issue()
    made.write(cert, key)
    return made


def _watch(files: Files, role: str) -> WatchedFiles:
    settings = files.settings
    return WatchedFiles(role, settings.ca_file, settings.cert_file, settings.key_file)


def test_new_files_are_loaded_and_the_gauge_moves(files: Files) -> None:
    watched = _watch(files, "test_new")
    first = watched.current.leaf
    assert _value(EXPIRY, certificate="test_new") == first.not_valid_after_utc.timestamp()
    assert watched.check() is False  # nothing changed: a stat, no read

    leaf, cert, key = files.issue(lifetime=timedelta(days=2))
    files.write(cert, key)
    assert watched.check() is True
    assert watched.current.leaf.serial_number == leaf.serial_number != first.serial_number
    assert _value(EXPIRY, certificate="test_new") == leaf.not_valid_after_utc.timestamp()
    assert _value(EXPIRY, certificate="test_new") < first.not_valid_after_utc.timestamp()
    assert _value(EXPIRY, certificate="test_new_ca") > leaf.not_valid_after_utc.timestamp()
    assert _value(RELOADS, certificate="test_new", result="reloaded") == 1


def test_half_written_certificate_keeps_the_current_one(
    files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    watched = _watch(files, "test_half")
    before = watched.current
    leaf, cert, key = files.issue()
    (files.folder / "tls.crt").write_bytes(cert[: len(cert) // 2])
    assert watched.check() is False
    assert watched.check() is False  # the same state of the files: counted and logged once
    assert watched.current is before
    assert _value(RELOADS, certificate="test_half", result="malformed_certificate") == 1
    assert [r.getMessage() for r in caplog.records].count(
        "new certificate files not usable; keeping the current ones"
    ) == 1

    files.write(cert, key)  # the write completes
    assert watched.check() is True
    assert watched.current.leaf.serial_number == leaf.serial_number


def test_key_that_is_not_the_certificates_is_refused(files: Files) -> None:
    watched = _watch(files, "test_mismatch")
    before = watched.current
    leaf, cert, key = files.issue()
    (files.folder / "tls.crt").write_bytes(cert)  # the key is not written yet
    assert watched.check() is False
    assert watched.current is before
    assert _value(RELOADS, certificate="test_mismatch", result="key_mismatch") == 1

    (files.folder / "tls.key").write_bytes(key)
    assert watched.check() is True
    assert watched.current.leaf.serial_number == leaf.serial_number


def test_missing_file_keeps_the_current_one(files: Files) -> None:
    watched = _watch(files, "test_missing")
    before = watched.current
    (files.folder / "tls.key").unlink()
    assert watched.check() is False
    assert watched.check() is False  # still missing: counted and logged once
    assert watched.current is before
    assert _value(RELOADS, certificate="test_missing", result="unreadable") == 1


def test_secret_volume_swap_is_seen(pki: PkiFactory, tmp_path: Path) -> None:
    """A kubelet's symlink swap changes no file's own mtime in place: stat follows links."""
    folder = tmp_path / "secret"
    _, cert, key = pki.service_certificate("key_manager")
    write_secret_volume(folder, {"tls.crt": cert, "tls.key": key})
    watched = WatchedFiles("test_volume", pki.ca_file, folder / "tls.crt", folder / "tls.key")
    leaf, cert, key = pki.service_certificate("key_manager")
    write_secret_volume(folder, {"tls.crt": cert, "tls.key": key})
    assert watched.check() is True
    assert watched.current.leaf.serial_number == leaf.serial_number


def test_unusable_files_stop_start_up(files: Files) -> None:
    (files.folder / "tls.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    with pytest.raises(ValueError, match="malformed_key"):
        _watch(files, "test_start")


class Recorder(HealthServicer):  # type: ignore[misc]
    """Health, remembering the serial of each caller's certificate."""

    def __init__(self) -> None:
        super().__init__()
        self.callers: list[int] = []

    async def Check(
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> health_pb2.HealthCheckResponse:
        (pem,) = context.auth_context()["x509_pem_cert"]
        self.callers.append(x509.load_pem_x509_certificate(pem).serial_number)
        return await super().Check(request, context)


@pytest.fixture
async def server(files: Files) -> AsyncIterator[tuple[int, Recorder]]:
    recorder = Recorder()
    await recorder.set("", health_pb2.HealthCheckResponse.SERVING)
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(recorder, server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(files.settings))
    await server.start()
    yield port, recorder
    await server.stop(0)


def _served_serial(port: int, ca_file: Path) -> int:
    """The serial of the certificate the server presents in a new handshake."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def test_server_and_peer_channels_follow_the_files(
    server: tuple[int, Recorder], files: Files
) -> None:
    """Calls run throughout; after the swap the server presents the new certificate in new
    handshakes and the peer channel presents the new one to the server; none fails."""
    port, recorder = server
    watched = service_certificates(files.settings)
    old = watched.current.leaf.serial_number
    peers = Peers(PeerSettings(device_auth=f"127.0.0.1:{port}"), files.settings)
    failures: list[BaseException] = []
    stop = asyncio.Event()

    async def calls() -> int:
        made = 0
        while not stop.is_set():
            try:
                stub = health_pb2_grpc.HealthStub(peers.channel("device_auth"))
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            except grpc.aio.AioRpcError as error:
                failures.append(error)
            made += 1
        return made

    load = [asyncio.create_task(calls()) for _ in range(4)]
    await asyncio.sleep(0.3)
    assert await asyncio.to_thread(_served_serial, port, files.pki.ca_file) == old
    leaf, cert, key = files.issue()
    files.write(cert, key)
    assert watched.check() is True
    await asyncio.sleep(0.5)
    stop.set()
    made = sum(await asyncio.gather(*load))
    await peers.stop()

    assert failures == []
    assert await asyncio.to_thread(_served_serial, port, files.pki.ca_file) == leaf.serial_number
    assert recorder.callers[0] == old
    assert recorder.callers[-1] == leaf.serial_number
    print(f"{made} calls, {recorder.callers.count(leaf.serial_number)} with the new certificate")


def test_state_records_signed_with_the_new_key(files: Files) -> None:
    signing = StateSigning.from_tls(files.settings, {"privacam.test.v1": "key-manager"})
    verifier = signing.verifier
    leaf, cert, key = files.issue()
    files.write(cert, key)
    assert service_certificates(files.settings).check() is True
    headers = signing.signer.headers("privacam.test.v1", b"k", b"v")
    signer_der = next(value for name, value in headers if name == "privacam-state-signer")
    assert x509.load_der_x509_certificate(signer_der).serial_number == leaf.serial_number
    assert signing.verifier is verifier  # replicas keep the object they started with
    verifier.verify("privacam.test.v1", b"k", b"v", headers)


async def test_kafka_client_context_presents_the_new_certificate(files: Files) -> None:
    """The SSLContext aiokafka holds is reloaded in place: the next connection presents the
    new certificate (checked by a TLS server that asks for client certificates)."""
    settings = files.settings
    seen: list[int] = []
    server_context = ssl.create_default_context(
        ssl.Purpose.CLIENT_AUTH, cafile=str(settings.ca_file)
    )
    server_context.verify_mode = ssl.CERT_REQUIRED
    server_context.load_cert_chain(settings.cert_file, settings.key_file)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        seen.append(x509.load_der_x509_certificate(der).serial_number)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    context = client_context("kafka_test", settings.ca_file, settings.cert_file, settings.key_file)

    async def connect() -> None:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost"
        )
        await asyncio.sleep(0.05)
        writer.close()

    await connect()
    leaf, cert, key = files.issue()
    files.write(cert, key)
    assert (
        client_context("kafka_test", settings.ca_file, settings.cert_file, settings.key_file)
        is context
    )
    await connect()
    server.close()
    await server.wait_closed()
    assert len(seen) == 2
    assert seen[0] != leaf.serial_number
    assert seen[1] == leaf.serial_number
