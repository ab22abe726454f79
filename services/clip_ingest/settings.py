"""Settings of clip_ingest: environment variables prefixed PRIVACAM_CLIP_INGEST_."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.peers import PeerSettings
from services.common.settings import ClipIngestRedisSettings, MinioSettings, ServiceSettings


class ClipIngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_CLIP_INGEST_")

    default_ports = (7003, 7103, 7203)

    clip_bucket: str = Field(default="privacam-clips", pattern=r"^[a-z0-9][a-z0-9.-]{2,62}$")
    """MinIO bucket holding encrypted clips."""
    max_clip_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024, le=256 * 1024 * 1024)
    """Largest clip accepted, in bytes of MP4; larger uploads are RESOURCE_EXHAUSTED."""
    upload_idle_seconds: float = Field(default=30.0, gt=0, le=600)
    """Longest wait for the next part of an upload; a stalled camera's upload is then
    abandoned (DEADLINE_EXCEEDED, nothing stored) instead of holding its resources."""
    max_clip_seconds: float = Field(default=6.0, gt=0, le=6.0)
    """Longest clip accepted, by the MP4's own duration (at most the 6 s alert clips are)."""
    max_capture_skew_seconds: int = Field(default=300, ge=0, le=3600)
    """How far in the future a camera's captured_at may be (camera clocks drift)."""
    segment_bytes: int = Field(default=256 * 1024, ge=16 * 1024, le=256 * 1024)
    """Plaintext bytes per encrypted segment (clip format v1): what one upload holds in
    memory besides its object part."""
    part_bytes: int = Field(default=5 * 1024 * 1024, ge=5 * 1024 * 1024, le=64 * 1024 * 1024)
    """Clips up to this many encrypted bytes are one PUT; larger ones a multipart upload in
    parts of this size (memory per upload is bounded by it)."""
    camera_settings_cache_seconds: float = Field(default=30.0, ge=0, le=300)
    """How long "alerts are on" for a camera is remembered between uploads; forgotten at once
    when device_auth's CameraSettingsChanged arrives. 0 asks device_auth for every upload."""
    storage_threads: int = Field(default=16, ge=1, le=128)
    """Threads running the (synchronous) MinIO client's calls."""
    redis: ClipIngestRedisSettings
    minio: MinioSettings
    peers: PeerSettings
