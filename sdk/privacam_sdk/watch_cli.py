"""`privacam watch digest`: the household's digests from the privacy watch, each checked
against the household's verified access log.

Exit status 0 when every digest agrees with the log, 3 when one disagrees or the log
itself fails verification (as `access-log list`), 4 when the log was deleted. `--json`
prints one JSON document (protobuf's JSON mapping with the .proto field names)."""

from __future__ import annotations

import argparse
from datetime import time
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from privacam.types.v1 import types_pb2
from privacam_sdk.access_log import LogDeleted, ReceiptError
from privacam_sdk.access_log_cli import EXIT_DELETED, EXIT_TAMPERED
from privacam_sdk.cli_common import message_dict, print_json
from privacam_sdk.client import PrivacamClient
from privacam_sdk.profile import Profile
from privacam_sdk.watch import DigestCheck, WatchReader

EXIT_DISAGREES = EXIT_TAMPERED


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser("watch", help="the privacy watch's digests of your household")
    actions = command.add_subparsers(dest="action", required=True)
    digest = actions.add_parser(
        "digest", help="the weekly digests, each checked against the verified access log"
    )
    digest.add_argument("--json", action="store_true", help="machine-readable output")


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
