"""Signed tree heads, access receipts and the client-side log monitor of the access log.

Three users, one module (pure: no gRPC, Kafka or storage):

* the **access-log service** signs a head over each tenant's tree with
  :func:`sign_tree_head` and hands out receipts and proofs;
* the **key manager** calls :func:`verify_receipt` before it unwraps a data key for
  viewing: the receipt must prove, under a known log key and a fresh head, that the access
  it is asked to allow is already in that tenant's log;
* the **client SDK** keeps a :class:`LogMonitor`: it verifies every head it is shown and a
  consistency proof from the last head it remembers, so a log rewritten, truncated or
  forked between two looks is caught (:class:`LogTampered`), and it checks each listed
  entry's inclusion proof before the entry is parsed and shown, and that the pages of a
  listing account for every entry of the head (:meth:`LogMonitor.verify_range`, which
  names a hidden index in :class:`EntryMissing`).

The signature of a head covers this exact byte layout (also in ``log.proto``)::

    b"privacam-sth-v1" 0x00 || tenant_id (UTF-8) 0x00 || tree_size (u64 BE)
        || timestamp (u64 BE, nanoseconds since the Unix epoch) || root_hash (32 bytes)

Everything after the tenant is fixed-length, so the layout is unambiguous; tenant ids
containing NUL are refused anyway.

Errors are :class:`ReceiptError` (a ``ValueError``) with a message for people. Messages
name sizes, indices and key ids, never key material, signatures or another tenant's id.

Decisions worth knowing:

* ``public_keys`` maps key id to Ed25519 public key. Key validity windows (``valid_from``
  / ``retired_at`` of ``ListSigningKeys``) are the caller's business: pass the keys you
  accept. Receipts are short-lived (``max_age``), so a retired key matters little there.
* A head whose signature does not verify is a :class:`ReceiptError`, not
  :class:`LogTampered`: a forgery is not evidence against the log. A correctly signed head
  that does not extend the remembered one is :class:`LogTampered`: the log itself signed
  two histories that cannot both be true, which is exactly what the user must be shown.
* A receipt is fresh only if both its head and the access it proves are: the log signs a
  new head for any old entry on request (``GetInclusionProof``), so a fresh head alone
  would turn an access logged long ago into a valid receipt. :func:`verify_receipt`
  checks the record's ``occurred_at`` against the same ``max_age`` (and ``clock_skew``),
  and raises :class:`StaleReceipt` for either being out of date.
* Replay of a receipt (the same ``access_id`` used twice) is the key manager's check: it
  needs state this module does not keep.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from privacam.accesslog.v1 import log_pb2
from privacam.types.v1 import types_pb2
from privacam_core.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    ProofError,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "DELETION_CONTEXT",
    "KEY_ROTATION_CONTEXT",
    "MAX_KEY_ID_LENGTH",
    "SIGNATURE_SIZE",
    "STH_CONTEXT",
    "AccessPrincipal",
    "EntryMissing",
    "LogDeleted",
    "LogMonitor",
    "LogTampered",
    "ReceiptError",
    "StaleReceipt",
    "VerifiedAccess",
    "VerifiedEntry",
    "key_rotation_signing_input",
    "log_deletion_signing_input",
    "sign_key_rotation",
    "sign_log_deletion",
    "sign_tree_head",
    "tree_head_signing_input",
    "verify_key_rotation",
    "verify_log_deletion",
    "verify_receipt",
    "verify_tree_head",
]

STH_CONTEXT = b"privacam-sth-v1\x00"
"""Domain separation: what precedes the tenant id in every signed head."""
DELETION_CONTEXT = b"privacam-log-deleted-v1\x00"
"""Domain separation: what precedes the tenant id in every deletion statement."""
KEY_ROTATION_CONTEXT = b"privacam-log-key-v1\x00"
"""Domain separation: what precedes the new key id in every key rotation statement."""
SIGNATURE_SIZE = 64
MAX_KEY_ID_LENGTH = 64
DEFAULT_CLOCK_SKEW = timedelta(minutes=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NANOS = 10**9
_MAX_U64 = 2**64 - 1
_MONITOR_FORMAT = "privacam-log-monitor-v1"


class ReceiptError(ValueError):
    """A head, receipt or entry cannot be trusted; the message says why, for people."""


class StaleReceipt(ReceiptError):
    """The receipt's head or the access it proves is older than a receipt may be, or dated
    ahead of now by more than the clock skew: ask the log for a new one, for a new access."""


class LogTampered(ReceiptError):
    """A correctly signed head contradicts what this client verified before, or a listed
    entry is not what the log signed: the log was rewritten, truncated or forked."""


class EntryMissing(LogTampered):
    """A listing does not account for every entry of its signed head: entry ``index`` is
    missing, or was listed as not matching the filters although it does."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


# --- signed tree heads ----------------------------------------------------------------


def _timestamp_from_datetime(moment: datetime) -> Timestamp:
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    if micros < 0:
        raise ValueError("a tree head cannot be dated before 1970")
    seconds, micros = divmod(micros, 1_000_000)
    return Timestamp(seconds=seconds, nanos=micros * 1000)


def _timestamp_nanos(timestamp: Timestamp) -> int:
    """The u64 nanoseconds of the signing layout; ReceiptError when out of range."""
    if not 0 <= timestamp.nanos < _NANOS:
        raise ReceiptError("the tree head's timestamp is malformed")
    nanos = timestamp.seconds * _NANOS + timestamp.nanos
    if not 0 <= nanos <= _MAX_U64:
        raise ReceiptError("the tree head's timestamp is out of range")
    return nanos


def _datetime_from_timestamp(timestamp: Timestamp, what: str) -> datetime:
    try:
        return _EPOCH + timedelta(seconds=timestamp.seconds, microseconds=timestamp.nanos // 1000)
    except OverflowError:
        raise ReceiptError(f"{what} is out of range") from None


def tree_head_signing_input(
    tenant_id: str, tree_size: int, timestamp_nanos: int, root_hash: bytes
) -> bytes:
    """The exact bytes a tree head's Ed25519 signature covers (see the module docstring)."""
    if not tenant_id or "\x00" in tenant_id:
        raise ValueError("a tree head needs a tenant id without NUL characters")
    if not 0 <= tree_size <= _MAX_U64 or not 0 <= timestamp_nanos <= _MAX_U64:
        raise ValueError("tree size and timestamp must fit in an unsigned 64-bit integer")
    if len(root_hash) != HASH_SIZE:
        raise ValueError(f"a root hash is {HASH_SIZE} bytes")
    return b"".join(
        (
            STH_CONTEXT,
            tenant_id.encode("utf-8"),
            b"\x00",
            struct.pack(">QQ", tree_size, timestamp_nanos),
            root_hash,
        )
    )


def sign_tree_head(
    private_key: Ed25519PrivateKey,
    key_id: str,
    tenant_id: str,
    tree_size: int,
    root_hash: bytes,
    timestamp: datetime,
) -> log_pb2.SignedTreeHead:
    """Sign the head of ``tenant_id``'s log at ``tree_size`` entries with root ``root_hash``.

    ``timestamp`` must be timezone-aware; it is kept to the microsecond. Raises
    ``ValueError`` for arguments that would make a head no verifier accepts.
    """
    if not key_id or len(key_id) > MAX_KEY_ID_LENGTH:
        raise ValueError(f"a key id is 1 to {MAX_KEY_ID_LENGTH} characters")
    if tree_size == 0 and root_hash != EMPTY_ROOT:
        raise ValueError("the root of an empty log is SHA-256 of the empty string")
    stamp = _timestamp_from_datetime(timestamp)
    message = tree_head_signing_input(tenant_id, tree_size, _timestamp_nanos(stamp), root_hash)
    return log_pb2.SignedTreeHead(
        tenant_id=tenant_id,
        tree_size=tree_size,
        root_hash=root_hash,
        timestamp=stamp,
        key_id=key_id,
        signature=private_key.sign(message),
    )


def verify_tree_head(
    sth: log_pb2.SignedTreeHead, public_keys: Mapping[str, Ed25519PublicKey]
) -> None:
    """Check a head is well formed and signed by one of ``public_keys`` (by ``key_id``).

    Says nothing about freshness, tenant or consistency with earlier heads: see
    :func:`verify_receipt` and :class:`LogMonitor`.
    """
    if not sth.tenant_id or "\x00" in sth.tenant_id:
        raise ReceiptError("the tree head names no valid tenant")
    if len(sth.root_hash) != HASH_SIZE:
        raise ReceiptError(f"the tree head's root hash is not {HASH_SIZE} bytes")
    if len(sth.signature) != SIGNATURE_SIZE:
        raise ReceiptError(f"the tree head's signature is not {SIGNATURE_SIZE} bytes")
    if not sth.HasField("timestamp"):
        raise ReceiptError("the tree head has no timestamp")
    if sth.tree_size == 0 and sth.root_hash != EMPTY_ROOT:
        raise ReceiptError("the tree head claims an empty log with a non-empty root")
    key = public_keys.get(sth.key_id)
    if key is None:
        shown = sth.key_id if len(sth.key_id) <= MAX_KEY_ID_LENGTH else "(too long)"
        raise ReceiptError(f"the tree head is signed with unknown log key {shown!r}")
    message = tree_head_signing_input(
        sth.tenant_id, sth.tree_size, _timestamp_nanos(sth.timestamp), sth.root_hash
    )
    try:
        key.verify(sth.signature, message)
    except InvalidSignature:
        raise ReceiptError(
            f"the tree head's signature does not verify under log key {sth.key_id!r}: "
            "it was forged or altered"
        ) from None


# --- signing-key rotation statements ---------------------------------------------------


def key_rotation_signing_input(key_id: str, public_key: bytes, valid_from_nanos: int) -> bytes:
    """The exact bytes a :class:`log_pb2.KeyRotation`'s signature covers::

    b"privacam-log-key-v1" 0x00 || key_id (UTF-8) 0x00 || public_key (32 bytes)
        || valid_from (u64 BE, nanoseconds since the Unix epoch)
    """
    if not key_id or len(key_id) > MAX_KEY_ID_LENGTH or "\x00" in key_id:
        raise ValueError(f"a key id is 1 to {MAX_KEY_ID_LENGTH} characters without NUL")
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    if not 0 <= valid_from_nanos <= _MAX_U64:
        raise ValueError("valid_from must fit in an unsigned 64-bit integer")
    return b"".join(
        (
            KEY_ROTATION_CONTEXT,
            key_id.encode("utf-8"),
            b"\x00",
            public_key,
            struct.pack(">Q", valid_from_nanos),
        )
    )


def sign_key_rotation(
    signer: Ed25519PrivateKey,
    signer_key_id: str,
    key_id: str,
    public_key: Ed25519PublicKey,
    valid_from: datetime,
) -> log_pb2.KeyRotation:
    """The statement, signed with the trusted key ``signer_key_id``, that ``key_id`` signs
    the log's heads from ``valid_from`` on (timezone-aware, kept to the microsecond)."""
    stamp = _timestamp_from_datetime(valid_from)
    raw = public_key.public_bytes_raw()
    message = key_rotation_signing_input(key_id, raw, _timestamp_nanos(stamp))
    return log_pb2.KeyRotation(
        key_id=key_id,
        public_key=raw,
        valid_from=stamp,
        signed_by=signer_key_id,
        signature=signer.sign(message),
    )


def verify_key_rotation(
    rotation: log_pb2.KeyRotation, trusted: Mapping[str, Ed25519PublicKey]
) -> Ed25519PublicKey:
    """The new key a rotation statement introduces, if ``trusted`` holds the key that
    signed it and the signature verifies; :class:`ReceiptError` otherwise."""
    shown = rotation.key_id if len(rotation.key_id) <= MAX_KEY_ID_LENGTH else "(too long)"
    if len(rotation.public_key) != 32 or len(rotation.signature) != SIGNATURE_SIZE:
        raise ReceiptError(f"the rotation statement of log key {shown!r} is malformed")
    if not rotation.HasField("valid_from"):
        raise ReceiptError(f"the rotation statement of log key {shown!r} has no valid_from")
    signer = trusted.get(rotation.signed_by)
    if signer is None:
        raise ReceiptError(
            f"log key {shown!r} is introduced by a statement that no key this device trusts "
            "has signed"
        )
    try:
        message = key_rotation_signing_input(
            rotation.key_id, rotation.public_key, _timestamp_nanos(rotation.valid_from)
        )
    except ValueError:
        raise ReceiptError(f"the rotation statement of log key {shown!r} is malformed") from None
    try:
        signer.verify(rotation.signature, message)
    except InvalidSignature:
        raise ReceiptError(
            f"the rotation statement of log key {shown!r} does not verify under trusted key "
            f"{rotation.signed_by!r}: it was forged or altered"
        ) from None
    return Ed25519PublicKey.from_public_bytes(rotation.public_key)


# --- deletion statements ------------------------------------------------------------


class LogDeleted(Exception):
    """The household's log was deleted (account cancellation), proven by a deletion
    statement signed by a trusted log key: not tampering, and not a truncation."""

    def __init__(self, tenant_id: str, final_size: int, deleted_at: datetime) -> None:
        super().__init__(
            f"this household's log was deleted at {deleted_at.isoformat(timespec='seconds')} "
            f"after {final_size} entries (the account was cancelled)"
        )
        self.tenant_id = tenant_id
        self.final_size = final_size
        self.deleted_at = deleted_at


def log_deletion_signing_input(
    tenant_id: str, final_size: int, deleted_at_nanos: int, final_root: bytes
) -> bytes:
    """The exact bytes a :class:`log_pb2.SignedLogDeletion`'s signature covers::

    b"privacam-log-deleted-v1" 0x00 || tenant_id (UTF-8) 0x00 || final_size (u64 BE)
        || deleted_at (u64 BE, nanoseconds since the Unix epoch) || final_root (32 bytes)
    """
    if not tenant_id or "\x00" in tenant_id:
        raise ValueError("a deletion statement needs a tenant id without NUL characters")
    if not 0 <= final_size <= _MAX_U64 or not 0 <= deleted_at_nanos <= _MAX_U64:
        raise ValueError("final size and time must fit in an unsigned 64-bit integer")
    if len(final_root) != HASH_SIZE:
        raise ValueError(f"a root hash is {HASH_SIZE} bytes")
    return b"".join(
        (
            DELETION_CONTEXT,
            tenant_id.encode("utf-8"),
            b"\x00",
            struct.pack(">QQ", final_size, deleted_at_nanos),
            final_root,
        )
    )


def sign_log_deletion(
    private_key: Ed25519PrivateKey,
    key_id: str,
    tenant_id: str,
    final_size: int,
    final_root: bytes,
    deleted_at: datetime,
) -> log_pb2.SignedLogDeletion:
    """The signed end of ``tenant_id``'s log after ``final_size`` entries."""
    if final_size == 0 and final_root != EMPTY_ROOT:
        raise ValueError("the root of an empty log is SHA-256 of the empty string")
    stamp = _timestamp_from_datetime(deleted_at)
    message = log_deletion_signing_input(tenant_id, final_size, _timestamp_nanos(stamp), final_root)
    return log_pb2.SignedLogDeletion(
        tenant_id=tenant_id,
        final_size=final_size,
        final_root=final_root,
        deleted_at=stamp,
        key_id=key_id,
        signature=private_key.sign(message),
    )


def verify_log_deletion(
    statement: log_pb2.SignedLogDeletion, public_keys: Mapping[str, Ed25519PublicKey]
) -> None:
    """Check a deletion statement is well formed and signed by one of ``public_keys``;
    :class:`ReceiptError` otherwise."""
    if not statement.tenant_id or "\x00" in statement.tenant_id:
        raise ReceiptError("the deletion statement names no valid tenant")
    if len(statement.final_root) != HASH_SIZE or len(statement.signature) != SIGNATURE_SIZE:
        raise ReceiptError("the deletion statement is malformed")
    if not statement.HasField("deleted_at"):
        raise ReceiptError("the deletion statement has no time")
    if statement.final_size == 0 and statement.final_root != EMPTY_ROOT:
        raise ReceiptError("the deletion statement claims an empty log with a non-empty root")
    key = public_keys.get(statement.key_id)
    if key is None:
        shown = statement.key_id if len(statement.key_id) <= MAX_KEY_ID_LENGTH else "(too long)"
        raise ReceiptError(f"the deletion statement is signed with unknown log key {shown!r}")
    message = log_deletion_signing_input(
        statement.tenant_id,
        statement.final_size,
        _timestamp_nanos(statement.deleted_at),
        statement.final_root,
    )
    try:
        key.verify(statement.signature, message)
    except InvalidSignature:
        raise ReceiptError(
            f"the deletion statement's signature does not verify under log key "
            f"{statement.key_id!r}: it was forged or altered"
        ) from None


# --- receipts ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessPrincipal:
    """Who made a logged access, as recorded (``privacam.types.v1.Principal``)."""

    kind: types_pb2.PrincipalKind.ValueType
    tenant_id: str
    """Empty for services and operators."""
    id: str
    """Device id, app install id, service name or operator name."""


@dataclass(frozen=True, slots=True)
class VerifiedAccess:
    """What a verified receipt proves: this access is entry ``leaf_index`` of the tenant's
    log, under a fresh head signed by a known log key."""

    access_id: str
    tenant_id: str
    principal: AccessPrincipal
    purpose: types_pb2.AccessPurpose.ValueType
    resource_kind: log_pb2.ResourceKind.ValueType
    device_id: str
    """Camera concerned; empty for exports and account accesses."""
    clip_id: str
    """Empty unless the resource is a clip."""
    export_id: str
    """Empty unless the resource is an export."""
    service: str
    occurred_at: datetime
    operator_access_id: str
    """Empty unless an operator made the access."""
    leaf_index: int
    tree_size: int
    head_timestamp: datetime


def _parse_record(record: bytes) -> log_pb2.AccessRecord:
    try:
        return log_pb2.AccessRecord.FromString(record)
    except DecodeError:
        raise ReceiptError("the logged record is not a valid AccessRecord") from None


def verify_receipt(
    receipt: log_pb2.Receipt,
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    tenant_id: str,
    now: datetime,
    max_age: timedelta,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> VerifiedAccess:
    """Check that ``receipt`` proves an access to ``tenant_id``'s data is in its log.

    In order: the head is signed by a known key, is ``tenant_id``'s, was signed at most
    ``max_age`` before ``now`` (and at most ``clock_skew`` after it); the inclusion proof
    is for the receipt's index and the head's size and leads from
    ``leaf_hash(receipt.record)`` to the signed root; only then is the record parsed, and
    it must name the same tenant and carry an access id and a time, and that time too must
    be at most ``max_age`` before ``now`` (and at most ``clock_skew`` after it): a fresh
    head over an old entry proves an old access, not this one. Returns what the key
    manager matches against the request; raises :class:`ReceiptError` otherwise
    (:class:`StaleReceipt` when the head or the access is out of date).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not receipt.HasField("tree_head"):
        raise ReceiptError("the receipt carries no signed tree head")
    if not receipt.HasField("inclusion_proof"):
        raise ReceiptError("the receipt carries no inclusion proof")
    sth, proof = receipt.tree_head, receipt.inclusion_proof
    verify_tree_head(sth, public_keys)
    if sth.tenant_id != tenant_id:
        raise ReceiptError("the receipt is from another household's log")
    signed_at = _datetime_from_timestamp(sth.timestamp, "the tree head's timestamp")
    if now - signed_at > max_age:
        raise StaleReceipt(
            f"the receipt's tree head was signed {now - signed_at} ago, more than the "
            f"{max_age} a receipt stays valid: ask the log for a fresh receipt"
        )
    if signed_at - now > clock_skew:
        raise StaleReceipt("the receipt's tree head is dated in the future")
    if proof.leaf_index != receipt.leaf_index:
        raise ReceiptError(
            f"the inclusion proof is for entry {proof.leaf_index}, the receipt for entry "
            f"{receipt.leaf_index}"
        )
    if proof.tree_size != sth.tree_size:
        raise ReceiptError(
            f"the inclusion proof is against a tree of {proof.tree_size} entries, the signed "
            f"head covers {sth.tree_size}"
        )
    try:
        record_hash = leaf_hash(receipt.record)
        verify_inclusion(
            record_hash, proof.leaf_index, proof.tree_size, proof.hashes, sth.root_hash
        )
    except ProofError as error:
        raise ReceiptError(f"the receipt does not prove the access is logged: {error}") from None
    record = _parse_record(receipt.record)
    if record.tenant_id != tenant_id:
        raise ReceiptError("the logged access is about another household")
    if not record.access_id:
        raise ReceiptError("the logged access has no access id")
    if not record.HasField("occurred_at"):
        raise ReceiptError("the logged access has no time")
    occurred_at = _datetime_from_timestamp(record.occurred_at, "the access time")
    if now - occurred_at > max_age:
        raise StaleReceipt(
            f"the logged access happened {now - occurred_at} ago, more than the {max_age} a "
            "receipt stays valid: a receipt is for an access made now, log a new one"
        )
    if occurred_at - now > clock_skew:
        raise StaleReceipt("the logged access is dated in the future")
    return VerifiedAccess(
        access_id=record.access_id,
        tenant_id=record.tenant_id,
        principal=AccessPrincipal(
            kind=record.principal.kind,
            tenant_id=record.principal.tenant_id,
            id=record.principal.id,
        ),
        purpose=record.purpose,
        resource_kind=record.resource.kind,
        device_id=record.resource.device_id,
        clip_id=record.resource.clip_id,
        export_id=record.resource.export_id,
        service=record.service,
        occurred_at=occurred_at,
        operator_access_id=record.operator_access_id,
        leaf_index=proof.leaf_index,
        tree_size=sth.tree_size,
        head_timestamp=signed_at,
    )


# --- the client's log monitor ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedEntry:
    """A log entry whose inclusion in a verified head was checked, then parsed."""

    index: int
    record: log_pb2.AccessRecord


class LogMonitor:
    """What a client remembers of each tenant's log: the last head it verified.

    :meth:`observe` accepts a new head only when it is signed by a known log key and
    extends the remembered one (a consistency proof for a larger size, the same root for
    the same size); the first head seen for a tenant is trusted on first use, so persist
    the monitor (:meth:`to_json`) where the user's profile lives. :meth:`verify_entries`
    checks listed entries against the remembered head. Not thread-safe.
    """

    def __init__(
        self,
        public_keys: Mapping[str, Ed25519PublicKey],
        heads: Iterable[log_pb2.SignedTreeHead] = (),
    ) -> None:
        self._keys = dict(public_keys)
        self._heads: dict[str, log_pb2.SignedTreeHead] = {}
        for sth in heads:
            verify_tree_head(sth, self._keys)
            self._heads[sth.tenant_id] = _copy(sth)

    def head(self, tenant_id: str) -> log_pb2.SignedTreeHead | None:
        """The last verified head of ``tenant_id``'s log (a copy), or None."""
        sth = self._heads.get(tenant_id)
        return None if sth is None else _copy(sth)

    def observe(
        self,
        sth: log_pb2.SignedTreeHead,
        consistency_proof: log_pb2.ConsistencyProof | None = None,
    ) -> None:
        """Verify a new head of ``sth.tenant_id``'s log and remember it.

        ``consistency_proof`` must go from the remembered head's size to ``sth``'s (as
        ``ListEntries`` returns it for ``last_known_tree_size``); it is not needed for the
        first head or a head of the remembered size. Raises :class:`ReceiptError` for a
        head that is not validly signed and :class:`LogTampered` for one that does not
        extend the remembered head; either way the remembered head stays.
        """
        verify_tree_head(sth, self._keys)
        old = self._heads.get(sth.tenant_id)
        if old is not None:
            hashes = consistency_proof.hashes if consistency_proof is not None else []
            if sth.tree_size < old.tree_size:
                raise LogTampered(
                    f"the log now has {sth.tree_size} entries where it had {old.tree_size}: "
                    "entries were removed (the log was truncated or rewritten)"
                )
            if sth.tree_size > old.tree_size:
                if consistency_proof is None:
                    raise ReceiptError(
                        f"a consistency proof from {old.tree_size} to {sth.tree_size} entries "
                        "is needed to accept the new head"
                    )
                if (consistency_proof.first_size, consistency_proof.second_size) != (
                    old.tree_size,
                    sth.tree_size,
                ):
                    raise ReceiptError(
                        f"the consistency proof goes from {consistency_proof.first_size} to "
                        f"{consistency_proof.second_size} entries, not from {old.tree_size} "
                        f"to {sth.tree_size}"
                    )
            try:
                verify_consistency(
                    old.tree_size, sth.tree_size, old.root_hash, sth.root_hash, hashes
                )
            except ProofError as error:
                raise LogTampered(
                    f"the log's new head does not extend the one seen before: {error}"
                ) from None
            if sth.tree_size == old.tree_size and _nanos(sth) <= _nanos(old):
                return  # an older or the same signature over the same tree
        self._heads[sth.tenant_id] = _copy(sth)

    def observe_deletion(self, statement: log_pb2.SignedLogDeletion) -> LogDeleted:
        """Verify the signed end of a tenant's log against what this client saw of it, and
        return the :class:`LogDeleted` to show (the caller raises it).

        The statement must be signed by a known key and cover at least the remembered head
        (the same root for the same size): a log that says it was deleted after fewer
        entries than this client saw is :class:`LogTampered`. The remembered head stays,
        so a later size-0 head without a statement is still reported as a truncation.
        """
        verify_log_deletion(statement, self._keys)
        old = self._heads.get(statement.tenant_id)
        if old is not None:
            if statement.final_size < old.tree_size:
                raise LogTampered(
                    f"the log says it was deleted after {statement.final_size} entries, but "
                    f"it had {old.tree_size} when this device last looked: entries were "
                    "removed before the deletion"
                )
            if statement.final_size == old.tree_size and statement.final_root != old.root_hash:
                raise LogTampered(
                    f"the log says it was deleted after {old.tree_size} entries with another "
                    "root than the one this device saw: the log forked"
                )
        deleted_at = _datetime_from_timestamp(statement.deleted_at, "the deletion time")
        return LogDeleted(statement.tenant_id, statement.final_size, deleted_at)

    def verify_entries(
        self, entries: Iterable[log_pb2.LogEntry], sth: log_pb2.SignedTreeHead
    ) -> list[VerifiedEntry]:
        """Check each entry's inclusion in ``sth``, which must be the remembered head of its
        tenant (call :meth:`observe` first); return the entries parsed, in order.

        An entry whose bytes or proof do not match the signed root raises
        :class:`LogTampered`: what the log serves is not what it signed.
        """
        verify_tree_head(sth, self._keys)
        known = self._heads.get(sth.tenant_id)
        if known is None or known.tree_size != sth.tree_size:
            raise ReceiptError(
                "observe this tree head (with its consistency proof) before trusting entries "
                "proved against it"
            )
        if known.root_hash != sth.root_hash:
            raise LogTampered(
                f"two different roots for the same {sth.tree_size} entries: the log forked"
            )
        verified: list[VerifiedEntry] = []
        for entry in entries:
            proof = entry.inclusion_proof
            if proof.leaf_index != entry.index or proof.tree_size != sth.tree_size:
                raise ReceiptError(
                    f"the proof for entry {entry.index} is for entry {proof.leaf_index} in a "
                    f"tree of {proof.tree_size}, not the head's {sth.tree_size}"
                )
            try:
                record_hash = leaf_hash(entry.record)
                verify_inclusion(
                    record_hash, entry.index, sth.tree_size, proof.hashes, sth.root_hash
                )
            except ProofError as error:
                raise LogTampered(
                    f"entry {entry.index} is not what the log signed: {error}"
                ) from None
            record = _parse_record(entry.record)
            if record.tenant_id != sth.tenant_id:
                raise LogTampered(f"entry {entry.index} is about another household")
            verified.append(VerifiedEntry(entry.index, record))
        return verified

    def verify_range(
        self,
        sth: log_pb2.SignedTreeHead,
        start: int,
        end: int,
        entries: Iterable[log_pb2.LogEntry],
        others: Iterable[log_pb2.LogEntry],
        matches: Callable[[log_pb2.AccessRecord], bool],
    ) -> list[VerifiedEntry]:
        """Check that one page of a listing accounts for every entry ``[start, end)`` of
        ``sth`` and return the matching ones, verified and parsed, in index order.

        ``entries`` are what the log says matches the listing's filters, ``others`` the
        rest of the range; together they must hold each index of the range exactly once,
        each with a valid inclusion proof (as :meth:`verify_entries`). ``matches`` is the
        filter, applied here to every record: an index absent from both, or a record in
        ``others`` that matches, raises :class:`EntryMissing` naming the index (the log
        hid an entry); a record in ``entries`` that does not match is a
        :class:`ReceiptError`. The caller checks that consecutive pages meet and that the
        last one ends at ``sth.tree_size``.
        """
        if not 0 <= start <= end <= sth.tree_size:
            raise ReceiptError(
                f"the page claims to cover entries {start} to {end}, outside the head's "
                f"{sth.tree_size} entries"
            )
        listed = list(entries)
        other = list(others)
        matched_indices = {entry.index for entry in listed}
        seen: dict[int, VerifiedEntry] = {}
        for verified in self.verify_entries([*listed, *other], sth):
            if verified.index in seen:
                raise ReceiptError(f"entry {verified.index} is listed twice")
            if not start <= verified.index < end:
                raise ReceiptError(
                    f"entry {verified.index} is outside the range {start} to {end} this page covers"
                )
            seen[verified.index] = verified
        for index in range(start, end):
            if index not in seen:
                raise EntryMissing(
                    index,
                    f"entry {index} of the log's {sth.tree_size} is missing from the listing: "
                    "the log hid it",
                )
        result: list[VerifiedEntry] = []
        for index in range(start, end):
            verified = seen[index]
            wanted = matches(verified.record)
            if wanted and index not in matched_indices:
                raise EntryMissing(
                    index,
                    f"entry {index} matches the listing's filters but the log listed it as "
                    "not matching: the log hid it",
                )
            if not wanted and index in matched_indices:
                raise ReceiptError(f"entry {index} was listed but does not match the filters")
            if wanted:
                result.append(verified)
        return result

    # --- persistence ------------------------------------------------------------------

    def to_json(self) -> str:
        """The remembered heads as JSON, for the SDK to keep in the user's profile."""
        heads = {
            tenant: {
                "tree_size": sth.tree_size,
                "root_hash": sth.root_hash.hex(),
                "timestamp_nanos": _nanos(sth),
                "key_id": sth.key_id,
                "signature": sth.signature.hex(),
            }
            for tenant, sth in sorted(self._heads.items())
        }
        return json.dumps({"format": _MONITOR_FORMAT, "heads": heads}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, public_keys: Mapping[str, Ed25519PublicKey]) -> LogMonitor:
        """A monitor from :meth:`to_json`'s output. Every head is verified again, so a
        corrupted or edited profile raises :class:`ReceiptError` rather than lowering the
        bar; ``public_keys`` must include the keys that signed the remembered heads."""
        try:
            document: Any = json.loads(text)
            if document.get("format") != _MONITOR_FORMAT:
                raise ReceiptError("the saved log state is not in a format this client knows")
            heads = [
                log_pb2.SignedTreeHead(
                    tenant_id=tenant,
                    tree_size=int(head["tree_size"]),
                    root_hash=bytes.fromhex(head["root_hash"]),
                    timestamp=Timestamp(
                        seconds=int(head["timestamp_nanos"]) // _NANOS,
                        nanos=int(head["timestamp_nanos"]) % _NANOS,
                    ),
                    key_id=str(head["key_id"]),
                    signature=bytes.fromhex(head["signature"]),
                )
                for tenant, head in document["heads"].items()
            ]
        except ReceiptError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            raise ReceiptError("the saved log state is corrupted") from None
        return cls(public_keys, heads)


def _nanos(sth: log_pb2.SignedTreeHead) -> int:
    return _timestamp_nanos(sth.timestamp)


def _copy(sth: log_pb2.SignedTreeHead) -> log_pb2.SignedTreeHead:
    copy = log_pb2.SignedTreeHead()
    copy.CopyFrom(sth)
    return copy
