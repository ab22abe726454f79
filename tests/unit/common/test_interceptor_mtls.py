"""The shared interceptor over real mutual TLS, in-process: who gets in, and what they see."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from privacam.diagnostics.v1 import diagnostics_service_pb2 as pb
from privacam.diagnostics.v1 import diagnostics_service_pb2_grpc as pb_grpc
from services.common import diagnostics
from services.common.auth import Authorizer, NoRevocations
from services.common.clock import FakeClock
from services.common.interceptors import ServerInterceptor
from tests.pki_helpers import Identity, PkiFactory

METHOD = "/privacam.diagnostics.v1.DiagnosticsService/GetProbe"


@pytest.fixture(scope="module")
async def server_port(pki: PkiFactory) -> AsyncIterator[int]:
    server = grpc.aio.server(
        interceptors=[
            ServerInterceptor(Authorizer(diagnostics.POLICIES, NoRevocations()), "privacam.local")
        ]
    )
    servicer = diagnostics.Diagnostics("test", producer=None, clock=FakeClock())  # type: ignore[arg-type]
    pb_grpc.add_DiagnosticsServiceServicer_to_server(servicer, server)
    ca, cert, key = pki.service("key_manager").credentials()
    port = server.add_secure_port(
        "127.0.0.1:0",
        grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True),
    )
    await server.start()
    yield port
    await server.stop(0)


async def _get_probe(
    port: int, pki: PkiFactory, identity: Identity | None, probe_id: str = "0" * 32
) -> Any:
    """GetProbe over a fresh channel as `identity` (None: no client certificate)."""
    if identity is None:
        credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca_file.read_bytes())
    else:
        ca, cert, key = identity.credentials()
        credentials = grpc.ssl_channel_credentials(ca, key, cert)
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        return await pb_grpc.DiagnosticsServiceStub(channel).GetProbe(
            pb.GetProbeRequest(probe_id=probe_id), timeout=5
        )


def _handled(code: str) -> float:
    value = REGISTRY.get_sample_value(
        "grpc_server_handled_total",
        {
            "grpc_service": "privacam.diagnostics.v1.DiagnosticsService",
            "grpc_method": "GetProbe",
            "grpc_type": "unary",
            "grpc_code": code,
        },
    )
    return value or 0.0


async def test_operator_is_served(server_port: int, pki: PkiFactory) -> None:
    before = _handled("OK")
    response = await _get_probe(server_port, pki, pki.operator())
    assert response.received is False
    assert _handled("OK") == before + 1


def _refused(kind: str) -> float:
    value = REGISTRY.get_sample_value(
        "privacam_rpc_callers_refused_total",
        {
            "grpc_service": "privacam.diagnostics.v1.DiagnosticsService",
            "grpc_method": "GetProbe",
            "caller_kind": kind,
        },
    )
    return value or 0.0


async def test_a_service_not_on_the_allow_list_is_refused_and_counted(
    server_port: int, pki: PkiFactory
) -> None:
    before = _refused("service")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _get_probe(server_port, pki, pki.service("clip_ingest"))
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert raised.value.details() == (
        "service clip-ingest may not call this method; "
        "only operator identities may call this method"
    )
    assert _refused("service") == before + 1


@pytest.mark.parametrize("maker", ["camera", "app"])
async def test_cameras_and_apps_are_denied(server_port: int, pki: PkiFactory, maker: str) -> None:
    identity = getattr(pki, maker)("tenant-a", "dev-1")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _get_probe(server_port, pki, identity)
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "only operator identities may call" in (raised.value.details() or "")


async def test_bad_input_is_invalid_argument(server_port: int, pki: PkiFactory) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _get_probe(server_port, pki, pki.operator(), probe_id="not-a-probe")
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "32 hex digits" in (raised.value.details() or "")


async def test_no_client_certificate_is_refused_at_the_handshake(
    server_port: int, pki: PkiFactory
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _get_probe(server_port, pki, None)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_certificate_from_another_ca_is_refused(server_port: int, pki: PkiFactory) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _get_probe(server_port, pki, pki.foreign_operator())
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
