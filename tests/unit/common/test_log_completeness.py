"""LogMonitor.verify_range: a page of a listing must account for every index of its range,
and a record listed as not matching must really not match."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacam.accesslog.v1 import log_pb2
from privacam_core.merkle import MerkleTree, leaf_hash
from privacam_core.receipts import EntryMissing, LogMonitor, ReceiptError, sign_tree_head

KEY = Ed25519PrivateKey.generate()
NOW = datetime(2026, 12, 7, tzinfo=UTC)
Setup = tuple[LogMonitor, list[log_pb2.LogEntry], log_pb2.SignedTreeHead]


def _log(devices: list[str]) -> tuple[list[log_pb2.LogEntry], log_pb2.SignedTreeHead]:
    records = [
        log_pb2.AccessRecord(
            access_id=f"a-{i}",
            tenant_id="t-1",
            resource=log_pb2.Resource(kind=log_pb2.RESOURCE_KIND_CAMERA, device_id=device),
        ).SerializeToString(deterministic=True)
        for i, device in enumerate(devices)
    ]
    tree = MerkleTree(leaf_hash(r) for r in records)
    size = len(records)
    entries = [
        log_pb2.LogEntry(
            index=i,
            record=r,
            inclusion_proof=log_pb2.InclusionProof(
                leaf_index=i, tree_size=size, hashes=tree.inclusion_proof(i)
            ),
        )
        for i, r in enumerate(records)
    ]
    return entries, sign_tree_head(KEY, "k1", "t-1", size, tree.root(), NOW)


def _camera(device: str) -> Callable[[log_pb2.AccessRecord], bool]:
    return lambda record: record.resource.device_id == device


@pytest.fixture
def setup() -> Setup:
    entries, head = _log(["cam-1", "cam-2", "cam-1", "cam-2", "cam-1"])
    monitor = LogMonitor({"k1": KEY.public_key()})
    monitor.observe(head)
    return monitor, entries, head


def test_a_complete_page_returns_the_matching_entries(setup: Setup) -> None:
    monitor, entries, head = setup
    matching = [entries[0], entries[2], entries[4]]
    others = [entries[1], entries[3]]
    verified = monitor.verify_range(head, 0, 5, matching, others, _camera("cam-1"))
    assert [v.index for v in verified] == [0, 2, 4]
    assert monitor.verify_range(head, 1, 3, [entries[2]], [entries[1]], _camera("cam-1"))


def test_an_omitted_index_is_named(setup: Setup) -> None:
    monitor, entries, head = setup
    with pytest.raises(EntryMissing, match="entry 2 ") as missing:
        monitor.verify_range(head, 0, 5, [entries[0], entries[4]], [entries[1], entries[3]],
                             _camera("cam-1"))  # fmt: skip
    assert missing.value.index == 2
    # An unmatching one dropped is just as missing: every index must be accounted for.
    with pytest.raises(EntryMissing) as missing:
        monitor.verify_range(head, 0, 5, [entries[0], entries[2], entries[4]], [entries[1]],
                             _camera("cam-1"))  # fmt: skip
    assert missing.value.index == 3


def test_a_matching_entry_passed_off_as_other_is_caught(setup: Setup) -> None:
    monitor, entries, head = setup
    with pytest.raises(EntryMissing, match="listed it as not matching") as hidden:
        monitor.verify_range(head, 0, 5, [entries[0], entries[4]],
                             [entries[1], entries[2], entries[3]], _camera("cam-1"))  # fmt: skip
    assert hidden.value.index == 2


def test_duplicates_strangers_and_bad_ranges_are_refused(setup: Setup) -> None:
    monitor, entries, head = setup
    everything = _camera("cam-1")
    with pytest.raises(ReceiptError, match="twice"):
        monitor.verify_range(head, 0, 2, [entries[0]], [entries[1], entries[1]], everything)
    with pytest.raises(ReceiptError, match="outside the range"):
        monitor.verify_range(head, 0, 2, [entries[0]], [entries[1], entries[3]], everything)
    with pytest.raises(ReceiptError, match="outside the head"):
        monitor.verify_range(head, 0, 6, entries, [], everything)
    with pytest.raises(ReceiptError, match="does not match"):
        monitor.verify_range(head, 0, 2, [entries[0], entries[1]], [], everything)
