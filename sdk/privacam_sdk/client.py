"""The async client: one mTLS channel per service, with retries and trace propagation.

The client follows its profile's certificate: when the files change (a renewal stored by
`privacam_sdk.enrollment.renew_certificate`, or by another process), the next channel it
hands out is a new one presenting the new certificate, and calls still open on the old
channels run to their end. Files that are not a whole, matching pair (half written) are
ignored until they are.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from types import TracebackType
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from privacam.clips.v1 import clip_service_pb2_grpc as clips_grpc
from privacam.diagnostics.v1 import diagnostics_service_pb2 as diagnostics_pb
from privacam.diagnostics.v1 import diagnostics_service_pb2_grpc as diagnostics_grpc
from privacam.identity.v1 import device_auth_service_pb2_grpc as identity_grpc
from privacam_sdk.profile import Profile

# Retry only what is safe to retry: the platform sheds load with UNAVAILABLE, a replica
# told to stop drops the calls it had not yet started with CANCELLED, and jittered
# exponential backoff keeps a fleet of reconnecting cameras from stampeding it after an
# outage.
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
                },
            },
            # A clip upload streams megabytes, more than gRPC buffers for a transparent
            # retry; with a retry policy a refused or cancelled upload can end INTERNAL or
            # linger. The camera retries the whole upload (same clip id: idempotent).
            {"name": [{"service": "privacam.clips.v1.ClipIngestService", "method": "UploadClip"}]},
        ]
    }
)

CHANNEL_OPTIONS = [("grpc.service_config", _SERVICE_CONFIG), ("grpc.enable_retries", 1)]
"""Options of every channel the SDK opens: the retry policy above."""

PROFILE_CHECK_SECONDS = 1.0
"""At most this often the client looks (a stat) whether its profile's files changed."""
RETIRED_CHANNEL_GRACE_SECONDS = 3600.0
"""How long calls open on a channel made with a replaced certificate may still run (a
camera's control stream: servers end a connection's streams sooner, after their maximum
connection age and its grace)."""


def _credentials(profile: Profile) -> grpc.ChannelCredentials:
    """The profile's credentials; ValueError unless its files are a whole, matching set."""
    ca, cert, key = (
        profile.ca_file.read_bytes(),
        profile.cert_file.read_bytes(),
        profile.key_file.read_bytes(),
    )
    try:
        leaf = x509.load_pem_x509_certificates(cert)[0]
        ok = leaf.public_key() == load_pem_private_key(key, None).public_key()
        x509.load_pem_x509_certificates(ca)
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise ValueError(f"profile {profile.name!r}: the certificate and key do not match")
    return grpc.ssl_channel_credentials(ca, key, cert)


def _stamp(profile: Profile) -> tuple[tuple[int, int, int], ...]:
    files = (profile.ca_file, profile.cert_file, profile.key_file)
    return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in map(os.stat, files))


class PrivacamClient:
    def __init__(self, profile: Profile, timeout: float = 10.0) -> None:
        self.profile = profile
        self.timeout = timeout
        self._stamp = _stamp(profile)
        self._credentials = _credentials(profile)
        self._checked = time.monotonic()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._retiring: dict[asyncio.Task[None], grpc.aio.Channel] = {}

    def _follow_profile(self) -> None:
        """New credentials (and so new channels) once the profile's files changed."""
        now = time.monotonic()
        if now - self._checked < PROFILE_CHECK_SECONDS:
            return
        self._checked = now
        try:
            stamp = _stamp(self.profile)
            if stamp == self._stamp:
                return
            self._credentials = _credentials(self.profile)
        except (OSError, ValueError):
            return  # mid-write: the next look tries again
        self._stamp = stamp
        retired, self._channels = self._channels, {}
        for channel in retired.values():
            task = asyncio.get_running_loop().create_task(
                channel.close(RETIRED_CHANNEL_GRACE_SECONDS)
            )
            self._retiring[task] = channel
            task.add_done_callback(self._retiring.pop)

    def channel(self, service: str) -> grpc.aio.Channel:
        """The mTLS channel to a service, opened on first use and reused."""
        self._follow_profile()
        if service not in self._channels:
            self._channels[service] = grpc.aio.secure_channel(
                self.profile.endpoint(service),
                self._credentials,
                options=CHANNEL_OPTIONS,
                interceptors=aio_client_interceptors(),  # type: ignore[no-untyped-call]
            )
        return self._channels[service]

    def untraced_channel(self, service: str) -> grpc.aio.Channel:
        """The same, without OpenTelemetry's client interceptor: for client-streaming calls
        the server may answer before the stream ends (a refused or repeated clip upload),
        which through that interceptor sometimes surfaces as INTERNAL ("Internal error from
        Core"). Callers propagate the trace context in metadata themselves."""
        key = f"{service} (untraced)"
        self._follow_profile()
        if key not in self._channels:
            self._channels[key] = grpc.aio.secure_channel(
                self.profile.endpoint(service),
                self._credentials,
                options=CHANNEL_OPTIONS,
            )
        return self._channels[key]

    async def health(self, service: str) -> str:
        """The service's overall health over mTLS: SERVING, NOT_SERVING or UNKNOWN."""
        stub = health_pb2_grpc.HealthStub(self.channel(service))
        response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=self.timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    def device_auth(self) -> identity_grpc.DeviceAuthServiceAsyncStub:
        """Accounts, cameras, settings, PINs and sharing (apps); renewal (cameras too)."""
        return identity_grpc.DeviceAuthServiceStub(self.channel("device_auth"))

    def clips(self) -> clips_grpc.ClipIngestServiceAsyncStub:
        """Alert clips: upload (cameras); list, download, delete (apps). See privacam_sdk.clips."""
        return clips_grpc.ClipIngestServiceStub(self.channel("clip_ingest"))

    def diagnostics(self, service: str) -> diagnostics_grpc.DiagnosticsServiceAsyncStub:
        return diagnostics_grpc.DiagnosticsServiceStub(self.channel(service))

    async def send_probe(self, service: str) -> diagnostics_pb.SendProbeResponse:
        return await self.diagnostics(service).SendProbe(
            diagnostics_pb.SendProbeRequest(), timeout=self.timeout
        )

    async def get_probe(self, service: str, probe_id: str) -> diagnostics_pb.GetProbeResponse:
        return await self.diagnostics(service).GetProbe(
            diagnostics_pb.GetProbeRequest(probe_id=probe_id), timeout=self.timeout
        )

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()
        for task, channel in list(self._retiring.items()):
            task.cancel()
            await channel.close(None)

    async def __aenter__(self) -> PrivacamClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def describe_error(error: grpc.aio.AioRpcError) -> str:
    """One line a person can act on, from a failed call."""
    code: Any = error.code()
    return f"{code.name}: {error.details()}"
