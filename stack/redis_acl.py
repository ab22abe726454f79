#!/usr/bin/env python3
"""Redis ACL users of Privacam: one per service, coturn's, and a setup user.

Standard library only: stack/up.sh runs it with the system python3 before any virtualenv
exists. Passwords are read from files (never argv) and only their SHA-256 leaves here.

    redis_acl.py file     --secrets DIR [--namespace NS]   # an aclfile (redis-server --aclfile)
    redis_acl.py setuser  --secrets DIR [--namespace NS]   # ACL SETUSER lines for redis-cli
    redis_acl.py rules    USER [--namespace NS]            # one user's rules, for operators

Keys and pub/sub channels are `<PRIVACAM_KAFKA_NAMESPACE><prefix>...`; the namespace is
empty or `[a-z0-9-]{1,32}.` (KafkaSettings.namespace). A glob such as `*relay:*` would
also match another service's key that merely contains `relay:` (an id, a hash, a nested
test prefix), so the patterns are anchored instead: `relay:*` plus, for each namespace
length n, n times `[a-z0-9-]` then `.relay:*`. A namespace contains no `.` and no `:`, so
a key matches a service's patterns only if the service's prefix starts right after the
namespace: no key can match two services. Given --namespace (a deployment knows its own),
only that namespace's pattern is emitted.

coturn 4.6 sends `AUTH <password>` without a user name (redis-statsdb has no user
option), which authenticates as Redis's `default` user: so `default` is coturn's user,
with a password and the right to PUBLISH traffic reports and nothing else. The setup user
(all rights) exists for stack/up.sh and operators; no service is given its password.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

NAMESPACE_CHARS = "[a-z0-9-]"
NAMESPACE_MAX = 32
TURN_TRAFFIC = "turn/realm/*/user/*/allocation/*/traffic"
"""coturn's per-allocation traffic reports (redis-statsdb), the only thing relay_broker
reads from coturn. The same string is relay_broker's PSUBSCRIBE pattern: Redis admits a
PSUBSCRIBE only for a pattern listed literally in the user's channel patterns."""

# What every service may run: reads and writes of its own keys, transactions, scripts
# (Redis checks every command a script runs against the same ACL), and connection upkeep.
# Removed: whatever lists or wipes the keyspace (KEYS, SCAN, RANDOMKEY, FLUSHALL/FLUSHDB,
# via @dangerous), CONFIG, ACL and other @admin commands.
_SERVICE_COMMANDS = (
    "-@all +@read +@write +@transaction +eval +evalsha +script|load +script|exists "
    "+ping +echo +client|setname -@dangerous -@admin -scan -randomkey -keys"
)

SERVICES: dict[str, dict[str, str]] = {
    # user: key prefix, channel prefix ("" = no channels), extra rules
    "device_auth": {"keys": "device_auth:", "channels": "", "extra": ""},
    "clip_ingest": {"keys": "clip_ingest:", "channels": "", "extra": ""},
    "relay_broker": {
        "keys": "relay:",
        "channels": "relay:ch:",
        # Its own channels: publish and subscribe. coturn's reports: subscribe only, in a
        # selector, so relay_broker cannot PUBLISH a forged report.
        "extra": f"+publish +subscribe +unsubscribe +punsubscribe (+psubscribe &{TURN_TRAFFIC})",
    },
    # Account cancellation finds a tenant's keys with SCAN MATCH. Redis cannot limit SCAN
    # to a user's patterns (it lists every key name, never a value), so only retention,
    # which needs it, has it.
    "retention": {"keys": "retention:", "channels": "", "extra": "+scan"},
}
COTURN_USER = "default"
SETUP_USER = "setup"


def anchored(prefix: str, namespace: str | None) -> list[str]:
    """Globs matching `<namespace><prefix>*` for this namespace, or for any valid one."""
    if namespace is not None:
        return [f"{namespace}{prefix}*"]
    return [f"{prefix}*"] + [
        f"{NAMESPACE_CHARS * n}.{prefix}*" for n in range(1, NAMESPACE_MAX + 1)
    ]


def rules(user: str, namespace: str | None = None) -> list[str]:
    """The rules of a user, after `reset` and its password (one item per argument)."""
    if user == SETUP_USER:
        return ["~*", "&*", "+@all"]
    if user == COTURN_USER:
        return [f"&{TURN_TRAFFIC}", "-@all", "+publish"]
    spec = SERVICES[user]
    out = [f"~{p}" for p in anchored(spec["keys"], namespace)]
    if spec["channels"]:
        out += [f"&{p}" for p in anchored(spec["channels"], namespace)]
    out += _SERVICE_COMMANDS.split()
    extra = spec["extra"]
    if "(" in extra:
        plain, _, selector = extra.partition("(")
        out += [*plain.split(), "(" + selector]
    else:
        out += extra.split()
    return out


def users() -> list[str]:
    """Setup first: up.sh creates it before it changes `default`."""
    return [SETUP_USER, *SERVICES, COTURN_USER]


def password_file(secrets: Path, user: str) -> Path:
    name = "coturn" if user == COTURN_USER else user
    return secrets / f"redis_{name}_password"


def _hash(secrets: Path, user: str) -> str:
    password = password_file(secrets, user).read_text().strip()
    if len(password) < 32:
        raise SystemExit(f"{password_file(secrets, user)}: a password of 32+ characters expected")
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def _quote(arg: str) -> str:
    return f'"{arg}"' if " " in arg else arg


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("file", "setuser", "rules"))
    parser.add_argument("user", nargs="?")
    parser.add_argument("--secrets", type=Path)
    parser.add_argument("--namespace", default=None)
    args = parser.parse_args(argv)
    if args.what == "rules":
        if args.user not in users():
            parser.error(f"user must be one of {', '.join(users())}")
        print(" ".join(_quote(r) for r in rules(args.user, args.namespace)))
        return 0
    if args.secrets is None:
        parser.error("--secrets DIR is required")
    for user in users():
        line = ["reset", "on", _hash(args.secrets, user), *rules(user, args.namespace)]
        if args.what == "file":
            print(f"user {user} {' '.join(line)}")
        else:
            print(f"ACL SETUSER {user} {' '.join(_quote(r) for r in line)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
