"""Kafka helpers: typed topics, an idempotent producer, a committing consumer, a Faust codec.

Every topic carries one protobuf envelope type, keyed by tenant id so one
household's events stay in order. Producers wait for acks from all in-sync
replicas with idempotence on (aiokafka's defaults are acks=1 without it).
Consumers commit only after the handler's effect is done, so handlers must be
idempotent on replay; a failing handler is retried with backoff, never skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code
from faust.serializers import codecs
from google.protobuf.message import DecodeError, Message
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter

from services.common import metrics
from services.common.certificates import client_context
from services.common.errors import report_store_refusal
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


class EventProducer:
    def __init__(
        self, settings: KafkaSettings, client_id: str, signing: StateSigning | None = None
    ) -> None:
        """`signing`: this service's signer of compacted-topic records and verifier of the
        ones it replays (services.common.signed_state); every service has one, a tool that
        only copies signed records (backup restore) does not."""
        self._namespace = settings.namespace
        self.signing = signing
        self._producer = AIOKafkaProducer(
            **client_options(settings),
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=settings.request_timeout_ms,
            linger_ms=2,
        )

        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._producer.start()

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
        try:
            metadata = await self._producer.send_and_wait(
                self._namespace + topic.name, value, key=key, partition=partition, headers=headers
            )
        except Exception as error:
            report_store_refusal(error, topic=topic.name)
            raise
        return metadata.partition, metadata.offset

    async def partition_count(self, topic: Topic[Any]) -> int:
        partitions = await self._producer.partitions_for(self._namespace + topic.name)
        return len(partitions)

    async def publish(self, topic: Topic[M], key: str, event: M) -> None:
        """Send and wait until every in-sync replica has the event."""
        headers = [(EVENT_TYPE_HEADER, event.DESCRIPTOR.full_name.encode())]
        try:
            await self._producer.send_and_wait(
                self._namespace + topic.name, topic.encode(event), key=key.encode(), headers=headers
            )
        except Exception as error:
            metrics.KAFKA_PRODUCED.labels(topic.name, "error").inc()
            report_store_refusal(error, topic=topic.name)
            raise
        metrics.KAFKA_PRODUCED.labels(topic.name, "ok").inc()

    async def publish_many(self, topic: Topic[M], events: Sequence[tuple[str, M]]) -> None:
        """Send many (key, event) pairs at once and wait until every in-sync replica has them
        all (the producer batches them into few requests); raises if any failed."""
        name = self._namespace + topic.name
        futures = [
            await self._producer.send(
                name,
                topic.encode(event),
                key=key.encode(),
                headers=[(EVENT_TYPE_HEADER, event.DESCRIPTOR.full_name.encode())],
            )
            for key, event in events
        ]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        failed = sum(1 for outcome in outcomes if isinstance(outcome, BaseException))
        metrics.KAFKA_PRODUCED.labels(topic.name, "ok").inc(len(outcomes) - failed)
        if failed:
            metrics.KAFKA_PRODUCED.labels(topic.name, "error").inc(failed)
            error = next(o for o in outcomes if isinstance(o, BaseException))
            report_store_refusal(error, topic=topic.name)
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


class EventConsumer(Generic[M]):
    """Consumes one topic in a consumer group, applying each event in order."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: Topic[M],
        group_id: str,
        handler: Handler[M],
        *,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        self.topic = topic
        self.group_id = settings.namespace + group_id
        self._handler = handler
        self._max_backoff = max_backoff_seconds
        self._consumer = AIOKafkaConsumer(
            settings.namespace + topic.name,
            **client_options(settings),
            group_id=self.group_id,
            client_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            request_timeout_ms=settings.request_timeout_ms,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"consume {self.topic.name}")

    async def stop(self, timeout_seconds: float = 10.0) -> None:
        """Stop consuming; the Kafka client gets `timeout_seconds` to leave its group, then
        is abandoned (a broker that dies mid-commit must not hang a shutdown or a rebuild)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await asyncio.wait_for(self._consumer.stop(), timeout_seconds)
        except TimeoutError:
            log.warning("consumer did not close in time; abandoned", extra={"group": self.group_id})

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=200)
                for partition, records in batches.items():
                    for record in records:
                        await self._apply(record)
                    committed = records[-1].offset + 1
                    await self._consumer.commit({partition: committed})
                    self._report_lag(partition, committed)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:
                # Kafka away or a rebalance mid-commit: the consumer must outlive it, or the
                # service silently stops following the topic. Uncommitted records come again
                # and handlers are idempotent.
                log.warning(
                    "consuming failed; retrying",
                    extra={"topic": self.topic.name, "backoff_s": backoff},
                    exc_info=True,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    def _report_lag(self, partition: TopicPartition, committed: int) -> None:
        end = self._consumer.highwater(partition)
        if end is not None:
            metrics.KAFKA_CONSUMER_LAG.labels(
                self.topic.name, self.group_id, str(partition.partition)
            ).set(max(0, end - committed))

    async def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        labels = (self.topic.name, self.group_id)
        try:
            event = self.topic.decode(record.value or b"")
        except DecodeError:
            # It can never succeed; retrying would stall the partition forever.
            log.error(
                "undecodable event skipped",
                extra={
                    "topic": self.topic.name,
                    "partition": record.partition,
                    "offset": record.offset,
                },
            )
            metrics.KAFKA_CONSUMED.labels(*labels, "undecodable").inc()
            return
        delivery = Delivery(
            record.topic,
            record.partition,
            record.offset,
            (record.key or b"").decode(errors="replace"),
        )
        parent = propagate.extract(list(record.headers or ()), getter=_GETTER)
        backoff = 0.1
        while True:
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
                metrics.KAFKA_CONSUMED.labels(*labels, "retry").inc()
                if not report_store_refusal(error, topic=self.topic.name):
                    log.exception(
                        "event handler failed; retrying",
                        extra={
                            "topic": self.topic.name,
                            "offset": record.offset,
                            "backoff_s": backoff,
                        },
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            finally:
                otel_context.detach(token)
            metrics.KAFKA_PROCESSING_SECONDS.labels(*labels).observe(time.perf_counter() - started)
            metrics.KAFKA_CONSUMED.labels(*labels, "ok").inc()
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
