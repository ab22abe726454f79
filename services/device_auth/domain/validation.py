"""Validators for everything a caller sends, with the limits of the identity API.

Each returns the value to use or raises `InvalidInput` naming the field and
the rule, so a person can fix the request. Limits follow the field comments
in protos/privacam/identity/v1.
"""

from __future__ import annotations

import re

from privacam_core.identity import ID_PATTERN
from services.device_auth.domain.errors import InvalidInput

LOGIN_PATTERN = re.compile(r"[a-z0-9._-]{3,64}")
SERIAL_PATTERN = re.compile(r"[A-Za-z0-9-]{1,64}")
PIN_PATTERN = re.compile(r"[0-9]{4}")
PASSWORD_MIN_BYTES = 12
PASSWORD_MAX_BYTES = 256
LABEL_MAX_CHARS = 64


def login(value: str) -> str:
    if not LOGIN_PATTERN.fullmatch(value):
        raise InvalidInput(
            "login must be 3 to 64 characters of lower-case letters, digits, '.', '_' or '-'"
        )
    return value


def new_password(value: str) -> str:
    """A password being chosen: 12 to 256 bytes of UTF-8."""
    size = _utf8_size(value, "password")
    if not PASSWORD_MIN_BYTES <= size <= PASSWORD_MAX_BYTES:
        raise InvalidInput(
            f"password must be {PASSWORD_MIN_BYTES} to {PASSWORD_MAX_BYTES} bytes of UTF-8 "
            f"(this one is {size})"
        )
    return value


def given_password(value: str, field: str = "password") -> str:
    """A password being checked: only the upper bound, so the hash never sees huge input."""
    if _utf8_size(value, field) > PASSWORD_MAX_BYTES:
        raise InvalidInput(f"{field} must be at most {PASSWORD_MAX_BYTES} bytes of UTF-8")
    return value


def label(value: str, field: str = "label") -> str:
    """An optional label: empty, or at most 64 printable characters."""
    if len(value) > LABEL_MAX_CHARS:
        raise InvalidInput(f"{field} must be at most {LABEL_MAX_CHARS} characters")
    if not value.isprintable():
        raise InvalidInput(f"{field} must contain only printable characters (no control codes)")
    return value


def serial(value: str) -> str:
    if not SERIAL_PATTERN.fullmatch(value):
        raise InvalidInput("serial must be 1 to 64 characters of letters, digits or '-'")
    return value


def identifier(value: str, field: str) -> str:
    """A server-generated id (lower-case UUIDs match)."""
    if not ID_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"{field} must be an id as issued by this service "
            "(lower-case letters, digits and '-', at most 63 characters)"
        )
    return value


def pin(value: str, field: str = "pin") -> str:
    if not is_pin(value):
        raise InvalidInput(f"{field} must be exactly 4 digits (0-9)")
    return value


def is_pin(value: str) -> bool:
    return PIN_PATTERN.fullmatch(value) is not None


def _utf8_size(value: str, field: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} is not valid UTF-8 text") from None
