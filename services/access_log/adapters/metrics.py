"""Prometheus metrics of the access log (no tenant, device or person labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

APPENDS = Counter(
    "privacam_access_log_appends_total",
    "Accesses appended through Append, by recording service and purpose.",
    ["service", "purpose"],
)
APPEND_SECONDS = Histogram(
    "privacam_access_log_append_seconds",
    "Time from an Append call to its receipt (produce, apply, sign, prove).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
ENTRIES_APPLIED = Counter(
    "privacam_access_log_entries_applied_total",
    "Records applied from the access topic, by result (appended, duplicate, deleted_log, invalid).",
    ["result"],
)
HEADS_SIGNED = Counter("privacam_access_log_tree_heads_signed_total", "Tree heads signed.")
SEGMENTS_WRITTEN = Counter(
    "privacam_access_log_segments_written_total", "Immutable log segments written to MinIO."
)
SEGMENT_ENTRIES = Counter(
    "privacam_access_log_segment_entries_total", "Entries written to MinIO in segments."
)
UNPERSISTED_ENTRIES = Gauge(
    "privacam_access_log_unpersisted_entries",
    "Entries applied but not yet in a stored segment (they are still in Kafka).",
)
CONSUMER_LAG = Gauge(
    "privacam_access_log_consumer_lag_messages",
    "Records of the access topic not yet applied by this replica.",
)
LOAD_ERRORS = Counter(
    "privacam_access_log_segment_load_errors_total",
    "Stored segments that could not be read or do not line up (a gap, overlap or bad "
    "format); the log is loaded up to the first one and clients' proofs will fail.",
)
TENANTS = Gauge("privacam_access_log_tenants", "Tenants with a log on this replica.")


REFUSED = Counter(
    "privacam_access_log_requests_refused_total",
    "Reads refused for bad input, by reason (page_token: malformed, or a head the log "
    "did not sign).",
    ["reason"],
)


class PrometheusLogMetrics:
    def appended(self, service: str, purpose: str, seconds: float) -> None:
        APPENDS.labels(service, purpose).inc()
        APPEND_SECONDS.observe(seconds)

    def head_signed(self) -> None:
        HEADS_SIGNED.inc()

    def refused(self, reason: str) -> None:
        REFUSED.labels(reason).inc()
