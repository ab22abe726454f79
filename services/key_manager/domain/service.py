"""Key management use cases: generate, unwrap, rotate, destroy, list.

Ports (implemented by adapters): the durable state log, the key-use event sink
and the access-log receipt verifier. Time comes from the injected clock.

A receipt releases one key once, on any replica, ever: the verifier checks that it proves
this very access, made recently by the calling service; the state log then claims its
access id durably, and the first claim in the log's order wins everywhere.
"""

from __future__ import annotations

import asyncio
import enum
import os
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from services.common.clock import Clock
from services.key_manager.domain.keyring import (
    KEY_BYTES,
    KeyContext,
    Keyring,
    RootSealer,
    SealedKek,
    TenantGone,
    UnknownVersion,
    WrongContext,
    unwrap,
    wrap,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Purpose(enum.Enum):
    """Why a data key is released. Every release decrypts content, so every one needs an
    access-log receipt; incident response included (the household sees it too)."""

    CLIP_PLAYBACK = "clip_playback"
    DATA_EXPORT = "data_export"
    OPERATOR_SUPPORT = "operator_support"
    INCIDENT_RESPONSE = "incident_response"


@dataclass(frozen=True)
class WrappedKey:
    tenant_id: str
    version: int
    ciphertext: bytes


@dataclass(frozen=True)
class VersionInfo:
    tenant_id: str
    version: int
    period_start: datetime | None
    period_end: datetime | None
    state: str  # "active", "decrypt_only" or "destroyed"
    destroyed_at: datetime | None


class StateLog(Protocol):
    async def propose(self, kek: SealedKek) -> None:
        """Make the proposal durable and wait until the keyring has applied it."""
        ...

    async def discard(self, kek: SealedKek) -> None:
        """Tombstone a proposal that lost its race."""
        ...

    async def destroy(
        self,
        tenant_id: str,
        version: int,
        destroyed_at: datetime,
        period_start: datetime | None,
        proposal_ids: list[str],
    ) -> None:
        """Durably mark the version destroyed and tombstone its sealed KEKs."""
        ...

    async def catch_up(self) -> None:
        """Wait until every record written before now is applied."""
        ...

    async def forget_tenant(
        self, tenant_id: str, versions: list[int], destroyed_at: datetime
    ) -> None:
        """Once all its versions are destroyed: keep one marker naming the tenant by a
        digest only, drop the per-version markers, never make keys for it again."""
        ...

    async def claim_access(self, tenant_id: str, access_id: str, occurred_at: datetime) -> bool:
        """Durably claim an access-log receipt (by its access id) for one key release, and
        wait until the claim is applied: True only when this claim is the first of that
        access on every replica (False: used before, here or on another replica). The claim
        may be forgotten once ``occurred_at`` is older than any receipt may be."""
        ...


class KeyEvents(Protocol):
    def generated(self, context: KeyContext, version: int) -> None: ...
    def unwrapped(
        self, context: KeyContext, version: int, purpose: Purpose, access_id: str, leaf_index: int
    ) -> None: ...
    def rewrapped(self, context: KeyContext, from_version: int, to_version: int) -> None: ...
    def rotated(self, current: VersionInfo, previous: VersionInfo | None) -> None: ...
    def period_destroyed(self, destroyed: VersionInfo) -> None: ...
    def tenant_destroyed(self, tenant_id: str, count: int, cancellation_id: str) -> None: ...


@dataclass(frozen=True)
class AccessProof:
    """What a verified receipt proved: which log entry recorded this access, and when the
    access was made."""

    access_id: str
    leaf_index: int
    occurred_at: datetime


class ReceiptRefused(Exception):
    """The receipt does not allow releasing this key (PERMISSION_DENIED); nothing is
    released. ``reason`` is a short label for metrics (missing, invalid, stale,
    other_access, wrong_service, already_used)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"receipt refused: {message}")
        self.reason = reason


class KeyMetrics(Protocol):
    def wrapped_under(self, kek_age: timedelta) -> None:
        """A data key was wrapped under a KEK this old (stays below the period when rotating)."""
        ...

    def version_created(self, lag: timedelta) -> None:
        """A period's version was created this long after the period began."""
        ...

    def receipt_refused(self, reason: str) -> None:
        """An unwrap was refused for its receipt (ReceiptRefused.reason)."""
        ...


class ReceiptVerifier(Protocol):
    async def verify(
        self, receipt: object, context: KeyContext, purpose: Purpose, caller: str
    ) -> AccessProof:
        """Check the receipt proves this access, made through the calling service
        ``caller`` (its certificate's service name), is recently in the tenant's log;
        raise ReceiptRefused if not. Says nothing of earlier use: see StateLog.claim_access."""
        ...


class KeyService:
    def __init__(
        self,
        root: RootSealer,
        keyring: Keyring,
        state: StateLog,
        events: KeyEvents,
        receipts: ReceiptVerifier,
        clock: Clock,
        rotation_period: timedelta,
        metrics: KeyMetrics | None = None,
    ) -> None:
        self._root = root
        self._keyring = keyring
        self._state = state
        self._events = events
        self._receipts = receipts
        self._clock = clock
        self._period = rotation_period
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._metrics = metrics

    def period_start(self, moment: datetime) -> datetime:
        periods = (moment - _EPOCH) // self._period
        return _EPOCH + periods * self._period

    # --- versions -------------------------------------------------------------------

    async def _current(self, tenant_id: str, force_new: bool = False) -> SealedKek:
        """The tenant's KEK for now, creating the period's version on first use."""
        if self._keyring.gone(tenant_id):
            raise TenantGone()
        async with self._locks[tenant_id]:
            keys = self._keyring.tenant(tenant_id)
            period = self.period_start(self._clock.now())
            latest = keys.latest()
            newest = keys.versions.get(latest)
            if newest is not None and newest.period_start == period and not force_new:
                return newest
            proposal = self._propose(tenant_id, latest + 1, period)
            await self._state.propose(proposal)
            winner = self._keyring.sealed(tenant_id, proposal.version)
            if winner.proposal_id != proposal.proposal_id:
                await self._state.discard(proposal)  # another replica was first: use its key
            elif self._metrics is not None:
                self._metrics.version_created(proposal.created_at - period)
            if newest is not None or force_new:
                previous = self._info(tenant_id, latest) if latest else None
                self._events.rotated(self._info(tenant_id, winner.version), previous)
            return winner

    def _propose(self, tenant_id: str, version: int, period: datetime) -> SealedKek:
        proposal_id = secrets.token_hex(16)
        return SealedKek(
            tenant_id=tenant_id,
            version=version,
            period_start=period,
            created_at=self._clock.now(),
            proposal_id=proposal_id,
            root_key_id=self._root.key_id,
            sealed_key=self._root.seal(os.urandom(KEY_BYTES), tenant_id, version, proposal_id),
        )

    async def _sealed(self, tenant_id: str, version: int) -> SealedKek:
        try:
            return self._keyring.sealed(tenant_id, version)
        except UnknownVersion:
            # Another replica may have created it a moment ago: read up to now, look again.
            await self._state.catch_up()
            return self._keyring.sealed(tenant_id, version)

    def _kek(self, sealed: SealedKek) -> bytes:
        return self._root.unseal(
            sealed.sealed_key, sealed.tenant_id, sealed.version, sealed.proposal_id
        )

    # --- data keys ------------------------------------------------------------------

    async def generate(self, context: KeyContext) -> tuple[bytes, WrappedKey]:
        sealed = await self._current(context.tenant_id)
        data_key = os.urandom(KEY_BYTES)
        wrapped = wrap(self._kek(sealed), data_key, sealed.version, context)
        self._events.generated(context, sealed.version)
        if self._metrics is not None:
            self._metrics.wrapped_under(self._clock.now() - sealed.created_at)
        return data_key, WrappedKey(context.tenant_id, sealed.version, wrapped)

    async def _open(self, wrapped: WrappedKey, context: KeyContext) -> bytes:
        if wrapped.tenant_id != context.tenant_id:
            raise WrongContext("the key was wrapped for another context, or altered")
        sealed = await self._sealed(wrapped.tenant_id, wrapped.version)
        return unwrap(self._kek(sealed), wrapped.ciphertext, wrapped.version, context)

    async def unwrap(
        self,
        wrapped: WrappedKey,
        context: KeyContext,
        purpose: Purpose,
        receipt: object | None,
        caller: str,
    ) -> bytes:
        """Release a data key, only against a receipt that this access, made through
        ``caller`` (the calling service's name), is already logged, and only once: the
        receipt is claimed after the key opens (a request that fails anyway does not use
        it up) and before it is released."""
        try:
            proof = await self._receipts.verify(receipt, context, purpose, caller)
            data_key = await self._open(wrapped, context)
            if not await self._state.claim_access(
                context.tenant_id, proof.access_id, proof.occurred_at
            ):
                raise ReceiptRefused(
                    "already_used",
                    "it was already used to release a key; log the access again for a new one",
                )
        except ReceiptRefused as refused:
            if self._metrics is not None:
                self._metrics.receipt_refused(refused.reason)
            raise
        self._events.unwrapped(context, wrapped.version, purpose, proof.access_id, proof.leaf_index)
        return data_key

    # --- lifecycle -------------------------------------------------------------------

    async def rotate(self, tenant_id: str) -> tuple[VersionInfo, VersionInfo | None]:
        previous_version = self._keyring.tenant(tenant_id).latest()
        current = await self._current(tenant_id, force_new=True)
        previous = self._info(tenant_id, previous_version) if previous_version else None
        return self._info(tenant_id, current.version), previous

    async def destroy_version(self, tenant_id: str, version: int) -> VersionInfo:
        """Crypto-shred one version: everything it wrapped is unreadable everywhere. Idempotent."""
        async with self._locks[tenant_id]:
            keys = self._keyring.tenant(tenant_id)
            if version not in keys.destroyed:
                sealed = await self._sealed(tenant_id, version)
                await self._state.destroy(
                    tenant_id, version, self._clock.now(), sealed.period_start, [sealed.proposal_id]
                )
                self._events.period_destroyed(self._info(tenant_id, version))
            return self._info(tenant_id, version)

    async def destroy_tenant(self, tenant_id: str, cancellation_id: str) -> list[VersionInfo]:
        """Destroy every version of a tenant (account cancellation). Idempotent."""
        await self._state.catch_up()
        keys = self._keyring.tenant(tenant_id)
        for version in sorted(keys.versions):
            await self.destroy_version(tenant_id, version)
        if self._keyring.gone(tenant_id):
            return []  # a retry of a finished cancellation
        destroyed = [
            self._info(tenant_id, v) for v in sorted(self._keyring.tenant(tenant_id).destroyed)
        ]
        await self._state.forget_tenant(
            tenant_id, [info.version for info in destroyed], self._clock.now()
        )
        self._events.tenant_destroyed(tenant_id, len(destroyed), cancellation_id)
        return destroyed

    def versions(self, tenant_id: str, include_destroyed: bool) -> list[VersionInfo]:
        keys = self._keyring.tenant(tenant_id)
        numbers = set(keys.versions) | (set(keys.destroyed) if include_destroyed else set())
        return [self._info(tenant_id, v) for v in sorted(numbers)]

    def _info(self, tenant_id: str, version: int) -> VersionInfo:
        keys = self._keyring.tenant(tenant_id)
        if version in keys.destroyed:
            destroyed_at, start = keys.destroyed[version]
            return VersionInfo(
                tenant_id, version, start, self._end(tenant_id, version), "destroyed", destroyed_at
            )
        sealed = keys.versions[version]
        newest = version == keys.latest()
        current = newest and sealed.period_start == self.period_start(self._clock.now())
        return VersionInfo(
            tenant_id,
            version,
            sealed.period_start,
            None if current else self._end(tenant_id, version),
            "active" if current else "decrypt_only",
            None,
        )

    def _end(self, tenant_id: str, version: int) -> datetime | None:
        """A version ends when the next begins, or at the end of its period."""
        keys = self._keyring.tenant(tenant_id)
        successor = keys.versions.get(version + 1)
        if successor is not None:
            return successor.created_at
        start = (
            keys.versions[version].period_start
            if version in keys.versions
            else (keys.destroyed[version][1] if version in keys.destroyed else None)
        )
        return start + self._period if start is not None else None
