"""The Faust worker: the access topic's agent, the households' tables, the notices' producer.

Faust runs inside the service runtime's own loop (faust.contrib.asgi.faust_app_running),
so the watch has the same health, metrics, diagnostics and revocation handling as every
service. Health says SERVING only once the tables are recovered from their changelogs:
Faust starts agents only then, and the runtime serves only after `start` returns.

Choices, from faust-streaming 0.15.3's known faults (issue #22):
  - at-least-once, not `exactly_once` (duplicates after a kill were reported with its
    transactional producers): notices carry deterministic ids instead (streams/access.py);
  - agent concurrency 1 (above it, offsets can be committed past an event in progress);
  - plain tables with the windows computed in the domain, not windowed tables;
  - the Kafka login is SASL_SSL with the service's own SCRAM user, whose ACLs allow its
    input topics, its notices topic and, by prefix, the topics Faust makes for itself
    (`<namespace>privacy_watch-...`: changelogs and the assignor's leader topic);
  - after a takeover Faust drops records it fetched while resuming and relies on a seek
    that aiokafka skips for a partition without a committed offset: such partitions are
    sought to their beginning too (_seek_uncommitted_too); and a stall guard
    (adapters/stall_guard.py) seeks again and restarts the fetch loop when partitions with
    records waiting make no progress for STALL_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
from faust.contrib.asgi import bind_to_running_loop, faust_app_running
from prometheus_client import Counter

from privacam.watch.v1 import events_pb2 as watch_pb2
from services.common import topics
from services.common.clock import Clock, SystemClock
from services.common.kafka import client_options
from services.privacy_watch.adapters import metrics
from services.privacy_watch.adapters.stall_guard import Reading, StallGuard
from services.privacy_watch.settings import PrivacyWatchSettings
from services.privacy_watch.streams.access import AccessWatch
from services.privacy_watch.streams.digest import DigestSender
from services.privacy_watch.streams.identity import IdentityWatch

log = logging.getLogger("privacam.privacy_watch")
FETCH_RESTARTS = Counter(
    "privacam_privacy_watch_fetch_restarts_total",
    "Restarts of Faust's fetch loop by the stall guard: partitions with records waiting "
    "were not read for STALL_SECONDS (a faust-streaming fault after a rebalance, #22).",
)
STALL_CHECK_SECONDS = 2.0
"""How often the stall guard samples the partitions' progress."""
APP_ID = "privacy_watch"
"""Faust's app id (after the namespace): its consumer group and the prefix of its topics."""


def credentials(options: dict[str, Any]) -> faust.types.auth.CredentialsT | None:
    """The service's own Kafka login, as Faust takes it, from the connection options every
    Kafka client of the platform is given (services.common.kafka.client_options)."""
    if options["security_protocol"] == "PLAINTEXT":
        return None
    if options["security_protocol"] == "SSL":
        return faust.SSLCredentials(options["ssl_context"])
    return faust.SASLCredentials(
        username=options["sasl_plain_username"],
        password=options["sasl_plain_password"],
        mechanism=options["sasl_mechanism"],
        ssl_context=options["ssl_context"],
    )


class KafkaNoticeSink:
    """Sends each notice through Faust's producer and waits for acks=all."""

    def __init__(self, app: faust.App, topic: str) -> None:
        self._app = app
        self._topic = topic

    async def send(self, tenant_id: str, notice: watch_pb2.WatchNotice) -> None:
        await self._app.producer.send_and_wait(
            self._topic,
            tenant_id.encode(),
            topics.WATCH_NOTICES.encode(notice),
            None,
            None,
            None,
        )


class ChangelogAcks:
    """The changelog writes of the tables it tracks, so an agent can wait until the
    brokers acknowledged every table change its event made before the event is
    acknowledged to Faust (and its offset becomes committable).

    Faust's own flush before a commit does not ensure it: faust-streaming 0.15.3's
    ProducerBuffer.flush returns as soon as one buffered message takes over 0.1 s to go
    out (`flush_atmost`), and the commit goes ahead with table changes still in the
    buffer. A kill -9 then loses them with the input offset committed: the worker taking
    over resumes after events whose effect on a household's state it never sees (a
    playback missing from a burst's count: a notice lost, 2 of 120 in one run).
    """

    def __init__(self) -> None:
        self._pending: list[asyncio.Future[Any]] = []

    def track(self, table: Any) -> None:
        send = table.send_changelog

        def sending(*args: Any, **kwargs: Any) -> Any:
            future = send(*args, **kwargs)
            self._pending.append(future)
            return future

        # Faust's Table.__setitem__ sends its change through this method.
        table.send_changelog = sending

    async def written(self) -> None:
        """Returns once every change sent so far is acknowledged (acks=all); raises if
        one failed, so the event is not acknowledged and is processed again."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        _, waiting = await asyncio.wait(pending, timeout=5)
        while waiting:
            log.warning("changelog writes not acknowledged yet", extra={"writes": len(waiting)})
            _, waiting = await asyncio.wait(waiting, timeout=30)
        for future in pending:
            future.result()


class FaustWorker:
    """The Faust app as a component of the service runtime (start, stop)."""

    def __init__(self, settings: PrivacyWatchSettings, clock: Clock | None = None) -> None:
        kafka = settings.kafka
        self._settings = settings
        self._clock = clock or SystemClock()
        options = client_options(kafka)
        self.app = faust.App(
            kafka.namespace + APP_ID,
            broker=[f"kafka://{server}" for server in options["bootstrap_servers"]],
            broker_credentials=credentials(options),
            store=settings.store,
            datadir=str(settings.data_dir),
            topic_partitions=kafka.topic_partitions,
            topic_replication_factor=kafka.replication_factor,
            table_standby_replicas=settings.standby_replicas,
            processing_guarantee="at_least_once",
            broker_commit_interval=settings.commit_interval_seconds,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            # A dead worker's partitions move to another within the session timeout.
            broker_session_timeout=10.0,
            broker_heartbeat_interval=1.0,
            broker_request_timeout=max(30.0, kafka.request_timeout_ms / 1000 + 5),
            web_enabled=False,
            autodiscover=False,
            logging_config=None,
            loghandlers=[],
        )
        retention = {"delete.retention.ms": str(settings.changelog_retention_days * 86_400_000)}
        self._changelogs = ChangelogAcks()

        def changelogged(name: str, what: str) -> Any:
            table = self.app.Table(
                name,
                default=None,
                key_type=str,
                partitions=kafka.topic_partitions,
                extra_topic_configs=retention,
                help=what,
            )
            self._changelogs.track(table)
            return table

        self.households = changelogged(
            "households",
            "tenant id -> the household's viewers, recent playbacks and usual hours",
        )
        self.entries = changelogged(
            "entries", "<tenant>/<access id> -> index of the entry in the household's log"
        )
        self.accounts = changelogged(
            "accounts", "tenant id -> the account's app installs seen (from the identity topic)"
        )
        self.digests = changelogged(
            "digests", "tenant id -> the household's open digest period and its last closed ones"
        )
        sink = KafkaNoticeSink(self.app, kafka.namespace + topics.WATCH_NOTICES.name)
        self.watch = AccessWatch(
            self.households,
            self.entries,
            sink,
            settings.policy(),
            self.digests,
            timedelta(seconds=settings.digest_period_seconds),
            timedelta(seconds=settings.digest_grace_seconds),
            self.accounts,
        )
        self.digest_sender = DigestSender(
            self.digests, sink, self._clock, timedelta(seconds=settings.digest_grace_seconds)
        )
        self.identity_watch = IdentityWatch(self.accounts, sink)

        def raw(topic: str) -> Any:
            return self.app.topic(
                kafka.namespace + topic,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
            )

        def agent(watch: AccessWatch | IdentityWatch) -> Any:
            async def on_events(stream: Any) -> None:
                async for event in stream.events():
                    message = event.message
                    if isinstance(watch, AccessWatch):
                        # The record's time: when the access was appended to the log.
                        appended = datetime.fromtimestamp(message.timestamp, UTC)
                        sent = await watch.on_event(
                            event.key, event.value, message.offset, appended
                        )
                    else:
                        sent = await watch.on_event(event.key, event.value, message.offset)
                    await self._changelogs.written()
                    if sent:
                        # The input topic's record time: when the event was written.
                        delay = time.time() - event.message.timestamp
                        metrics.NOTICE_DELAY.observe(max(0.0, delay))

            return on_events

        # One at a time: with concurrency above 1 Faust 0.15 can commit past an event
        # still in progress. Each agent writes only its own table (households and entries
        # from the access topic, accounts from the identity topic), so a table's changelog
        # partition is always that of the event that changed it. The access agent reads
        # accounts (the cameras' tuning): both topics are keyed by tenant and have the same
        # partition count, and Faust's assignor gives the same partitions of co-subscribed
        # topics of equal partition count to one worker (PartitionAssignor's copartitioned
        # groups), so a household's account is on the worker that holds its accesses.
        self.app.agent(raw(topics.ACCESS.name), name="watch", concurrency=1)(agent(self.watch))
        self.app.agent(raw(topics.IDENTITY.name), name="identity", concurrency=1)(
            agent(self.identity_watch)
        )
        self._running: contextlib.AsyncExitStack | None = None
        self._recovery_watch: asyncio.Task[None] | None = None
        self._digest_timer: asyncio.Task[None] | None = None
        self._stall_guard: asyncio.Task[None] | None = None
        self._inputs = {
            kafka.namespace + topics.ACCESS.name,
            kafka.namespace + topics.IDENTITY.name,
        }

    def _seek_uncommitted_too(self) -> None:
        """After a takeover, Faust's Recovery.on_recovery_completed resumes the input
        partitions, awaits Consumer.perform_seek (to the committed offsets), then empties the
        agents' queues (flow_control.resume). Records fetched during that await are dropped
        and read again only if the seek moved the partition back, but aiokafka's
        seek_to_committed skips a partition whose committed offset is None or 0: its later
        records were then applied and the dropped ones, read again after the guard's restart,
        counted as already applied (offset below the household's last) -- notices lost (#22).
        So such a partition is sought to its beginning too (consumer_auto_offset_reset)."""
        consumer: Any = self.app.consumer
        seek_committed = consumer.perform_seek

        async def perform_seek() -> None:
            await seek_committed()
            unsought = {
                tp
                for tp in consumer.assignment()
                if tp.topic in self._inputs and not consumer._read_offset.get(tp)
            }
            if unsought:
                await consumer.seek_wait(dict.fromkeys(unsought, 0))

        consumer.perform_seek = perform_seek

    async def start(self) -> None:
        bind_to_running_loop(self.app)  # the consumer is made on the running loop
        self._seek_uncommitted_too()
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(faust_app_running(self.app))
        self._running = stack
        recovery = self._recovery()
        try:
            async with asyncio.timeout(self._settings.recovery_timeout_seconds):
                await recovery.completed.wait()
        except TimeoutError:
            await self.stop()
            raise RuntimeError("tables not recovered in time") from None
        self._report_recovery()
        self._recovery_watch = asyncio.create_task(self._watch_recoveries())
        self._digest_timer = asyncio.create_task(self._send_digests())
        self._stall_guard = asyncio.create_task(self._guard_fetching())

    async def _guard_fetching(self) -> None:
        """Restarts Faust's fetch loop when partitions the worker should be reading have
        records waiting and none is read for STALL_SECONDS (see adapters/stall_guard.py:
        after a takeover, faust-streaming 0.15.3 was seen to read nothing more)."""
        guard: StallGuard[Any] = StallGuard(self._settings.stall_seconds)
        while True:
            await asyncio.sleep(STALL_CHECK_SECONDS)
            try:
                recovering, readings = await self._readings()
                stalled = guard.stalled(time.monotonic(), readings)
                if stalled:
                    try:
                        await self._restart_fetching(stalled, recovering)
                    finally:  # a failed restart is tried again only after STALL_SECONDS
                        guard.restarted(time.monotonic())
            except asyncio.CancelledError:
                raise
            except Exception as error:  # checked again at the next round
                # Faust's own message (no personal data): a restart failing is still open.
                log.warning(
                    "stall check failed",
                    extra={"error": type(error).__name__, "detail": str(error)[:200]},
                )

    async def _readings(self) -> tuple[bool, dict[Any, Reading]]:
        """(recovering, each partition's reading): the active changelog partitions while the
        tables are recovered (position read), else the input partitions assigned to this
        worker (offset committed)."""
        app: Any = self.app
        consumer: Any = app.consumer
        recovery = self._recovery()
        if recovery.in_recovery:
            remaining = recovery.active_remaining()
            return True, {
                tp: Reading(recovery.active_offsets.get(tp), remaining.get(tp, 0) > 0)
                for tp in recovery.active_tps
            }
        inputs = [tp for tp in consumer.assignment() if tp.topic in self._inputs]
        if not inputs:
            return False, {}
        async with asyncio.timeout(STALL_CHECK_SECONDS * 5):
            ends = await consumer.highwaters(*inputs)
        readings = {}
        for tp in inputs:
            # Progress is the committed offset (the next to process), not the read one: a
            # record Faust read and then dropped from an agent's queue is never acked, so
            # the commit stays before it while the read offset goes on.
            committed = consumer._committed_offset.get(tp)
            readings[tp] = Reading(committed, (ends.get(tp) or 0) > (committed or 0))
        return False, readings

    async def _restart_fetching(self, stalled: set[Any], recovering: bool) -> None:
        """Does again what Faust does once a recovery ends: the stalled partitions resumed,
        sought (inputs to their committed offsets, changelogs to the recovery's position),
        the flow on, and a new fetch loop. An input record read twice is a no-op (the
        household's last applied offset) and a notice sent twice keeps its id."""
        app: Any = self.app
        consumer: Any = app.consumer
        fetcher = app._fetcher
        FETCH_RESTARTS.inc()
        log.warning(
            "partitions with records waiting are not read; restarting the fetch loop",
            extra={
                "partitions": len(stalled),
                "recovering": recovering,
                "paused": len(stalled & set(consumer._paused_partitions)),
                "flow": consumer.flow_active,
                "flow_control": app.flow_control.is_active(),
                "fetcher": fetcher.state,
            },
        )
        try:
            async with asyncio.timeout(10):
                await fetcher.stop()
        except TimeoutError:
            log.warning("the fetch loop did not stop in time; starting a new one")
        fetcher.service_reset()
        try:
            consumer.resume_partitions(stalled)
            if recovering:
                recovery = self._recovery()
                await recovery._seek_offsets(consumer, stalled, recovery.active_offsets, "active")
            else:
                await consumer.perform_seek()
                # aiokafka's seek_to_committed leaves a partition without a committed offset
                # (or at 0) where it is: records fetched and then dropped are never read
                # again unless it is sought to its beginning (consumer_auto_offset_reset).
                unsought = [tp for tp in stalled if not consumer._read_offset.get(tp)]
                if unsought:
                    await consumer.seek_wait(dict.fromkeys(unsought, 0))
            if not app.flow_control.is_active():
                app.flow_control.resume()
            if not consumer.flow_active:
                consumer.resume_flow()
        finally:
            # Whatever failed above, the worker is never left without a fetch loop.
            await fetcher.maybe_start()

    async def _send_digests(self) -> None:
        """The digests' timer (not Faust's on_window_close: see streams/digest.py): every
        DIGEST_CHECK_SECONDS, once the tables are recovered, the due digests are sent."""
        recovery = self._recovery()
        while True:
            await asyncio.sleep(self._settings.digest_check_seconds)
            if not recovery.completed.is_set():
                continue
            try:
                await self.digest_sender.send_due()
            except Exception as error:  # sent again at the next round
                log.warning(
                    "digests not sent; retried at the next round",
                    extra={"error": type(error).__name__},
                )

    def _recovery(self) -> Any:
        # TableManager has it; Faust's interface type does not say so.
        tables: Any = self.app.tables
        return tables.recovery

    def _report_recovery(self) -> None:
        # Faust keeps the times of its last recovery only privately.
        recovery = self._recovery()
        started = getattr(recovery, "_recovery_started_at", None)
        ended = getattr(recovery, "_recovery_ended_at", None)
        if started is None or ended is None or ended < started:
            return
        seconds = float(ended - started)
        metrics.RECOVERY_SECONDS.set(seconds)
        log.info("tables recovered", extra={"seconds": round(seconds, 3)})

    async def _watch_recoveries(self) -> None:
        """Reports each later recovery (after a rebalance: a partition taken over)."""
        recovery = self._recovery()
        seen = getattr(recovery, "_recovery_ended_at", None)
        while True:
            await asyncio.sleep(0.5)
            ended = getattr(recovery, "_recovery_ended_at", None)
            if ended is not None and ended != seen:
                seen = ended
                self._report_recovery()

    async def stop(self) -> None:
        for task in (self._stall_guard, self._digest_timer, self._recovery_watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._running is not None:
            stack, self._running = self._running, None
            await stack.aclose()
