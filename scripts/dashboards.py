"""Grafana dashboards of the chart, generated from one description: `python -m scripts.dashboards`.

Writes charts/privacam/dashboards/*.json (shipped as ConfigMaps for the Grafana sidecar):
the platform overview and one dashboard per service. Kept as code so every dashboard
has the same variables, layout and query style, and so a test can check that every
metric a panel queries is one the services really export (tests/unit/test_dashboards.py).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "charts" / "privacam" / "dashboards"

SERVICES = ("device_auth", "key_manager", "clip_ingest", "relay_broker", "retention", "access_log")
_DS = {"type": "prometheus", "uid": "${datasource}"}
_API = 'grpc_service!~"grpc[.]health[.]v1[.]Health|grpc[.]reflection[.].*"'
_SERVER_ERRORS = (
    "Unknown|DeadlineExceeded|ResourceExhausted|Unimplemented|Internal|Unavailable|DataLoss"
)
_SEL = 'namespace="$namespace", job=~"$job"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 12


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


def rate(metric: str, by: str = "", extra: str = "") -> str:
    """sum [by (…)] (rate(metric{selection}[$__rate_interval]))"""
    group = f" by ({by})" if by else ""
    selection = _SEL + (f", {extra}" if extra else "")
    return f"sum{group} (rate({metric}{{{selection}}}[$__rate_interval]))"


def quantile(metric: str, by: str = "", extra: str = "", phi: float = 0.99) -> str:
    labels = f"{by}, le" if by else "le"
    selection = _SEL + (f", {extra}" if extra else "")
    return (
        f"histogram_quantile({phi}, sum by ({labels}) "
        f"(rate({metric}_bucket{{{selection}}}[$__rate_interval])))"
    )


def gauge(metric: str, by: str = "", how: str = "sum") -> str:
    group = f" by ({by})" if by else ""
    return f"{how}{group} ({metric}{{{_SEL}}})"


# --- shared rows -------------------------------------------------------------------------


def golden_signals(by: str) -> Row:
    legend = "{{" + by + "}}"
    return Row(
        "Golden signals",
        (
            Panel(
                "Traffic: RPCs per second",
                "Completed RPCs per second, health and reflection excluded.",
                (q(rate("grpc_server_handled_total", by, _API), legend),),
                unit="reqps",
            ),
            Panel(
                "Errors: server-side error ratio",
                "Share of RPCs ending with a server-side code; client mistakes "
                "(InvalidArgument, NotFound, PermissionDenied) are not errors of the service.",
                (
                    q(
                        rate(
                            "grpc_server_handled_total",
                            by,
                            f'{_API}, grpc_code=~"{_SERVER_ERRORS}"',
                        )
                        + "\n/\n"
                        + rate("grpc_server_handled_total", by, _API),
                        legend,
                    ),
                ),
                unit="percentunit",
            ),
            Panel(
                "Latency: p99 of unary RPCs",
                "99th percentile of unary call durations.",
                (
                    q(
                        quantile("grpc_server_handling_seconds", by, f'{_API}, grpc_type="unary"'),
                        legend,
                    ),
                ),
                unit="s",
            ),
            Panel(
                "RPCs per second by status code",
                "Every status code, client mistakes included: a rise of NotFound or "
                "PermissionDenied is probing or a broken client.",
                (q(rate("grpc_server_handled_total", "grpc_code", _API), "{{grpc_code}}"),),
                unit="reqps",
            ),
        ),
    )


def process_row() -> Row:
    return Row(
        "Saturation",
        (
            Panel(
                "CPU per replica",
                "CPU seconds per second of each replica's process.",
                (q(rate("process_cpu_seconds_total", "instance"), "{{instance}}"),),
                unit="percentunit",
            ),
            Panel(
                "Resident memory per replica",
                "Memory of each replica's process; flat under steady load.",
                (q(gauge("process_resident_memory_bytes", "instance"), "{{instance}}"),),
                unit="bytes",
            ),
        ),
    )


def kafka_row() -> Row:
    return Row(
        "Kafka",
        (
            Panel(
                "Consumer lag",
                "Messages behind the end of each topic, per consumer group (each partition "
                "counted once).",
                (
                    q(
                        "sum by (group, topic) (max by (group, topic, partition) "
                        f"(privacam_kafka_consumer_lag_messages{{{_SEL}}}))",
                        "{{group}} {{topic}}",
                    ),
                ),
            ),
            Panel(
                "Events per second",
                "Events produced and consumed, per topic.",
                (
                    q(rate("privacam_kafka_produced_total", "topic"), "produced {{topic}}"),
                    q(rate("privacam_kafka_consumed_total", "topic"), "consumed {{topic}}"),
                ),
                unit="ops",
            ),
            Panel(
                "Event processing p99",
                "99th percentile of the time a consumer takes to apply one event, per topic.",
                (q(quantile("privacam_kafka_processing_seconds", "topic"), "{{topic}}"),),
                unit="s",
            ),
            Panel(
                "Calls refused by authentication or authorization",
                "Refusals per second by reason (unauthenticated: no, expired, revoked or "
                "foreign certificate; forbidden: a caller kind the method does not admit).",
                (q(rate("privacam_auth_rejected_total", "reason"), "{{reason}}"),),
                unit="reqps",
            ),
        ),
    )


# --- what each service adds ----------------------------------------------------------------

DOMAIN: dict[str, Row] = {
    "device_auth": Row(
        "Identity",
        (
            Panel(
                "Identity events per second",
                "Enrollments, renewals, revocations, grants, PIN changes and lockouts.",
                (q(rate("privacam_device_auth_events_total", "event"), "{{event}}"),),
                unit="ops",
            ),
            Panel(
                "PIN lockouts",
                "Cameras whose PIN checks were locked after repeated wrong PINs (the owner is "
                "told each time).",
                (
                    q(
                        rate("privacam_device_auth_events_total", "", 'event="pin_locked_out"'),
                        "lockouts/s",
                    ),
                ),
                unit="ops",
            ),
        ),
    ),
    "key_manager": Row(
        "Keys",
        (
            Panel(
                "Age of the KEK at wrap (p99)",
                "How old the key-encryption key was when a new data key was wrapped: above "
                "a day means rotation stalls.",
                (q(quantile("privacam_key_manager_kek_age_at_wrap_seconds"), "p99"),),
                unit="s",
            ),
            Panel(
                "Rotation lag (p99)",
                "Time from the start of a period to the creation of a tenant's key for it.",
                (q(quantile("privacam_key_manager_rotation_lag_seconds"), "p99"),),
                unit="s",
            ),
            Panel(
                "Tenants with key material",
                "Per replica (each replica holds every tenant's sealed keys).",
                (q(gauge("privacam_key_manager_tenants", "instance", "max"), "{{instance}}"),),
            ),
        ),
    ),
    "clip_ingest": Row(
        "Clips",
        (
            Panel(
                "Clips ingested per second",
                "Clips stored durably and acknowledged to cameras.",
                (q(rate("privacam_clips_ingested_total"), "clips/s"),),
                unit="ops",
            ),
            Panel(
                "Ingest latency (p50, p99)",
                "First message of an upload to its acknowledgement (clip in MinIO, event in "
                "Kafka).",
                (
                    q(quantile("privacam_clip_ingest_duration_seconds", phi=0.5), "p50"),
                    q(quantile("privacam_clip_ingest_duration_seconds"), "p99"),
                ),
                unit="s",
            ),
            Panel(
                "Uploads refused, by reason",
                "alerts_off is a camera uploading while its owner has alerts off; unavailable "
                "is MinIO or Kafka.",
                (q(rate("privacam_clips_refused_total", "reason"), "{{reason}}"),),
                unit="ops",
            ),
            Panel(
                "Bytes ingested per second",
                "Plaintext bytes of acknowledged clips (stored encrypted).",
                (q(rate("privacam_clip_bytes_ingested_total"), "bytes/s"),),
                unit="Bps",
            ),
            Panel(
                "Playbacks and listings",
                "Downloads by result and listings served; every one is in the household's log.",
                (
                    q(rate("privacam_clip_playbacks_total", "result"), "playback {{result}}"),
                    q(rate("privacam_clip_listings_total"), "listings"),
                ),
                unit="ops",
            ),
            Panel(
                "Integrity failures",
                "Objects or index entries found under a name that is not theirs: never served; "
                "any increase is a security event (see the runbook).",
                (
                    q(
                        "sum (increase(privacam_clip_integrity_failures_total"
                        f"{{{_SEL}}}[$__rate_interval]))",
                        "failures",
                    ),
                ),
            ),
        ),
    ),
    "relay_broker": Row(
        "Live view",
        (
            Panel(
                "Live sessions and cameras online",
                "Sessions in progress and cameras with an open control stream.",
                (
                    q(gauge("privacam_relay_sessions_active"), "sessions"),
                    q(gauge("privacam_relay_cameras_online"), "cameras online"),
                ),
            ),
            Panel(
                "Bytes relayed by coturn",
                "Ciphertext coturn relayed for sessions that fell back to the relay (DTLS-SRTP: "
                "unreadable to the relay).",
                (q(rate("privacam_relay_bytes_total"), "bytes/s"),),
                unit="Bps",
            ),
            Panel(
                "Sessions started, ended and refused",
                "Per second; refusals by the broker's reason.",
                (
                    q(rate("privacam_relay_sessions_started_total"), "started"),
                    q(rate("privacam_relay_sessions_ended_total", "reason"), "ended {{reason}}"),
                    q(
                        rate("privacam_relay_sessions_refused_total", "reason"),
                        "refused {{reason}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Signaling messages per second",
                "SDP, ICE candidates and signed fingerprints relayed, by kind.",
                (q(rate("privacam_relay_signaling_messages_total", "kind"), "{{kind}}"),),
                unit="ops",
            ),
        ),
    ),
    "access_log": Row(
        "Access log",
        (
            Panel(
                "Appends per second",
                "Accesses appended with a receipt, by recording service and purpose.",
                (
                    q(
                        rate("privacam_access_log_appends_total", "service, purpose"),
                        "{{service}} {{purpose}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Append latency (p50, p99)",
                "Append to receipt: every clip playback waits for it.",
                (
                    q(quantile("privacam_access_log_append_seconds", phi=0.5), "p50"),
                    q(quantile("privacam_access_log_append_seconds"), "p99"),
                ),
                unit="s",
            ),
            Panel(
                "Entries not yet in a segment",
                "Applied entries still only in Kafka; flat near zero when segments are written.",
                (
                    q(
                        gauge("privacam_access_log_unpersisted_entries", "instance", "max"),
                        "{{instance}}",
                    ),
                ),
            ),
            Panel(
                "Segment load errors",
                "Stored segments that do not line up: clients' proofs will fail for those "
                "households. Investigate at once (see the runbook).",
                (
                    q(
                        "sum (increase(privacam_access_log_segment_load_errors_total"
                        f"{{{_SEL}}}[$__rate_interval]))",
                        "errors",
                    ),
                ),
            ),
        ),
    ),
    "retention": Row(
        "Retention",
        (
            Panel(
                "Deletion lag (p99)",
                "Time from a clip's due moment to its deletion; the objective is 60 s.",
                (q(quantile("privacam_retention_deletion_lag_seconds"), "p99"),),
                unit="s",
            ),
            Panel(
                "Clips deleted per second",
                "By reason: retention expired, owner request, consent withdrawn, account "
                "cancelled.",
                (q(rate("privacam_retention_clips_deleted_total", "reason"), "{{reason}}"),),
                unit="ops",
            ),
            Panel(
                "Key periods destroyed",
                "Crypto-shredding: key periods destroyed per hour.",
                (
                    q(
                        "sum (increase(privacam_retention_key_periods_destroyed_total"
                        f"{{{_SEL}}}[1h]))",
                        "per hour",
                    ),
                ),
            ),
            Panel(
                "Exports in progress",
                "Data exports being assembled.",
                (q(gauge("privacam_retention_exports_in_progress"), "exports"),),
            ),
        ),
    ),
}

# The privacy watch: a Faust worker with no gRPC API, so its own rows instead of the golden
# signals and the Kafka row (its consumer is Faust's, not the platform's).
PRIVACY_WATCH_ROWS = (
    Row(
        "Privacy watch",
        (
            Panel(
                "Access events per second, by result",
                "Access events consumed: applied (a new log entry), duplicate, replayed (already "
                "applied before a restart), invalid, after a deletion.",
                (q(rate("privacam_privacy_watch_events_total", "result"), "{{result}}"),),
                unit="ops",
            ),
            Panel(
                "Identity events per second, by result",
                "Identity events consumed (lockouts, enrollments, grants, camera settings).",
                (
                    q(
                        rate("privacam_privacy_watch_identity_events_total", "result"),
                        "{{result}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Notices per second, by rule",
                "Notices sent to households (new viewer, operator access, burst, unusual hour, "
                "wrong-PIN streak, new install, new grant, digest).",
                (q(rate("privacam_privacy_watch_notices_total", "rule"), "{{rule}}"),),
                unit="ops",
            ),
            Panel(
                "Notice delay (p50, p99)",
                "From the access event on the access topic to its notice's acknowledgement; "
                "the promise is a p99 within 5 s (PrivacamWatchNoticesLate).",
                (
                    q(quantile("privacam_privacy_watch_notice_delay_seconds", phi=0.5), "p50"),
                    q(quantile("privacam_privacy_watch_notice_delay_seconds"), "p99"),
                ),
                unit="s",
            ),
            Panel(
                "Table recovery at the last start",
                "Seconds each replica took to recover its tables from their changelogs and be "
                "assigned its partitions (NOT_SERVING meanwhile).",
                (
                    q(
                        gauge("privacam_privacy_watch_recovery_seconds", "instance", "max"),
                        "{{instance}}",
                    ),
                ),
                unit="s",
            ),
        ),
    ),
    Row(
        "Fleet signals (all households, no household named)",
        (
            Panel(
                "PIN lockouts and wrong PINs per 15 min",
                "Cameras locked after wrong PINs in a row, and the wrong tries in those "
                "streaks, across households (PrivacamPinLockoutsHigh: credential stuffing).",
                (
                    q(
                        "sum (increase(privacam_privacy_watch_fleet_pin_lockouts_total"
                        f"{{{_SEL}}}[15m]))",
                        "lockouts",
                    ),
                    q(
                        "sum (increase(privacam_privacy_watch_fleet_wrong_pins_total"
                        f"{{{_SEL}}}[15m]))",
                        "wrong PINs",
                    ),
                ),
            ),
            Panel(
                "Enrollments per hour, by kind, against a day before",
                "Accounts, cameras and app installs (sign-ins included) enrolled, and the same "
                "hour a day before (PrivacamEnrollmentSurge: enumeration, mass enrollment).",
                (
                    q(
                        "sum by (kind) (increase(privacam_privacy_watch_fleet_enrollments_total"
                        f"{{{_SEL}}}[1h]))",
                        "{{kind}}",
                    ),
                    q(
                        "sum by (kind) (increase(privacam_privacy_watch_fleet_enrollments_total"
                        f"{{{_SEL}}}[1h] offset 1d))",
                        "{{kind}} a day before",
                    ),
                ),
            ),
            Panel(
                "Bursts per 15 min, by principal kind",
                "Bursts of playbacks or downloads told to households, all together "
                "(PrivacamPlaybackBurstsHigh). No client address is in an access record, so "
                "no count by source network.",
                (
                    q(
                        "sum by (principal_kind) (increase("
                        f"privacam_privacy_watch_fleet_bursts_total{{{_SEL}}}[15m]))",
                        "{{principal_kind}}",
                    ),
                ),
            ),
        ),
    ),
)

# The overview's product signals: one panel per promise to households.
PRODUCT = Row(
    "Product signals",
    (
        Panel(
            "Clips ingested per second",
            "Activity-alert clips stored and acknowledged.",
            (q(rate("privacam_clips_ingested_total"), "clips/s"),),
            unit="ops",
        ),
        Panel(
            "Live sessions",
            "Live views in progress.",
            (q(gauge("privacam_relay_sessions_active"), "sessions"),),
        ),
        Panel(
            "Bytes relayed by coturn",
            "Relay fallback traffic (ciphertext only).",
            (q(rate("privacam_relay_bytes_total"), "bytes/s"),),
            unit="Bps",
        ),
        Panel(
            "Clip deletion lag (p99)",
            "Retention: due moment to deletion; objective 60 s.",
            (q(quantile("privacam_retention_deletion_lag_seconds"), "p99"),),
            unit="s",
        ),
        Panel(
            "Age of the KEK at wrap (p99)",
            "Key rotation: above a day means rotation stalls.",
            (q(quantile("privacam_key_manager_kek_age_at_wrap_seconds"), "p99"),),
            unit="s",
        ),
        Panel(
            "Identity events per second",
            "Enrollments, renewals, revocations, grants, PIN changes and lockouts.",
            (q(rate("privacam_device_auth_events_total", "event"), "{{event}}"),),
            unit="ops",
        ),
        Panel(
            "Privacy-watch notice delay (p99)",
            "Households told of unusual access: access to notice; the promise is 5 s.",
            (q(quantile("privacam_privacy_watch_notice_delay_seconds"), "p99"),),
            unit="s",
        ),
    ),
)


# --- rendering -------------------------------------------------------------------------------


def _variables(job_regex: str) -> dict[str, Any]:
    def query(name: str, label: str, promql: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": _DS,
            "query": {"query": promql, "refId": name},
            "definition": promql,
            "refresh": 2,
            "current": {},
            "hide": 0,
            "sort": 1,
            **extra,
        }

    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
                "refresh": 1,
            },
            query("namespace", "Namespace", "label_values(privacam_service_info, namespace)"),
            query(
                "job",
                "Service",
                "label_values(privacam_service_info"
                f'{{namespace="$namespace", job=~"{job_regex}"}}, job)',
                includeAll=True,
                multi=True,
                allValue=job_regex,
            ),
        ]
    }


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": _DS,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": 8},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + index),
                "datasource": _DS,
                "expr": query.expr,
                "legendFormat": query.legend,
            }
            for index, query in enumerate(panel.queries)
        ],
        "options": {
            "legend": {
                "displayMode": "table",
                "placement": "right",
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }
    if panel.kind == "stat":
        rendered["fieldConfig"]["defaults"]["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}],
        }
        rendered["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"]},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "value_and_name",
        }
    return rendered


def dashboard(
    title: str, uid: str, description: str, job_regex: str, rows: list[Row]
) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    for row in rows:
        panels.append(
            {
                "id": len(panels) + 1,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        y += 1
        x = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y = 0, y + 8
            panels.append(_panel(panel, len(panels) + 1, x, y))
            x += panel.width
        y += 8
    return {
        "title": title,
        "uid": uid,
        "description": description,
        "tags": ["privacam"],
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "time": {"from": "now-3h", "to": "now"},
        "timezone": "utc",
        "templating": _variables(job_regex),
        "annotations": {"list": []},
        "panels": panels,
    }


def all_dashboards() -> dict[str, dict[str, Any]]:
    boards = {
        "platform-overview.json": dashboard(
            "Privacam / Platform overview",
            "privacam-overview",
            "Golden signals of every Privacam service, the promises to households (ingest, "
            "deletion lag, key rotation, identity, live view, relay, privacy-watch notices), "
            "Kafka lag and refused calls.",
            ".*",
            [
                Row(
                    "Availability",
                    (
                        Panel(
                            "Replicas up",
                            "Scrape targets answering, per service.",
                            (q(gauge("up", "job"), "{{job}}"),),
                            kind="stat",
                            width=24,
                        ),
                    ),
                ),
                golden_signals("job"),
                PRODUCT,
                kafka_row(),
                process_row(),
            ],
        )
    }
    for service in SERVICES:
        slug = service.replace("_", "-")
        rows = [golden_signals("grpc_method")]
        if service in DOMAIN:
            rows.append(DOMAIN[service])
        rows += [kafka_row(), process_row()]
        boards[f"{slug}.json"] = dashboard(
            f"Privacam / {service}",
            f"privacam-{slug}",
            f"{service}: its RPCs by method, what it does for households, its Kafka "
            "consumers and its processes.",
            f".*{slug}",
            rows,
        )
    boards["privacy-watch.json"] = dashboard(
        "Privacam / privacy_watch",
        "privacam-privacy-watch",
        "privacy_watch: events applied, notices by rule and their delay, table recovery, and "
        "the fleet signals for SREs (PIN lockouts, enrollments, bursts; no household named).",
        ".*privacy-watch",
        [*PRIVACY_WATCH_ROWS, process_row()],
    )
    return boards


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=1) + "\n"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    boards = all_dashboards()
    for stale in set(p.name for p in OUT.glob("*.json")) - set(boards):
        (OUT / stale).unlink()
    for name, board in boards.items():
        (OUT / name).write_text(render(board))
    print(f"wrote {len(boards)} dashboards to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
