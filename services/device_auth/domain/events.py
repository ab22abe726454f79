"""Events device_auth publishes, mirroring protos/privacam/identity/v1/events.proto.

Plain dataclasses: the Kafka adapter turns each into the matching protobuf
message. No event carries a secret (password, PIN, token or their hashes) or
a login.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.device_auth.domain.records import Grant, SettingsView, Subject


class RevocationReason(enum.Enum):
    OWNER_REQUEST = "owner_request"
    """The owner removed the camera or signed the app install out."""
    ACCOUNT_DELETED = "account_deleted"
    KEY_COMPROMISE = "key_compromise"
    SUPERSEDED = "superseded"
    """Replaced: the same camera serial was paired again under the same account."""


class GrantEndReason(enum.Enum):
    REVOKED = "revoked"
    """Someone ended it: the owner, the grantee, removing the camera or deleting an account."""
    EXPIRED = "expired"
    """Its expires_at passed; the platform announces it (no actor)."""


class PinChange(enum.Enum):
    SET = "set"
    CHANGED = "changed"
    CLEARED = "cleared"


@dataclass(frozen=True)
class AccountRegistered:
    """A new account (tenant); its id is the event's tenant_id."""


@dataclass(frozen=True)
class AppInstallEnrolled:
    install_id: str
    serial_number: str
    not_after: datetime


@dataclass(frozen=True)
class CameraEnrolled:
    device_id: str
    serial_number: str
    not_after: datetime


@dataclass(frozen=True)
class CertificateRenewed:
    subject: Subject
    serial_number: str
    not_after: datetime


@dataclass(frozen=True)
class CertificateRevoked:
    """Every service refuses these certificates and closes their streams within 2 s."""

    subject: Subject
    serial_numbers: tuple[str, ...]
    all_certificates: bool
    reason: RevocationReason
    not_after: tuple[datetime, ...]
    """Expiry of each certificate in `serial_numbers` (same order): a revocation record
    is moot once the latest of them has passed."""

    def __post_init__(self) -> None:
        if len(self.not_after) != len(self.serial_numbers):
            raise ValueError("not_after must give one expiry per serial number")

    @property
    def covers_until(self) -> datetime | None:
        """The latest expiry among the revoked certificates (None if there are none)."""
        return max(self.not_after, default=None)


@dataclass(frozen=True)
class CameraSettingsChanged:
    """The complete new settings, so the latest event per camera is its state."""

    device_id: str
    settings: SettingsView


@dataclass(frozen=True)
class PrivacyModeChanged:
    """The owner's new privacy statement, already in the household's log."""

    device_id: str
    statement: bytes
    """The SignedPrivacyStatement, serialized, as the owner's app signed it."""
    household_tenant_ids: tuple[str, ...]


@dataclass(frozen=True)
class GrantCreated:
    grant: Grant


@dataclass(frozen=True)
class GrantRevoked:
    grant_id: str
    device_id: str
    grantee_tenant_id: str
    reason: GrantEndReason = GrantEndReason.REVOKED


@dataclass(frozen=True)
class PinChanged:
    device_id: str
    change: PinChange


@dataclass(frozen=True)
class PinLockedOut:
    """Tells the owner's apps that someone keeps trying wrong PINs."""

    device_id: str
    failed_attempts: int
    lockout: timedelta
    last_attempt_by: Subject | None


@dataclass(frozen=True)
class AccountDeleted:
    cancellation_id: str


EventBody = (
    AccountRegistered
    | AppInstallEnrolled
    | CameraEnrolled
    | CertificateRenewed
    | CertificateRevoked
    | CameraSettingsChanged
    | PrivacyModeChanged
    | GrantCreated
    | GrantRevoked
    | PinChanged
    | PinLockedOut
    | AccountDeleted
)


@dataclass(frozen=True)
class IdentityEvent:
    """The envelope: metadata of `privacam.types.v1.EventMetadata` around one event."""

    event_id: str
    """Chosen here, so a retried publish of the same fact keeps the same id."""
    tenant_id: str
    """The tenant the event is about; also the Kafka key, keeping its events in order."""
    occurred_at: datetime
    actor: Subject | None
    body: EventBody
