"""Settings of retention: environment variables prefixed PRIVACAM_RETENTION_."""

import ipaddress
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.peers import PeerSettings
from services.common.settings import MinioSettings, RetentionRedisSettings, ServiceSettings


class RetentionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_RETENTION_")

    default_ports = (7005, 7105, 7205)

    clip_bucket: str = Field(default="privacam-clips", pattern=r"^[a-z0-9][a-z0-9.-]{2,62}$")
    """MinIO bucket holding encrypted clips (the same bucket as clip_ingest's CLIP_BUCKET)."""
    export_bucket: str = Field(default="privacam-exports", pattern=r"^[a-z0-9][a-z0-9.-]{2,62}$")
    """MinIO bucket holding encrypted data exports."""
    default_retention_days: int = Field(default=7, ge=1, le=3650)
    """Retention of a clip whose camera chose none, in days."""
    min_retention_days: int = Field(default=1, ge=1, le=3650)
    """Lowest retention the operator allows, in days."""
    max_retention_days: int = Field(default=30, ge=1, le=3650)
    """Highest retention the operator allows, in days; the MinIO lifecycle rule on the clip
    bucket expires objects one day after it, as a backstop."""
    sweep_interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    """How often the sweeper looks for clips past their due time."""
    sweep_batch_size: int = Field(default=1000, ge=1, le=1000)
    """Clips deleted per MinIO multi-object delete (S3 allows at most 1000)."""
    sweep_concurrency: int = Field(default=4, ge=1, le=16)
    """Batches deleted side by side within a sweep (MinIO deletes while Kafka publishes)."""
    deletion_lag_objective_seconds: float = Field(default=60.0, gt=0)
    """Objective for deletion lag (deleted at minus due at); the alert fires past it."""
    key_period_grace_seconds: int = Field(default=3600, ge=0, le=7 * 86_400)
    """How long after a key period ends before it may be destroyed, so a clip whose data
    key was made just before the rotation can still land in it."""
    export_ttl_seconds: int = Field(default=7 * 86_400, ge=60, le=30 * 86_400)
    """How long a ready export can be downloaded before it is deleted."""
    export_lease_seconds: float = Field(default=30.0, ge=3, le=3600)
    """How long a replica's hold on an export it is building lasts unless renewed (it is
    renewed every third of it). A replica that dies mid-build leaves the export this long
    before another one goes on from its last uploaded part."""
    export_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    """How often an idle replica looks for queued exports (a replica whose consumer sees
    the request looks at once)."""
    export_max_attempts: int = Field(default=5, ge=1, le=100)
    """Attempts at building one export, crashed ones included, before it ends FAILED."""
    dev_clock_file: Path | None = None
    """DEVELOPMENT ONLY: file holding a number of seconds added to the wall clock, re-read
    on every reading and never allowed to go back, so tests and the demo can let a week
    pass. Refused unless BIND_HOST is a loopback address (a pod binds 0.0.0.0)."""
    peers: PeerSettings
    redis: RetentionRedisSettings
    minio: MinioSettings

    @model_validator(mode="after")
    def _bounds(self) -> "RetentionSettings":
        if not (self.min_retention_days <= self.default_retention_days <= self.max_retention_days):
            raise ValueError(
                "retention days must satisfy MIN_RETENTION_DAYS <= DEFAULT_RETENTION_DAYS "
                "<= MAX_RETENTION_DAYS"
            )
        if self.dev_clock_file is not None and not _loopback(self.bind_host):
            raise ValueError(
                "DEV_CLOCK_FILE is for development on a loopback address only; unset it"
            )
        return self


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
