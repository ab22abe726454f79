"""device_auth's durable state on one compacted topic (privacam.identity.state.v1).

One `ReplicatedMap` holds every record. Each value is an `IdentityStateDocument`
whose `json` field is the canonical JSON of one entry (codec.py): records, the
login pointers and the index entries alike. Key layout (`<...>` are ids, never
containing '/' or '#'):

    account/<tenant>                      Account                     group <tenant>
    login/<sha256(login)>                 {"tenant_id": ...}           group = the key
    install/<install>                     AppInstall                  group <tenant>
    camera/<device>                       Camera                      group <tenant>
    grant/<grant>                         Grant                       group <owner tenant>
    tenant/<tenant>/install/<install>     index {"id": <install>}     group <tenant>
    tenant/<tenant>/camera/<device>       index {"id": <device>}      group <tenant>
    tenant/<owner>/given/<grant>          index {"id": <grant>}       group <owner tenant>
    tenant/<grantee>/received/<grant>     index {"id": <grant>}       group <owner tenant>
    device/<device>/grant/<grant>         index {"id": <grant>}       group <owner tenant>

Logins are keyed by their SHA-256, so a released login does not linger in
plain text in its tombstone's key (the account record itself carries it until
compaction removes it). Every entry of a tenant shares its partition (the
group), so partition order settles races on them everywhere.

Index entries name a record by id only, and what they index never changes
(a record's tenant, device, owner and grantee are fixed; `replace` refuses
to change them). Lists read the index, then the record, and keep it only if
it exists and still matches, so an index entry left behind by a crash between
two writes is harmless. `create` writes the index entries first and the record
last; `delete` removes the record first and its index entries after.

Concurrency: within one process, `replace` and `delete` hold a lock per key,
so their compare-and-set is atomic. Across replicas the compare is made on each
replica's own (slightly lagging) copy: two replicas replacing the same record at
once both succeed and the later write in partition order wins (a lost update,
accepted here: the domain's read-modify-writes of one record rarely race across
replicas, and each is recomputed from the latest record on its next change).
`create` (and so the login index) is first-writer-wins across replicas.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from privacam.identity.v1.state_pb2 import IdentityStateDocument
from services.common.kafka import EventProducer, Topic
from services.common.memo import DerivedCache
from services.common.replicated_map import ReplicatedMap
from services.common.settings import KafkaSettings
from services.device_auth.adapters.codec import (
    JsonObject,
    dumps,
    loads,
    optional_time_text,
    parse_optional_time,
    parse_time,
    time_text,
)
from services.device_auth.domain.records import (
    Account,
    AppInstall,
    Camera,
    CameraSettings,
    CertificateRef,
    Grant,
    GrantScope,
)

R = TypeVar("R")


# --- values ------------------------------------------------------------------------


def _document(content: JsonObject) -> bytes:
    return IdentityStateDocument(json=dumps(content)).SerializeToString(deterministic=True)


def _content(value: bytes) -> JsonObject:
    return loads(IdentityStateDocument.FromString(value).json)


def _certificates_json(certificates: tuple[CertificateRef, ...]) -> list[JsonObject]:
    return [{"serial": c.serial_hex, "not_after": time_text(c.not_after)} for c in certificates]


def _parse_certificates(items: list[JsonObject]) -> tuple[CertificateRef, ...]:
    return tuple(CertificateRef(int(c["serial"], 16), parse_time(c["not_after"])) for c in items)


def _account_json(account: Account) -> JsonObject:
    return {
        "tenant_id": account.tenant_id,
        "login": account.login,
        "password_hash": account.password_hash,
        "created_at": time_text(account.created_at),
    }


def _parse_account(d: JsonObject) -> Account:
    return Account(d["tenant_id"], d["login"], d["password_hash"], parse_time(d["created_at"]))


def _install_json(install: AppInstall) -> JsonObject:
    return {
        "install_id": install.install_id,
        "tenant_id": install.tenant_id,
        "label": install.label,
        "enrolled_at": time_text(install.enrolled_at),
        "certificates": _certificates_json(install.certificates),
    }


def _parse_install(d: JsonObject) -> AppInstall:
    return AppInstall(
        install_id=d["install_id"],
        tenant_id=d["tenant_id"],
        label=d["label"],
        enrolled_at=parse_time(d["enrolled_at"]),
        certificates=_parse_certificates(d["certificates"]),
    )


def _camera_json(camera: Camera) -> JsonObject:
    return {
        "device_id": camera.device_id,
        "tenant_id": camera.tenant_id,
        "serial": camera.serial,
        "enrolled_at": time_text(camera.enrolled_at),
        "certificates": _certificates_json(camera.certificates),
        "settings": {
            "activity_alerts_enabled": camera.settings.activity_alerts_enabled,
            "retention_days": camera.settings.retention_days,
            "label": camera.settings.label,
            "watch_muted": list(camera.settings.watch_muted),
            "watch_burst_count": camera.settings.watch_burst_count,
        },
        "pin_hash": camera.pin_hash,
        "key_sha256": camera.key_sha256,
        "privacy": base64.b64encode(camera.privacy).decode(),
    }


def _parse_camera(d: JsonObject) -> Camera:
    settings = d["settings"]
    return Camera(
        device_id=d["device_id"],
        tenant_id=d["tenant_id"],
        serial=d["serial"],
        enrolled_at=parse_time(d["enrolled_at"]),
        certificates=_parse_certificates(d["certificates"]),
        settings=CameraSettings(
            activity_alerts_enabled=settings["activity_alerts_enabled"],
            retention_days=settings["retention_days"],
            label=settings.get("label", ""),
            watch_muted=tuple(settings.get("watch_muted", ())),
            watch_burst_count=int(settings.get("watch_burst_count", 0)),
        ),
        pin_hash=d.get("pin_hash"),
        key_sha256=d.get("key_sha256", ""),
        privacy=base64.b64decode(d.get("privacy", "")),
    )


def _grant_json(grant: Grant) -> JsonObject:
    return {
        "grant_id": grant.grant_id,
        "device_id": grant.device_id,
        "owner_tenant_id": grant.owner_tenant_id,
        "grantee_tenant_id": grant.grantee_tenant_id,
        "scopes": sorted(scope.value for scope in grant.scopes),
        "created_at": time_text(grant.created_at),
        "expires_at": optional_time_text(grant.expires_at),
    }


def _parse_grant(d: JsonObject) -> Grant:
    return Grant(
        grant_id=d["grant_id"],
        device_id=d["device_id"],
        owner_tenant_id=d["owner_tenant_id"],
        grantee_tenant_id=d["grantee_tenant_id"],
        scopes=frozenset(GrantScope(scope) for scope in d["scopes"]),
        created_at=parse_time(d["created_at"]),
        expires_at=parse_optional_time(d.get("expires_at")),
    )


# --- keys ----------------------------------------------------------------------------


def _checked(record_id: str) -> str:
    if not record_id or "/" in record_id or "#" in record_id:
        raise ValueError(f"{record_id!r} cannot be part of a state key")
    return record_id


def login_key(login: str) -> str:
    return f"login/{hashlib.sha256(login.encode()).hexdigest()}"


@dataclass(frozen=True)
class _Kind(Generic[R]):
    prefix: str
    record_id: Callable[[R], str]
    group: Callable[[R], str]
    indexes: Callable[[R], tuple[str, ...]]
    """Keys of the record's index entries: fixed for the record's whole life."""
    encode: Callable[[R], JsonObject]
    decode: Callable[[JsonObject], R]
    order: Callable[[R], tuple[Any, ...]]
    """How lists are sorted (the same on every replica)."""

    def key(self, record_id: str) -> str:
        return f"{self.prefix}/{_checked(record_id)}"


ACCOUNTS: _Kind[Account] = _Kind(
    prefix="account",
    record_id=lambda a: a.tenant_id,
    group=lambda a: a.tenant_id,
    indexes=lambda a: (),
    encode=_account_json,
    decode=_parse_account,
    order=lambda a: (a.created_at, a.tenant_id),
)
INSTALLS: _Kind[AppInstall] = _Kind(
    prefix="install",
    record_id=lambda i: i.install_id,
    group=lambda i: i.tenant_id,
    indexes=lambda i: (f"tenant/{_checked(i.tenant_id)}/install/{_checked(i.install_id)}",),
    encode=_install_json,
    decode=_parse_install,
    order=lambda i: (i.enrolled_at, i.install_id),
)
CAMERAS: _Kind[Camera] = _Kind(
    prefix="camera",
    record_id=lambda c: c.device_id,
    group=lambda c: c.tenant_id,
    indexes=lambda c: (f"tenant/{_checked(c.tenant_id)}/camera/{_checked(c.device_id)}",),
    encode=_camera_json,
    decode=_parse_camera,
    order=lambda c: (c.enrolled_at, c.device_id),
)
GRANTS: _Kind[Grant] = _Kind(
    prefix="grant",
    record_id=lambda g: g.grant_id,
    group=lambda g: g.owner_tenant_id,
    indexes=lambda g: (
        f"tenant/{_checked(g.owner_tenant_id)}/given/{_checked(g.grant_id)}",
        f"tenant/{_checked(g.grantee_tenant_id)}/received/{_checked(g.grant_id)}",
        f"device/{_checked(g.device_id)}/grant/{_checked(g.grant_id)}",
    ),
    encode=_grant_json,
    decode=_parse_grant,
    order=lambda g: (g.created_at, g.grant_id),
)


# --- stores ----------------------------------------------------------------------------


class _Locks:
    """One asyncio.Lock per key, alive only while someone holds or awaits it."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        async with lock:
            yield


class _Records(Generic[R]):
    """RecordStore[R] over the shared map (see the module docstring)."""

    def __init__(self, entries: ReplicatedMap, locks: _Locks, kind: _Kind[R]) -> None:
        self._map = entries
        self._locks = locks
        self._kind = kind
        # Records are immutable: each stored value is decoded once, not on every read.
        self._decoded: DerivedCache[str, bytes, R] = DerivedCache(self._decode)

    def _decode(self, value: bytes) -> R:
        return self._kind.decode(_content(value))

    def _read(self, key: str) -> R | None:
        value = self._map.get(key)
        return None if value is None else self._decoded.get(key, value)

    async def create(self, record: R) -> bool:
        kind = self._kind
        key = kind.key(kind.record_id(record))
        if self._map.get(key) is not None:
            return False
        group = kind.group(record)
        record_id = kind.record_id(record)
        indexes = kind.indexes(record)
        for index in indexes:
            await self._map.create(index, _document({"id": record_id}), group)
        if await self._map.create(key, _document(kind.encode(record)), group):
            return True
        # Lost to an existing record: drop the index entries it does not share.
        async with self._locks.hold(key):
            current = self._read(key)
            keep = set(kind.indexes(current)) if current is not None else set()
            for index in indexes:
                if index not in keep:
                    await self._map.delete(index, group)
        return False

    async def get(self, record_id: str) -> R | None:
        return self._read(self._kind.key(record_id))

    async def replace(self, expected: R, new: R) -> bool:
        kind = self._kind
        record_id = kind.record_id(expected)
        if kind.record_id(new) != record_id:
            return False
        if kind.indexes(new) != kind.indexes(expected) or kind.group(new) != kind.group(expected):
            raise ValueError(f"a {kind.prefix} record's owner and links cannot change")
        key = kind.key(record_id)
        async with self._locks.hold(key):
            if self._read(key) != expected:
                return False
            if new == expected:
                return True
            return await self._map.update(key, _document(kind.encode(new)), kind.group(new))

    async def delete(self, record_id: str) -> bool:
        kind = self._kind
        key = kind.key(record_id)
        async with self._locks.hold(key):
            current = self._read(key)
            if current is None:
                return False
            group = kind.group(current)
            await self._map.delete(key, group)
            for index in kind.indexes(current):
                await self._map.delete(index, group)
            return True

    def _indexed(self, prefix: str, keep: Callable[[R], bool]) -> list[R]:
        """Records named by the index entries under `prefix` that exist and match."""
        found: list[R] = []
        for index_key, _ in self._map.items(prefix):
            record = self._read(self._kind.key(index_key[len(prefix) :]))
            if record is not None and keep(record):
                found.append(record)
        return sorted(found, key=self._kind.order)


class KafkaAccounts(_Records[Account]):
    """Accounts port: `account/<tenant>` records and the `login/<sha256>` pointers."""

    def __init__(self, entries: ReplicatedMap, locks: _Locks) -> None:
        super().__init__(entries, locks, ACCOUNTS)

    async def claim_login(self, login: str, tenant_id: str) -> bool:
        key = login_key(login)
        if await self._map.create(key, _document({"tenant_id": tenant_id}), group=key):
            return True
        return await self.tenant_for_login(login) == tenant_id

    async def release_login(self, login: str, tenant_id: str) -> None:
        key = login_key(login)
        async with self._locks.hold(key):
            # The delete addresses the proposal this replica saw: if another replica
            # released and someone re-claimed the login meanwhile, it is a no-op.
            if await self.tenant_for_login(login) == tenant_id:
                await self._map.delete(key, group=key)

    async def tenant_for_login(self, login: str) -> str | None:
        value = self._map.get(login_key(login))
        if value is None:
            return None
        tenant_id: str = _content(value)["tenant_id"]
        return tenant_id


class KafkaInstalls(_Records[AppInstall]):
    def __init__(self, entries: ReplicatedMap, locks: _Locks) -> None:
        super().__init__(entries, locks, INSTALLS)

    async def list_for_tenant(self, tenant_id: str) -> list[AppInstall]:
        return self._indexed(
            f"tenant/{_checked(tenant_id)}/install/", lambda i: i.tenant_id == tenant_id
        )


class KafkaCameras(_Records[Camera]):
    def __init__(self, entries: ReplicatedMap, locks: _Locks) -> None:
        super().__init__(entries, locks, CAMERAS)

    async def list_for_tenant(self, tenant_id: str) -> list[Camera]:
        return self._indexed(
            f"tenant/{_checked(tenant_id)}/camera/", lambda c: c.tenant_id == tenant_id
        )

    async def find_serial(self, tenant_id: str, serial: str) -> Camera | None:
        """A scan of the tenant's cameras (a household has few); the newest if several."""
        matching = [c for c in await self.list_for_tenant(tenant_id) if c.serial == serial]
        return matching[-1] if matching else None


class KafkaGrants(_Records[Grant]):
    def __init__(self, entries: ReplicatedMap, locks: _Locks) -> None:
        super().__init__(entries, locks, GRANTS)

    async def list_for_device(self, device_id: str) -> list[Grant]:
        return self._indexed(
            f"device/{_checked(device_id)}/grant/", lambda g: g.device_id == device_id
        )

    async def list_given(self, owner_tenant_id: str) -> list[Grant]:
        return self._indexed(
            f"tenant/{_checked(owner_tenant_id)}/given/",
            lambda g: g.owner_tenant_id == owner_tenant_id,
        )

    async def list_received(self, grantee_tenant_id: str) -> list[Grant]:
        return self._indexed(
            f"tenant/{_checked(grantee_tenant_id)}/received/",
            lambda g: g.grantee_tenant_id == grantee_tenant_id,
        )

    async def list_expired(self, now: datetime, limit: int) -> list[Grant]:
        """A scan of every grant record (local, like every list here; run once a minute)."""
        expired = [
            grant
            for _, value in self._map.items(f"{GRANTS.prefix}/")
            for grant in [GRANTS.decode(_content(value))]
            if grant.expires_at is not None and grant.expires_at <= now
        ]
        expired.sort(key=lambda g: (g.expires_at, g.grant_id))
        return expired[:limit]


class IdentityState:
    """The component holding the replicated map, and the four stores over it.

    `start()` replays the whole topic (call it before serving); reads are then
    local and writes return once this replica has applied them.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: Topic[IdentityStateDocument],
        producer: EventProducer,
    ) -> None:
        self._map = ReplicatedMap(settings, topic, producer)
        locks = _Locks()
        self.accounts = KafkaAccounts(self._map, locks)
        self.installs = KafkaInstalls(self._map, locks)
        self.cameras = KafkaCameras(self._map, locks)
        self.grants = KafkaGrants(self._map, locks)

    async def start(self) -> None:
        await self._map.start()

    async def stop(self) -> None:
        await self._map.stop()

    async def catch_up(self) -> None:
        """Wait until every write made anywhere before this call is applied here."""
        await self._map.catch_up()

    def __len__(self) -> int:
        """Entries in the map (records, login pointers and index entries)."""
        return len(self._map)
