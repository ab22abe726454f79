"""The key hierarchy as a specification: envelope keys, rotation, crypto-shredding, races."""

from __future__ import annotations

import asyncio
import itertools
import os
from datetime import UTC, datetime, timedelta

import pytest

from services.common.clock import FakeClock
from services.common.errors import FailedPrecondition
from services.key_manager.adapters.receipts import AccessLogNotDeployed
from services.key_manager.domain.keyring import (
    KeyContext,
    Keyring,
    RootKey,
    SealedKek,
    TenantGone,
    UnknownVersion,
    VersionDestroyed,
    WrongContext,
    WrongRootKey,
    tenant_digest,
)
from services.key_manager.domain.service import (
    AccessProof,
    KeyService,
    Purpose,
    ReceiptRefused,
    VersionInfo,
    WrappedKey,
)

DAY = timedelta(days=1)
CLIP = KeyContext("tenant-a", "cam-1", "clip-0001")
CALLER = "clip-ingest"
_ACCESS_IDS = itertools.count(1)


class SharedLog:
    """An in-memory stand-in for the compacted topic, shared by 'replicas' (unit tests only;
    the integration tests use real Kafka)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, object]] = []
        self.keyrings: list[Keyring] = []
        self.used: list[tuple[str, str]] = []  # claims of receipts, in log order

    def replica(self) -> Keyring:
        keyring = Keyring()
        for kind, record in self.records:
            self._apply(keyring, kind, record)
        self.keyrings.append(keyring)
        return keyring

    def _apply(self, keyring: Keyring, kind: str, record: object) -> None:
        if kind == "kek":
            assert isinstance(record, SealedKek)
            keyring.apply_kek(record)
        elif kind == "destroyed":
            keyring.apply_destroyed(*record)  # type: ignore[misc]
        elif kind == "tenant_gone":
            assert isinstance(record, bytes)
            keyring.apply_tenant_gone(record)

    def append(self, kind: str, record: object) -> None:
        self.records.append((kind, record))
        for keyring in self.keyrings:
            self._apply(keyring, kind, record)


class LogPort:
    def __init__(self, log: SharedLog) -> None:
        self.log = log
        self.discarded: list[str] = []

    async def propose(self, kek: SealedKek) -> None:
        await asyncio.sleep(0)  # let a concurrent replica interleave
        self.log.append("kek", kek)

    async def discard(self, kek: SealedKek) -> None:
        self.discarded.append(kek.proposal_id)

    async def destroy(
        self,
        tenant_id: str,
        version: int,
        destroyed_at: datetime,
        period_start: datetime | None,
        proposal_ids: list[str],
    ) -> None:
        self.log.append("destroyed", (tenant_id, version, destroyed_at, period_start))

    async def catch_up(self) -> None:
        return None

    async def forget_tenant(
        self, tenant_id: str, versions: list[int], destroyed_at: datetime
    ) -> None:
        self.log.append("tenant_gone", tenant_digest(tenant_id))

    async def claim_access(self, tenant_id: str, access_id: str, occurred_at: datetime) -> bool:
        claim = (tenant_id, access_id)
        position = len(self.log.used)
        self.log.used.append(claim)
        await asyncio.sleep(0)  # let a concurrent replica interleave
        return self.log.used.index(claim) == position  # the first claim wins


class Events:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def generated(self, context: KeyContext, version: int) -> None:
        self.seen.append(f"generated v{version}")

    def unwrapped(
        self, context: KeyContext, version: int, purpose: Purpose, access_id: str, leaf_index: int
    ) -> None:
        self.seen.append(f"unwrapped v{version} {purpose.value} {access_id}")

    def rewrapped(self, context: KeyContext, from_version: int, to_version: int) -> None:
        self.seen.append(f"rewrapped v{from_version}->v{to_version}")

    def rotated(self, current: VersionInfo, previous: VersionInfo | None) -> None:
        self.seen.append(f"rotated v{current.version}")

    def period_destroyed(self, destroyed: VersionInfo) -> None:
        self.seen.append(f"destroyed v{destroyed.version}")

    def tenant_destroyed(self, tenant_id: str, count: int, cancellation_id: str) -> None:
        self.seen.append(f"tenant destroyed {count}")


class AcceptingLog:
    """A receipt verifier that accepts everything: only for tests of the key hierarchy. A
    receipt that is a string is that access id; any other gets a new access id."""

    async def verify(
        self, receipt: object, context: KeyContext, purpose: Purpose, caller: str
    ) -> AccessProof:
        access_id = receipt if isinstance(receipt, str) else f"access-{next(_ACCESS_IDS)}"
        return AccessProof(access_id, 7, datetime(2026, 1, 1, tzinfo=UTC))


class Metrics:
    def __init__(self) -> None:
        self.refused: list[str] = []

    def wrapped_under(self, kek_age: timedelta) -> None: ...

    def version_created(self, lag: timedelta) -> None: ...

    def receipt_refused(self, reason: str) -> None:
        self.refused.append(reason)


ROOT = RootKey(os.urandom(32))


def service(
    log: SharedLog,
    clock: FakeClock,
    events: Events | None = None,
    root: RootKey = ROOT,
    metrics: Metrics | None = None,
) -> KeyService:
    return KeyService(
        root,
        log.replica(),
        LogPort(log),
        events or Events(),
        AcceptingLog(),
        clock,
        rotation_period=DAY,
        metrics=metrics,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_a_data_key_round_trips_through_its_wrapping(clock: FakeClock) -> None:
    keys = service(SharedLog(), clock)
    data_key, wrapped = await keys.generate(CLIP)
    assert len(data_key) == 32
    assert data_key not in wrapped.ciphertext
    assert (
        await keys.unwrap(wrapped, CLIP, Purpose.CLIP_PLAYBACK, receipt=object(), caller=CALLER)
        == data_key
    )


@pytest.mark.parametrize(
    "other",
    [
        KeyContext("tenant-b", "cam-1", "clip-0001"),
        KeyContext("tenant-a", "cam-2", "clip-0001"),
        KeyContext("tenant-a", "cam-1", "clip-0002"),
    ],
)
async def test_unwrap_fails_closed_for_any_other_context(
    clock: FakeClock, other: KeyContext
) -> None:
    keys = service(SharedLog(), clock)
    await keys.generate(KeyContext(other.tenant_id, "cam-9", "clip-9"))  # other tenant has keys
    _, wrapped = await keys.generate(CLIP)
    moved = WrappedKey(other.tenant_id, wrapped.version, wrapped.ciphertext)
    with pytest.raises(WrongContext):
        await keys.unwrap(moved, other, Purpose.CLIP_PLAYBACK, receipt=object(), caller=CALLER)
    with pytest.raises(WrongContext):
        await keys.unwrap(wrapped, other, Purpose.CLIP_PLAYBACK, receipt=object(), caller=CALLER)


async def test_altered_wrapping_fails(clock: FakeClock) -> None:
    keys = service(SharedLog(), clock)
    _, wrapped = await keys.generate(CLIP)
    altered = bytearray(wrapped.ciphertext)
    altered[-1] ^= 1
    with pytest.raises(WrongContext):
        await keys.unwrap(
            WrappedKey("tenant-a", wrapped.version, bytes(altered)),
            CLIP,
            Purpose.CLIP_PLAYBACK,
            receipt=object(),
            caller=CALLER,
        )


async def test_rotation_each_period_keeps_old_clips_open(clock: FakeClock) -> None:
    events = Events()
    keys = service(SharedLog(), clock, events)
    old_key, old = await keys.generate(CLIP)
    clock.advance(DAY)
    new_key, new = await keys.generate(KeyContext("tenant-a", "cam-1", "clip-0002"))
    assert (old.version, new.version) == (1, 2)
    assert await keys.unwrap(old, CLIP, Purpose.CLIP_PLAYBACK, object(), CALLER) == old_key
    states = [(v.version, v.state) for v in keys.versions("tenant-a", include_destroyed=False)]
    assert states == [(1, "decrypt_only"), (2, "active")]
    assert "rotated v2" in events.seen
    assert new_key != old_key


async def test_same_period_reuses_the_version(clock: FakeClock) -> None:
    keys = service(SharedLog(), clock)
    _, first = await keys.generate(CLIP)
    clock.advance(DAY / 2)
    _, second = await keys.generate(CLIP)
    assert first.version == second.version == 1


async def test_rotate_starts_a_new_version_now(clock: FakeClock) -> None:
    keys = service(SharedLog(), clock)
    await keys.generate(CLIP)
    current, previous = await keys.rotate("tenant-a")
    assert (current.version, current.state) == (2, "active")
    assert previous is not None
    assert (previous.version, previous.state) == (1, "decrypt_only")
    _, wrapped = await keys.generate(CLIP)
    assert wrapped.version == 2


async def test_a_destroyed_period_cannot_open_even_a_copy_taken_before(clock: FakeClock) -> None:
    log = SharedLog()
    keys = service(log, clock)
    _, wrapped = await keys.generate(CLIP)
    copy = WrappedKey(wrapped.tenant_id, wrapped.version, bytes(wrapped.ciphertext))
    destroyed = await keys.destroy_version("tenant-a", 1)
    assert destroyed.state == "destroyed"
    with pytest.raises(VersionDestroyed, match="crypto-shredded"):
        await keys.unwrap(copy, CLIP, Purpose.CLIP_PLAYBACK, object(), CALLER)
    # A replica started later, from the same log, agrees.
    with pytest.raises(VersionDestroyed):
        await service(log, clock).unwrap(copy, CLIP, Purpose.CLIP_PLAYBACK, object(), CALLER)
    # Destroying again is harmless, and a new clip gets a new version, never version 1 again.
    assert (await keys.destroy_version("tenant-a", 1)).destroyed_at == destroyed.destroyed_at
    _, fresh = await keys.generate(CLIP)
    assert fresh.version == 2


async def test_destroying_a_tenant_destroys_every_version(clock: FakeClock) -> None:
    log = SharedLog()
    keys = service(log, clock)
    for _ in range(3):
        _, old = await keys.generate(CLIP)
        clock.advance(DAY)
    other_key, other = await keys.generate(KeyContext("tenant-b", "cam-1", "clip-1"))
    destroyed = await keys.destroy_tenant("tenant-a", "cancel-1")
    assert [v.state for v in destroyed] == ["destroyed"] * 3
    assert keys.versions("tenant-a", include_destroyed=True) == []  # forgotten, not listed
    # What outlives the account names it only by a digest ...
    assert log.records[-1] == ("tenant_gone", tenant_digest("tenant-a"))
    # ... keys are never made for it again, old ones never open, a retry changes nothing,
    # and a replica replaying the log agrees.
    with pytest.raises(TenantGone):
        await keys.generate(CLIP)
    with pytest.raises(TenantGone):
        await keys.unwrap(old, CLIP, Purpose.CLIP_PLAYBACK, object(), CALLER)
    assert await keys.destroy_tenant("tenant-a", "cancel-1") == []
    with pytest.raises(TenantGone):
        await service(log, clock).generate(CLIP)
    assert (
        await keys.unwrap(
            other,
            KeyContext("tenant-b", "cam-1", "clip-1"),
            Purpose.CLIP_PLAYBACK,
            object(),
            CALLER,
        )
        == other_key
    )


async def test_unknown_version_is_not_found(clock: FakeClock) -> None:
    keys = service(SharedLog(), clock)
    _, wrapped = await keys.generate(CLIP)
    with pytest.raises(UnknownVersion):
        await keys.unwrap(
            WrappedKey("tenant-a", 9, wrapped.ciphertext),
            CLIP,
            Purpose.CLIP_PLAYBACK,
            object(),
            CALLER,
        )


async def test_two_replicas_racing_agree_on_one_key(clock: FakeClock) -> None:
    log = SharedLog()
    first, second = service(log, clock), service(log, clock)
    (key_1, wrapped_1), (key_2, wrapped_2) = await asyncio.gather(
        first.generate(CLIP), second.generate(CLIP)
    )
    assert wrapped_1.version == wrapped_2.version == 1
    # Each replica opens what the other wrapped: they use the same winning KEK.
    assert await second.unwrap(wrapped_1, CLIP, Purpose.CLIP_PLAYBACK, object(), CALLER) == key_1
    assert await first.unwrap(wrapped_2, CLIP, Purpose.CLIP_PLAYBACK, object(), CALLER) == key_2


async def test_sealed_keys_are_useless_without_the_root_key(clock: FakeClock) -> None:
    log = SharedLog()
    keys = service(log, clock)
    _, wrapped = await keys.generate(CLIP)
    sealed = log.records[0][1]
    assert isinstance(sealed, SealedKek)
    with pytest.raises(WrongRootKey):
        RootKey(os.urandom(32)).unseal(sealed.sealed_key, "tenant-a", 1, sealed.proposal_id)
    impostor = service(log, clock, root=RootKey(os.urandom(32)))
    with pytest.raises(WrongRootKey):
        await impostor.unwrap(wrapped, CLIP, Purpose.CLIP_PLAYBACK, object(), CALLER)


async def test_viewing_without_an_access_log_stays_closed(clock: FakeClock) -> None:
    log = SharedLog()
    keys = KeyService(
        ROOT,
        log.replica(),
        LogPort(log),
        Events(),
        AccessLogNotDeployed(),
        clock,
        rotation_period=DAY,
    )
    _, wrapped = await keys.generate(CLIP)
    with pytest.raises(FailedPrecondition, match="access log"):
        await keys.unwrap(wrapped, CLIP, Purpose.CLIP_PLAYBACK, receipt=None, caller=CALLER)


async def test_every_key_operation_is_an_event(clock: FakeClock) -> None:
    events = Events()
    keys = service(SharedLog(), clock, events)
    _, wrapped = await keys.generate(CLIP)
    await keys.unwrap(wrapped, CLIP, Purpose.CLIP_PLAYBACK, "access-x", CALLER)
    await keys.destroy_version("tenant-a", 1)
    assert events.seen == ["generated v1", "unwrapped v1 clip_playback access-x", "destroyed v1"]


async def test_a_receipt_releases_a_key_once_on_any_replica(clock: FakeClock) -> None:
    log = SharedLog()
    first_metrics, second_metrics = Metrics(), Metrics()
    first = service(log, clock, metrics=first_metrics)
    second = service(log, clock, metrics=second_metrics)
    data_key, wrapped = await first.generate(CLIP)
    assert await first.unwrap(wrapped, CLIP, Purpose.CLIP_PLAYBACK, "a-1", CALLER) == data_key
    for replica in (first, second, service(log, clock)):
        with pytest.raises(ReceiptRefused, match="receipt refused: it was already used"):
            await replica.unwrap(wrapped, CLIP, Purpose.CLIP_PLAYBACK, "a-1", CALLER)
    assert (first_metrics.refused, second_metrics.refused) == (["already_used"], ["already_used"])
    # Two replicas presented the same new receipt at once: one key comes out, not two.
    results = await asyncio.gather(
        first.unwrap(wrapped, CLIP, Purpose.CLIP_PLAYBACK, "a-2", CALLER),
        second.unwrap(wrapped, CLIP, Purpose.CLIP_PLAYBACK, "a-2", CALLER),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["ReceiptRefused", "bytes"]


async def test_a_request_that_fails_anyway_does_not_use_the_receipt_up(clock: FakeClock) -> None:
    log = SharedLog()
    keys = service(log, clock)
    data_key, wrapped = await keys.generate(CLIP)
    with pytest.raises(WrongContext):
        await keys.unwrap(
            wrapped,
            KeyContext("tenant-a", "cam-2", "clip-0001"),
            Purpose.CLIP_PLAYBACK,
            "a-3",
            CALLER,
        )
    assert await keys.unwrap(wrapped, CLIP, Purpose.CLIP_PLAYBACK, "a-3", CALLER) == data_key
