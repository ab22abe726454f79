"""What the access log does: append with receipts, proofs, operator access, incidents.

No gRPC or Kafka here: the journal (the access topic), the head signer and the state
store (a compacted topic) are passed in. Records, heads and operator requests are the
protobuf messages of log.proto and access_log_service.proto, because their exact bytes
are what the log signs and proves; nothing else of the wire format leaks in.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from privacam.accesslog.v1 import access_log_service_pb2 as pb
from privacam.accesslog.v1 import events_pb2, log_pb2
from privacam.accesslog.v1.events_pb2 import AccessStateRecord
from privacam.types.v1 import types_pb2
from privacam_core.identity import Principal, PrincipalKind
from privacam_core.merkle import EMPTY_ROOT
from privacam_core.timestamps import to_datetime, to_timestamp
from services.access_log.domain.log import LogBook, TenantLog
from services.common.clock import Clock
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    Unavailable,
)

SERVICE_NAME = "access_log"
PENDING_LIFETIME = timedelta(hours=24)
"""A request nobody decided within this long expires."""
REGULATOR_DEADLINE = timedelta(hours=72)
States = pb.OperatorAccessState
Scopes = pb.OperatorScope
Purposes = types_pb2.AccessPurpose

# Which scope an operator's access needs, by purpose; anything else needs METADATA.
_SCOPE_FOR_PURPOSE = {
    Purposes.ACCESS_PURPOSE_CLIP_LISTING: Scopes.OPERATOR_SCOPE_CLIPS,
    Purposes.ACCESS_PURPOSE_CLIP_PLAYBACK: Scopes.OPERATOR_SCOPE_CLIPS,
    Purposes.ACCESS_PURPOSE_LIVE_VIEW: Scopes.OPERATOR_SCOPE_LIVE_VIEW,
    # Speaking into a home is at least as intrusive as watching it.
    Purposes.ACCESS_PURPOSE_TALK_BACK: Scopes.OPERATOR_SCOPE_LIVE_VIEW,
}
_KIND_PB = {
    PrincipalKind.CAMERA: types_pb2.PRINCIPAL_KIND_CAMERA,
    PrincipalKind.APP: types_pb2.PRINCIPAL_KIND_APP,
    PrincipalKind.SERVICE: types_pb2.PRINCIPAL_KIND_SERVICE,
    PrincipalKind.OPERATOR: types_pb2.PRINCIPAL_KIND_OPERATOR,
}


class Journal(Protocol):
    """The access topic: appends go through it so partition order is leaf order."""

    async def record(self, record: log_pb2.AccessRecord) -> None:
        """Publish the record (keyed by tenant) and return once this replica applied it."""
        ...

    async def notify(self, tenant_id: str, event: events_pb2.AccessEvent) -> None:
        """Publish an operator-access or incident event (the journal adds its metadata)."""
        ...


class HeadSigner(Protocol):
    key_id: str

    def sign(
        self, tenant_id: str, size: int, root: bytes, at: datetime
    ) -> log_pb2.SignedTreeHead: ...

    def verify(self, head: log_pb2.SignedTreeHead) -> bool:
        """Whether the head is signed by one of the log's keys."""
        ...

    def sign_deletion(
        self, tenant_id: str, size: int, root: bytes, at: datetime
    ) -> log_pb2.SignedLogDeletion: ...

    def keys(self) -> list[pb.SigningKey]: ...


class StateStore(Protocol):
    """Operator requests, incidents and notices (a compacted topic, read locally)."""

    def get(self, key: str) -> bytes | None: ...
    def items(self, prefix: str) -> Iterable[tuple[str, bytes]]: ...
    async def create(self, key: str, value: bytes, group: str) -> bool: ...
    async def update(self, key: str, value: bytes, group: str) -> bool: ...


class Metrics(Protocol):
    def appended(self, service: str, purpose: str, seconds: float) -> None: ...
    def head_signed(self) -> None: ...
    def refused(self, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Page:
    entries: list[log_pb2.LogEntry]
    """Matching entries of the covered range."""
    others: list[log_pb2.LogEntry]
    """The covered range's other entries, so the client can check none of them matches."""
    covered_until: int
    """The page covers the indices from the token's position up to this one."""
    head: log_pb2.SignedTreeHead
    consistency: log_pb2.ConsistencyProof | None
    next_token: str


def _encode_token(values: dict[str, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, sort_keys=True).encode()).decode()


def _page_token(head: log_pb2.SignedTreeHead, following: int) -> str:
    """Where the next page starts, and the listing's head (its time and signature), so the
    next page is proved against the same signed head."""
    values = {
        "size": head.tree_size,
        "next": following,
        "at": head.timestamp.seconds * 10**9 + head.timestamp.nanos,
        "key": head.key_id,
        "sig": head.signature.hex(),
    }
    return base64.urlsafe_b64encode(json.dumps(values, sort_keys=True).encode()).decode()


def _decode_token(token: str, keys: tuple[str, ...]) -> dict[str, int]:
    try:
        values = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(values, dict) or set(values) != set(keys):
            raise ValueError
        if not all(isinstance(values[k], int) and values[k] >= 0 for k in keys):
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument("page_token is not a token this service returned") from None
    return {k: int(values[k]) for k in keys}


class AccessLog:
    def __init__(
        self,
        book: LogBook,
        journal: Journal,
        signer: HeadSigner,
        state: StateStore,
        clock: Clock,
        metrics: Metrics,
        max_clock_skew: timedelta,
    ) -> None:
        self._book = book
        self._journal = journal
        self._signer = signer
        self._state = state
        self._clock = clock
        self._metrics = metrics
        self._skew = max_clock_skew

    # --- whose log ------------------------------------------------------------------

    @staticmethod
    def tenant_for(caller: Principal, requested: str) -> str:
        """Apps read their own tenant's log (another tenant is NOT_FOUND, as if it did not
        exist); services name the tenant."""
        if caller.kind is PrincipalKind.APP:
            if requested and requested != caller.tenant_id:
                raise NotFound("no such log")
            assert caller.tenant_id is not None
            return caller.tenant_id
        if not requested:
            raise InvalidArgument("tenant_id is required for service callers")
        return requested

    def _log(self, tenant_id: str) -> TenantLog | None:
        return self._book.get(tenant_id)

    def _sign(self, tenant_id: str, log: TenantLog | None, size: int) -> log_pb2.SignedTreeHead:
        """The head of the log's *current* size: its time is when this replica first
        signed that size (it had that size then), never a later time."""
        head = self._head(tenant_id, log, size)
        assert head is not None  # the current size can always be signed
        return head

    def _head(
        self, tenant_id: str, log: TenantLog | None, size: int
    ) -> log_pb2.SignedTreeHead | None:
        """A head's timestamp is a time the log had that size: the first time this replica
        signed the size, which it does only while the size is the current one. A past size
        it never signed gets no head (None): signing it now would claim the log had that
        size now."""
        if log is None:
            at = self._clock.now()  # an empty log, now
        else:
            known = log.head_times.get(size)
            if known is None:
                if size != log.size:
                    return None
                known = log.head_times[size] = self._clock.now()
            at = known
        root = log.tree.root(size) if log is not None else EMPTY_ROOT
        self._metrics.head_signed()
        return self._signer.sign(tenant_id, size, root, at)

    # --- append ---------------------------------------------------------------------

    async def append(self, record: log_pb2.AccessRecord, caller: Principal) -> log_pb2.Receipt:
        """Log one access and return its receipt; the record is validated by the API."""
        started = self._clock.monotonic()
        if caller.kind is not PrincipalKind.SERVICE or record.service.replace("_", "-") != (
            caller.name
        ):
            raise PermissionDenied("record.service must be the calling service's own name")
        # What is kept names the authenticated caller (its certificate's service name, as
        # the package spells it), never a name the caller chose.
        named = log_pb2.AccessRecord()
        named.CopyFrom(record)
        named.service = caller.name.replace("-", "_")
        record = named
        occurred = to_datetime(record.occurred_at)
        if abs(occurred - self._clock.now()) > self._skew:
            raise InvalidArgument(
                f"record.occurred_at is more than {self._skew} away from the log's clock; "
                "log accesses as they happen"
            )
        if record.principal.kind == types_pb2.PRINCIPAL_KIND_OPERATOR:
            self._check_operator_grant(record)
        elif record.operator_access_id:
            raise InvalidArgument("operator_access_id is only for accesses made by an operator")
        if record.tenant_id in self._book.deleted:
            raise NotFound("no such log")
        receipt = self._receipt_if_logged(record)
        if receipt is None:
            await self._journal.record(record)
            receipt = self._receipt_if_logged(record)
            if receipt is None:  # the tenant's log was deleted meanwhile
                raise NotFound("no such log")
        self._metrics.appended(
            record.service,
            types_pb2.AccessPurpose.Name(record.purpose),
            self._clock.monotonic() - started,
        )
        return receipt

    def _receipt_if_logged(self, record: log_pb2.AccessRecord) -> log_pb2.Receipt | None:
        log = self._log(record.tenant_id)
        if log is None or record.access_id not in log.by_access_id:
            return None
        index = log.by_access_id[record.access_id]
        stored = log.records[index]
        if stored != record.SerializeToString(deterministic=True):
            raise AlreadyExists("access_id is already logged for another access")
        size = log.size
        return log_pb2.Receipt(
            record=stored,
            leaf_index=index,
            tree_head=self._sign(record.tenant_id, log, size),
            inclusion_proof=log_pb2.InclusionProof(
                leaf_index=index, tree_size=size, hashes=log.tree.inclusion_proof(index, size)
            ),
        )

    # --- reads with proofs ------------------------------------------------------------

    def deletion(self, tenant_id: str) -> log_pb2.SignedLogDeletion | None:
        """The signed end of a deleted tenant's log (every replica signs the same bytes:
        size, root and time come from the access topic), or None while the log lives."""
        ending = self._book.endings.get(tenant_id)
        if ending is None:
            return None
        return self._signer.sign_deletion(tenant_id, ending.size, ending.root, ending.deleted_at)

    def tree_head(self, tenant_id: str) -> log_pb2.SignedTreeHead:
        log = self._log(tenant_id)
        return self._sign(tenant_id, log, log.size if log else 0)

    def _size(self, log: TenantLog | None, size: int, what: str) -> int:
        current = log.size if log else 0
        if size > current:
            raise OutOfRange(f"{what} {size} is beyond the log's {current} entries")
        return size

    def inclusion(
        self, tenant_id: str, index: int, size: int
    ) -> tuple[log_pb2.InclusionProof, log_pb2.SignedTreeHead | None]:
        log = self._log(tenant_id)
        size = self._size(log, size, "tree_size") if size else (log.size if log else 0)
        if log is None or index >= size:
            raise OutOfRange(f"entry {index} does not exist in a log of {size} entries")
        proof = log_pb2.InclusionProof(
            leaf_index=index, tree_size=size, hashes=log.tree.inclusion_proof(index, size)
        )
        return proof, self._head(tenant_id, log, size)

    def consistency(self, tenant_id: str, first: int, second: int) -> log_pb2.ConsistencyProof:
        if first < 1:
            raise InvalidArgument("first_size must be at least 1")
        log = self._log(tenant_id)
        second = self._size(log, second, "second_size") if second else (log.size if log else 0)
        if first > second:
            raise OutOfRange(f"first_size {first} is beyond the {second} entries proved to")
        assert log is not None  # second >= first >= 1 entries exist
        return log_pb2.ConsistencyProof(
            first_size=first, second_size=second, hashes=log.tree.consistency_proof(first, second)
        )

    def list_entries(
        self,
        tenant_id: str,
        device_id: str,
        since: datetime | None,
        until: datetime | None,
        page_size: int,
        token: str,
        last_known: int,
    ) -> Page:
        log = self._log(tenant_id)
        head: log_pb2.SignedTreeHead | None = None
        if token:
            size, start, head = self._page_position(tenant_id, log, token)
        else:
            size, start = (log.size if log else 0), 0
        self._size(log, last_known, "last_known_tree_size")
        if last_known > size:
            raise OutOfRange(f"last_known_tree_size {last_known} is beyond this page's head")
        # Completeness: a page covers a contiguous range of leaves, [start, end), and
        # returns every one of them, matching or not; the pages of a listing cover
        # [0, size). occurred_at is not in leaf order (services' clocks differ, records
        # may be published straight to the topic), so no index range can be skipped for
        # a time filter either: the client checks each record against the filters.
        end = min(size, start + page_size)
        entries: list[log_pb2.LogEntry] = []
        others: list[log_pb2.LogEntry] = []
        if log is not None:
            for i in range(start, end):
                entry = log_pb2.LogEntry(
                    index=i,
                    record=log.records[i],
                    inclusion_proof=log_pb2.InclusionProof(
                        leaf_index=i, tree_size=size, hashes=log.tree.inclusion_proof(i, size)
                    ),
                )
                (entries if log.covers(i, device_id, since, until) else others).append(entry)
        else:
            end = 0
        consistency = None
        if last_known and log is not None:
            consistency = log_pb2.ConsistencyProof(
                first_size=last_known,
                second_size=size,
                hashes=log.tree.consistency_proof(last_known, size),
            )
        head = head or self._sign(tenant_id, log, size)
        next_token = "" if end >= size else _page_token(head, end)
        return Page(entries, others, end, head, consistency, next_token)

    def _page_position(
        self, tenant_id: str, log: TenantLog | None, token: str
    ) -> tuple[int, int, log_pb2.SignedTreeHead]:
        """Where a page token continues, and the first page's head, which the token
        carries: later pages return that very head (verified, not signed again), so any
        replica serves them against it without dating an old size anew."""
        refused = InvalidArgument("page_token is not a token this service returned")
        try:
            values = json.loads(base64.urlsafe_b64decode(token.encode()))
            size, start, at = (int(values[k]) for k in ("size", "next", "at"))
            key_id, signature = str(values["key"]), bytes.fromhex(values["sig"])
            if min(size, start, at) < 0 or start >= size:
                raise ValueError
        except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
            self._metrics.refused("page_token")
            raise refused from None
        self._size(log, size, "the page token's tree size")
        assert log is not None  # size > start >= 0 entries exist
        head = log_pb2.SignedTreeHead(
            tenant_id=tenant_id,
            tree_size=size,
            root_hash=log.tree.root(size),
            timestamp=Timestamp(seconds=at // 10**9, nanos=at % 10**9),
            key_id=key_id,
            signature=signature,
        )
        if not self._signer.verify(head):
            self._metrics.refused("page_token")
            raise refused
        return size, start, head

    def signing_keys(self) -> list[pb.SigningKey]:
        return self._signer.keys()

    # --- operator access ------------------------------------------------------------

    def _effective(self, access: pb.OperatorAccess) -> pb.OperatorAccess:
        """The request as of now: approved past its end, or pending too long, is EXPIRED."""
        now = self._clock.now()
        expired = (
            access.state == States.OPERATOR_ACCESS_STATE_APPROVED
            and now >= to_datetime(access.expires_at)
        ) or (
            access.state == States.OPERATOR_ACCESS_STATE_PENDING
            and now >= to_datetime(access.requested_at) + PENDING_LIFETIME
        )
        if expired:
            copy = pb.OperatorAccess()
            copy.CopyFrom(access)
            copy.state = States.OPERATOR_ACCESS_STATE_EXPIRED
            return copy
        return access

    def _load_access(self, access_id: str) -> pb.OperatorAccess | None:
        value = self._state.get(f"oa/{access_id}")
        if value is None:
            return None
        return self._effective(AccessStateRecord.FromString(value).operator_access)

    def _check_operator_grant(self, record: log_pb2.AccessRecord) -> None:
        denied = PermissionDenied(
            "no approved, unexpired operator access of this household covers this access"
        )
        if not record.operator_access_id:
            raise denied
        access = self._load_access(record.operator_access_id)
        if (
            access is None
            or access.tenant_id != record.tenant_id
            or access.operator.id != record.principal.id
            or access.state != States.OPERATOR_ACCESS_STATE_APPROVED
        ):
            raise denied
        needed = _SCOPE_FOR_PURPOSE.get(record.purpose, Scopes.OPERATOR_SCOPE_METADATA)
        scopes = set(access.scopes)
        if needed == Scopes.OPERATOR_SCOPE_METADATA:
            ok = bool(scopes & {Scopes.OPERATOR_SCOPE_METADATA, Scopes.OPERATOR_SCOPE_DIAGNOSTICS})
        else:
            ok = needed in scopes
        if not ok or (
            record.resource.device_id and record.resource.device_id not in access.device_ids
        ):
            raise denied

    async def _store_access(self, access: pb.OperatorAccess, create: bool) -> None:
        value = AccessStateRecord(operator_access=access).SerializeToString(deterministic=True)
        key = f"oa/{access.operator_access_id}"
        done = (
            await self._state.create(key, value, access.tenant_id)
            if create
            else await self._state.update(key, value, access.tenant_id)
        )
        if not done:
            raise Unavailable("the request changed meanwhile; try again")

    async def _log_operator_step(self, access: pb.OperatorAccess, actor: Principal) -> None:
        """Each request, decision and end is itself an entry of the tenant's log."""
        record = log_pb2.AccessRecord(
            access_id=str(uuid.uuid4()),
            tenant_id=access.tenant_id,
            principal=types_pb2.Principal(
                kind=_KIND_PB[actor.kind], tenant_id=actor.tenant_id or "", id=actor.name
            ),
            resource=log_pb2.Resource(kind=log_pb2.RESOURCE_KIND_ACCOUNT),
            purpose=Purposes.ACCESS_PURPOSE_OPERATOR_SUPPORT,
            service=SERVICE_NAME,
            occurred_at=to_timestamp(self._clock.now()),
            operator_access_id=access.operator_access_id,
        )
        await self._journal.record(record)

    async def request_operator_access(
        self,
        operator: Principal,
        tenant_id: str,
        reason: str,
        ticket_ref: str,
        scopes: Sequence[pb.OperatorScope.ValueType],
        device_ids: Sequence[str],
        duration: timedelta,
    ) -> pb.OperatorAccess:
        if tenant_id in self._book.deleted:
            raise NotFound("no such household")
        duration_pb = Duration()
        duration_pb.FromTimedelta(duration)
        access = pb.OperatorAccess(
            operator_access_id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            operator=types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_OPERATOR, id=operator.name),
            reason=reason,
            ticket_ref=ticket_ref,
            scopes=scopes,
            device_ids=device_ids,
            duration=duration_pb,
            state=States.OPERATOR_ACCESS_STATE_PENDING,
            requested_at=to_timestamp(self._clock.now()),
        )
        await self._store_access(access, create=True)
        await self._log_operator_step(access, operator)
        await self._journal.notify(
            tenant_id,
            events_pb2.AccessEvent(
                operator_access_requested=events_pb2.OperatorAccessRequested(operator_access=access)
            ),
        )
        return access

    def _visible(self, access_id: str, caller: Principal) -> pb.OperatorAccess:
        access = self._load_access(access_id)
        if access is None or not self._may_see(access, caller):
            raise NotFound("no such operator access request")
        return access

    @staticmethod
    def _may_see(access: pb.OperatorAccess, caller: Principal) -> bool:
        if caller.kind is PrincipalKind.APP:
            return access.tenant_id == caller.tenant_id
        return caller.kind is PrincipalKind.OPERATOR and access.operator.id == caller.name

    def get_operator_access(self, access_id: str, caller: Principal) -> pb.OperatorAccess:
        return self._visible(access_id, caller)

    def list_operator_access(
        self, caller: Principal, states: Sequence[int], page_size: int, token: str
    ) -> tuple[list[pb.OperatorAccess], str]:
        start = _decode_token(token, ("next",))["next"] if token else 0
        found = [
            access
            for _, value in self._state.items("oa/")
            if self._may_see(
                access := self._effective(AccessStateRecord.FromString(value).operator_access),
                caller,
            )
            and (not states or access.state in states)
        ]
        found.sort(key=lambda a: (to_datetime(a.requested_at), a.operator_access_id), reverse=True)
        page = found[start : start + page_size]
        following = start + page_size
        return page, (_encode_token({"next": following}) if following < len(found) else "")

    async def decide_operator_access(
        self, access_id: str, approve: bool, caller: Principal
    ) -> pb.OperatorAccess:
        access = self._visible(access_id, caller)
        if caller.kind is not PrincipalKind.APP:
            raise PermissionDenied("only the household decides on an operator's request")
        if access.state != States.OPERATOR_ACCESS_STATE_PENDING:
            raise FailedPrecondition(
                f"the request is {States.Name(access.state)}, not pending: it was decided already"
            )
        now = self._clock.now()
        access.decided_at.CopyFrom(to_timestamp(now))
        if approve:
            access.state = States.OPERATOR_ACCESS_STATE_APPROVED
            access.expires_at.CopyFrom(to_timestamp(now + access.duration.ToTimedelta()))
        else:
            access.state = States.OPERATOR_ACCESS_STATE_DENIED
        await self._store_access(access, create=False)
        await self._log_operator_step(access, caller)
        await self._journal.notify(
            access.tenant_id,
            events_pb2.AccessEvent(
                operator_access_decided=events_pb2.OperatorAccessDecided(operator_access=access)
            ),
        )
        return access

    async def end_operator_access(self, access_id: str, caller: Principal) -> pb.OperatorAccess:
        access = self._visible(access_id, caller)
        if access.state != States.OPERATOR_ACCESS_STATE_APPROVED:
            raise FailedPrecondition(
                f"the request is {States.Name(access.state)}; only an approved access can end"
            )
        access.state = States.OPERATOR_ACCESS_STATE_ENDED
        access.expires_at.CopyFrom(to_timestamp(self._clock.now()))
        await self._store_access(access, create=False)
        await self._log_operator_step(access, caller)
        await self._journal.notify(
            access.tenant_id,
            events_pb2.AccessEvent(
                operator_access_ended=events_pb2.OperatorAccessEnded(operator_access=access)
            ),
        )
        return access

    # --- incidents --------------------------------------------------------------------

    async def declare_incident(
        self,
        operator: Principal,
        description: str,
        detected_at: datetime,
        window: tuple[datetime, datetime],
        compromised: Sequence[types_pb2.Principal],
        categories: Sequence[pb.DataCategory.ValueType],
        encrypted_unreadable: bool,
    ) -> pb.Incident:
        start, end = window
        wanted = {(p.kind, p.tenant_id, p.id) for p in compromised}

        def matches(kind: int, tenant: str, ident: str) -> bool:
            # A principal named without a tenant matches it in every household.
            return (kind, tenant, ident) in wanted or (kind, "", ident) in wanted

        touched: dict[str, list[int]] = {}
        for log in self._book.tenants():
            for index, access in enumerate(list(log.accesses)):
                p = access.principal
                if start <= access.occurred_at < end and matches(p.kind, p.tenant_id, p.id):
                    touched.setdefault(log.tenant_id, []).append(index)
        incident = pb.Incident(
            incident_id=str(uuid.uuid4()),
            description=description,
            detected_at=to_timestamp(detected_at),
            regulator_deadline=to_timestamp(detected_at + REGULATOR_DEADLINE),
            window=types_pb2.TimeRange(start=to_timestamp(start), end=to_timestamp(end)),
            compromised_principals=compromised,
            categories=categories,
            data_encrypted_unreadable=encrypted_unreadable,
            declared_by=types_pb2.Principal(
                kind=types_pb2.PRINCIPAL_KIND_OPERATOR, id=operator.name
            ),
            declared_at=to_timestamp(self._clock.now()),
            affected_tenant_ids=sorted(touched),
        )
        await self._state.create(
            f"incident/{incident.incident_id}",
            AccessStateRecord(incident=incident).SerializeToString(deterministic=True),
            incident.incident_id,
        )
        await self._journal.notify(
            "",
            events_pb2.AccessEvent(
                incident_declared=events_pb2.IncidentDeclared(incident=incident)
            ),
        )
        for tenant_id, indices in sorted(touched.items()):
            notice = pb.IncidentNotice(
                incident_id=incident.incident_id,
                description=description,
                detected_at=incident.detected_at,
                regulator_deadline=incident.regulator_deadline,
                window=incident.window,
                categories=categories,
                data_encrypted_unreadable=encrypted_unreadable,
                touched_entry_indices=indices,
            )
            await self._state.create(
                f"notice/{tenant_id}/{incident.incident_id}",
                AccessStateRecord(notice=notice).SerializeToString(deterministic=True),
                tenant_id,
            )
            await self._journal.notify(
                tenant_id,
                events_pb2.AccessEvent(
                    incident_notice_issued=events_pb2.IncidentNoticeIssued(notice=notice)
                ),
            )
        return incident

    def get_incident(self, incident_id: str) -> pb.Incident:
        value = self._state.get(f"incident/{incident_id}")
        if value is None:
            raise NotFound("no such incident")
        return AccessStateRecord.FromString(value).incident

    def list_incident_notices(
        self, tenant_id: str, page_size: int, token: str
    ) -> tuple[list[pb.IncidentNotice], str]:
        start = _decode_token(token, ("next",))["next"] if token else 0
        notices = [
            AccessStateRecord.FromString(value).notice
            for _, value in self._state.items(f"notice/{tenant_id}/")
        ]
        notices.sort(key=lambda n: (to_datetime(n.detected_at), n.incident_id), reverse=True)
        page = notices[start : start + page_size]
        following = start + page_size
        return page, (_encode_token({"next": following}) if following < len(notices) else "")
