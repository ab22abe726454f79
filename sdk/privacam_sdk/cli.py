"""`privacam`: the command line for camera-firmware and app developers and operators.

privacam profile import demo --ca ca.crt --cert tls.crt --key tls.key
privacam --profile demo health
privacam --profile demo probe --from device_auth
privacam --profile owner privacy <camera> on|off|until 2h|schedule "weekdays 22:00-07:00"|status
privacam --profile owner talk <camera> --wav hello.wav
privacam --profile owner export | account cancel | consent withdraw | unshare | camera revoke
privacam --version
privacam completion bash|zsh|tcsh     (a shell completion script: see privacam completion -h)

A PIN comes from a prompt or PRIVACAM_PIN and a password from a prompt or PRIVACAM_PASSWORD,
never from an argument (arguments end up in shell history and process listings).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import grpc

from privacam_sdk import (
    access_log_cli,
    clips_cli,
    completion_cli,
    identity_cli,
    privacy_cli,
    rights_cli,
    talk_cli,
    watch_cli,
)
from privacam_sdk.client import PrivacamClient, describe_error
from privacam_sdk.profile import SERVICES, Profile, home

IDENTITY_COMMANDS = (
    "register",
    "sign-in",
    "enroll-camera",
    "claim-token",
    "cameras",
    "settings",
    "set-pin",
    "share",
)


def _endpoints(pairs: Sequence[str]) -> dict[str, str] | None:
    if not pairs:
        return None
    endpoints = {}
    for pair in pairs:
        service, _, address = pair.partition("=")
        if service not in SERVICES or not address:
            raise SystemExit(f"--endpoint wants SERVICE=HOST:PORT with SERVICE one of {SERVICES}")
        endpoints[service] = address
    return endpoints


async def _health(profile: Profile, services: Sequence[str]) -> int:
    worst = 0
    async with PrivacamClient(profile, timeout=5) as client:
        for service in services:
            try:
                status = await client.health(service)
            except grpc.aio.AioRpcError as error:
                status, worst = describe_error(error), 1
            else:
                worst = worst if status == "SERVING" else 1
            print(f"{service:14} {status}")
    return worst


async def _probe(profile: Profile, origin: str, wait: float) -> int:
    async with PrivacamClient(profile, timeout=5) as client:
        sent = await client.send_probe(origin)
        print(f"probe {sent.probe_id} published by {origin} in trace {sent.trace_id}")
        pending = set(SERVICES)
        deadline = time.monotonic() + wait
        while pending and time.monotonic() < deadline:
            for service in sorted(pending):
                seen = await client.get_probe(service, sent.probe_id)
                if seen.received:
                    same = "same trace" if seen.trace_id == sent.trace_id else "OTHER TRACE"
                    print(
                        f"  {service:14} consumed it from Kafka in trace {seen.trace_id} ({same})"
                    )
                    pending.discard(service)
            if pending:
                await asyncio.sleep(0.2)
        for service in sorted(pending):
            print(f"  {service:14} did not consume it within {wait:g}s")
        return 1 if pending else 0


def _version() -> str:
    # privacam-sdk when installed alone (pip install ./sdk), privacam in the repository.
    for distribution in ("privacam-sdk", "privacam"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The `privacam` command line (the demo parses its steps' commands with it too)."""
    parser = argparse.ArgumentParser(prog="privacam", description="Privacam client")
    parser.add_argument("--version", action="version", version=f"privacam {_version()}")
    parser.add_argument("--profile", default="demo", help="local profile to act as")
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="where profiles live (default $PRIVACAM_HOME or ~/.privacam)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    profile_cmd = commands.add_parser("profile", help="manage local identities")
    profile_sub = profile_cmd.add_subparsers(dest="action", required=True)
    imported = profile_sub.add_parser("import", help="store a key and certificate as a profile")
    imported.add_argument("name")
    imported.add_argument("--ca", type=Path, required=True)
    imported.add_argument("--cert", type=Path, required=True)
    imported.add_argument("--key", type=Path, required=True)
    imported.add_argument("--endpoint", action="append", default=[], metavar="SERVICE=HOST:PORT")
    imported.add_argument("--trust-domain", default="privacam.local")
    profile_list = profile_sub.add_parser("list", help="list local profiles")
    profile_list.add_argument("--json", action="store_true", help="machine-readable output")

    health = commands.add_parser("health", help="health of services over mTLS")
    health.add_argument("services", nargs="*", metavar="SERVICE", help=f"any of {SERVICES}")

    probe = commands.add_parser("probe", help="send a probe event through Kafka and trace it")
    probe.add_argument("--from", dest="origin", choices=SERVICES, default="device_auth")
    probe.add_argument("--wait", type=float, default=15.0, help="seconds to wait for consumers")

    identity_cli.add_commands(commands)
    access_log_cli.add_commands(commands)
    clips_cli.add_commands(commands)
    privacy_cli.add_commands(commands)
    talk_cli.add_commands(commands)
    watch_cli.add_commands(commands)
    rights_cli.add_commands(commands)
    completion_cli.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    if any(arg == "--pin" or arg.startswith("--pin=") for arg in given):
        # Refused before parsing: an argument stays in shell history and process listings.
        print(
            "privacam: a PIN is never an argument; set PRIVACAM_PIN or answer the prompt",
            file=sys.stderr,
        )
        raise SystemExit(2)
    args = parser.parse_args(given)
    if args.command == "completion":
        raise SystemExit(completion_cli.run(args, parser))
    base = args.home or home()
    if args.command == "profile":
        if args.action == "import":
            created = Profile.import_files(
                args.name,
                args.ca,
                args.cert,
                args.key,
                _endpoints(args.endpoint),
                args.trust_domain,
                base,
            )
            print(f"profile {created.name} stored in {created.directory}")
        else:
            names = [p.parent.name for p in sorted((base / "profiles").glob("*/profile.json"))]
            print(json.dumps(names) if args.json else "\n".join(names))
        return
    if args.command in IDENTITY_COMMANDS:
        try:
            raise SystemExit(asyncio.run(identity_cli.run(args, base)))
        except grpc.aio.AioRpcError as error:
            print(f"privacam: {describe_error(error)}", file=sys.stderr)
            raise SystemExit(1) from None
    try:
        profile = Profile.load(args.profile, base)
    except FileNotFoundError as error:
        print(f"privacam: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.command == "health":
        raise SystemExit(asyncio.run(_health(profile, args.services or SERVICES)))
    if args.command == "probe":
        raise SystemExit(asyncio.run(_probe(profile, args.origin, args.wait)))
    runners = {
        "access-log": access_log_cli.run,
        "privacy": privacy_cli.run,
        "talk": talk_cli.run,
        "clips": clips_cli.run,
        "watch": watch_cli.run,
        **dict.fromkeys(rights_cli.COMMANDS, rights_cli.run),
    }
    try:
        raise SystemExit(asyncio.run(runners[args.command](args, profile)))
    # A malformed argument, a failed check, a file to read or write: say which and why.
    except (ValueError, rights_cli.CommandError, OSError) as error:
        print(f"privacam: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except grpc.aio.AioRpcError as error:
        print(f"privacam: {describe_error(error)}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
