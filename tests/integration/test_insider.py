"""An insider holding one service's credentials reaches nothing of another's.

Redis: each service logs in as its own ACL user (stack/redis_acl.py, created by
stack/up.sh), confined to `<namespace><its prefix>` keys, its own channels and the
commands it uses; coturn's user (Redis's `default`: coturn 4.6 cannot name a user) may
only publish its traffic reports. Every refusal below is the real Redis's NOPERM.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
from redis import Redis
from redis.exceptions import NoPermissionError

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

    width = max(len(name) for _, name, _, _ in matrix)
    print("\nuser              attempt" + " " * (width - 7) + "  answer by Redis")
    for user, name, got, expected in matrix:
        mark = "" if got == expected else f"   <-- expected {expected}"
        print(f"{user:<17} {name:<{width}}  {got}{mark}")
    wrong = [(user, name, got) for user, name, got, expected in matrix if got != expected]
    assert not wrong, wrong
