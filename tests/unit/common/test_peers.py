"""Peer channels: the targets accepted, round robin, keepalive that servers permit."""

from __future__ import annotations

import json

import grpc
import pytest
from pydantic import ValidationError

from services.common.errors import Unavailable
from services.common.peers import (
    DNS_MIN_RESOLVE_INTERVAL_MS,
    KEEPALIVE_TIME_MS,
    RETRY_SERVICE_CONFIG,
    PeerSettings,
    channel_options,
    unreachable,
)
from services.common.runtime import MIN_CLIENT_PING_INTERVAL_MS, server_options


@pytest.mark.parametrize(
    "target",
    [
        "127.0.0.1:7002",
        "privacam-key-manager.privacam.svc:8443",
        "dns:///privacam-key-manager-peers.privacam.svc:8443",
        "ipv4:127.0.0.2:7002",
        "ipv4:127.0.0.2:7002,127.0.0.3:7003,127.0.0.4:7004",
    ],
)
def test_accepts_host_port_and_resolver_targets(target: str) -> None:
    assert PeerSettings(key_manager=target).key_manager == target


@pytest.mark.parametrize(
    "target",
    [
        "dns:///no-port",
        "dns://8.8.8.8/key-manager:8443",  # an authority (DNS server) is not for us to pick
        "ipv4:127.0.0.2:7002,",
        "unix:/tmp/socket",
        "http://key-manager:8443",
        "key-manager:8443 ",
    ],
)
def test_refuses_other_targets(target: str) -> None:
    with pytest.raises(ValidationError):
        PeerSettings(key_manager=target)


def test_channels_round_robin_and_ping_slower_than_servers_permit() -> None:
    config = json.loads(RETRY_SERVICE_CONFIG)
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    options = dict(channel_options("dns:///key-manager:8443", PeerSettings()))
    assert options["grpc.keepalive_time_ms"] == KEEPALIVE_TIME_MS
    assert options["grpc.keepalive_permit_without_calls"] == 0
    assert options["grpc.dns_min_time_between_resolutions_ms"] == DNS_MIN_RESOLVE_INTERVAL_MS
    assert DNS_MIN_RESOLVE_INTERVAL_MS <= 1_000
    assert "grpc.default_authority" not in options
    assert MIN_CLIENT_PING_INTERVAL_MS < KEEPALIVE_TIME_MS


def test_ipv4_targets_are_checked_against_the_configured_name() -> None:
    settings = PeerSettings(ipv4_authority="key-manager.test")
    options = dict(channel_options("ipv4:127.0.0.2:1,127.0.0.3:2", settings))
    assert options["grpc.default_authority"] == "key-manager.test"


def test_servers_age_connections_out_from_settings() -> None:
    from tests.unit.common.test_settings import ExampleSettings

    settings = ExampleSettings.model_construct(
        max_message_bytes=4 * 1024 * 1024,
        max_connection_age_seconds=600.0,
        max_connection_age_grace_seconds=30.0,
    )
    options = dict(server_options(settings))
    assert options["grpc.max_connection_age_ms"] == 600_000
    assert options["grpc.max_connection_age_grace_ms"] == 30_000
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == MIN_CLIENT_PING_INTERVAL_MS


async def test_a_call_a_stopping_replica_dropped_is_retried() -> None:
    """A replica told to stop cancels the calls it had received but not yet started; the
    peer channel's retry policy sends such a call again (a rollout costs no call), and when
    retries run out the caller is told UNAVAILABLE (retry later), never INTERNAL."""
    attempts = 0

    async def flaky(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            await context.abort(grpc.StatusCode.CANCELLED, "server shutting down")
        return request

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(flaky)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.S", {"M": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    target = f"127.0.0.1:{port}"
    try:
        async with grpc.aio.insecure_channel(
            target, options=channel_options(target, PeerSettings())
        ) as channel:
            call = channel.unary_unary(
                "/t.S/M", request_serializer=None, response_deserializer=None
            )
            assert await call(b"ping", timeout=10) == b"ping"
            assert attempts == 3
            attempts = -100  # more than the policy's 5 attempts
            with pytest.raises(grpc.aio.AioRpcError) as dropped:
                await call(b"ping", timeout=10)
    finally:
        await server.stop(None)
    assert dropped.value.code() is grpc.StatusCode.CANCELLED
    assert isinstance(unreachable("key", dropped.value), Unavailable)
