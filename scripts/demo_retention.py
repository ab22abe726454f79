"""Demo step for retention and privacy rights (issue #7), run last by scripts/demo.py: a
week passes on the retention service's development clock and the camera's clip is gone;
the owner exports their data, then cancels the account.

Moving time: `make up` starts retention with PRIVACAM_RETENTION_DEV_CLOCK_FILE pointing at
.run/retention-clock-offset; the service adds the number of seconds in that file to the
wall clock (never going back). The setting is refused unless the service binds a loopback
address, so a deployment cannot run on this clock.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import uuid
import zipfile
from datetime import timedelta
from pathlib import Path

import grpc

from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.identity.v1 import identity_pb2
from privacam.retention.v1 import retention_pb2
from privacam.retention.v1 import retention_service_pb2 as pb
from privacam.retention.v1 import retention_service_pb2_grpc as pb_grpc
from privacam_sdk import PrivacamClient, Profile
from privacam_sdk.clips import list_clips

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = Path(os.environ.get("PRIVACAM_RUN_DIR", ROOT / ".run"))
HOME = RUN_DIR / "home"
CLOCK = RUN_DIR / "retention-clock-offset"
PASSWORD = "correct horse battery staple"  # noqa: S105 - the demo owner's, from demo.py


def say(text: str) -> None:
    print(f"\n== {text}")


def let_time_pass(delta: timedelta) -> None:
    offset = float(CLOCK.read_text()) if CLOCK.exists() else 0.0
    temporary = CLOCK.with_suffix(".tmp")
    temporary.write_text(str(offset + delta.total_seconds()))
    temporary.replace(CLOCK)


async def retention() -> int:
    owner = Profile.load("owner", HOME)
    async with PrivacamClient(owner, timeout=30) as app:
        rights: pb_grpc.RetentionServiceAsyncStub = pb_grpc.RetentionServiceStub(
            app.channel("retention")
        )
        cameras = (await app.device_auth().ListCameras(id_pb.ListCamerasRequest())).cameras
        device = next(c.device_id for c in cameras if c.role == identity_pb2.CAMERA_ROLE_OWNER)

        say("Retention: each clip is deleted at its ingest time plus the camera's retention")
        settings = await rights.GetRetentionSettings(
            pb.GetRetentionSettingsRequest(device_id=device)
        )
        before = [c.clip_id async for c in list_clips(app, device)]
        print(
            f"  {settings.retention_days} days (operator allows {settings.min_retention_days}-"
            f"{settings.max_retention_days}); {len(before)} clip(s); next deletion "
            f"{settings.next_deletion_at.ToDatetime():%Y-%m-%d %H:%M} UTC"
        )

        say("A week passes on the retention service's development clock")
        let_time_pass(timedelta(days=7, minutes=1))
        for _ in range(300):
            left = [c.clip_id async for c in list_clips(app, device)]
            if not left:
                break
            await asyncio.sleep(0.1)
        else:
            print(f"  !! {len(left)} clip(s) still listed (was retention started by `make up`?)")
            return 1
        settings = await rights.GetRetentionSettings(
            pb.GetRetentionSettingsRequest(device_id=device)
        )
        print(
            f"  the clip is gone from MinIO and from the listing; next deletion: "
            f"{'none' if not settings.HasField('next_deletion_at') else 'still scheduled'}"
        )
        shreds = (await rights.ListShredRecords(pb.ListShredRecordsRequest())).records
        print(
            f"  key periods shredded so far: {len(shreds)} (a period goes once it has rotated "
            "and its last clip is deleted)"
        )

        say("The owner asks for a copy of their data; it is assembled in the background")
        export = (await rights.RequestExport(pb.RequestExportRequest())).export
        for _ in range(300):
            export = (
                await rights.GetExport(pb.GetExportRequest(export_id=export.export_id))
            ).export
            if export.state in (
                retention_pb2.EXPORT_STATE_READY,
                retention_pb2.EXPORT_STATE_FAILED,
            ):
                break
            await asyncio.sleep(0.1)
        state = retention_pb2.ExportState.Name(export.state).removeprefix("EXPORT_STATE_")
        print(
            f"  {state}: {export.items_done}/{export.items_total} items, "
            f"{export.size_bytes:,} bytes"
        )
        if export.state != retention_pb2.EXPORT_STATE_READY:
            print(f"  !! {export.failure_reason}")
            return 1
        archive = b""
        async for part in rights.DownloadExport(
            pb.DownloadExportRequest(export_id=export.export_id)
        ):
            if part.HasField("chunk"):
                archive += part.chunk.data
        with zipfile.ZipFile(io.BytesIO(archive)) as opened:
            document = json.loads(opened.read("export.json"))
            print(f"  downloaded over mTLS and logged: {', '.join(opened.namelist())}")
        account = document["account"]
        print(
            f"  export.json: login {account['login']}, {len(account.get('cameras', []))} camera, "
            f"{len(account.get('grants_given', []))} grant given, "
            f"{len(document['access_log'])} access-log entries, {len(document['clips'])} clips"
        )

        say("The owner cancels the account (password re-checked)")
        response = await rights.CancelAccount(
            pb.CancelAccountRequest(password=PASSWORD, cancellation_id=str(uuid.uuid4()))
        )
        record = response.record
        print(
            f"  completion record {record.cancellation_id[:8]}…: {record.clips_deleted} clips, "
            f"{record.exports_deleted} export, {record.cameras_removed} camera, "
            f"{record.app_installs_removed} app install, {record.grants_removed} grant, "
            f"{record.certificates_revoked} certificates revoked, "
            f"{record.key_versions_destroyed} key version(s) destroyed"
        )
    await asyncio.sleep(1)  # the revocation reaches every service within a second
    async with PrivacamClient(owner, timeout=10) as app:
        try:
            await app.device_auth().GetAccount(id_pb.GetAccountRequest())
            print("  !! the cancelled account's app still works")
            return 1
        except grpc.aio.AioRpcError as error:
            print(f"  the app's certificate now: {error.code().name}")
    return 0
