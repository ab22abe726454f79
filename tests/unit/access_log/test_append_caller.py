"""Append records the authenticated caller: a record naming another service is refused,
and what is kept names the certificate's service, never a name the caller chose."""

from __future__ import annotations

import pytest

from privacam.accesslog.v1 import log_pb2
from privacam_core.identity import PrincipalKind
from services.access_log.domain.service import AccessLog
from services.common.errors import PermissionDenied
from tests.unit.access_log.test_access_log import clock, log, principal, record

__all__ = ["clock", "log"]  # fixtures


async def test_a_record_naming_another_service_is_refused_and_not_kept(log: AccessLog) -> None:
    relay = principal(PrincipalKind.SERVICE, "relay-broker")
    for named in ("clip_ingest", "retention", "relay_broker_x"):
        with pytest.raises(PermissionDenied, match="calling service's own name"):
            await log.append(record("t-9", service=named), relay)
    assert log.tree_head("t-9").tree_size == 0


async def test_only_services_append(log: AccessLog) -> None:
    app = principal(PrincipalKind.APP, "clip-ingest", "t-9")
    with pytest.raises(PermissionDenied):
        await log.append(record("t-9", service="clip_ingest"), app)


async def test_the_kept_record_names_the_authenticated_caller(log: AccessLog) -> None:
    receipt = await log.append(
        record("t-9", service="clip_ingest"), principal(PrincipalKind.SERVICE, "clip-ingest")
    )
    kept = log_pb2.AccessRecord.FromString(receipt.record)
    assert kept.service == "clip_ingest"
