"""Settings of privacy_watch: environment variables prefixed PRIVACAM_PRIVACY_WATCH_."""

from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings
from services.privacy_watch.domain.rules import WatchPolicy


class PrivacyWatchSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACAM_PRIVACY_WATCH_")

    default_ports = (7007, 7107, 7207)

    look_back_days: int = Field(default=30, ge=1, le=365)
    """A viewer not seen for this many days is told of as new again."""
    burst_count: int = Field(default=5, ge=2, le=1000)
    """Playbacks or downloads by one viewer within BURST_WINDOW_SECONDS that are a burst."""
    burst_window_seconds: int = Field(default=600, ge=10, le=86_400)
    """The window a burst is counted in (10 minutes)."""
    usual_hours_min_views: int = Field(default=20, ge=1, le=100_000)
    """Views a household needs before an hour of the day can be unusual for it."""
    store: str = Field(default="memory://", pattern=r"^(memory|rocksdb|rocksdict)://")
    """Faust table store. memory:// rebuilds the tables from their changelogs at every
    start (the recovery time is the `privacam_privacy_watch_recovery_seconds` metric);
    rocksdict:// keeps them on disk between starts (needs the rocksdict package)."""
    data_dir: Path = Path("/tmp/privacy-watch")  # noqa: S108 (the pod's emptyDir)
    """Faust's data directory (table stores other than memory://)."""
    standby_replicas: int = Field(default=0, ge=0, le=3)
    """Standby copies of each table partition kept by other workers, so one that takes a
    partition over after a crash has the table already. 0 by default: with standbys, a
    worker taking over a killed one's partitions was seen (2 runs in 5) to recover and then
    process nothing; without, it recovers the partition from the changelog (0.34 s for 60
    households) and goes on."""
    commit_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    """How often input offsets are committed (after the changelog and notices are flushed):
    at most this much is replayed after a crash."""
    changelog_retention_days: int = Field(default=30, ge=1, le=365)
    """Changelog topics are compacted; a deleted key's tombstone is kept this long."""
    digest_period_seconds: int = Field(default=604_800, ge=10, le=31_536_000)
    """Length of a digest's period (a week): tumbling periods, whole weeks start on Mondays
    00:00 UTC."""
    digest_grace_seconds: float = Field(default=3600.0, ge=0, le=86_400)
    """A period no later access closed is sent this long after its end (for entries still
    on their way to the log)."""
    digest_check_seconds: float = Field(default=60.0, gt=0, le=3600)
    """How often the worker looks for digests to send."""
    recovery_timeout_seconds: float = Field(default=300.0, gt=0, le=3600)
    """Longest start: the tables recovered and partitions assigned, or the start fails."""
    stall_seconds: float = Field(default=15.0, ge=5, le=600)
    """Partitions with records waiting and none read this long: the fetch loop is restarted
    (a faust-streaming fault after a rebalance, adapters/stall_guard.py)."""

    def policy(self) -> WatchPolicy:
        return WatchPolicy(
            look_back=timedelta(days=self.look_back_days),
            burst_count=self.burst_count,
            burst_window=timedelta(seconds=self.burst_window_seconds),
            usual_hours_min_views=self.usual_hours_min_views,
        )
