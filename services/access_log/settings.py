"""Settings of access_log: environment variables prefixed PRIVACAM_ACCESS_LOG_."""

from pydantic import Field, FilePath
from pydantic_settings import SettingsConfigDict

from services.common.settings import MinioSettings, ServiceSettings


class AccessLogSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_ACCESS_LOG_")

    default_ports = (7006, 7106, 7206)

    signing_key_file: FilePath
    """File holding the log's Ed25519 private key (raw 32 bytes, or PEM PKCS#8), mounted
    from a secret. It signs every tree head; the key manager trusts its public half."""
    signing_key_id: str = Field(default="log-1", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    """Key id written in every signed head (the key manager's keys file names it)."""
    retired_keys_file: FilePath | None = None
    """Optional JSON map of key id to PEM Ed25519 public key of retired signing keys, which
    ListSigningKeys still returns so heads signed with them stay verifiable."""
    key_rotations_file: FilePath | None = None
    """Optional file of key rotation statements, one JSON object a line, oldest first
    (`python -m services.access_log.adapters.signer rotate` prints one): each new key
    signed by the key it replaces, so clients that pinned an older key trust the new one."""
    bucket: str = Field(default="privacam-access-log", pattern=r"^[a-z0-9][a-z0-9.-]{2,62}$")
    """MinIO bucket holding the logs' immutable segments and checkpoints."""
    segment_max_entries: int = Field(default=1_000, ge=1, le=1_000_000)
    """A tenant's new entries are written as a segment once this many are pending."""
    segment_interval_seconds: float = Field(default=30.0, gt=0, le=3_600)
    """...or at the latest this long after the oldest pending entry; the access topic's
    retention must exceed this (plus downtime) for nothing to be lost."""
    max_clock_skew_seconds: int = Field(default=300, ge=1, le=3_600)
    """How far an appended access's occurred_at may be from this service's clock."""
    append_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    """How long Append waits for the log to apply its record before it fails UNAVAILABLE."""
    minio: MinioSettings
