"""Prometheus metrics of clip_ingest. No tenant, camera or clip id is ever a label."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

CLIPS_INGESTED = Counter("privacam_clips_ingested_total", "Clips stored and acknowledged.")
BYTES_INGESTED = Counter(
    "privacam_clip_bytes_ingested_total", "Plaintext bytes of the clips stored and acknowledged."
)
CLIPS_REFUSED = Counter(
    "privacam_clips_refused_total",
    "Uploads refused or abandoned, by reason (alerts_off, privacy_mode, too_large, too_long, "
    "not_mp4, bad_chunk, small_chunk, truncated, bad_digest, conflict, unavailable, cancelled, "
    "stalled, too_slow, camera_busy, ...).",
    ["reason"],
)
BYTES_REFUSED = Counter(
    "privacam_clip_bytes_refused_total",
    "Bytes received of uploads that were refused or abandoned, by reason.",
    ["reason"],
)
INGEST_SECONDS = Histogram(
    "privacam_clip_ingest_duration_seconds",
    "Time from an upload's first message to its acknowledgement (clip stored, event out).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PLAYBACKS = Counter(
    "privacam_clip_playbacks_total",
    "Clip downloads, by result (ok, not_found, integrity).",
    ["result"],
)
LISTINGS = Counter("privacam_clip_listings_total", "Clip listings served.")
INTEGRITY_FAILURES = Counter(
    "privacam_clip_integrity_failures_total",
    "Index entries or objects found under a name that is not theirs, or altered: never "
    "served. Any increase deserves a look.",
    ["where"],
)


class PrometheusClipMetrics:
    """The ClipMetrics port."""

    def ingested(self, size: int, seconds: float) -> None:
        CLIPS_INGESTED.inc()
        BYTES_INGESTED.inc(size)
        INGEST_SECONDS.observe(seconds)

    def refused(self, reason: str, size: int) -> None:
        CLIPS_REFUSED.labels(reason).inc()
        BYTES_REFUSED.labels(reason).inc(size)

    def played(self, result: str) -> None:
        PLAYBACKS.labels(result).inc()

    def listed(self) -> None:
        LISTINGS.inc()

    def integrity_failure(self, where: str) -> None:
        INTEGRITY_FAILURES.labels(where).inc()
