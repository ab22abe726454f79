"""An insider holding one service's credentials reaches nothing of another's.

Redis: each service logs in as its own ACL user (stack/redis_acl.py, created by
stack/up.sh), confined to `<namespace><its prefix>` keys, its own channels and the
commands it uses; coturn's user (Redis's `default`: coturn 4.6 cannot name a user) may
only publish its traffic reports. Every refusal below is the real Redis's NOPERM.

MinIO: each service that keeps objects has its own user and policy (stack/minio_users.py,
created by stack/up.sh); every refusal below is the real MinIO's AccessDenied.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable, Iterator

import pytest
from minio import Minio
from minio.error import S3Error
from redis import Redis
from redis.exceptions import NoPermissionError

from services.common.stores import ObjectStore
from tests.harness import stack_minio_settings

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
