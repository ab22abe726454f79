"""Prometheus metrics of the relay broker. No tenant, device or session id is a label.

Gauges are per replica (sum them across replicas); counters too, as usual."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.relay_broker.domain.model import EndReason, Role, TalkEndReason

SESSIONS_STARTED = Counter(
    "privacam_relay_sessions_started_total", "Live-view sessions started.", ["role"]
)
SESSIONS_ENDED = Counter(
    "privacam_relay_sessions_ended_total", "Live-view sessions ended, by reason.", ["reason"]
)
SESSIONS_REFUSED = Counter(
    "privacam_relay_sessions_refused_total",
    "StartLiveView calls refused by the broker itself, by reason.",
    ["reason"],
)
SESSIONS_DECLINED = Counter(
    "privacam_relay_sessions_declined_total",
    "Session requests a camera declined: most often its check of the request's access-log "
    "receipt or of the signaling app failed (a forged or replayed request).",
)
PRIVACY_REFUSED = Counter(
    "privacam_relay_privacy_statements_refused_total",
    "Privacy statements a camera refused after the broker passed them on: not signed by an "
    "owner key it pinned at pairing, or older than the one it applied (forged or replayed).",
)
WATCH_NOTICES = Counter(
    "privacam_relay_watch_notices_total",
    "Privacy-watch notices consumed, by result: told (new: kept and told to the household's "
    "open streams), repeated (an id already kept: a replay), ignored (not keyed by its "
    "household).",
    ["result"],
)
SESSION_SECONDS = Histogram(
    "privacam_relay_session_duration_seconds",
    "How long live-view sessions lasted.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
SESSIONS_ACTIVE = Gauge(
    "privacam_relay_sessions_active",
    "Live-view sessions whose app signaling stream is open on this replica.",
)
CAMERAS_ONLINE = Gauge(
    "privacam_relay_cameras_online", "Cameras with a control stream open on this replica."
)
SIGNALING_MESSAGES = Counter(
    "privacam_relay_signaling_messages_total",
    "Signaling messages relayed, by kind (description, candidate, end_of_candidates, "
    "fingerprint) and sending side.",
    ["kind", "side"],
)
TURN_CREDENTIALS = Counter(
    "privacam_relay_turn_credentials_issued_total", "TURN credentials handed out (one per side)."
)
RELAY_BYTES = Counter(
    "privacam_relay_bytes_total",
    "Bytes coturn relayed for live-view sessions (client side of each allocation, both "
    "directions), from coturn's traffic reports.",
)
TALKS_STARTED = Counter(
    "privacam_relay_talk_backs_started_total", "Talk-backs started, by role.", ["role"]
)
TALKS_ENDED = Counter(
    "privacam_relay_talk_backs_ended_total", "Talk-backs ended, by reason.", ["reason"]
)
TALKS_REFUSED = Counter(
    "privacam_relay_talk_backs_refused_total",
    "StartTalkBack calls the broker refused itself (privacy_mode, busy, not_connected), and "
    "talk-backs a camera declined (camera_declined: a forged or replayed request, or a "
    "camera that is private).",
    ["reason"],
)
TALK_SECONDS = Histogram(
    "privacam_relay_talk_back_duration_seconds",
    "How long talk-backs lasted.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600),
)


class PrometheusRelayMetrics:
    def started(self, role: Role) -> None:
        SESSIONS_STARTED.labels(role.value).inc()

    def ended(self, reason: EndReason, seconds: float) -> None:
        SESSIONS_ENDED.labels(reason.value).inc()
        SESSION_SECONDS.observe(seconds)

    def refused(self, reason: str) -> None:
        SESSIONS_REFUSED.labels(reason).inc()

    def credentials_issued(self, count: int) -> None:
        TURN_CREDENTIALS.inc(count)

    def talk_started(self, role: Role) -> None:
        TALKS_STARTED.labels(role.value).inc()

    def talk_ended(self, reason: TalkEndReason, seconds: float) -> None:
        TALKS_ENDED.labels(reason.value).inc()
        TALK_SECONDS.observe(seconds)

    def talk_refused(self, reason: str) -> None:
        TALKS_REFUSED.labels(reason).inc()
