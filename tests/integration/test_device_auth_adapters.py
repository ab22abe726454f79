"""device_auth's adapters on the real Kafka and Redis of the local stack.

Kafka topics live in a namespace of this module's own (deleted afterwards);
Redis keys under a prefix of its own (deleted afterwards).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from redis.asyncio import Redis

from privacam.identity.v1 import events_pb2 as pb
from privacam.identity.v1 import identity_pb2
from privacam.identity.v1.revocations_pb2 import RevocationRecord
from privacam.types.v1 import types_pb2
from privacam_core.identity import Principal, PrincipalKind, subject_digest
from services.common import topics
from services.common.clock import SystemClock
from services.common.kafka import EventProducer, Topic, ensure_topics
from services.common.pki import create_intermediate, create_root, new_private_key
from services.common.revocations import RevocationList
from services.common.settings import KafkaSettings
from services.device_auth.adapters.ephemeral import (
    KEY_PREFIX,
    RedisClaimTokens,
    RedisPasswordAttempts,
    RedisPinAttempts,
)
from services.device_auth.adapters.events import KafkaIdentityEvents
from services.device_auth.adapters.state import IdentityState
from services.device_auth.domain import events
from services.device_auth.domain import ports as ports_module
from services.device_auth.domain.certificates import CertificateIssuer
from services.device_auth.domain.errors import BadCredentials, TooManyAttempts
from services.device_auth.domain.grant_expiry import GrantExpirySweeper
from services.device_auth.domain.password_attempts import login_key, tenant_key
from services.device_auth.domain.passwords import Argon2Parameters, SecretHasher
from services.device_auth.domain.records import (
    Account,
    AppInstall,
    Camera,
    CameraSettings,
    CertificateRef,
    ClaimToken,
    Grant,
    GrantScope,
    PasswordTries,
    PinAttemptState,
    SettingsView,
    Subject,
)
from services.device_auth.domain.service import DeviceAuth
from tests.harness import (
    delete_namespace_topics,
    kafka_options,
    kafka_settings,
    new_namespace,
    redis_setup_url,
    state_signing,
)
from tests.pki_helpers import PkiFactory

TRUST_DOMAIN = "privacam.local"


@dataclass
class Kafka:
    settings: KafkaSettings
    producer: EventProducer
    reader: dict[str, Any]
    """The administrator's client options, for reading topics as the test."""


@pytest.fixture(scope="module")
async def kafka(stack_env: dict[str, str], pki: PkiFactory) -> AsyncIterator[Kafka]:
    namespace = new_namespace(stack_env, "da-adapters")
    settings = kafka_settings(stack_env, "device_auth", namespace).model_copy(
        update={"topic_partitions": 3}
    )
    await ensure_topics(
        settings, [topics.IDENTITY_STATE, topics.IDENTITY, topics.REVOCATIONS, topics.ACCESS]
    )
    # Signs and verifies state records as device_auth does (services.common.signed_state).
    producer = EventProducer(
        settings, "test-device-auth-adapters", state_signing(pki, "device_auth")
    )
    await producer.start()
    try:
        yield Kafka(settings, producer, kafka_options(stack_env))
    finally:
        await producer.stop()
        await delete_namespace_topics(stack_env, namespace)


@asynccontextmanager
async def replica(kafka: Kafka) -> AsyncIterator[IdentityState]:
    """One more replica of device_auth's state: replays the topic on start."""
    state = IdentityState(kafka.settings, topics.IDENTITY_STATE, kafka.producer)
    await state.start()
    try:
        yield state
    finally:
        await state.stop()


@pytest.fixture(scope="module")
async def state(kafka: Kafka) -> AsyncIterator[IdentityState]:
    async with replica(kafka) as first:
        yield first


@pytest.fixture(scope="module")
async def redis(stack_env: dict[str, str]) -> AsyncIterator[tuple[Redis, str]]:
    # device_auth's own Redis user, with keys as the service makes them:
    # <namespace>device_auth:... (a namespace of the test's own).
    client = Redis.from_url(stack_env["PRIVACAM_DEVICE_AUTH_REDIS_URL"])
    prefix = f"test-da-{secrets.token_hex(4)}.{KEY_PREFIX}"
    try:
        yield client, prefix
    finally:
        await client.aclose()
        setup = Redis.from_url(redis_setup_url())  # only the setup user may SCAN
        keys = [key async for key in setup.scan_iter(match=f"{prefix}*")]
        if keys:
            await setup.delete(*keys)
        await setup.aclose()


async def stored_keys(pattern: str) -> list[str]:
    """Key names matching `pattern`, listed as the setup user: device_auth's may not SCAN."""
    setup = Redis.from_url(redis_setup_url())
    try:
        return [k.decode() async for k in setup.scan_iter(match=pattern)]
    finally:
        await setup.aclose()


def new_id() -> str:
    return str(uuid.uuid4())


def now() -> datetime:
    return datetime.now(UTC)


def certificate(days: int = 30) -> CertificateRef:
    return CertificateRef(secrets.randbits(127) + 1, now() + timedelta(days=days))


def new_camera(tenant_id: str, serial: str = "SN-1") -> Camera:
    return Camera(
        device_id=new_id(),
        tenant_id=tenant_id,
        serial=serial,
        enrolled_at=now(),
        certificates=(certificate(),),
        settings=CameraSettings(activity_alerts_enabled=False, retention_days=7),
    )


def new_install(tenant_id: str) -> AppInstall:
    return AppInstall(new_id(), tenant_id, "phone", now(), (certificate(),))


# --- state on the compacted topic ---------------------------------------------------------


async def test_account_create_get_replace_delete(state: IdentityState) -> None:
    accounts = state.accounts
    account = Account(new_id(), "alice", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", now())
    assert await accounts.create(account)
    assert not await accounts.create(replace(account, login="other"))
    assert await accounts.get(account.tenant_id) == account

    changed = replace(account, password_hash="$argon2id$new")
    assert await accounts.replace(account, changed)
    assert not await accounts.replace(account, replace(account, login="stale"))  # stale expected
    assert await accounts.get(account.tenant_id) == changed

    assert await accounts.delete(account.tenant_id)
    assert not await accounts.delete(account.tenant_id)
    assert await accounts.get(account.tenant_id) is None
    # A record deleted meanwhile is never brought back by a late update.
    assert not await accounts.replace(changed, replace(changed, login="late"))
    assert await accounts.get(account.tenant_id) is None


async def test_login_is_unique_under_concurrent_claims(kafka: Kafka, state: IdentityState) -> None:
    login = f"user-{secrets.token_hex(4)}"
    first, second = new_id(), new_id()
    async with replica(kafka) as other:
        # Two replicas claim the same login at once: exactly one wins everywhere.
        won = await asyncio.gather(
            state.accounts.claim_login(login, first), other.accounts.claim_login(login, second)
        )
        assert sorted(won) == [False, True]
        winner = first if won[0] else second
        await state.catch_up()
        await other.catch_up()
        assert await state.accounts.tenant_for_login(login) == winner
        assert await other.accounts.tenant_for_login(login) == winner

        # Many claims in one replica: still exactly one winner, and it is the holder.
        login2 = f"user-{secrets.token_hex(4)}"
        tenants = [new_id() for _ in range(6)]
        results = await asyncio.gather(*(state.accounts.claim_login(login2, t) for t in tenants))
        assert results.count(True) == 1
        assert await state.accounts.tenant_for_login(login2) == tenants[results.index(True)]

    loser = second if winner == first else first
    assert await state.accounts.claim_login(login, winner)  # the holder may claim again
    await state.accounts.release_login(login, loser)  # not the holder: no effect
    assert await state.accounts.tenant_for_login(login) == winner
    await state.accounts.release_login(login, winner)
    assert await state.accounts.tenant_for_login(login) is None
    assert await state.accounts.claim_login(login, loser)
    assert await state.accounts.tenant_for_login(login) == loser


async def test_installs_by_id_and_by_tenant(state: IdentityState) -> None:
    tenant, stranger = new_id(), new_id()
    installs = state.installs
    phone, tablet = new_install(tenant), new_install(tenant)
    assert await installs.create(phone)
    assert await installs.create(tablet)
    assert not await installs.create(phone)
    assert await installs.get(phone.install_id) == phone
    assert await installs.list_for_tenant(tenant) == [phone, tablet]
    assert await installs.list_for_tenant(stranger) == []

    renewed = replace(phone, certificates=(*phone.certificates, certificate(60)))
    assert await installs.replace(phone, renewed)
    assert await installs.list_for_tenant(tenant) == [renewed, tablet]
    with pytest.raises(ValueError, match="cannot change"):
        await installs.replace(renewed, replace(renewed, tenant_id=stranger))

    assert await installs.delete(phone.install_id)
    assert await installs.list_for_tenant(tenant) == [tablet]
    assert not await installs.replace(renewed, replace(renewed, label="late"))
    assert await installs.get(phone.install_id) is None


async def test_cameras_by_id_tenant_and_serial(state: IdentityState) -> None:
    tenant, neighbour = new_id(), new_id()
    cameras = state.cameras
    door, yard = new_camera(tenant, "SN-DOOR"), new_camera(tenant, "SN-YARD")
    theirs = new_camera(neighbour, "SN-DOOR")  # the same serial under another account
    for camera in (door, yard, theirs):
        assert await cameras.create(camera)
    assert await cameras.get(door.device_id) == door
    assert await cameras.list_for_tenant(tenant) == [door, yard]
    assert await cameras.find_serial(tenant, "SN-DOOR") == door
    assert await cameras.find_serial(neighbour, "SN-DOOR") == theirs
    assert await cameras.find_serial(tenant, "SN-NONE") is None

    with_pin = replace(
        door,
        settings=CameraSettings(activity_alerts_enabled=True, retention_days=14, label="Door"),
        pin_hash="$argon2id$pin",
    )
    assert await cameras.replace(door, with_pin)
    assert not await cameras.replace(door, replace(door, serial="SN-X"))
    assert await cameras.get(door.device_id) == with_pin

    assert await cameras.delete(door.device_id)
    assert await cameras.find_serial(tenant, "SN-DOOR") is None
    assert await cameras.list_for_tenant(tenant) == [yard]
    assert not await cameras.replace(with_pin, replace(with_pin, pin_hash=None))
    assert await cameras.get(door.device_id) is None


async def test_grants_by_device_owner_and_grantee(state: IdentityState) -> None:
    owner, friend, other = new_id(), new_id(), new_id()
    camera = new_camera(owner)
    assert await state.cameras.create(camera)
    live = Grant(new_id(), camera.device_id, owner, friend, frozenset({GrantScope.LIVE}), now())
    both = Grant(
        new_id(),
        camera.device_id,
        owner,
        other,
        frozenset({GrantScope.LIVE, GrantScope.CLIPS}),
        now(),
        expires_at=now() + timedelta(days=2),
    )
    grants = state.grants
    assert await grants.create(live)
    assert await grants.create(both)
    assert not await grants.create(live)
    assert await grants.get(both.grant_id) == both
    assert await grants.list_for_device(camera.device_id) == [live, both]
    assert await grants.list_given(owner) == [live, both]
    assert await grants.list_received(friend) == [live]
    assert await grants.list_received(other) == [both]
    assert await grants.list_given(friend) == []

    widened = replace(live, scopes=frozenset(GrantScope))
    assert await grants.replace(live, widened)
    assert await grants.list_received(friend) == [widened]
    assert await grants.delete(live.grant_id)
    assert await grants.list_for_device(camera.device_id) == [both]
    assert await grants.list_received(friend) == []
    assert await grants.list_given(owner) == [both]


async def test_concurrent_replaces_in_one_replica_have_one_winner(state: IdentityState) -> None:
    camera = new_camera(new_id())
    assert await state.cameras.create(camera)
    candidates = [
        replace(camera, settings=replace(camera.settings, retention_days=days))
        for days in range(1, 11)
    ]
    results = await asyncio.gather(*(state.cameras.replace(camera, c) for c in candidates))
    assert results.count(True) == 1
    assert await state.cameras.get(camera.device_id) == candidates[results.index(True)]


async def test_a_second_replica_replays_and_follows_the_same_state(
    kafka: Kafka, state: IdentityState
) -> None:
    tenant = new_id()
    login = f"user-{secrets.token_hex(4)}"
    account = Account(tenant, login, "$argon2id$h", now())
    camera = new_camera(tenant, "SN-REPLAY")
    install = new_install(tenant)
    grant = Grant(
        new_id(), camera.device_id, tenant, new_id(), frozenset({GrantScope.CLIPS}), now()
    )
    assert await state.accounts.create(account)
    assert await state.accounts.claim_login(login, tenant)
    assert await state.cameras.create(camera)
    assert await state.installs.create(install)
    assert await state.grants.create(grant)
    renamed = replace(camera, settings=replace(camera.settings, label="Porch"))
    assert await state.cameras.replace(camera, renamed)

    async with replica(kafka) as other:  # replays the whole topic on start
        assert await other.accounts.get(tenant) == account
        assert await other.accounts.tenant_for_login(login) == tenant
        assert await other.cameras.get(camera.device_id) == renamed
        assert await other.cameras.find_serial(tenant, "SN-REPLAY") == renamed
        assert await other.installs.list_for_tenant(tenant) == [install]
        assert await other.grants.list_for_device(camera.device_id) == [grant]
        assert len(other) == len(state)

        # ... and follows what the first replica writes afterwards.
        assert await state.grants.delete(grant.grant_id)
        assert await state.cameras.delete(camera.device_id)
        await other.catch_up()
        assert await other.cameras.get(camera.device_id) is None
        assert await other.grants.list_given(tenant) == []
        # A write through the second replica is read back by the first.
        second_camera = new_camera(tenant, "SN-OTHER")
        assert await other.cameras.create(second_camera)
        await state.catch_up()
        assert await state.cameras.list_for_tenant(tenant) == [second_camera]


async def test_expired_grants_are_listed_soonest_first(state: IdentityState) -> None:
    owner = new_id()
    camera = new_camera(owner)
    assert await state.cameras.create(camera)
    moment = now()

    def grant(expires_at: datetime | None) -> Grant:
        return Grant(
            new_id(),
            camera.device_id,
            owner,
            new_id(),
            frozenset({GrantScope.LIVE}),
            moment,
            expires_at,
        )

    late, early, exact = (grant(moment - timedelta(minutes=m)) for m in (1, 30, 0))
    future, forever = grant(moment + timedelta(minutes=5)), grant(None)
    for g in (late, early, exact, future, forever):
        assert await state.grants.create(g)
    ours = {late.grant_id, early.grant_id, exact.grant_id, future.grant_id, forever.grant_id}

    def mine(grants: list[Grant]) -> list[Grant]:
        return [g for g in grants if g.grant_id in ours]  # other tests' grants share the map

    assert mine(await state.grants.list_expired(moment, 1000)) == [early, late, exact]
    assert mine(await state.grants.list_expired(moment + timedelta(minutes=5), 1000)) == [
        early,
        late,
        exact,
        future,
    ]
    assert len(await state.grants.list_expired(moment, 1)) == 1
    assert await state.grants.delete(early.grant_id)
    assert mine(await state.grants.list_expired(moment, 1000)) == [late, exact]


# --- Redis -------------------------------------------------------------------------------


async def test_password_tries_count_atomically_in_a_window_under_a_hashed_key(
    redis: tuple[Redis, str],
) -> None:
    client, prefix = redis
    attempts = RedisPasswordAttempts(client, prefix=prefix)
    login = f"mallory-{secrets.token_hex(4)}"
    key = login_key(login)
    window = timedelta(minutes=15)

    tries = await asyncio.gather(*(attempts.add(key, window) for _ in range(20)))
    assert sorted(t.count for t in tries) == list(range(1, 21))  # each its own count
    assert all(timedelta(minutes=14) < t.window_left <= window for t in tries)
    # Stored under the SHA-256 of the domain's key: no login (nor its plain hash) in Redis.
    redis_key = f"{prefix}password-tries:{hashlib.sha256(key.encode()).hexdigest()}"
    assert attempts.key(key) == redis_key
    assert int(await client.get(redis_key) or 0) == 20
    stored = await stored_keys(f"{prefix}password-tries:*")
    assert not any(login in k or key in k for k in stored)
    ttl = timedelta(milliseconds=await client.pttl(redis_key))
    assert timedelta(minutes=14) < ttl <= window  # later tries did not extend the window

    await attempts.reset(key)
    assert await client.exists(redis_key) == 0
    assert await attempts.add(key, window) == PasswordTries(1, window)

    # The window ends by itself, and the count starts over.
    other = tenant_key(new_id())
    assert (await attempts.add(other, timedelta(milliseconds=300))).count == 1
    assert (await attempts.add(other, timedelta(milliseconds=300))).count == 2
    await asyncio.sleep(0.6)
    assert (await attempts.add(other, timedelta(milliseconds=300))).count == 1

    # A counter that somehow lost its expiry gets one back: no account blocked forever.
    stuck = tenant_key(new_id())
    await client.set(attempts.key(stuck), 9)
    assert (await attempts.add(stuck, window)) == PasswordTries(10, window)
    assert await client.pttl(attempts.key(stuck)) > 0


async def test_claim_tokens_are_single_use_and_expire(redis: tuple[Redis, str]) -> None:
    client, prefix = redis
    tokens = RedisClaimTokens(client, SystemClock(), prefix=prefix)
    tenant = new_id()
    owner = Subject(PrincipalKind.APP, tenant, new_id())

    def token(ttl: timedelta) -> ClaimToken:
        return ClaimToken(secrets.token_hex(32), tenant, now(), now() + ttl, owner)

    used = token(timedelta(minutes=10))
    await tokens.put(used)
    taken = await asyncio.gather(*(tokens.take(used.token_hash) for _ in range(20)))
    assert [t for t in taken if t is not None] == [used]
    assert await tokens.take(used.token_hash) is None

    short = token(timedelta(milliseconds=400))
    await tokens.put(short)
    assert 0 < await client.pttl(f"{prefix}claim:{short.token_hash}") <= 400
    await asyncio.sleep(0.8)
    assert await tokens.take(short.token_hash) is None

    spares = [token(timedelta(minutes=10)) for _ in range(3)]
    for spare in spares:
        await tokens.put(spare)
    assert await tokens.take(spares[0].token_hash) == spares[0]
    assert await tokens.delete_for_tenant(tenant) == 2
    assert all([await tokens.take(s.token_hash) is None for s in spares])
    assert await tokens.delete_for_tenant(tenant) == 0
    assert await client.exists(f"{prefix}claims:{tenant}") == 0


async def test_pin_attempts_compare_and_set(redis: tuple[Redis, str]) -> None:
    client, prefix = redis
    pins = RedisPinAttempts(client, SystemClock(), prefix=prefix)
    device = new_id()
    key = f"{prefix}pin-attempts:{device}"
    fresh = PinAttemptState()
    assert await pins.get(device) == fresh

    lockout_end = now() + timedelta(hours=1)
    locked = PinAttemptState(failures=10, next_try_at=lockout_end)
    assert await pins.compare_and_set(device, fresh, locked)  # absent equals fresh
    assert await pins.get(device) == locked
    ttl_ms = await client.pttl(key)
    assert timedelta(hours=48) < timedelta(milliseconds=ttl_ms) <= timedelta(hours=49)
    assert not await pins.compare_and_set(device, fresh, PinAttemptState(failures=1))

    # Concurrent tries from the same state: exactly one takes its count.
    nexts = [
        PinAttemptState(failures=11, next_try_at=lockout_end + timedelta(seconds=i))
        for i in range(8)
    ]
    results = await asyncio.gather(*(pins.compare_and_set(device, locked, n) for n in nexts))
    assert results.count(True) == 1
    current = await pins.get(device)
    assert current == nexts[results.index(True)]

    assert await pins.compare_and_set(device, current, fresh)  # back to fresh: key removed
    assert await client.exists(key) == 0
    assert await pins.compare_and_set(device, fresh, PinAttemptState(failures=1))
    await pins.delete(device)
    assert await pins.get(device) == fresh


# --- events ------------------------------------------------------------------------------


async def read_topic(kafka: Kafka, topic: Topic[Any]) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of a topic of this module's namespace, from the beginning."""
    name = kafka.settings.namespace + topic.name
    consumer = AIOKafkaConsumer(**kafka.reader)
    await consumer.start()
    try:
        count = await kafka.producer.partition_count(topic)
        partitions = [TopicPartition(name, p) for p in range(count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        for _ in range(120):
            positions = {tp: await consumer.position(tp) for tp in partitions}
            if all(positions[tp] >= end for tp, end in ends.items()):
                return records
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
        raise TimeoutError(f"could not read {name} to its end")
    finally:
        await consumer.stop()


async def test_a_revocation_reaches_the_revocations_topic_before_its_event(kafka: Kafka) -> None:
    tenant, device = new_id(), new_id()
    publisher = KafkaIdentityEvents(kafka.producer, TRUST_DOMAIN)
    subject = Subject(PrincipalKind.CAMERA, tenant, device)
    revoked_at = now()
    latest = revoked_at + timedelta(days=29, hours=3)
    event = events.IdentityEvent(
        event_id=new_id(),
        tenant_id=tenant,
        occurred_at=revoked_at,
        actor=Subject(PrincipalKind.APP, tenant, new_id()),
        body=events.CertificateRevoked(
            subject,
            ("1f2e", "abc"),
            True,
            events.RevocationReason.OWNER_REQUEST,
            not_after=(latest, revoked_at + timedelta(days=2)),
        ),
    )
    await publisher.publish(event)

    uri = f"spiffe://{TRUST_DOMAIN}/tenant/{tenant}/camera/{device}"
    key = f"subject/{subject_digest(uri).hex()}".encode()
    revocations = [r for r in await read_topic(kafka, topics.REVOCATIONS) if r.key == key]
    assert len(revocations) == 1
    record = RevocationRecord.FromString(revocations[0].value or b"")
    # Revocations outlive the account: they name the identity by a digest, never by its ids.
    assert record.subject_digest == subject_digest(uri)
    assert tenant.encode() not in revocations[0].value + revocations[0].key
    assert record.all_certificates
    assert list(record.serial_numbers) == ["1f2e", "abc"]
    assert record.revoked_at.ToDatetime(tzinfo=UTC) == revoked_at
    # The latest real expiry of what it revokes, not revoked_at + the longest lifetime.
    assert record.covers_until.ToDatetime(tzinfo=UTC) == latest

    published = [
        r
        for r in await read_topic(kafka, topics.IDENTITY)
        if pb.IdentityEvent.FromString(r.value or b"").metadata.event_id == event.event_id
    ]
    assert len(published) == 1
    assert published[0].key == tenant.encode()
    assert revocations[0].timestamp <= published[0].timestamp
    message = pb.IdentityEvent.FromString(published[0].value or b"")
    assert message.certificate_revoked.subject == types_pb2.Principal(
        kind=types_pb2.PRINCIPAL_KIND_CAMERA, tenant_id=tenant, id=device
    )
    assert message.certificate_revoked.reason == identity_pb2.REVOCATION_REASON_OWNER_REQUEST

    # What every service runs: the replayed revocation list refuses the camera.
    revocation_list = RevocationList(kafka.settings, kafka.producer)
    await revocation_list.start()
    try:
        principal = Principal(
            PrincipalKind.CAMERA, device, tenant, TRUST_DOMAIN, 0x999, now() + timedelta(days=1)
        )
        assert revocation_list.is_revoked(principal)
        assert revocation_list.is_revoked(
            replace(principal, name=new_id(), certificate_serial=0xABC)
        )
        assert not revocation_list.is_revoked(replace(principal, name=new_id()))
    finally:
        await revocation_list.stop()


async def test_a_single_certificate_revocation_is_keyed_by_serial(kafka: Kafka) -> None:
    tenant, install = new_id(), new_id()
    expiry = now() + timedelta(days=11)
    await KafkaIdentityEvents(kafka.producer, TRUST_DOMAIN).publish(
        events.IdentityEvent(
            new_id(),
            tenant,
            now(),
            None,
            events.CertificateRevoked(
                Subject(PrincipalKind.APP, tenant, install),
                ("d00d",),
                False,
                events.RevocationReason.KEY_COMPROMISE,
                not_after=(expiry,),
            ),
        )
    )
    found = [r for r in await read_topic(kafka, topics.REVOCATIONS) if r.key == b"serial/d00d"]
    assert len(found) == 1
    record = RevocationRecord.FromString(found[0].value or b"")
    assert record.subject_digest == subject_digest(
        f"spiffe://{TRUST_DOMAIN}/tenant/{tenant}/app/{install}"
    )
    assert not record.all_certificates
    assert list(record.serial_numbers) == ["d00d"]
    assert record.covers_until.ToDatetime(tzinfo=UTC) == expiry


async def test_every_domain_event_becomes_its_protobuf_event(kafka: Kafka) -> None:
    publisher: ports_module.IdentityEvents = KafkaIdentityEvents(kafka.producer, TRUST_DOMAIN)
    tenant, device, install = new_id(), new_id(), new_id()
    app = Subject(PrincipalKind.APP, tenant, install)
    later = now() + timedelta(days=30)
    grant = Grant(new_id(), device, tenant, new_id(), frozenset(GrantScope), now(), later)
    bodies: list[tuple[events.EventBody, str]] = [
        (events.AccountRegistered(), "account_registered"),
        (events.AppInstallEnrolled(install, "a1", later), "app_install_enrolled"),
        (events.CameraEnrolled(device, "c1", later), "camera_enrolled"),
        (events.CertificateRenewed(app, "a2", later), "certificate_renewed"),
        (
            events.CameraSettingsChanged(device, SettingsView(True, 14, True, "Door")),
            "camera_settings_changed",
        ),
        (events.GrantCreated(grant), "grant_created"),
        (events.GrantRevoked(grant.grant_id, device, grant.grantee_tenant_id), "grant_revoked"),
        (events.PinChanged(device, events.PinChange.CHANGED), "pin_changed"),
        (events.PinLockedOut(device, 10, timedelta(hours=1), app), "pin_locked_out"),
        (events.AccountDeleted(new_id()), "account_deleted"),
    ]
    sent = [events.IdentityEvent(new_id(), tenant, now(), app, body) for body, _ in bodies]
    for event in sent:
        await publisher.publish(event)

    received = {
        message.metadata.event_id: message
        for record in await read_topic(kafka, topics.IDENTITY)
        if record.key == tenant.encode()
        for message in [pb.IdentityEvent.FromString(record.value or b"")]
    }
    for event, (_, oneof) in zip(sent, bodies, strict=True):
        message = received[event.event_id]
        assert message.WhichOneof("event") == oneof
        assert message.metadata.producer == "device_auth"
        assert message.metadata.tenant_id == tenant
        assert message.metadata.occurred_at.ToDatetime(tzinfo=UTC) == event.occurred_at
        assert message.metadata.actor.kind == types_pb2.PRINCIPAL_KIND_APP
        assert message.metadata.actor.id == install

    created = received[sent[5].event_id].grant_created.grant
    assert created.grantee_login == ""
    assert list(created.scopes) == [
        identity_pb2.GRANT_SCOPE_LIVE,
        identity_pb2.GRANT_SCOPE_CLIPS,
        identity_pb2.GRANT_SCOPE_TALK,
    ]
    assert created.expires_at.ToDatetime(tzinfo=UTC) == later
    locked = received[sent[8].event_id].pin_locked_out
    assert locked.lockout.ToTimedelta() == timedelta(hours=1)
    assert locked.last_attempt_by.id == install
    settings = received[sent[4].event_id].camera_settings_changed.settings
    assert (settings.retention_days, settings.pin_set, settings.label) == (14, True, "Door")


def test_the_adapters_implement_the_ports(state: IdentityState, redis: tuple[Redis, str]) -> None:
    """Checked by mypy: each adapter is the port the domain asks for."""
    client, prefix = redis
    ports: tuple[
        ports_module.Accounts,
        ports_module.Installs,
        ports_module.Cameras,
        ports_module.Grants,
        ports_module.ClaimTokens,
        ports_module.PinAttempts,
        ports_module.PasswordAttempts,
    ] = (
        state.accounts,
        state.installs,
        state.cameras,
        state.grants,
        RedisClaimTokens(client, SystemClock(), prefix=prefix),
        RedisPinAttempts(client, SystemClock(), prefix=prefix),
        RedisPasswordAttempts(client, prefix=prefix),
    )
    assert len(ports) == 7


# --- the domain over the real adapters, as two replicas ------------------------------------


def make_csr() -> bytes:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")]))
        .sign(new_private_key(), hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


@pytest.fixture(scope="module")
def issuer() -> CertificateIssuer:
    start = now() - timedelta(days=1)
    root = create_root("Adapters Test Root", start, timedelta(days=30))
    authority = create_intermediate(
        root,
        "Adapters Test Issuing",
        start,
        timedelta(days=20),
        (PrincipalKind.CAMERA, PrincipalKind.APP),
    )
    return CertificateIssuer(authority, TRUST_DOMAIN, SystemClock())


def device_auth(
    state: IdentityState, kafka: Kafka, redis: tuple[Redis, str], issuer: CertificateIssuer
) -> DeviceAuth:
    """One replica of the service: its own state replica, the shared Redis and topics."""
    client, prefix = redis
    return DeviceAuth(
        accounts=state.accounts,
        installs=state.installs,
        cameras=state.cameras,
        grants=state.grants,
        claim_tokens=RedisClaimTokens(client, SystemClock(), prefix=prefix),
        pin_attempts=RedisPinAttempts(client, SystemClock(), prefix=prefix),
        password_attempts=RedisPasswordAttempts(client, prefix=prefix),
        events=KafkaIdentityEvents(kafka.producer, TRUST_DOMAIN),
        issuer=issuer,
        clock=SystemClock(),
        password_hasher=SecretHasher(Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)),
    )


async def test_wrong_passwords_are_limited_per_account_across_replicas(
    kafka: Kafka, state: IdentityState, redis: tuple[Redis, str], issuer: CertificateIssuer
) -> None:
    first = device_auth(state, kafka, redis, issuer)
    login = f"alice-{secrets.token_hex(4)}"
    password = "correct horse battery staple"
    account = await first.register_account(login, password, make_csr())
    async with replica(kafka) as other_state:
        await other_state.catch_up()
        second = device_auth(other_state, kafka, redis, issuer)
        # Guesses spread over both replicas and over every password RPC share one budget.
        guesses = [
            first.sign_in(login, "guess 1", make_csr()),
            second.sign_in(login, "guess 2", make_csr()),
            first.change_password(account.tenant_id, "guess 3", "a new password!"),
        ]
        for guess in guesses:
            with pytest.raises(BadCredentials):
                await guess
        assert not await second.verify_password(account.tenant_id, "guess 4")
        assert not await first.verify_password(account.tenant_id, "guess 5")
        for replica_auth in (first, second):
            with pytest.raises(TooManyAttempts, match=r"too many wrong passwords; try again in"):
                await replica_auth.sign_in(login, password, make_csr())
            with pytest.raises(TooManyAttempts):
                await replica_auth.verify_password(account.tenant_id, password)

    # An unknown login: the same answers, counted under the login's hash.
    unknown = f"nobody-{secrets.token_hex(4)}"
    answers = []
    for _ in range(6):
        try:
            await first.sign_in(unknown, "guess", make_csr())
        except (BadCredentials, TooManyAttempts) as error:
            answers.append(type(error).__name__)
    assert answers == ["BadCredentials"] * 5 + ["TooManyAttempts"]
    _, prefix = redis
    keys = await stored_keys(f"{prefix}password-tries:*")
    assert not any(unknown in k or login in k for k in keys)


async def test_replicas_sweeping_expired_grants_announce_each_once_by_event_id(
    kafka: Kafka, state: IdentityState, redis: tuple[Redis, str], issuer: CertificateIssuer
) -> None:
    owner, guest = new_id(), new_id()
    camera = new_camera(owner)
    assert await state.cameras.create(camera)
    expired = Grant(
        new_id(),
        camera.device_id,
        owner,
        guest,
        frozenset({GrantScope.LIVE}),
        now() - timedelta(hours=1),
        expires_at=now() - timedelta(seconds=1),
    )
    active = replace(expired, grant_id=new_id(), expires_at=now() + timedelta(hours=1))
    assert await state.grants.create(expired)
    assert await state.grants.create(active)

    async with replica(kafka) as other_state:
        await other_state.catch_up()
        sweepers = [
            GrantExpirySweeper(device_auth(s, kafka, redis, issuer)) for s in (state, other_state)
        ]
        removed = await asyncio.gather(*(s.sweep() for s in sweepers))
        assert sum(removed) >= 1  # both may announce it (other tests' grants count too)
        await other_state.catch_up()
        for s in (state, other_state):
            assert await s.grants.get(expired.grant_id) is None
            assert await s.grants.get(active.grant_id) == active
            assert expired not in await s.grants.list_expired(now(), 1000)
        assert [await s.sweep() for s in sweepers] == [0, 0]

    announced = [
        message
        for record in await read_topic(kafka, topics.IDENTITY)
        if record.key == owner.encode()
        for message in [pb.IdentityEvent.FromString(record.value or b"")]
        if message.WhichOneof("event") == "grant_revoked"
    ]
    assert 1 <= len(announced) <= 2
    assert len({m.metadata.event_id for m in announced}) == 1
    assert len({m.SerializeToString(deterministic=True) for m in announced}) == 1
    (message, *_) = announced
    assert message.grant_revoked == pb.GrantRevoked(
        grant_id=expired.grant_id,
        device_id=camera.device_id,
        grantee_tenant_id=guest,
        reason=pb.GRANT_END_REASON_EXPIRED,
    )
    assert not message.metadata.HasField("actor")  # the platform, not a person, ended it
    assert expired.expires_at is not None
    assert message.metadata.occurred_at.ToDatetime(tzinfo=UTC) == expired.expires_at
