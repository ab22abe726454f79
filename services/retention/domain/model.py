"""What retention works on: scheduled clips, key periods, shred and cancellation records.

Plain Python: no gRPC, Kafka, Redis or MinIO here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta


class DeletionReason(enum.Enum):
    RETENTION_EXPIRED = "retention_expired"
    OWNER_REQUEST = "owner_request"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    ACCOUNT_CANCELLED = "account_cancelled"


class ShredReason(enum.Enum):
    RETENTION_EXPIRED = "retention_expired"
    ACCOUNT_CANCELLED = "account_cancelled"


class VersionState(enum.Enum):
    ACTIVE = "active"
    DECRYPT_ONLY = "decrypt_only"
    DESTROYED = "destroyed"
    UNKNOWN = "unknown"
    """The key manager does not know the version (or the tenant): nothing to destroy."""


@dataclass(frozen=True, slots=True)
class ScheduledClip:
    """One clip waiting for its deletion time."""

    tenant_id: str
    device_id: str
    clip_id: str
    object_name: str
    key_version: int
    due_at: datetime

    @property
    def member(self) -> str:
        # Tenant and device ids are [a-z0-9-], clip ids [A-Za-z0-9_-]: '/' cannot clash.
        return f"{self.tenant_id}/{self.device_id}/{self.clip_id}"


@dataclass(frozen=True, slots=True)
class PeriodRef:
    tenant_id: str
    key_version: int


@dataclass(frozen=True, slots=True)
class PeriodCount:
    """What the schedule knows of one key period."""

    period: PeriodRef
    live: int
    """Clips of the period not yet deleted."""
    covered: int
    """Clips of the period ever scheduled."""
    period_start: datetime | None


@dataclass(frozen=True, slots=True)
class KeyVersionInfo:
    state: VersionState
    period_start: datetime | None = None
    period_end: datetime | None = None
    destroyed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ShredRecord:
    tenant_id: str
    key_version: int
    period_start: datetime | None
    period_end: datetime | None
    destroyed_at: datetime
    clips_covered: int
    reason: ShredReason


@dataclass(frozen=True, slots=True)
class RetentionBounds:
    default_days: int
    min_days: int
    max_days: int

    def due_at(
        self, ingested_at: datetime, delete_after: datetime | None, retention_days: int | None
    ) -> datetime:
        """When a clip is deleted: the due time clip_ingest computed from the camera's setting,
        else ingest plus the camera's (or default) retention, always within the operator's
        bounds so a bad event can neither keep a clip forever nor delete it early."""
        earliest = ingested_at + timedelta(days=self.min_days)
        latest = ingested_at + timedelta(days=self.max_days)
        if delete_after is None:
            delete_after = ingested_at + timedelta(days=retention_days or self.default_days)
        return min(max(delete_after, earliest), latest)


@dataclass(frozen=True, slots=True)
class CancellationRecord:
    cancellation_id: str
    tenant_id: str
    requested_at: datetime
    completed_at: datetime
    clips_deleted: int
    exports_deleted: int
    cameras_removed: int
    app_installs_removed: int
    grants_removed: int
    certificates_revoked: int
    key_versions_destroyed: int
    records_tombstoned: int


@dataclass(frozen=True, slots=True)
class PurgeReport:
    cameras_removed: int
    app_installs_removed: int
    grants_removed: int
    certificates_revoked: int
