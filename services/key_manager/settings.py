"""Settings of key_manager: environment variables prefixed PRIVACAM_KEY_MANAGER_."""

from pydantic import Field, FilePath
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class KeyManagerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_KEY_MANAGER_")

    default_ports = (7002, 7102, 7202)

    root_key_file: FilePath
    """File holding the 32-byte root key (raw, or 64 hex digits), mounted from a secret.
    It seals every tenant key; losing it loses every clip, leaking it needs the sealed
    keys as well."""
    rotation_period_seconds: int = Field(default=86_400, ge=60, le=31 * 86_400)
    """Length of a key period: each tenant gets a new key-encryption key per period."""
    state_segment_ms: int = Field(default=60_000, ge=1_000)
    """segment.ms of the key state topic: tombstones of destroyed keys are compacted
    away within about segment_ms + state_max_compaction_lag_ms + the cleaner's back-off."""
    state_max_compaction_lag_ms: int = Field(default=60_000, ge=1_000)
    """max.compaction.lag.ms of the key state topic."""
    access_log_keys_file: FilePath | None = None
    """JSON map of key id to PEM Ed25519 public key of the access log's signing keys. Unset:
    no access log, and every unwrap is refused (an unlogged access cannot happen)."""
    receipt_max_age_seconds: int = Field(default=300, ge=10, le=3600)
    """How old a receipt's signed tree head may be when it is presented."""
    max_batch_items: int = Field(default=1_000, ge=1, le=10_000)
    """Largest batch accepted by the Batch* RPCs."""
