"""`privacam` commands for identities: accounts, pairing cameras, settings, PINs, sharing."""

from __future__ import annotations

import argparse
import getpass
import json
import os
from pathlib import Path

from privacam.identity.v1 import device_auth_service_pb2 as pb
from privacam.identity.v1 import identity_pb2
from privacam_sdk.cli_common import message_dict, password
from privacam_sdk.client import PrivacamClient
from privacam_sdk.enrollment import DEFAULT_ENROLLMENT_ENDPOINT, Enrollment
from privacam_sdk.profile import Profile

SCOPES = {
    "live": identity_pb2.GRANT_SCOPE_LIVE,
    "clips": identity_pb2.GRANT_SCOPE_CLIPS,
    "talk": identity_pb2.GRANT_SCOPE_TALK,  # talk-back: never given unless asked for
}


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, help_text in (
        ("register", "create an account; this device becomes its app"),
        ("sign-in", "enroll this device as an app of an existing account"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--login", required=True)
        command.add_argument("--ca", type=Path, required=True, help="the platform's CA (PEM)")
        command.add_argument("--enroll-endpoint", default=DEFAULT_ENROLLMENT_ENDPOINT)
        command.add_argument("--label", default="")
        command.add_argument(
            "--endpoint",
            action="append",
            default=[],
            metavar="SERVICE=HOST:PORT",
            help="where a service listens",
        )
    enroll = commands.add_parser("enroll-camera", help="pair this device as a camera")
    enroll.add_argument("--token", required=True, help="claim token from the owner's app")
    enroll.add_argument("--serial", required=True)
    enroll.add_argument(
        "--owner-cert",
        type=Path,
        action="append",
        default=[],
        help="the owner app's certificate (PEM), handed over with the token: only its key "
        "signs privacy statements this camera applies",
    )
    enroll.add_argument("--ca", type=Path, required=True)
    enroll.add_argument("--enroll-endpoint", default=DEFAULT_ENROLLMENT_ENDPOINT)
    enroll.add_argument("--endpoint", action="append", default=[], metavar="SERVICE=HOST:PORT")
    commands.add_parser("claim-token", help="a single-use token to pair a new camera")
    cameras = commands.add_parser("cameras", help="cameras you own or that are shared with you")
    cameras.add_argument("--json", action="store_true", help="machine-readable output")
    settings = commands.add_parser("settings", help="change a camera's settings")
    settings.add_argument("device")
    settings.add_argument("--alerts", choices=("on", "off"))
    settings.add_argument("--retention-days", type=int)
    pin = commands.add_parser("set-pin", help="set a camera's 4-digit PIN")
    pin.add_argument("device")
    share = commands.add_parser("share", help="let another account view a camera")
    share.add_argument("device")
    share.add_argument("--with", dest="grantee", required=True, help="the other account's login")
    share.add_argument(
        "--scope",
        action="append",
        choices=sorted(SCOPES),
        default=[],
        help="repeat for several (default: live and clips; talk only when named)",
    )


async def run(args: argparse.Namespace, base: Path) -> int:
    if args.command in ("register", "sign-in", "enroll-camera"):
        endpoints = dict(pair.split("=", 1) for pair in args.endpoint) or None
        enrollment = Enrollment(args.ca.read_bytes(), args.enroll_endpoint, endpoints, home=base)
        if args.command == "register":
            profile, tenant = await enrollment.register_account(
                args.profile, args.login, password(), args.label
            )
            print(f"account created: tenant {tenant}; profile {profile.name}")
        elif args.command == "sign-in":
            profile, tenant = await enrollment.sign_in(
                args.profile, args.login, password(), args.label
            )
            print(f"signed in to tenant {tenant}; profile {profile.name}")
        else:
            owners = [path.read_bytes() for path in args.owner_cert]
            profile, device = await enrollment.enroll_camera(
                args.profile, args.token, args.serial, owners
            )
            print(f"camera paired: device {device}; profile {profile.name}")
        return 0
    async with PrivacamClient(Profile.load(args.profile, base)) as client:
        stub = client.device_auth()
        if args.command == "claim-token":
            token = await stub.CreateClaimToken(pb.CreateClaimTokenRequest())
            print(token.claim_token)
            print(f"valid until {token.expires_at.ToDatetime().isoformat()}Z, once")
        elif args.command == "cameras":
            listed = (await stub.ListCameras(pb.ListCamerasRequest())).cameras
            if args.json:
                print(json.dumps([message_dict(c) for c in listed], indent=2))
                return 0
            for camera in listed:
                role = identity_pb2.CameraRole.Name(camera.role).removeprefix("CAMERA_ROLE_")
                print(
                    f"{camera.device_id}  {role.lower():7} serial={camera.serial} "
                    f"alerts={'on' if camera.settings.activity_alerts_enabled else 'off'} "
                    f"retention={camera.settings.retention_days}d "
                    f"pin={'set' if camera.settings.pin_set else 'none'}"
                )
        elif args.command == "settings":
            request = pb.UpdateCameraSettingsRequest(device_id=args.device)
            if args.alerts is not None:
                request.activity_alerts_enabled = args.alerts == "on"
            if args.retention_days is not None:
                request.retention_days = args.retention_days
            updated = (await stub.UpdateCameraSettings(request)).settings
            print(
                f"alerts={'on' if updated.activity_alerts_enabled else 'off'} "
                f"retention={updated.retention_days}d"
            )
        elif args.command == "set-pin":
            pin = os.environ.get("PRIVACAM_PIN") or getpass.getpass("new 4-digit PIN: ")
            await stub.SetPin(pb.SetPinRequest(device_id=args.device, pin=pin))
            print("PIN set")
        elif args.command == "share":
            grant = (
                await stub.CreateGrant(
                    pb.CreateGrantRequest(
                        device_id=args.device,
                        grantee_login=args.grantee,
                        scopes=[SCOPES[s] for s in args.scope or ["live", "clips"]],
                    )
                )
            ).grant
            print(f"shared: grant {grant.grant_id}")
    return 0
