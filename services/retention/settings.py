"""Settings of retention: environment variables prefixed PRIVACAM_RETENTION_."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import MinioSettings, RedisSettings, ServiceSettings


class RetentionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_RETENTION_")

    default_ports = (7005, 7105, 7205)

    clip_bucket: str = Field(default="privacam-clips", pattern=r"^[a-z0-9][a-z0-9.-]{2,62}$")
    """MinIO bucket holding encrypted clips."""
    redis: RedisSettings
    minio: MinioSettings
