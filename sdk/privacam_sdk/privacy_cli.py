"""`privacam privacy ...`: the owner switches a camera's privacy mode (signed by this app).

privacam --profile owner privacy <device> on
privacam --profile owner privacy <device> off
privacam --profile owner privacy <device> until 2h            (or 30m, 1d, 2026-12-07T07:00Z)
privacam --profile owner privacy <device> schedule "weekdays 22:00-07:00, sat 00:00-24:00" \\
    --utc-offset +01:00
privacam --profile owner privacy <device> status [--json]

`--json` prints one JSON document (for status and for a change): the mode, whether the camera
is private now and why, when that may change next, and who signed the statement when.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.identity.v1 import privacy_pb2
from privacam_sdk.client import PrivacamClient
from privacam_sdk.privacy import DAYS, Mode, current_mode, parse_schedule, set_privacy_mode
from privacam_sdk.profile import Profile

_RELATIVE = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    privacy = commands.add_parser(
        "privacy", help="a camera's privacy mode: on, off, until, schedule, status (owner)"
    )
    privacy.add_argument("device")
    privacy.add_argument("mode", choices=("on", "off", "until", "schedule", "status"))
    privacy.add_argument(
        "value",
        nargs="?",
        default="",
        help="for until: 30m, 2h, 1d or an ISO 8601 time; for schedule: "
        "'mon-fri 22:00-07:00, sat 00:00-24:00' (days: mon..sun, ranges, daily, weekdays, "
        "weekends)",
    )
    privacy.add_argument(
        "--utc-offset", default="+00:00", help="the household's UTC offset for a schedule"
    )
    privacy.add_argument("--json", action="store_true", help="machine-readable output")


def until(text: str, now: datetime) -> datetime:
    """``30m``, ``2h``, ``1d`` from now, or an ISO 8601 time (UTC when it names no zone)."""
    relative = _RELATIVE.fullmatch(text.strip())
    if relative is not None:
        return now + timedelta(**{_UNITS[relative[2]]: int(relative[1])})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"until wants 30m, 2h, 1d or an ISO 8601 time, not {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def mode_from(args: argparse.Namespace, now: datetime) -> Mode:
    if args.mode in ("on", "off"):
        return Mode(args.mode)
    if not args.value:
        raise ValueError(f"privacy {args.mode} needs a value (see privacam privacy --help)")
    if args.mode == "until":
        return Mode("until", until=until(args.value, now))
    return parse_schedule(args.value, args.utc_offset)


def _minute(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def mode_json(
    device_id: str,
    mode: Mode | None,
    now: datetime,
    statement: privacy_pb2.PrivacyStatement | None = None,
) -> dict[str, Any]:
    """``privacy ... --json``: the camera's mode (None: never set) as of ``now``."""
    if mode is None:
        return {"device_id": device_id, "mode": None, "private": False, "reason": None}
    reason = mode.private_reason(now)
    document: dict[str, Any] = {
        "device_id": device_id,
        "mode": mode.kind,
        "description": mode.describe(),
        "private": reason is not None,
        "reason": reason,
        "next_change": _time(mode.next_change(now)),
    }
    if mode.kind == "until":
        document["until"] = _time(mode.until)
    if mode.kind == "schedule":
        document["utc_offset_minutes"] = mode.utc_offset_minutes
        document["windows"] = [
            {"day": DAYS[w.day], "start": _minute(w.start), "end": _minute(w.end)}
            for w in mode.windows
        ]
    if statement is not None:
        document["signer_install_id"] = statement.signer_install_id
        document["issued_at"] = statement.issued_at.ToJsonString()
    return document


async def run(args: argparse.Namespace, profile: Profile) -> int:
    now = datetime.now(UTC)
    statement: privacy_pb2.PrivacyStatement | None = None
    async with PrivacamClient(profile, timeout=15) as client:
        if args.mode == "status":
            reply = await client.device_auth().GetCameraSettings(
                id_pb.GetCameraSettingsRequest(device_id=args.device)
            )
            mode = current_mode(reply.settings)
            if reply.settings.HasField("privacy"):
                statement = privacy_pb2.PrivacyStatement.FromString(
                    reply.settings.privacy.statement
                )
        else:
            mode = mode_from(args, now)
            await set_privacy_mode(client, args.device, mode, now)
    if args.json:
        print(json.dumps(mode_json(args.device, mode, now, statement), indent=2, sort_keys=True))
        return 0
    if mode is None:
        print(f"{args.device}: privacy mode never set (off)")
        return 0
    reason = mode.private_reason(now)
    print(f"{args.device}: {mode.describe()}; now {'private' if reason else 'not private'}")
    return 0
