"""Every tenant's log in memory: leaves in partition order, a Merkle tree, and indexes.

Plain Python: the stream layer parses each record once and hands over its bytes and the
few facts the log indexes (access id, camera, time, principal). Leaf order is the order
records are applied, which is the access topic's partition order, so every replica that
applies the same records builds the same trees.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from privacam_core.merkle import EMPTY_ROOT, MerkleTree, leaf_hash


@dataclass(frozen=True, slots=True)
class PrincipalRef:
    """Who made an access, as recorded: kind (PrincipalKind enum value), tenant, id."""

    kind: int
    tenant_id: str
    id: str


@dataclass(frozen=True, slots=True)
class Access:
    """What the log knows of one record besides its bytes."""

    access_id: str
    tenant_id: str
    device_id: str
    occurred_at: datetime
    principal: PrincipalRef


@dataclass(frozen=True, slots=True)
class LogEnding:
    """What a deleted log was when it was deleted: the content of its signed deletion
    statement."""

    size: int
    root: bytes
    deleted_at: datetime


@dataclass(slots=True)
class TenantLog:
    tenant_id: str
    tree: MerkleTree = field(default_factory=MerkleTree)
    records: list[bytes] = field(default_factory=list)
    accesses: list[Access] = field(default_factory=list)
    by_access_id: dict[str, int] = field(default_factory=dict)
    by_device: dict[str, list[int]] = field(default_factory=dict)
    persisted: int = 0
    """Entries [0, persisted) are in stored segments."""
    head_times: dict[int, datetime] = field(default_factory=dict)
    """Size -> when this replica first signed a head for it (it was the log's size then);
    every later head of that size carries the same time."""

    @property
    def size(self) -> int:
        return len(self.records)

    def append(self, record: bytes, access: Access) -> int:
        index = self.tree.append(leaf_hash(record))
        self.records.append(record)
        self.accesses.append(access)
        self.by_access_id[access.access_id] = index
        if access.device_id:
            self.by_device.setdefault(access.device_id, []).append(index)
        return index

    def covers(
        self, index: int, device_id: str, since: datetime | None, until: datetime | None
    ) -> bool:
        """Whether entry ``index`` matches a listing's filters (camera, occurred_at in
        ``[since, until)``): the same test the SDK applies to every record it is shown."""
        access = self.accesses[index]
        if device_id and access.device_id != device_id:
            return False
        when = access.occurred_at
        return (since is None or when >= since) and (until is None or when < until)

    def pending(self) -> tuple[int, int]:
        """The range of entries not yet in a stored segment."""
        return self.persisted, self.size


class LogBook:
    """All tenants' logs of this replica, and the tenants whose logs were deleted."""

    def __init__(self) -> None:
        self._logs: dict[str, TenantLog] = {}
        self.deleted: set[str] = set()
        """Tenants whose account was deleted: their records are never applied again."""
        self.endings: dict[str, LogEnding] = {}
        """The end of each deleted tenant's log (size, root, time), for its statement."""

    def get(self, tenant_id: str) -> TenantLog | None:
        return self._logs.get(tenant_id)

    def tenants(self) -> Iterator[TenantLog]:
        return iter(list(self._logs.values()))

    def __len__(self) -> int:
        return len(self._logs)

    def apply(self, record: bytes, access: Access) -> int | None:
        """Append a record to its tenant's log; None when the tenant's log was deleted or
        the access id is already logged (a retried produce must not make a second leaf)."""
        tenant = access.tenant_id
        if tenant in self.deleted:
            return None
        log = self._logs.get(tenant)
        if log is None:
            log = self._logs[tenant] = TenantLog(tenant)
        if access.access_id in log.by_access_id:
            return None
        return log.append(record, access)

    def restore(self, tenant_id: str, records: list[tuple[bytes, Access]]) -> TenantLog:
        """Rebuild a tenant's log from stored segments (all of it is persisted)."""
        log = TenantLog(tenant_id)
        log.tree.extend(leaf_hash(record) for record, _ in records)
        for record, access in records:
            index = len(log.records)
            log.records.append(record)
            log.accesses.append(access)
            log.by_access_id.setdefault(access.access_id, index)
            if access.device_id:
                log.by_device.setdefault(access.device_id, []).append(index)
        log.persisted = log.size
        self._logs[tenant_id] = log
        return log

    def delete(self, tenant_id: str, at: datetime) -> None:
        """Drop a tenant's log, remembering its end. The first deletion is the end: a
        replayed or repeated one (the log is already gone) changes nothing."""
        log = self._logs.pop(tenant_id, None)
        if tenant_id not in self.endings:
            if log is not None:
                self.endings[tenant_id] = LogEnding(log.size, log.tree.root(), at)
            else:
                self.endings[tenant_id] = LogEnding(0, EMPTY_ROOT, at)
        self.deleted.add(tenant_id)
