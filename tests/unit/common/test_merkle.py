"""The access log's Merkle tree: RFC 9162 / RFC 6962 hashing, proofs and verification,
stated as tests.

Every proof the tree serves is compared with a naive transcription of RFC 6962 section
2.1 (``MTH``, ``PATH``, ``PROOF`` as recursive functions over the entries themselves),
for every size up to 64 and every index or pair of sizes. ``merkle_vectors.json`` holds
known answers:

* ``rfc6962_reference``: the published Certificate Transparency reference vectors (eight
  leaves, their roots, audit paths and consistency proofs), as listed in
  transparency-dev/merkle ``proof/verify_test.go`` and the CT reference implementation's
  tests. Copied, never regenerated.
* ``privacam``: roots and proofs over ``"privacam access log entry {i}"`` entries,
  computed once with the naive functions below (not the library).
* ``signed_tree_heads``: the signing input and Ed25519 signature of a few heads, built from
  the byte layout in ``log.proto`` by hand (checked in ``test_receipts.py``).

Regenerate the computed parts only if the hashing itself is meant to change (it never is
for a log already written): ``.venv/bin/python -m tests.unit.common.test_merkle
--write-vectors``.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from privacam_core.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_TREE_SIZE,
    MerkleTree,
    ProofError,
    consistency_proof_length,
    inclusion_proof_length,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)

VECTORS_PATH = Path(__file__).with_name("merkle_vectors.json")


# --- RFC 6962 section 2.1, transcribed naively (the independent reference) --------------


def ref_leaf(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def ref_k(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(entries: Sequence[bytes]) -> bytes:
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return ref_leaf(entries[0])
    k = ref_k(n)
    return ref_node(ref_mth(entries[:k]), ref_mth(entries[k:]))


def ref_path(m: int, entries: Sequence[bytes]) -> list[bytes]:
    n = len(entries)
    if n == 1:
        return []
    k = ref_k(n)
    if m < k:
        return [*ref_path(m, entries[:k]), ref_mth(entries[k:])]
    return [*ref_path(m - k, entries[k:]), ref_mth(entries[:k])]


def ref_subproof(m: int, entries: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(entries)
    if m == n:
        return [] if whole else [ref_mth(entries)]
    k = ref_k(n)
    if m <= k:
        return [*ref_subproof(m, entries[:k], whole), ref_mth(entries[k:])]
    return [*ref_subproof(m - k, entries[k:], False), ref_mth(entries[:k])]


def ref_proof(m: int, entries: Sequence[bytes]) -> list[bytes]:
    return ref_subproof(m, entries, True)


# --- fixtures -----------------------------------------------------------------------------

MAX_EXHAUSTIVE = 64


def entry(i: int) -> bytes:
    return f"privacam access log entry {i}".encode()


ENTRIES = [entry(i) for i in range(MAX_EXHAUSTIVE)]


@cache
def ref_root(size: int) -> bytes:
    return ref_mth(ENTRIES[:size])


@pytest.fixture(scope="module")
def tree() -> MerkleTree:
    return MerkleTree(leaf_hash(e) for e in ENTRIES)


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
    return loaded


def unhex(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def refused(check: Callable[..., None], *args: Any) -> bool:
    """Whether ``check(*args)`` raises ProofError (and nothing else)."""
    try:
        check(*args)
    except ProofError:
        return True
    return False


# --- hashing ------------------------------------------------------------------------------


def test_leaf_and_node_hashes_are_domain_separated_sha256() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = bytes(range(32)), bytes(range(32, 64))
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    # A leaf whose bytes are two hashes is not mistaken for the node over them.
    assert leaf_hash(left + right) != node_hash(left, right)


def test_node_hash_refuses_children_that_are_not_32_bytes() -> None:
    with pytest.raises(ValueError, match="32-byte"):
        node_hash(b"\x00" * 31, b"\x00" * 33)


def test_the_empty_tree_hashes_to_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MerkleTree().root() == EMPTY_ROOT
    assert MerkleTree().size == 0


# --- against the naive RFC functions, exhaustively --------------------------------------


def test_root_of_every_size_matches_rfc_mth(tree: MerkleTree) -> None:
    for size in range(MAX_EXHAUSTIVE + 1):
        assert tree.root(size) == ref_root(size), size


def test_growing_a_tree_never_changes_the_roots_of_its_past_sizes() -> None:
    growing = MerkleTree()
    for size in range(1, MAX_EXHAUSTIVE + 1):
        growing.append_data(ENTRIES[size - 1])
        assert growing.root() == ref_root(size)
        assert [growing.root(s) for s in range(size + 1)] == [ref_root(s) for s in range(size + 1)]


@pytest.mark.parametrize("size", range(1, MAX_EXHAUSTIVE + 1))
def test_every_inclusion_proof_is_rfc_path_and_verifies(tree: MerkleTree, size: int) -> None:
    root = ref_root(size)
    for index in range(size):
        proof = tree.inclusion_proof(index, size)
        assert proof == ref_path(index, ENTRIES[:size]), (index, size)
        assert len(proof) == inclusion_proof_length(index, size)
        verify_inclusion(leaf_hash(ENTRIES[index]), index, size, proof, root)
        assert root_from_inclusion(leaf_hash(ENTRIES[index]), index, size, proof) == root


@pytest.mark.parametrize("new_size", range(1, MAX_EXHAUSTIVE + 1))
def test_every_consistency_proof_is_rfc_proof_and_verifies(tree: MerkleTree, new_size: int) -> None:
    for old_size in range(1, new_size + 1):
        proof = tree.consistency_proof(old_size, new_size)
        assert proof == ref_proof(old_size, ENTRIES[:new_size]), (old_size, new_size)
        assert len(proof) == consistency_proof_length(old_size, new_size)
        verify_consistency(old_size, new_size, ref_root(old_size), ref_root(new_size), proof)


def test_an_inclusion_proof_for_one_entry_proves_no_other(tree: MerkleTree) -> None:
    for size in range(2, 20):
        root = ref_root(size)
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            for other in range(size):
                if other != index:
                    with pytest.raises(ProofError):
                        verify_inclusion(leaf_hash(ENTRIES[other]), index, size, proof, root)
                    assert refused(
                        verify_inclusion, leaf_hash(ENTRIES[index]), other, size, proof, root
                    )


# --- published and checked-in known answers ---------------------------------------------


def test_published_rfc6962_reference_roots(vectors: dict[str, Any]) -> None:
    reference = vectors["rfc6962_reference"]
    leaves = unhex(reference["leaves_hex"])
    tree = MerkleTree()
    for size, expected in enumerate(reference["roots_hex"], start=1):
        tree.append_data(leaves[size - 1])
        assert tree.root().hex() == expected
        assert ref_mth(leaves[:size]).hex() == expected  # the reference agrees too


def test_published_rfc6962_reference_inclusion_proofs(vectors: dict[str, Any]) -> None:
    reference = vectors["rfc6962_reference"]
    leaves = unhex(reference["leaves_hex"])
    tree = MerkleTree(leaf_hash(d) for d in leaves)
    for case in reference["inclusion"]:
        index, size, proof = case["index"], case["size"], unhex(case["proof_hex"])
        assert tree.inclusion_proof(index, size) == proof
        verify_inclusion(leaf_hash(leaves[index]), index, size, proof, tree.root(size))


def test_published_rfc6962_reference_consistency_proofs(vectors: dict[str, Any]) -> None:
    reference = vectors["rfc6962_reference"]
    leaves = unhex(reference["leaves_hex"])
    tree = MerkleTree(leaf_hash(d) for d in leaves)
    for case in reference["consistency"]:
        old, new, proof = case["old_size"], case["new_size"], unhex(case["proof_hex"])
        assert tree.consistency_proof(old, new) == proof
        verify_consistency(old, new, tree.root(old), tree.root(new), proof)


def test_checked_in_privacam_vectors(vectors: dict[str, Any]) -> None:
    known = vectors["privacam"]
    largest = max(int(size) for size in known["roots_hex"])
    tree = MerkleTree(leaf_hash(entry(i)) for i in range(largest))
    for size, expected in known["roots_hex"].items():
        assert tree.root(int(size)).hex() == expected, size
    for case in known["inclusion"]:
        assert tree.inclusion_proof(case["index"], case["size"]) == unhex(case["proof_hex"])
    for case in known["consistency"]:
        proof = tree.consistency_proof(case["old_size"], case["new_size"])
        assert proof == unhex(case["proof_hex"])


# --- what tampering does to proofs --------------------------------------------------------


def tampered_logs(entries: list[bytes]) -> dict[str, list[bytes]]:
    """Every way of changing one stored entry, deleting one, moving one or swapping two."""
    n = len(entries)
    logs: dict[str, list[bytes]] = {}
    for i in range(n):
        altered = list(entries)
        altered[i] = entries[i] + b" (edited)"
        logs[f"entry {i} altered"] = altered
        logs[f"entry {i} deleted"] = entries[:i] + entries[i + 1 :]
        for j in range(i + 1, n):
            swapped = list(entries)
            swapped[i], swapped[j] = swapped[j], swapped[i]
            logs[f"entries {i} and {j} swapped"] = swapped
            moved = list(entries)
            moved.insert(j, moved.pop(i))
            logs[f"entry {i} moved to {j}"] = moved
    return logs


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13])
def test_altering_deleting_or_reordering_entries_breaks_consistency(size: int) -> None:
    """A client that saw the honest head of ``size`` entries, shown any tampered log that
    later grew, can be given no consistency proof that verifies."""
    honest = ENTRIES[:size]
    old_root = ref_mth(honest)
    honest_grown = MerkleTree(leaf_hash(e) for e in [*honest, entry(100), entry(101)])
    honest_proof = honest_grown.consistency_proof(size, size + 2)
    for what, tampered in tampered_logs(honest).items():
        grown = [*tampered, entry(100), entry(101)]
        new_tree = MerkleTree(leaf_hash(e) for e in grown)
        new_size, new_root = len(grown), new_tree.root()
        # The proof the tampered log can compute for itself does not lead to the old root,
        own_proof = new_tree.consistency_proof(size, new_size)
        assert refused(verify_consistency, size, new_size, old_root, new_root, own_proof), what
        # and neither does the proof an honest log would have sent.
        assert refused(verify_consistency, size, new_size, old_root, new_root, honest_proof), what


@pytest.mark.parametrize("size", [2, 3, 5, 8, 13])
def test_altering_deleting_or_reordering_entries_breaks_inclusion(size: int) -> None:
    """Against the honest signed root, every entry whose position or bytes changed fails its
    proof, whichever proof the tampered log computes for it."""
    honest_root = ref_mth(ENTRIES[:size])
    for what, tampered in tampered_logs(ENTRIES[:size]).items():
        tampered_tree = MerkleTree(leaf_hash(e) for e in tampered)
        # Deleting the last entry changes no position: that is truncation, which the
        # consistency check catches (the size shrinks).
        changed = [i for i in range(len(tampered)) if tampered[i] != ENTRIES[i]]
        for i in changed:
            proof = tampered_tree.inclusion_proof(i)
            leaf = leaf_hash(tampered[i])
            assert refused(verify_inclusion, leaf, i, size, proof, honest_root), (what, i)


def test_a_fork_with_the_same_size_and_another_root_is_refused() -> None:
    with pytest.raises(ProofError, match="forked"):
        verify_consistency(8, 8, ref_root(8), ref_mth([*ENTRIES[:7], b"other"]), [])


def test_a_log_that_shrank_is_refused() -> None:
    with pytest.raises(ProofError, match="shrank"):
        verify_consistency(8, 7, ref_root(8), ref_root(7), [])


def test_trivial_consistency_needs_an_empty_proof_and_matching_roots() -> None:
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, ref_root(5), [])
    verify_consistency(5, 5, ref_root(5), ref_root(5), [])
    with pytest.raises(ProofError):
        verify_consistency(5, 5, ref_root(5), ref_root(5), [ref_root(5)])
    with pytest.raises(ProofError):
        verify_consistency(0, 5, EMPTY_ROOT, ref_root(5), [EMPTY_ROOT])
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 5, ref_root(1), ref_root(5), [])
    with pytest.raises(ProofError, match="empty"):
        verify_consistency(1, 2, ref_root(1), ref_root(2), [])


def inclusion_corruptions(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> dict[str, tuple[bytes, int, int, list[bytes], bytes]]:
    """Probes after transparency-dev/merkle's verifier tests: each must be refused."""
    some_hash = hashlib.sha256(b"some other hash").digest()
    probes = {
        "index - 1": (leaf, index - 1, size, proof, root),
        "index + 1": (leaf, index + 1, size, proof, root),
        "index ^ 2": (leaf, index ^ 2, size, proof, root),
        "size * 2": (leaf, index, size * 2, proof, root),
        "size // 2": (leaf, index, size // 2, proof, root),
        "wrong leaf": (some_hash, index, size, proof, root),
        "short leaf": (b"WrongLeaf", index, size, proof, root),
        "empty-tree root": (leaf, index, size, proof, EMPTY_ROOT),
        "other root": (leaf, index, size, proof, some_hash),
        "trailing garbage": (leaf, index, size, [*proof, b""], root),
        "trailing root": (leaf, index, size, [*proof, root], root),
        "preceding garbage": (leaf, index, size, [b"", *proof], root),
        "preceding root": (leaf, index, size, [root, *proof], root),
    }
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 8]) + proof[i][1:]
        probes[f"bit flipped in proof[{i}]"] = (leaf, index, size, flipped, root)
        probes[f"proof[{i}] removed"] = (leaf, index, size, proof[:i] + proof[i + 1 :], root)
        probes[f"proof[{i}] 31 bytes"] = (
            leaf,
            index,
            size,
            [*proof[:i], proof[i][:31], *proof[i + 1 :]],
            root,
        )
    if len(proof) > 1:
        probes["proof[0] and proof[1] swapped"] = (
            leaf,
            index,
            size,
            [proof[1], proof[0], *proof[2:]],
            root,
        )
    return probes


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 64])
def test_every_corrupted_inclusion_proof_is_refused(tree: MerkleTree, size: int) -> None:
    root = ref_root(size)
    for index in range(size):
        proof = tree.inclusion_proof(index, size)
        leaf = leaf_hash(ENTRIES[index])
        for what, (leaf_, index_, size_, proof_, root_) in inclusion_corruptions(
            index, size, proof, root, leaf
        ).items():
            if (index_, size_, proof_) == (index, size, proof) and (leaf_, root_) == (leaf, root):
                continue
            if (
                size_ != size
                and 0 <= index_ < size_ <= len(ENTRIES)
                and proof_ == tree.inclusion_proof(index_, size_)
                and root_ == ref_root(size_)
            ):
                continue  # coincidentally a true statement about another tree
            assert refused(verify_inclusion, leaf_, index_, size_, proof_, root_), (
                f"{what} verified (index {index}, size {size})"
            )


@pytest.mark.parametrize("new_size", [2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 64])
def test_every_corrupted_consistency_proof_is_refused(tree: MerkleTree, new_size: int) -> None:
    new_root = ref_root(new_size)
    for old_size in range(1, new_size):
        old_root = ref_root(old_size)
        proof = tree.consistency_proof(old_size, new_size)
        probes: dict[str, tuple[int, int, bytes, bytes, list[bytes]]] = {
            "old size - 1": (old_size - 1, new_size, old_root, new_root, proof),
            "old size + 1": (old_size + 1, new_size, old_root, new_root, proof),
            "new size * 2": (old_size, new_size * 2, old_root, new_root, proof),
            "old size ^ 2": (old_size ^ 2, new_size, old_root, new_root, proof),
            "new size // 2": (old_size, new_size // 2, old_root, new_root, proof),
            "swapped roots": (old_size, new_size, new_root, old_root, proof),
            "empty proof": (old_size, new_size, old_root, new_root, []),
            "trailing root": (old_size, new_size, old_root, new_root, [*proof, new_root]),
            "preceding root": (old_size, new_size, old_root, new_root, [old_root, *proof]),
            "preceding proof[0]": (old_size, new_size, old_root, new_root, [proof[0], *proof]),
            "truncated": (old_size, new_size, old_root, new_root, proof[:-1]),
            "short root": (old_size, new_size, old_root[:31], new_root, proof),
        }
        for i in range(len(proof)):
            flipped = list(proof)
            flipped[i] = bytes([proof[i][0] ^ 16]) + proof[i][1:]
            probes[f"bit flipped in proof[{i}]"] = (old_size, new_size, old_root, new_root, flipped)
        for what, args in probes.items():
            assert refused(verify_consistency, *args), f"{what} verified ({old_size} -> {new_size})"


def test_proof_arguments_out_of_range_are_refused() -> None:
    leaf = leaf_hash(b"x")
    for index, size in [(0, 0), (1, 1), (5, 3), (-1, 3), (0, MAX_TREE_SIZE + 1)]:
        with pytest.raises(ProofError, match="does not exist"):
            verify_inclusion(leaf, index, size, [], leaf)
    with pytest.raises(ProofError, match="2\\^64"):
        verify_consistency(1, MAX_TREE_SIZE + 1, leaf, leaf, [leaf])


def test_proofs_for_the_largest_u64_trees_fit_the_proto_limits() -> None:
    """log.proto allows 64 inclusion and 128 consistency hashes: enough for any u64 size."""
    assert inclusion_proof_length(0, MAX_TREE_SIZE) == 64
    assert inclusion_proof_length(MAX_TREE_SIZE - 1, MAX_TREE_SIZE) <= 64
    worst = max(consistency_proof_length((1 << b) - 1, MAX_TREE_SIZE) for b in range(1, 64))
    assert worst <= 128


# --- the tree as a data structure ---------------------------------------------------------


def test_a_tree_rebuilt_from_stored_leaf_hashes_is_the_same_tree(tree: MerkleTree) -> None:
    rebuilt = MerkleTree(tree.leaf(i) for i in range(tree.size))
    assert len(rebuilt) == tree.size == MAX_EXHAUSTIVE
    assert rebuilt.root() == tree.root()
    assert rebuilt.inclusion_proof(37) == tree.inclusion_proof(37)


def test_extending_in_batches_builds_the_same_tree_as_appending_one_by_one() -> None:
    one_by_one = MerkleTree()
    for e in ENTRIES:
        one_by_one.append_data(e)
    batched = MerkleTree(leaf_hash(e) for e in ENTRIES[:5])
    for start, end in [(5, 6), (6, 6), (6, 31), (31, 32), (32, 50), (50, 64)]:
        batched.extend(leaf_hash(e) for e in ENTRIES[start:end])
        assert [batched.root(s) for s in range(end + 1)] == [ref_root(s) for s in range(end + 1)]
    assert batched.consistency_proof(13) == one_by_one.consistency_proof(13)
    with pytest.raises(ValueError, match="32 bytes"):
        batched.extend([leaf_hash(b"ok"), b"\x00" * 33])


def test_appending_returns_consecutive_indices() -> None:
    growing = MerkleTree()
    assert [growing.append_data(e) for e in ENTRIES[:5]] == [0, 1, 2, 3, 4]
    assert growing.append(leaf_hash(b"sixth")) == 5


def test_indices_and_sizes_beyond_the_tree_are_refused(tree: MerkleTree) -> None:
    with pytest.raises(IndexError):
        tree.root(MAX_EXHAUSTIVE + 1)
    with pytest.raises(IndexError):
        tree.inclusion_proof(10, 10)
    with pytest.raises(IndexError):
        tree.inclusion_proof(-1)
    with pytest.raises(IndexError):
        tree.consistency_proof(11, 10)
    with pytest.raises(IndexError):
        tree.consistency_proof(1, MAX_EXHAUSTIVE + 1)
    with pytest.raises(IndexError):
        tree.leaf(MAX_EXHAUSTIVE)
    with pytest.raises(ValueError, match="32 bytes"):
        MerkleTree().append(b"not a hash")


def test_a_larger_tree_agrees_with_the_reference_at_random_points() -> None:
    rng = random.Random(6962)
    entries = [rng.randbytes(rng.randrange(0, 40)) for _ in range(3000)]
    tree = MerkleTree(leaf_hash(e) for e in entries)
    for _ in range(12):
        size = rng.randrange(1, len(entries) + 1)
        index = rng.randrange(size)
        old = rng.randrange(1, size + 1)
        assert tree.root(size) == ref_mth(entries[:size])
        assert tree.inclusion_proof(index, size) == ref_path(index, entries[:size])
        assert tree.consistency_proof(old, size) == ref_proof(old, entries[:size])


def test_proofs_stay_logarithmic() -> None:
    tree = MerkleTree(leaf_hash(i.to_bytes(4, "big")) for i in range(4097))
    assert len(tree.inclusion_proof(0)) == 13  # 12 levels of 4096, plus the 4097th leaf
    assert len(tree.inclusion_proof(4096)) == 1
    assert all(len(tree.consistency_proof(old)) <= 2 * 13 for old in range(1, 4097, 97))
    assert HASH_SIZE == 32


# --- vector generation ------------------------------------------------------------------

# Published in the Certificate Transparency reference tests (transparency-dev/merkle,
# proof/verify_test.go; google/certificate-transparency merkle_tree_test). Indices are
# 0-based here (the Go tests list 1-based leaf numbers).
_RFC6962_REFERENCE: dict[str, Any] = {
    "source": (
        "Certificate Transparency reference test vectors, as published in "
        "github.com/transparency-dev/merkle proof/verify_test.go (leaves, roots, "
        "inclusionProofs, consistencyProofs); indices converted to 0-based"
    ),
    "leaves_hex": [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ],
    "roots_hex": [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ],
    "inclusion": [
        {"index": 0, "size": 1, "proof_hex": []},
        {
            "index": 0,
            "size": 8,
            "proof_hex": [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        },
        {
            "index": 5,
            "size": 8,
            "proof_hex": [
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        },
        {
            "index": 2,
            "size": 3,
            "proof_hex": ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        },
        {
            "index": 1,
            "size": 5,
            "proof_hex": [
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        },
    ],
    "consistency": [
        {"old_size": 1, "new_size": 1, "proof_hex": []},
        {
            "old_size": 1,
            "new_size": 8,
            "proof_hex": [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        },
        {
            "old_size": 6,
            "new_size": 8,
            "proof_hex": [
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        },
        {
            "old_size": 2,
            "new_size": 5,
            "proof_hex": [
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        },
        {
            "old_size": 6,
            "new_size": 7,
            "proof_hex": [
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        },
    ],
}

_PRIVACAM_SIZES = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257]
_PRIVACAM_INCLUSION = [(0, 1), (0, 2), (6, 7), (0, 17), (16, 17), (42, 100), (256, 257)]
_PRIVACAM_CONSISTENCY = [(1, 2), (3, 7), (4, 8), (7, 9), (16, 17), (33, 100), (100, 257)]

# (seed byte of the Ed25519 key, key id, tenant id, tree size, timestamp ns, root size)
_STH_CASES = [
    (1, "log-2026-01", "0b6f5a8e-4c1d-4f7e-9a51-2f3c8d9e0a11", 0, 1767225600_000000000, 0),
    (1, "log-2026-01", "0b6f5a8e-4c1d-4f7e-9a51-2f3c8d9e0a11", 17, 1767225600_123456000, 17),
    (2, "k", "ménage-ü", 257, 1800000000_000001000, 257),
]


def _write_vectors() -> None:
    entries = [entry(i) for i in range(max(_PRIVACAM_SIZES))]
    sths = []
    for seed, key_id, tenant_id, size, nanos, root_size in _STH_CASES:
        key = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
        root = ref_mth(entries[:root_size])
        # The layout of log.proto, spelled out by hand rather than by the library.
        signing_input = (
            b"privacam-sth-v1\x00"
            + tenant_id.encode("utf-8")
            + b"\x00"
            + size.to_bytes(8, "big")
            + nanos.to_bytes(8, "big")
            + root
        )
        sths.append(
            {
                "private_key_hex": (bytes([seed]) * 32).hex(),
                "public_key_hex": key.public_key()
                .public_bytes(Encoding.Raw, PublicFormat.Raw)
                .hex(),
                "key_id": key_id,
                "tenant_id": tenant_id,
                "tree_size": size,
                "timestamp_nanos": nanos,
                "root_hash_hex": root.hex(),
                "signing_input_hex": signing_input.hex(),
                "signature_hex": key.sign(signing_input).hex(),
            }
        )
    document = {
        "description": (
            "Known answers for the Privacam access log (core/privacam_core/merkle.py, "
            "receipts.py). rfc6962_reference is copied from the published Certificate "
            "Transparency vectors; privacam and signed_tree_heads were computed once by "
            "tests/unit/common/test_merkle.py --write-vectors with a naive transcription of "
            "RFC 6962 section 2.1 and the byte layout of log.proto. Never regenerate them "
            "for a log already written."
        ),
        "rfc6962_reference": _RFC6962_REFERENCE,
        "privacam": {
            "entries": "entry i is the UTF-8 of 'privacam access log entry {i}', from 0",
            "roots_hex": {str(s): ref_mth(entries[:s]).hex() for s in _PRIVACAM_SIZES},
            "inclusion": [
                {"index": i, "size": s, "proof_hex": [h.hex() for h in ref_path(i, entries[:s])]}
                for i, s in _PRIVACAM_INCLUSION
            ],
            "consistency": [
                {
                    "old_size": m,
                    "new_size": n,
                    "proof_hex": [h.hex() for h in ref_proof(m, entries[:n])],
                }
                for m, n in _PRIVACAM_CONSISTENCY
            ],
        },
        "signed_tree_heads": sths,
    }
    VECTORS_PATH.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-vectors"]:
        _write_vectors()
    else:
        sys.exit(__doc__)
