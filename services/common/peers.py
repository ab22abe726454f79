"""Calls from one Privacam service to another: mTLS as the calling service, traced, bounded.

A service lists the peers it calls in its settings (`peers: PeerSettings`) and
gets their stubs from `Peers`, a runtime component that opens one channel per
peer on first use and closes them all at stop. Channels carry this process's
own service certificate, so the callee authorizes it as `service/<name>`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from privacam.accesslog.v1 import access_log_service_pb2_grpc as access_log_grpc
from privacam.clips.v1 import clip_service_pb2_grpc as clips_grpc
from privacam.identity.v1 import device_auth_service_pb2_grpc as identity_grpc
from privacam.keys.v1 import key_manager_service_pb2_grpc as keys_grpc
from privacam.relay.v1 import relay_broker_service_pb2_grpc as relay_grpc
from privacam.retention.v1 import retention_service_pb2_grpc as retention_grpc
from services.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PrivacamError,
    ResourceExhausted,
    Unavailable,
)
from services.common.settings import TlsSettings
from services.common.tls import channel_credentials, service_certificates

_HOST_PORT = r"[A-Za-z0-9.\-\[\]:]+:\d{1,5}"
# host:port (the default resolver, dns), dns:///host:port (dns named: every address the name
# has is a backend), or ipv4:a:port,b:port (fixed addresses; tests' replicas on 127.0.0.x).
_ENDPOINT = rf"^(?:(?:dns:///)?{_HOST_PORT}|ipv4:{_HOST_PORT}(?:,{_HOST_PORT})*)$"

# UNAVAILABLE and CANCELLED are retried: the call never reached a handler (down, shed under
# load, or, for CANCELLED, dropped unanswered by a replica that began to shut down as it
# arrived), or its handler could not reach a store, and the platform's writes are keyed by id
# or compare-and-set, so a retry meets its own earlier effect instead of repeating it. gRPC
# draws each wait at random up to the current backoff (jitter), so a crowd of retries
# spreads out instead of returning in step. Anything else is the callee's answer and is
# passed on.
#
# round_robin: a channel holds a connection to every address its target resolves to (with
# dns:/// and a headless Service, every ready replica) and spreads calls over them, instead
# of pick_first's one connection that keeps a replica added later idle; a connection that
# fails is left out until it reconnects. Resolution is repeated when a connection closes
# (e.g. a server's max connection age), so new replicas join within that age.
RETRY_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
                },
            }
        ],
    }
)


# Client keepalive: a ping after 30 s without reads, dropped after 10 s unanswered, so a
# replica that vanished (node lost, no RST) is left out in ~40 s rather than at the next
# call's deadline. Only while calls are open: an idle channel sends nothing. Servers permit
# pings every 20 s (runtime.server_options), below this, so they never answer too_many_pings.
KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000
# A channel asks DNS again when a replica goes away, but by default at most every 30 s: an
# answer a moment stale (the replica still listed) would leave it calling nobody for that
# long during a rollout. Asked again only on failures, so DNS sees little of it.
DNS_MIN_RESOLVE_INTERVAL_MS = 1_000


class PeerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRIVACAM_PEER_", extra="ignore", use_attribute_docstrings=True, frozen=True
    )

    device_auth: str = Field(default="127.0.0.1:7001", pattern=_ENDPOINT)
    """device_auth's mTLS API: host:port or dns:///host:port (calls spread round robin over
    every address of the name: a headless Service's ready pods), or ipv4:a:port,b:port."""
    key_manager: str = Field(default="127.0.0.1:7002", pattern=_ENDPOINT)
    """key_manager's mTLS API: host:port or dns:///host:port (calls spread round robin over
    every address of the name: a headless Service's ready pods), or ipv4:a:port,b:port."""
    clip_ingest: str = Field(default="127.0.0.1:7003", pattern=_ENDPOINT)
    """clip_ingest's mTLS API: host:port or dns:///host:port (calls spread round robin over
    every address of the name: a headless Service's ready pods), or ipv4:a:port,b:port."""
    relay_broker: str = Field(default="127.0.0.1:7004", pattern=_ENDPOINT)
    """relay_broker's mTLS API: host:port or dns:///host:port (calls spread round robin over
    every address of the name: a headless Service's ready pods), or ipv4:a:port,b:port."""
    retention: str = Field(default="127.0.0.1:7005", pattern=_ENDPOINT)
    """retention's mTLS API: host:port or dns:///host:port (calls spread round robin over
    every address of the name: a headless Service's ready pods), or ipv4:a:port,b:port."""
    access_log: str = Field(default="127.0.0.1:7006", pattern=_ENDPOINT)
    """access_log's mTLS API: host:port or dns:///host:port (calls spread round robin over
    every address of the name: a headless Service's ready pods), or ipv4:a:port,b:port."""
    ipv4_authority: str = Field(default="localhost", pattern=r"^[A-Za-z0-9.\-]+$")
    """Name the servers' certificates are checked against (and the calls' :authority) for
    ipv4: targets, which name no host (gRPC would check the address list itself)."""
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    """Default deadline of a call to another service."""


def channel_options(target: str, settings: PeerSettings) -> list[tuple[str, str | int]]:
    """Options of a channel to a peer: retries, round robin, keepalive."""
    named: list[tuple[str, str | int]] = []
    if target.startswith("ipv4:"):
        named = [("grpc.default_authority", settings.ipv4_authority)]
    return [
        *named,
        ("grpc.service_config", RETRY_SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", 8 * 1024 * 1024),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.dns_min_time_between_resolutions_ms", DNS_MIN_RESOLVE_INTERVAL_MS),
    ]


RETIRED_CHANNEL_GRACE_SECONDS = 120.0
"""How long calls already open on a channel whose certificate was replaced may still run
(every peer call has a deadline; the longest are export streams) before it is closed."""


class Peers:
    """Stubs of the other services, over channels opened on first use and reused.

    Channel credentials are fixed when a channel is made, so when this process's
    certificate files change (services.common.certificates) the next call opens new
    channels with the new material, and the old ones close once their open calls end."""

    def __init__(self, settings: PeerSettings, tls: TlsSettings) -> None:
        self.settings = settings
        self.timeout = settings.timeout_seconds
        self._certificates = service_certificates(tls)
        self._material = self._certificates.current
        self._credentials = channel_credentials(self._material)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._retiring: dict[asyncio.Task[None], grpc.aio.Channel] = {}

    def _follow_rotation(self) -> None:
        material = self._certificates.current
        if material is self._material:
            return
        self._material, self._credentials = material, channel_credentials(material)
        retired, self._channels = list(self._channels.values()), {}
        for channel in retired:
            task = asyncio.get_running_loop().create_task(
                channel.close(grace=RETIRED_CHANNEL_GRACE_SECONDS)
            )
            self._retiring[task] = channel
            task.add_done_callback(self._retiring.pop)

    def channel(self, peer: str) -> grpc.aio.Channel:
        """The channel to a peer by its settings name, e.g. "key_manager"."""
        self._follow_rotation()
        channel = self._channels.get(peer)
        if channel is None:
            target: str = getattr(self.settings, peer)
            channel = grpc.aio.secure_channel(
                target,
                self._credentials,
                options=channel_options(target, self.settings),
                interceptors=aio_client_interceptors(),  # type: ignore[no-untyped-call]
            )
            self._channels[peer] = channel
        return channel

    def device_auth(self) -> identity_grpc.DeviceAuthServiceAsyncStub:
        return identity_grpc.DeviceAuthServiceStub(self.channel("device_auth"))

    def key_manager(self) -> keys_grpc.KeyManagerServiceAsyncStub:
        return keys_grpc.KeyManagerServiceStub(self.channel("key_manager"))

    def clip_ingest(self) -> clips_grpc.ClipIngestServiceAsyncStub:
        return clips_grpc.ClipIngestServiceStub(self.channel("clip_ingest"))

    def relay_broker(self) -> relay_grpc.RelayBrokerServiceAsyncStub:
        return relay_grpc.RelayBrokerServiceStub(self.channel("relay_broker"))

    def retention(self) -> retention_grpc.RetentionServiceAsyncStub:
        return retention_grpc.RetentionServiceStub(self.channel("retention"))

    def access_log(self) -> access_log_grpc.AccessLogServiceAsyncStub:
        return access_log_grpc.AccessLogServiceStub(self.channel("access_log"))

    async def start(self) -> None:
        """Channels connect lazily: a peer that is down fails its calls, not our start."""

    async def stop(self) -> None:
        for channel in self._channels.values():
            await channel.close(grace=None)
        self._channels.clear()
        for task, channel in list(self._retiring.items()):
            task.cancel()
            await channel.close(grace=None)


def call_options(peers: Peers, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for a stub call: the default deadline unless one is given."""
    return {"timeout": peers.timeout, **overrides}


# A peer's answer that is about the caller's request (a camera not theirs, a wrong PIN, a
# lockout) goes back to the caller as is; these are those statuses.
PASSED_ON: dict[grpc.StatusCode, type[PrivacamError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
}
# CANCELLED from a peer is no answer either: a replica told to stop drops the calls it had
# received but not yet started (gRPC cancels them at once, grace or not), so a rollout
# would otherwise reach callers as INTERNAL.
UNREACHABLE = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
)


def passed_on(error: grpc.aio.AioRpcError) -> PrivacamError | None:
    """The caller's own error when the peer refused the request itself, else None."""
    passed = PASSED_ON.get(error.code())
    return passed(error.details() or error.code().name.lower()) if passed else None


def unreachable(peer: str, error: grpc.aio.AioRpcError) -> Unavailable | None:
    """Unavailable (retryable) when the peer could not be reached in time, else None."""
    if error.code() in UNREACHABLE:
        return Unavailable(f"the {peer} service is unavailable; retry later")
    return None
