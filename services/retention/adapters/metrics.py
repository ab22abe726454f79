"""Prometheus metrics of retention (no tenant or device ids as labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.retention.domain.model import DeletionReason, ShredReason

DELETION_LAG = Histogram(
    "privacam_retention_deletion_lag_seconds",
    "Time from a clip's due time to its deletion by the sweeper.",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600, 6 * 3600, 86_400),
)
CLIPS_DELETED = Counter(
    "privacam_retention_clips_deleted_total", "Clips deleted, by reason.", ["reason"]
)
PERIODS_DESTROYED = Counter(
    "privacam_retention_key_periods_destroyed_total",
    "Key periods crypto-shredded, by reason.",
    ["reason"],
)
EXPORTS_IN_PROGRESS = Gauge(
    "privacam_retention_exports_in_progress", "Data exports being assembled by this replica."
)
EXPORT_ATTEMPTS = Counter(
    "privacam_retention_export_attempts_total",
    "Export build attempts, by how they began: fresh, resumed (from a checkpoint), "
    "restarted (an earlier attempt's work thrown away).",
    ["start"],
)
EXPORT_PART_BYTES = Counter(
    "privacam_retention_export_part_bytes_total", "Bytes of export parts uploaded."
)
SWEEP_SECONDS = Histogram(
    "privacam_retention_sweep_duration_seconds",
    "Wall time of one retention sweep.",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300),
)
OLDEST_WAITING = Gauge(
    "privacam_retention_oldest_due_clip_lag_seconds",
    "After a sweep: now minus the due time of the oldest clip still waiting (0 if none).",
)
LAG_OBJECTIVE = Gauge(
    "privacam_retention_deletion_lag_objective_seconds",
    "The configured deletion lag objective, for dashboards and alerts.",
)


class PrometheusRetentionMetrics:
    def __init__(self, lag_objective_seconds: float) -> None:
        LAG_OBJECTIVE.set(lag_objective_seconds)
        for reason in DeletionReason:
            CLIPS_DELETED.labels(reason.value)
        for shred in ShredReason:
            PERIODS_DESTROYED.labels(shred.value)

    def clips_deleted(self, reason: DeletionReason, count: int) -> None:
        CLIPS_DELETED.labels(reason.value).inc(count)

    def deletion_lag(self, seconds: float) -> None:
        DELETION_LAG.observe(seconds)

    def periods_destroyed(self, reason: ShredReason, count: int) -> None:
        PERIODS_DESTROYED.labels(reason.value).inc(count)

    def sweep_finished(self, seconds: float, oldest_waiting_lag: float) -> None:
        SWEEP_SECONDS.observe(seconds)
        OLDEST_WAITING.set(oldest_waiting_lag)


class PrometheusExportMetrics:
    def __init__(self) -> None:
        for start in ("fresh", "resumed", "restarted"):
            EXPORT_ATTEMPTS.labels(start)

    def building(self, delta: int) -> None:
        EXPORTS_IN_PROGRESS.inc(delta)

    def attempt(self, start: str) -> None:
        EXPORT_ATTEMPTS.labels(start).inc()

    def part_uploaded(self, size: int) -> None:
        EXPORT_PART_BYTES.inc(size)
