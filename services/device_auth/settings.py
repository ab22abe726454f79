"""Settings of device_auth: environment variables prefixed PRIVACAM_DEVICE_AUTH_."""

from pydantic import Field, FilePath, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.peers import PeerSettings
from services.common.settings import DeviceAuthRedisSettings, ServiceSettings


class DeviceAuthSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_DEVICE_AUTH_")

    default_ports = (7001, 7101, 7201)

    enrollment_port: int = Field(default=7301, ge=0, le=65535)
    """Server-authenticated TLS port (no client certificate) serving only RegisterAccount,
    SignIn and EnrollCamera: the calls by which an app or camera gets its first identity."""
    issuing_ca_cert_file: FilePath
    """PEM certificate of the issuing CA that signs camera and app certificates."""
    issuing_ca_key_file: FilePath | None = None
    """PEM private key of the issuing CA (a mounted secret, for development). Set this or
    ISSUING_CA_PKCS11_MODULE."""
    issuing_ca_pkcs11_module: FilePath | None = None
    """PKCS#11 module of the HSM holding the issuing CA's non-extractable P-256 key, for
    production (e.g. /usr/lib/softhsm/libsofthsm2.so in tests)."""
    issuing_ca_pkcs11_token: str = "privacam"  # noqa: S105 - a token label, not a secret
    """Label of the PKCS#11 token holding the issuing CA key."""
    issuing_ca_pkcs11_label: str = "privacam-issuing-ca"
    """Label of the issuing CA key pair in the token."""
    issuing_ca_pkcs11_pin_file: FilePath | None = None
    """File holding the token's user PIN (a mounted secret)."""
    camera_certificate_days: int = Field(default=30, ge=1, le=397)
    """Lifetime of camera certificates; cameras renew before it ends."""
    app_certificate_days: int = Field(default=30, ge=1, le=397)
    """Lifetime of app-install certificates; apps renew before it ends."""
    claim_token_minutes: int = Field(default=10, ge=1, le=60)
    """How long a camera claim token stays usable."""
    retention_days_default: int = Field(default=7, ge=1, le=365)
    """Clip retention of a new camera."""
    retention_days_min: int = Field(default=1, ge=1, le=365)
    """Shortest retention an owner may choose."""
    retention_days_max: int = Field(default=30, ge=1, le=365)
    """Longest retention an owner may choose (MinIO's lifecycle backstop follows it)."""
    enrollment_calls_per_window: int = Field(default=20, ge=1, le=10_000)
    """RegisterAccount, SignIn and EnrollCamera calls allowed per source address in each
    ENROLLMENT_WINDOW_SECONDS."""
    enrollment_window_seconds: int = Field(default=60, ge=1, le=3_600)
    """The enrollment limit's window: fixed windows of this length, counted in Redis."""
    password_max_failures: int = Field(default=5, ge=1, le=100)
    """Wrong passwords per account (SignIn, VerifyPassword, ChangePassword, ClearPin) within
    PASSWORD_WINDOW_MINUTES before further password checks on it are RESOURCE_EXHAUSTED."""
    password_window_minutes: int = Field(default=15, ge=1, le=1440)
    """Window of the per-account password limit; a correct password resets the count."""
    grant_sweep_seconds: int = Field(default=60, ge=1, le=3600)
    """How often each replica revokes (and announces) grants whose expiry has passed."""
    access_log_keys_file: FilePath | None = None
    """JSON map of key id to PEM Ed25519 public key of the access log's signing keys,
    handed to every camera and app with its certificate: a camera checks each live-view
    request's log receipt against them. Unset: none are handed out, and cameras decline
    every live view."""
    redis: DeviceAuthRedisSettings
    peers: PeerSettings

    @model_validator(mode="after")
    def _one_issuing_key(self) -> "DeviceAuthSettings":
        if (self.issuing_ca_key_file is None) == (self.issuing_ca_pkcs11_module is None):
            raise ValueError("set exactly one of ISSUING_CA_KEY_FILE and ISSUING_CA_PKCS11_MODULE")
        if self.issuing_ca_pkcs11_module is not None and self.issuing_ca_pkcs11_pin_file is None:
            raise ValueError("ISSUING_CA_PKCS11_PIN_FILE is required with ISSUING_CA_PKCS11_MODULE")
        return self

    @model_validator(mode="after")
    def _retention_bounds(self) -> "DeviceAuthSettings":
        if not (self.retention_days_min <= self.retention_days_default <= self.retention_days_max):
            raise ValueError(
                "retention days must satisfy RETENTION_DAYS_MIN <= RETENTION_DAYS_DEFAULT "
                "<= RETENTION_DAYS_MAX"
            )
        return self
