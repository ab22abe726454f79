"""Topics keep their promise on the real broker: settings a service writes are set again at
start, a topic with another partition count stops start-up, and only a topic's writers may
change its settings (Kafka's own authorizer refuses the others)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAuthorizationFailedError

from services.common import topic_grants, topics
from services.common.kafka import client_options, ensure_topics
from services.common.settings import KafkaSettings, SettingsError
from tests.harness import cleanup_namespace, kafka_admin, kafka_settings, new_namespace


@pytest.fixture
def namespace(stack_env: dict[str, str]) -> Iterator[str]:
    name = new_namespace(stack_env, "topics")
    yield name
    cleanup_namespace(stack_env, name)


def _settings(stack: dict[str, str], service: str, namespace: str, **update: int) -> KafkaSettings:
    return kafka_settings(stack, service, namespace).model_copy(update=update)


def _configs(stack: dict[str, str], topic: str) -> dict[str, str]:
    from confluent_kafka.admin import ConfigResource as Resource
    from confluent_kafka.admin import ResourceType

    admin = kafka_admin(stack)
    [future] = admin.describe_configs([Resource(ResourceType.TOPIC, topic)]).values()
    return {name: entry.value for name, entry in future.result(timeout=30).items()}


async def test_topic_settings_are_set_again_by_their_writer(
    stack_env: dict[str, str], namespace: str
) -> None:
    name = namespace + topics.IDENTITY_STATE.name
    first = _settings(stack_env, "device_auth", namespace, forget_within_seconds=600)
    await ensure_topics(first, [topics.IDENTITY_STATE])
    assert _configs(stack_env, name)["segment.ms"] == "100000"
    # The writer's next start, with a new bound, sets it on the existing topic.
    writer = _settings(stack_env, "device_auth", namespace, forget_within_seconds=1200)
    await ensure_topics(writer, [topics.IDENTITY_STATE], topic_grants.writes("device_auth"))
    configs = _configs(stack_env, name)
    assert (configs["segment.ms"], configs["delete.retention.ms"]) == ("200000", "200000")
    assert configs["cleanup.policy"] == "compact"


async def test_only_a_topics_writer_may_change_its_settings(
    stack_env: dict[str, str], namespace: str
) -> None:
    name = namespace + topics.IDENTITY_STATE.name
    await ensure_topics(_settings(stack_env, "device_auth", namespace), [topics.IDENTITY_STATE])
    admin = AIOKafkaAdminClient(**client_options(kafka_settings(stack_env, "relay_broker")))
    await admin.start()
    try:
        [response] = await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, {"cleanup.policy": "delete"})]
        )
    finally:
        await admin.close()
    [(code, *_)] = response.resources
    assert code == TopicAuthorizationFailedError.errno  # refused by Kafka's authorizer
    assert _configs(stack_env, name)["cleanup.policy"] == "compact"


async def test_another_partition_count_stops_start_up(
    stack_env: dict[str, str], namespace: str
) -> None:
    await ensure_topics(
        _settings(stack_env, "retention", namespace, topic_partitions=2), [topics.RETENTION]
    )
    with pytest.raises(SettingsError, match="PRIVACAM_KAFKA_TOPIC_PARTITIONS is 3") as stopped:
        await ensure_topics(
            _settings(stack_env, "retention", namespace, topic_partitions=3), [topics.RETENTION]
        )
    assert f"{namespace}{topics.RETENTION.name} has 2" in str(stopped.value)
