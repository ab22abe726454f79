"""Prometheus metrics shared by every service, defined once.

gRPC names follow the grpc-ecosystem convention (grpc_server_*), so existing
dashboards and alerts apply. No tenant, device or user id is ever a label.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

GRPC_STARTED = Counter(
    "grpc_server_started_total",
    "RPCs started on the server.",
    ["grpc_service", "grpc_method", "grpc_type"],
)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by status code.",
    ["grpc_service", "grpc_method", "grpc_type", "grpc_code"],
)
GRPC_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from an RPC's start to its status.",
    ["grpc_service", "grpc_method", "grpc_type"],
    buckets=_LATENCY_BUCKETS,
)
SHED = Counter(
    "privacam_grpc_shed_total",
    "Calls refused with UNAVAILABLE because the process had too many calls in progress.",
    ["grpc_service"],
)
AUTH_REJECTED = Counter(
    "privacam_auth_rejected_total",
    "Calls refused by authentication or authorization.",
    ["grpc_service", "reason"],
)
KAFKA_PRODUCED = Counter(
    "privacam_kafka_produced_total",
    "Events produced, by topic and result.",
    ["topic", "result"],
)
KAFKA_CONSUMED = Counter(
    "privacam_kafka_consumed_total",
    "Events consumed, by topic and result.",
    ["topic", "group", "result"],
)
KAFKA_PROCESSING_SECONDS = Histogram(
    "privacam_kafka_processing_seconds",
    "Time to apply one consumed event.",
    ["topic", "group"],
    buckets=_LATENCY_BUCKETS,
)
KAFKA_CONSUMER_LAG = Gauge(
    "privacam_kafka_consumer_lag_messages",
    "Messages between the committed offset and the end.",
    ["topic", "group", "partition"],
)
SERVICE_INFO = Gauge(
    "privacam_service_info",
    "Always 1; labels say which service and version run.",
    ["service", "version"],
)
