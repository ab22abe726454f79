"""`privacam privacy ...`: the owner switches a camera's privacy mode (signed by this app).

privacam --profile owner privacy <device> on
privacam --profile owner privacy <device> off
privacam --profile owner privacy <device> until 2h            (or 30m, 1d, 2026-12-07T07:00Z)
privacam --profile owner privacy <device> schedule "weekdays 22:00-07:00, sat 00:00-24:00" \\
    --utc-offset +01:00
privacam --profile owner privacy <device> status
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta

from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam_sdk.client import PrivacamClient
from privacam_sdk.privacy import Mode, current_mode, parse_schedule, set_privacy_mode
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


async def run(args: argparse.Namespace, profile: Profile) -> int:
    now = datetime.now(UTC)
    async with PrivacamClient(profile, timeout=15) as client:
        if args.mode == "status":
            reply = await client.device_auth().GetCameraSettings(
                id_pb.GetCameraSettingsRequest(device_id=args.device)
            )
            mode = current_mode(reply.settings)
        else:
            mode = mode_from(args, now)
            await set_privacy_mode(client, args.device, mode, now)
    if mode is None:
        print(f"{args.device}: privacy mode never set (off)")
        return 0
    reason = mode.private_reason(now)
    print(f"{args.device}: {mode.describe()}; now {'private' if reason else 'not private'}")
    return 0
