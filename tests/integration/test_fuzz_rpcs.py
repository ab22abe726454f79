"""Every RPC of every service, fed generated garbage by a caller it admits: a clear status, never
a crash. INTERNAL or UNKNOWN means a handler met input its validation let through.

Callers are certificates of the run's CA for tenants, cameras and installs that do not
exist, so nothing here touches another test's data; the values lean towards what breaks
validators (tests/proto_strategies.py). Bounded: a few examples per RPC in `make test`;
set PRIVACAM_FUZZ_EXAMPLES for a longer run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privacam_core.identity import PrincipalKind
from tests.harness import Platform
from tests.pki_helpers import Identity
from tests.proto_strategies import build, messages
from tests.rpcs import Rpc, all_rpcs

EXAMPLES = int(os.environ.get("PRIVACAM_FUZZ_EXAMPLES", "12"))
_SERVER_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


RPCS = all_rpcs()


class Callers:
    """One channel per (service, kind of caller), over mTLS with a made-up identity."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        tenant = str(uuid.uuid4())
        pki = platform.pki
        self.identities: dict[PrincipalKind, Identity] = {
            PrincipalKind.APP: pki.app(tenant, str(uuid.uuid4())),
            PrincipalKind.CAMERA: pki.camera(tenant, str(uuid.uuid4())),
            PrincipalKind.OPERATOR: pki.operator(),
        }
        self._channels: dict[tuple[str, PrincipalKind | None, str], grpc.Channel] = {}

    def channel(self, rpc: Rpc) -> grpc.Channel:
        kind = min(rpc.kinds, key=lambda k: k.value) if rpc.kinds else None
        if kind is None and f"{rpc.service}_enrollment" not in self.platform.endpoints():
            kind = PrincipalKind.OPERATOR  # closed to every caller: refused all the same
        # A service calls as one the method admits: some methods check which service calls.
        caller = min(rpc.services).replace("-", "_") if kind is PrincipalKind.SERVICE else ""
        key = (rpc.service, kind, caller)
        if key not in self._channels:
            endpoints = self.platform.endpoints()
            if kind is None:  # served without a client certificate, on the enrollment port
                credentials = grpc.ssl_channel_credentials(self.platform.pki.ca_file.read_bytes())
                target = endpoints[f"{rpc.service}_enrollment"]
            else:
                identity = (
                    self.platform.pki.service(caller)
                    if kind is PrincipalKind.SERVICE
                    else self.identities[kind]
                )
                ca, cert, key_pem = identity.credentials()
                credentials = grpc.ssl_channel_credentials(ca, key_pem, cert)
                target = endpoints[rpc.service]
            self._channels[key] = grpc.secure_channel(target, credentials)
        return self._channels[key]

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


@pytest.fixture(scope="module")
def callers(platform: Platform) -> Iterator[Callers]:
    made = Callers(platform)
    yield made
    made.close()


def _classes(rpc: Rpc) -> tuple[type[Message], type[Message]]:
    return GetMessageClass(rpc.method.input_type), GetMessageClass(rpc.method.output_type)


def _call(channel: grpc.Channel, rpc: Rpc, requests: list[Message]) -> grpc.StatusCode:
    request_class, response_class = _classes(rpc)
    serialize, deserialize = request_class.SerializeToString, response_class.FromString
    method = rpc.method
    try:
        if not method.client_streaming and not method.server_streaming:
            channel.unary_unary(rpc.path, serialize, deserialize)(requests[0], timeout=10)
        elif method.client_streaming and not method.server_streaming:
            channel.stream_unary(rpc.path, serialize, deserialize)(iter(requests), timeout=10)
        else:
            stream: Any
            if method.client_streaming:
                stream = channel.stream_stream(rpc.path, serialize, deserialize)(
                    iter(requests), timeout=3
                )
            else:
                stream = channel.unary_stream(rpc.path, serialize, deserialize)(
                    requests[0], timeout=3
                )
            for _ in stream:
                pass
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("rpc", RPCS, ids=str)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(data=st.data())
def test_garbage_gets_a_clear_status(callers: Callers, rpc: Rpc, data: st.DataObject) -> None:
    request_class, _ = _classes(rpc)
    count = data.draw(st.integers(1, 3)) if rpc.method.client_streaming else 1
    requests = [
        build(request_class, data.draw(messages(rpc.method.input_type))) for _ in range(count)
    ]
    code = _call(callers.channel(rpc), rpc, requests)
    assert code not in _SERVER_FAULTS, f"{rpc} answered {code.name} to {requests!r:.2000}"
    if rpc.method.server_streaming and code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return  # a stream that waits for more (a camera's control stream) is not a fault
    assert code is not grpc.StatusCode.DEADLINE_EXCEEDED, f"{rpc} hung on {requests!r:.500}"


def test_every_service_still_serves_after_the_garbage(callers: Callers, platform: Platform) -> None:
    from services.common.healthcheck import serving

    for service in platform.services.values():
        assert serving(f"127.0.0.1:{service.health_port}"), service.name
