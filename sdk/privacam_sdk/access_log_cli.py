"""`privacam access-log ...`: who accessed my camera (verified against the signed log),
operators' requests for access (approve, deny, end) and incident notices.

`list`, `requests` and `incidents` take `--json`: one JSON document on stdout (protobuf
messages as protobuf's JSON mapping with the .proto field names, hashes in hex), the same
exit status as the text output."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from privacam.accesslog.v1 import access_log_service_pb2 as pb
from privacam.accesslog.v1 import access_log_service_pb2_grpc as pb_grpc
from privacam.accesslog.v1 import log_pb2
from privacam.types.v1 import types_pb2
from privacam_sdk.access_log import (
    AccessLogReader,
    Listing,
    LogDeleted,
    LogTampered,
    ReceiptError,
)
from privacam_sdk.cli_common import message_dict as _dict
from privacam_sdk.cli_common import print_json as _print_json
from privacam_sdk.client import PrivacamClient
from privacam_sdk.profile import Profile

EXIT_TAMPERED = 3
EXIT_DELETED = 4
"""The household's log was deleted (account cancelled), proven by its signed statement."""


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser("access-log", help="who accessed your household's data")
    actions = command.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list and verify the log's entries")
    listing.add_argument("--camera", default="", help="only accesses to this camera (id)")
    listing.add_argument("--since", type=_moment, help="ISO time, e.g. 2026-11-24T08:00")
    listing.add_argument("--until", type=_moment, help="ISO time (exclusive)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    requests = actions.add_parser(
        "requests", help="operators' requests for access to your household"
    )
    requests.add_argument("--json", action="store_true", help="machine-readable output")
    for name, help_text in (
        ("approve", "let an operator in, for the time and scope asked"),
        ("deny", "refuse an operator's request"),
        ("end", "end an approved operator access now"),
    ):
        decision = actions.add_parser(name, help=help_text)
        decision.add_argument("request_id")
    incidents = actions.add_parser(
        "incidents", help="security incidents that touched your household"
    )
    incidents.add_argument("--json", action="store_true", help="machine-readable output")


def listing_json(listing: Listing) -> dict[str, Any]:
    """``access-log list --json``: the verified entries and the head they were proved against."""
    head = listing.head
    return {
        "verified": True,
        "entries": [{"index": e.index, "record": _dict(e.record)} for e in listing.entries],
        "head": {
            "tenant_id": head.tenant_id,
            "tree_size": head.tree_size,
            "root_hash": head.root_hash.hex(),
            "timestamp": head.timestamp.ToJsonString(),
            "key_id": head.key_id,
        },
        "previous_size": listing.previous_size,
    }


def _who(record: log_pb2.AccessRecord) -> str:
    kind = types_pb2.PrincipalKind.Name(record.principal.kind).removeprefix("PRINCIPAL_KIND_")
    return f"{kind.lower()} {record.principal.id}"


def _what(record: log_pb2.AccessRecord) -> str:
    resource = record.resource
    kind = log_pb2.ResourceKind.Name(resource.kind).removeprefix("RESOURCE_KIND_").lower()
    detail = resource.clip_id or resource.session_id or resource.export_id or resource.grant_id
    target = " ".join(part for part in (resource.device_id, detail) if part)
    return f"{kind} {target}".strip()


def _request_line(access: pb.OperatorAccess) -> str:
    state = pb.OperatorAccessState.Name(access.state).removeprefix("OPERATOR_ACCESS_STATE_")
    scopes = ",".join(
        pb.OperatorScope.Name(s).removeprefix("OPERATOR_SCOPE_").lower() for s in access.scopes
    )
    until = (
        f" until {access.expires_at.ToDatetime(tzinfo=UTC).isoformat(timespec='seconds')}"
        if access.HasField("expires_at")
        else ""
    )
    return (
        f"{access.operator_access_id}  {state.lower():8} operator {access.operator.id}: "
        f"{access.reason!r} scopes {scopes} cameras {len(access.device_ids)} for "
        f"{access.duration.ToTimedelta()}{until}"
    )


async def _operator_access(args: argparse.Namespace, client: PrivacamClient) -> int:
    stub = pb_grpc.AccessLogServiceStub(client.channel("access_log"))
    if args.action == "requests":
        listed = await stub.ListOperatorAccess(pb.ListOperatorAccessRequest(), timeout=10)
        if args.json:
            _print_json([_dict(access) for access in listed.operator_accesses])
            return 0
        for access in listed.operator_accesses:
            print(_request_line(access))
        print(f"{len(listed.operator_accesses)} request(s)")
    elif args.action == "incidents":
        notices = await stub.ListIncidentNotices(pb.ListIncidentNoticesRequest(), timeout=10)
        if args.json:
            _print_json([_dict(notice) for notice in notices.notices])
            return 0
        for notice in notices.notices:
            unreadable = (
                "encrypted and unreadable" if notice.data_encrypted_unreadable else "readable"
            )
            print(
                f"{notice.incident_id}  detected "
                f"{notice.detected_at.ToDatetime(tzinfo=UTC).isoformat(timespec='seconds')}: "
                f"{notice.description!r}; your entries {list(notice.touched_entry_indices)}; "
                f"data {unreadable}"
            )
        print(f"{len(notices.notices)} incident(s)")
    elif args.action == "end":
        ended = await stub.EndOperatorAccess(
            pb.EndOperatorAccessRequest(operator_access_id=args.request_id), timeout=10
        )
        print(_request_line(ended.operator_access))
    else:
        decided = await stub.DecideOperatorAccess(
            pb.DecideOperatorAccessRequest(
                operator_access_id=args.request_id, approve=args.action == "approve"
            ),
            timeout=10,
        )
        print(_request_line(decided.operator_access))
    return 0


async def run(args: argparse.Namespace, profile: Profile) -> int:
    if args.action != "list":
        async with PrivacamClient(profile) as client:
            return await _operator_access(args, client)
    async with PrivacamClient(profile) as client:
        reader = AccessLogReader(client)
        try:
            listing = await reader.list(args.camera, args.since, args.until)
        except LogDeleted as deleted:
            if args.json:
                _print_json(
                    {
                        "verified": True,
                        "deleted": True,
                        "final_size": deleted.final_size,
                        "deleted_at": deleted.deleted_at.isoformat(),
                        "message": str(deleted),
                    }
                )
                return EXIT_DELETED
            print(str(deleted)[0].upper() + str(deleted)[1:] + ".")
            print("Nothing was hidden: the log ended with a statement signed by its key.")
            return EXIT_DELETED
        except ReceiptError as error:  # LogTampered included
            if args.json:
                _print_json({"verified": False, "error": str(error)})
                return EXIT_TAMPERED
            print(f"LOG VERIFICATION FAILED: {error}")
            if isinstance(error, LogTampered):
                print("The household's access log does not match what this device saw before.")
            return EXIT_TAMPERED
    if args.json:
        _print_json(listing_json(listing))
        return 0
    for entry in listing.entries:
        record = entry.record
        when = record.occurred_at.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds")
        purpose = types_pb2.AccessPurpose.Name(record.purpose).removeprefix("ACCESS_PURPOSE_")
        under = (
            f" under operator access {record.operator_access_id}"
            if record.operator_access_id
            else ""
        )
        print(
            f"#{entry.index:<6} {when}  {_who(record):40} {_what(record):50} "
            f"{purpose.lower():18} via {record.service}{under}"
        )
    since = f" (consistent with the head of size {listing.previous_size} seen before)"
    print(
        f"verified {len(listing.entries)} entries against head size {listing.head.tree_size} "
        f"root {listing.head.root_hash.hex()[:16]}… (all {listing.head.tree_size} entries "
        "accounted for, none hidden)"
        + (since if listing.previous_size else " (first look: this head is now remembered)")
    )
    return 0


__all__ = ["add_commands", "run"]
