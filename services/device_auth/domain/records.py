"""What device_auth stores: frozen records, one per key of the state store.

Records hold no plaintext secret: passwords and PINs only as argon2id
hashes, claim tokens only as SHA-256 hashes. Updates replace a whole record
with compare-and-set (see ports.py), so records are immutable values.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from privacam_core.identity import PrincipalKind


@dataclass(frozen=True)
class Subject:
    """A camera or app install: whose certificates, who acted (no certificate detail)."""

    kind: PrincipalKind
    tenant_id: str | None
    name: str
    """Device id, install id or service name."""


@dataclass(frozen=True)
class Account:
    tenant_id: str
    login: str
    password_hash: str
    created_at: datetime


@dataclass(frozen=True)
class CertificateRef:
    """One certificate issued to a camera or install, remembered until it expires."""

    serial: int
    not_after: datetime

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "x")


@dataclass(frozen=True)
class AppInstall:
    install_id: str
    tenant_id: str
    label: str
    enrolled_at: datetime
    certificates: tuple[CertificateRef, ...]
    """Unexpired certificates issued to this install, newest last (revoked together)."""

    @property
    def certificate_not_after(self) -> datetime:
        return self.certificates[-1].not_after


@dataclass(frozen=True)
class CameraSettings:
    activity_alerts_enabled: bool
    """Off by default: no alert clip is uploaded until the owner turns this on."""
    retention_days: int
    label: str = ""
    """Optional name the owner gives the camera; empty for none."""
    watch_muted: tuple[str, ...] = ()
    """Privacy watch rules muted on this camera (WATCH_RULES names, sorted)."""
    watch_burst_count: int = 0
    """The watch's burst count for this camera; 0 for the watch's own."""


WATCH_RULES = (
    "new_viewer",
    "operator_access",
    "burst",
    "outside_usual_hours",
    "wrong_pin_streak",
    "new_grant",
)
"""The privacy watch's rules that concern one camera, so its owner can mute them there."""
WATCH_BURST_COUNT_MAX = 1000


@dataclass(frozen=True)
class SettingsView:
    """A camera's settings as callers and events see them (the PIN only as set or not)."""

    activity_alerts_enabled: bool
    retention_days: int
    pin_set: bool
    label: str
    privacy: bytes = b""
    """The owner's latest SignedPrivacyStatement (serialized); empty when never set."""
    watch_muted: tuple[str, ...] = ()
    watch_burst_count: int = 0


@dataclass(frozen=True)
class Camera:
    device_id: str
    tenant_id: str
    serial: str
    enrolled_at: datetime
    certificates: tuple[CertificateRef, ...]
    """Unexpired certificates issued to this camera, newest last (revoked together)."""
    settings: CameraSettings
    pin_hash: str | None = None
    key_sha256: str = ""
    """The camera's public key as it paired (certificates.key_digest): every certificate
    of this camera carries it, renewals included, and apps check it in live view, so a
    second certificate minted for the camera with another key is refused. Empty only for
    a camera paired before keys were pinned (pinned at its next renewal)."""
    privacy: bytes = b""
    """The owner's latest SignedPrivacyStatement as logged (serialized), b"" for none."""

    @property
    def certificate_not_after(self) -> datetime:
        return self.certificates[-1].not_after

    def settings_view(self) -> SettingsView:
        return SettingsView(
            activity_alerts_enabled=self.settings.activity_alerts_enabled,
            retention_days=self.settings.retention_days,
            pin_set=self.pin_hash is not None,
            label=self.settings.label,
            privacy=self.privacy,
            watch_muted=self.settings.watch_muted,
            watch_burst_count=self.settings.watch_burst_count,
        )


class GrantScope(enum.Enum):
    LIVE = "live"
    CLIPS = "clips"
    TALK = "talk"


@dataclass(frozen=True)
class Grant:
    """Viewer rights of one account on another account's camera. Holds no login: logins
    change and must never reach events, so views look the grantee's login up."""

    grant_id: str
    device_id: str
    owner_tenant_id: str
    grantee_tenant_id: str
    scopes: frozenset[GrantScope]
    created_at: datetime
    expires_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class ClaimToken:
    token_hash: str
    """SHA-256 of the token, lower-case hex; the token itself is never stored."""
    tenant_id: str
    created_at: datetime
    expires_at: datetime
    created_by: Subject | None = None


@dataclass(frozen=True)
class PinAttemptState:
    """Wrong PIN tries on one camera since the last correct one (per camera, never per
    caller, so an attacker gains nothing by rotating identities)."""

    failures: int = 0
    next_try_at: datetime | None = None
    """No try is checked before this moment (backoff or lockout)."""


@dataclass(frozen=True)
class PasswordTries:
    """Password tries counted against one account (or unknown login) in its current window."""

    count: int
    """Tries in the window, this one included."""
    window_left: timedelta
    """Until the window ends and the count starts over."""
