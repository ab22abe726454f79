"""Errors of clip_ingest's use cases, in plain Python; api/servicer.py maps each to a status.

Each refusal of an upload carries the reason it is counted under in
privacam_clips_refused_total. Messages are shown to the caller: they say what was
wrong and never name another household's anything.
"""

from __future__ import annotations


class ClipError(Exception):
    reason = "invalid"


class InvalidClip(ClipError):
    """The request or the clip is malformed (INVALID_ARGUMENT)."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class ClipTooLarge(ClipError):
    """Over the configured size (RESOURCE_EXHAUSTED)."""

    reason = "too_large"


class UploadTooSlow(ClipError):
    """The upload did not arrive in time: nothing came for the idle limit (reason
    `stalled`), or the whole clip was not in by the upload's deadline (`too_slow`).
    Nothing is stored (DEADLINE_EXCEEDED)."""

    def __init__(self, message: str, reason: str = "too_slow") -> None:
        super().__init__(message)
        self.reason = reason


class CameraBusy(ClipError):
    """The camera already has as many uploads in progress as it may (RESOURCE_EXHAUSTED:
    retry when one has finished)."""

    reason = "camera_busy"


class AlertsOff(ClipError):
    """The owner has not turned activity alerts on (FAILED_PRECONDITION)."""

    reason = "alerts_off"


class CameraPrivate(ClipError):
    """The owner switched the camera to privacy mode (FAILED_PRECONDITION naming it)."""

    reason = "privacy_mode"


class ClipConflict(ClipError):
    """The clip id is stored with other content (ALREADY_EXISTS)."""

    reason = "conflict"


class ClipBusy(ClipError):
    """Another upload of the same clip id is in progress (ABORTED: retry later)."""

    reason = "busy"


class ClipNotFound(ClipError):
    """No such clip for this camera, or not the caller's to see (NOT_FOUND)."""

    reason = "not_found"


class OwnerOnly(ClipError):
    """A grantee tried what only the owner may do (PERMISSION_DENIED)."""

    reason = "forbidden"


class StorageUnavailable(ClipError):
    """MinIO or Kafka did not take the clip; nothing is kept, retry later (UNAVAILABLE)."""

    reason = "unavailable"


class IntegrityFailure(ClipError):
    """A stored clip or index entry does not belong where it was found: moved, copied,
    swapped or altered. Nothing of it is served (DATA_LOSS)."""

    reason = "integrity"
