"""Errors of the device_auth domain: plain exceptions, no gRPC.

Their messages are shown to callers, so each says what was wrong and what to
do, and none says whether another tenant's resource exists: another tenant's
camera, install or grant is the same `NotFound` as one that never existed.
The gRPC layer maps each class to a status with `map_domain_error`.
"""

from __future__ import annotations

from datetime import timedelta


class DeviceAuthError(Exception):
    """Base of every device_auth domain error."""


class InvalidInput(DeviceAuthError):
    """Malformed or out-of-bounds input (INVALID_ARGUMENT)."""


class NotFound(DeviceAuthError):
    """Unknown id, or an id of another tenant the caller may not see (NOT_FOUND)."""


class AlreadyExists(DeviceAuthError):
    """A login taken, a grant already made (ALREADY_EXISTS)."""


class BadCredentials(DeviceAuthError):
    """Wrong login or password, unusable claim token or certificate (UNAUTHENTICATED)."""


class Forbidden(DeviceAuthError):
    """The caller sees the resource but may not do this to it (PERMISSION_DENIED)."""


class WrongPin(Forbidden):
    """The current PIN given to change or clear the PIN is wrong; the try was counted."""


class PreconditionFailed(DeviceAuthError):
    """The resource is not in a state that allows this (FAILED_PRECONDITION)."""


class TooManyAttempts(DeviceAuthError):
    """Refused without checking until `retry_after` has passed (RESOURCE_EXHAUSTED)."""

    def __init__(self, message: str, retry_after: timedelta) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LockedOut(TooManyAttempts):
    """Too many wrong PINs in a row: the camera's PIN checks are locked for a while."""


class Conflict(DeviceAuthError):
    """A concurrent change to the same record kept winning; retry the call (ABORTED)."""


def seconds(delta: timedelta) -> str:
    """A retry delay as people read it: whole seconds, rounded up."""
    whole = int(delta.total_seconds())
    return f"{whole + (1 if delta.total_seconds() > whole else 0)} s"
