"""An insider holding one service's credentials reaches nothing of another's.

Redis: each service logs in as its own ACL user (stack/redis_acl.py, created by
stack/up.sh), confined to `<namespace><its prefix>` keys, its own channels and the
commands it uses; coturn's user (Redis's `default`: coturn 4.6 cannot name a user) may
only publish its traffic reports. Every refusal below is the real Redis's NOPERM.

MinIO: each service that keeps objects has its own user and policy (stack/minio_users.py,
created by stack/up.sh); every refusal below is the real MinIO's AccessDenied.

Kafka: each service logs in over TLS as its own SCRAM user, whose ACLs
(services/common/topic_grants.py, applied by stack/kafka_users.py) come from the table of
what its code writes and reads; every refusal below is Kafka's own authorizer.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException
from confluent_kafka import KafkaError as ConfluentError
from confluent_kafka import TopicPartition as ConfluentPartition
from minio import Minio
from minio.error import S3Error
from redis import Redis
from redis.exceptions import NoPermissionError

from privacam.accesslog.v1 import access_log_service_pb2 as log_pb
from privacam.accesslog.v1 import access_log_service_pb2_grpc as log_grpc
from privacam.accesslog.v1 import log_pb2
from privacam.identity.v1 import device_auth_service_pb2 as identity_pb
from privacam.identity.v1.revocations_pb2 import RevocationRecord
from privacam.keys.v1 import key_manager_service_pb2 as km_pb
from privacam.keys.v1 import key_manager_service_pb2_grpc as km_grpc
from privacam.keys.v1 import keys_pb2
from privacam.types.v1 import types_pb2
from privacam_core.identity import PrincipalKind, spiffe_uri, subject_digest
from privacam_core.timestamps import to_timestamp
from privacam_sdk import PrivacamClient, Profile
from services.common import topic_grants, topics
from services.common.kafka import ensure_topics
from services.common.signed_state import StateSigner
from services.common.stores import ObjectStore
from services.device_auth.adapters.state import GRANTS, _document
from services.device_auth.domain.records import Grant, GrantScope
from services.key_manager.adapters.state_log import claim_key
from stack import kafka_users
from tests.harness import (
    ADMIN,
    Platform,
    delete_namespace_topics,
    kafka_options,
    kafka_settings,
    make_service,
    metric,
    mtls_channel,
    new_namespace,
    partitions_of,
    peer_env,
    read_all,
    running,
    stack_minio_settings,
    state_signing,
)

SERVICES = {
    "device_auth": "device_auth:",
    "clip_ingest": "clip_ingest:",
    "relay_broker": "relay:",
    "retention": "retention:",
}
RELAY_CHANNEL = "relay:ch:camera:insider"
TURN_PATTERN = "turn/realm/*/user/*/allocation/*/traffic"
TURN_REPORT = "turn/realm/privacam.local/user/1:insider.app/allocation/000000000000000001/traffic"

Attempt = Callable[[Redis], object]


def _psubscribe(pattern: str) -> Attempt:
    def attempt(client: Redis) -> object:
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.psubscribe(pattern)
            return pubsub.get_message(timeout=2)  # the confirmation, or the NOPERM reply
        finally:
            pubsub.close()

    return attempt


def _get(key: str) -> Attempt:
    return lambda client: client.get(key)


def _set(key: str) -> Attempt:
    return lambda client: client.set(key, "forged")


def _outcome(client: Redis, attempt: Attempt) -> str:
    try:
        attempt(client)
    except NoPermissionError:
        return "NOPERM"
    return "allowed"


def _service_attempts(user: str, namespace: str) -> dict[str, tuple[Attempt, str]]:
    """attempt name -> (attempt, expected outcome) for one service's user."""
    own = SERVICES[user]
    out: dict[str, tuple[Attempt, str]] = {
        f"write own {own}": (lambda r: r.set(f"{namespace}{own}probe", "1", ex=60), "allowed"),
        f"read own {own}": (lambda r: r.get(f"{namespace}{own}probe"), "allowed"),
        f"write own {own}, no namespace": (lambda r: r.set(f"{own}probe", "1", ex=60), "allowed"),
    }
    for other, prefix in SERVICES.items():
        if other == user:
            continue
        key = f"{namespace}{prefix}probe"
        out[f"read {other}'s key"] = (_get(key), "NOPERM")
        out[f"write {other}'s key"] = (_set(key), "NOPERM")
        # A key of another service that merely contains our prefix (an id, a nested
        # prefix): the patterns are anchored, so it is not ours.
        nested = f"{namespace}{prefix}x.{own}probe"
        out[f"write {other}'s key containing {own}"] = (_set(nested), "NOPERM")
    channel = f"{namespace}{RELAY_CHANNEL}"
    relay = "allowed" if user == "relay_broker" else "NOPERM"
    out["publish on a relay channel"] = (lambda r: r.publish(channel, b"x"), relay)
    out["subscribe to coturn's reports"] = (_psubscribe(TURN_PATTERN), relay)
    out["publish a coturn report"] = (lambda r: r.publish(TURN_REPORT, "rcvb=1"), "NOPERM")
    out["KEYS *"] = (lambda r: r.keys("*"), "NOPERM")
    out["SCAN"] = (
        lambda r: r.scan(0, count=10),
        # Cancellation finds a tenant's keys with SCAN MATCH (names only, never values).
        "allowed" if user == "retention" else "NOPERM",
    )
    out["FLUSHALL"] = (lambda r: r.flushall(), "NOPERM")
    out["CONFIG GET"] = (lambda r: r.config_get("requirepass"), "NOPERM")
    out["ACL LIST"] = (lambda r: r.acl_list(), "NOPERM")
    return out


def _coturn_attempts(namespace: str) -> dict[str, tuple[Attempt, str]]:
    out: dict[str, tuple[Attempt, str]] = {
        "publish a traffic report": (lambda r: r.publish(TURN_REPORT, "rcvb=1"), "allowed"),
        "publish an allocation status": (
            lambda r: r.publish(TURN_REPORT.replace("/traffic", "/status"), "new"),
            "NOPERM",
        ),
        "set a status key": (
            lambda r: r.set(TURN_REPORT.replace("/traffic", "/status"), "new"),
            "NOPERM",
        ),
        "publish on a relay channel": (
            lambda r: r.publish(f"{namespace}{RELAY_CHANNEL}", b"x"),
            "NOPERM",
        ),
        "subscribe to coturn's reports": (_psubscribe(TURN_PATTERN), "NOPERM"),
        "KEYS *": (lambda r: r.keys("*"), "NOPERM"),
        "FLUSHALL": (lambda r: r.flushall(), "NOPERM"),
        "CONFIG GET": (lambda r: r.config_get("requirepass"), "NOPERM"),
    }
    for other, prefix in SERVICES.items():
        key = f"{namespace}{prefix}probe"
        out[f"read {other}'s key"] = (_get(key), "NOPERM")
        out[f"write {other}'s key"] = (_set(key), "NOPERM")
    return out


def _report(matrix: list[tuple[str, str, str, str]], store: str) -> None:
    """Print the matrix (user, attempt, answer) and fail on any answer not as expected."""
    users = max(len(user) for user, _, _, _ in matrix)
    width = max(len(name) for _, name, _, _ in matrix)
    print(f"\n{'user':<{users}} {'attempt':<{width}}  answer by {store}")
    for user, name, got, expected in matrix:
        mark = "" if got == expected else f"   <-- expected {expected}"
        print(f"{user:<{users}} {name:<{width}}  {got}{mark}")
    wrong = [(user, name, got) for user, name, got, expected in matrix if got != expected]
    assert not wrong, wrong


@pytest.fixture
def clients(stack_env: dict[str, str]) -> Iterator[dict[str, Redis]]:
    urls = {user: stack_env[f"PRIVACAM_{user.upper()}_REDIS_URL"] for user in SERVICES}
    urls["coturn"] = stack_env["PRIVACAM_STACK_REDIS_COTURN_URL"]
    made = {user: Redis.from_url(url, socket_timeout=5) for user, url in urls.items()}
    try:
        yield made
    finally:
        for client in made.values():
            client.close()


def test_redis_users_are_confined(clients: dict[str, Redis]) -> None:
    namespace = f"insider-{secrets.token_hex(4)}."
    matrix: list[tuple[str, str, str, str]] = []
    for user in SERVICES:
        client = clients[user]
        for name, (attempt, expected) in _service_attempts(user, namespace).items():
            matrix.append((user, name, _outcome(client, attempt), expected))
        client.delete(f"{namespace}{SERVICES[user]}probe", f"{SERVICES[user]}probe")
    for name, (attempt, expected) in _coturn_attempts(namespace).items():
        matrix.append(("coturn (default)", name, _outcome(clients["coturn"], attempt), expected))

    _report(matrix, "Redis")


MINIO_BUCKETS = {
    "clip_ingest": "privacam-clips",
    "retention": "privacam-exports",
    "access_log": "privacam-access-log",
}
S3Attempt = Callable[[Minio], object]


def _put(bucket: str, name: str) -> S3Attempt:
    return lambda client: client.put_object(bucket, name, io.BytesIO(b"forged"), 6)


def _list(bucket: str) -> S3Attempt:
    return lambda client: list(client.list_objects(bucket))


def _stat(bucket: str, name: str) -> S3Attempt:
    return lambda client: client.stat_object(bucket, name)


def _remove(bucket: str, name: str) -> S3Attempt:
    return lambda client: client.remove_object(bucket, name)


def _s3_outcome(client: Minio, attempt: S3Attempt) -> str:
    try:
        attempt(client)
    except S3Error as error:
        return "AccessDenied" if error.code == "AccessDenied" else f"other: {error.code}"
    return "allowed"


def _minio_attempts(user: str, probe: str) -> dict[str, tuple[S3Attempt, str]]:
    """attempt name -> (attempt, expected outcome) for one service's MinIO user."""
    own = MINIO_BUCKETS[user]
    attempts: dict[str, tuple[S3Attempt, str]] = {
        "write its own bucket": (_put(own, probe), "allowed"),
        "create a bucket": (
            lambda c: c.make_bucket(f"insider-{secrets.token_hex(4)}"),
            "AccessDenied",
        ),
        "remove its own bucket": (lambda c: c.remove_bucket(own), "AccessDenied"),
        "read its bucket's policy": (lambda c: c.get_bucket_policy(own), "AccessDenied"),
        "make its bucket public": (
            lambda c: c.set_bucket_policy(own, '{"Version":"2012-10-17","Statement":[]}'),
            "AccessDenied",
        ),
    }
    for other, bucket in MINIO_BUCKETS.items():
        if bucket == own or (user == "retention" and bucket == "privacam-clips"):
            continue  # its own; retention reads, lists and deletes clips: its job
        attempts[f"list {other}'s bucket"] = (_list(bucket), "AccessDenied")
        attempts[f"read {other}'s objects"] = (_stat(bucket, probe), "AccessDenied")
        attempts[f"write {other}'s bucket"] = (_put(bucket, probe), "AccessDenied")
        attempts[f"delete in {other}'s bucket"] = (_remove(bucket, probe), "AccessDenied")
    if user == "retention":
        attempts["write a clip (clip_ingest's job)"] = (
            _put("privacam-clips", probe),
            "AccessDenied",
        )
    if user == "clip_ingest":
        attempts["set the clips' lifecycle (retention's job)"] = (
            lambda c: c.delete_bucket_lifecycle("privacam-clips"),
            "AccessDenied",
        )
    return attempts


@pytest.fixture
def minio_clients(stack_env: dict[str, str]) -> dict[str, Minio]:
    return {
        user: ObjectStore(stack_minio_settings(stack_env, user), ()).client
        for user in MINIO_BUCKETS
    }


def test_minio_users_are_confined(
    stack_env: dict[str, str], minio_clients: dict[str, Minio]
) -> None:
    probe = f"insider/{secrets.token_hex(4)}"
    matrix: list[tuple[str, str, str, str]] = []
    for user, client in minio_clients.items():
        for name, (attempt, expected) in _minio_attempts(user, probe).items():
            matrix.append((user, name, _s3_outcome(client, attempt), expected))
    root = ObjectStore(stack_minio_settings(stack_env), ()).client
    for bucket in MINIO_BUCKETS.values():
        root.remove_object(bucket, probe)

    _report(matrix, "MinIO")


# --- Kafka: each service's SCRAM user, refused by Kafka's own authorizer ----------------

# What an insider would be after on each topic, for the printed matrix.
TOPIC_MEANING = {  # topic: (what a forged write would do, what a read would reveal)
    topics.IDENTITY_STATE.name: ("grant itself a camera", "PIN and password hashes"),
    topics.REVOCATIONS.name: ("remove a revocation", ""),
    topics.ACCESS.name: ("forge an access-log entry", "who watched whom"),
    topics.ACCESS_STATE.name: ("erase an operator request", ""),
    topics.KEY_STATE.name: ("replace a household's key", "sealed keys"),
    topics.RETENTION_STATE.name: ("forge a proof of deletion", ""),
    topics.CLIPS.name: ("forge or hide a clip", ""),
}
KafkaAttempt = Callable[[], Awaitable[object]]


async def _kafka_outcome(attempt: KafkaAttempt) -> str:
    try:
        await asyncio.wait_for(attempt(), 30)
    except (
        kafka_errors.TopicAuthorizationFailedError,
        kafka_errors.GroupAuthorizationFailedError,
        kafka_errors.ClusterAuthorizationFailedError,
    ) as refused:
        return type(refused).__name__.removesuffix("Error")
    return "allowed"


def _produce(options: dict[str, Any], topic: str) -> KafkaAttempt:
    async def attempt() -> object:
        # Not idempotent: `backup` may write nothing at all, and the attempt is one record.
        producer = AIOKafkaProducer(**options, acks="all", request_timeout_ms=10_000)
        await producer.start()
        try:
            return await producer.send_and_wait(topic, b"forged", key=b"insider")
        finally:
            await producer.stop()

    return attempt


# librdkafka's codes: the end of a partition, and Kafka's TOPIC_AUTHORIZATION_FAILED.
_PARTITION_EOF: int = ConfluentError._PARTITION_EOF  # type: ignore[attr-defined]
_NOT_AUTHORIZED: int = ConfluentError.TOPIC_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
# librdkafka looks up the (unused) group's coordinator even for assigned partitions.
_GROUP_REFUSED: int = ConfluentError.GROUP_AUTHORIZATION_FAILED  # type: ignore[attr-defined]


def _fetch(login: dict[str, Any], topic: str) -> KafkaAttempt:
    """Read the topic's first partition from its start. confluent-kafka's consumer, because
    aiokafka's only logs a topic it may not even describe and waits forever."""

    def fetch() -> object:
        consumer = Consumer(
            {
                **login,
                "group.id": "unused",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        try:
            # A topic the user may not even describe is refused in the metadata; one it may
            # describe (it writes it) but not read, in the fetch.
            described = consumer.list_topics(topic, timeout=10).topics[topic]
            if described.error is not None and described.error.code() == _NOT_AUTHORIZED:
                raise kafka_errors.TopicAuthorizationFailedError()
            consumer.assign([ConfluentPartition(topic, 0, OFFSET_BEGINNING)])
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None:
                    continue
                error = message.error()
                if error is None or error.code() == _PARTITION_EOF:
                    return message
                if error.code() == _GROUP_REFUSED:
                    continue
                if error.code() == _NOT_AUTHORIZED:
                    raise kafka_errors.TopicAuthorizationFailedError()
                raise RuntimeError(error.str())
            raise TimeoutError(topic)
        finally:
            consumer.close()

    return lambda: asyncio.to_thread(fetch)


def _confluent_login(stack_env: dict[str, str], principal: str) -> dict[str, Any]:
    settings = kafka_settings(stack_env, principal)
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": settings.sasl_mechanism,
        "sasl.username": settings.username,
        "sasl.password": settings.password.get_secret_value(),
        "ssl.ca.location": str(settings.ca_file),
    }


def _join(options: dict[str, Any], topic: str, group: str) -> KafkaAttempt:
    async def attempt() -> object:
        consumer = AIOKafkaConsumer(topic, **options, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            return await consumer.getmany(timeout_ms=2000)
        finally:
            await consumer.stop()

    return attempt


def _create(options: dict[str, Any], topic: str) -> KafkaAttempt:
    async def attempt() -> object:
        admin = AIOKafkaAdminClient(**options)
        await admin.start()
        try:
            response = await admin.create_topics([NewTopic(topic, 1, 1)])
            for _, code, *_ in response.topic_errors:
                if code:
                    raise kafka_errors.for_code(code)()
            return response
        finally:
            await admin.close()

    return attempt


def _kafka_attempts(
    principal: str, options: dict[str, Any], login: dict[str, Any], namespace: str
) -> dict[str, tuple[KafkaAttempt, str]]:
    """attempt name -> (attempt, expected answer) for one Kafka user."""
    if principal == kafka_users.BACKUP:
        may_write: frozenset[str] = frozenset()
        may_read = topic_grants.BACKUP_READS
    else:
        may_write, may_read = topic_grants.writes(principal), topic_grants.reads(principal)
    out: dict[str, tuple[KafkaAttempt, str]] = {}
    for topic in topics.ALL:
        forged, revealed = TOPIC_MEANING.get(topic.name, ("", ""))
        name = namespace + topic.name
        allowed = topic.name in may_write
        out[f"write {topic.name}{f' ({forged})' if forged else ''}"] = (
            _produce(options, name),
            "allowed" if allowed else "TopicAuthorizationFailed",
        )
        out[f"read {topic.name}{f' ({revealed})' if revealed else ''}"] = (
            _fetch(login, name),
            "allowed" if topic.name in may_read else "TopicAuthorizationFailed",
        )
    other = "key_manager" if principal == "device_auth" else "device_auth"
    out[f"join {other}'s consumer group"] = (
        _join(options, namespace + topics.DIAGNOSTICS.name, f"{namespace}{other}.diagnostics"),
        "GroupAuthorizationFailed",
    )
    out["create a topic of its own naming"] = (
        _create(options, f"{namespace}privacam.insider.v1"),
        "TopicAuthorizationFailed",
    )
    return out


async def test_kafka_users_are_confined(stack_env: dict[str, str]) -> None:
    """Each service's Kafka user writes only the topics it owns, reads only those it
    consumes, joins only its own groups and creates no topic outside its table; `backup`
    reads and never writes. Every refusal is the real broker's authorizer (KRaft's
    StandardAuthorizer). Records the attempts write are made in a namespace of their own."""
    namespace = new_namespace(stack_env, "insider")
    admin = kafka_settings(stack_env, ADMIN, namespace).model_copy(update={"topic_partitions": 1})
    await ensure_topics(admin, topics.ALL)
    matrix: list[tuple[str, str, str, str]] = []
    try:
        for principal in (*topic_grants.SERVICES, kafka_users.BACKUP):
            options = kafka_options(stack_env, principal)
            login = _confluent_login(stack_env, principal)
            attempts = _kafka_attempts(principal, options, login, namespace)
            for name, (attempt, expected) in attempts.items():
                matrix.append((principal, name, await _kafka_outcome(attempt), expected))
        # No way around the users: the client port speaks only TLS with SCRAM.
        relay_broker = _confluent_login(stack_env, "relay_broker")
        plaintext = {"bootstrap.servers": relay_broker["bootstrap.servers"]}
        wrong = {**relay_broker, "sasl.password": "not-the-password"}
        for label, login in (("no TLS, no user", plaintext), ("a wrong password", wrong)):
            try:
                await _fetch(login, namespace + topics.IDENTITY.name)()
                got = "allowed"
            except (RuntimeError, TimeoutError, KafkaException, kafka_errors.KafkaError):
                got = "refused"
            matrix.append((label, "read privacam.identity.v1", got, "refused"))
    finally:
        await delete_namespace_topics(stack_env, namespace)

    _report(matrix, "Kafka")


# --- Kafka past the ACLs: a broker or the super user forging state records -------------


def _on(profile: Profile, service: str, endpoint: str) -> Profile:
    """The same identity, calling `endpoint` for `service`."""
    return Profile(
        profile.name,
        profile.directory,
        {**profile.endpoints, service: endpoint},
        profile.trust_domain,
    )


async def _renew_status(camera: Profile) -> grpc.StatusCode:
    """What device_auth answers a camera's empty renewal: INVALID_ARGUMENT once past
    authentication, UNAUTHENTICATED if its certificate is revoked."""
    async with PrivacamClient(camera, timeout=10) as client:
        try:
            await client.device_auth().RenewCertificate(identity_pb.RenewCertificateRequest())
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


async def _cameras_seen(app: Profile) -> set[str]:
    async with PrivacamClient(app, timeout=10) as client:
        reply = await client.device_auth().ListCameras(identity_pb.ListCamerasRequest())
    return {camera.device_id for camera in reply.cameras}


def _grant_records(grant: Grant, partitions: int) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value) of a grant as device_auth's state holds it: the record and
    its three index entries, each a first proposal of its key (services.device_auth.
    adapters.state, services.common.replicated_map)."""
    partition = zlib.crc32(GRANTS.group(grant).encode()) % partitions
    entries = [(GRANTS.key(grant.grant_id), _document(GRANTS.encode(grant)))]
    entries += [(index, _document({"id": grant.grant_id})) for index in GRANTS.indexes(grant)]
    return [(partition, f"{key}#{secrets.token_hex(8)}".encode(), value) for key, value in entries]


async def _write_as_admin(
    platform: Platform,
    topic: str,
    records: Sequence[tuple[int, bytes, bytes | None]],
    signer: StateSigner | None,
) -> None:
    """Write records with Kafka's super user, as a broker in the wrong hands could; signed
    by `signer` or not at all (None)."""
    producer = AIOKafkaProducer(**kafka_options(platform.stack_env), acks="all")
    await producer.start()
    try:
        for partition, key, value in records:
            headers = signer.headers(topic, key, value) if signer is not None else None
            await producer.send_and_wait(
                platform.namespace + topic, value, key=key, partition=partition, headers=headers
            )
    finally:
        await producer.stop()


def _reasserted(port: int, topic: str) -> float:
    return metric(port, "privacam_state_records_reasserted_total", topic=topic, result="ok")


def _rejected(port: int, topic: str, reason: str) -> float:
    return metric(port, "privacam_state_records_rejected_total", topic=topic, reason=reason)


async def test_forged_state_records_are_ignored(platform: Platform, tmp_path: Path) -> None:
    """Kafka's super user (what a broker pod or the admin credential in the wrong hands
    gives) writes (a) an unsigned tombstone over a real revocation and (b) a grant on
    another household's camera signed with relay_broker's real certificate. Kafka takes
    both; the running services, and a device_auth replica started afterwards that replays
    them, apply neither: the camera stays revoked, the grant grants nothing, and
    privacam_state_records_rejected_total counts them."""
    started = time.monotonic()
    enrollment = platform.enrollment(tmp_path / "home")
    owner, tenant = await enrollment.register_account(
        "forged-owner", f"forged-{secrets.token_hex(4)}", "a long enough passphrase"
    )
    stranger, stranger_tenant = await enrollment.register_account(
        "forged-stranger", f"stranger-{secrets.token_hex(4)}", "a long enough passphrase"
    )
    devices: list[tuple[Profile, str]] = []
    for name in ("forged-cam-revoked", "forged-cam-kept"):
        async with PrivacamClient(owner) as app:
            token = await app.device_auth().CreateClaimToken(identity_pb.CreateClaimTokenRequest())
        devices.append(await enrollment.enroll_camera(name, token.claim_token, f"SN-{name}"))
    (revoked_camera, revoked_device), (_, kept_device) = devices
    async with PrivacamClient(owner) as app:
        await app.device_auth().RevokeCamera(
            identity_pb.RevokeCameraRequest(device_id=revoked_device)
        )
    live = platform.services["device_auth"]
    assert await _renew_status(revoked_camera) is grpc.StatusCode.UNAUTHENTICATED

    revocations, identity_state = topics.REVOCATIONS.name, topics.IDENTITY_STATE.name
    before = {
        (topic, reason): _rejected(live.metrics_port, topic, reason)
        for topic, reason in ((revocations, "unsigned"), (identity_state, "wrong_writer"))
    }
    # (a) An unsigned tombstone over each record device_auth wrote revoking the camera.
    uri = spiffe_uri(platform.pki.trust_domain, PrincipalKind.CAMERA, revoked_device, tenant)
    written = await read_all(
        platform, await partitions_of(platform, [platform.namespace + revocations])
    )
    real = [
        (tp.partition, key, None)
        for tp, key, value in written
        if value is not None
        and RevocationRecord.FromString(value).subject_digest == subject_digest(uri)
    ]
    assert real, "device_auth wrote no revocation for the removed camera"
    await _write_as_admin(platform, revocations, real, None)
    # (b) The stranger granted live view and clips of the kept camera, signed by
    # relay_broker's own certificate (valid, from the service CA: the wrong writer).
    grant = Grant(
        grant_id=str(uuid.uuid4()),
        device_id=kept_device,
        owner_tenant_id=tenant,
        grantee_tenant_id=stranger_tenant,
        scopes=frozenset({GrantScope.LIVE, GrantScope.CLIPS}),
        created_at=datetime.now(UTC),
    )
    partitions = len(await partitions_of(platform, [platform.namespace + identity_state]))
    forged = _grant_records(grant, partitions)
    relay_broker = state_signing(platform.pki, "relay_broker").signer
    await _write_as_admin(platform, identity_state, forged, relay_broker)

    # The running replicas saw both and skipped them.
    deadline = time.monotonic() + 10
    while _rejected(live.metrics_port, revocations, "unsigned") < before[
        (revocations, "unsigned")
    ] + len(real) or _rejected(live.metrics_port, identity_state, "wrong_writer") < before[
        (identity_state, "wrong_writer")
    ] + len(forged):
        assert time.monotonic() < deadline, "the running device_auth did not count the forgeries"
        await asyncio.sleep(0.1)
    assert await _renew_status(revoked_camera) is grpc.StatusCode.UNAUTHENTICATED
    assert kept_device not in await _cameras_seen(stranger)
    # device_auth, the writer, wrote the revocation again after the forged tombstone, so
    # compaction keeps it rather than letting the tombstone erase it from the log.
    forged_keys = {key for _, key, _ in real}
    deadline = time.monotonic() + 10
    while True:
        latest = {
            key: value
            for _, key, value in await read_all(
                platform, await partitions_of(platform, [platform.namespace + revocations])
            )
            if key in forged_keys
        }
        if all(value is not None for value in latest.values()):
            break
        assert time.monotonic() < deadline, "the revocation was not re-asserted"
        await asyncio.sleep(0.2)

    # A replica started now replays the whole topics, forgeries included.
    fresh = make_service(
        "device_auth", platform.pki, platform.stack_env, platform.namespace, tmp_path
    )
    fresh.env.update(peer_env(live))
    with running(fresh):
        replayed = time.monotonic()
        # The forged tombstone too, unless compaction already removed it (the re-asserted
        # revocation is newer).
        replayed_tombstones = _rejected(fresh.metrics_port, revocations, "unsigned")
        assert replayed_tombstones <= len(real)
        assert _rejected(fresh.metrics_port, identity_state, "wrong_writer") == len(forged)
        camera_there = _on(revoked_camera, "device_auth", fresh.endpoint)
        assert await _renew_status(camera_there) is grpc.StatusCode.UNAUTHENTICATED
        stranger_there = _on(stranger, "device_auth", fresh.endpoint)
        assert kept_device not in await _cameras_seen(stranger_there)
        # Not a malformed forgery: the same records signed by device_auth's key do grant.
        device_auth = state_signing(platform.pki, "device_auth").signer
        genuine_grant = replace(grant, grant_id=str(uuid.uuid4()))
        genuine = _grant_records(genuine_grant, partitions)
        await _write_as_admin(platform, identity_state, genuine, device_auth)
        deadline = time.monotonic() + 10
        while kept_device not in await _cameras_seen(stranger_there):
            assert time.monotonic() < deadline, "a grant signed by device_auth was not applied"
            await asyncio.sleep(0.2)
        async with PrivacamClient(owner) as app:  # and the owner takes it back
            await app.device_auth().RevokeGrant(
                identity_pb.RevokeGrantRequest(grant_id=genuine_grant.grant_id)
            )
    print(
        f"\nforged: {len(real)} unsigned revocation tombstone(s) ({replayed_tombstones:.0f} "
        f"still in the log at replay), {len(forged)} grant records signed by relay_broker; "
        f"all skipped, live and on replay (fresh replica SERVING {replayed - started:.1f} s "
        f"into the test); test took {time.monotonic() - started:.1f} s"
    )


def _newest(
    records: Sequence[tuple[TopicPartition, bytes, bytes | None]], key: bytes
) -> tuple[int, bytes | None, int]:
    """(partition, newest value, how many values) of `key` in records read in order."""
    mine = [(tp.partition, value) for tp, k, value in records if k == key]
    assert mine, f"no record of {key!r}"
    return mine[-1][0], mine[-1][1], sum(value is not None for _, value in mine)


async def test_forged_tombstones_are_reasserted(platform: Platform, tmp_path: Path) -> None:
    """Kafka's super user tombstones (unsigned) a real used-receipt claim on the key state
    topic and a real camera record on device_auth's identity state. Every replica skips
    the tombstones, but compaction would let them erase the records; key_manager and
    device_auth write their values again, signed, so once compaction has run only those
    are left, and replicas started afterwards still refuse the receipt's reuse and still
    know the camera."""
    started = time.monotonic()
    key_state, identity_state = topics.KEY_STATE.name, topics.IDENTITY_STATE.name
    live_keys, live_identity = platform.services["key_manager"], platform.services["device_auth"]
    # A used receipt: clip_ingest logs an access and releases a clip key with its receipt.
    ingest = platform.pki.service("clip_ingest")
    tenant = str(uuid.uuid4())
    context = keys_pb2.KeyContext(tenant_id=tenant, device_id="cam-1", clip_id="clip-1")
    record = log_pb2.AccessRecord(
        access_id=str(uuid.uuid4()),
        tenant_id=tenant,
        principal=types_pb2.Principal(
            kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id=tenant, id="phone-1"
        ),
        resource=log_pb2.Resource(
            kind=log_pb2.RESOURCE_KIND_CLIP, device_id="cam-1", clip_id="clip-1"
        ),
        purpose=types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
        service="clip_ingest",
        occurred_at=to_timestamp(datetime.now(UTC)),
    )
    async with (
        mtls_channel(platform.services["access_log"].endpoint, ingest) as log_channel,
        mtls_channel(live_keys.endpoint, ingest) as keys_channel,
    ):
        keys = km_grpc.KeyManagerServiceStub(keys_channel)
        generated = await keys.GenerateDataKey(
            km_pb.GenerateDataKeyRequest(context=context), timeout=15
        )
        log = log_grpc.AccessLogServiceStub(log_channel)
        receipt = (await log.Append(log_pb.AppendRequest(record=record), timeout=15)).receipt
        unwrap = km_pb.UnwrapRequest(
            wrapped_key=generated.wrapped_key,
            context=context,
            purpose=types_pb2.ACCESS_PURPOSE_CLIP_PLAYBACK,
            receipt=receipt,
        )
        assert (await keys.Unwrap(unwrap, timeout=15)).plaintext_key == generated.plaintext_key
    claim = claim_key(tenant, record.access_id)
    # A real identity record: the camera an owner paired.
    enrollment = platform.enrollment(tmp_path / "home")
    owner, _ = await enrollment.register_account(
        "reassert-owner", f"reassert-{secrets.token_hex(4)}", "a long enough passphrase"
    )
    async with PrivacamClient(owner) as app:
        token = await app.device_auth().CreateClaimToken(identity_pb.CreateClaimTokenRequest())
    _, device_id = await enrollment.enroll_camera(
        "reassert-cam", token.claim_token, "SN-reassert-cam"
    )
    names = [platform.namespace + key_state, platform.namespace + identity_state]
    written = await read_all(platform, await partitions_of(platform, names))
    (camera,) = {k for _, k, _ in written if k.startswith(f"camera/{device_id}#".encode())}
    targets = {key_state: claim, identity_state: camera}
    found = {topic: _newest(written, key) for topic, key in targets.items()}
    assert all(value is not None for _, value, _ in found.values())

    before = {
        topic: metric(
            service.metrics_port,
            "privacam_state_records_reasserted_total",
            topic=topic,
            result="ok",
        )
        for topic, service in ((key_state, live_keys), (identity_state, live_identity))
    }
    for topic, key in targets.items():
        await _write_as_admin(platform, topic, [(found[topic][0], key, None)], None)

    # The writers write their values again, signed, after the forged tombstones ...
    deadline = time.monotonic() + 10
    while True:
        records = await read_all(platform, await partitions_of(platform, names))
        newest = {topic: _newest(records, key) for topic, key in targets.items()}
        if all(newest[t][1] == found[t][1] for t in targets):
            break
        assert time.monotonic() < deadline, f"not re-asserted: {newest}"
        await asyncio.sleep(0.2)
    reasserted = time.monotonic()
    for topic, service in ((key_state, live_keys), (identity_state, live_identity)):
        counted = metric(
            service.metrics_port,
            "privacam_state_records_reasserted_total",
            topic=topic,
            result="ok",
        )
        assert counted == before[topic] + 1
    # ... and compaction keeps those: wait until it has erased the first values.
    deadline = time.monotonic() + 120
    while any(_newest(records, key)[2] > 1 for key in targets.values()):
        assert time.monotonic() < deadline, "compaction did not run in 120 s"
        await asyncio.sleep(2)
        records = await read_all(platform, await partitions_of(platform, names))
    compacted = time.monotonic()
    for topic, key in targets.items():  # all that is left is each writer's signed value
        partition, value, values = _newest(records, key)
        assert (partition, value, values) == (found[topic][0], found[topic][1], 1)

    # Replicas started now replay what compaction left.
    fresh_keys = make_service(
        "key_manager", platform.pki, platform.stack_env, platform.namespace, tmp_path
    )
    fresh_keys.env.update(peer_env(live_keys))
    fresh_identity = make_service(
        "device_auth", platform.pki, platform.stack_env, platform.namespace, tmp_path
    )
    fresh_identity.env.update(peer_env(live_identity))
    with running(fresh_keys, fresh_identity):
        async with mtls_channel(fresh_keys.endpoint, ingest) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await km_grpc.KeyManagerServiceStub(channel).Unwrap(unwrap, timeout=15)
        assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "already used" in (raised.value.details() or "")
        owner_there = _on(owner, "device_auth", fresh_identity.endpoint)
        assert device_id in await _cameras_seen(owner_there)
    print(
        f"\nforged tombstones over a used receipt's claim and a camera record: re-asserted "
        f"{reasserted - started:.1f} s into the test, first values compacted away "
        f"{compacted - reasserted:.1f} s later; fresh replicas refuse the receipt and know "
        f"the camera; test took {time.monotonic() - started:.1f} s"
    )
