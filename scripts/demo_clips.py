"""Demo step for alert clips (issue #5), run by scripts/demo.py after the household step:
the owner has turned alerts on for "front-door" and set PIN 4071; the camera sends a
6-second clip, the owner lists and plays it, a 7-second clip is refused, and the owner
checks who accessed the camera: the CLI verifies every entry against the signed log."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

import grpc

from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.identity.v1 import identity_pb2
from privacam_sdk import PrivacamClient, Profile, access_log_cli
from privacam_sdk.cli import build_parser
from privacam_sdk.clips import download_clip, list_clips, upload_clip
from tests.media import make_mp4

ROOT = Path(__file__).resolve().parents[1]
HOME = Path(os.environ.get("PRIVACAM_RUN_DIR", ROOT / ".run")) / "home"
PIN = "4071"


def say(text: str) -> None:
    print(f"\n== {text}")


async def clips() -> int:
    owner, camera = Profile.load("owner", HOME), Profile.load("front-door", HOME)
    async with PrivacamClient(owner) as app, PrivacamClient(camera, timeout=30) as cam:
        cameras = (await app.device_auth().ListCameras(id_pb.ListCamerasRequest())).cameras
        device = next(c.device_id for c in cameras if c.role == identity_pb2.CAMERA_ROLE_OWNER)

        say("The camera sends a 6-second alert clip (H.264 MP4, made here with PyAV)")
        six = make_mp4(6.0, seed=1)
        clip_id = f"motion-{secrets.token_hex(3)}"
        stored = await upload_clip(cam, six, clip_id, datetime.now(UTC))
        print(
            f"  {len(six):,} bytes, {stored.duration.ToTimedelta().total_seconds():g} s by its own "
            f"samples; stored encrypted under its own data key (created={stored.created})"
        )
        again = await upload_clip(cam, six, clip_id, datetime.now(UTC))
        print(
            f"  the camera retries the same clip id: created={again.created}, nothing stored twice"
        )

        say("A 7-second clip is refused, and nothing of it is kept")
        try:
            await upload_clip(cam, make_mp4(7.0, seed=2), f"long-{secrets.token_hex(3)}")
            print("  !! a 7-second clip was accepted")
            return 1
        except grpc.aio.AioRpcError as error:
            print(f"  {error.code().name}: {error.details()}")

        say("The owner lists the camera's clips (the listing is logged in the household's log)")
        listed = [c async for c in list_clips(app, device)]
        for clip in listed:
            print(
                f"  {clip.clip_id}: {clip.size_bytes:,} bytes, "
                f"{clip.duration.ToTimedelta().total_seconds():g} s, "
                f"deleted after {clip.delete_after.ToDatetime():%Y-%m-%d}"
            )

        say("The owner plays it: PIN checked, access logged, then the key is released once")
        try:
            await download_clip(app, device, clip_id)
            print("  !! played without the PIN")
            return 1
        except grpc.aio.AioRpcError as error:
            print(f"  without the PIN: {error.code().name}")
        _, played = await download_clip(app, device, clip_id, pin=PIN)
        same = "identical to what the camera sent" if played == six else "!! DIFFERENT"
        print(f"  with the PIN: {len(played):,} bytes, {same}")
        if played != six:
            return 1

    say("Who accessed my camera? The owner's CLI lists the log and verifies every proof")
    # What `privacam --profile owner access-log list --camera <id>` runs.
    args = build_parser().parse_args(["access-log", "list", "--camera", device])
    verdict = await access_log_cli.run(args, owner)
    if verdict != 0:
        print("  !! the household's log did not verify")
        return 1
    return 0
