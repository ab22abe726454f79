"""Kafka users and ACLs of Privacam: one SCRAM user per service, each allowed only its topics.

Every client logs in over TLS with SCRAM-SHA-512 as its own user; Kafka's own authorizer
(StandardAuthorizer, KRaft) checks each request against ACLs made from the table in
services/common/topic_grants.py: a service writes only the topics it owns, reads only those
it consumes, creates only topics it uses and joins only consumer groups named after itself;
each of its consumer groups may write (and create) its own dead-letter topic, never read it,
and no service writes another group's (replaying dead letters is the administrator's).
`backup` reads every topic and writes none. The administrator is whoever holds the
broker's own key: it logs in with that certificate on the broker's internal TLS listener
(the super user); no service has it. ACLs are per namespace (the prefix of every topic and
group), so environments sharing a cluster see nothing of each other.

    kafka_users.py apply  --secrets DIR --admin BOOTSTRAP,CA,CERT,KEY [--namespace NS]
    kafka_users.py revoke --secrets DIR --admin BOOTSTRAP,CA,CERT,KEY --namespace NS
    kafka_users.py acls [--namespace NS]              # the ACLs, one per line, for operators
    kafka_users.py env --secrets DIR                  # stack.env lines of every user

Passwords live in files in --secrets (`kafka_<user>_password`, made on first use), never in
argv. Run with the project's virtualenv (it uses confluent-kafka's admin client, the one
Python client that manages SCRAM users and ACLs).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from secrets import token_urlsafe
from typing import Any

if __package__ in (None, ""):  # run as a script: make `services` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.common.catalog import SERVICES
from services.common.topic_grants import (
    BACKUP_READS,
    GRANTS,
    dead_letter_writes,
    reads,
    writes,
)

BACKUP = "backup"
SCRAM_ITERATIONS = 8192
# What every ACL allows from: any host (the network policy and TLS guard the path).
ANY_HOST = "*"


def username(service: str) -> str:
    """A service's Kafka user: `privacam-<service id>` (ids use '-', not '_')."""
    return "privacam-" + service.replace("_", "-")


USERS = (BACKUP, *(username(service) for service in SERVICES))


def password(secrets: Path, user: str) -> str:
    path = secrets / f"kafka_{user}_password"
    if not path.exists():
        secrets.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token_urlsafe(24))
    return path.read_text().strip()


@dataclass(frozen=True, order=True)
class Acl:
    principal: str
    resource: str  # "topic" | "group"
    name: str
    prefixed: bool
    operation: str  # "read" | "write" | "create"

    def __str__(self) -> str:
        pattern = "prefixed" if self.prefixed else "literal"
        return f"User:{self.principal} {self.operation} {self.resource} {self.name} ({pattern})"


def acls(namespace: str = "") -> list[Acl]:
    """Every ACL of one namespace (topics and groups carry the namespace as a prefix)."""
    found: set[Acl] = set()
    for service in SERVICES:
        user = username(service)
        for topic in writes(service):
            found.add(Acl(user, "topic", namespace + topic, False, "write"))
            # Its writers set a topic's settings again at start (services.common.kafka).
            found.add(Acl(user, "topic", namespace + topic, False, "alter_configs"))
        for topic in reads(service):
            found.add(Acl(user, "topic", namespace + topic, False, "read"))
        for topic in writes(service) | reads(service):
            found.add(Acl(user, "topic", namespace + topic, False, "create"))
        # Its groups' dead letters: written, created at start and their retention set
        # again; never read (services.common.deadletters runs as the administrator).
        for topic in dead_letter_writes(service):
            for operation in ("write", "create", "alter_configs"):
                found.add(Acl(user, "topic", namespace + topic, False, operation))
        # Topics a stream processor makes for itself (changelogs), by prefix: the '-' after
        # the app id keeps it from reaching any topic of the platform.
        for prefix in GRANTS[service].topic_prefixes:
            for operation in ("read", "write", "create", "describe_configs", "alter_configs"):
                found.add(Acl(user, "topic", namespace + prefix, True, operation))
        for group in GRANTS[service].groups:
            prefixed = group.endswith(".")
            found.add(Acl(user, "group", namespace + group, prefixed, "read"))
    for topic in BACKUP_READS:
        found.add(Acl(BACKUP, "topic", namespace + topic, False, "read"))
    return sorted(found)


# ------------------------------------------------------------ the admin client ----


@dataclass(frozen=True)
class AdminLogin:
    """The super user's way in: the internal TLS listener and the broker's own key."""

    bootstrap: str
    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def parse(cls, value: str) -> AdminLogin:
        bootstrap, ca, cert, key = value.split(",")
        return cls(bootstrap, Path(ca), Path(cert), Path(key))


def admin_client(login: AdminLogin) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient(
        {
            "bootstrap.servers": login.bootstrap,
            "security.protocol": "SSL",
            "ssl.ca.location": str(login.ca_file),
            "ssl.certificate.location": str(login.cert_file),
            "ssl.key.location": str(login.key_file),
            "socket.timeout.ms": 20_000,
        }
    )


def _bindings(wanted: Iterable[Acl]) -> list[Any]:
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    return [
        AclBinding(
            ResourceType.TOPIC if acl.resource == "topic" else ResourceType.GROUP,
            acl.name,
            ResourcePatternType.PREFIXED if acl.prefixed else ResourcePatternType.LITERAL,
            f"User:{acl.principal}",
            ANY_HOST,
            getattr(AclOperation, acl.operation.upper()),
            AclPermissionType.ALLOW,
        )
        for acl in wanted
    ]


def _wait(futures: dict[Any, Any], timeout: float = 30.0) -> list[Any]:
    return [future.result(timeout=timeout) for future in futures.values()]


def set_users(admin: Any, secrets: Path) -> None:
    """Create or update every service's SCRAM user (idempotent: a new salt each time)."""
    from confluent_kafka.admin import (
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts = [
        UserScramCredentialUpsertion(user, info, password(secrets, user).encode()) for user in USERS
    ]
    _wait(admin.alter_user_scram_credentials(upserts))


def grant(admin: Any, namespace: str) -> int:
    """Create the namespace's ACLs (creating one that exists changes nothing)."""
    return grant_acls(admin, acls(namespace))


def grant_acls(admin: Any, wanted: Iterable[Acl]) -> int:
    bindings = _bindings(wanted)
    _wait(admin.create_acls(bindings))
    return len(bindings)


def revoke(admin: Any, namespace: str) -> int:
    """Delete the namespace's ACLs (when its topics are deleted)."""
    return revoke_acls(admin, acls(namespace))


def revoke_acls(admin: Any, unwanted: Iterable[Acl]) -> int:
    from confluent_kafka.admin import AclBindingFilter

    filters = [
        AclBindingFilter(
            b.restype,
            b.name,
            b.resource_pattern_type,
            b.principal,
            b.host,
            b.operation,
            b.permission_type,
        )
        for b in _bindings(unwanted)
    ]
    return sum(len(deleted) for deleted in _wait(admin.delete_acls(filters)))


def env_lines(secrets: Path) -> list[str]:
    lines = []
    for service in SERVICES:
        prefix = f"PRIVACAM_STACK_KAFKA_{service.upper()}"
        lines += [
            f"{prefix}_USERNAME={username(service)}",
            f"{prefix}_PASSWORD={password(secrets, username(service))}",
        ]
    lines += [
        f"PRIVACAM_STACK_KAFKA_BACKUP_USERNAME={BACKUP}",
        f"PRIVACAM_STACK_KAFKA_BACKUP_PASSWORD={password(secrets, BACKUP)}",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("apply", "revoke", "env"):
        command = sub.add_parser(name)
        command.add_argument("--secrets", type=Path, required=True)
        if name in ("apply", "revoke"):
            command.add_argument(
                "--admin",
                type=AdminLogin.parse,
                required=True,
                help="BOOTSTRAP,CA_FILE,CERT_FILE,KEY_FILE of the super user",
            )
            command.add_argument("--namespace", default="", required=name == "revoke")
    sub.add_parser("acls").add_argument("--namespace", default="")
    args = parser.parse_args(argv)
    if args.command == "acls":
        print("\n".join(str(acl) for acl in acls(args.namespace)))
    elif args.command == "env":
        print("\n".join(env_lines(args.secrets)))
    else:
        admin = admin_client(args.admin)
        if args.command == "apply":
            set_users(admin, args.secrets)
            count = grant(admin, args.namespace)
            print(f"kafka: {len(USERS)} users set, {count} ACLs for namespace '{args.namespace}'")
        else:
            print(f"kafka: {revoke(admin, args.namespace)} ACLs deleted for '{args.namespace}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
