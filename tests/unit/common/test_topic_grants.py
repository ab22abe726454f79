"""The Kafka ACL table (services/common/topic_grants.py) against the code: each service is
granted exactly the topics its code names, and the ACLs made from it name each namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.common import topic_grants, topics
from services.common.kafka import Topic
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
