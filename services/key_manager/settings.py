"""Settings of key_manager: environment variables prefixed PRIVACAM_KEY_MANAGER_."""

from pydantic import Field, FilePath, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class KeyManagerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_KEY_MANAGER_")

    default_ports = (7002, 7102, 7202)

    root_key_file: FilePath | None = None
    """File holding the 32-byte root key (raw, or 64 hex digits), mounted from a secret.
    It seals every tenant key; losing it loses every clip, leaking it needs the sealed
    keys as well. Set this or ROOT_KEY_PKCS11_MODULE."""
    root_key_pkcs11_module: FilePath | None = None
    """PKCS#11 module of the HSM holding the root key as a non-extractable AES-256 key
    (e.g. /usr/lib/softhsm/libsofthsm2.so); the key never leaves the HSM."""
    root_key_pkcs11_token: str = "privacam"  # noqa: S105 - a token label, not a secret
    """Label of the PKCS#11 token holding the root key."""
    root_key_pkcs11_label: str = "privacam-root-key"
    """Label of the root key object in the token."""
    root_key_pkcs11_pin_file: FilePath | None = None
    """File holding the token's user PIN (a mounted secret)."""
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
    """How old a receipt's signed tree head, and the access it proves, may be when it is
    presented; used receipts are remembered this long plus the clock skew (one minute)."""

    @model_validator(mode="after")
    def _one_root_key(self) -> "KeyManagerSettings":
        if (self.root_key_file is None) == (self.root_key_pkcs11_module is None):
            raise ValueError("set exactly one of ROOT_KEY_FILE and ROOT_KEY_PKCS11_MODULE")
        if self.root_key_pkcs11_module is not None and self.root_key_pkcs11_pin_file is None:
            raise ValueError("ROOT_KEY_PKCS11_PIN_FILE is required with ROOT_KEY_PKCS11_MODULE")
        return self
