"""Settings of clip_ingest: environment variables prefixed PRIVACAM_CLIP_INGEST_."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import MinioSettings, RedisSettings, ServiceSettings


class ClipIngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_CLIP_INGEST_")

    default_ports = (7003, 7103, 7203)

    clip_bucket: str = Field(default="privacam-clips", pattern=r"^[a-z0-9][a-z0-9.-]{2,62}$")
    """MinIO bucket holding encrypted clips."""
    redis: RedisSettings
    minio: MinioSettings
