"""Settings from the environment, one class per service, shared parts defined once.

Every field has a docstring, which `privacam-<service> --help-settings` prints.
A missing or malformed setting stops start-up with a message naming the
environment variable, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import (
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

_COMMON = {"extra": "ignore", "use_attribute_docstrings": True, "frozen": True}

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Default of every service's MAX_MESSAGE_BYTES (gRPC's own default, made explicit)."""


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_KAFKA_", **_COMMON)  # type: ignore[typeddict-item]

    bootstrap_servers: str = Field(min_length=1)
    """Comma-separated host:port list of Kafka brokers."""
    topic_partitions: int = Field(default=3, ge=1, le=1024)
    """Partitions of each topic a service creates when it is missing."""
    replication_factor: int = Field(default=1, ge=1, le=7)
    """Replicas of each topic a service creates; 3 in production."""
    request_timeout_ms: int = Field(default=15_000, ge=1_000)
    """How long a produce or metadata request may take before it fails."""
    namespace: str = Field(default="", pattern=r"^([a-z0-9-]{1,32}\.)?$")
    """Prefix (ending in '.') of every topic and consumer group, so several
    environments or test runs can share one cluster without seeing each other."""
    security_protocol: Literal["SASL_SSL", "SSL", "PLAINTEXT"] = "SASL_SSL"
    """SASL_SSL: TLS to the brokers and this service's own SCRAM user, whose ACLs let it
    write only the topics it owns and read only those it consumes. SSL: TLS with a client
    certificate (CERT_FILE, KEY_FILE) as the identity, for clusters that map certificates
    to users. PLAINTEXT has neither and is only for a broker nothing else can reach."""
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    """SCRAM mechanism of this service's Kafka user."""
    username: str = ""
    """This service's own Kafka user (SASL_SSL); never another service's."""
    password: SecretStr = SecretStr("")
    """Password of that user."""
    ca_file: FilePath | None = None
    """PEM bundle that verifies the brokers' certificates (SASL_SSL, SSL); unset, the
    system's trust store is used."""
    cert_file: FilePath | None = None
    """Client certificate chain (SSL only)."""
    key_file: FilePath | None = None
    """Its private key (SSL only)."""
    forget_within_seconds: int = Field(default=86_400, ge=6, le=30 * 86_400)
    """Longest time a deleted record (a cancelled household's account, a removed camera,
    a revoked grant) and its tombstone stay in the segments of a compacted topic: topics
    are created with a segment roll, compaction lag and tombstone retention of a sixth of
    it each, and each topic's writer appends markers after its writes so that even a quiet
    partition rolls and is compacted. Shorter costs the brokers more compaction work."""
    consumer_max_attempts: int = Field(default=6, ge=1, le=1000)
    """How many times a consumer calls its handler for one event that keeps failing before
    it moves the event to its group's dead-letter topic (privacam.deadletter.<group>.v1)
    and goes on with the partition. Only the handler's own errors count: while a store or
    peer is unreachable (Kafka, Redis, MinIO, an UNAVAILABLE service) or refuses this
    service's user, the event is retried with back-off for as long as that lasts and is
    never dead-lettered."""
    consumer_backoff_seconds: float = Field(default=1.0, gt=0, le=60)
    """Wait after a consumer's first failed attempt at an event; it doubles after each
    further one (with jitter: between half and all of it) up to CONSUMER_MAX_BACKOFF_SECONDS.
    With the defaults an event that always fails is dead-lettered 15 to 31 s after it came."""
    consumer_max_backoff_seconds: float = Field(default=30.0, gt=0, le=600)
    """Longest wait between two attempts at an event (and between two polls while Kafka
    itself cannot be reached)."""
    dead_letter_retention_hours: int = Field(default=168, ge=1, le=90 * 24)
    """How long a dead-letter topic keeps an event (created and set again at start with
    this retention): the time operators have to replay it (`python -m
    services.common.deadletters replay`). Dead letters hold the same events as the topics
    they came from, so keep it no longer than those (7 days by default)."""

    @model_validator(mode="after")
    def _credentials(self) -> KafkaSettings:
        if self.security_protocol == "SSL" and not (self.cert_file and self.key_file):
            raise ValueError(
                "SSL needs a client certificate: set PRIVACAM_KAFKA_CERT_FILE and "
                "PRIVACAM_KAFKA_KEY_FILE"
            )
        if self.security_protocol == "SASL_SSL" and not (
            self.username and self.password.get_secret_value()
        ):
            raise ValueError(
                "SASL_SSL needs this service's Kafka user: set PRIVACAM_KAFKA_USERNAME and "
                "PRIVACAM_KAFKA_PASSWORD (or PRIVACAM_KAFKA_SECURITY_PROTOCOL=PLAINTEXT for an "
                "isolated development broker)"
            )
        return self


class TlsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_TLS_", **_COMMON)  # type: ignore[typeddict-item]

    ca_file: FilePath
    """PEM bundle of the CA certificates that issue Privacam identities."""
    cert_file: FilePath
    """PEM certificate chain of this process (its identity in a URI SAN)."""
    key_file: FilePath
    """PEM private key of this process."""
    trust_domain: str = Field(default="privacam.local", pattern=r"^[a-z0-9.-]{1,255}$")
    """SPIFFE trust domain every identity must belong to."""
    reload_interval_seconds: float = Field(default=10.0, gt=0, le=3600)
    """How often the CA, certificate and key files are checked for a change (a stat each);
    changed files are used for new connections and signatures without a restart."""


class RedisSettings(BaseSettings):
    """Each service logs in to Redis as its own ACL user (its own key prefix, its own
    commands: stack/redis_acl.py), so each reads its own URL, PRIVACAM_<SERVICE>_REDIS_URL
    (the subclasses below); nothing falls back to a shared one."""

    model_config = SettingsConfigDict(env_prefix="PRIVACAM_REDIS_", **_COMMON)  # type: ignore[typeddict-item]

    url: SecretStr
    """redis:// or rediss:// URL with this service's own Redis user and password
    (redis://<user>:<password>@host:port/0)."""
    ca_file: FilePath | None = None
    """PEM bundle that verifies the Redis server's certificate (rediss:// only); unset,
    the system's trust store is used."""

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @classmethod
    def url_variable(cls) -> str:
        return _env_name(cls, ("url",))


class DeviceAuthRedisSettings(RedisSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_DEVICE_AUTH_REDIS_", **_COMMON)  # type: ignore[typeddict-item]


class ClipIngestRedisSettings(RedisSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_CLIP_INGEST_REDIS_", **_COMMON)  # type: ignore[typeddict-item]


class RelayBrokerRedisSettings(RedisSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_RELAY_BROKER_REDIS_", **_COMMON)  # type: ignore[typeddict-item]


class RetentionRedisSettings(RedisSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_RETENTION_REDIS_", **_COMMON)  # type: ignore[typeddict-item]


class MinioSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_MINIO_", **_COMMON)  # type: ignore[typeddict-item]

    endpoint: str = Field(pattern=r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
    """host:port of the S3 API, without scheme."""
    access_key: SecretStr
    """Access key of this service's MinIO user."""
    secret_key: SecretStr
    """Secret key of this service's MinIO user."""
    secure: bool = True
    """Use HTTPS; only a loopback development stack turns this off."""
    region: str = "us-east-1"
    """Region name the buckets are created in."""


class TurnSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_TURN_", **_COMMON)  # type: ignore[typeddict-item]

    shared_secret: SecretStr = Field(min_length=16)
    """coturn `static-auth-secret`, used to mint TURN REST credentials."""
    uris: str = Field(min_length=1)
    """Comma-separated turn:/turns: URIs handed to cameras and apps."""


class ServiceSettings(BaseSettings):
    """What every service has: its ports, logging, mTLS identity and Kafka.

    Subclasses set `env_prefix` (e.g. PRIVACAM_DEVICE_AUTH_) and default ports.
    """

    model_config = SettingsConfigDict(**_COMMON)  # type: ignore[typeddict-item]

    default_ports: ClassVar[tuple[int, int, int] | None] = None
    """(gRPC, health, metrics) ports used when the environment names none."""

    bind_host: str = "127.0.0.1"
    """Address the gRPC, health and metrics ports listen on (0.0.0.0 in a pod)."""
    grpc_port: int = Field(ge=0, le=65535)
    """Port of the mutual-TLS gRPC API."""
    health_port: int = Field(ge=0, le=65535)
    """Plaintext port serving only grpc.health.v1, for Kubernetes probes."""
    metrics_port: int = Field(ge=0, le=65535)
    """HTTP port serving Prometheus /metrics."""
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    """Lowest level written to the JSON log on stdout."""
    max_calls_in_progress: int = Field(default=512, ge=1, le=100_000)
    """Short calls (not streams) served at once; more are refused with UNAVAILABLE, which
    clients retry with backoff, so a reconnecting fleet cannot pile up unbounded work."""
    shutdown_grace_seconds: float = Field(default=10.0, gt=0, le=120)
    """How long in-flight calls get to finish after SIGTERM; keep below the pod's grace."""
    max_message_bytes: int = Field(
        default=DEFAULT_MAX_MESSAGE_BYTES, ge=512 * 1024, le=64 * 1024 * 1024
    )
    """Largest request message the gRPC ports accept (the API port, and device_auth's
    enrollment port); a larger one is refused with RESOURCE_EXHAUSTED before any handler
    runs. The default, 4 MiB, fits the largest legitimate messages with room to spare: a
    clip upload chunk (at most 256 KiB) and an Unwrap with its receipt's proof (a few KiB)."""
    max_connection_age_seconds: float = Field(default=1800.0, ge=60, le=86_400)
    """A client connection to the gRPC ports (API and enrollment) is asked to reconnect
    (GOAWAY) after this long, so long-lived connections spread onto replicas added since."""
    max_connection_age_grace_seconds: float = Field(default=300.0, ge=0, le=86_400)
    """How long calls open on an aged connection (streams) may still run after its GOAWAY
    before it is closed; a stream still open then ends UNAVAILABLE and its client (a
    camera's control stream) must reconnect."""

    @model_validator(mode="before")
    @classmethod
    def _default_ports(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.default_ports is not None:
            for name, port in zip(
                ("grpc_port", "health_port", "metrics_port"), cls.default_ports, strict=True
            ):
                data.setdefault(name, port)
        return data

    # Shared parts are built by load_settings from their own prefixes.
    tls: TlsSettings
    kafka: KafkaSettings


class SettingsError(SystemExit):
    """Start-up stops here: the message names every bad setting and what is wrong."""


S = TypeVar("S", bound=BaseSettings)
_PORTS = ("grpc_port", "health_port", "metrics_port")


def _env_name(model: type[BaseSettings], loc: tuple[int | str, ...]) -> str:
    prefix = str(model.model_config.get("env_prefix", ""))
    return (prefix + "_".join(str(part) for part in loc)).upper()


def _settings_classes() -> dict[str, type[BaseSettings]]:
    found: dict[str, type[BaseSettings]] = {}
    pending: list[type[BaseSettings]] = [BaseSettings]
    while pending:
        for sub in pending.pop().__subclasses__():
            found[sub.__name__] = sub
            pending.append(sub)
    return found


def _problems(
    model: type[BaseSettings], error: ValidationError, skip: frozenset[str] = frozenset()
) -> list[str]:
    lines = []
    for problem in error.errors():
        if problem["loc"] and problem["loc"][0] in skip:
            continue  # a shared part that failed is reported under its own prefix
        name = _env_name(model, problem["loc"])
        reason = "is required but not set" if problem["type"] == "missing" else problem["msg"]
        if (
            problem["type"] != "missing"
            and "input" in problem
            and not _secret(model, problem["loc"])
        ):
            reason += f" (got {str(problem['input'])[:80]!r})"
        lines.append(f"  {name}: {reason}")
    return lines


def _secret(model: type[BaseSettings], loc: tuple[int | str, ...]) -> bool:
    """Never echo a secret's value, even a malformed one: it may still be real."""
    field = model.model_fields.get(str(loc[0])) if loc else None
    return field is None or field.annotation is SecretStr


def _nested_settings(cls: type[BaseSettings]) -> dict[str, type[BaseSettings]]:
    return {
        name: field.annotation
        for name, field in cls.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings)
    }


def load_settings(cls: type[S]) -> S:
    """Build `cls` from the environment, or stop with every problem named by its variable."""
    problems: list[str] = []
    parts: dict[str, Any] = {}
    for name, part in _nested_settings(cls).items():
        try:
            parts[name] = part()
        except ValidationError as error:
            problems += _problems(part, error)
    try:
        settings = cls(**parts)
    except ValidationError as error:
        problems += _problems(cls, error, skip=frozenset(_nested_settings(cls)))
    if problems:
        raise SettingsError("invalid settings:\n" + "\n".join(problems))
    return settings


def describe(cls: type[BaseSettings]) -> str:
    """One line per environment variable with its docstring, for --help-settings."""
    lines = []
    nested = _nested_settings(cls)
    for name, field in cls.model_fields.items():
        if name in nested:
            lines.append(describe(nested[name]))
            continue
        default = "" if field.is_required() else f" (default {field.default!r})"
        if name in _PORTS and issubclass(cls, ServiceSettings) and cls.default_ports:
            default = f" (default {cls.default_ports[_PORTS.index(name)]})"
        lines.append(f"{_env_name(cls, (name,))}{default}\n    {field.description or ''}")
    return "\n".join(lines)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file, as written by stack/up.sh."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values
