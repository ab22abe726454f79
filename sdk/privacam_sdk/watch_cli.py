"""`privacam watch …`: the privacy watch of your household.

`privacam watch digest`: the household's digests from the privacy watch, each checked
against the household's verified access log. Exit status 0 when every digest agrees with
the log, 3 when one disagrees or the log itself fails verification (as `access-log list`),
4 when the log was deleted.

`privacam watch mute|unmute <camera> <rule>`, `set <camera> burst-count N` and
`show <camera>`: the owner's tuning of the watch for one camera, kept in the camera's
settings (DeviceAuthService.UpdateCameraSettings; only the owner may change it).

`--json` prints one JSON document (protobuf's JSON mapping with the .proto field names)."""

from __future__ import annotations

import argparse
from datetime import time
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from privacam.identity.v1 import device_auth_service_pb2 as identity_pb
from privacam.identity.v1 import identity_pb2
from privacam.types.v1 import types_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from privacam_sdk.access_log import LogDeleted, ReceiptError
from privacam_sdk.access_log_cli import EXIT_DELETED, EXIT_TAMPERED
from privacam_sdk.cli_common import message_dict, print_json
from privacam_sdk.client import PrivacamClient
from privacam_sdk.profile import Profile
from privacam_sdk.watch import DigestCheck, WatchReader

EXIT_DISAGREES = EXIT_TAMPERED


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "watch", help="the privacy watch of your household: digests, per-camera tuning"
    )
    actions = command.add_subparsers(dest="action", required=True)
    digest = actions.add_parser(
        "digest", help="the weekly digests, each checked against the verified access log"
    )
    digest.add_argument("--json", action="store_true", help="machine-readable output")
    rules = ", ".join(RULES)
    for name, what in (("mute", "stop telling"), ("unmute", "tell again")):
        mute = actions.add_parser(name, help=f"{what} one rule of the watch about one camera")
        mute.add_argument("camera", help="the camera's id")
        mute.add_argument("rule", choices=RULES, metavar="rule", help=f"one of: {rules}")
        mute.add_argument("--json", action="store_true", help="machine-readable output")
    tune = actions.add_parser("set", help="tune the watch for one camera")
    tune.add_argument("camera", help="the camera's id")
    tune.add_argument("setting", choices=("burst-count",), help="burst-count")
    tune.add_argument(
        "value",
        type=int,
        help="playbacks or downloads of this camera by one viewer within the burst window "
        "(10 min by default) that make a burst "
        "(2 to 1000; 0: the watch's default)",
    )
    tune.add_argument("--json", action="store_true", help="machine-readable output")
    show = actions.add_parser("show", help="the watch's tuning of one camera")
    show.add_argument("camera", help="the camera's id")
    show.add_argument("--json", action="store_true", help="machine-readable output")


RULES = (
    "new-viewer",
    "operator-access",
    "burst",
    "outside-usual-hours",
    "wrong-pin-streak",
    "new-grant",
)
"""The rules of the watch that concern one camera, as the CLI names them."""


def rule_pb(name: str) -> watch_pb2.WatchRule.ValueType:
    return watch_pb2.WatchRule.Value("WATCH_RULE_" + name.upper().replace("-", "_"))


def rule_name(value: watch_pb2.WatchRule.ValueType) -> str:
    return watch_pb2.WatchRule.Name(value).removeprefix("WATCH_RULE_").lower().replace("_", "-")


def tuning_lines(camera: str, watch: identity_pb2.CameraWatchSettings) -> list[str]:
    muted = {rule_name(r) for r in watch.muted_rules}
    burst = str(watch.burst_count) if watch.burst_count else "the watch's default"
    lines = [f"camera {camera}: burst count {burst}"]
    lines += [f"  {rule:20} {'muted' if rule in muted else 'told'}" for rule in RULES]
    return lines


async def _tune(args: argparse.Namespace, profile: Profile) -> int:
    async with PrivacamClient(profile) as client:
        stub = client.device_auth()
        if args.action == "show":
            request = identity_pb.GetCameraSettingsRequest(device_id=args.camera)
            settings = (await stub.GetCameraSettings(request)).settings
        else:
            update = identity_pb.UpdateCameraSettingsRequest(device_id=args.camera)
            if args.action == "mute":
                update.mute_watch_rules.append(rule_pb(args.rule))
            elif args.action == "unmute":
                update.unmute_watch_rules.append(rule_pb(args.rule))
            else:
                if args.value < 0:
                    raise ValueError("burst-count must be 2 to 1000, or 0 for the default")
                update.watch_burst_count = args.value
            settings = (await stub.UpdateCameraSettings(update)).settings
    if args.json:
        print_json(
            {
                "device_id": args.camera,
                "muted_rules": [rule_name(r) for r in settings.watch.muted_rules],
                "burst_count": settings.watch.burst_count,
                "watch": message_dict(settings.watch),
            }
        )
    else:
        print("\n".join(tuning_lines(args.camera, settings.watch)))
    return 0


def check_json(check: DigestCheck) -> dict[str, Any]:
    head = check.head
    return {
        "agrees": check.agrees,
        "problems": check.problems,
        "digest": message_dict(check.notice),
        "head": {
            "tenant_id": head.tenant_id,
            "tree_size": head.tree_size,
            "root_hash": head.root_hash.hex(),
            "timestamp": head.timestamp.ToJsonString(),
            "key_id": head.key_id,
        },
    }


def _when(stamp: Timestamp) -> str:
    """The day, or the minute for the short periods of a development platform (UTC)."""
    moment = stamp.ToDatetime()
    return f"{moment:%Y-%m-%d}" if moment.time() == time() else f"{moment:%Y-%m-%d %H:%M} UTC"


def _lines(check: DigestCheck) -> list[str]:
    digest = check.notice.digest
    start, end = _when(digest.period_start), _when(digest.period_end)
    verdict = "agrees with" if check.agrees else "DISAGREES with"
    lines = [
        f"{start} to {end}: {digest.views} views in entries {digest.first_index}"
        f" to {digest.end_index - 1}; {verdict} the log (head size {check.head.tree_size}, "
        f"root {check.head.root_hash.hex()[:16]}…)"
    ]
    for viewer in digest.by_viewer:
        kind = types_pb2.PrincipalKind.Name(viewer.principal.kind).removeprefix("PRINCIPAL_KIND_")
        lines.append(f"  {kind.lower()} {viewer.principal.id}: {viewer.count}")
    for each in digest.by_kind:
        purpose = types_pb2.AccessPurpose.Name(each.purpose).removeprefix("ACCESS_PURPOSE_")
        lines.append(f"  {purpose.lower()}: {each.count}")
    for camera in digest.by_camera:
        lines.append(f"  camera {camera.device_id or '(account)'}: {camera.count}")
    lines += [f"  ! {problem}" for problem in check.problems]
    return lines


async def run(args: argparse.Namespace, profile: Profile) -> int:
    if args.action != "digest":
        return await _tune(args, profile)
    async with PrivacamClient(profile) as client:
        try:
            checks = await WatchReader(client).check()
        except LogDeleted as deleted:
            if args.json:
                print_json({"verified": True, "deleted": True, "message": str(deleted)})
            else:
                print(str(deleted))
            return EXIT_DELETED
        except ReceiptError as error:
            if args.json:
                print_json({"verified": False, "error": str(error)})
            else:
                print(f"LOG VERIFICATION FAILED: {error}")
            return EXIT_TAMPERED
    status = 0 if all(c.agrees for c in checks) else EXIT_DISAGREES
    if args.json:
        print_json({"verified": True, "digests": [check_json(c) for c in checks]})
        return status
    if not checks:
        print("no digest yet")
    for check in checks:
        print("\n".join(_lines(check)))
    return status


__all__ = ["add_commands", "run"]
