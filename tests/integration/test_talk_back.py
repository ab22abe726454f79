"""Talk-back against the real stack (issue #27 part 1): the viewer of a logged live session
speaks through the camera. Real aiortc peers, relayed through coturn only (ciphertext
through the platform); the test camera agent plays what it hears into a MemorySink only
while a talk-back whose log receipt it verified runs.

The app sends its tone from the first moment of the session (as a careless or hostile
app could): what the camera plays before the start, after the end, or on a replayed
request shows up as played frames, so the counts below prove the camera's gate.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
import pytest
from redis.asyncio import Redis

from privacam.accesslog.v1 import log_pb2
from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.identity.v1 import identity_pb2
from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.relay.v1 import relay_pb2
from privacam.types.v1 import types_pb2
from privacam_sdk import PrivacamClient, Profile
from privacam_sdk.talk_back import MemorySink, end_talk_back, start_talk_back
from services.relay_broker.adapters.links import camera_channel
from tests.harness import Platform, ServiceProcess, make_service, peer_env
from tests.integration.test_cli import privacam
from tests.live_view import (
    CameraAgent,
    OwnedCamera,
    logged,
    notices_of,
    pair_owned_camera,
    relay_stub,
    watch,
)
from tests.webrtc_peers import ToneTrack

PASSWORD = "a long enough passphrase"
TALK, LIVE = log_pb2.RESOURCE_KIND_TALK_BACK, log_pb2.RESOURCE_KIND_LIVE_SESSION
PIN = "4826"
TONE_HZ = 523.25  # C5: no mains hum or codec artefact lands there by chance


@dataclass
class House(OwnedCamera):
    member: Profile
    """Another household the camera is shared with: LIVE only, no TALK."""


@pytest.fixture
async def house(platform: Platform, profiles_home: Path) -> House:
    enrollment = platform.enrollment(profiles_home)
    suffix = secrets.token_hex(4)
    home = await pair_owned_camera(enrollment, f"tb-o-{suffix}", PASSWORD)
    member, _ = await enrollment.register_account(f"tb-m-{suffix}", f"tb-m-{suffix}", PASSWORD)
    async with PrivacamClient(home.owner) as app:
        await app.device_auth().UpdateCameraSettings(
            id_pb.UpdateCameraSettingsRequest(device_id=home.device, label="Front door")
        )
        await app.device_auth().CreateGrant(
            id_pb.CreateGrantRequest(
                device_id=home.device,
                grantee_login=f"tb-m-{suffix}",
                scopes=[identity_pb2.GRANT_SCOPE_LIVE],
            )
        )
    return House(**vars(home), member=member)


@pytest.fixture
async def camera(house: House) -> AsyncIterator[CameraAgent]:
    agent = CameraAgent(house.camera, relay_only=True)
    await agent.start()
    yield agent
    await agent.stop()


@pytest.fixture
async def broker_redis(platform: Platform) -> AsyncIterator[Redis]:
    client = Redis.from_url(platform.stack_env["PRIVACAM_RELAY_BROKER_REDIS_URL"])
    yield client
    await client.aclose()


async def _eventually(check: Callable[[], bool], what: str, within: float = 5) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within:g} s: {what}"
        await asyncio.sleep(0.02)


async def _refusal(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def _dominant_hz(sink: MemorySink) -> tuple[float, float]:
    """The loudest frequency of what the camera played, and its RMS level (int16 scale)."""
    chunks = []
    for played in sink.frames:
        samples = played.frame.to_ndarray().astype(np.float64)
        channels = len(played.frame.layout.channels)
        # Packed stereo comes as one row of interleaved samples: keep the first channel.
        chunks.append(samples.reshape(-1)[::channels] if samples.shape[0] == 1 else samples[0])
    pcm = np.concatenate(chunks)
    rate = sink.frames[0].frame.sample_rate
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * rate / len(pcm)), float(np.sqrt(np.mean(pcm**2)))


async def _talk_entries(client: PrivacamClient, device: str) -> list[log_pb2.AccessRecord]:
    records = await logged(client, device)
    return [r for r in records if r.resource.kind == log_pb2.RESOURCE_KIND_TALK_BACK]


async def test_talk_back_reaches_camera_in_logged_session(
    platform: Platform, house: House, camera: CameraAgent, broker_redis: Redis
) -> None:
    ca, domain = platform.pki.ca_file.read_bytes(), platform.pki.trust_domain
    async with PrivacamClient(house.owner) as owner:
        await owner.device_auth().SetPin(id_pb.SetPinRequest(device_id=house.device, pin=PIN))
        stub = relay_stub(owner)
        notices = stub.StreamNotices(pb.StreamNoticesRequest())
        await asyncio.sleep(0.3)  # the notice stream is subscribed
        view = await watch(
            owner,
            house.device,
            ca_pem=ca,
            trust_domain=domain,
            relay_only=True,
            pin=PIN,
            audio=ToneTrack(TONE_HZ),
        )
        try:
            assert view.viewer.selected_candidate_types() == ("relay", "relay")
            sid = view.session_id
            player, sink = camera.players[sid], camera.speakers[sid]

            # The tone arrives from the start, and the camera plays none of it unasked.
            await _eventually(lambda: player.discarded >= 25, "audio reached the camera")
            assert sink.frames == []

            # The PIN is asked again for talking.
            code, details = await _refusal(start_talk_back(stub, sid))
            assert code is grpc.StatusCode.PERMISSION_DENIED, details
            assert "PIN" in details
            assert sink.frames == []
            assert await _talk_entries(owner, house.device) == []

            asked = time.perf_counter()
            started = await start_talk_back(stub, sid, PIN)
            await _eventually(lambda: bool(sink.frames), "the camera played the app's audio")
            first_played = time.perf_counter() - asked
            await _eventually(lambda: len(sink.frames) >= 100, "two seconds of audio played")
            hz, level = _dominant_hz(sink)
            print(
                f"first audio played {first_played * 1000:.0f} ms after StartTalkBack; "
                f"{len(sink.frames)} frames, {hz:.1f} Hz at RMS {level:.0f}; "
                f"{player.discarded} frames discarded before the start"
            )
            assert abs(hz - TONE_HZ) < 5, hz
            assert level > 1000  # not silence

            ended = await end_talk_back(stub, sid)
            await asyncio.sleep(0.3)  # frames in flight when the end reached the camera
            played_at_end, discarded_at_end = len(sink.frames), player.discarded
            await _eventually(lambda: player.discarded >= discarded_at_end + 25, "audio after end")
            assert len(sink.frames) == played_at_end  # nothing played after the end
            assert ended.duration.ToTimedelta().total_seconds() >= 2

            # A replay of the genuine request (anyone who can publish on the broker's
            # channels) is refused by the camera: each logged talk-back plays once.
            (genuine,) = camera.talk_requests[sid]
            await broker_redis.publish(
                platform.namespace + camera_channel(house.device),
                pb.CameraControlResponse(talk_requested=genuine).SerializeToString(),
            )
            await _eventually(lambda: sid in camera.talk_refusals, "the camera refused the replay")
            assert "replay" in camera.talk_refusals[sid]
            await asyncio.sleep(0.3)
            assert len(sink.frames) == played_at_end

            # The household's log: start and end, both naming the owner's app as the speaker.
            start, end = await _talk_entries(owner, house.device)
            for record in (start, end):
                assert record.purpose == types_pb2.ACCESS_PURPOSE_TALK_BACK
                assert (record.principal.kind, record.principal.id) == (
                    types_pb2.PRINCIPAL_KIND_APP,
                    house.install,
                )
                assert (record.resource.device_id, record.resource.session_id) == (
                    house.device,
                    sid,
                )
            assert not start.HasField("duration")
            assert end.duration == ended.duration
            assert start.occurred_at == started.started_at

            # The household was told, by the camera's name.
            told = await notices_of(notices, "talking_started", "talking_ended")
            notices.cancel()
            assert list(told) == ["talking_started", "talking_ended"]
            started_notice = told["talking_started"].talking_started
            assert started_notice.summary.startswith("the owner")
            assert started_notice.summary.endswith("is speaking through Front door")
            assert started_notice.speaker.id == house.install
            assert (
                "stopped speaking through Front door" in told["talking_ended"].talking_ended.summary
            )
            assert told["talking_ended"].talking_ended.reason == pb.TALK_END_REASON_ENDED

            # Talking again works, and the session's end ends it (logged with its duration).
            await start_talk_back(stub, sid, PIN)
            await _eventually(lambda: len(sink.frames) > played_at_end, "second talk-back played")
            await view.close()
        except BaseException:
            await view.close()
            raise
        # The app's half-close reaches the broker, which ends the session and tells the camera:
        # under a full test run's load this took more than 5 s once.
        await _eventually(
            lambda: player.talk is None, "the camera stopped at the session's end", within=15
        )

        async def four() -> bool:
            return len(await _talk_entries(owner, house.device)) == 4

        deadline = time.monotonic() + 5
        while not await four():
            assert time.monotonic() < deadline, "the session's end did not log the talk's end"
            await asyncio.sleep(0.1)
        assert (await _talk_entries(owner, house.device))[3].HasField("duration")


async def test_talk_back_needs_its_scope(
    platform: Platform, house: House, camera: CameraAgent
) -> None:
    ca, domain = platform.pki.ca_file.read_bytes(), platform.pki.trust_domain
    async with PrivacamClient(house.member) as member:
        view = await watch(
            member, house.device, ca_pem=ca, trust_domain=domain, audio=ToneTrack(TONE_HZ)
        )
        try:
            player, sink = camera.players[view.session_id], camera.speakers[view.session_id]
            code, details = await _refusal(start_talk_back(relay_stub(member), view.session_id))
            assert code is grpc.StatusCode.PERMISSION_DENIED
            assert "does not include talk-back" in details
            # Not a talker either: ending a talk-back nobody started is NOT_FOUND.
            code, _ = await _refusal(end_talk_back(relay_stub(member), view.session_id))
            assert code is grpc.StatusCode.NOT_FOUND
            # The member's audio reached the camera and went nowhere.
            await _eventually(
                lambda: player.discarded >= 25, "the member's audio reached the camera"
            )
            assert sink.frames == []
            assert camera.talk_requests == {}
            async with PrivacamClient(house.owner) as owner:
                # Nor can another app than the viewer, even the owner's, talk in its session.
                code, _ = await _refusal(start_talk_back(relay_stub(owner), view.session_id))
                assert code is grpc.StatusCode.NOT_FOUND
                assert await _talk_entries(owner, house.device) == []
        finally:
            await view.close()


@pytest.fixture
async def spare_broker(platform: Platform, tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    """A second relay_broker replica of the platform (same namespace, Redis and peers)."""
    spare = make_service(
        "relay_broker", platform.pki, platform.stack_env, platform.namespace, tmp_path
    )
    spare.env.update(peer_env(platform.services["relay_broker"]))
    spare.start()
    try:
        await asyncio.to_thread(spare.wait_serving, 120)
        yield spare
    finally:
        if spare.process is not None and spare.process.poll() is None:
            spare.process.kill()
            spare.process.wait()


async def test_talk_back_end_is_logged_when_its_replica_dies(
    platform: Platform, house: House, spare_broker: ServiceProcess
) -> None:
    """Camera, app, session and talk-back all on one replica, which is SIGKILLed mid
    sentence: nothing there ends anything, yet the other replica ends the session when its
    leases run out (3 heartbeats), and the household's log gets the talk-back's end with
    its duration, and the view's end; the household is told."""
    ca, domain = platform.pki.ca_file.read_bytes(), platform.pki.trust_domain

    def on_spare(profile: Profile) -> Profile:
        return replace(
            profile, endpoints={**profile.endpoints, "relay_broker": spare_broker.endpoint}
        )

    agent = CameraAgent(on_spare(house.camera))
    await agent.start()
    try:
        async with (
            PrivacamClient(on_spare(house.owner)) as owner,
            PrivacamClient(house.owner) as survivor,
        ):
            notices = relay_stub(survivor).StreamNotices(pb.StreamNoticesRequest())
            await asyncio.sleep(0.3)  # the notice stream is subscribed
            view = await watch(
                owner, house.device, ca_pem=ca, trust_domain=domain, audio=ToneTrack(TONE_HZ)
            )
            sid = view.session_id
            started = await start_talk_back(relay_stub(owner), sid)
            sink = agent.speakers[sid]
            await _eventually(lambda: len(sink.frames) >= 25, "the camera played the owner's voice")

            assert spare_broker.process is not None
            spare_broker.process.send_signal(signal.SIGKILL)
            spare_broker.process.wait()
            killed, killed_at = time.monotonic(), datetime.now(UTC)

            async def ended() -> tuple[list[log_pb2.AccessRecord], list[log_pb2.AccessRecord]]:
                while True:
                    of_session = [
                        r
                        for r in await logged(survivor, house.device)
                        if r.resource.session_id == sid
                    ]
                    talk = [r for r in of_session if r.resource.kind == TALK]
                    views = [r for r in of_session if r.resource.kind == LIVE]
                    if len(talk) == 2 and len(views) == 2:
                        return talk, views
                    await asyncio.sleep(0.1)

            (start, end), _ = await asyncio.wait_for(ended(), 10)
            lasted = end.duration.ToTimedelta()
            end_at = end.occurred_at.ToDatetime(tzinfo=UTC)
            print(
                f"talk-back's and view's ends logged {time.monotonic() - killed:.2f} s after "
                f"their replica was killed; talk-back lasted {lasted.total_seconds():.2f} s, "
                f"ended {(end_at - killed_at).total_seconds():.2f} s after the kill"
            )
            assert not start.HasField("duration")
            assert (end.principal.id, end.resource.session_id) == (house.install, sid)
            assert start.occurred_at == started.started_at
            # Ended by the survivor within the lease (3 heartbeats) and a sweep or two, and
            # the duration runs to that end: an upper bound of the real one by as much.
            assert timedelta(0) < end_at - killed_at < timedelta(seconds=5)
            assert lasted == end_at - start.occurred_at.ToDatetime(tzinfo=UTC)

            told = await notices_of(notices, "watching_ended", "talking_ended")
            notices.cancel()
            assert (
                told["watching_ended"].watching_ended.reason
                == relay_pb2.SESSION_END_REASON_SIGNALING_LOST
            )
            assert told["talking_ended"].talking_ended.reason == pb.TALK_END_REASON_SESSION_ENDED
            # The camera lost its signaling with the replica and closed the session's media.
            await _eventually(lambda: agent.players[sid].talk is None, "the camera stopped playing")
            await view.close()
    finally:
        await agent.stop()


def _tone_wav(path: Path, seconds: float, hz: float = TONE_HZ, rate: int = 48_000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (12_000 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())


async def test_privacam_talk_speaks_a_wav_file_through_the_camera(
    platform: Platform, house: House, camera: CameraAgent, profiles_home: Path, tmp_path: Path
) -> None:
    """`privacam talk <camera> --wav FILE`, the way to speak on a machine without a
    microphone: the camera plays the file's tone, and the log holds start and end."""
    wav = tmp_path / "hello.wav"
    _tone_wav(wav, 4.0)
    talk = ("talk", house.device, "--wav", str(wav), "--seconds", "3")
    # In a thread: the camera answers on this loop meanwhile.
    out = await asyncio.to_thread(privacam, profiles_home, "--profile", house.owner.name, *talk)
    assert f"speaking through {house.device}" in out
    assert "stopped after" in out
    ((sid, sink),) = camera.speakers.items()
    assert len(sink.frames) >= 50  # at least a second of the file
    hz, level = _dominant_hz(sink)
    print(f"privacam talk: {len(sink.frames)} frames played, {hz:.1f} Hz at RMS {level:.0f}")
    assert abs(hz - TONE_HZ) < 5, hz
    assert level > 1000
    async with PrivacamClient(house.owner) as owner:
        start, end = await _talk_entries(owner, house.device)
    assert (start.resource.session_id, end.resource.session_id) == (sid, sid)
    assert end.HasField("duration")
