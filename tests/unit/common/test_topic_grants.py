"""The Kafka ACL table (services/common/topic_grants.py) against the code: each service is
granted exactly the topics its code names, and the ACLs made from it name each namespace."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from services.common import topic_grants, topics
from services.common.kafka import Topic, dead_letter_topic_name
from stack import kafka_users

ROOT = Path(__file__).resolve().parents[3]
TOPIC_BY_CONSTANT = {
    name: value.name for name, value in vars(topics).items() if isinstance(value, Topic)
}
# Every service publishes diagnostics probes and replays revocations (services.common.runtime).
COMMON = {topics.DIAGNOSTICS.name, topics.REVOCATIONS.name}


def _named_in_code(service: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "services" / service).rglob("*.py"):
        for constant in re.findall(r"\btopics\.([A-Z_]+)\b", path.read_text()):
            found.add(TOPIC_BY_CONSTANT[constant])
    return found


@pytest.mark.parametrize("service", topic_grants.SERVICES)
def test_each_service_is_granted_the_topics_its_code_names(service: str) -> None:
    granted = topic_grants.writes(service) | topic_grants.reads(service)
    assert granted == _named_in_code(service) | COMMON


def test_grant_and_key_topics_have_one_writer_each() -> None:
    """The topics an insider would forge to grant itself rights or read keys."""
    for topic, owner in (
        (topics.IDENTITY_STATE, "device_auth"),
        (topics.REVOCATIONS, "device_auth"),
        (topics.KEY_STATE, "key_manager"),
        (topics.ACCESS_STATE, "access_log"),
        (topics.RETENTION_STATE, "retention"),
    ):
        writers = {s for s in topic_grants.SERVICES if topic.name in topic_grants.writes(s)}
        assert writers == {owner}, topic.name


def test_acls_are_per_namespace_and_per_user() -> None:
    acls = kafka_users.acls("ns-a.")
    assert acls, "no ACLs"
    assert all(acl.name.startswith("ns-a.") for acl in acls)
    assert {acl.principal for acl in acls} == set(kafka_users.USERS)
    # No wildcard and no prefix that reaches past the namespace into other topics: the
    # only topic prefixes are a stream processor's own, `<app id>-` (its changelogs).
    platform = {topic.name for topic in topics.ALL}
    for acl in acls:
        if acl.resource == "topic" and acl.prefixed:
            assert acl.name.endswith("-"), acl
            assert not any(name.startswith(acl.name[len("ns-a.") :]) for name in platform)
    assert all("*" not in acl.name for acl in acls)
    backup = [acl for acl in acls if acl.principal == kafka_users.BACKUP]
    assert {acl.operation for acl in backup} == {"read"}


def _dead_letter_groups_in_code(service: str) -> set[str]:
    """The dead-letter group of each EventConsumer the service's code makes: its
    `dead_letter_group`, else its group id (each must be a literal, so it can be granted)."""
    found: set[str] = set()
    for path in (ROOT / "services" / service).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name != "EventConsumer":
                continue
            keywords = {k.arg: k.value for k in node.keywords}
            group = keywords.get("dead_letter_group") or (
                node.args[2] if len(node.args) > 2 else keywords.get("group_id")
            )
            assert isinstance(group, ast.Constant), f"{path}:{node.lineno}: name it literally"
            found.add(str(group.value))
    return found


@pytest.mark.parametrize("service", topic_grants.SERVICES)
def test_each_consumer_group_is_granted_its_own_dead_letter_topic(service: str) -> None:
    # `<service>.diagnostics` is every service's (services.common.runtime).
    assert set(topic_grants.GRANTS[service].dead_letters) == _dead_letter_groups_in_code(service)
    assert topic_grants.dead_letter_groups(service)[0] == f"{service}.diagnostics"


def test_dead_letter_topics_are_written_by_their_group_only_and_read_by_no_service() -> None:
    acls = [acl for acl in kafka_users.acls("ns-a.") if ".privacam.deadletter." in acl.name]
    assert {acl.operation for acl in acls} == {"write", "create", "alter_configs"}
    assert not any(acl.prefixed for acl in acls)
    owners: dict[str, set[str]] = {}
    for acl in acls:
        owners.setdefault(acl.name, set()).add(acl.principal)
    assert all(len(principals) == 1 for principals in owners.values())
    for service in topic_grants.SERVICES:
        mine = {acl.name for acl in acls if acl.principal == kafka_users.username(service)}
        assert mine == {
            "ns-a." + dead_letter_topic_name(group)
            for group in topic_grants.dead_letter_groups(service)
        }
    # Dead letters are not state: the backup does not read them.
    assert not any("deadletter" in name for name in topic_grants.BACKUP_READS)
