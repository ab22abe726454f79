"""Signed tree heads, receipts and the client's log monitor, stated as tests.

A small in-memory log (``FakeLog``) plays the access-log service: it appends records,
signs heads and serves receipts and proofs, and can be made to misbehave (rewrite,
truncate, fork) the way a compromised vendor might.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.timestamp_pb2 import Timestamp

from privacam.accesslog.v1 import log_pb2
from privacam.types.v1 import types_pb2
from privacam_core.merkle import EMPTY_ROOT, MerkleTree, leaf_hash
from privacam_core.receipts import (
    LogMonitor,
    LogTampered,
    ReceiptError,
    sign_tree_head,
    tree_head_signing_input,
    verify_receipt,
    verify_tree_head,
)

VECTORS_PATH = Path(__file__).with_name("merkle_vectors.json")
TENANT = "7f3a0c1e-2b4d-4e6f-8a9b-0c1d2e3f4a5b"
OTHER_TENANT = "11111111-2222-4333-8444-555555555555"
DEVICE = "cam-front-door"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MAX_AGE = timedelta(minutes=5)
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
KEYS: dict[str, Ed25519PublicKey] = {"log-1": LOG_KEY.public_key()}


def access(n: int, tenant_id: str = TENANT, clip_id: str = "clip-0001") -> bytes:
    """The serialized AccessRecord of the n-th playback of a clip."""
    return log_pb2.AccessRecord(
        access_id=f"00000000-0000-4000-8000-{n:012d}",
        tenant_id=tenant_id,
        principal=types_pb2.Principal(
            kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=tenant_id, id="install-1"
        ),
        resource=log_pb2.Resource(
            kind=log_pb2.RESOURCE_KIND_CLIP, device_id=DEVICE, clip_id=clip_id
        ),
        purpose=types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
        service="clip_ingest",
        occurred_at=Timestamp(seconds=int(NOW.timestamp()) - 60, nanos=250_000_000),
    ).SerializeToString()


class FakeLog:
    """One tenant's log as the access-log service keeps it, for tests."""

    def __init__(self, tenant_id: str = TENANT, records: Iterable[bytes] = ()) -> None:
        self.tenant_id = tenant_id
        self.records: list[bytes] = []
        self.tree = MerkleTree()
        for record in records:
            self.append(record)

    def append(self, record: bytes) -> int:
        self.records.append(record)
        return self.tree.append_data(record)

    def head(
        self, at: datetime = NOW, key: Ed25519PrivateKey = LOG_KEY, key_id: str = "log-1"
    ) -> log_pb2.SignedTreeHead:
        return sign_tree_head(key, key_id, self.tenant_id, self.tree.size, self.tree.root(), at)

    def receipt(self, index: int, at: datetime = NOW) -> log_pb2.Receipt:
        return log_pb2.Receipt(
            record=self.records[index],
            leaf_index=index,
            tree_head=self.head(at),
            inclusion_proof=log_pb2.InclusionProof(
                leaf_index=index,
                tree_size=self.tree.size,
                hashes=self.tree.inclusion_proof(index),
            ),
        )

    def consistency(self, old_size: int) -> log_pb2.ConsistencyProof:
        return log_pb2.ConsistencyProof(
            first_size=old_size,
            second_size=self.tree.size,
            hashes=self.tree.consistency_proof(old_size),
        )

    def entries(self) -> list[log_pb2.LogEntry]:
        return [
            log_pb2.LogEntry(
                index=i,
                record=record,
                inclusion_proof=log_pb2.InclusionProof(
                    leaf_index=i, tree_size=self.tree.size, hashes=self.tree.inclusion_proof(i)
                ),
            )
            for i, record in enumerate(self.records)
        ]


def copy_of(message: Any) -> Any:
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


@pytest.fixture
def log() -> FakeLog:
    return FakeLog(records=[access(n) for n in range(10)])


# --- signed tree heads ----------------------------------------------------------------------


def test_signing_input_and_signatures_match_the_checked_in_vectors() -> None:
    for case in json.loads(VECTORS_PATH.read_text())["signed_tree_heads"]:
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(case["private_key_hex"]))
        root = bytes.fromhex(case["root_hash_hex"])
        nanos = case["timestamp_nanos"]
        signing_input = tree_head_signing_input(case["tenant_id"], case["tree_size"], nanos, root)
        assert signing_input.hex() == case["signing_input_hex"]
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=nanos // 1000)
        sth = sign_tree_head(
            key, case["key_id"], case["tenant_id"], case["tree_size"], root, moment
        )
        assert sth.signature.hex() == case["signature_hex"]  # Ed25519 is deterministic
        assert sth.timestamp.seconds * 10**9 + sth.timestamp.nanos == nanos
        verify_tree_head(sth, {case["key_id"]: key.public_key()})


def test_a_head_signed_by_the_log_verifies(log: FakeLog) -> None:
    sth = log.head()
    assert (sth.tenant_id, sth.tree_size, sth.key_id) == (TENANT, 10, "log-1")
    assert sth.root_hash == log.tree.root()
    verify_tree_head(sth, KEYS)


def test_a_head_signed_with_another_key_is_refused(log: FakeLog) -> None:
    with pytest.raises(ReceiptError, match="does not verify under log key 'log-1'"):
        verify_tree_head(log.head(key=OTHER_KEY), KEYS)


def test_a_head_signed_with_an_unknown_key_id_is_refused(log: FakeLog) -> None:
    with pytest.raises(ReceiptError, match="unknown log key 'log-0'"):
        verify_tree_head(log.head(key_id="log-0"), KEYS)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tree_size", 11),
        ("tree_size", 9),
        ("root_hash", leaf_hash(b"another root")),
        ("tenant_id", OTHER_TENANT),
        ("timestamp", Timestamp(seconds=int(NOW.timestamp()) + 1)),
        ("key_id", "log-2"),
    ],
)
def test_a_head_with_any_signed_field_changed_is_refused(
    log: FakeLog, field: str, value: object
) -> None:
    sth = log.head()
    if isinstance(value, Timestamp):
        sth.timestamp.CopyFrom(value)
    else:
        setattr(sth, field, value)
    # key_id is not in the signed bytes (log.proto's layout); it picks the key, so naming
    # another known key must fail.
    keys = {**KEYS, "log-2": OTHER_KEY.public_key()}
    with pytest.raises(ReceiptError, match="forged or altered"):
        verify_tree_head(sth, keys)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("root_hash", b"\x00" * 31, "root hash is not 32 bytes"),
        ("signature", b"\x00" * 63, "signature is not 64 bytes"),
        ("tenant_id", "", "no valid tenant"),
        ("tenant_id", "a\x00b", "no valid tenant"),
    ],
)
def test_malformed_heads_are_refused(log: FakeLog, field: str, value: object, message: str) -> None:
    sth = log.head()
    setattr(sth, field, value)
    with pytest.raises(ReceiptError, match=message):
        verify_tree_head(sth, KEYS)


def test_a_head_without_timestamp_or_with_a_bogus_empty_root_is_refused(log: FakeLog) -> None:
    sth = log.head()
    sth.ClearField("timestamp")
    with pytest.raises(ReceiptError, match="no timestamp"):
        verify_tree_head(sth, KEYS)
    empty = FakeLog().head()
    assert empty.root_hash == EMPTY_ROOT
    verify_tree_head(empty, KEYS)
    empty.root_hash = log.tree.root()
    with pytest.raises(ReceiptError, match="empty log"):
        verify_tree_head(empty, KEYS)


def test_signing_refuses_what_no_verifier_would_accept() -> None:
    root = MerkleTree([leaf_hash(b"x")]).root()
    with pytest.raises(ValueError, match="timezone-aware"):
        sign_tree_head(LOG_KEY, "log-1", TENANT, 1, root, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="before 1970"):
        sign_tree_head(LOG_KEY, "log-1", TENANT, 1, root, datetime(1969, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="key id"):
        sign_tree_head(LOG_KEY, "x" * 65, TENANT, 1, root, NOW)
    with pytest.raises(ValueError, match="32 bytes"):
        sign_tree_head(LOG_KEY, "log-1", TENANT, 1, root[:16], NOW)
    with pytest.raises(ValueError, match="empty log"):
        sign_tree_head(LOG_KEY, "log-1", TENANT, 0, root, NOW)


# --- receipts (the key manager's check) -----------------------------------------------------


def verify(receipt: log_pb2.Receipt, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {"tenant_id": TENANT, "now": NOW, "max_age": MAX_AGE}
    arguments.update(overrides)
    return verify_receipt(receipt, KEYS, **arguments)


def test_a_receipt_proves_which_access_is_logged_where(log: FakeLog) -> None:
    verified = verify(log.receipt(7))
    assert verified.access_id == "00000000-0000-4000-8000-000000000007"
    assert verified.tenant_id == TENANT
    assert verified.principal.kind == types_pb2.PRINCIPAL_KIND_APP
    assert (verified.principal.tenant_id, verified.principal.id) == (TENANT, "install-1")
    assert verified.purpose == types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK
    assert verified.resource_kind == log_pb2.RESOURCE_KIND_CLIP
    assert (verified.device_id, verified.clip_id, verified.export_id) == (DEVICE, "clip-0001", "")
    assert verified.service == "clip_ingest"
    assert verified.occurred_at == NOW - timedelta(seconds=60) + timedelta(milliseconds=250)
    assert (verified.leaf_index, verified.tree_size, verified.head_timestamp) == (7, 10, NOW)
    assert verified.operator_access_id == ""


def test_every_entry_of_a_log_gets_a_receipt_that_verifies(log: FakeLog) -> None:
    for index in range(log.tree.size):
        assert verify(log.receipt(index)).leaf_index == index


def test_a_receipt_for_another_tenant_is_refused(log: FakeLog) -> None:
    other = FakeLog(OTHER_TENANT, [access(n, OTHER_TENANT) for n in range(3)])
    with pytest.raises(ReceiptError, match="another household's log") as refused:
        verify(other.receipt(1))
    assert OTHER_TENANT not in str(refused.value)
    with pytest.raises(ReceiptError, match="another household"):
        verify(log.receipt(1), tenant_id=OTHER_TENANT)


def test_a_record_about_another_tenant_in_this_tenants_log_is_refused() -> None:
    log = FakeLog(records=[access(0), access(1, OTHER_TENANT)])
    with pytest.raises(ReceiptError, match="about another household"):
        verify(log.receipt(1))


def test_a_receipt_whose_record_was_altered_is_refused(log: FakeLog) -> None:
    receipt = log.receipt(3)
    receipt.record = access(3, clip_id="clip-0002")  # ask for another clip with the same proof
    with pytest.raises(ReceiptError, match="does not prove the access is logged"):
        verify(receipt)


def test_a_receipt_carrying_another_entrys_record_is_refused(log: FakeLog) -> None:
    receipt = log.receipt(3)
    receipt.record = log.records[4]
    with pytest.raises(ReceiptError, match="does not prove"):
        verify(receipt)


def test_a_stale_receipt_is_refused_and_one_just_fresh_enough_is_not(log: FakeLog) -> None:
    verify(log.receipt(2, at=NOW - MAX_AGE))
    with pytest.raises(ReceiptError, match="ask the log for a fresh receipt"):
        verify(log.receipt(2, at=NOW - MAX_AGE - timedelta(seconds=1)))


def test_a_receipt_dated_in_the_future_is_refused(log: FakeLog) -> None:
    verify(log.receipt(2, at=NOW + timedelta(seconds=30)))  # within the clock skew
    with pytest.raises(ReceiptError, match="future"):
        verify(log.receipt(2, at=NOW + timedelta(hours=1)))


def test_a_receipt_whose_head_was_tampered_is_refused(log: FakeLog) -> None:
    for field, value in [("tree_size", 9), ("root_hash", leaf_hash(b"x"))]:
        receipt = log.receipt(5)
        setattr(receipt.tree_head, field, value)
        with pytest.raises(ReceiptError, match="forged or altered"):
            verify(receipt)
    forged = log.receipt(5)
    forged.tree_head.CopyFrom(log.head(key=OTHER_KEY))
    with pytest.raises(ReceiptError, match="forged"):
        verify(forged)


def test_a_receipt_whose_indices_disagree_is_refused(log: FakeLog) -> None:
    receipt = log.receipt(5)
    receipt.leaf_index = 6
    with pytest.raises(ReceiptError, match="proof is for entry 5, the receipt for entry 6"):
        verify(receipt)
    receipt = log.receipt(5)
    receipt.inclusion_proof.tree_size = 9
    with pytest.raises(ReceiptError, match="tree of 9 entries, the signed head covers 10"):
        verify(receipt)


def test_a_receipt_with_a_proof_against_an_older_head_is_refused(log: FakeLog) -> None:
    old_proof = log.receipt(5).inclusion_proof
    log.append(access(10))
    receipt = log.receipt(5)
    receipt.inclusion_proof.CopyFrom(old_proof)
    with pytest.raises(ReceiptError):
        verify(receipt)


def test_a_receipt_with_a_truncated_or_padded_proof_is_refused(log: FakeLog) -> None:
    receipt = log.receipt(5)
    del receipt.inclusion_proof.hashes[-1]
    with pytest.raises(ReceiptError, match="hashes where it needs"):
        verify(receipt)
    receipt = log.receipt(5)
    receipt.inclusion_proof.hashes.append(b"\x00" * 32)
    with pytest.raises(ReceiptError, match="hashes where it needs"):
        verify(receipt)


def test_incomplete_or_unparseable_receipts_are_refused(log: FakeLog) -> None:
    receipt = log.receipt(1)
    receipt.ClearField("tree_head")
    with pytest.raises(ReceiptError, match="no signed tree head"):
        verify(receipt)
    receipt = log.receipt(1)
    receipt.ClearField("inclusion_proof")
    with pytest.raises(ReceiptError, match="no inclusion proof"):
        verify(receipt)
    garbage = FakeLog(records=[b"\xff\xff\xff not a protobuf"])
    with pytest.raises(ReceiptError, match="not a valid AccessRecord"):
        verify(garbage.receipt(0))
    no_id = FakeLog(records=[log_pb2.AccessRecord(tenant_id=TENANT).SerializeToString()])
    with pytest.raises(ReceiptError, match="no access id"):
        verify(no_id.receipt(0))


def test_refusals_never_show_key_material(log: FakeLog) -> None:
    secret = LOG_KEY.private_bytes_raw()
    forged = log.receipt(5)
    forged.tree_head.CopyFrom(log.head(key=OTHER_KEY))
    with pytest.raises(ReceiptError) as refused:
        verify(forged)
    text = str(refused.value)
    for material in (
        secret,
        OTHER_KEY.private_bytes_raw(),
        LOG_KEY.public_key().public_bytes_raw(),
        forged.tree_head.signature,
    ):
        assert material.hex() not in text
        assert repr(material) not in text


# --- the client's log monitor ---------------------------------------------------------------


def test_a_growing_honest_log_is_followed(log: FakeLog) -> None:
    monitor = LogMonitor(KEYS)
    assert monitor.head(TENANT) is None
    monitor.observe(log.head())  # trusted on first use
    for n in range(10, 14):
        old_size = log.tree.size
        log.append(access(n))
        monitor.observe(log.head(NOW + timedelta(minutes=n)), log.consistency(old_size))
    remembered = monitor.head(TENANT)
    assert remembered is not None
    assert (remembered.tree_size, remembered.root_hash) == (14, log.tree.root())


def test_a_truncated_log_is_detected(log: FakeLog) -> None:
    monitor = LogMonitor(KEYS)
    monitor.observe(log.head())
    truncated = FakeLog(records=log.records[:7])
    with pytest.raises(LogTampered, match="had 10: entries were removed"):
        monitor.observe(truncated.head(NOW + timedelta(minutes=1)))


def test_a_forked_log_is_detected(log: FakeLog) -> None:
    monitor = LogMonitor(KEYS)
    monitor.observe(log.head())
    fork = FakeLog(records=[*log.records[:9], access(99)])  # same size, another last entry
    with pytest.raises(LogTampered, match="forked"):
        monitor.observe(fork.head(NOW + timedelta(minutes=1)))


@pytest.mark.parametrize("how", ["altered", "deleted", "reordered", "swapped"])
def test_a_rewritten_log_is_detected_at_the_next_look(log: FakeLog, how: str) -> None:
    monitor = LogMonitor(KEYS)
    monitor.observe(log.head())
    records = list(log.records)
    if how == "altered":
        records[3] = access(3, clip_id="clip-other")
    elif how == "deleted":
        del records[3]
    elif how == "reordered":
        records.insert(8, records.pop(3))
    else:
        records[2], records[6] = records[6], records[2]
    rewritten = FakeLog(records=[*records, access(10), access(11)])  # and it grew since
    with pytest.raises(LogTampered, match="does not extend the one seen before"):
        monitor.observe(rewritten.head(NOW + timedelta(minutes=1)), rewritten.consistency(10))
    remembered = monitor.head(TENANT)
    assert remembered is not None
    assert remembered.root_hash == log.tree.root()


def test_a_new_head_needs_a_consistency_proof_for_the_remembered_size(log: FakeLog) -> None:
    monitor = LogMonitor(KEYS)
    monitor.observe(log.head())
    log.append(access(10))
    with pytest.raises(ReceiptError, match="consistency proof from 10 to 11 entries is needed"):
        monitor.observe(log.head())
    with pytest.raises(ReceiptError, match="goes from 9 to 11 entries, not from 10 to 11"):
        monitor.observe(log.head(), log.consistency(9))
    monitor.observe(log.head(), log.consistency(10))


def test_a_forged_head_is_refused_without_accusing_the_log(log: FakeLog) -> None:
    monitor = LogMonitor(KEYS)
    monitor.observe(log.head())
    forged = FakeLog(records=log.records[:3]).head(key=OTHER_KEY)
    with pytest.raises(ReceiptError) as refused:
        monitor.observe(forged)
    assert not isinstance(refused.value, LogTampered)
    remembered = monitor.head(TENANT)
    assert remembered is not None
    assert remembered.tree_size == 10


def test_heads_of_different_tenants_are_remembered_apart(log: FakeLog) -> None:
    other = FakeLog(OTHER_TENANT, [access(n, OTHER_TENANT) for n in range(2)])
    monitor = LogMonitor(KEYS)
    monitor.observe(log.head())
    monitor.observe(other.head())
    mine, theirs = monitor.head(TENANT), monitor.head(OTHER_TENANT)
    assert mine is not None
    assert theirs is not None
    assert (mine.tree_size, theirs.tree_size) == (10, 2)


def test_the_remembered_state_survives_a_restart_and_still_catches_a_fork(log: FakeLog) -> None:
    monitor = LogMonitor(KEYS)
    monitor.observe(log.head())
    saved = monitor.to_json()
    restored = LogMonitor.from_json(saved, KEYS)
    assert restored.head(TENANT) == monitor.head(TENANT)
    assert restored.to_json() == saved
    fork = FakeLog(records=[*log.records[:9], access(99)])
    with pytest.raises(LogTampered):
        restored.observe(fork.head())


def test_an_edited_or_corrupted_saved_state_is_refused(log: FakeLog) -> None:
    monitor = LogMonitor(KEYS)
    monitor.observe(log.head())
    document = json.loads(monitor.to_json())
    document["heads"][TENANT]["tree_size"] = 3  # pretend we saw less, to allow a truncation
    with pytest.raises(ReceiptError, match="forged or altered"):
        LogMonitor.from_json(json.dumps(document), KEYS)
    for corrupted in [
        "not json",
        "[]",
        '{"format": "other"}',
        '{"format": "privacam-log-monitor-v1"}',
    ]:
        with pytest.raises(ReceiptError):
            LogMonitor.from_json(corrupted, KEYS)


def test_listed_entries_are_verified_then_parsed(log: FakeLog) -> None:
    monitor = LogMonitor(KEYS)
    sth = log.head()
    monitor.observe(sth)
    verified = monitor.verify_entries(log.entries(), sth)
    assert [v.index for v in verified] == list(range(10))
    assert verified[4].record.access_id == "00000000-0000-4000-8000-000000000004"
    assert monitor.verify_entries(log.entries()[3:5], sth)[0].index == 3  # a filtered page


def test_an_altered_stored_entry_is_detected_when_listed(log: FakeLog) -> None:
    monitor = LogMonitor(KEYS)
    sth = log.head()
    monitor.observe(sth)
    entries = log.entries()
    entries[6].record = access(6, clip_id="clip-other")
    with pytest.raises(LogTampered, match="entry 6 is not what the log signed"):
        monitor.verify_entries(entries, sth)


def test_reordered_stored_entries_are_detected_when_listed(log: FakeLog) -> None:
    monitor = LogMonitor(KEYS)
    sth = log.head()
    monitor.observe(sth)
    entries = log.entries()
    entries[2].record, entries[5].record = entries[5].record, entries[2].record
    with pytest.raises(LogTampered, match="entry 2"):
        monitor.verify_entries(entries, sth)


def test_entries_are_only_checked_against_the_observed_head(log: FakeLog) -> None:
    monitor = LogMonitor(KEYS)
    sth = log.head()
    with pytest.raises(ReceiptError, match="observe this tree head"):
        monitor.verify_entries(log.entries(), sth)
    monitor.observe(sth)
    fork = FakeLog(records=[*log.records[:9], access(99)])
    with pytest.raises(LogTampered, match="forked"):
        monitor.verify_entries(fork.entries(), fork.head())
    stale = copy_of(log.entries()[0])
    stale.inclusion_proof.tree_size = 9
    with pytest.raises(ReceiptError, match="not the head's 10"):
        monitor.verify_entries([stale], sth)
