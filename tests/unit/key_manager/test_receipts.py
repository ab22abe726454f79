"""Log before decrypt: the key manager releases a key only for the access its receipt proves,
made just now, through the service asking for the key. (That a receipt is used only once is
the state log's part: test_state_log_claims.py.)"""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from privacam.accesslog.v1 import log_pb2
from privacam_core.timestamps import to_timestamp
from services.common.clock import FakeClock
from services.common.errors import FailedPrecondition, status_for
from services.key_manager.adapters.receipts import (
    AccessLogNotDeployed,
    SignedLogReceipts,
    service_id,
)
from services.key_manager.api import servicer  # noqa: F401 - registers the status mapping
from services.key_manager.domain.keyring import KeyContext
from services.key_manager.domain.service import Purpose, ReceiptRefused
from tests.unit.common.test_receipts import DEVICE, KEYS, NOW, OTHER_TENANT, TENANT, FakeLog, access

CONTEXT = KeyContext(TENANT, DEVICE, "clip-0001")
MAX_AGE = timedelta(minutes=5)
INGEST = "clip-ingest"  # clip_ingest's certificate: spiffe://<domain>/service/clip-ingest


@pytest.fixture
def receipts() -> SignedLogReceipts:
    return SignedLogReceipts(KEYS, FakeClock(NOW), max_age=MAX_AGE)


def logged_at(n: int, ago: timedelta, service: str = "clip_ingest") -> bytes:
    """The n-th access, logged `ago` before NOW by `service`."""
    record = log_pb2.AccessRecord.FromString(access(n))
    record.occurred_at.CopyFrom(to_timestamp(NOW - ago))
    record.service = service
    return record.SerializeToString()


async def test_a_receipt_for_this_very_access_releases_the_key(receipts: SignedLogReceipts) -> None:
    log = FakeLog(records=[access(1), access(2)])
    proof = await receipts.verify(log.receipt(1), CONTEXT, Purpose.CLIP_PLAYBACK, INGEST)
    assert proof.leaf_index == 1
    assert proof.access_id.endswith("000000000002")
    assert NOW - proof.occurred_at == timedelta(seconds=60) - timedelta(milliseconds=250)


async def test_an_old_access_under_a_fresh_head_is_refused(receipts: SignedLogReceipts) -> None:
    # The log signs a fresh head for any old entry (GetInclusionProof): the head's age alone
    # would turn an access logged long ago into a valid receipt.
    log = FakeLog(records=[logged_at(1, MAX_AGE + timedelta(seconds=1)), logged_at(2, MAX_AGE)])
    with pytest.raises(ReceiptRefused, match="receipt refused: the logged access happened") as old:
        await receipts.verify(log.receipt(0, at=NOW), CONTEXT, Purpose.CLIP_PLAYBACK, INGEST)
    assert old.value.reason == "stale"
    assert status_for(old.value)[0] is grpc.StatusCode.PERMISSION_DENIED
    # Just within the maximum age is still this access.
    assert (
        await receipts.verify(log.receipt(1), CONTEXT, Purpose.CLIP_PLAYBACK, INGEST)
    ).leaf_index
    # An access dated ahead of the clock beyond the skew is refused too.
    ahead = FakeLog(records=[logged_at(1, -timedelta(minutes=2))])
    with pytest.raises(ReceiptRefused, match="in the future") as future:
        await receipts.verify(ahead.receipt(0), CONTEXT, Purpose.CLIP_PLAYBACK, INGEST)
    assert future.value.reason == "stale"


async def test_a_receipt_logged_by_another_service_is_refused(receipts: SignedLogReceipts) -> None:
    log = FakeLog(records=[access(1)])  # logged by clip_ingest
    with pytest.raises(ReceiptRefused, match="logged by another service") as refused:
        await receipts.verify(log.receipt(0), CONTEXT, Purpose.CLIP_PLAYBACK, "relay-broker")
    assert refused.value.reason == "wrong_service"
    retention = FakeLog(records=[logged_at(1, timedelta(seconds=1), service="retention")])
    with pytest.raises(ReceiptRefused, match="another service"):
        await receipts.verify(retention.receipt(0), CONTEXT, Purpose.CLIP_PLAYBACK, INGEST)
    assert await receipts.verify(retention.receipt(0), CONTEXT, Purpose.CLIP_PLAYBACK, "retention")
    unnamed = FakeLog(records=[logged_at(1, timedelta(seconds=1), service="")])
    with pytest.raises(ReceiptRefused, match="another service"):
        await receipts.verify(unnamed.receipt(0), CONTEXT, Purpose.CLIP_PLAYBACK, "")


def test_logged_service_names_compare_with_certificate_names() -> None:
    assert [service_id(n) for n in ("clip_ingest", "relay_broker", "key_manager", "retention")] == [
        "clip-ingest",
        "relay-broker",
        "key-manager",
        "retention",
    ]


@pytest.mark.parametrize(
    ("context", "purpose"),
    [
        (KeyContext(TENANT, DEVICE, "clip-0002"), Purpose.CLIP_PLAYBACK),
        (KeyContext(TENANT, "another-camera", "clip-0001"), Purpose.CLIP_PLAYBACK),
        (CONTEXT, Purpose.OPERATOR_SUPPORT),
    ],
)
async def test_a_receipt_for_another_access_is_refused(
    receipts: SignedLogReceipts, context: KeyContext, purpose: Purpose
) -> None:
    log = FakeLog(records=[access(1)])
    with pytest.raises(ReceiptRefused, match="another access") as refused:
        await receipts.verify(log.receipt(0), context, purpose, INGEST)
    assert refused.value.reason == "other_access"


async def test_another_households_receipt_is_refused(receipts: SignedLogReceipts) -> None:
    theirs = FakeLog(OTHER_TENANT, records=[access(1, tenant_id=OTHER_TENANT)])
    with pytest.raises(ReceiptRefused, match="receipt refused") as refused:
        await receipts.verify(theirs.receipt(0), CONTEXT, Purpose.CLIP_PLAYBACK, INGEST)
    assert refused.value.reason == "invalid"


async def test_a_stale_or_missing_receipt_is_refused(receipts: SignedLogReceipts) -> None:
    log = FakeLog(records=[access(1)])
    with pytest.raises(ReceiptRefused, match="receipt refused") as stale:
        await receipts.verify(
            log.receipt(0, at=NOW - timedelta(minutes=10)), CONTEXT, Purpose.CLIP_PLAYBACK, INGEST
        )
    assert stale.value.reason == "stale"
    with pytest.raises(ReceiptRefused, match=r"receipt refused: a receipt .* is required") as none:
        await receipts.verify(None, CONTEXT, Purpose.CLIP_PLAYBACK, INGEST)
    assert none.value.reason == "missing"


async def test_an_altered_record_is_refused(receipts: SignedLogReceipts) -> None:
    log = FakeLog(records=[access(1)])
    receipt = log.receipt(0)
    receipt.record = access(1, clip_id="clip-0001") + b"\x00"
    with pytest.raises(ReceiptRefused, match="receipt refused") as refused:
        await receipts.verify(receipt, CONTEXT, Purpose.CLIP_PLAYBACK, INGEST)
    assert refused.value.reason == "invalid"


async def test_without_an_access_log_nothing_is_released() -> None:
    with pytest.raises(FailedPrecondition, match="no access log"):
        await AccessLogNotDeployed().verify(object(), CONTEXT, Purpose.CLIP_PLAYBACK, INGEST)
