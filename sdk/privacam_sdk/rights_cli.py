"""`privacam` commands for a household's rights and its shares, cameras and certificate.

privacam --profile owner export [-o privacam-export.zip]     request, build, download, verify
privacam --profile owner export list [--json]
privacam --profile owner account show [--json]
privacam --profile owner account correct --login new-login
privacam --profile owner account cancel [--record cancellation.json]   (asks the password)
privacam --profile owner consent withdraw <device> --clips keep|delete
privacam --profile owner grants [--json]
privacam --profile owner unshare <grant>
privacam --profile owner camera revoke <device>
privacam --profile owner certificate renew
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import uuid
import zipfile
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.identity.v1 import identity_pb2
from privacam.retention.v1 import retention_pb2
from privacam.retention.v1 import retention_service_pb2 as pb
from privacam.retention.v1 import retention_service_pb2_grpc as pb_grpc
from privacam_sdk import cli_common
from privacam_sdk.cli_common import message_dict as _dict
from privacam_sdk.cli_common import print_json as _print_json
from privacam_sdk.client import PrivacamClient
from privacam_sdk.enrollment import renew_certificate
from privacam_sdk.profile import Profile

COMMANDS = ("export", "account", "consent", "grants", "unshare", "camera", "certificate")
POLL_SECONDS = 0.2
EXPORT_WAIT_SECONDS = 600.0


class CommandError(Exception):
    """One line for the user: what went wrong and what to do; nothing more was sent."""


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = commands.add_parser(
        "export", help="a copy of all your data: request, build, download and verify it"
    )
    export.add_argument("action", nargs="?", choices=("get", "list"), default="get")
    export.add_argument(
        "-o", "--output", type=Path, default=Path("privacam-export.zip"), help="archive to write"
    )
    export.add_argument("--json", action="store_true", help="machine-readable output")

    account = commands.add_parser("account", help="your account: show, correct, cancel")
    actions = account.add_subparsers(dest="action", required=True)
    show = actions.add_parser("show", help="the account's data as the platform holds it")
    show.add_argument("--json", action="store_true")
    correct = actions.add_parser("correct", help="correct the account's data (login)")
    correct.add_argument("--login", required=True)
    cancel = actions.add_parser(
        "cancel", help="delete the account and everything it owns (asks for the password)"
    )
    cancel.add_argument(
        "--record",
        type=Path,
        default=None,
        help="where to save the completion record (default cancellation-<id>.json)",
    )
    cancel.add_argument("--json", action="store_true")

    consent = commands.add_parser("consent", help="withdraw consent for a camera")
    consent_actions = consent.add_subparsers(dest="action", required=True)
    withdraw = consent_actions.add_parser(
        "withdraw", help="turn the camera's alerts off and keep or delete its clips"
    )
    withdraw.add_argument("device")
    withdraw.add_argument("--clips", choices=("keep", "delete"), required=True)

    grants = commands.add_parser("grants", help="shares you gave and received")
    grants.add_argument("--json", action="store_true")
    unshare = commands.add_parser("unshare", help="end a share (a grant you gave or received)")
    unshare.add_argument("grant")

    camera = commands.add_parser("camera", help="a camera you own: revoke")
    camera_actions = camera.add_subparsers(dest="action", required=True)
    revoke = camera_actions.add_parser("revoke", help="unpair a camera and revoke its certificate")
    revoke.add_argument("device")

    certificate = commands.add_parser("certificate", help="this profile's certificate: renew")
    certificate.add_argument("action", choices=("renew",))


def _state(export: retention_pb2.Export) -> str:
    return retention_pb2.ExportState.Name(export.state).removeprefix("EXPORT_STATE_").lower()


def _progress(text: str) -> None:
    # A progress line on stderr (redrawn in a terminal) keeps stdout for the result.
    end = "\r" if sys.stderr.isatty() else "\n"
    print(f"{text:70}", end=end, file=sys.stderr, flush=True)


def _rights(client: PrivacamClient) -> pb_grpc.RetentionServiceAsyncStub:
    return pb_grpc.RetentionServiceStub(client.channel("retention"))


async def _build(rights: pb_grpc.RetentionServiceAsyncStub) -> retention_pb2.Export:
    export = (await rights.RequestExport(pb.RequestExportRequest())).export
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EXPORT_WAIT_SECONDS
    shown = ""
    while export.state in (retention_pb2.EXPORT_STATE_PENDING, retention_pb2.EXPORT_STATE_BUILDING):
        if loop.time() > deadline:
            raise CommandError(
                f"export {export.export_id} still {_state(export)} after "
                f"{EXPORT_WAIT_SECONDS:g}s; run `privacam export list` later"
            )
        line = f"export {export.export_id[:8]}: {_state(export)} {export.items_done}/" + (
            f"{export.items_total} items" if export.items_total else "? items"
        )
        if line != shown:
            _progress(line)
            shown = line
        await asyncio.sleep(POLL_SECONDS)
        export = (await rights.GetExport(pb.GetExportRequest(export_id=export.export_id))).export
    if export.state != retention_pb2.EXPORT_STATE_READY:
        raise CommandError(
            f"export {export.export_id} {_state(export)}: {export.failure_reason or 'no reason'};"
            " request a new one with `privacam export`"
        )
    _progress(f"export {export.export_id[:8]}: ready, {export.items_total} items")
    return export


async def _download(
    rights: pb_grpc.RetentionServiceAsyncStub, export: retention_pb2.Export, output: Path
) -> None:
    partial = output.with_name(output.name + ".part")
    written = 0
    with partial.open("wb") as file:
        stream = rights.DownloadExport(pb.DownloadExportRequest(export_id=export.export_id))
        async for part in stream:
            if part.HasField("chunk"):
                if part.chunk.offset != written:
                    raise CommandError(
                        f"the download skipped from byte {written} to {part.chunk.offset}; "
                        "run `privacam export` again"
                    )
                await asyncio.to_thread(file.write, part.chunk.data)
                written += len(part.chunk.data)
                _progress(f"downloading: {written:,}/{export.size_bytes:,} bytes")
    partial.replace(output)


def verify_archive(path: Path, export: retention_pb2.Export) -> list[str]:
    """The archive is the one the platform built (size and SHA-256) and opens whole."""
    data = path.read_bytes()
    if len(data) != export.size_bytes or hashlib.sha256(data).digest() != export.sha256:
        raise CommandError(
            f"{path} does not match export {export.export_id} (size or SHA-256 differs); "
            "delete it and run `privacam export` again"
        )
    with zipfile.ZipFile(path) as archive:
        broken = archive.testzip()
        if broken is not None:
            raise CommandError(f"{path}: {broken} is corrupt; run `privacam export` again")
        names = archive.namelist()
        json.loads(archive.read("export.json"))
    return names


async def _export(args: argparse.Namespace, client: PrivacamClient) -> int:
    rights = _rights(client)
    if args.action == "list":
        exports = (await rights.ListExports(pb.ListExportsRequest())).exports
        if args.json:
            _print_json([_dict(export) for export in exports])
            return 0
        for export in exports:
            print(
                f"{export.export_id}  {_state(export):8} requested "
                f"{export.requested_at.ToJsonString()}  {export.size_bytes:,} bytes"
            )
        return 0
    export = await _build(rights)
    await _download(rights, export, args.output)
    names = await asyncio.to_thread(verify_archive, args.output, export)
    if args.json:
        _print_json(
            {
                "export": _dict(export),
                "path": str(args.output),
                "sha256": export.sha256.hex(),
                "verified": True,
                "files": names,
            }
        )
    else:
        print(
            f"export {export.export_id}: {export.size_bytes:,} bytes written to {args.output}, "
            f"SHA-256 {export.sha256.hex()[:16]}… verified, {len(names)} files"
        )
    return 0


def _password() -> str:
    password = cli_common.password()
    if not password:
        raise CommandError("no password given; type it at the prompt or set PRIVACAM_PASSWORD")
    return password


async def _account(args: argparse.Namespace, client: PrivacamClient) -> int:
    stub = client.device_auth()
    if args.action == "show":
        account = await stub.GetAccount(id_pb.GetAccountRequest())
        if args.json:
            _print_json(_dict(account))
        else:
            print(
                f"login {account.login}  tenant {account.tenant_id}  "
                f"created {account.created_at.ToJsonString()}"
            )
        return 0
    if args.action == "correct":
        updated = await stub.UpdateAccount(id_pb.UpdateAccountRequest(login=args.login))
        print(f"login is now {updated.login}")
        return 0
    password = _password()
    response = await _rights(client).CancelAccount(
        pb.CancelAccountRequest(password=password, cancellation_id=str(uuid.uuid4()))
    )
    record = _dict(response.record)
    path = args.record or Path(f"cancellation-{response.record.cancellation_id}.json")
    # Saved first: once the call returned, the account can no longer ask for it again.
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    if args.json:
        _print_json(record)
        return 0
    done = response.record
    print(
        f"account cancelled at {done.completed_at.ToJsonString()}: {done.clips_deleted} clips, "
        f"{done.exports_deleted} exports, {done.cameras_removed} cameras, "
        f"{done.app_installs_removed} app installs, {done.grants_removed} grants deleted; "
        f"{done.certificates_revoked} certificates revoked; "
        f"{done.key_versions_destroyed} key versions destroyed"
    )
    print(f"completion record saved to {path}")
    return 0


async def _consent(args: argparse.Namespace, client: PrivacamClient) -> int:
    # Alerts off first: the service refuses while a clip could still arrive.
    await client.device_auth().UpdateCameraSettings(
        id_pb.UpdateCameraSettingsRequest(device_id=args.device, activity_alerts_enabled=False)
    )
    disposition = (
        retention_pb2.CLIP_DISPOSITION_KEEP
        if args.clips == "keep"
        else retention_pb2.CLIP_DISPOSITION_DELETE
    )
    withdrawn = await _rights(client).WithdrawConsent(
        pb.WithdrawConsentRequest(device_id=args.device, disposition=disposition)
    )
    print(
        f"{args.device}: consent withdrawn, alerts off; {withdrawn.clips_deleted} clips deleted, "
        f"{withdrawn.clips_kept} kept until their retention ends"
    )
    return 0


def _grant_line(grant: identity_pb2.Grant, direction: str) -> str:
    scopes = ",".join(
        identity_pb2.GrantScope.Name(s).removeprefix("GRANT_SCOPE_").lower() for s in grant.scopes
    )
    return f"{grant.grant_id}  {direction:8} camera {grant.device_id} scopes {scopes}"


async def _grants(args: argparse.Namespace, client: PrivacamClient) -> int:
    stub = client.device_auth()
    listed: list[tuple[str, identity_pb2.Grant]] = []
    for name, direction in (
        ("given", id_pb.GRANT_DIRECTION_GIVEN),
        ("received", id_pb.GRANT_DIRECTION_RECEIVED),
    ):
        reply = await stub.ListGrants(id_pb.ListGrantsRequest(direction=direction))
        listed.extend((name, grant) for grant in reply.grants)
    if args.json:
        _print_json([{"direction": name, **_dict(grant)} for name, grant in listed])
    else:
        for name, grant in listed:
            print(_grant_line(grant, name))
    return 0


async def _unshare(args: argparse.Namespace, client: PrivacamClient) -> int:
    revoked = await client.device_auth().RevokeGrant(id_pb.RevokeGrantRequest(grant_id=args.grant))
    print(f"share {args.grant} ended at {revoked.revoked_at.ToJsonString()}")
    return 0


async def _camera(args: argparse.Namespace, client: PrivacamClient) -> int:
    revoked = await client.device_auth().RevokeCamera(
        id_pb.RevokeCameraRequest(device_id=args.device)
    )
    print(f"camera {args.device} revoked at {revoked.revoked_at.ToJsonString()}")
    return 0


async def _certificate(args: argparse.Namespace, client: PrivacamClient) -> int:
    renewed = await renew_certificate(client)
    until = renewed.not_valid_after_utc.astimezone(UTC)
    print(
        f"certificate renewed for profile {client.profile.name}: serial {renewed.serial_number:x},"
        f" valid until {until.isoformat(timespec='seconds')}"
    )
    return 0


_RUNNERS: dict[str, Callable[[argparse.Namespace, PrivacamClient], Any]] = {
    "export": _export,
    "account": _account,
    "consent": _consent,
    "grants": _grants,
    "unshare": _unshare,
    "camera": _camera,
    "certificate": _certificate,
}


async def run(args: argparse.Namespace, profile: Profile) -> int:
    async with PrivacamClient(profile, timeout=30) as client:
        result: int = await _RUNNERS[args.command](args, client)
    return result


__all__ = ["COMMANDS", "CommandError", "add_commands", "run", "verify_archive"]
