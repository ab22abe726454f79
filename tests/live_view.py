"""A camera and a viewer app driving the real broker: control stream, StartLiveView, Signal,
and real WebRTC media between them (tests/webrtc_peers.py), talk-back included (the
camera plays what it hears into a MemorySink per session), and privacy mode (the camera
ends what runs when it turns private). Used by the integration tests, the relay
benchmark and the demo."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from aiortc import MediaStreamTrack
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from privacam.accesslog.v1 import access_log_service_pb2 as log_pb
from privacam.accesslog.v1 import access_log_service_pb2_grpc as log_grpc
from privacam.accesslog.v1 import log_pb2
from privacam.clips.v1 import clip_service_pb2 as clips_pb
from privacam.identity.v1 import device_auth_service_pb2 as identity_pb
from privacam.identity.v1 import privacy_pb2
from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.relay.v1 import relay_broker_service_pb2_grpc as pb_grpc
from privacam.relay.v1 import relay_pb2
from privacam_core.identity import principal_from_pem
from privacam_sdk import PrivacamClient, Profile
from privacam_sdk.camera import MAX_RECEIPT_AGE, LoggedViewer, SessionGate, SessionRefused
from privacam_sdk.clips import upload_clip
from privacam_sdk.enrollment import Enrollment
from privacam_sdk.live_view import (
    FingerprintRejected,
    Signer,
    sdp_fingerprints,
    sign_dtls_fingerprint,
    verify_camera_fingerprint,
)
from privacam_sdk.privacy import (
    CameraPrivacy,
    Feature,
    PrivacyEnforcer,
    PrivacyRefused,
    statement_digest,
)
from privacam_sdk.streams import close_stream
from privacam_sdk.talk_back import MemorySink, TalkBackPlayer
from tests.webrtc_peers import CameraPeer, ViewerPeer, ice_servers

SignalCall = grpc.aio.StreamStreamCall[pb.SignalRequest, pb.SignalResponse]
ControlCall = grpc.aio.StreamStreamCall[pb.CameraControlRequest, pb.CameraControlResponse]


async def logged(client: PrivacamClient, device_id: str) -> list[log_pb2.AccessRecord]:
    """A camera's entries in the household's log, as the app lists them."""
    entries = await log_grpc.AccessLogServiceStub(client.channel("access_log")).ListEntries(
        log_pb.ListEntriesRequest(device_id=device_id)
    )
    return [log_pb2.AccessRecord.FromString(e.record) for e in entries.entries]


async def notices_of(notices: Any, *kinds: str, within: float = 5) -> dict[str, pb.HouseholdNotice]:
    """The first notice of each of ``kinds`` from a StreamNotices call, keyed by kind in
    the order they came; fails after ``within`` seconds without all of them."""
    told: dict[str, pb.HouseholdNotice] = {}

    async def read() -> None:
        async for response in notices:
            kind = response.notice.WhichOneof("notice")
            if kind in kinds and kind not in told:
                told[kind] = response.notice
                if len(told) == len(kinds):
                    return
        raise AssertionError(f"the notice stream ended; told {sorted(told)} of {kinds}")

    await asyncio.wait_for(read(), within)
    return told


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


def key_and_chain(profile: Profile) -> tuple[ec.EllipticCurvePrivateKey, list[bytes]]:
    key = load_pem_private_key(profile.key_file.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    chain = x509.load_pem_x509_certificates(profile.cert_file.read_bytes())
    return key, [c.public_bytes(Encoding.DER) for c in chain]


@dataclass
class OwnedCamera:
    """A new household's owner app and a camera paired with the owner's key pinned."""

    owner: Profile
    tenant: str
    install: str
    camera: Profile
    device: str


async def pair_owned_camera(enrollment: Enrollment, name: str, password: str) -> OwnedCamera:
    """Register `name`, then pair a camera the way the app does: the owner's app hands its
    certificate to the camera with the claim token (QR code), and the camera pins its key
    to verify the owner's privacy statements."""
    owner, tenant = await enrollment.register_account(name, name, password)
    async with PrivacamClient(owner) as app:
        token = await app.device_auth().CreateClaimToken(identity_pb.CreateClaimTokenRequest())
        installs = await app.device_auth().ListAppInstalls(identity_pb.ListAppInstallsRequest())
    camera, device = await enrollment.enroll_camera(
        f"{name}-cam", token.claim_token, f"SN-{name}", [owner.cert_file.read_bytes()]
    )
    return OwnedCamera(owner, tenant, installs.installs[0].install_id, camera, device)


@dataclass
class _Served:
    """A session the camera answers: its signaling task, speaker gate and peer."""

    task: asyncio.Task[None]
    player: TalkBackPlayer
    peer: CameraPeer


@dataclass
class CameraAgent:
    """A camera online on the broker that answers with live video every session the
    household's log names, and only to the app the log names (privacam_sdk.camera), and
    follows the privacy statements its owner keys signed (privacam_sdk.privacy), ending
    its running views and talk-backs when it turns private."""

    profile: Profile
    relay_only: bool = False
    max_sessions: int = 4
    echo_heartbeats: bool = True
    max_receipt_age: timedelta = MAX_RECEIPT_AGE
    ends_views_when_private: bool = True
    """False: a camera older than that part of the contract, which refuses new views and
    talk-backs while private but leaves running views be (the platform refuses by itself)."""
    client: PrivacamClient = field(init=False)
    gate: SessionGate = field(init=False)
    welcome: pb.CameraWelcome | None = None
    closed_sessions: dict[str, int] = field(default_factory=dict)
    errors: list[Exception] = field(default_factory=list)
    """What went wrong answering sessions (each such session was ended FAILED)."""
    requests: dict[str, pb.SessionRequested] = field(default_factory=dict)
    """Every session request the camera received, by session id."""
    refusals: dict[str, str] = field(default_factory=dict)
    """Sessions the camera declined, with why (its log or viewer check failed)."""
    answered: set[str] = field(default_factory=set)
    """Sessions the camera answered (and so sent video to)."""
    privacy: CameraPrivacy = field(init=False)
    privacy_refusals: list[str] = field(default_factory=list)
    """Privacy statements the camera refused, with why (forged, replayed, another camera)."""
    speakers: dict[str, MemorySink] = field(default_factory=dict)
    """What the camera played through its speaker, per session (talk-back)."""
    players: dict[str, TalkBackPlayer] = field(default_factory=dict)
    """Each served session's gate between received audio and the speaker."""
    talk_requests: dict[str, list[pb.TalkRequested]] = field(default_factory=dict)
    talk_refusals: dict[str, str] = field(default_factory=dict)
    """Talk-backs the camera declined, with why (private, receipt refused)."""
    private_ends: dict[str, str] = field(default_factory=dict)
    """Sessions the camera ended because it turned private, with the mode's reason."""
    enforcer: PrivacyEnforcer = field(init=False)
    _serving: dict[str, _Served] = field(default_factory=dict)
    _viewers: dict[str, LoggedViewer] = field(default_factory=dict)
    _call: ControlCall | None = None
    _writing: asyncio.Lock = field(default_factory=asyncio.Lock)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _peers: list[CameraPeer] = field(default_factory=list)

    async def start(self) -> None:
        me = principal_from_pem(self.profile.cert_file.read_bytes(), self.profile.trust_domain)
        assert me.tenant_id is not None, "a camera's certificate names its household"
        self.gate = SessionGate(
            tenant_id=me.tenant_id,
            device_id=me.name,
            log_keys=self.profile.log_keys(),
            trusted_ca_pem=self.profile.ca_file.read_bytes(),
            trust_domain=self.profile.trust_domain,
            max_age=self.max_receipt_age,
        )
        self.privacy = CameraPrivacy(
            tenant_id=me.tenant_id,
            device_id=me.name,
            owner_keys=self.profile.owner_keys(),
            state_file=self.profile.privacy_state_file,
        )
        self.enforcer = PrivacyEnforcer(self.privacy, self._end_running)
        self.enforcer.start()
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
                    await self._write(pb.CameraControlRequest(heartbeat=message.heartbeat))
                elif which == "session_requested":
                    self._spawn(self._serve(message.session_requested))
                elif which == "privacy_statement":
                    await self._apply_privacy(message.privacy_statement)
                elif which == "talk_requested":
                    await self._talk(message.talk_requested)
                elif which == "talk_ended":
                    player = self.players.get(message.talk_ended.session_id)
                    if player is not None:
                        player.stop()
                elif which == "session_closed":
                    sid = message.session_closed.session_id
                    self.closed_sessions[sid] = message.session_closed.reason
                    if sid in self.players:
                        self.players[sid].stop()

    async def _apply_privacy(self, signed: privacy_pb2.SignedPrivacyStatement) -> None:
        answer = pb.PrivacyAnswer(statement_sha256=statement_digest(signed), applied=True)
        try:
            if self.privacy.apply(signed, datetime.now(UTC)):
                self.enforcer.changed()  # private now? what runs ends at once
        except PrivacyRefused as refused:
            self.privacy_refusals.append(str(refused))
            answer.applied, answer.refusal_reason = False, str(refused)[:128]
        await self._write(pb.CameraControlRequest(privacy_answer=answer))

    async def _end_running(self, reason: str) -> None:
        """Privacy mode began (PrivacyEnforcer): the speaker goes quiet and every running peer
        connection closes first, whatever the platform does; then each session is ended
        PRIVACY_MODE, which the broker logs as the end of that live view (and of its
        talk-back), and its signaling is left."""
        running = dict(self._serving) if self.ends_views_when_private else {}
        for served in running.values():
            served.player.stop()
        # Shielded, as in _answer: a close cut short leaves aiortc's close future pending.
        await asyncio.shield(
            asyncio.gather(*(_close_media(s.player, s.peer) for s in running.values()))
        )
        for sid, served in running.items():
            self.private_ends[sid] = reason
            with contextlib.suppress(grpc.aio.AioRpcError):
                await relay_stub(self.client).EndLiveView(
                    pb.EndLiveViewRequest(
                        session_id=sid, reason=relay_pb2.SESSION_END_REASON_PRIVACY_MODE
                    )
                )
            served.task.cancel()

    async def record_clip(self, data: bytes, clip_id: str) -> clips_pb.UploadClipResponse:
        """Record and upload an alert clip, unless privacy mode forbids recording."""
        self.privacy.check(Feature.CLIP_RECORDING, datetime.now(UTC))
        return await upload_clip(self.client, data, clip_id)

    async def _talk(self, request: pb.TalkRequested) -> None:
        """Play the session's audio once the log's entry verifies; otherwise decline."""
        sid = request.session_id
        self.talk_requests.setdefault(sid, []).append(request)
        answer = pb.TalkAnswer(session_id=sid, accepted=True)
        try:
            self.privacy.check(Feature.TALK_BACK, datetime.now(UTC))
            viewer, player = self._viewers.get(sid), self.players.get(sid)
            if viewer is None or player is None:
                raise SessionRefused("this camera serves no such session")
            player.start(self.gate.check_talk(request, viewer, datetime.now(UTC)))
        except (PrivacyRefused, SessionRefused) as refused:
            self.talk_refusals[sid] = str(refused)
            answer.accepted, answer.decline_reason = False, str(refused)[:128]
        await self._write(pb.CameraControlRequest(talk_answer=answer))

    async def _write(self, request: pb.CameraControlRequest) -> None:
        assert self._call is not None
        async with self._writing:  # one write at a time on the stream
            await self._call.write(request)

    async def _decline(self, session_id: str, refused: SessionRefused) -> None:
        self.refusals[session_id] = str(refused)
        await self._write(
            pb.CameraControlRequest(
                session_answer=pb.SessionAnswer(
                    session_id=session_id, accepted=False, decline_reason=str(refused)[:128]
                )
            )
        )

    def _refuse_if_private(self) -> None:
        try:
            self.privacy.check(Feature.LIVE_VIEW, datetime.now(UTC))
        except PrivacyRefused as private:
            raise SessionRefused(str(private)) from None

    async def _serve(self, request: pb.SessionRequested) -> None:
        self.requests[request.session_id] = request
        try:
            self._refuse_if_private()  # the camera's own state first, whatever the platform says
            viewer = self.gate.check_request(request, datetime.now(UTC))
        except SessionRefused as refused:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self._decline(request.session_id, refused)
            return
        try:
            await self._answer(request, viewer)
        except SessionRefused as refused:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self._decline(request.session_id, refused)
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

    async def _answer(self, request: pb.SessionRequested, viewer: LoggedViewer) -> None:
        """Signal, and answer once the app has proven it is the logged viewer."""
        key, chain = key_and_chain(self.profile)
        call = open_signal(relay_stub(self.client))
        await call.write(pb.SignalRequest(join=pb.SignalJoin(session_id=request.session_id)))
        self._viewers[request.session_id] = viewer
        sink = self.speakers[request.session_id] = MemorySink()
        player = self.players[request.session_id] = TalkBackPlayer(sink, self.privacy)
        peer = CameraPeer(
            key, chain, ice_servers(request.turn), self.relay_only, on_audio=player.attach
        )
        self._peers.append(peer)
        task = asyncio.current_task()
        assert task is not None
        self._serving[request.session_id] = _Served(task, player, peer)
        offer: str | None = None
        proof: pb.SignedDtlsFingerprint | None = None
        done = False
        try:
            async for response in call:
                if response.HasField("session_closed"):
                    break
                if not response.HasField("signal") or done:
                    continue
                if response.signal.HasField("description"):
                    offer = response.signal.description.sdp
                elif response.signal.HasField("fingerprint"):
                    proof = response.signal.fingerprint
                if offer is not None and proof is not None:
                    self.gate.check_viewer(viewer, proof, offer, datetime.now(UTC))
                    self._refuse_if_private()  # it may have begun while the app negotiated
                    done = True
                    self.answered.add(request.session_id)
                    answer, signed = await peer.answer(request.session_id, offer)
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
            self._serving.pop(request.session_id, None)
            # Shielded: a close cut short by stop()'s cancel leaves aiortc's close future
            # pending, and stop()'s own close of this peer would wait for it for ever.
            try:
                await asyncio.shield(_close_media(player, peer))
            finally:  # signaling last, even when stop() cancels the wait for the media
                await close_stream(call)

    async def stop(self) -> None:
        await self.enforcer.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._call is not None:
            await close_stream(self._call)
        for peer in self._peers:
            await peer.close()
        await self.client.close()


async def _close_media(player: TalkBackPlayer, peer: CameraPeer) -> None:
    await player.close()
    await peer.close()


def sign_offer(client: PrivacamClient, offer_sdp: str, session_id: str) -> pb.SignedDtlsFingerprint:
    """The app's proof to the camera that it is the viewer the log names: its offer's DTLS
    fingerprint signed with its own certificate key."""
    key, chain = key_and_chain(client.profile)
    ((algorithm, fingerprint),) = sdp_fingerprints(offer_sdp)
    return sign_dtls_fingerprint(key, chain, session_id, algorithm, fingerprint, Signer.APP)


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
        await close_stream(self.call)
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
    audio: MediaStreamTrack | None = None,
) -> LiveView:
    """Ask to watch, negotiate, verify the camera's signed fingerprint, wait for a frame.
    Raises FingerprintRejected (after telling the broker) when the answer was tampered with."""
    stub = relay_stub(client)
    asked = time.perf_counter()
    # The camera's pinned key, asked of device_auth while the session starts (no added wait).
    camera = asyncio.ensure_future(
        client.device_auth().GetCamera(identity_pb.GetCameraRequest(device_id=device_id))
    )
    try:
        started = await stub.StartLiveView(pb.StartLiveViewRequest(device_id=device_id, pin=pin))
    except BaseException:
        camera.cancel()
        raise
    call = open_signal(stub)
    await call.write(pb.SignalRequest(join=pb.SignalJoin(session_id=started.session_id)))
    viewer = ViewerPeer(ice_servers(started.turn), relay_only, audio)
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
    await call.write(
        pb.SignalRequest(
            signal=pb.SignalMessage(fingerprint=sign_offer(client, offer, started.session_id))
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
    pinned = (await camera).camera.key_sha256
    try:
        verify_camera_fingerprint(
            signed,
            session_id=started.session_id,
            device_id=device_id,
            answer_sdp=answer,
            trusted_ca_pem=ca_pem,
            trust_domain=trust_domain,
            now=datetime.now(UTC),
            pinned_key_sha256=pinned,
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
