"""Dead letters: list a consumer group's, and replay them to the topic they came from.

    python -m services.common.deadletters list [--group GROUP]
    python -m services.common.deadletters replay --group GROUP [--dry-run] [--again]

A consumer group's dead-letter topic, `<namespace>privacam.deadletter.<group>.v1`, holds the
events its handler kept failing (services.common.kafka.EventConsumer), each with its key,
value and headers as it came, plus headers naming where it came from (topic, partition,
offset), the error's class and the attempts. GROUP is the group's name before the namespace
(`retention.schedule`, `access_log`, `clip_ingest.index`, `<service>.diagnostics`; `list`
shows them).

Run it as the cluster's administrator, as a restore is (docs/backup-restore.md): no
service's user may read a dead-letter topic, and a group's service may not write every
topic its group reads. Settings come from the environment (PRIVACAM_KAFKA_*, the
namespace included).

- `list`: each dead-letter topic of the namespace, with the events it keeps and how many
  of them are not replayed yet; with --group, one line per event: its offset, where it
  came from, the error's class, the attempts, when, whether replayed. Never a key or a
  value: they name households.
- `replay`: each event of the group's dead-letter topic not replayed before goes back to
  its topic, in its partition, with its key, value and own headers, plus
  `privacam-replayed-for: GROUP`, so that only that group applies it (the topic's other
  groups applied it when it first came, and skip it). What was replayed is committed as
  the offsets of the group `<namespace>privacam.deadletter.replay.<group>`, so a second
  replay does not repeat it; --again replays every event the topic still keeps. An event
  that fails again is dead-lettered again, as a new dead letter. --dry-run lists what
  would be replayed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.common import topics
from services.common.kafka import (
    DEAD_LETTER_ATTEMPTS_HEADER,
    DEAD_LETTER_ERROR_HEADER,
    DEAD_LETTER_OFFSET_HEADER,
    DEAD_LETTER_PARTITION_HEADER,
    DEAD_LETTER_TOPIC_HEADER,
    REPLAYED_FOR_HEADER,
    EventProducer,
    client_options,
    dead_letter_topic_name,
    event_headers,
    header_value,
)
from services.common.settings import KafkaSettings

_PREFIX, _SUFFIX = dead_letter_topic_name("|").split("|")
REPLAYABLE = {topic.name: topic for topic in topics.ALL if not topic.compacted}
"""The topics a dead letter may go back to: those EventConsumers read (never a compacted
state topic, whose records its writer signs)."""


class DeadLetterError(Exception):
    """Said to the operator, and the command exits 1."""


def replay_group(group: str) -> str:
    """The consumer group whose offsets say which of GROUP's dead letters were replayed."""
    return f"privacam.deadletter.replay.{group}"


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    replayed: bool

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)

    @property
    def source(self) -> tuple[str, int, int] | None:
        """(topic before the namespace, partition, offset) it came from; None if the
        record does not say (not written by an EventConsumer)."""
        topic = self.header(DEAD_LETTER_TOPIC_HEADER)
        partition = self.header(DEAD_LETTER_PARTITION_HEADER)
        offset = self.header(DEAD_LETTER_OFFSET_HEADER)
        if topic is None or partition is None or offset is None:
            return None
        try:
            return topic, int(partition), int(offset)
        except ValueError:
            return None

    def describe(self) -> str:
        source = self.source
        where = f"{source[0]} {source[1]}:{source[2]}" if source else "unknown source"
        at = datetime.fromtimestamp(self.timestamp_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (
            f"{self.partition}:{self.offset}  from {where}  "
            f"error {self.header(DEAD_LETTER_ERROR_HEADER) or '?'}  "
            f"attempts {self.header(DEAD_LETTER_ATTEMPTS_HEADER) or '?'}  at {at}"
            + ("  (replayed)" if self.replayed else "")
        )

    def replay_headers(self, group: str) -> list[tuple[str, bytes]]:
        """The event's own headers, and the one group it is replayed for."""
        return [*event_headers(self.headers), (REPLAYED_FOR_HEADER, group.encode())]


def _admin(settings: KafkaSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        **client_options(settings), request_timeout_ms=settings.request_timeout_ms
    )


async def groups(settings: KafkaSettings) -> list[str]:
    """The groups (before the namespace) that have a dead-letter topic in this namespace."""
    admin = _admin(settings)
    await admin.start()
    try:
        names = await admin.list_topics()
    finally:
        await admin.close()
    head = settings.namespace + _PREFIX
    return sorted(
        name[len(head) : -len(_SUFFIX)]
        for name in names
        if name.startswith(head) and name.endswith(_SUFFIX) and len(name) > len(head + _SUFFIX)
    )


async def _replayed_offsets(settings: KafkaSettings, group: str) -> dict[int, int]:
    """Partition -> first offset not replayed yet, from the replay group's commits."""
    admin = _admin(settings)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.namespace + replay_group(group))
    finally:
        await admin.close()
    name = settings.namespace + dead_letter_topic_name(group)
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == name}


async def read(settings: KafkaSettings, group: str) -> list[DeadLetter]:
    """Every dead letter the group's topic keeps, in partition and offset order, each
    marked replayed or not."""
    name = settings.namespace + dead_letter_topic_name(group)
    admin = _admin(settings)
    await admin.start()
    try:
        (description,) = await admin.describe_topics([name])
    finally:
        await admin.close()
    if description["error_code"] != 0:
        raise DeadLetterError(f"{name} does not exist: no dead letters of group {group!r}")
    replayed = await _replayed_offsets(settings, group)
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        request_timeout_ms=settings.request_timeout_ms,
    )
    await consumer.start()
    found: list[DeadLetter] = []
    try:
        assigned = [TopicPartition(name, p["partition"]) for p in description["partitions"]]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        pending = {tp for tp in assigned if ends[tp] > 0}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batches.items():
                found += [
                    DeadLetter(
                        tp.partition,
                        r.offset,
                        r.timestamp,
                        r.key,
                        r.value,
                        list(r.headers or ()),
                        r.offset < replayed.get(tp.partition, 0),
                    )
                    for r in records
                    if r.offset < ends[tp]
                ]
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return sorted(found, key=lambda letter: (letter.partition, letter.offset))


@dataclass(frozen=True)
class Replayed:
    letter: DeadLetter
    to: tuple[str, int, int]
    """(topic before the namespace, partition, offset) it was written at."""


async def replay(
    settings: KafkaSettings, group: str, *, again: bool = False, dry_run: bool = False
) -> list[Replayed]:
    """Put the group's dead letters not replayed yet (all of them with `again`) back on
    their topics, for the group alone; returns what was (or, dry, would be) replayed.
    Each partition's progress is committed after each event, so a replay that stops
    half-way goes on where it stopped."""
    letters = [letter for letter in await read(settings, group) if again or not letter.replayed]
    for letter in letters:
        source = letter.source
        if source is None or source[0] not in REPLAYABLE:
            raise DeadLetterError(
                f"dead letter {letter.partition}:{letter.offset} of {group!r} names no topic "
                f"it can go back to ({source[0] if source else 'no source headers'}); "
                "nothing replayed"
            )
    if dry_run or not letters:
        return [Replayed(letter, letter.source or ("", 0, 0)) for letter in letters]
    name = settings.namespace + dead_letter_topic_name(group)
    producer = EventProducer(settings, "privacam-deadletter-replay")
    progress = AIOKafkaConsumer(
        **client_options(settings),
        group_id=settings.namespace + replay_group(group),
        enable_auto_commit=False,
        request_timeout_ms=settings.request_timeout_ms,
    )
    await producer.start()
    await progress.start()
    done: list[Replayed] = []
    try:
        progress.assign(sorted({TopicPartition(name, letter.partition) for letter in letters}))
        for letter in letters:
            topic, partition, _ = letter.source or ("", 0, 0)
            written = await producer.send_raw(
                REPLAYABLE[topic],
                letter.key or b"",
                letter.value,
                partition=partition,
                headers=letter.replay_headers(group),
            )
            await progress.commit({TopicPartition(name, letter.partition): letter.offset + 1})
            done.append(Replayed(letter, (topic, *written)))
    finally:
        await progress.stop()
        await producer.stop()
    return done


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.common.deadletters", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="the dead-letter topics, or one group's dead letters")
    listing.add_argument("--group", help="a consumer group, before the namespace")
    replaying = sub.add_parser("replay", help="put a group's dead letters back on their topics")
    replaying.add_argument("--group", required=True, help="a consumer group, before the namespace")
    replaying.add_argument("--again", action="store_true", help="also those replayed before")
    replaying.add_argument("--dry-run", action="store_true", help="list them, replay nothing")
    args = parser.parse_args(argv)
    settings = KafkaSettings()
    try:
        return asyncio.run(_main(settings, args))
    except DeadLetterError as error:
        print(f"deadletters: {error}", file=sys.stderr)
        return 1


async def _main(settings: KafkaSettings, args: Any) -> int:
    if args.action == "list" and args.group is None:
        for group in await groups(settings):
            letters = await read(settings, group)
            waiting = sum(1 for letter in letters if not letter.replayed)
            print(f"{group}: {len(letters)} kept, {waiting} not replayed")
        return 0
    if args.action == "list":
        for letter in await read(settings, args.group):
            print(letter.describe())
        return 0
    done = await replay(settings, args.group, again=args.again, dry_run=args.dry_run)
    for item in done:
        topic, partition, offset = item.to
        target = f"{topic} {partition}" + ("" if args.dry_run else f":{offset}")
        print(f"{item.letter.describe()}  -> {target}")
    verb = "would replay" if args.dry_run else "replayed"
    print(f"{verb} {len(done)} dead letter(s) of {args.group}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
