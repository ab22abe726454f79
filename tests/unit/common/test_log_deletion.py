"""Deletion statements: a signed end of a household's log, told apart from truncation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacam_core.merkle import EMPTY_ROOT, MerkleTree, leaf_hash
from privacam_core.receipts import (
    LogDeleted,
    LogMonitor,
    LogTampered,
    ReceiptError,
    sign_log_deletion,
    sign_tree_head,
    verify_log_deletion,
)

KEY = Ed25519PrivateKey.generate()
KEYS = {"k1": KEY.public_key()}
NOW = datetime(2026, 12, 7, tzinfo=UTC)
TREE = MerkleTree(leaf_hash(bytes([i])) for i in range(3))


def monitor_at(size: int) -> LogMonitor:
    monitor = LogMonitor(KEYS)
    monitor.observe(sign_tree_head(KEY, "k1", "t-1", size, TREE.root(size), NOW))
    return monitor


def test_a_deletion_covering_the_remembered_head_is_shown_as_such() -> None:
    statement = sign_log_deletion(KEY, "k1", "t-1", 3, TREE.root(3), NOW)
    deleted = monitor_at(3).observe_deletion(statement)
    assert isinstance(deleted, LogDeleted)
    assert not isinstance(deleted, ReceiptError)  # not a verification failure
    assert (deleted.final_size, deleted.deleted_at) == (3, NOW)
    assert str(deleted).startswith("this household's log was deleted at 2026-12-07T00:00:00")
    assert "after 3 entries" in str(deleted)
    # More entries than seen, or a first look: nothing contradicts it.
    assert monitor_at(2).observe_deletion(statement).final_size == 3
    assert LogMonitor(KEYS).observe_deletion(statement).final_size == 3


def test_a_deletion_that_contradicts_what_was_seen_is_tampering() -> None:
    fewer = sign_log_deletion(KEY, "k1", "t-1", 2, TREE.root(2), NOW)
    with pytest.raises(LogTampered, match="deleted after 2 entries, but it had 3"):
        monitor_at(3).observe_deletion(fewer)
    forked = sign_log_deletion(KEY, "k1", "t-1", 3, TREE.root(2), NOW)
    with pytest.raises(LogTampered, match="forked"):
        monitor_at(3).observe_deletion(forked)
    # A size-0 head without a statement is still a truncation.
    monitor = monitor_at(3)
    with pytest.raises(LogTampered, match="removed"):
        monitor.observe(sign_tree_head(KEY, "k1", "t-1", 0, EMPTY_ROOT, NOW))


def test_forged_altered_and_malformed_statements_are_refused() -> None:
    statement = sign_log_deletion(KEY, "k1", "t-1", 3, TREE.root(3), NOW)
    with pytest.raises(ReceiptError, match="unknown log key"):
        verify_log_deletion(statement, {"k2": KEY.public_key()})
    stranger = sign_log_deletion(Ed25519PrivateKey.generate(), "k1", "t-1", 3, TREE.root(3), NOW)
    with pytest.raises(ReceiptError, match="forged or altered"):
        verify_log_deletion(stranger, KEYS)
    for field, value in (("final_size", 4), ("tenant_id", "t-2")):
        altered = type(statement)()
        altered.CopyFrom(statement)
        setattr(altered, field, value)
        with pytest.raises(ReceiptError, match="forged or altered"):
            verify_log_deletion(altered, KEYS)
    # A tree head's signature over the same numbers is not a deletion statement.
    head = sign_tree_head(KEY, "k1", "t-1", 3, TREE.root(3), NOW)
    passed_off = type(statement)()
    passed_off.CopyFrom(statement)
    passed_off.signature = head.signature
    with pytest.raises(ReceiptError, match="forged or altered"):
        verify_log_deletion(passed_off, KEYS)
    short = type(statement)()
    short.CopyFrom(statement)
    short.final_root = b"x"
    with pytest.raises(ReceiptError, match="malformed"):
        verify_log_deletion(short, KEYS)
    undated = type(statement)()
    undated.CopyFrom(statement)
    undated.ClearField("deleted_at")
    with pytest.raises(ReceiptError, match="no time"):
        verify_log_deletion(undated, KEYS)
