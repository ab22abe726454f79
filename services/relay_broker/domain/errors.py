"""Errors of the live-view domain; the API maps each to a gRPC status once."""


class RelayError(Exception):
    """Base: the message is shown to the caller."""


class InvalidInput(RelayError):
    """Malformed request: INVALID_ARGUMENT."""


class SessionNotFound(RelayError):
    """No such session, or not the caller's: NOT_FOUND (the same answer either way)."""


class CameraOffline(RelayError):
    """The camera has no control stream open: FAILED_PRECONDITION. Not UNAVAILABLE: the
    platform is fine and retrying cannot bring a camera online (gRPC's status guide), and
    an offline camera is no server error to alert on."""


class TooManySessions(RelayError):
    """A per-camera or per-app limit is reached: RESOURCE_EXHAUSTED."""


class SessionConflict(RelayError):
    """The session's state does not allow this (already joined, ended): FAILED_PRECONDITION."""


class TalkConflict(RelayError):
    """A talk-back already runs on the camera, or the session is not connected yet:
    FAILED_PRECONDITION."""


class CameraPrivate(RelayError):
    """The owner switched the camera to privacy mode: FAILED_PRECONDITION naming the mode."""
