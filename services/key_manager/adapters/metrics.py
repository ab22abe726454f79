"""Prometheus metrics of the key manager. Operations by kind and result are the shared
grpc_server_handled_total{grpc_service="privacam.keys.v1.KeyManagerService"}; these add
how old keys get, how late rotation happens and why receipts are refused. No tenant id is
a label."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import Counter, Gauge, Histogram

from services.key_manager.domain.keyring import Keyring

_AGE_BUCKETS = (60, 600, 3600, 6 * 3600, 12 * 3600, 86_400, 2 * 86_400, 7 * 86_400)

KEK_AGE = Histogram(
    "privacam_key_manager_kek_age_at_wrap_seconds",
    "Age of the KEK version each new data key was wrapped under.",
    buckets=_AGE_BUCKETS,
)
ROTATION_LAG = Histogram(
    "privacam_key_manager_rotation_lag_seconds",
    "Time from the start of a period to the creation of a tenant's version for it "
    "(versions are created on first use).",
    buckets=_AGE_BUCKETS,
)
TENANTS = Gauge("privacam_key_manager_tenants", "Tenants with key material in this replica.")
RECEIPTS_REFUSED = Counter(
    "privacam_key_manager_receipts_refused_total",
    "Unwraps refused for their access-log receipt, by reason: missing, invalid (signature, "
    "proof, household), stale (head or access older than the maximum age, or in the "
    "future), other_access, wrong_service (logged by another service than the caller), "
    "already_used (replayed, on this or another replica). A rise in stale, wrong_service "
    "or already_used deserves a look.",
    ["reason"],
)


class PrometheusKeyMetrics:
    def __init__(self, keyring: Keyring) -> None:
        TENANTS.set_function(keyring.tenant_count)

    def wrapped_under(self, kek_age: timedelta) -> None:
        KEK_AGE.observe(kek_age.total_seconds())

    def version_created(self, lag: timedelta) -> None:
        ROTATION_LAG.observe(lag.total_seconds())

    def receipt_refused(self, reason: str) -> None:
        RECEIPTS_REFUSED.labels(reason).inc()
