"""Who may do what on Kafka: the topics each service writes and reads, and its consumer groups.

Kafka's own authorizer enforces this table (stack/kafka_users.py turns it into ACLs for a
namespace): a topic is written only by its owners and read only by its consumers, and each
service joins only groups named after itself. A service may also create the topics it uses,
with the platform's settings (services.common.kafka.ensure_topics), so any service can be
the first to start. Each consumer group has a dead-letter topic
(services.common.kafka.dead_letter_topic_name) that its service may write and create, and
that only the administrator reads: no service writes another group's.
`tests/unit/common/test_topic_grants.py` checks the table against the topics and consumer
groups each service's code names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.common import topics
from services.common.catalog import SERVICES as SERVICES
from services.common.kafka import Topic, dead_letter_topic_name


@dataclass(frozen=True)
class TopicGrant:
    writes: frozenset[str]
    reads: frozenset[str]
    groups: tuple[str, ...]
    """Consumer group names (before the namespace); a name ending in '.' is a prefix."""
    dead_letters: tuple[str, ...] = ()
    """Its consumer groups (before the namespace) that have a dead-letter topic, besides
    `<service>.diagnostics`, which every service has: the names the EventConsumers give
    (`dead_letter_group`, or their group id)."""
    topic_prefixes: tuple[str, ...] = ()
    """Topics it makes for itself and alone uses, by name prefix (before the namespace):
    a Faust app's changelogs and assignor topic, `<app id>-...`. Read, written, created."""


def _names(*used: Topic[Any]) -> frozenset[str]:
    return frozenset(topic.name for topic in used)


# Every service publishes and consumes diagnostics probes and replays revocations.
_EVERYONE_WRITES = _names(topics.DIAGNOSTICS)
_EVERYONE_READS = _names(topics.DIAGNOSTICS, topics.REVOCATIONS)

GRANTS: dict[str, TopicGrant] = {
    "device_auth": TopicGrant(
        # REVOCATIONS: it revokes, and prunes expired records (tombstones).
        writes=_names(topics.IDENTITY, topics.IDENTITY_STATE, topics.REVOCATIONS, topics.ACCESS),
        reads=_names(topics.IDENTITY_STATE),
        groups=("device_auth.",),
    ),
    "key_manager": TopicGrant(
        writes=_names(topics.KEYS, topics.KEY_STATE),
        reads=_names(topics.KEY_STATE),
        groups=("key_manager.",),
    ),
    "clip_ingest": TopicGrant(
        writes=_names(topics.CLIPS),
        # IDENTITY: the cameras' settings (is upload on, how long are clips kept).
        reads=_names(topics.CLIPS, topics.IDENTITY),
        groups=("clip_ingest.",),
        # The index's group is clip_ingest.index.<generation>; its dead letters are one topic.
        dead_letters=("clip_ingest.index",),
    ),
    "relay_broker": TopicGrant(
        writes=_names(topics.RELAY),
        # WATCH_NOTICES: the privacy watch's notices, for the households' notice streams.
        reads=_names(topics.IDENTITY, topics.WATCH_NOTICES),
        groups=("relay_broker.",),
        dead_letters=("relay_broker.identity", "relay_broker.watch"),
    ),
    "retention": TopicGrant(
        # CLIPS: it announces the clips it deleted.
        writes=_names(topics.RETENTION, topics.RETENTION_STATE, topics.CLIPS),
        reads=_names(topics.RETENTION, topics.RETENTION_STATE, topics.CLIPS, topics.IDENTITY),
        groups=("retention.",),
        dead_letters=("retention.schedule", "retention.exports"),
    ),
    "access_log": TopicGrant(
        writes=_names(topics.ACCESS, topics.ACCESS_STATE),
        reads=_names(topics.ACCESS, topics.ACCESS_STATE, topics.IDENTITY),
        groups=("access_log", "access_log."),
        dead_letters=("access_log",),
    ),
    "privacy_watch": TopicGrant(
        writes=_names(topics.WATCH_NOTICES),
        # IDENTITY: wrong-PIN lockouts, app installs and new grants.
        reads=_names(topics.ACCESS, topics.IDENTITY),
        # The Faust app's group is its id; diagnostics has privacy_watch.diagnostics.
        groups=("privacy_watch", "privacy_watch."),
        topic_prefixes=("privacy_watch-",),
    ),
}


def writes(service: str) -> frozenset[str]:
    return GRANTS[service].writes | _EVERYONE_WRITES


def reads(service: str) -> frozenset[str]:
    return GRANTS[service].reads | _EVERYONE_READS


def dead_letter_groups(service: str) -> tuple[str, ...]:
    """The consumer groups of a service that have a dead-letter topic."""
    return (f"{service}.diagnostics", *GRANTS[service].dead_letters)


def dead_letter_writes(service: str) -> frozenset[str]:
    """The dead-letter topics a service writes (and creates): its own groups' only."""
    return frozenset(dead_letter_topic_name(group) for group in dead_letter_groups(service))


BACKUP_READS = frozenset(topic.name for topic in topics.ALL)
"""The backup principal (services.common.backup) reads every topic and writes none."""


def state_writers() -> dict[str, str]:
    """Compacted topic -> the SPIFFE name of the one service that writes it: whose
    signature its readers require (services.common.signed_state). Raises if a compacted
    topic has no writer or several, since then no single signer could be named."""
    writers: dict[str, str] = {}
    for topic in topics.ALL:
        if not topic.compacted:
            continue
        owners = [s for s in SERVICES if topic.name in writes(s)]
        if len(owners) != 1:
            raise ValueError(f"{topic.name} must have exactly one writer, not {owners}")
        # Service names use '_' in Python and '-' in identities (ids allow no '_').
        writers[topic.name] = owners[0].replace("_", "-")
    return writers
