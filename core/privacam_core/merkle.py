"""The Merkle tree of the per-tenant access log: RFC 9162 (Certificate Transparency v2)
hashing, proofs and proof verification, over SHA-256 as in RFC 6962.

* ``leaf_hash(d) = SHA-256(0x00 || d)`` and ``node_hash(l, r) = SHA-256(0x01 || l || r)``:
  the prefixes keep a leaf from ever being passed off as an interior node (second
  preimage protection).
* ``MTH({}) = SHA-256("")``; ``MTH({d0}) = leaf_hash(d0)``; for ``n > 1``, with ``k`` the
  largest power of two below ``n``, ``MTH(D[n]) = node_hash(MTH(D[0:k]), MTH(D[k:n]))``
  (RFC 9162 section 2.1.1).
* Inclusion proofs (audit paths) and consistency proofs are exactly the RFC's ``PATH`` and
  ``PROOF`` (sections 2.1.3.1 and 2.1.4.1), listed from the leaf (or the old tree) up.
* :func:`verify_inclusion` and :func:`verify_consistency` follow the RFC's verification
  algorithms (sections 2.1.3.2 and 2.1.4.2) step by step. Before running them they also
  refuse what the RFC leaves implicit: hashes that are not 32 bytes (with variable-length
  hashes ``0x01 || l || r`` could be split in more than one way), sizes outside u64, and
  proofs of the wrong length (the RFC loop rejects those too; checking first gives a
  clearer message).

:class:`MerkleTree` keeps every complete ("perfect") subtree hash in one packed
``bytearray`` per level: level 0 holds the leaf hashes, level ``h`` the hash of leaves
``[i * 2^h, (i + 1) * 2^h)`` at offset ``32 * i``. Every subtree the RFC recursions name
starts at a multiple of a power of two at least as large as itself, so its hash is the
right fold of at most ``log2(n)`` stored perfect subtrees. Costs for a tree of ``n``
leaves:

* ``append``: amortised one node hash (``n - 1`` interior nodes for ``n`` leaves), at
  worst ``log2(n)`` for one append that completes a tall subtree;
* ``root(size)`` for any past size, ``inclusion_proof`` and ``consistency_proof``:
  ``O(log n)`` hashes and slices (at most one subtree on a proof is not perfect);
* memory: ``64 n`` bytes (``32 n`` for the leaves, ``32 n`` for the interior nodes),
  64 MB for a log of a million entries, with no per-hash Python object.

Nothing here does I/O or knows about tenants, gRPC or storage: the access-log service
persists the leaf hashes and rebuilds the tree from them (``MerkleTree(leaf_hashes)``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "MerkleTree",
    "ProofError",
    "consistency_proof_length",
    "inclusion_proof_length",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in every hash: leaf, node, root and proof element."""
MAX_TREE_SIZE = 2**64 - 1
"""Sizes and indices travel as u64 (``uint64`` in the protos)."""
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH of the empty tree: SHA-256 of the empty string."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof does not prove what it claims, or is malformed. The message says which."""


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one log entry's bytes."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    if len(left) != HASH_SIZE or len(right) != HASH_SIZE:
        raise ValueError(f"node children must be {HASH_SIZE}-byte hashes")
    return _sha256(_NODE_PREFIX + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """The ``k`` of RFC 9162 section 2.1.1: largest power of two strictly below ``n > 1``."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof_length(index: int, size: int) -> int:
    """Number of hashes in the inclusion proof of entry ``index`` in a tree of ``size``."""
    if not 0 <= index < size <= MAX_TREE_SIZE:
        raise ValueError(f"entry {index} is not in a tree of {size} entries")
    inner = (index ^ (size - 1)).bit_length()  # levels below the split from the right edge
    return inner + (index >> inner).bit_count()  # plus one per left-hand perfect subtree


def consistency_proof_length(old_size: int, new_size: int) -> int:
    """Number of hashes in the consistency proof from ``old_size`` to ``new_size``."""
    if not 0 <= old_size <= new_size <= MAX_TREE_SIZE:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return 0
    shift = (old_size & -old_size).bit_length() - 1  # trailing zero bits of old_size
    seed = 0 if old_size == 1 << shift else 1  # the old tree's root is sent unless perfect
    return seed + inclusion_proof_length(old_size - 1, new_size) - shift


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes; SHA-256 hashes are {HASH_SIZE}")


def _check_proof_hashes(proof: Sequence[bytes], expected: int, what: str) -> None:
    if len(proof) != expected:
        raise ProofError(f"{what} has {len(proof)} hashes where it needs {expected}")
    for position, value in enumerate(proof):
        if len(value) != HASH_SIZE:
            raise ProofError(
                f"hash {position} of the {what} is {len(value)} bytes, not {HASH_SIZE}"
            )


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` (a leaf hash) at ``index`` in a tree
    of ``size`` entries: RFC 9162 section 2.1.3.2 without the final comparison. Raises
    :class:`ProofError` when the proof cannot be for that index and size."""
    _check_hash(leaf, "the leaf hash")
    if not 0 <= index < size <= MAX_TREE_SIZE:
        raise ProofError(f"entry {index} does not exist in a tree of {size} entries")
    _check_proof_hashes(proof, inclusion_proof_length(index, size), "inclusion proof")
    # RFC 9162 section 2.1.3.2, steps 2 to 5.
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is high")
        if fn & 1 or fn == sn:
            r = _sha256(_NODE_PREFIX + p + r).digest()
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(_NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is high")
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` (a leaf hash) is entry ``index`` of the tree of ``size`` entries
    whose root is ``root`` (RFC 9162 section 2.1.3.2); raise :class:`ProofError` if not."""
    _check_hash(root, "the root hash")
    if not hmac.compare_digest(root_from_inclusion(leaf, index, size, proof), root):
        raise ProofError(
            f"the inclusion proof does not lead from entry {index} to the root of the tree "
            f"of {size} entries: the entry or the proof was altered, or the entry is not there"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``old_size`` entries with root ``old_root`` is a prefix of the
    tree of ``new_size`` entries with root ``new_root`` (RFC 9162 section 2.1.4.2): nothing
    in the old tree was changed, removed or reordered. Raise :class:`ProofError` if not.

    Equal sizes need an empty proof and equal roots (two roots for one size are a fork);
    from the empty tree (whose root must be ``SHA-256("")``) everything is consistent.
    """
    _check_hash(old_root, "the old root hash")
    _check_hash(new_root, "the new root hash")
    if not 0 <= old_size <= MAX_TREE_SIZE or not 0 <= new_size <= MAX_TREE_SIZE:
        raise ProofError("tree sizes must be between 0 and 2^64 - 1")
    if old_size > new_size:
        raise ProofError(f"the log shrank from {old_size} to {new_size} entries: a log only grows")
    if old_size == new_size:
        _check_proof_hashes(proof, 0, "consistency proof between trees of the same size")
        if not hmac.compare_digest(old_root, new_root):
            raise ProofError(
                f"two different roots for the same {old_size} entries: the log was rewritten "
                "or forked"
            )
        return
    if old_size == 0:
        _check_proof_hashes(proof, 0, "consistency proof from the empty tree")
        if not hmac.compare_digest(old_root, EMPTY_ROOT):
            raise ProofError("the root of an empty tree must be SHA-256 of the empty string")
        return
    # RFC 9162 section 2.1.4.2.
    if not proof:  # step 1
        raise ProofError("the consistency proof is empty")
    _check_proof_hashes(proof, consistency_proof_length(old_size, new_size), "consistency proof")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # step 2: an exact power of two
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            raise ProofError("the consistency proof is longer than the new tree is high")
        if fn & 1 or fn == sn:
            fr = _sha256(_NODE_PREFIX + c + fr).digest()
            sr = _sha256(_NODE_PREFIX + c + sr).digest()
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(_NODE_PREFIX + sr + c).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:  # step 7
        raise ProofError("the consistency proof is shorter than the new tree is high")
    if not hmac.compare_digest(fr, old_root):
        raise ProofError(
            f"the consistency proof does not lead to the old root of {old_size} entries: "
            "the log was rewritten since that head, or the proof is wrong"
        )
    if not hmac.compare_digest(sr, new_root):
        raise ProofError(
            f"the consistency proof does not lead to the new root of {new_size} entries: "
            "the new head does not extend the old one, or the proof is wrong"
        )


class MerkleTree:
    """An append-only RFC 9162 Merkle tree of leaf hashes that answers for any past size.

    Not thread-safe: the access-log service serialises appends per tenant anyway.
    Index and size arguments outside the tree raise :class:`IndexError`; a leaf hash that
    is not 32 bytes raises :class:`ValueError`.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        # _levels[h] packs the hashes of the perfect subtrees of 2^h leaves, left to right.
        self._levels: list[bytearray] = [bytearray()]
        self.extend(leaf_hashes)

    def __len__(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0]) // HASH_SIZE

    def append(self, leaf: bytes) -> int:
        """Append a leaf hash (see :func:`leaf_hash`); return its index."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, got {len(leaf)}")
        return self._push(bytes(leaf))

    def append_data(self, data: bytes) -> int:
        """Append an entry's bytes (hashed with :func:`leaf_hash`); return its index."""
        return self._push(_sha256(_LEAF_PREFIX + data).digest())

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes in order: the same hashes as appending them one by one,
        computed a level at a time (how the service rebuilds a tree after a restart)."""
        batch = bytearray()
        for leaf in leaf_hashes:
            if len(leaf) != HASH_SIZE:
                raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, got {len(leaf)}")
            batch += leaf
        levels = self._levels
        levels[0] += batch
        height, pair = 0, 2 * HASH_SIZE
        while True:
            level = levels[height]
            pairs = len(level) // pair
            if height + 1 == len(levels):
                if not pairs:
                    return
                levels.append(bytearray())
            parents = levels[height + 1]
            done = len(parents) // HASH_SIZE
            if done == pairs:  # nothing new at this height, so nothing new above it
                return
            parents += b"".join(
                [
                    _sha256(_NODE_PREFIX + level[start : start + pair]).digest()
                    for start in range(done * pair, pairs * pair, pair)
                ]
            )
            height += 1

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        self._check_index(index, self.size)
        return self._perfect(0, index)

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all of them)."""
        size = self._check_size(size)
        return self._subtree(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 ``PATH(index, D[0:size])``: sibling hashes from the leaf up."""
        size = self._check_size(size)
        self._check_index(index, size)
        siblings: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            mid = lo + _largest_power_of_two_below(hi - lo)
            if index < mid:
                siblings.append(self._subtree(mid, hi))
                hi = mid
            else:
                siblings.append(self._subtree(lo, mid))
                lo = mid
        siblings.reverse()
        return siblings

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 ``PROOF(old_size, D[0:new_size])``; empty when ``old_size`` is 0 or
        equals ``new_size`` (nothing to prove)."""
        new_size = self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise IndexError(f"old size {old_size} is not between 0 and {new_size}")
        if old_size in (0, new_size):
            return []
        # SUBPROOF(m, D[lo:hi], whole) unrolled from the top; collected root-first.
        hashes: list[bytes] = []
        lo, hi, whole = 0, new_size, True
        while old_size - lo != hi - lo:
            mid = lo + _largest_power_of_two_below(hi - lo)
            if old_size <= mid:
                hashes.append(self._subtree(mid, hi))
                hi = mid
            else:
                hashes.append(self._subtree(lo, mid))
                lo, whole = mid, False
        if not whole:
            hashes.append(self._subtree(lo, hi))
        hashes.reverse()
        return hashes

    # --- internals ---------------------------------------------------------------------

    def _push(self, leaf: bytes) -> int:
        levels = self._levels
        level = levels[0]
        index = node = len(level) // HASH_SIZE
        level += leaf
        height = 0
        while node & 1:  # a right child: its pair is complete (the level's last 64 bytes)
            parent = _sha256(_NODE_PREFIX + level[-2 * HASH_SIZE :]).digest()
            height += 1
            if height == len(levels):
                levels.append(bytearray())
            level = levels[height]
            level += parent
            node >>= 1
        return index

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise IndexError(f"tree size {size} is beyond the {self.size} entries of the log")
        return size

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        if not 0 <= index < size:
            raise IndexError(f"entry {index} does not exist in a tree of {size} entries")

    def _perfect(self, height: int, position: int) -> bytes:
        start = position * HASH_SIZE
        return bytes(self._levels[height][start : start + HASH_SIZE])

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for ``start`` a multiple of a power of two ``>= end - start``
        (true of every subtree the RFC recursions name): the right fold of the perfect
        subtrees that tile the range, largest first."""
        parts: list[bytes] = []
        remaining = end - start
        while remaining:
            height = remaining.bit_length() - 1
            parts.append(self._perfect(height, start >> height))
            start += 1 << height
            remaining -= 1 << height
        result = parts.pop()
        while parts:
            result = _sha256(_NODE_PREFIX + parts.pop() + result).digest()
        return result
