"""A camera and a viewer app driving the real broker: control stream, StartLiveView, Signal,
and real WebRTC media between them (tests/webrtc_peers.py). Used by the integration tests,
the relay benchmark and the demo."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.relay.v1 import relay_broker_service_pb2_grpc as pb_grpc
from privacam.relay.v1 import relay_pb2
from privacam_sdk import PrivacamClient, Profile
from privacam_sdk.live_view import FingerprintRejected, verify_dtls_fingerprint
from tests.webrtc_peers import CameraPeer, ViewerPeer, ice_servers

SignalCall = grpc.aio.StreamStreamCall[pb.SignalRequest, pb.SignalResponse]
ControlCall = grpc.aio.StreamStreamCall[pb.CameraControlRequest, pb.CameraControlResponse]


def relay_stub(client: PrivacamClient) -> pb_grpc.RelayBrokerServiceAsyncStub:
    return pb_grpc.RelayBrokerServiceStub(client.channel("relay_broker"))


def open_signal(stub: pb_grpc.RelayBrokerServiceAsyncStub) -> SignalCall:
    """A Signal stream driven by write() and read() (the stubs type only the iterator form)."""
    return stub.Signal()  # type: ignore[call-arg]


def open_control(stub: pb_grpc.RelayBrokerServiceAsyncStub) -> ControlCall:
    return stub.CameraControl()  # type: ignore[call-arg]


async def read_signal(call: SignalCall) -> pb.SignalResponse:
    response = await call.read()
    assert isinstance(response, pb.SignalResponse), response
    return response


def camera_key_and_chain(profile: Profile) -> tuple[ec.EllipticCurvePrivateKey, list[bytes]]:
    key = load_pem_private_key(profile.key_file.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    chain = x509.load_pem_x509_certificates(profile.cert_file.read_bytes())
    return key, [c.public_bytes(Encoding.DER) for c in chain]


@dataclass
class CameraAgent:
    """A camera online on the broker that answers every session with live video."""

    profile: Profile
    relay_only: bool = False
    max_sessions: int = 4
    echo_heartbeats: bool = True
    client: PrivacamClient = field(init=False)
    welcome: pb.CameraWelcome | None = None
    closed_sessions: dict[str, int] = field(default_factory=dict)
    errors: list[Exception] = field(default_factory=list)
    """What went wrong answering sessions (each such session was ended FAILED)."""
    _call: ControlCall | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _peers: list[CameraPeer] = field(default_factory=list)

    async def start(self) -> None:
        self.client = PrivacamClient(self.profile, timeout=10)
        self._call = open_control(relay_stub(self.client))
        await self._call.write(
            pb.CameraControlRequest(
                hello=pb.CameraHello(firmware_version="1.0.0-test", max_sessions=self.max_sessions)
            )
        )
        first = await self._call.read()
        assert isinstance(first, pb.CameraControlResponse)
        assert first.HasField("welcome"), first
        self.welcome = first.welcome
        self._spawn(self._control())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _control(self) -> None:
        assert self._call is not None
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            async for message in self._call:
                which = message.WhichOneof("message")
                if which == "heartbeat" and self.echo_heartbeats:
                    await self._call.write(pb.CameraControlRequest(heartbeat=message.heartbeat))
                elif which == "session_requested":
                    self._spawn(self._serve(message.session_requested))
                elif which == "session_closed":
                    self.closed_sessions[message.session_closed.session_id] = (
                        message.session_closed.reason
                    )

    async def _serve(self, request: pb.SessionRequested) -> None:
        try:
            await self._answer(request)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        except Exception as error:  # the camera gives up on this session, and says so
            self.errors.append(error)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await relay_stub(self.client).EndLiveView(
                    pb.EndLiveViewRequest(
                        session_id=request.session_id, reason=relay_pb2.SESSION_END_REASON_FAILED
                    )
                )

    async def _answer(self, request: pb.SessionRequested) -> None:
        key, chain = camera_key_and_chain(self.profile)
        call = open_signal(relay_stub(self.client))
        await call.write(pb.SignalRequest(join=pb.SignalJoin(session_id=request.session_id)))
        peer = CameraPeer(key, chain, ice_servers(request.turn), self.relay_only)
        self._peers.append(peer)
        try:
            async for response in call:
                if response.HasField("session_closed"):
                    break
                if response.HasField("signal") and response.signal.HasField("description"):
                    answer, signed = await peer.answer(
                        request.session_id, response.signal.description.sdp
                    )
                    await call.write(
                        pb.SignalRequest(
                            signal=pb.SignalMessage(
                                description=pb.SessionDescription(
                                    type=pb.SDP_TYPE_ANSWER, sdp=answer
                                )
                            )
                        )
                    )
                    await call.write(pb.SignalRequest(signal=pb.SignalMessage(fingerprint=signed)))
        finally:
            await peer.close()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._call is not None:
            self._call.cancel()
        for peer in self._peers:
            await peer.close()
        await self.client.close()


Tamper = Callable[[str, pb.SignedDtlsFingerprint], tuple[str, pb.SignedDtlsFingerprint]]


@dataclass
class LiveView:
    """One app-side session: signaling call, WebRTC viewer, timings."""

    session_id: str
    turn: relay_pb2.TurnCredentials
    call: SignalCall
    viewer: ViewerPeer
    asked_at: float
    first_frame_after: float | None = None

    async def closed_reason(self, wait_seconds: float = 10) -> int:
        """Wait for the broker to close the session; its reason."""

        async def wait() -> int:
            async for response in self.call:
                if response.HasField("session_closed"):
                    return response.session_closed.reason
            return -1

        return await asyncio.wait_for(wait(), wait_seconds)

    async def close(self) -> None:
        self.call.cancel()
        await self.viewer.close()


async def watch(
    client: PrivacamClient,
    device_id: str,
    *,
    ca_pem: bytes,
    trust_domain: str,
    relay_only: bool = False,
    pin: str = "",
    tamper: Tamper | None = None,
    frame_timeout: float = 20,
) -> LiveView:
    """Ask to watch, negotiate, verify the camera's signed fingerprint, wait for a frame.
    Raises FingerprintRejected (after telling the broker) when the answer was tampered with."""
    stub = relay_stub(client)
    asked = time.perf_counter()
    started = await stub.StartLiveView(pb.StartLiveViewRequest(device_id=device_id, pin=pin))
    call = open_signal(stub)
    await call.write(pb.SignalRequest(join=pb.SignalJoin(session_id=started.session_id)))
    viewer = ViewerPeer(ice_servers(started.turn), relay_only)
    view = LiveView(started.session_id, started.turn, call, viewer, asked)
    first = await asyncio.wait_for(read_signal(call), frame_timeout)
    assert first.HasField("peer_joined"), first
    offer = await viewer.offer()
    await call.write(
        pb.SignalRequest(
            signal=pb.SignalMessage(
                description=pb.SessionDescription(type=pb.SDP_TYPE_OFFER, sdp=offer)
            )
        )
    )
    answer: str | None = None
    signed: pb.SignedDtlsFingerprint | None = None
    async with asyncio.timeout(frame_timeout):  # an app gives up on a camera that never answers
        while answer is None or signed is None:
            response = await read_signal(call)
            assert response.HasField("signal"), response
            if response.signal.HasField("description"):
                answer = response.signal.description.sdp
            elif response.signal.HasField("fingerprint"):
                signed = response.signal.fingerprint
    if tamper is not None:
        answer, signed = tamper(answer, signed)
    try:
        verify_dtls_fingerprint(
            signed,
            session_id=started.session_id,
            device_id=device_id,
            answer_sdp=answer,
            trusted_ca_pem=ca_pem,
            trust_domain=trust_domain,
            now=datetime.now(UTC),
        )
    except FingerprintRejected:
        await stub.EndLiveView(
            pb.EndLiveViewRequest(
                session_id=started.session_id,
                reason=relay_pb2.SESSION_END_REASON_FINGERPRINT_REJECTED,
            )
        )
        await view.close()
        raise
    await viewer.accept(answer)
    first_frame = await asyncio.wait_for(asyncio.shield(viewer.first_frame_at), frame_timeout)
    view.first_frame_after = first_frame - asked
    return view
