"""Demo step for the privacy watch (issue #22), run by scripts/demo.py after the key step:
Sam, the household member the owner shared the camera with, plays the alert clip for the
first time; the owner's app is told within seconds, naming the log entry; then the
household's digest arrives and the owner's CLI checks it against the verified log.

On the development platform (scripts/services.sh) a digest covers a minute instead of a
week, so the demo can show one."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.identity.v1 import identity_pb2
from privacam.types.v1 import types_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from privacam_sdk import PrivacamClient, Profile, watch_cli
from privacam_sdk.cli import build_parser
from privacam_sdk.clips import download_clip, list_clips
from privacam_sdk.watch import WatchReader

ROOT = Path(__file__).resolve().parents[1]
HOME = Path(os.environ.get("PRIVACAM_RUN_DIR", ROOT / ".run")) / "home"
PIN = "4071"
NOTICE_WAIT_SECONDS = 20.0
DIGEST_WAIT_SECONDS = 150.0  # a period (60 s), its grace (5 s), and a loaded machine


def say(text: str) -> None:
    print(f"\n== {text}")


Match = Callable[[watch_pb2.WatchNotice], bool]


async def watch() -> int:
    owner, sam = Profile.load("owner", HOME), Profile.load("sam", HOME)
    async with PrivacamClient(owner) as app:
        told_before = {n.privacy_watch.notice_id for n in await WatchReader(app).notices()}
    async with PrivacamClient(sam) as member:
        cameras = (await member.device_auth().ListCameras(id_pb.ListCamerasRequest())).cameras
        device = next(c.device_id for c in cameras if c.role == identity_pb2.CAMERA_ROLE_VIEWER)
        say("Sam, whom the owner shared the camera with, plays the alert clip for the first time")
        clips = [c async for c in list_clips(member, device)]
        _, played = await download_clip(member, device, clips[0].clip_id, pin=PIN)
        print(f"  Sam played {clips[0].clip_id}: {len(played):,} bytes")

    async with PrivacamClient(owner) as app:
        reader = WatchReader(app)
        say("The owner's app is told within seconds: a new viewer, naming the log entry")
        started = time.monotonic()
        notice = await _first(reader, _new_viewer(told_before), NOTICE_WAIT_SECONDS)
        if notice is None:
            print(f"  !! no notice of Sam's first view within {NOTICE_WAIT_SECONDS:g} s")
            return 1
        purpose = types_pb2.AccessPurpose.Name(notice.purpose).removeprefix("ACCESS_PURPOSE_")
        print(
            f"  after {time.monotonic() - started:.1f} s: {notice.summary or 'a new viewer'} "
            f"({purpose.lower()}; log entry {notice.entry.index}, "
            f"access {notice.entry.access_id[:8]}…)"
        )

        say("The household's digest: views by whom, by kind and per camera, checked by the CLI")
        digest = await _first(reader, _covering(notice.entry.index), DIGEST_WAIT_SECONDS)
        if digest is None:
            index = notice.entry.index
            print(f"  !! no digest covering entry {index} within {DIGEST_WAIT_SECONDS:g} s")
            return 1
        # What `privacam --profile owner watch digest` runs: every digest against the log.
        verdict = await watch_cli.run(build_parser().parse_args(["watch", "digest"]), owner)
        if verdict != 0:
            print("  !! a digest disagreed with the household's verified log")
            return 1
    return 0


def _new_viewer(told_before: set[str]) -> Match:
    """A new viewer not told of before Sam's first view (the owner's own first view was)."""
    return lambda n: n.rule == watch_pb2.WATCH_RULE_NEW_VIEWER and n.notice_id not in told_before


def _covering(index: int) -> Match:
    return lambda n: (
        n.rule == watch_pb2.WATCH_RULE_DIGEST and n.digest.first_index <= index < n.digest.end_index
    )


async def _first(reader: WatchReader, match: Match, within: float) -> watch_pb2.WatchNotice | None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for kept in await reader.notices():
            if match(kept.privacy_watch):
                return kept.privacy_watch
        await asyncio.sleep(0.5)
    return None
