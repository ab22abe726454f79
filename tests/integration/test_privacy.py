"""Privacy mode against the real stack (issue #27 part 2): the owner's app signs a mode,
device_auth logs and keeps it, relay_broker carries it to the camera, which applies only
statements signed by the owner key it pinned at pairing.

A view and a talk-back running when the camera turns private end then, whether a signed
statement or a schedule's window turned it: the camera stops its speaker and closes the
peer connection, and the end of each is in the household's log. Talk-back is refused by
the platform by itself too: with a camera that predates ending running views (its view
stays up), StartTalkBack in that view is refused naming the mode, and the camera, asked
anyway, declines and plays nothing.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from redis.asyncio import Redis

from privacam.accesslog.v1 import log_pb2
from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.identity.v1 import privacy_pb2
from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.relay.v1 import relay_pb2
from privacam.types.v1 import types_pb2
from privacam_sdk import PrivacamClient
from privacam_sdk.clips import upload_clip
from privacam_sdk.privacy import (
    Feature,
    Mode,
    PrivacyRefused,
    Window,
    make_statement,
    set_privacy_mode,
    sign_statement,
)
from privacam_sdk.talk_back import MemorySink, start_talk_back
from services.relay_broker.adapters.links import camera_channel
from tests.harness import Platform
from tests.live_view import (
    CameraAgent,
    LiveView,
    OwnedCamera,
    logged,
    notices_of,
    pair_owned_camera,
    relay_stub,
    watch,
)
from tests.media import make_mp4
from tests.webrtc_peers import ToneTrack

PASSWORD = "a long enough passphrase"


Home = OwnedCamera  # one household: its owner app and a camera that pinned its key


@pytest.fixture
async def home(platform: Platform, profiles_home: Path) -> Home:
    enrollment = platform.enrollment(profiles_home)
    home = await pair_owned_camera(enrollment, f"priv-{secrets.token_hex(4)}", PASSWORD)
    async with PrivacamClient(home.owner) as app:
        await app.device_auth().UpdateCameraSettings(
            id_pb.UpdateCameraSettingsRequest(device_id=home.device, activity_alerts_enabled=True)
        )
    return home


@pytest.fixture
async def camera(home: Home) -> AsyncIterator[CameraAgent]:
    agent = CameraAgent(home.camera)
    await agent.start()
    yield agent
    await agent.stop()


@pytest.fixture
async def broker_redis(platform: Platform) -> AsyncIterator[Redis]:
    client = Redis.from_url(platform.stack_env["PRIVACAM_RELAY_BROKER_REDIS_URL"])
    yield client
    await client.aclose()


async def _eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 5) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not within {within:g} s: {what}"
        await asyncio.sleep(0.1)


async def _refusal(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def _talk_back_refused(
    owner: PrivacamClient,
    home: Home,
    agent: CameraAgent,
    view: LiveView,
    broker_redis: Redis,
    namespace: str,
) -> None:
    """In a view still running while private (a camera that leaves running views be),
    StartTalkBack is FAILED_PRECONDITION naming the mode and the camera is never asked;
    asked anyway (straight on its channel, as whoever writes the broker's state could),
    it declines by itself. It played none of the app's audio."""
    code, details = await _refusal(start_talk_back(relay_stub(owner), view.session_id))
    assert code is grpc.StatusCode.FAILED_PRECONDITION, details
    assert f"camera {home.device} is in privacy mode (private until" in details
    assert "talk-back refused" in details
    assert agent.talk_requests == {}
    forced = pb.TalkRequested(session_id=view.session_id)
    await broker_redis.publish(
        namespace + camera_channel(home.device),
        pb.CameraControlResponse(talk_requested=forced).SerializeToString(),
    )

    async def declined() -> bool:
        return view.session_id in agent.talk_refusals

    await _eventually(declined, "the camera declined the talk-back by itself")
    assert agent.talk_refusals[view.session_id].startswith("the camera is in privacy mode")
    with pytest.raises(PrivacyRefused, match="privacy mode"):
        agent.privacy.check(Feature.TALK_BACK, datetime.now(UTC))
    assert agent.players[view.session_id].discarded > 0  # the app's tone did arrive
    assert agent.speakers[view.session_id].frames == []


def _relay_metric(platform: Platform, name: str) -> float:
    port = platform.services["relay_broker"].metrics_port
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " ")
    )


@pytest.fixture
async def old_camera(home: Home) -> AsyncIterator[CameraAgent]:
    """A camera that refuses new views and talk-backs while private but leaves a running
    view be (firmware from before that part of the contract): the platform's own refusal
    shows through it."""
    agent = CameraAgent(home.camera, ends_views_when_private=False)
    await agent.start()
    yield agent
    await agent.stop()


async def test_privacy_mode_refuses_view_and_clips(
    platform: Platform, home: Home, old_camera: CameraAgent, broker_redis: Redis
) -> None:
    ca, domain = platform.pki.ca_file.read_bytes(), platform.pki.trust_domain
    clip = make_mp4(6.0, seed=7)
    camera = old_camera
    async with PrivacamClient(home.owner) as owner:
        notices = relay_stub(owner).StreamNotices(pb.StreamNoticesRequest())
        await asyncio.sleep(0.3)  # the notice stream is subscribed
        # Opened before the owner asks, on a camera that keeps it running: the platform
        # must still refuse talk-back in it.
        talking_view = await watch(
            owner, home.device, ca_pem=ca, trust_domain=domain, audio=ToneTrack()
        )
        started = time.perf_counter()
        ends = datetime.now(UTC) + timedelta(seconds=8)
        await set_privacy_mode(owner, home.device, Mode("until", until=ends))

        async def applied() -> bool:
            return camera.privacy.private_reason(datetime.now(UTC)) is not None

        await _eventually(applied, "the camera applied the owner's statement")
        print(f"camera private {time.perf_counter() - started:.3f} s after the owner asked")

        notice = (await notices_of(notices, "privacy_mode"))["privacy_mode"]
        assert notice.device_id == home.device
        assert "private until" in notice.privacy_mode.summary
        notices.cancel()

        # Live view: the broker refuses, naming the mode.
        code, details = await _refusal(
            relay_stub(owner).StartLiveView(pb.StartLiveViewRequest(device_id=home.device))
        )
        assert code is grpc.StatusCode.FAILED_PRECONDITION
        assert f"camera {home.device} is in privacy mode (private until" in details
        # Clips: the camera records none, and clip_ingest refuses one sent anyway.
        with pytest.raises(PrivacyRefused, match="no clip recording"):
            await camera.record_clip(clip, "private-0")
        async with PrivacamClient(home.camera) as cam:
            code, details = await _refusal(upload_clip(cam, clip, "private-1"))
        assert code is grpc.StatusCode.FAILED_PRECONDITION
        assert f"camera {home.device} is in privacy mode" in details
        assert "clip uploads refused" in details
        await _talk_back_refused(
            owner, home, camera, talking_view, broker_redis, platform.namespace
        )
        await talking_view.close()

        # The change is in the household's log, named after the owner's app.
        entries = await logged(owner, home.device)
        changes = [r for r in entries if r.purpose == types_pb2.ACCESS_PURPOSE_PRIVACY_MODE]
        assert len(changes) == 1
        assert changes[0].principal.kind == types_pb2.PRINCIPAL_KIND_APP
        assert changes[0].principal.id == home.install

        # After the end, both work again.
        await asyncio.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()) + 0.2)
        view = await watch(owner, home.device, ca_pem=ca, trust_domain=domain)
        assert view.first_frame_after is not None
        await view.close()
        stored = await camera.record_clip(clip, "after-0")
        assert stored.created
    print(f"privacy window of 8 s observed end to end in {time.perf_counter() - started:.1f} s")


async def test_privacy_off_needs_owner_signature(
    platform: Platform,
    home: Home,
    camera: CameraAgent,
    broker_redis: Redis,
    profiles_home: Path,
) -> None:
    def now() -> datetime:
        return datetime.now(UTC)

    async with PrivacamClient(home.owner) as owner:
        # A genuine "off", signed now and kept by an attacker for later.
        owner_key = load_pem_private_key(home.owner.key_file.read_bytes(), password=None)
        assert isinstance(owner_key, ec.EllipticCurvePrivateKey)
        old_off = sign_statement(
            make_statement(
                Mode("off"),
                tenant_id=home.tenant,
                device_id=home.device,
                install_id=home.install,
                issued_at=now() - timedelta(seconds=1),
            ),
            owner_key,
        )
        await set_privacy_mode(owner, home.device, Mode("on"))

    async def private() -> bool:
        return camera.privacy.private_reason(now()) is not None

    await _eventually(private, "the camera applied the owner's 'on'")
    refused_before = _relay_metric(platform, "privacam_relay_privacy_statements_refused_total")

    # A service forges "off" in the owner install's name with its own key.
    service = platform.pki.service("relay_broker")
    service_key = load_pem_private_key(service.key_file.read_bytes(), password=None)
    assert isinstance(service_key, ec.EllipticCurvePrivateKey)
    forged = sign_statement(
        make_statement(
            Mode("off"),
            tenant_id=home.tenant,
            device_id=home.device,
            install_id=home.install,
            issued_at=now(),
        ),
        service_key,
    )
    service_profile = platform.profile(f"svc-{uuid.uuid4().hex[:8]}", service, profiles_home)
    async with PrivacamClient(service_profile) as as_service:
        code, details = await _refusal(
            as_service.device_auth().SetPrivacyMode(id_pb.SetPrivacyModeRequest(statement=forged))
        )
    assert code is grpc.StatusCode.PERMISSION_DENIED, details
    # The owner's own app cannot pass it on either: the signature is not its key's.
    async with PrivacamClient(home.owner) as owner:
        code, details = await _refusal(
            owner.device_auth().SetPrivacyMode(id_pb.SetPrivacyModeRequest(statement=forged))
        )
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert "signature does not verify" in details
    # A malformed schedule: INVALID_ARGUMENT, nothing changed.
    async with PrivacamClient(home.owner) as owner:
        bad = privacy_pb2.PrivacyStatement.FromString(forged.statement)
        bad.schedule.utc_offset_minutes = 0
        bad.schedule.windows.add(
            day=privacy_pb2.DAY_OF_WEEK_MONDAY, start_minute=600, end_minute=600
        )
        code, details = await _refusal(
            owner.device_auth().SetPrivacyMode(
                id_pb.SetPrivacyModeRequest(statement=sign_statement(bad, owner_key))
            )
        )
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert "schedule.windows[0] is empty" in details
        settings = await owner.device_auth().GetCameraSettings(
            id_pb.GetCameraSettingsRequest(device_id=home.device)
        )
        assert privacy_pb2.PrivacyStatement.FromString(
            settings.settings.privacy.statement
        ).HasField("on")

    # Whoever writes the broker's state delivers the forgery, and the replayed old "off",
    # straight to the camera: it refuses both and stays private.
    for statement in (forged, old_off):
        message = pb.CameraControlResponse(privacy_statement=statement)
        await broker_redis.publish(
            platform.namespace + camera_channel(home.device), message.SerializeToString()
        )

    async def both_refused() -> bool:
        return len(camera.privacy_refusals) >= 2

    await _eventually(both_refused, "the camera refused the forged and the replayed 'off'")
    print("camera refusals:", camera.privacy_refusals)
    assert "not verify with the owner app's key" in camera.privacy_refusals[0]
    assert "older than the one applied" in camera.privacy_refusals[1]
    assert await private()

    async def counted() -> bool:
        metric = "privacam_relay_privacy_statements_refused_total"
        return _relay_metric(platform, metric) >= refused_before + 2

    await _eventually(counted, "the broker counted the camera's refusals")
    # The camera's own check decides a session too, whatever reaches it.
    session_id = str(uuid.uuid4())
    request = pb.CameraControlResponse(session_requested=pb.SessionRequested(session_id=session_id))
    await broker_redis.publish(
        platform.namespace + camera_channel(home.device), request.SerializeToString()
    )

    async def declined() -> bool:
        return session_id in camera.refusals

    await _eventually(declined, "the camera declined the session")
    assert camera.refusals[session_id].startswith("the camera is in privacy mode")
    assert session_id not in camera.answered


TONE_HZ = 523.25


@dataclass
class Talking:
    """A view with a talk-back running: the app's side and the camera's speaker."""

    view: LiveView
    sink: MemorySink


async def _talking(
    platform: Platform, owner: PrivacamClient, home: Home, camera: CameraAgent
) -> Talking:
    view = await watch(
        owner,
        home.device,
        ca_pem=platform.pki.ca_file.read_bytes(),
        trust_domain=platform.pki.trust_domain,
        audio=ToneTrack(TONE_HZ),
    )
    await start_talk_back(relay_stub(owner), view.session_id)
    sink = camera.speakers[view.session_id]

    async def playing() -> bool:
        return len(sink.frames) >= 10

    await _eventually(playing, "the camera played the owner's voice")
    return Talking(view, sink)


async def _ended_by_the_camera(
    owner: PrivacamClient, home: Home, camera: CameraAgent, talking: Talking, since: float
) -> None:
    """The camera ended the view and the talk-back itself: the app's peer connection
    closes, its signaling hears PRIVACY_MODE, the speaker plays nothing more, and the
    household's log holds the end of the view and of the talk-back (with its duration)."""
    view, sid = talking.view, talking.view.session_id

    async def closed() -> bool:
        return view.viewer.pc.connectionState == "closed"

    await _eventually(closed, "the app's peer connection closed", within=5)
    print(f"the app's peer connection closed {time.monotonic() - since:.2f} s after the switch")
    assert await view.closed_reason(5) == relay_pb2.SESSION_END_REASON_PRIVACY_MODE
    assert camera.private_ends[sid].startswith("private")
    assert camera.players[sid].talk is None
    played = len(talking.sink.frames)
    await asyncio.sleep(1)  # the app's tone would still be arriving
    assert len(talking.sink.frames) == played

    async def both_ends_logged() -> bool:
        of_session = [r for r in await logged(owner, home.device) if r.resource.session_id == sid]
        views = [r for r in of_session if r.resource.kind == log_pb2.RESOURCE_KIND_LIVE_SESSION]
        talks = [r for r in of_session if r.resource.kind == log_pb2.RESOURCE_KIND_TALK_BACK]
        return len(views) == 2 and len(talks) == 2 and talks[1].HasField("duration")

    await _eventually(both_ends_logged, "the view's and the talk-back's ends in the log")
    print(f"both ends logged {time.monotonic() - since:.2f} s after the switch")
    await view.close()


async def test_privacy_on_ends_running_view(
    platform: Platform, home: Home, camera: CameraAgent
) -> None:
    async with PrivacamClient(home.owner) as owner:
        notices = relay_stub(owner).StreamNotices(pb.StreamNoticesRequest())
        await asyncio.sleep(0.3)  # the notice stream is subscribed
        talking = await _talking(platform, owner, home, camera)
        switched = time.monotonic()
        await set_privacy_mode(owner, home.device, Mode("on"))
        await _ended_by_the_camera(owner, home, camera, talking, switched)

        # The household was told why watching and talking stopped.
        told = await notices_of(notices, "watching_ended", "talking_ended")
        notices.cancel()
        watching_ended = told["watching_ended"].watching_ended
        assert watching_ended.reason == relay_pb2.SESSION_END_REASON_PRIVACY_MODE
        assert told["talking_ended"].talking_ended.reason == pb.TALK_END_REASON_SESSION_ENDED


async def test_privacy_schedule_beginning_ends_running_view(
    platform: Platform, home: Home, camera: CameraAgent
) -> None:
    """Nothing reaches the camera when the window begins: its own clock ends the view."""
    async with PrivacamClient(home.owner) as owner:
        talking = await _talking(platform, owner, home, camera)
        # A window from the next minute that is at least 3 s away (UTC, today's weekday).
        now = datetime.now(UTC)
        begins = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        if begins - now < timedelta(seconds=3):
            begins += timedelta(minutes=1)
        start = begins.hour * 60 + begins.minute
        end = start + 2 if start + 2 <= 1440 else start + 2 - 1440
        window = Window(begins.weekday(), start, end)
        await set_privacy_mode(owner, home.device, Mode("schedule", windows=(window,)))

        async def applied() -> bool:
            return camera.privacy.applied is not None

        await _eventually(applied, "the camera applied the schedule")
        assert talking.view.viewer.pc.connectionState == "connected"  # not private yet
        wait = (begins - datetime.now(UTC)).total_seconds()
        print(f"the window begins in {wait:.1f} s")
        begins_at = time.monotonic() + wait
        await asyncio.sleep(max(0.0, wait - 0.5))
        assert talking.view.viewer.pc.connectionState == "connected"
        await _ended_by_the_camera(owner, home, camera, talking, begins_at)
        # Not one frame played from the window's first instant (the speaker checks every
        # frame; the end of the session follows within the watch's wake-up).
        late = [p.at - begins_at for p in talking.sink.frames if p.at >= begins_at + 0.02]
        assert late == [], f"{len(late)} frames played after the window began"
