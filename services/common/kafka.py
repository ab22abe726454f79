"""Kafka helpers: typed topics, an idempotent producer, a committing consumer, a Faust codec.

Every topic carries one protobuf envelope type, keyed by tenant id so one
household's events stay in order. Producers wait for acks from all in-sync
replicas with idempotence on (aiokafka's defaults are acks=1 without it).
Consumers commit only after the handler's effect is done, so handlers must be
idempotent on replay; a failing handler is retried with back-off, for as long as a store
is away, and an event its handler itself keeps failing goes to the group's dead-letter
topic (EventConsumer), from which `python -m services.common.deadletters` replays it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    TopicAlreadyExistsError,
    for_code,
)
from faust.serializers import codecs
from google.protobuf.message import DecodeError, Message
from minio.error import S3Error
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter

from services.common import metrics
from services.common.certificates import client_context
from services.common.errors import (
    Aborted,
    Unavailable,
    object_store_refusal,
    report_store_refusal,
    store_refusal,
    store_unreachable,
    stream_refusal,
)
from services.common.settings import KafkaSettings, SettingsError
from services.common.signed_state import StateSigning, StateVerifier

log = logging.getLogger("privacam.kafka")
tracer = trace.get_tracer("privacam.kafka")

M = TypeVar("M", bound=Message)

EVENT_TYPE_HEADER = "privacam-event-type"


@dataclass(frozen=True)
class Topic(Generic[M]):
    name: str
    message_type: type[M]
    compacted: bool = False
    config: Mapping[str, str] = field(default_factory=dict)
    """Extra topic configs set when the topic is created (e.g. compaction lag)."""

    def encode(self, event: M) -> bytes:
        if not isinstance(event, self.message_type):
            raise TypeError(f"{self.name} carries {self.message_type.__name__}, not {type(event)}")
        return event.SerializeToString(deterministic=True)

    def decode(self, data: bytes) -> M:
        return self.message_type.FromString(data)


def _bootstrap(settings: KafkaSettings) -> list[str]:
    return [server.strip() for server in settings.bootstrap_servers.split(",") if server.strip()]


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Connection options of every aiokafka client (producer, consumer, admin): the
    brokers, and with SASL_SSL a verified TLS connection logged in as this service's own
    SCRAM user, so the brokers' ACLs know who is asking."""
    options: dict[str, Any] = {
        "bootstrap_servers": _bootstrap(settings),
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol == "PLAINTEXT":
        return options
    if settings.security_protocol == "SSL":
        if settings.cert_file is None or settings.key_file is None:
            raise ValueError("SSL needs PRIVACAM_KAFKA_CERT_FILE and PRIVACAM_KAFKA_KEY_FILE")
        # One context per process, reloaded when the files change (new connections only).
        options["ssl_context"] = client_context(
            "kafka", settings.ca_file, settings.cert_file, settings.key_file
        )
    else:
        options["ssl_context"] = client_context("kafka", settings.ca_file)
        options |= {
            "sasl_mechanism": settings.sasl_mechanism,
            "sasl_plain_username": settings.username,
            "sasl_plain_password": settings.password.get_secret_value(),
        }
    return options


def topic_configs(settings: KafkaSettings, topic: Topic[Any]) -> dict[str, str]:
    """The configs a topic is created with. A compacted topic rolls its segments, compacts
    them and drops tombstones each within a sixth of `forget_within_seconds` (unless the
    topic sets its own), so a deleted household's records leave the brokers' disks within
    that bound, with the markers of services.common.compaction that roll quiet partitions."""
    # acks=all then means two copies before a write is acknowledged, so one broker can
    # fail without losing an acknowledged event (with fewer replicas it cannot be had).
    durable = {"min.insync.replicas": "2"} if settings.replication_factor >= 3 else {}
    if not topic.compacted:
        return {**durable, **topic.config}
    sixth = str(settings.forget_within_seconds * 1000 // 6)
    return {
        "cleanup.policy": "compact",
        "segment.ms": sixth,
        "max.compaction.lag.ms": sixth,
        "delete.retention.ms": sixth,
        **durable,
        **topic.config,
    }


async def ensure_topics(
    settings: KafkaSettings, topics: Iterable[Topic[Any]], owned: Collection[str] = ()
) -> None:
    """Create missing topics (idempotent); compacted ones keep only the latest value per key.

    Every topic must have PRIVACAM_KAFKA_TOPIC_PARTITIONS partitions: a household's events
    are ordered by the partition its id picks, so a topic with another count (partitions
    added by hand, or the setting changed) stops start-up instead of reordering them. The
    topics named in `owned` (those this service writes) have their settings set again, so a
    change of the platform's topic settings reaches topics made by an earlier version."""
    admin = AIOKafkaAdminClient(
        **client_options(settings), request_timeout_ms=settings.request_timeout_ms
    )
    await admin.start()
    try:
        by_name = {settings.namespace + t.name: t for t in topics}
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.replication_factor,
                topic_configs=topic_configs(settings, topic),
            )
            for name, topic in by_name.items()
            if name not in existing
        ]
        if wanted:
            response = await admin.create_topics(wanted)
            for _, code, *_ in response.topic_errors:
                # Another service may have been first: that is success.
                if code not in (0, TopicAlreadyExistsError.errno):
                    _raise_for(code, "topic creation")
        await _check_partitions(admin, settings, sorted(by_name))
        reconcile = [
            ConfigResource(ConfigResourceType.TOPIC, name, topic_configs(settings, topic))
            for name, topic in by_name.items()
            if topic.name in owned and name in existing
        ]
        if reconcile:
            for response in await admin.alter_configs(reconcile):
                for code, *_ in response.resources:
                    _raise_for(code, "topic settings")
    finally:
        await admin.close()


def _raise_for(code: int, task: str) -> None:
    if code:
        error = for_code(code)()
        report_store_refusal(error, task=task)
        raise error


async def _check_partitions(
    admin: AIOKafkaAdminClient, settings: KafkaSettings, names: list[str]
) -> None:
    found = {
        described["topic"]: len(described["partitions"])
        for described in await admin.describe_topics(names)
        if not described["error_code"]
    }
    wrong = {name: count for name, count in found.items() if count != settings.topic_partitions}
    if wrong:
        listing = ", ".join(f"{name} has {count}" for name, count in sorted(wrong.items()))
        raise SettingsError(
            f"PRIVACAM_KAFKA_TOPIC_PARTITIONS is {settings.topic_partitions}, but {listing}: "
            "records are ordered per household by partition, so the counts must agree "
            "(set the variable to the topics' count; partitions are never added silently)"
        )


Headers = list[tuple[str, bytes]]


PRODUCER_LOST = (
    OutOfOrderSequenceNumber,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    ProducerFenced,
)
"""Errors after which an idempotent producer's sender has stopped for good."""


class EventProducer:
    def __init__(
        self, settings: KafkaSettings, client_id: str, signing: StateSigning | None = None
    ) -> None:
        """`signing`: this service's signer of compacted-topic records and verifier of the
        ones it replays (services.common.signed_state); every service has one, a tool that
        only copies signed records (backup restore) does not."""
        self._namespace = settings.namespace
        self.signing = signing
        self._options: dict[str, Any] = {
            **client_options(settings),
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "request_timeout_ms": settings.request_timeout_ms,
            "linger_ms": 2,
        }
        self._producer = AIOKafkaProducer(**self._options)
        self._renewing = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._producer.start()

    async def _renew_if_lost(self, error: BaseException, failed: AIOKafkaProducer) -> None:
        """A broker that restarted without our producer's sequence state (an unclean stop)
        answers OutOfOrderSequenceNumber, and aiokafka's sender then stops for good: every
        later send fails the same way. A new producer (a new producer id) replaces it; the
        call that saw the error fails UNAVAILABLE, and its retry goes through."""
        if not isinstance(error, PRODUCER_LOST):
            return
        async with self._renewing:
            if self._producer is not failed:  # another call renewed it already
                return
            fresh = AIOKafkaProducer(**self._options)
            await fresh.start()
            self._producer = fresh
            metrics.KAFKA_PRODUCERS_RENEWED.inc()
            log.warning("Kafka producer renewed", extra={"error": error_class(error)})
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5.0):
                await failed.stop()

    async def stop(self) -> None:
        """Deliver what publish_soon queued, then close."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self._producer.stop()

    def publish_soon(self, topic: Topic[M], key: str, event: M) -> None:
        """Publish without waiting for the acknowledgement (for informational events on a
        hot path); failures are counted in privacam_kafka_produced_total{result="error"}."""
        task = asyncio.create_task(self._publish_logged(topic, key, event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish_logged(self, topic: Topic[M], key: str, event: M) -> None:
        try:
            await self.publish(topic, key, event)
        except Exception:
            log.exception("event could not be published", extra={"topic": topic.name})

    async def send_raw(
        self,
        topic: Topic[Any],
        key: bytes,
        value: bytes | None,
        partition: int | None = None,
        headers: Headers | None = None,
    ) -> tuple[int, int]:
        """Send one record (None is a tombstone) and wait for all in-sync replicas;
        returns (partition, offset). A record of a compacted topic is signed by this
        service (its readers skip unsigned ones), unless `headers` already carry the
        signature of whoever wrote it first (a restore)."""
        if topic.compacted and headers is None:
            if self.signing is None:
                raise ValueError(f"records of {topic.name} must be signed: no signer given")
            headers = self.signing.signer.headers(topic.name, key, value)
        producer = self._producer
        try:
            metadata = await producer.send_and_wait(
                self._namespace + topic.name, value, key=key, partition=partition, headers=headers
            )
        except Exception as error:
            report_store_refusal(error, topic=topic.name)
            await self._renew_if_lost(error, producer)
            raise
        return metadata.partition, metadata.offset

    async def partition_count(self, topic: Topic[Any]) -> int:
        partitions = await self._producer.partitions_for(self._namespace + topic.name)
        return len(partitions)

    async def publish(self, topic: Topic[M], key: str, event: M) -> None:
        """Send and wait until every in-sync replica has the event."""
        headers = [(EVENT_TYPE_HEADER, event.DESCRIPTOR.full_name.encode())]
        producer = self._producer
        try:
            await producer.send_and_wait(
                self._namespace + topic.name, topic.encode(event), key=key.encode(), headers=headers
            )
        except Exception as error:
            metrics.KAFKA_PRODUCED.labels(topic.name, "error").inc()
            report_store_refusal(error, topic=topic.name)
            await self._renew_if_lost(error, producer)
            raise
        metrics.KAFKA_PRODUCED.labels(topic.name, "ok").inc()

    async def publish_many(self, topic: Topic[M], events: Sequence[tuple[str, M]]) -> None:
        """Send many (key, event) pairs at once and wait until every in-sync replica has them
        all (the producer batches them into few requests); raises if any failed."""
        name = self._namespace + topic.name
        producer = self._producer
        try:
            futures = [
                await producer.send(
                    name,
                    topic.encode(event),
                    key=key.encode(),
                    headers=[(EVENT_TYPE_HEADER, event.DESCRIPTOR.full_name.encode())],
                )
                for key, event in events
            ]
        except Exception as refused:
            await self._renew_if_lost(refused, producer)
            raise
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        failed = sum(1 for outcome in outcomes if isinstance(outcome, BaseException))
        metrics.KAFKA_PRODUCED.labels(topic.name, "ok").inc(len(outcomes) - failed)
        if failed:
            metrics.KAFKA_PRODUCED.labels(topic.name, "error").inc(failed)
            error = next(o for o in outcomes if isinstance(o, BaseException))
            report_store_refusal(error, topic=topic.name)
            await self._renew_if_lost(error, producer)
            raise error


class _HeaderGetter(Getter[list[tuple[str, bytes]]]):
    def get(self, carrier: list[tuple[str, bytes]], key: str) -> list[str] | None:
        values = [value.decode() for name, value in carrier or [] if name == key]
        return values or None

    def keys(self, carrier: list[tuple[str, bytes]]) -> list[str]:
        return [name for name, _ in carrier or []]


_GETTER = _HeaderGetter()


@dataclass(frozen=True)
class Delivery:
    """Where a consumed event came from, for handlers that need it."""

    topic: str
    partition: int
    offset: int
    key: str


Handler = Callable[[M, Delivery], Awaitable[None]]


# --- bounded retries and dead letters ---------------------------------------------------

DEAD_LETTER_TOPIC_HEADER = "privacam-dead-letter-topic"
"""Headers a dead letter carries besides the event's own: where it came from (its topic,
before the namespace, its partition and offset), the consumer group whose handler failed,
the failure's class (never its message: it may name a person) and the handler's attempts."""
DEAD_LETTER_PARTITION_HEADER = "privacam-dead-letter-partition"
DEAD_LETTER_OFFSET_HEADER = "privacam-dead-letter-offset"
DEAD_LETTER_GROUP_HEADER = "privacam-dead-letter-group"
DEAD_LETTER_ERROR_HEADER = "privacam-dead-letter-error"
DEAD_LETTER_ATTEMPTS_HEADER = "privacam-dead-letter-attempts"
REPLAYED_FOR_HEADER = "privacam-replayed-for"
"""On an event put back on its topic from a dead-letter topic: the one consumer group it is
for. Every other group skips it (it applied the event when it first came)."""
_OWN_HEADERS = ("privacam-dead-letter-", "privacam-replayed-")


def dead_letter_topic_name(group: str) -> str:
    """The dead-letter topic of a consumer group (named before the namespace): each group
    has its own, and may write only its own (services.common.topic_grants)."""
    return f"privacam.deadletter.{group}.v1"


def dead_letter_topic(settings: KafkaSettings, group: str, source: Topic[M]) -> Topic[M]:
    """A group's dead-letter topic, with the events of `source` as they came. Kept
    PRIVACAM_KAFKA_DEAD_LETTER_RETENTION_HOURS, in segments of a seventh of that, so an
    event leaves the brokers' disks within 8/7 of the retention."""
    retention_ms = settings.dead_letter_retention_hours * 3_600_000
    return Topic(
        dead_letter_topic_name(group),
        source.message_type,
        config={"retention.ms": str(retention_ms), "segment.ms": str(retention_ms // 7)},
    )


def error_class(error: BaseException) -> str:
    """The class of an error, module-qualified (`redis.exceptions.ResponseError`), never its
    message, which may hold a key, a name or a value."""
    kind = type(error)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


class Failure(enum.Enum):
    """Why a handler's attempt at an event failed, which decides what happens next."""

    UNREACHABLE = "unreachable"
    """A store or peer cannot serve now (Kafka, Redis or MinIO unreachable or too slow, a
    peer UNAVAILABLE, a PrivacamError Unavailable or Aborted): the event is not at fault,
    so it is retried with back-off for as long as that lasts, never dead-lettered."""
    REFUSED = "refused"
    """A store refused this service's own user (Redis NOPERM, MinIO AccessDenied, a Kafka
    authorization error): our configuration is wrong, for every event alike, so the event
    is retried until the grant is restored (counted in privacam_store_refusals_total)
    rather than every event of the topic being dead-lettered."""
    HANDLER = "handler"
    """Anything else (a bug, an event the handler cannot apply): counts toward
    PRIVACAM_KAFKA_CONSUMER_MAX_ATTEMPTS, then the event is dead-lettered."""


_PEER_UNREACHABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,  # dropped by a replica beginning to stop
    }
)
_S3_UNREACHABLE = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "XMinioServerNotInitialized",
    }
)


def classify(error: BaseException) -> Failure:
    """What a handler's error says (its explicit causes too: `raise X from error`)."""
    seen: BaseException | None = error
    while seen is not None:
        if store_refusal(seen) or object_store_refusal(seen) or stream_refusal(seen):
            return Failure.REFUSED
        if (
            store_unreachable(seen)
            or isinstance(seen, Unavailable | Aborted | ConnectionError | TimeoutError)
            or (isinstance(seen, S3Error) and seen.code in _S3_UNREACHABLE)
            or (isinstance(seen, grpc.aio.AioRpcError) and seen.code() in _PEER_UNREACHABLE)
        ):
            return Failure.UNREACHABLE
        seen = seen.__cause__
    return Failure.HANDLER


@dataclass(frozen=True)
class RetryPolicy:
    """How a consumer retries an event (PRIVACAM_KAFKA_CONSUMER_* settings)."""

    max_attempts: int = 6
    """Attempts failed by the handler itself (Failure.HANDLER) before the event is
    dead-lettered; attempts that failed for a store are not counted."""
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0

    @classmethod
    def of(cls, settings: KafkaSettings) -> RetryPolicy:
        return cls(
            settings.consumer_max_attempts,
            settings.consumer_backoff_seconds,
            settings.consumer_max_backoff_seconds,
        )

    def delay(self, failures: int, jitter: float | None = None) -> float:
        """The wait after `failures` failed attempts in a row: the base, doubled after each
        earlier failure, at most the maximum; then between half and all of it (`jitter` in
        [0, 1), random unless given), so replicas that failed together do not retry together."""
        full = min(self.max_backoff_seconds, self.backoff_seconds * 2.0 ** min(failures - 1, 64))
        share = random.random() if jitter is None else jitter  # noqa: S311 (not a secret)
        return full * (0.5 + share / 2)

    def gives_up(self, failure: Failure, handler_failures: int) -> bool:
        """Whether the event is dead-lettered now, after this failure, `handler_failures`
        being the attempts the handler itself failed so far (this one included)."""
        return failure is Failure.HANDLER and handler_failures >= self.max_attempts


def header_value(headers: Iterable[tuple[str, bytes]], name: str) -> str | None:
    """The first header called `name`, decoded; None if there is none."""
    for key, value in headers:
        if key == name:
            return value.decode(errors="replace")
    return None


def event_headers(headers: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The event's own headers, without those a dead letter or a replay added."""
    return [(k, v) for k, v in headers if not k.startswith(_OWN_HEADERS)]


class EventConsumer(Generic[M]):
    """Consumes one topic in a consumer group, applying each event in order.

    A handler that fails is called again after a back-off (RetryPolicy). While the failure
    is a store's or a peer's (Failure.UNREACHABLE, Failure.REFUSED) that lasts as long as
    it lasts: the partition waits, and its lag, measured meanwhile, grows. An event whose
    handler itself fails PRIVACAM_KAFKA_CONSUMER_MAX_ATTEMPTS times is a poison event: it
    goes, as it came (key, value, headers) with headers saying where from, the failure's
    class and the attempts, to the group's dead-letter topic, and the partition goes on
    past it (`python -m services.common.deadletters replay` puts it back, for this group
    alone). An event that does not decode is dead-lettered at once.

    Why every consumer of the platform dead-letters rather than blocks (each call site
    says what a dead letter costs it): an event that can never be applied would otherwise
    hold back every later event of its partition, a third of the households, until the
    topic's retention (7 days) dropped them all unapplied, the poison event with them;
    a dead letter holds it back alone, kept as long, alerted, and replayed once fixed.
    Handlers are idempotent, and tolerate a replayed event arriving after later ones.

    `dead_letter_group`: the group's name for its dead letters and replays, when its
    group id changes over time (clip_ingest's index generations); the group id otherwise.
    `producer`: this service's, which writes the dead letters.
    `every_replica`: no group at all: each replica reads every partition from the end
    on, and commits nothing (what a replica alone must see, such as the diagnostics
    probe, which any replica may be asked about); `group_id` still names its metrics
    and dead letters.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: Topic[M],
        group_id: str,
        handler: Handler[M],
        *,
        producer: EventProducer,
        dead_letter_group: str | None = None,
        every_replica: bool = False,
    ) -> None:
        self.topic = topic
        self._every_replica = every_replica
        self.group_id = settings.namespace + group_id
        self.dead_letter_group = dead_letter_group or group_id
        self.dead_letters = dead_letter_topic(settings, self.dead_letter_group, topic)
        self._settings = settings
        self._handler = handler
        self._producer = producer
        self._retry = RetryPolicy.of(settings)
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._lagging: set[TopicPartition] = set()
        self._consumer = AIOKafkaConsumer(
            settings.namespace + topic.name,
            **client_options(settings),
            group_id=None if every_replica else self.group_id,
            client_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="latest" if every_replica else "earliest",
            isolation_level="read_committed",
            request_timeout_ms=settings.request_timeout_ms,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Its dead-letter topic exists before the first poison event needs it (a group
        # writes only its own: the ACL allows creating it and setting its retention again).
        await ensure_topics(self._settings, [self.dead_letters], {self.dead_letters.name})
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"consume {self.topic.name}")

    async def stop(self, timeout_seconds: float = 10.0) -> None:
        """Stop consuming; the Kafka client gets `timeout_seconds` to leave its group, then
        is abandoned (a broker that dies mid-commit must not hang a shutdown or a rebuild)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        # Its lag is another consumer's to report now (or nobody's: an old index generation).
        for partition in list(self._lagging):
            self._drop_lag(partition)
        try:
            await asyncio.wait_for(self._consumer.stop(), timeout_seconds)
        except TimeoutError:
            log.warning("consumer did not close in time; abandoned", extra={"group": self.group_id})

    async def _run(self) -> None:
        # Polls back off from 0.1 s: a rebalance mid-commit is over in a moment.
        polls = replace(self._retry, backoff_seconds=0.1)
        failures = 0
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=200)
                for partition, records in batches.items():
                    for record in records:
                        await self._apply(record)
                    if not self._every_replica:
                        committed = records[-1].offset + 1
                        await self._consumer.commit({partition: committed})
                await self._report_lag()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                # Kafka away or a rebalance mid-commit: the consumer must outlive it, or the
                # service silently stops following the topic. Uncommitted records come again
                # and handlers are idempotent.
                failures += 1
                backoff = polls.delay(failures)
                log.warning(
                    "consuming failed; retrying",
                    extra={"topic": self.topic.name, "backoff_s": round(backoff, 3)},
                    exc_info=True,
                )
                await self._sleep(backoff)

    # --- lag: measured after every poll, and while an event is being retried -------------

    async def _report_lag(self) -> None:
        """Each assigned partition's end less the next offset not yet applied (everything
        handed out by the poll is applied and committed by now). A partition not fetched
        yet has no known end and is left out; one no longer assigned is dropped."""
        assigned = self._consumer.assignment()
        for partition in assigned:
            end = self._consumer.highwater(partition)
            if end is None:
                continue
            # (asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancel
            # that arrives as it completes, and then stop() would wait on this loop for ever.)
            with contextlib.suppress(Exception):  # its position is being reset: next poll
                async with asyncio.timeout(1.0):
                    done = await self._consumer.position(partition)
                self._set_lag(partition, end - done)
        for partition in self._lagging - assigned:
            self._drop_lag(partition)

    async def _report_stuck_lag(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """The lag of a partition whose event is being retried (no poll meanwhile: the
        end is asked of the brokers), so a stuck partition shows its lag growing."""
        partition = TopicPartition(record.topic, record.partition)
        try:
            async with asyncio.timeout(5.0):
                ends = await self._consumer.end_offsets([partition])
        except Exception:  # Kafka itself may be what is away: the next retry asks again
            return
        if partition in ends:
            self._set_lag(partition, ends[partition] - record.offset)

    def _set_lag(self, partition: TopicPartition, lag: int) -> None:
        metrics.KAFKA_CONSUMER_LAG.labels(
            self.topic.name, self.group_id, str(partition.partition)
        ).set(max(0, lag))
        self._lagging.add(partition)

    def _drop_lag(self, partition: TopicPartition) -> None:
        self._lagging.discard(partition)
        with contextlib.suppress(KeyError):
            metrics.KAFKA_CONSUMER_LAG.remove(
                self.topic.name, self.group_id, str(partition.partition)
            )

    # --- one event ----------------------------------------------------------------------

    async def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        labels = (self.topic.name, self.group_id)
        headers = list(record.headers or ())
        replayed_for = header_value(headers, REPLAYED_FOR_HEADER)
        if replayed_for is not None and replayed_for != self.dead_letter_group:
            # Another group's dead letter, put back for that group alone: this group
            # applied the event when it first came.
            metrics.KAFKA_CONSUMED.labels(*labels, "replay_for_other_group").inc()
            return
        try:
            event = self.topic.decode(record.value or b"")
        except DecodeError as error:
            # It can never succeed: set aside at once, for whoever finds out who wrote it.
            log.error(
                "undecodable event moved to the dead-letter topic",
                extra={
                    "topic": self.topic.name,
                    "partition": record.partition,
                    "offset": record.offset,
                },
            )
            metrics.KAFKA_CONSUMED.labels(*labels, "undecodable").inc()
            await self._dead_letter(record, error, attempts=1)
            return
        delivery = Delivery(
            record.topic,
            record.partition,
            record.offset,
            (record.key or b"").decode(errors="replace"),
        )
        parent = propagate.extract(headers, getter=_GETTER)
        attempts = failures = handler_failures = 0
        while True:
            attempts += 1
            failed: Exception | None = None
            token = otel_context.attach(parent)
            started = time.perf_counter()
            try:
                with tracer.start_as_current_span(
                    f"process {self.topic.name}",
                    kind=trace.SpanKind.CONSUMER,
                    attributes={
                        "messaging.system": "kafka",
                        "messaging.destination.name": self.topic.name,
                        "messaging.consumer.group.name": self.group_id,
                        "messaging.kafka.offset": record.offset,
                    },
                ):
                    await self._handler(event, delivery)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failed = error
            finally:
                otel_context.detach(token)
            if failed is None:
                metrics.KAFKA_PROCESSING_SECONDS.labels(*labels).observe(
                    time.perf_counter() - started
                )
                metrics.KAFKA_CONSUMED.labels(*labels, "ok").inc()
                return
            failures += 1
            failure = classify(failed)
            if failure is Failure.HANDLER:
                handler_failures += 1
            where = {
                "topic": self.topic.name,
                "partition": record.partition,
                "offset": record.offset,
                "attempts": attempts,
                "error": error_class(failed),
            }
            if self._retry.gives_up(failure, handler_failures):
                log.error(
                    "event handler kept failing; event moved to the dead-letter topic",
                    extra=where,
                    exc_info=failed,
                )
                await self._dead_letter(record, failed, attempts)
                return
            metrics.KAFKA_CONSUMED.labels(*labels, "retry").inc()
            backoff = self._retry.delay(failures)
            where["backoff_s"] = round(backoff, 3)
            if failure is Failure.REFUSED:
                report_store_refusal(failed, topic=self.topic.name)
            elif failure is Failure.UNREACHABLE:
                log.warning("event handler could not reach a store; retrying", extra=where)
            else:
                log.error("event handler failed; retrying", extra=where, exc_info=failed)
            await asyncio.gather(self._sleep(backoff), self._report_stuck_lag(record))

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], error: BaseException, attempts: int
    ) -> None:
        """Write the event to the group's dead-letter topic, in its partition, and wait for
        every in-sync replica; tried until it is written (the partition waits meanwhile:
        a dead letter is never dropped)."""
        headers = event_headers(record.headers or ())
        headers += [
            (DEAD_LETTER_TOPIC_HEADER, self.topic.name.encode()),
            (DEAD_LETTER_PARTITION_HEADER, str(record.partition).encode()),
            (DEAD_LETTER_OFFSET_HEADER, str(record.offset).encode()),
            (DEAD_LETTER_GROUP_HEADER, self.dead_letter_group.encode()),
            (DEAD_LETTER_ERROR_HEADER, error_class(error).encode()),
            (DEAD_LETTER_ATTEMPTS_HEADER, str(attempts).encode()),
        ]
        failures = 0
        while True:
            try:
                await self._producer.send_raw(
                    self.dead_letters,
                    record.key or b"",
                    record.value,
                    partition=record.partition,
                    headers=headers,
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                metrics.KAFKA_PRODUCED.labels(self.dead_letters.name, "error").inc()
                backoff = self._retry.delay(failures)
                log.warning(
                    "dead letter not written; retrying",
                    extra={"topic": self.dead_letters.name, "backoff_s": round(backoff, 3)},
                    exc_info=True,
                )
                await self._sleep(backoff)
                continue
            metrics.KAFKA_PRODUCED.labels(self.dead_letters.name, "ok").inc()
            metrics.KAFKA_DEAD_LETTERS.labels(self.topic.name, self.group_id).inc()
            return


class FaustProtobufCodec(codecs.Codec):
    """Lets Faust agents read and write a topic's protobuf envelope as typed messages."""

    def __init__(self, message_type: type[Message], **kwargs: Any) -> None:
        self.message_type = message_type
        super().__init__(message_type=message_type, **kwargs)

    def _dumps(self, obj: Message) -> bytes:
        return obj.SerializeToString(deterministic=True)

    def _loads(self, s: bytes) -> Message:
        return self.message_type.FromString(s)


def register_faust_codecs(topics: Iterable[Topic[Any]]) -> None:
    """Register one codec per topic under the topic's name, for `value_serializer=`."""
    for topic in topics:
        codecs.register(topic.name, FaustProtobufCodec(topic.message_type))


@dataclass(frozen=True)
class Reassertion:
    """What the topic's writer gives its replicas so they undo forged records.

    A record its writer did not sign is skipped by every replica, but Kafka's compaction
    still keeps only the newest record of a key: a forged tombstone (or value) would
    erase the genuine value it shadows from the log, and a replica started after that
    would no longer know it. The writer, seeing the forgery, writes its own value again,
    signed, on the same partition, so the newest record of the key is genuine again."""

    current: Callable[[bytes], bytes | None]
    """The value this replica holds for a record key (None: nothing to re-assert)."""
    wrote: Callable[[int], None] = lambda partition: None
    """Told of each partition written to (the writer's SegmentRoller, so the forgery and
    the value it shadowed leave the disks in bounded time)."""


@dataclass
class _Watch:
    """A key being re-asserted on one partition: what was accepted for it meanwhile."""

    seen: list[tuple[int, bytes | None]] = field(default_factory=list)
    """(offset, value) of genuine records of the key since the first forged one."""
    forged: int = -1
    """Offset of the newest forged record of the key."""


class TopicReplica:
    """Every partition of a topic, read from the beginning and then followed: how each
    replica materializes a compacted topic (no consumer group: every replica reads all).

    `apply(key, value)` is called for each record in partition order (value None is a
    tombstone). `start()` returns once everything written before it is applied, so a
    service can replay its state before it reports SERVING. On a compacted topic, only
    records its writer signed are applied (services.common.signed_state, with the
    producer's verifier); others are skipped, logged and counted, and the writer's
    replicas (given a Reassertion) write their own value of the key again.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: Topic[Any],
        producer: EventProducer,
        apply: Callable[[bytes, bytes | None], None],
        reassert: Reassertion | None = None,
    ) -> None:
        """`reassert`: given by the topic's writer only (its replicas sign what they send)."""
        self._settings = settings
        self._topic = topic
        self.name = settings.namespace + topic.name
        self._producer = producer
        self._apply = apply
        self._reassert = reassert
        # Writers only: the partition of each key's newest genuine value. A forgery on
        # another partition shadows nothing, and a copy written there would outlive the
        # writer's own tombstone of the key.
        self._homes: dict[bytes, int] = {}
        self._watches: dict[tuple[int, bytes], _Watch] = {}
        self._reasserting: set[asyncio.Task[None]] = set()
        self._verifier: StateVerifier | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self.partitions: list[TopicPartition] = []
        self._applied: dict[int, int] = {}  # partition -> next offset to apply
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.records_applied = 0

    async def start(self) -> None:
        signing = self._producer.signing
        if self._topic.compacted and signing is None:
            # Fail closed: a replica that applied unsigned records would obey a broker.
            raise ValueError(f"a replica of {self.name} verifies its writer: no verifier given")
        self._verifier = signing.verifier if signing is not None else None
        consumer = AIOKafkaConsumer(
            **client_options(self._settings),
            enable_auto_commit=False,
            isolation_level="read_committed",
            request_timeout_ms=self._settings.request_timeout_ms,
        )
        await consumer.start()
        count = await self._producer.partition_count(self._topic)
        self.partitions = [TopicPartition(self.name, p) for p in range(count)]
        consumer.assign(self.partitions)
        await consumer.seek_to_beginning(*self.partitions)
        for tp in self.partitions:
            self._applied[tp.partition] = await consumer.position(tp)
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow(), name=f"replica of {self.name}")
        await self.catch_up()

    async def stop(self) -> None:
        # Re-assertions first: each waits for its write to be applied by _follow.
        await self.wait_reasserted(seconds=10)
        for task in list(self._reasserting):
            task.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=500)
            except Exception:
                log.warning(
                    "replica poll failed; retrying", extra={"topic": self.name}, exc_info=True
                )
                await asyncio.sleep(1)
                continue
            for tp, records in batches.items():
                for record in records:
                    self._apply_one(record)
                self._applied[tp.partition] = records[-1].offset + 1
            # Positions also move past transaction markers: read them after each poll.
            for tp in self.partitions:
                self._applied[tp.partition] = max(
                    self._applied[tp.partition], await self._consumer.position(tp)
                )
            async with self._progress:
                self._progress.notify_all()

    def _apply_one(self, record: ConsumerRecord[bytes, bytes]) -> None:
        key = record.key or b""
        if self._verifier is not None and not self._verifier.accepts(
            self._topic.name, key, record.value, list(record.headers or ())
        ):
            # Never applied: not its writer's (logged and counted by accepts).
            self._forged(record.partition, record.offset, key)
            return
        if self._reassert is not None:
            if record.value is None:
                self._homes.pop(key, None)
            else:
                self._homes[key] = record.partition
            watch = self._watches.get((record.partition, key))
            if watch is not None:
                watch.seen.append((record.offset, record.value))
        try:
            self._apply(key, record.value)
        except Exception:
            # Skipped, loudly: stopping here would leave every later record unapplied for
            # good, and a replica that silently stops following is how a revocation would
            # stop being enforced. (No key in the log: keys name identities.)
            log.error(
                "replica record not applied; skipped",
                extra={"topic": self.name, "partition": record.partition, "offset": record.offset},
                exc_info=True,
            )
            metrics.KAFKA_CONSUMED.labels(self._topic.name, "replica", "error").inc()
            return
        self.records_applied += 1

    # --- the writer re-asserts what a forged record would let compaction erase ----------

    def _forged(self, partition: int, offset: int, key: bytes) -> None:
        if self._reassert is None or self._homes.get(key) != partition:
            return
        watch = self._watches.get((partition, key))
        if watch is not None:  # a re-assertion is under way: it writes again after this
            watch.forged = offset
            return
        try:
            value = self._reassert.current(key)
        except Exception:
            log.exception("no value to re-assert over a forged record", extra={"topic": self.name})
            return
        if value is None:
            return
        watch = self._watches[(partition, key)] = _Watch(forged=offset)
        task = asyncio.create_task(self._write_again(partition, key, value, watch))
        self._reasserting.add(task)
        task.add_done_callback(self._reasserting.discard)

    async def _write_again(
        self, partition: int, key: bytes, value: bytes | None, watch: _Watch
    ) -> None:
        """Write `value` (what this replica held when the forgery arrived) after the
        forgery, until the newest record of the key is genuine and current. The writer's
        other replicas may write the key meanwhile (an update, a delete, their own
        re-assertion): the newest of their records is then the value written, so a
        re-assertion never brings back a deleted or older value. Nothing is written when a
        genuine current record already follows the forgery (a replay after a restart)."""
        assert self._reassert is not None
        mine: set[int] = set()  # offsets of this task's own writes
        try:
            while True:
                others = [v for o, v in watch.seen if o not in mine]
                current = others[-1] if others else value
                newest = watch.seen[-1] if watch.seen else None
                if newest is not None and newest[0] > watch.forged and newest[1] == current:
                    break
                _, offset = await self._producer.send_raw(
                    self._topic, key, current, partition=partition
                )
                mine.add(offset)
                self._reassert.wrote(partition)
                await self.wait_applied(partition, offset)
        except Exception:
            metrics.STATE_RECORDS_REASSERTED.labels(self._topic.name, "error").inc()
            log.exception(
                "state record not re-asserted over a forged one", extra={"topic": self.name}
            )
            return
        finally:
            del self._watches[(partition, key)]
        if mine:
            metrics.STATE_RECORDS_REASSERTED.labels(self._topic.name, "ok").inc()
            log.warning("state record re-asserted over a forged one", extra={"topic": self.name})

    async def wait_reasserted(self, seconds: float = 60) -> None:
        """Wait until the re-assertions under way are written and applied."""
        if self._reasserting:
            await asyncio.wait(set(self._reasserting), timeout=seconds)

    async def wait_applied(self, partition: int, offset: int) -> None:
        """Wait until the record at `offset` of `partition` has been applied."""
        async with self._progress:
            await asyncio.wait_for(
                self._progress.wait_for(lambda: self._applied.get(partition, 0) > offset),
                timeout=60,
            )

    async def catch_up(self) -> None:
        """Wait until every record written before this call is applied."""
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(self.partitions)
        async with self._progress:
            await asyncio.wait_for(
                self._progress.wait_for(
                    lambda: all(self._applied[tp.partition] >= end for tp, end in ends.items())
                ),
                timeout=60,
            )
