"""Who accessed my camera: the household's access log, verified on this device.

Every listed entry is checked against a signed tree head before it is parsed (inclusion
proof), the head's signature against the log's keys, and the head against the last head
this profile verified (consistency proof).

**Nothing is left out.** The pages of a listing cover every index of the head, in order:
each page returns every entry of its range, the matching ones in ``entries`` and the rest
in ``other_entries`` (records and proofs too), and this client applies the filters
(camera, occurred_at) to each record itself. An index that no page accounts for, or a
matching record listed as not matching, raises :class:`EntryMissing` (a
:class:`LogTampered`) naming the index. A time filter still covers the whole log, because
occurred_at is the recording service's clock and is not in leaf order.

The last head is kept in the profile directory (``access-log-heads.json``), so a log
that was rewritten, truncated or forked between two looks fails here with
:class:`LogTampered`, whatever the server says.

**Only pinned keys.** Heads are verified with the keys pinned in the profile at
enrollment (``log-keys.json``, ``Profile.log_keys()``) and with keys the log introduces by
a rotation statement (``KeyRotation``: ``"privacam-log-key-v1" 0x00 || key id 0x00 ||
public key || valid_from``) signed by a key already trusted; such a key is then pinned in
the profile too. A log that lists any other key is refused before anything is listed.

**Deleted is not truncated.** When the household's account is cancelled its log ends
with a deletion statement signed by the log (tenant, final size and root, time): the
reader raises :class:`LogDeleted` ("this household's log was deleted at T after N
entries") when the statement verifies and covers the head this device remembers. A log
that shrinks without such a statement, to size 0 or not, is still :class:`LogTampered`.

The checks themselves are privacam_core.receipts.LogMonitor (shipped in the same
distribution), so the key manager, the log and this client share one implementation.

    async with PrivacamClient(profile) as client:
        listing = await AccessLogReader(client).list(device_id=camera)
        for entry in listing.entries: ...
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from privacam.accesslog.v1 import access_log_service_pb2 as pb
from privacam.accesslog.v1 import access_log_service_pb2_grpc as pb_grpc
from privacam.accesslog.v1 import log_pb2
from privacam.types.v1 import types_pb2
from privacam_core.identity import principal_from_pem
from privacam_core.receipts import (
    EntryMissing,
    LogDeleted,
    LogMonitor,
    LogTampered,
    ReceiptError,
    VerifiedEntry,
    verify_key_rotation,
)
from privacam_core.timestamps import to_timestamp
from privacam_sdk.client import PrivacamClient

__all__ = [
    "AccessLogReader",
    "EntryMissing",
    "Listing",
    "LogDeleted",
    "LogTampered",
    "ReceiptError",
    "VerifiedEntry",
    "trusted_log_keys",
]

STATE_FILE = "access-log-heads.json"
LOG_KEYS_FILE = "log-keys.json"
"""The log keys pinned in the profile: key id to PEM Ed25519 public key (enrollment)."""


def trusted_log_keys(
    pinned: Mapping[str, Ed25519PublicKey], listed: Iterable[pb.SigningKey]
) -> tuple[dict[str, Ed25519PublicKey], list[str]]:
    """The pinned keys plus the listed keys introduced by a rotation statement that a
    trusted key signed (in any order: a chain of rotations is followed), and the ids of
    those added. :class:`ReceiptError` naming the key for a listed key that is pinned under
    another public key, or that no trusted key introduced."""
    trusted = dict(pinned)
    pending: dict[str, pb.SigningKey] = {}
    for key in listed:
        shown = key.key_id if len(key.key_id) <= 64 else "(too long)"
        known = trusted.get(key.key_id)
        if known is not None:
            if known.public_bytes_raw() != key.public_key:
                raise ReceiptError(
                    f"the log lists signing key {shown!r} with another public key than the "
                    "one this device pinned: refusing the log"
                )
            continue
        if key.key_id in pending:
            raise ReceiptError(f"the log lists signing key {shown!r} twice")
        pending[key.key_id] = key
    added: list[str] = []
    progress = True
    while pending and progress:
        progress = False
        for key_id, key in list(pending.items()):
            rotation = key.rotation
            if not key.HasField("rotation") or rotation.signed_by not in trusted:
                continue
            if (rotation.key_id, rotation.public_key) != (key.key_id, key.public_key):
                raise ReceiptError(
                    f"the rotation statement listed with signing key {key_id!r} is about "
                    "another key: refusing the log"
                )
            trusted[key_id] = verify_key_rotation(rotation, trusted)
            added.append(key_id)
            del pending[key_id]
            progress = True
    if pending:
        key_id = sorted(pending)[0]
        shown = key_id if len(key_id) <= 64 else "(too long)"
        raise ReceiptError(
            f"the log lists signing key {shown!r}, which no key this device trusts has "
            "signed (no valid rotation statement from a pinned key): refusing the log"
        )
    return trusted, added


def _pin(path: Path, keys: Mapping[str, Ed25519PublicKey]) -> None:
    """Write the trusted keys as the profile's pinned keys (the enrollment format)."""
    document = {
        key_id: key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
        for key_id, key in sorted(keys.items())
    }
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(document, indent=2) + "\n")
    temporary.replace(path)


@dataclass(frozen=True)
class Listing:
    entries: list[VerifiedEntry]
    """Verified entries, oldest first."""
    head: log_pb2.SignedTreeHead
    """The signed head every entry was proved against (now remembered)."""
    previous_size: int
    """Size of the head remembered before this look (0 the first time)."""


class AccessLogReader:
    """Lists the profile's household log and verifies everything it is shown."""

    def __init__(self, client: PrivacamClient, state_file: Path | None = None) -> None:
        self._client = client
        self._stub = pb_grpc.AccessLogServiceStub(client.channel("access_log"))
        self._state_file = state_file or client.profile.directory / STATE_FILE
        profile = client.profile
        principal = principal_from_pem(profile.cert_file.read_bytes(), profile.trust_domain)
        if principal.tenant_id is None:
            raise ValueError("only a camera's or app's profile belongs to a household log")
        self.tenant_id = principal.tenant_id

    async def _keys(self) -> dict[str, Ed25519PublicKey]:
        """The keys heads may be signed with: those pinned in the profile, plus those the
        log introduces with a rotation statement signed by a trusted key (then pinned in
        the profile too). A listed key that is neither is refused, and so is the log."""
        pinned = self._client.profile.log_keys()
        if not pinned:
            raise ReceiptError(
                f"profile {self._client.profile.name!r} pins no access-log keys "
                f"({LOG_KEYS_FILE} is missing or empty): enroll this device again to get them"
            )
        response = await self._stub.ListSigningKeys(
            pb.ListSigningKeysRequest(), timeout=self._client.timeout
        )
        trusted, added = trusted_log_keys(pinned, response.keys)
        if added:
            _pin(self._client.profile.directory / LOG_KEYS_FILE, trusted)
        return trusted

    def _monitor(self, keys: dict[str, Ed25519PublicKey]) -> LogMonitor:
        if self._state_file.exists():
            return LogMonitor.from_json(self._state_file.read_text(), keys)
        return LogMonitor(keys)

    def _save(self, monitor: LogMonitor) -> None:
        temporary = self._state_file.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(monitor.to_json())
        temporary.replace(self._state_file)

    async def list(
        self,
        device_id: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 500,
    ) -> Listing:
        """Every matching entry, verified; raises LogTampered or ReceiptError otherwise
        (and then keeps the previously remembered head)."""
        monitor = self._monitor(await self._keys())
        known = monitor.head(self.tenant_id)
        previous = known.tree_size if known is not None else 0
        time_range = types_pb2.TimeRange()
        if since is not None:
            time_range.start.CopyFrom(to_timestamp(since))
        if until is not None:
            time_range.end.CopyFrom(to_timestamp(until))
        request = pb.ListEntriesRequest(
            device_id=device_id,
            time_range=time_range if since or until else None,
            page_size=page_size,
            last_known_tree_size=previous,
        )
        entries: list[VerifiedEntry] = []
        head: log_pb2.SignedTreeHead | None = None
        covered = 0  # every index below this one was accounted for by the pages so far

        def matches(record: log_pb2.AccessRecord) -> bool:
            if device_id and record.resource.device_id != device_id:
                return False
            when = record.occurred_at.ToDatetime(tzinfo=UTC)
            return (since is None or when >= since) and (until is None or when < until)

        while True:
            try:
                response = await self._stub.ListEntries(request, timeout=self._client.timeout)
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.OUT_OF_RANGE and head is None and previous:
                    await self._shrunk(monitor)
                raise
            if response.HasField("deletion"):
                self._deleted(monitor, response.deletion)
            if response.tree_head.tenant_id != self.tenant_id:
                raise LogTampered("the log answered with another household's tree head")
            if head is None:
                head = response.tree_head
                proof = (
                    response.consistency_proof if response.HasField("consistency_proof") else None
                )
                monitor.observe(head, proof)
            elif (response.tree_head.tree_size, response.tree_head.root_hash) != (
                head.tree_size,
                head.root_hash,
            ):
                raise LogTampered("pages of one listing were proved against different heads")
            end = response.covered_until
            if response.next_page_token and end <= covered:
                raise ReceiptError("a page of the listing covers no entries: the log is stuck")
            entries.extend(
                monitor.verify_range(
                    head, covered, end, response.entries, response.other_entries, matches
                )
            )
            covered = end
            if not response.next_page_token:
                if covered != head.tree_size:
                    raise EntryMissing(
                        covered,
                        f"the listing stops at entry {covered} of the log's {head.tree_size}: "
                        f"entries {covered} to {head.tree_size - 1} are missing",
                    )
                break
            request = pb.ListEntriesRequest(
                device_id=device_id,
                time_range=request.time_range if request.HasField("time_range") else None,
                page_size=page_size,
                page_token=response.next_page_token,
            )
        self._save(monitor)
        return Listing(entries, head, previous)

    async def check_extends(
        self, kept: log_pb2.SignedTreeHead, verified: log_pb2.SignedTreeHead
    ) -> None:
        """Check a head kept elsewhere (a digest's) against one this device verified: it
        must be this household's, signed by a trusted log key, and `verified` must extend
        it (the log's consistency proof between the two). Raises ReceiptError or
        LogTampered; a kept head newer than `verified` is a ReceiptError (look again)."""
        if kept.tenant_id != self.tenant_id:
            raise ReceiptError("the head is another household's")
        if kept.tree_size > verified.tree_size:
            raise ReceiptError(
                f"the head covers {kept.tree_size} entries, more than the {verified.tree_size} "
                "this device verified: list the log again"
            )
        proof = None
        if 0 < kept.tree_size < verified.tree_size:
            response = await self._stub.GetConsistencyProof(
                pb.GetConsistencyProofRequest(
                    first_size=kept.tree_size, second_size=verified.tree_size
                ),
                timeout=self._client.timeout,
            )
            proof = response.consistency_proof
        # A monitor that remembers only the kept head accepts `verified` only if it
        # extends it: the same check as every listing's against the remembered head.
        LogMonitor(await self._keys(), [kept]).observe(verified, proof)

    async def _shrunk(self, monitor: LogMonitor) -> None:
        """The log refuses our last size as beyond its end: get its signed head, which the
        monitor rejects as a truncation (signed evidence, not just an error code)."""
        response = await self._stub.GetTreeHead(
            pb.GetTreeHeadRequest(), timeout=self._client.timeout
        )
        if response.HasField("deletion"):
            self._deleted(monitor, response.deletion)
        monitor.observe(response.tree_head)

    def _deleted(self, monitor: LogMonitor, statement: log_pb2.SignedLogDeletion) -> None:
        """The log says the household's log was deleted: raise LogDeleted if the signed
        statement is this household's and covers what this device saw, LogTampered or
        ReceiptError otherwise. The remembered head stays (a later size-0 head without a
        statement is still a truncation)."""
        if statement.tenant_id != self.tenant_id:
            raise ReceiptError("the log answered with another household's deletion statement")
        raise monitor.observe_deletion(statement)
