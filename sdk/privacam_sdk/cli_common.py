"""What several `privacam` commands share: JSON output, the camera's PIN, the password."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message


def message_dict(message: Message) -> dict[str, Any]:
    """A protobuf message as protobuf's JSON mapping, with the .proto field names."""
    return MessageToDict(message, preserving_proto_field_name=True)


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


async def camera_pin(ask: bool) -> str:
    """The camera's PIN from PRIVACAM_PIN, else asked for when ``ask`` (never an argument)."""
    pin = os.environ.get("PRIVACAM_PIN", "")
    if not pin and ask:
        pin = await asyncio.to_thread(getpass.getpass, "camera PIN: ")
    return pin


def password() -> str:
    """The account's password from PRIVACAM_PASSWORD (scripts, the demo), else asked for;
    never an argument."""
    return os.environ.get("PRIVACAM_PASSWORD") or getpass.getpass("password: ")
