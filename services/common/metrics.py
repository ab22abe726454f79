"""Prometheus metrics shared by every service, defined once.

gRPC names follow the grpc-ecosystem convention (grpc_server_*), so existing
dashboards and alerts apply. No tenant, device or user id is ever a label.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

import grpc
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BUCKET_LABELS = (*(repr(float(bound)) for bound in _LATENCY_BUCKETS), "+Inf")  # as Go prints


def _go_spelling(code: grpc.StatusCode) -> str:
    """A status as Go's codes.Code prints it (NOT_FOUND is "NotFound"): the convention's
    dashboards, alerts and runbooks, ours too, select grpc_code by that spelling."""
    special = {grpc.StatusCode.OK: "OK", grpc.StatusCode.CANCELLED: "Canceled"}
    return special.get(code) or "".join(word.capitalize() for word in code.name.split("_"))


GRPC_CODE_LABELS = {code.name: _go_spelling(code) for code in grpc.StatusCode}
"""grpc_code's value for each status, by the name the interceptor counts it under."""


class RpcSeries:
    """One RPC method's grpc_server_* series, counted in plain attributes.

    Written by hand, and why: the client library's Counter and Histogram take a lock per
    sample, 2.0 µs a call for these three series against 0.6 here, on every call of every
    service. The interceptor, their only writer, runs on the event loop's thread, so the locks
    buy nothing; the scrape (another thread) reads whole numbers, at worst one call apart."""

    __slots__ = ("bucket_counts", "handled", "labels", "seconds_sum", "started")

    def __init__(self, service: str, method: str, rpc_type: str) -> None:
        self.labels = (service, method, rpc_type)
        self.started = 0
        self.handled: dict[str, int] = {}
        self.bucket_counts = [0] * (len(_LATENCY_BUCKETS) + 1)  # the last one: +Inf
        self.seconds_sum = 0.0

    def finished(self, code: str, seconds: float) -> None:
        """A started call ended with status `code` (its name: "NOT_FOUND") after `seconds`."""
        self.handled[code] = self.handled.get(code, 0) + 1
        self.bucket_counts[bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        self.seconds_sum += seconds

    def refused(self, code: str) -> None:
        """A call answered `code` before it started (load shedding)."""
        self.handled[code] = self.handled.get(code, 0) + 1


class _RpcCollector(Collector):
    def __init__(self) -> None:
        self._series: dict[tuple[str, str, str], RpcSeries] = {}

    def series(self, service: str, method: str, rpc_type: str) -> RpcSeries:
        key = (service, method, rpc_type)
        if key not in self._series:
            self._series[key] = RpcSeries(service, method, rpc_type)
        return self._series[key]

    def describe(self) -> Iterator[Metric]:
        return self._families([])

    def collect(self) -> Iterator[Metric]:
        return self._families(list(self._series.values()))  # one step: safe from another thread

    @staticmethod
    def _families(all_series: list[RpcSeries]) -> Iterator[Metric]:
        labels = ["grpc_service", "grpc_method", "grpc_type"]
        started = CounterMetricFamily(
            "grpc_server_started", "RPCs started on the server.", labels=labels
        )
        handled = CounterMetricFamily(
            "grpc_server_handled",
            "RPCs completed on the server, by status code.",
            labels=[*labels, "grpc_code"],
        )
        seconds = HistogramMetricFamily(
            "grpc_server_handling_seconds", "Time from an RPC's start to its status.", labels=labels
        )
        for one in all_series:
            started.add_metric(one.labels, one.started)
            for code, count in list(one.handled.items()):
                handled.add_metric([*one.labels, GRPC_CODE_LABELS[code]], count)
            cumulative = accumulate(list(one.bucket_counts))
            buckets = list(zip(_BUCKET_LABELS, cumulative, strict=True))
            seconds.add_metric(one.labels, buckets, one.seconds_sum)
        yield from (started, handled, seconds)


GRPC_SERVER = _RpcCollector()
"""grpc_server_started_total, grpc_server_handled_total and grpc_server_handling_seconds."""
REGISTRY.register(GRPC_SERVER)

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
CALLERS_REFUSED = Counter(
    "privacam_rpc_callers_refused_total",
    "Authenticated calls refused because the method's policy does not admit the caller "
    "(its kind, or a service not on the method's allow-list).",
    ["grpc_service", "grpc_method", "caller_kind"],
)
KAFKA_PRODUCED = Counter(
    "privacam_kafka_produced_total",
    "Events produced, by topic and result.",
    ["topic", "result"],
)
KAFKA_PRODUCERS_RENEWED = Counter(
    "privacam_kafka_producers_renewed_total",
    "Kafka producers replaced after the brokers lost their sequence state (a broker's "
    "unclean restart): each costs the calls in flight one retry.",
)
KAFKA_CONSUMED = Counter(
    "privacam_kafka_consumed_total",
    "Events consumed, by topic and result: ok; retry (an attempt failed and is tried again "
    "after a back-off: the consumer retries counter); undecodable (dead-lettered at once); "
    "replay_for_other_group (another group's dead letter put back, skipped); for a replica "
    "of a compacted topic (group replica) error, a record skipped.",
    ["topic", "group", "result"],
)
KAFKA_DEAD_LETTERS = Counter(
    "privacam_kafka_dead_letters_total",
    "Events a consumer group moved to its dead-letter topic (privacam.deadletter.<group>.v1) "
    "after its handler failed PRIVACAM_KAFKA_CONSUMER_MAX_ATTEMPTS times, or that did not "
    "decode, so their partition could go on; `python -m services.common.deadletters` "
    "lists and replays them. By source topic and group.",
    ["topic", "group"],
)
KAFKA_PROCESSING_SECONDS = Histogram(
    "privacam_kafka_processing_seconds",
    "Time to apply one consumed event.",
    ["topic", "group"],
    buckets=_LATENCY_BUCKETS,
)
KAFKA_CONSUMER_LAG = Gauge(
    "privacam_kafka_consumer_lag_messages",
    "Messages between the next offset not yet applied and the end, per assigned partition: "
    "measured after every poll, and while an event is being retried (so a stuck partition "
    "shows its lag growing); dropped when the partition is no longer assigned.",
    ["topic", "group", "partition"],
)
SERVICE_INFO = Gauge(
    "privacam_service_info",
    "Always 1; labels say which service and version run.",
    ["service", "version"],
)
STORE_REFUSALS = Counter(
    "privacam_store_refusals_total",
    "Requests a store refused for lack of permission (Redis NOPERM, MinIO AccessDenied, "
    "Kafka authorization errors): "
    "this service's own "
    "store user lacks a right its code uses, a configuration error, never a caller's.",
    ["store"],
)
STATE_RECORDS_REJECTED = Counter(
    "privacam_state_records_rejected_total",
    "Records of a compacted state topic skipped because their topic's writer did not sign "
    "them (unsigned, another signer, altered, or moved to another key or topic): written "
    "by someone past Kafka's ACLs, a broker or the Kafka super user (services.common."
    "signed_state).",
    ["topic", "reason"],
)
STATE_RECORDS_REASSERTED = Counter(
    "privacam_state_records_reasserted_total",
    "Keys of a compacted state topic that their writer wrote again, signed, after a forged "
    "record of the key, so compaction does not let the forgery erase the genuine value "
    "(services.common.kafka.Reassertion); result ok or error.",
    ["topic", "result"],
)
CERTIFICATE_EXPIRY = Gauge(
    "privacam_certificate_expiry_timestamp_seconds",
    "When a certificate this process uses stops being valid (Unix time): the earliest "
    "notAfter of its chain (`certificate` = service, kafka) or of its CA bundle "
    "(service_ca, kafka_ca), from the files in use; moves when rotated files are loaded "
    "(services.common.certificates).",
    ["certificate"],
)
CERTIFICATE_RELOADS = Counter(
    "privacam_certificate_reloads_total",
    "Changes of watched certificate files: result reloaded, or why the new files were not "
    "used and the current ones kept (unreadable, malformed_ca, malformed_certificate, "
    "malformed_key, key_mismatch).",
    ["certificate", "result"],
)
