"""Live-view sessions, their limits and end reasons: plain data, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from privacam_core.privacy import Mode


class Side(enum.Enum):
    """The two ends of a session's signaling."""

    APP = "app"
    CAMERA = "camera"

    @property
    def other(self) -> Side:
        return Side.CAMERA if self is Side.APP else Side.APP


class Role(enum.Enum):
    OWNER = "owner"
    GRANTEE = "grantee"


class EndReason(enum.Enum):
    VIEWER_ENDED = "viewer_ended"
    CAMERA_ENDED = "camera_ended"
    IDLE_TIMEOUT = "idle_timeout"
    MAX_DURATION = "max_duration"
    REVOKED = "revoked"
    CAMERA_OFFLINE = "camera_offline"
    FINGERPRINT_REJECTED = "fingerprint_rejected"
    FAILED = "failed"
    PRIVACY_MODE = "privacy_mode"
    """The camera turned private and closed it."""
    SIGNALING_LOST = "signaling_lost"
    """Nobody renewed a side's lease: the replica holding its signaling stopped."""


@dataclass(frozen=True)
class Viewer:
    """The app watching: its household (tenant) and install id."""

    tenant_id: str
    app_id: str


@dataclass(frozen=True)
class Session:
    session_id: str
    device_id: str
    owner_tenant_id: str
    viewer: Viewer
    role: Role
    grant_id: str
    started_at: datetime
    expires_at: datetime

    @property
    def told(self) -> tuple[str, ...]:
        """Households told that it runs: the owner's and the viewer's, nobody else (a member
        the camera is shared with does not learn when the owner or another member watches)."""
        return tuple(dict.fromkeys((self.owner_tenant_id, self.viewer.tenant_id)))


@dataclass(frozen=True)
class TurnGrant:
    """TURN REST credentials for one side of one session."""

    uris: tuple[str, ...]
    username: str
    password: str
    ttl_seconds: int
    expires_at: datetime


@dataclass(frozen=True)
class Presence:
    device_id: str
    online: bool
    since: datetime | None
    max_sessions: int = 1


@dataclass(frozen=True)
class Access:
    """device_auth's answer: who owns the camera, and under which grant a member watches."""

    owner_tenant_id: str
    is_owner: bool
    grant_id: str
    privacy: Mode | None = None
    """The owner's current privacy statement's mode (None: never set)."""
    label: str = ""
    """The camera's name in the household's apps (empty: none set)."""


class TalkEndReason(enum.Enum):
    ENDED = "ended"
    SESSION_ENDED = "session_ended"
    MAX_DURATION = "max_duration"
    CAMERA_DECLINED = "camera_declined"


@dataclass(frozen=True)
class Talk:
    """A talk-back: the session's viewer speaking through its camera."""

    session: Session
    started_at: datetime
    expires_at: datetime
    camera_name: str
    """For people: the camera's label, or "camera <id>"."""
