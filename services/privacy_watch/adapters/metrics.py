"""The watch's Prometheus metrics: counts by rule and outcome only, never a household,
viewer or camera (those are in the notices, for the household alone)."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "privacam_privacy_watch_events_total",
    "Access events the watch consumed, by result: applied (a new log entry), duplicate (an "
    "access id already in the log), replayed (already applied before a restart), "
    "not_an_entry, invalid, log_deleted, deleted_log (after the household's deletion).",
    ["result"],
)
IDENTITY_EVENTS = Counter(
    "privacam_privacy_watch_identity_events_total",
    "Identity events the watch consumed, by result: applied, replayed (already applied "
    "before a restart), invalid.",
    ["result"],
)
NOTICES = Counter(
    "privacam_privacy_watch_notices_total",
    "Notices sent to households, by rule (new_viewer, operator_access, burst, "
    "outside_usual_hours, wrong_pin_streak, new_app_install, new_grant, digest).",
    ["rule"],
)
NOTICE_DELAY = Histogram(
    "privacam_privacy_watch_notice_delay_seconds",
    "From the access event's write to the access topic to its notice's acknowledgement.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
RECOVERY_SECONDS = Gauge(
    "privacam_privacy_watch_recovery_seconds",
    "How long the last start took to recover the tables from their changelogs and be "
    "assigned its partitions (health says NOT_SERVING until then).",
)
