"""relay_broker against the real stack: real cameras and viewers speaking WebRTC (aiortc)
through the real broker, device_auth, access_log and coturn.

The module starts only the services a live view involves (device_auth, access_log,
relay_broker), as real processes like the session platform does: faster, and a live
view never depends on clips or keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import shutil
import time
import urllib.request
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from redis.asyncio import Redis

from privacam.accesslog.v1 import access_log_service_pb2 as log_pb
from privacam.accesslog.v1 import access_log_service_pb2_grpc as access_log_grpc
from privacam.accesslog.v1 import log_pb2
from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.identity.v1 import identity_pb2
from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.relay.v1 import relay_pb2
from privacam.types.v1 import types_pb2
from privacam_core.identity import PrincipalKind, principal_from_pem, spiffe_uri
from privacam_sdk import PrivacamClient, Profile
from privacam_sdk.live_view import FingerprintRejected
from services.relay_broker.adapters.links import camera_channel, turn_pb
from services.relay_broker.adapters.redis_state import RedisSessions
from services.relay_broker.domain import turn
from services.relay_broker.domain.model import Role, Session, Side, Viewer
from tests.harness import (
    Platform,
    ServiceProcess,
    cleanup_namespace,
    make_service,
    make_services,
    new_namespace,
    peer_env,
    running,
)
from tests.live_view import (
    CameraAgent,
    SignalCall,
    open_signal,
    read_signal,
    relay_stub,
    sign_offer,
    watch,
)
from tests.pki_helpers import PkiFactory
from tests.webrtc_peers import ViewerPeer, candidate_types, ice_servers

PASSWORD = "a long enough passphrase"
_FINGERPRINT = re.compile(r"^(a=fingerprint:sha-256 )([0-9A-F:]+)", re.MULTILINE)


LIVE_VIEW_SERVICES = ("device_auth", "access_log", "relay_broker")


@pytest.fixture(scope="module")
def platform(
    stack_env: dict[str, str], pki: PkiFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    namespace = new_namespace(stack_env, "relay")
    log_dir = tmp_path_factory.mktemp("relay-logs")
    services = make_services(LIVE_VIEW_SERVICES, pki, stack_env, namespace, log_dir)
    # A second broker replica of the same environment (same Redis keys, same consumer group).
    (log_dir / "second").mkdir()
    second = make_service("relay_broker", pki, stack_env, namespace, log_dir / "second")
    second.env.update(peer_env(services["relay_broker"]))
    try:
        with running(*services.values(), second):
            SECOND_BROKER.append(second)
            yield Platform(services, pki, namespace, stack_env)
    finally:
        SECOND_BROKER.clear()
        cleanup_namespace(stack_env, namespace)


SECOND_BROKER: list[ServiceProcess] = []
"""The module's second relay_broker replica."""


@dataclass
class Household:
    owner: Profile
    tenant: str
    camera: Profile
    device: str
    member: Profile
    """A second household: the owner shared the camera with it (LIVE)."""
    member_tenant: str
    grant_id: str


@pytest.fixture
async def household(platform: Platform, profiles_home: Path) -> Household:
    enrollment = platform.enrollment(profiles_home)
    suffix = secrets.token_hex(4)
    owner, tenant = await enrollment.register_account(
        f"rb-owner-{suffix}", f"rb-o-{suffix}", PASSWORD
    )
    member, member_tenant = await enrollment.register_account(
        f"rb-member-{suffix}", f"rb-m-{suffix}", PASSWORD
    )
    async with PrivacamClient(owner) as app:
        token = await app.device_auth().CreateClaimToken(id_pb.CreateClaimTokenRequest())
    camera, device = await enrollment.enroll_camera(
        f"rb-cam-{suffix}", token.claim_token, f"SN-{suffix}"
    )
    async with PrivacamClient(owner) as app:
        grant = await app.device_auth().CreateGrant(
            id_pb.CreateGrantRequest(
                device_id=device,
                grantee_login=f"rb-m-{suffix}",
                scopes=[identity_pb2.GRANT_SCOPE_LIVE],
            )
        )
    return Household(owner, tenant, camera, device, member, member_tenant, grant.grant.grant_id)


@pytest.fixture
async def camera(household: Household) -> AsyncIterator[CameraAgent]:
    agent = CameraAgent(household.camera)
    await agent.start()
    yield agent
    await agent.stop()


def _ca(platform: Platform) -> bytes:
    return platform.pki.ca_file.read_bytes()


def _metric(platform: Platform, name: str) -> float:
    """The sum of a metric over both broker replicas."""
    total = 0.0
    for broker in (platform.services["relay_broker"], *SECOND_BROKER):
        url = f"http://127.0.0.1:{broker.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
    return total


async def _next_notice(
    stream: AsyncIterable[pb.StreamNoticesResponse], kind: str
) -> pb.HouseholdNotice:
    async def find() -> pb.HouseholdNotice:
        async for response in stream:
            if response.notice.WhichOneof("notice") == kind:
                return response.notice
        raise AssertionError("notice stream ended")

    return await asyncio.wait_for(find(), 10)


async def test_owner_watches_directly_and_the_household_is_told(
    platform: Platform, household: Household, camera: CameraAgent
) -> None:
    async with PrivacamClient(household.owner) as owner:
        notices = relay_stub(owner).StreamNotices(pb.StreamNoticesRequest())
        await asyncio.sleep(0.3)  # the notice stream is subscribed
        view = await watch(
            owner, household.device, ca_pem=_ca(platform), trust_domain=platform.pki.trust_domain
        )
        try:
            started = await _next_notice(notices, "watching_started")
            assert started.device_id == household.device
            assert started.watching_started.session_id == view.session_id
            assert started.watching_started.viewer.tenant_id == household.tenant
            assert started.watching_started.viewer_role == relay_pb2.VIEWER_ROLE_OWNER
            await asyncio.sleep(0.5)
            assert view.viewer.frames >= 3
            assert view.viewer.selected_candidate_types() == ("host", "host")  # peer to peer
            ended = await relay_stub(owner).EndLiveView(
                pb.EndLiveViewRequest(session_id=view.session_id)
            )
            assert ended.HasField("ended_at")
            assert await view.closed_reason() == relay_pb2.SESSION_END_REASON_VIEWER_ENDED
            gone = await _next_notice(notices, "watching_ended")
            assert gone.watching_ended.session_id == view.session_id
            assert gone.watching_ended.reason == relay_pb2.SESSION_END_REASON_VIEWER_ENDED
        finally:
            notices.cancel()
            await view.close()
        # The household's log holds the session's start and end (the start before any credential).
        log = access_log_grpc.AccessLogServiceStub(owner.channel("access_log"))
        listed = await log.ListEntries(log_pb.ListEntriesRequest(device_id=household.device))
        records = [log_pb2.AccessRecord.FromString(entry.record) for entry in listed.entries]
        ours = [r for r in records if r.resource.session_id == view.session_id]
        assert len(ours) == 2
        for record in ours:
            assert record.purpose == types_pb2.ACCESS_PURPOSE_LIVE_VIEW
            assert record.resource.kind == log_pb2.RESOURCE_KIND_LIVE_SESSION
            assert record.resource.device_id == household.device
            assert record.principal.tenant_id == household.tenant
            assert record.service == "relay_broker"
        # Ended is ended: a second end is NOT_FOUND.
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await relay_stub(owner).EndLiveView(pb.EndLiveViewRequest(session_id=view.session_id))
        assert error.value.code() is grpc.StatusCode.NOT_FOUND


async def test_relay_only_frames_pass_through_coturn_and_are_counted(
    platform: Platform, household: Household
) -> None:
    agent = CameraAgent(household.camera, relay_only=True)
    await agent.start()
    before = _metric(platform, "privacam_relay_bytes_total")
    try:
        async with PrivacamClient(household.member) as member:  # the grantee watches
            view = await watch(
                member,
                household.device,
                ca_pem=_ca(platform),
                trust_domain=platform.pki.trust_domain,
                relay_only=True,
            )
            assert set(candidate_types(view.viewer.pc.localDescription.sdp)) == {"relay"}
            assert view.viewer.selected_candidate_types() == ("relay", "relay")
            await asyncio.sleep(1.0)
            assert view.viewer.frames >= 5
            await relay_stub(member).EndLiveView(pb.EndLiveViewRequest(session_id=view.session_id))
            await view.close()
    finally:
        await agent.stop()
    # coturn reports an allocation's traffic when it is released (and periodically).
    deadline = time.monotonic() + 15
    while _metric(platform, "privacam_relay_bytes_total") - before < 10_000:
        assert time.monotonic() < deadline, "coturn's traffic reports never arrived"
        await asyncio.sleep(0.5)


def _splice(answer: str, signed: pb.SignedDtlsFingerprint) -> tuple[str, pb.SignedDtlsFingerprint]:
    """What a platform in the middle would do: put its own DTLS fingerprint in the answer."""
    forged = ":".join(secrets.token_hex(1).upper() for _ in range(32))
    return _FINGERPRINT.sub(lambda m: m.group(1) + forged, answer), signed


async def test_a_spliced_fingerprint_makes_the_app_refuse(
    platform: Platform, household: Household, camera: CameraAgent
) -> None:
    before = _metric(platform, 'privacam_relay_sessions_ended_total{reason="fingerprint_rejected"}')
    async with PrivacamClient(household.owner) as owner:
        with pytest.raises(FingerprintRejected, match="did not sign"):
            await watch(
                owner,
                household.device,
                ca_pem=_ca(platform),
                trust_domain=platform.pki.trust_domain,
                tamper=_splice,
            )
    after = _metric(platform, 'privacam_relay_sessions_ended_total{reason="fingerprint_rejected"}')
    assert after == before + 1


async def test_bad_requests_get_clear_statuses(
    platform: Platform, household: Household, camera: CameraAgent, profiles_home: Path
) -> None:
    enrollment = platform.enrollment(profiles_home)
    suffix = secrets.token_hex(4)
    stranger, _ = await enrollment.register_account(f"rb-x-{suffix}", f"rb-x-{suffix}", PASSWORD)
    async with PrivacamClient(stranger) as other, PrivacamClient(household.owner) as owner:
        # Not yours: NOT_FOUND, as for a camera that does not exist.
        for device in (household.device, "00000000-0000-4000-8000-000000000000"):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await relay_stub(other).StartLiveView(pb.StartLiveViewRequest(device_id=device))
            assert error.value.code() is grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await relay_stub(owner).StartLiveView(pb.StartLiveViewRequest(device_id="Not An Id"))
        assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT

        # Malformed SDP and candidates: INVALID_ARGUMENT on the signaling stream.
        stub = relay_stub(owner)
        for bad in (
            pb.SignalMessage(
                description=pb.SessionDescription(type=pb.SDP_TYPE_OFFER, sdp="hello")
            ),
            pb.SignalMessage(candidate=pb.IceCandidate(candidate="candidate:1 1 UDP x y z")),
            pb.SignalMessage(
                description=pb.SessionDescription(type=pb.SDP_TYPE_ANSWER, sdp="v=0\r\n")
            ),
        ):
            started = await stub.StartLiveView(pb.StartLiveViewRequest(device_id=household.device))
            call = open_signal(stub)
            await call.write(pb.SignalRequest(join=pb.SignalJoin(session_id=started.session_id)))
            assert (await read_signal(call)).HasField("peer_joined")
            await call.write(pb.SignalRequest(signal=bad))
            with pytest.raises(grpc.aio.AioRpcError) as error:
                async for _ in call:
                    pass
            assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
        # Someone else's session is NOT_FOUND too.
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await relay_stub(other).EndLiveView(
                pb.EndLiveViewRequest(session_id=started.session_id)
            )
        assert error.value.code() is grpc.StatusCode.NOT_FOUND

        # A wrong PIN is PERMISSION_DENIED (device_auth counts it).
        await owner.device_auth().SetPin(
            id_pb.SetPinRequest(device_id=household.device, pin="4821")
        )
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.StartLiveView(
                pb.StartLiveViewRequest(device_id=household.device, pin="1111")
            )
        assert error.value.code() is grpc.StatusCode.PERMISSION_DENIED
        started = await stub.StartLiveView(
            pb.StartLiveViewRequest(device_id=household.device, pin="4821")
        )
        await stub.EndLiveView(pb.EndLiveViewRequest(session_id=started.session_id))


async def test_offline_camera_is_refused_at_once_and_drops_are_seen_within_seconds(
    platform: Platform, household: Household
) -> None:
    async with PrivacamClient(household.owner) as owner:
        stub = relay_stub(owner)
        began = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.StartLiveView(pb.StartLiveViewRequest(device_id=household.device))
        # Not UNAVAILABLE: no client retries it, and no server-error alert counts it.
        assert error.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "offline" in (error.value.details() or "")
        assert time.monotonic() - began < 2

        # A camera that stops answering heartbeats is offline within three of them.
        silent = CameraAgent(household.camera, echo_heartbeats=False)
        await silent.start()
        assert silent.welcome is not None
        assert silent.welcome.heartbeat_interval.ToTimedelta() == timedelta(seconds=0.5)
        presence = await stub.GetCameraPresence(
            pb.GetCameraPresenceRequest(device_ids=[household.device])
        )
        assert [c.online for c in presence.cameras] == [True]
        began = time.monotonic()
        while (
            (
                await stub.GetCameraPresence(
                    pb.GetCameraPresenceRequest(device_ids=[household.device])
                )
            )
            .cameras[0]
            .online
        ):
            assert time.monotonic() - began < 4, "a silent camera stayed online"
            await asyncio.sleep(0.1)
        await silent.stop()

        # A camera whose stream closes is offline at once, and its sessions end.
        agent = CameraAgent(household.camera)
        await agent.start()
        started = await stub.StartLiveView(pb.StartLiveViewRequest(device_id=household.device))
        call = open_signal(stub)
        await call.write(pb.SignalRequest(join=pb.SignalJoin(session_id=started.session_id)))
        # Both sides in before the camera drops: a join that arrives after the session
        # ended is refused NOT_FOUND, which is right but not what this part checks.
        assert (await read_signal(call)).HasField("peer_joined")
        await agent.stop()
        reason = None
        async for response in call:
            if response.HasField("session_closed"):
                reason = response.session_closed.reason
                break
        assert reason in (
            relay_pb2.SESSION_END_REASON_CAMERA_OFFLINE,
            relay_pb2.SESSION_END_REASON_CAMERA_ENDED,
        )
        presence = await stub.GetCameraPresence(
            pb.GetCameraPresenceRequest(device_ids=[household.device])
        )
        assert presence.cameras[0].online is False
        assert presence.cameras[0].HasField("since")


async def test_revoking_the_grant_ends_the_members_session_at_once(
    platform: Platform, household: Household, camera: CameraAgent
) -> None:
    async with PrivacamClient(household.member) as member, PrivacamClient(household.owner) as owner:
        started = await relay_stub(member).StartLiveView(
            pb.StartLiveViewRequest(device_id=household.device)
        )
        call = open_signal(relay_stub(member))
        await call.write(pb.SignalRequest(join=pb.SignalJoin(session_id=started.session_id)))
        assert (await read_signal(call)).HasField("peer_joined")
        await owner.device_auth().RevokeGrant(id_pb.RevokeGrantRequest(grant_id=household.grant_id))
        began = time.monotonic()

        async def closed() -> int:
            async for response in call:
                if response.HasField("session_closed"):
                    return response.session_closed.reason
            return -1

        assert await asyncio.wait_for(closed(), 10) == relay_pb2.SESSION_END_REASON_REVOKED
        assert time.monotonic() - began < 5
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await relay_stub(member).StartLiveView(
                pb.StartLiveViewRequest(device_id=household.device)
            )
        assert error.value.code() is grpc.StatusCode.NOT_FOUND


async def test_session_limits_per_camera(platform: Platform, household: Household) -> None:
    agent = CameraAgent(household.camera, max_sessions=1)
    await agent.start()
    try:
        async with PrivacamClient(household.owner) as owner:
            stub = relay_stub(owner)
            first = await stub.StartLiveView(pb.StartLiveViewRequest(device_id=household.device))
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.StartLiveView(pb.StartLiveViewRequest(device_id=household.device))
            assert error.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            await stub.EndLiveView(pb.EndLiveViewRequest(session_id=first.session_id))
            again = await stub.StartLiveView(pb.StartLiveViewRequest(device_id=household.device))
            await stub.EndLiveView(pb.EndLiveViewRequest(session_id=again.session_id))
    finally:
        await agent.stop()


async def test_each_side_renews_its_turn_credentials_and_coturn_takes_them(
    platform: Platform, household: Household, camera: CameraAgent
) -> None:
    async with (
        PrivacamClient(household.owner) as owner,
        PrivacamClient(household.camera) as device,
        PrivacamClient(household.member) as member,
    ):
        stub = relay_stub(owner)
        started = await stub.StartLiveView(pb.StartLiveViewRequest(device_id=household.device))
        sid = started.session_id
        request = pb.RenewTurnCredentialsRequest(session_id=sid)
        renewed = (await stub.RenewTurnCredentials(request)).turn
        assert renewed.username.endswith(f":{sid}.app")
        assert renewed.expires_at.ToDatetime() >= started.turn.expires_at.ToDatetime()
        viewer = ViewerPeer(ice_servers(renewed), relay_only=True)
        try:
            assert "relay" in candidate_types(await viewer.offer())  # coturn accepts them
        finally:
            await viewer.close()
        camera_side = (await relay_stub(device).RenewTurnCredentials(request)).turn
        assert camera_side.username.endswith(f":{sid}.camera")
        with pytest.raises(grpc.aio.AioRpcError) as error:  # not a side of this session
            await relay_stub(member).RenewTurnCredentials(request)
        assert error.value.code() is grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.RenewTurnCredentials(pb.RenewTurnCredentialsRequest(session_id="nope"))
        assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        await stub.EndLiveView(pb.EndLiveViewRequest(session_id=sid))
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.RenewTurnCredentials(request)
        assert error.value.code() is grpc.StatusCode.NOT_FOUND
        assert "ended" in (error.value.details() or "")


async def test_coturn_refuses_expired_credentials(platform: Platform) -> None:
    secret = platform.stack_env["PRIVACAM_TURN_SHARED_SECRET"].encode()
    uris = tuple(platform.stack_env["PRIVACAM_TURN_URIS"].split(","))
    past = datetime.now(UTC) - timedelta(hours=1)
    for when, expect_relay in ((past, False), (datetime.now(UTC), True)):
        grant = turn.issue(
            secret, uris, "3f1b2c4d-0000-4000-8000-000000000000", Side.APP, when, 600
        )
        viewer = ViewerPeer(ice_servers(turn_pb(grant)), relay_only=True)
        try:
            offer = await viewer.offer()
        finally:
            await viewer.close()
        assert ("relay" in candidate_types(offer)) is expect_relay


async def test_camera_and_viewer_on_different_replicas(
    platform: Platform, household: Household, camera: CameraAgent, profiles_home: Path
) -> None:
    """The camera's control stream is on the first replica; the app talks to the second."""
    endpoints = {**platform.endpoints(), "relay_broker": SECOND_BROKER[0].endpoint}
    viewer_profile = Profile.import_files(
        f"{household.owner.name}-second",
        household.owner.ca_file,
        household.owner.cert_file,
        household.owner.key_file,
        endpoints,
        platform.pki.trust_domain,
        profiles_home,
    )
    async with PrivacamClient(viewer_profile) as owner, PrivacamClient(household.owner) as home:
        notices = relay_stub(home).StreamNotices(pb.StreamNoticesRequest())  # first replica
        await asyncio.sleep(0.3)
        view = await watch(
            owner, household.device, ca_pem=_ca(platform), trust_domain=platform.pki.trust_domain
        )
        try:
            started = await _next_notice(notices, "watching_started")
            assert started.watching_started.session_id == view.session_id
            await asyncio.sleep(0.5)
            assert view.viewer.frames >= 3
            await relay_stub(owner).EndLiveView(pb.EndLiveViewRequest(session_id=view.session_id))
            assert await view.closed_reason() == relay_pb2.SESSION_END_REASON_VIEWER_ENDED
        finally:
            notices.cancel()
            await view.close()


# --- log before view, at the camera ------------------------------------------------------


@dataclass
class Forger:
    """Someone holding relay_broker's Redis credentials and nothing else (a stolen broker
    password, or coturn's host when it shared them): writes sessions and publishes requests
    exactly as the broker would, and watches with a stranger's app."""

    redis: Redis
    namespace: str
    app: PrivacamClient
    app_tenant: str
    app_id: str

    async def request(
        self, device_id: str, owner_tenant: str, session_id: str, receipt: log_pb2.Receipt | None
    ) -> None:
        now = datetime.now(UTC)
        session = Session(
            session_id=session_id,
            device_id=device_id,
            owner_tenant_id=owner_tenant,
            viewer=Viewer(self.app_tenant, self.app_id),
            role=Role.OWNER,
            grant_id="",
            started_at=now,
            expires_at=now + timedelta(minutes=10),
        )
        sessions = RedisSessions(self.redis, timedelta(hours=1), self.namespace)
        await self.redis.delete(f"{self.namespace}relay:session:{session_id}")  # a replay
        await sessions.create(
            session,
            camera_limit=8,
            app_limit=8,
            ttl=timedelta(minutes=1),
            lease_until=now + timedelta(minutes=1),
        )
        await self.name_viewer(session_id)
        requested = pb.SessionRequested(session_id=session_id)
        if receipt is not None:
            requested.receipt.CopyFrom(receipt)
        message = pb.CameraControlResponse(session_requested=requested)
        await self.redis.publish(
            self.namespace + camera_channel(device_id), message.SerializeToString()
        )

    async def name_viewer(self, session_id: str) -> None:
        """Make the broker's record of a session name the forger's app as its viewer."""
        key = f"{self.namespace}relay:session:{session_id}"
        await self.redis.hset(
            key, mapping={"viewer_tenant": self.app_tenant, "viewer_app": self.app_id}
        )

    async def watch(self, session_id: str) -> ViewerPeer:
        """Join as the app side, offer with its own signed fingerprint, wait for an answer."""
        call = open_signal(relay_stub(self.app))
        viewer = ViewerPeer()
        offer = await viewer.offer()
        try:
            await self._offer(call, session_id, offer)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return viewer  # the camera declined (and the broker ended it) before the offer

        async def until_closed() -> None:
            async for response in call:
                if response.HasField("signal") and response.signal.HasField("description"):
                    await viewer.accept(response.signal.description.sdp)  # an answer: media
                if response.HasField("session_closed"):
                    return

        with contextlib.suppress(TimeoutError, grpc.aio.AioRpcError):
            await asyncio.wait_for(until_closed(), 8)
        call.cancel()
        return viewer

    async def _offer(self, call: SignalCall, session_id: str, offer: str) -> None:
        await call.write(pb.SignalRequest(join=pb.SignalJoin(session_id=session_id)))
        await call.write(
            pb.SignalRequest(
                signal=pb.SignalMessage(
                    description=pb.SessionDescription(type=pb.SDP_TYPE_OFFER, sdp=offer)
                )
            )
        )
        await call.write(
            pb.SignalRequest(
                signal=pb.SignalMessage(fingerprint=sign_offer(self.app, offer, session_id))
            )
        )


@pytest.fixture
async def forger(
    platform: Platform, household: Household, profiles_home: Path
) -> AsyncIterator[Forger]:
    enrollment = platform.enrollment(profiles_home)
    suffix = secrets.token_hex(4)
    stranger, stranger_tenant = await enrollment.register_account(
        f"rb-stranger-{suffix}", f"rb-s-{suffix}", PASSWORD
    )
    me = principal_from_pem(stranger.cert_file.read_bytes(), stranger.trust_domain)
    # An insider with relay_broker's own Redis user: it may write the broker's keys.
    redis = Redis.from_url(platform.stack_env["PRIVACAM_RELAY_BROKER_REDIS_URL"])
    async with PrivacamClient(stranger) as app:
        yield Forger(redis, platform.namespace, app, stranger_tenant, me.name)
    await redis.aclose()


async def _refused(agent: CameraAgent, session_id: str) -> str:
    for _ in range(100):
        if session_id in agent.refusals:
            return agent.refusals[session_id]
        await asyncio.sleep(0.1)
    raise AssertionError(f"the camera did not refuse session {session_id}")


async def _log_entries(owner: PrivacamClient, device_id: str, session_id: str) -> int:
    """How many entries of the household's log are about this live session."""
    log = access_log_grpc.AccessLogServiceStub(owner.channel("access_log"))
    listed = await log.ListEntries(log_pb.ListEntriesRequest(device_id=device_id, page_size=500))
    records = [log_pb2.AccessRecord.FromString(e.record) for e in listed.entries]
    return sum(1 for r in records if r.resource.session_id == session_id)


async def test_forged_live_session_gets_no_video(
    platform: Platform, household: Household, forger: Forger, profiles_home: Path
) -> None:
    agent = CameraAgent(household.camera, max_receipt_age=timedelta(seconds=10))
    await agent.start()
    declined_before = _metric(platform, "privacam_relay_sessions_declined_total")
    forged: list[str] = []
    try:
        async with PrivacamClient(household.owner) as owner:
            # A real, logged view by the owner: its request (with its receipt) is what a
            # forger who reads the broker's channels gets to replay.
            view = await watch(
                owner,
                household.device,
                ca_pem=_ca(platform),
                trust_domain=platform.pki.trust_domain,
            )
            await view.close()  # the app leaving ends the session
            real = agent.requests[view.session_id].receipt

            # 1. A session written into Redis with no receipt at all.
            sid = str(uuid.uuid4())
            forged.append(sid)
            await forger.request(household.device, household.tenant, sid, None)
            viewer = await forger.watch(sid)
            assert "no access-log receipt" in await _refused(agent, sid)
            assert viewer.frames == 0
            assert sid not in agent.answered
            await viewer.close()

            # 2. Another camera's receipt (the owner's second camera, really logged).
            token = await owner.device_auth().CreateClaimToken(id_pb.CreateClaimTokenRequest())
            second, _ = await platform.enrollment(profiles_home).enroll_camera(
                f"rb-cam2-{secrets.token_hex(4)}", token.claim_token, f"SN-2-{secrets.token_hex(4)}"
            )
            other_agent = CameraAgent(second)
            await other_agent.start()
            try:
                other_device = principal_from_pem(
                    second.cert_file.read_bytes(), second.trust_domain
                ).name
                started = await relay_stub(owner).StartLiveView(
                    pb.StartLiveViewRequest(device_id=other_device)
                )
                for _ in range(50):
                    if started.session_id in other_agent.requests:
                        break
                    await asyncio.sleep(0.1)
                foreign = other_agent.requests[started.session_id].receipt
                await forger.request(
                    household.device, household.tenant, started.session_id, foreign
                )
                viewer = await forger.watch(started.session_id)
                assert "another camera" in await _refused(agent, started.session_id)
                assert viewer.frames == 0
                await viewer.close()
            finally:
                await other_agent.stop()

            # 3. Another viewer signaling: the broker logged the owner's session, the forger
            # makes the broker's record name its own app and signals first.
            started = await relay_stub(owner).StartLiveView(
                pb.StartLiveViewRequest(device_id=household.device)
            )
            await forger.name_viewer(started.session_id)
            viewer = await forger.watch(started.session_id)
            assert "not the logged viewer" in await _refused(agent, started.session_id)
            assert viewer.frames == 0
            assert started.session_id not in agent.answered
            await viewer.close()

            # 4. The owner's real receipt, expired: replayed to the camera after a restart
            # (which forgets the sessions it served) once it is older than the camera allows.
            await agent.stop()
            agent = CameraAgent(household.camera, max_receipt_age=timedelta(seconds=10))
            await agent.start()
            signed_at = real.tree_head.timestamp.ToDatetime(tzinfo=UTC)
            await asyncio.sleep(max(0.0, 11 - (datetime.now(UTC) - signed_at).total_seconds()))
            await forger.request(household.device, household.tenant, view.session_id, real)
            viewer = await forger.watch(view.session_id)
            assert "ago, more than" in await _refused(agent, view.session_id)
            assert viewer.frames == 0
            await viewer.close()

            # The forged session was never logged as started: its one entry is the end the
            # broker recorded when the camera declined it, naming the forger's app, so the
            # household sees the attempt. The broker counted every decline.
            (forged_sid,) = forged
            assert await _log_entries(owner, household.device, forged_sid) == 1
            declined = _metric(platform, "privacam_relay_sessions_declined_total")
            assert declined - declined_before >= 4
    finally:
        await agent.stop()


async def test_notice_only_to_owner_and_viewer(
    platform: Platform, household: Household, camera: CameraAgent, profiles_home: Path
) -> None:
    # A second member the camera is shared with: it must hear of nobody's viewing.
    suffix = secrets.token_hex(4)
    bystander, _ = await platform.enrollment(profiles_home).register_account(
        f"rb-by-{suffix}", f"rb-b-{suffix}", PASSWORD
    )
    async with PrivacamClient(household.owner) as owner:
        await owner.device_auth().CreateGrant(
            id_pb.CreateGrantRequest(
                device_id=household.device,
                grantee_login=f"rb-b-{suffix}",
                scopes=[identity_pb2.GRANT_SCOPE_LIVE],
            )
        )
    async with (
        PrivacamClient(household.owner) as owner,
        PrivacamClient(household.member) as member,
        PrivacamClient(bystander) as other,
    ):
        streams = {
            name: relay_stub(client).StreamNotices(pb.StreamNoticesRequest())
            for name, client in (("owner", owner), ("member", member), ("bystander", other))
        }
        await asyncio.sleep(0.3)  # the notice streams are subscribed
        try:
            # The member watches: the owner's household and the member are told.
            view = await watch(
                member,
                household.device,
                ca_pem=_ca(platform),
                trust_domain=platform.pki.trust_domain,
            )
            to_owner = (await _next_notice(streams["owner"], "watching_started")).watching_started
            to_member = (await _next_notice(streams["member"], "watching_started")).watching_started
            assert to_owner.session_id == to_member.session_id == view.session_id
            assert to_owner.grant_id == household.grant_id  # the owner knows who by the grant
            assert not to_owner.HasField("viewer")  # and learns no other household's ids
            assert household.member_tenant not in to_owner.SerializeToString().decode("latin-1")
            assert to_member.viewer.tenant_id == household.member_tenant  # its own app
            await relay_stub(member).EndLiveView(pb.EndLiveViewRequest(session_id=view.session_id))
            await view.close()
            # The owner watches: the members hear nothing.
            view = await watch(
                owner,
                household.device,
                ca_pem=_ca(platform),
                trust_domain=platform.pki.trust_domain,
            )
            owner_own = (await _next_notice(streams["owner"], "watching_started")).watching_started
            assert owner_own.viewer.tenant_id == household.tenant
            await relay_stub(owner).EndLiveView(pb.EndLiveViewRequest(session_id=view.session_id))
            await view.close()
            await _next_notice(streams["owner"], "watching_ended")
            for name in ("member", "bystander"):
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(_next_notice(streams[name], "watching_started"), 2)
        finally:
            for stream in streams.values():
                stream.cancel()


async def test_second_camera_certificate_gets_no_viewer(
    platform: Platform, household: Household, tmp_path: Path
) -> None:
    """Whoever holds device_auth's issuing key mints a second certificate for the camera
    with a key of their own and goes online as it: the broker takes it for the camera (the
    certificate is valid), but the app checks the answer's signer against the key the
    camera paired with (Camera.key_sha256) and ends the session before any media."""
    impostor_dir = tmp_path / "impostor"
    shutil.copytree(household.camera.directory, impostor_dir)
    uri = spiffe_uri(
        platform.pki.trust_domain, PrincipalKind.CAMERA, household.device, household.tenant
    )
    minted = platform.pki.leaf("minted-camera", uri, platform.pki.issuing)
    shutil.copy(minted.cert_file, impostor_dir / "tls.crt")
    shutil.copy(minted.key_file, impostor_dir / "tls.key")
    impostor = CameraAgent(replace(household.camera, directory=impostor_dir))
    await impostor.start()
    try:
        async with PrivacamClient(household.owner) as owner:
            shown = await owner.device_auth().GetCamera(
                id_pb.GetCameraRequest(device_id=household.device)
            )
            assert len(shown.camera.key_sha256) == 32
            with pytest.raises(FingerprintRejected, match="not the one it paired with"):
                await watch(
                    owner,
                    household.device,
                    ca_pem=_ca(platform),
                    trust_domain=platform.pki.trust_domain,
                )
    finally:
        await impostor.stop()
