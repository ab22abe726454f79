"""The watch's Prometheus metrics: counts by rule and outcome only, never a household,
viewer or camera (those are in the notices, for the household alone).

The fleet signals (`privacam_privacy_watch_fleet_*`) add up what happens across all
households for SREs (credential stuffing, enumeration, scraping), with labels from small
fixed sets: a kind of enrollment, a kind of principal. Each is counted where its event is
applied (the state's offset recorded), so a replayed event counts nothing."""

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

# --- fleet signals: all households together, no label naming any of them -------------------

FLEET_PIN_LOCKOUTS = Counter(
    "privacam_privacy_watch_fleet_pin_lockouts_total",
    "Cameras' PIN checks locked after wrong PINs in a row (device_auth's PinLockedOut: at "
    "the lockout and at each further wrong try), across all households, muted or not.",
)
FLEET_WRONG_PINS = Counter(
    "privacam_privacy_watch_fleet_wrong_pins_total",
    "Wrong PIN tries in streaks that locked a camera, across all households: each lockout's "
    "failed_attempts less those its camera's previous lockout in the streak already counted "
    "(single wrong tries below the lockout are published nowhere).",
)
ENROLLMENT_KINDS = ("account", "camera", "app_install")
FLEET_ENROLLMENTS = Counter(
    "privacam_privacy_watch_fleet_enrollments_total",
    "Enrollments across all households, by kind: account (AccountRegistered), camera "
    "(CameraEnrolled), app_install (AppInstallEnrolled: a registration or a sign-in).",
    ["kind"],
)
PRINCIPAL_KINDS = ("app", "operator", "service", "camera", "other")
FLEET_BURSTS = Counter(
    "privacam_privacy_watch_fleet_bursts_total",
    "Bursts told to households (playbacks or downloads by one viewer within the burst "
    "window), across all households, by the viewer's principal kind. Access records hold "
    "no client network address, so there is no count by source network.",
    ["principal_kind"],
)
# Every series exists from the start at 0, so rate() and increase() see the first event.
for _kind in ENROLLMENT_KINDS:
    FLEET_ENROLLMENTS.labels(_kind)
for _kind in PRINCIPAL_KINDS:
    FLEET_BURSTS.labels(_kind)
