"""Log before decrypt: the key manager releases a key only for the access its receipt proves."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.common.clock import FakeClock
from services.common.errors import FailedPrecondition, PermissionDenied
from services.key_manager.adapters.receipts import AccessLogNotDeployed, SignedLogReceipts
from services.key_manager.domain.keyring import KeyContext
from services.key_manager.domain.service import Purpose
from tests.unit.common.test_receipts import DEVICE, KEYS, NOW, OTHER_TENANT, TENANT, FakeLog, access

CONTEXT = KeyContext(TENANT, DEVICE, "clip-0001")


@pytest.fixture
def receipts() -> SignedLogReceipts:
    return SignedLogReceipts(KEYS, FakeClock(NOW), max_age=timedelta(minutes=5))


async def test_a_receipt_for_this_very_access_releases_the_key(receipts: SignedLogReceipts) -> None:
    log = FakeLog(records=[access(1), access(2)])
    proof = await receipts.verify(log.receipt(1), CONTEXT, Purpose.CLIP_PLAYBACK)
    assert proof.leaf_index == 1
    assert proof.access_id.endswith("000000000002")


async def test_a_replayed_receipt_is_refused(receipts: SignedLogReceipts) -> None:
    log = FakeLog(records=[access(1)])
    await receipts.verify(log.receipt(0), CONTEXT, Purpose.CLIP_PLAYBACK)
    with pytest.raises(PermissionDenied, match="already used"):
        await receipts.verify(log.receipt(0), CONTEXT, Purpose.CLIP_PLAYBACK)


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
    with pytest.raises(PermissionDenied, match="another access"):
        await receipts.verify(log.receipt(0), context, purpose)


async def test_another_households_receipt_is_refused(receipts: SignedLogReceipts) -> None:
    theirs = FakeLog(OTHER_TENANT, records=[access(1, tenant_id=OTHER_TENANT)])
    with pytest.raises(PermissionDenied, match="receipt refused"):
        await receipts.verify(theirs.receipt(0), CONTEXT, Purpose.CLIP_PLAYBACK)


async def test_a_stale_or_missing_receipt_is_refused(receipts: SignedLogReceipts) -> None:
    log = FakeLog(records=[access(1)])
    with pytest.raises(PermissionDenied, match="receipt refused"):
        await receipts.verify(
            log.receipt(0, at=NOW - timedelta(minutes=10)), CONTEXT, Purpose.CLIP_PLAYBACK
        )
    with pytest.raises(PermissionDenied, match="required"):
        await receipts.verify(None, CONTEXT, Purpose.CLIP_PLAYBACK)


async def test_an_altered_record_is_refused(receipts: SignedLogReceipts) -> None:
    log = FakeLog(records=[access(1)])
    receipt = log.receipt(0)
    receipt.record = access(1, clip_id="clip-0001") + b"\x00"
    with pytest.raises(PermissionDenied, match="receipt refused"):
        await receipts.verify(receipt, CONTEXT, Purpose.CLIP_PLAYBACK)


async def test_without_an_access_log_nothing_is_released() -> None:
    with pytest.raises(FailedPrecondition, match="no access log"):
        await AccessLogNotDeployed().verify(object(), CONTEXT, Purpose.CLIP_PLAYBACK)
