"""`privacam clips ...`: upload a clip as a camera; list, download and delete as an app.

privacam --profile front-door clips upload motion.mp4 --id motion-0001
privacam --profile owner clips list <device>
privacam --profile owner clips download <device> motion-0001 -o motion.mp4
    (the camera's PIN, when one is set: PRIVACAM_PIN or asked for; never an argument)
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from privacam.clips.v1 import clip_service_pb2 as pb
from privacam_sdk.cli_common import camera_pin, message_dict
from privacam_sdk.client import PrivacamClient
from privacam_sdk.clips import list_clips, save_clip, upload_clip
from privacam_sdk.profile import Profile


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    clips = commands.add_parser("clips", help="alert clips: upload, list, download, delete")
    actions = clips.add_subparsers(dest="action", required=True)
    upload = actions.add_parser("upload", help="send an MP4 (at most 6 s) as this camera")
    upload.add_argument("file", type=Path)
    upload.add_argument("--id", dest="clip_id", required=True, help="the camera's clip id")
    listed = actions.add_parser("list", help="a camera's clips, newest first")
    listed.add_argument("device")
    listed.add_argument("--json", action="store_true", help="machine-readable output")
    download = actions.add_parser("download", help="save a clip (decrypted) to a file")
    download.add_argument("device")
    download.add_argument("clip_id")
    download.add_argument("-o", "--output", type=Path, required=True)
    download.add_argument(
        "--ask-pin",
        action="store_true",
        help="prompt for the camera's PIN (or set PRIVACAM_PIN); never given as an argument",
    )
    delete = actions.add_parser("delete", help="delete a clip now (owner)")
    delete.add_argument("device")
    delete.add_argument("clip_id")


async def run(args: argparse.Namespace, profile: Profile) -> int:
    async with PrivacamClient(profile, timeout=60) as client:
        if args.action == "upload":
            data = await asyncio.to_thread(args.file.read_bytes)
            stored = await upload_clip(client, data, args.clip_id, datetime.now(UTC))
            seconds = stored.duration.ToTimedelta().total_seconds()
            state = "stored" if stored.created else "already stored"
            print(
                f"{stored.clip_id}: {state}, {seconds:g} s, at {stored.ingested_at.ToJsonString()}"
            )
        elif args.action == "list":
            clips = [clip async for clip in list_clips(client, args.device)]
            if args.json:
                print(json.dumps([message_dict(c) for c in clips], indent=2))
                return 0
            for clip in clips:
                print(
                    f"{clip.clip_id}\t{clip.captured_at.ToJsonString()}\t"
                    f"{clip.duration.ToTimedelta().total_seconds():g} s\t{clip.size_bytes} bytes"
                )
        elif args.action == "download":
            pin = await camera_pin(args.ask_pin)
            clip = await save_clip(client, args.device, args.clip_id, args.output, pin)
            print(f"{clip.clip_id}: {clip.size_bytes} bytes written to {args.output}")
        else:
            deleted = await client.clips().DeleteClip(
                pb.DeleteClipRequest(device_id=args.device, clip_id=args.clip_id)
            )
            print(f"{args.clip_id}: deleted at {deleted.deleted_at.ToJsonString()}")
    return 0
