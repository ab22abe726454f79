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
    upload_deadline_seconds: float = Field(default=30.0, gt=0, le=3600)
    """Longest time a whole upload may take to arrive, from its first message to its last:
    a camera trickling a clip is cut off (DEADLINE_EXCEEDED, nothing stored) so it cannot
    hold a place and its buffers for long. 30 s fits an 8 MiB clip sent at 2.3 Mbit/s or
    more; raise it with MAX_CLIP_BYTES, or for cameras on slower uplinks."""
    min_chunk_bytes: int = Field(default=16 * 1024, ge=1, le=256 * 1024)
    """Fewest bytes a chunk of an upload may carry, the clip's last chunk excepted;
    smaller ones are INVALID_ARGUMENT. Keeps a camera from holding a call open with a
    trickle of tiny messages (the SDK sends 256 KiB chunks)."""
    max_uploads_per_camera: int = Field(default=2, ge=1, le=64)
    """Uploads one camera may have in progress at once on this process; another is
    refused within a second (RESOURCE_EXHAUSTED, retry later), so one camera cannot take
    the places every camera shares. Per process: with N replicas a camera may have up to
    N times this many."""
    retry_memory_seconds: int = Field(default=24 * 3600, ge=0, le=7 * 24 * 3600)
    """How long after an upload a retry under the same clip id is still compared with the
    stored clip exactly (its fingerprint key is kept in Redis that long; the object holds
    no plaintext digest). Later, a retry of the same size is taken as the same clip."""
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
