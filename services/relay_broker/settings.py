"""Settings of relay_broker: environment variables prefixed PRIVACAM_RELAY_BROKER_."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.peers import PeerSettings
from services.common.settings import RelayBrokerRedisSettings, ServiceSettings, TurnSettings


class RelayBrokerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_RELAY_BROKER_")

    default_ports = (7004, 7104, 7204)

    redis: RelayBrokerRedisSettings
    turn: TurnSettings
    peers: PeerSettings

    heartbeat_interval_seconds: float = Field(default=2.0, ge=0.2, le=60)
    """How often the broker pings each camera's control stream; a camera that misses
    three pings is marked offline (and its presence key expires after three). Also how
    often each replica renews the leases of the sessions it signals for and sweeps for
    sessions and talk-backs a dead replica left: they end three intervals after it died."""
    idle_timeout_seconds: float = Field(default=30.0, ge=1, le=600)
    """A session whose two sides have not both joined signaling within this long, or
    that goes this long without any signaling while negotiating, ends IDLE_TIMEOUT."""
    max_session_seconds: int = Field(default=3600, ge=10, le=24 * 3600)
    """Longest live-view session; it ends MAX_DURATION then."""
    turn_ttl_seconds: int = Field(default=600, ge=60, le=86_400)
    """Lifetime of the TURN credentials handed to each side (coturn refuses them after)."""
    max_sessions_per_camera: int = Field(default=4, ge=1, le=8)
    """Concurrent sessions on one camera (also capped by what the camera announces)."""
    max_sessions_per_app: int = Field(default=4, ge=1, le=32)
    """Concurrent sessions one app install may hold."""
    max_talk_seconds: int = Field(default=300, ge=5, le=3600)
    """Longest talk-back; it ends MAX_DURATION then (and with its live-view session in
    any case). The app starts another to go on talking."""
    watch_notices_kept: int = Field(default=500, ge=10, le=10_000)
    """Privacy-watch notices kept per household in Redis for the apps to read later (the
    newest; older ones are dropped as new ones come)."""
    watch_notices_keep_days: int = Field(default=30, ge=1, le=365)
    """How long a household's kept privacy-watch notices last after its newest one."""
    watch_digests_kept: int = Field(default=53, ge=1, le=520)
    """Privacy-watch digests kept per household, apart from the notices (the newest; a
    year of weekly digests by default)."""
    watch_digests_keep_days: int = Field(default=400, ge=7, le=3650)
    """How long a household's kept digests last after its newest one."""
