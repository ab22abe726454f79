"""Live view in the demo: the owner watches the front door, once peer to peer and once
through coturn only (and talks through it then), while the household's apps are told;
then the owner switches the camera to private while watching it (the camera ends the
view itself), and back.

Runs after scripts/demo.py's household (profiles "owner", "front-door", "sam", PIN 4071),
or on its own: `python scripts/demo_live_view.py`. The camera and the viewer are real WebRTC
peers (aiortc, the test peers in tests/webrtc_peers.py) on this machine.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterable
from datetime import UTC, datetime
from pathlib import Path

import grpc

from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.relay.v1 import relay_pb2
from privacam_sdk import PrivacamClient, Profile
from privacam_sdk.privacy import Mode, set_privacy_mode
from privacam_sdk.talk_back import end_talk_back, start_talk_back
from tests.live_view import CameraAgent, LiveView, relay_stub, watch
from tests.webrtc_peers import ToneTrack, candidate_types

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = Path(os.environ.get("PRIVACAM_RUN_DIR", ROOT / ".run"))
HOME = RUN_DIR / "home"
PIN = "4071"


def say(text: str) -> None:
    print(f"\n== {text}")


async def _notice(stream: AsyncIterable[pb.StreamNoticesResponse], kind: str) -> pb.HouseholdNotice:
    async for response in stream:
        if response.notice.WhichOneof("notice") == kind:
            return response.notice
    raise RuntimeError("the notice stream ended")


async def live_view() -> int:
    owner = Profile.load("owner", HOME)
    camera = Profile.load("front-door", HOME)
    ca = (RUN_DIR / "pki" / "ca.crt").read_bytes()
    async with PrivacamClient(owner, timeout=20) as app:
        # Notices go to the camera owner's household and the viewer's only (never to a
        # member the camera is shared with): the household's apps hear of every view.
        notices = relay_stub(app).StreamNotices(pb.StreamNoticesRequest())
        await asyncio.sleep(0.3)
        for relay_only in (False, True):
            say(
                "The owner watches through coturn only (relay candidates)"
                if relay_only
                else "The camera comes online; the owner watches it live, peer to peer"
            )
            agent = CameraAgent(camera, relay_only=relay_only)
            await agent.start()
            try:
                device = await _device_of(app)
                view = await watch(
                    app, device, ca_pem=ca, trust_domain="privacam.local", relay_only=relay_only,
                    pin=PIN, audio=ToneTrack() if relay_only else None,
                )  # fmt: skip
                assert view.first_frame_after is not None
                path = view.viewer.selected_candidate_types()
                print(
                    f"  session {view.session_id[:8]}…: camera's DTLS fingerprint signed by its "
                    f"device key, verified against its certificate"
                )
                offered = sorted(candidate_types(view.viewer.pc.localDescription.sdp))
                print(
                    f"  first frame decoded {view.first_frame_after * 1000:.0f} ms after asking; "
                    f"ICE path {path[0] if path else '?'} -> {path[1] if path else '?'}; "
                    f"the app offered {', '.join(offered)} candidates"
                )
                started = await asyncio.wait_for(_notice(notices, "watching_started"), 10)
                role = relay_pb2.ViewerRole.Name(started.watching_started.viewer_role)
                print(
                    f"  the household's apps: someone is watching camera {started.device_id[:8]}… "
                    f"({role.removeprefix('VIEWER_ROLE_').lower()})"
                )
                await asyncio.sleep(1)
                if relay_only:
                    await _talk(app, agent, view)
                print(f"  {view.viewer.frames} frames so far; the owner ends the view")
                await relay_stub(app).EndLiveView(pb.EndLiveViewRequest(session_id=view.session_id))
                ended = await asyncio.wait_for(_notice(notices, "watching_ended"), 10)
                reason = relay_pb2.SessionEndReason.Name(ended.watching_ended.reason)
                print(f"  the household's apps: watching ended ({reason})")
                await view.close()
            finally:
                await agent.stop()
        code = await _privacy(app, camera, notices, ca)
        notices.cancel()
    return code


async def _talk(app: PrivacamClient, agent: CameraAgent, view: LiveView) -> None:
    """The owner talks through the camera: logged first, played only once verified."""
    say("The owner talks through the camera (talk-back, inside the same DTLS-SRTP)")
    stub = relay_stub(app)
    told = stub.StreamNotices(pb.StreamNoticesRequest())
    await asyncio.sleep(0.3)
    player, speaker = agent.players[view.session_id], agent.speakers[view.session_id]
    print(f"  the app's tone reached the camera: {player.discarded} frames, none played unasked")
    await start_talk_back(stub, view.session_id, PIN)
    notice = await asyncio.wait_for(_notice(told, "talking_started"), 10)
    print(f"  the household's apps: {notice.talking_started.summary}")
    await asyncio.sleep(1.5)
    print(f"  the camera's speaker played {len(speaker.frames)} frames (20 ms each)")
    ended = await end_talk_back(stub, view.session_id)
    notice = await asyncio.wait_for(_notice(told, "talking_ended"), 10)
    print(f"  the household's apps: {notice.talking_ended.summary}")
    told.cancel()
    print(
        f"  the log holds its start and its end ({ended.duration.ToTimedelta().total_seconds():.1f}"
        " s), both naming the owner's app"
    )


async def _privacy(
    app: PrivacamClient,
    camera: Profile,
    notices: AsyncIterable[pb.StreamNoticesResponse],
    ca: bytes,
) -> int:
    say("The owner switches the camera to private while watching it; the camera decides")
    agent = CameraAgent(camera)
    await agent.start()
    try:
        device = await _device_of(app)
        view = await watch(app, device, ca_pem=ca, trust_domain="privacam.local", pin=PIN)
        print(f"  the owner is watching (session {view.session_id[:8]}…)")
        await set_privacy_mode(app, device, Mode("on"))
        print("  the owner's app signed 'private' with its own key; device_auth logged it")
        for _ in range(100):
            if agent.privacy.private_reason(datetime.now(UTC)) is not None:
                break
            await asyncio.sleep(0.1)
        else:
            print("  !! the camera did not apply it")
            return 1
        print("  the camera verified it against the owner key it pinned at pairing: private")
        closed = await view.closed_reason(10)
        await view.close()
        if closed != relay_pb2.SESSION_END_REASON_PRIVACY_MODE:
            print(f"  !! the running view was not ended by the camera (reason {closed})")
            return 1
        print(
            "  it closed the running view itself (PRIVACY_MODE); the household's log holds "
            "the view's end as for any other"
        )
        told = await asyncio.wait_for(_notice(notices, "privacy_mode"), 10)
        print(f"  the household's apps: camera {told.device_id[:8]}… {told.privacy_mode.summary}")
        try:
            await relay_stub(app).StartLiveView(pb.StartLiveViewRequest(device_id=device, pin=PIN))
            print("  !! a live view started while private")
            return 1
        except grpc.aio.AioRpcError as error:
            print(f"  live view: {error.code().name}: {error.details()}")
        await set_privacy_mode(app, device, Mode("off"))
        for _ in range(100):
            if agent.privacy.private_reason(datetime.now(UTC)) is None:
                break
            await asyncio.sleep(0.1)
        print("  the owner switches it off again (signed, logged); the camera follows")
    finally:
        await agent.stop()
    return 0


async def _device_of(app: PrivacamClient) -> str:
    cameras = (await app.device_auth().ListCameras(id_pb.ListCamerasRequest())).cameras
    return cameras[0].device_id


if __name__ == "__main__":
    sys.exit(asyncio.run(live_view()))
