"""Backup and restore of the platform's state: `python -m services.common.backup create|restore`.

What is state: the compacted topics (device registry, accounts, grants and their
hashes; sealed key-encryption keys and destruction markers; revocations; and every
other compacted topic in services.common.topics), plus the objects of the buckets named
(the access log's segments and checkpoint). Clips are not in backups: they are ciphertext
in MinIO, protected by MinIO's own replication, and must be deletable for good.

Objects are the environment's own: those whose names start with its Kafka namespace (the
prefix services put on every object name, so environments sharing a bucket never mix; all
of them when the namespace is empty). Restore puts them back under the namespace it
restores into, so a backup can also rebuild an environment under another namespace.

- **Encrypted.** Account and PIN hashes must not sit in a backup readable by whoever can
  read the backup store: every file is sealed with the clip format (AES-256-GCM STREAM)
  under a key derived from the operator's backup key and bound to the backup's id, so a
  file moved between backups does not open. Sealed KEKs stay sealed under the root key,
  which is never in a backup.
- **Crypto-shredding reaches backups.** A backup expires after `max_age` (default: the
  longest allowed clip retention) and restore refuses it after that. Restore also drops
  every sealed KEK whose period ended more than the longest retention ago: such a key can
  only protect clips already due for deletion, so a restore never brings a shredded
  period back. What was destroyed after the backup was taken (an account cancelled since)
  is the restore's recovery point: documented, not hidden.
- **Same partitions, same order.** Records are restored into the partition they came from,
  in offset order, because replicas decide races by partition order (first writer wins).
  Restore writes only into empty topics: it rebuilds a lost stack, it never merges.
- **Signatures kept.** Each record keeps its Kafka headers, which carry its writer's
  signature (services.common.signed_state): readers apply only signed records, and the
  restore, which holds no service's key, copies the signatures rather than making new ones.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import secrets
import struct
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from minio import Minio

from privacam.keys.v1.state_pb2 import KeyStateRecord
from privacam_core import clip_format
from services.common import topics
from services.common.kafka import EventProducer, Topic, client_options, ensure_topics
from services.common.settings import KafkaSettings, MinioSettings

FORMAT = "privacam-backup-v2"
"""v2 keeps each record's headers (v1 did not: its records would restore unsigned, and
every service would skip them)."""
_UNSIGNED_FORMAT = "privacam-backup-v1"
"""Refused by restore; still pruned when it expires (it holds keys that must go)."""
_RECORD = struct.Struct(">iIIH")  # partition, key length, value length, header count
_HEADER = struct.Struct(">HI")  # name length, value length

Headers = list[tuple[str, bytes]]
Record = tuple[int, bytes, bytes, Headers]
"""partition, key, value, headers"""


class BackupError(RuntimeError):
    """The backup cannot be made or restored; the message says why."""


@dataclass(frozen=True)
class Policy:
    """How long key material may outlive its clips."""

    max_retention: timedelta = timedelta(days=30)
    """The longest clip retention the operator allows."""
    rotation_period: timedelta = timedelta(days=1)
    """Length of a key period (the key manager's rotation period)."""
    max_age: timedelta = timedelta(days=30)
    """How long a backup may be restored; keep at most max_retention."""


@dataclass(frozen=True)
class Report:
    backup_id: str
    directory: Path
    records: dict[str, int]
    objects: int
    seconds: float
    dropped_keys: int = 0


def _compacted() -> list[Topic[Any]]:
    return [topic for topic in topics.ALL if topic.compacted]


def _file_key(backup_key: bytes, backup_id: str) -> bytes:
    return HKDF(hashes.SHA256(), 32, backup_id.encode(), b"privacam-backup-v1").derive(backup_key)


def _binding(backup_id: str, name: str) -> clip_format.ClipBinding:
    # The file name is part of the binding: a file swapped within a backup fails too.
    digest = hashlib.sha256(name.encode()).hexdigest()[:32]
    return clip_format.ClipBinding("platform-backup", backup_id[:64], digest)


def _seal(directory: Path, name: str, data: bytes, key: bytes, backup_id: str) -> str:
    sealed = b"".join(
        clip_format.encrypt_stream([data], key, b"backup-key", _binding(backup_id, name))
    )
    (directory / name).write_bytes(sealed)
    return hashlib.sha256(sealed).hexdigest()


def _open(directory: Path, name: str, digest: str, key: bytes, backup_id: str) -> bytes:
    sealed = (directory / name).read_bytes()
    if hashlib.sha256(sealed).hexdigest() != digest:
        raise BackupError(f"{name} does not match the manifest: the backup was altered")
    try:
        return clip_format.decrypt_all(sealed, key, _binding(backup_id, name))
    except clip_format.ClipFormatError:
        raise BackupError(f"{name} does not open with this backup key") from None


def _new_directory(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=False)


def _encode(records: Iterable[Record]) -> bytes:
    out = io.BytesIO()
    for partition, key, value, headers in records:
        out.write(_RECORD.pack(partition, len(key), len(value), len(headers)))
        out.write(key)
        out.write(value)
        for name, content in headers:
            encoded = name.encode()
            out.write(_HEADER.pack(len(encoded), len(content)))
            out.write(encoded)
            out.write(content)
    return out.getvalue()


def _decode(data: bytes) -> list[Record]:
    records: list[Record] = []
    at = 0
    while at < len(data):
        partition, key_length, value_length, header_count = _RECORD.unpack_from(data, at)
        at += _RECORD.size
        key = data[at : at + key_length]
        value = data[at + key_length : at + key_length + value_length]
        at += key_length + value_length
        headers: Headers = []
        for _ in range(header_count):
            name_length, content_length = _HEADER.unpack_from(data, at)
            at += _HEADER.size
            name = data[at : at + name_length].decode()
            headers.append((name, data[at + name_length : at + name_length + content_length]))
            at += name_length + content_length
        records.append((partition, key, value, headers))
    return records


async def _partitions(settings: KafkaSettings, name: str) -> list[int]:
    """Partition numbers of a topic; empty when it does not exist."""
    admin = AIOKafkaAdminClient(
        **client_options(settings),
        request_timeout_ms=settings.request_timeout_ms,
    )
    await admin.start()
    try:
        (description,) = await admin.describe_topics([name])
    finally:
        await admin.close()
    if description["error_code"] != 0:
        return []
    return sorted(p["partition"] for p in description["partitions"])


async def _snapshot(settings: KafkaSettings, topic: Topic[Any]) -> tuple[int, list[Record]]:
    """(partition count, latest value per key in offset order, with its headers) of a
    compacted topic."""
    name = settings.namespace + topic.name
    partitions = await _partitions(settings, name)
    if not partitions:
        return 0, []
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=settings.request_timeout_ms,
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(name, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        latest: dict[tuple[int, bytes], tuple[int, bytes | None, Headers]] = {}
        pending = {tp for tp in assigned if ends[tp] > 0}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, messages in batches.items():
                for message in messages:
                    if message.offset < ends[tp] and message.key is not None:
                        latest[(tp.partition, message.key)] = (
                            message.offset,
                            message.value,
                            list(message.headers or ()),
                        )
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        kept = sorted(
            (
                (partition, offset, key, value, headers)
                for (partition, key), (offset, value, headers) in latest.items()
                if value is not None
            ),
        )
        return len(assigned), [(p, k, v, h) for p, _, k, v, h in kept]
    finally:
        await consumer.stop()


def _client(settings: MinioSettings) -> Minio:
    return Minio(
        settings.endpoint,
        access_key=settings.access_key.get_secret_value(),
        secret_key=settings.secret_key.get_secret_value(),
        secure=settings.secure,
        region=settings.region,
    )


async def create(
    kafka: KafkaSettings,
    minio: MinioSettings | None,
    buckets: Sequence[str],
    directory: Path,
    backup_key: bytes,
    policy: Policy = Policy(),
    now: datetime | None = None,
) -> Report:
    started = time.monotonic()
    created = now or datetime.now(UTC)
    backup_id = f"{created:%Y%m%dT%H%M%SZ}-{secrets.token_hex(6)}"
    _new_directory(directory)
    key = _file_key(backup_key, backup_id)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "backup_id": backup_id,
        "namespace": kafka.namespace,
        "created_at": created.isoformat(),
        "expires_at": (created + policy.max_age).isoformat(),
        "topics": {},
        "objects": {},
    }
    counts: dict[str, int] = {}
    for index, topic in enumerate(_compacted()):
        partitions, records = await _snapshot(kafka, topic)
        name = f"topic-{index:02d}.bin"
        manifest["topics"][topic.name] = {
            "file": name,
            "partitions": partitions,
            "records": len(records),
            "sha256": _seal(directory, name, _encode(records), key, backup_id),
        }
        counts[topic.name] = len(records)
    objects = 0
    if minio is not None:
        client = _client(minio)
        for bucket in buckets:
            if not await asyncio.to_thread(client.bucket_exists, bucket):
                continue
            listing = await asyncio.to_thread(
                lambda name=bucket: list(  # type: ignore[misc]
                    client.list_objects(name, prefix=kafka.namespace, recursive=True)
                )
            )
            for item in listing:
                response = await asyncio.to_thread(client.get_object, bucket, item.object_name)
                try:
                    data = response.read()
                finally:
                    response.close()
                    response.release_conn()
                name = f"object-{objects:06d}.bin"
                manifest["objects"][name] = {
                    "bucket": bucket,
                    "name": item.object_name,
                    "sha256": _seal(directory, name, data, key, backup_id),
                }
                objects += 1
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return Report(backup_id, directory, counts, objects, time.monotonic() - started)


def _past_due(value: bytes, policy: Policy, now: datetime) -> bool:
    """A sealed KEK whose period's clips are all past the longest retention."""
    record = KeyStateRecord.FromString(value)
    if record.WhichOneof("record") != "kek":
        return False
    period_end = record.kek.period_start.ToDatetime(UTC) + policy.rotation_period
    return period_end + policy.max_retention < now


async def restore(
    kafka: KafkaSettings,
    minio: MinioSettings | None,
    directory: Path,
    backup_key: bytes,
    policy: Policy = Policy(),
    now: datetime | None = None,
) -> Report:
    started = time.monotonic()
    moment = now or datetime.now(UTC)
    manifest = json.loads((directory / "manifest.json").read_text())
    if manifest.get("format") == _UNSIGNED_FORMAT:
        raise BackupError(
            f"{directory} is a {_UNSIGNED_FORMAT} backup, made without the records' "
            "signatures: every service would skip its records. Take a new backup"
        )
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{directory} is not a {FORMAT} backup")
    backup_id = manifest["backup_id"]
    if datetime.fromisoformat(manifest["expires_at"]) < moment:
        raise BackupError(
            f"backup {backup_id} expired at {manifest['expires_at']}: expired backups are not "
            "restored, so keys shredded since cannot come back"
        )
    key = _file_key(backup_key, backup_id)
    by_name = {topic.name: topic for topic in _compacted()}
    # Check every file before writing anything: a restore is all or nothing.
    contents = {
        name: _decode(_open(directory, entry["file"], entry["sha256"], key, backup_id))
        for name, entry in manifest["topics"].items()
    }
    blobs = {
        name: _open(directory, name, entry["sha256"], key, backup_id)
        for name, entry in manifest["objects"].items()
    }
    unknown = set(contents) - set(by_name)
    if unknown:
        raise BackupError(f"backup holds topics this version does not know: {sorted(unknown)}")
    if blobs and minio is None:
        raise BackupError(
            f"backup {backup_id} holds {len(blobs)} objects (the access log's segments): "
            "restore them too, with MinIO's settings (PRIVACAM_MINIO_*)"
        )
    counts: dict[str, int] = {}
    dropped = 0
    producer = EventProducer(kafka, "privacam-restore")
    await producer.start()
    try:
        for name, records in contents.items():
            partitions = manifest["topics"][name]["partitions"]
            if not records:
                counts[name] = 0
                continue
            settings = kafka.model_copy(update={"topic_partitions": partitions})
            await ensure_topics(settings, [by_name[name]])
            if await producer.partition_count(by_name[name]) != partitions:
                raise BackupError(f"{name} exists with another partition count than the backup's")
            await _require_empty(kafka, by_name[name])
            for partition, record_key, value, headers in records:
                if by_name[name] is topics.KEY_STATE and _past_due(value, policy, moment):
                    dropped += 1
                    continue
                # The writer's signature as it was: the restore signs nothing itself.
                await producer.send_raw(
                    by_name[name], record_key, value, partition=partition, headers=headers
                )
            counts[name] = len(records)
    finally:
        await producer.stop()
    if minio is not None and blobs:
        client = _client(minio)
        source = manifest.get("namespace", "")
        for name, data in blobs.items():
            entry = manifest["objects"][name]
            target = entry["name"]
            if source and target.startswith(source):
                target = kafka.namespace + target[len(source) :]
            elif not source:
                target = kafka.namespace + target
            if not await asyncio.to_thread(client.bucket_exists, entry["bucket"]):
                await asyncio.to_thread(client.make_bucket, entry["bucket"])
            await asyncio.to_thread(
                client.put_object, entry["bucket"], target, io.BytesIO(data), len(data)
            )
    return Report(
        backup_id, directory, counts, len(blobs), time.monotonic() - started, dropped_keys=dropped
    )


def prune(parent: Path, now: datetime | None = None) -> list[str]:
    """Delete the expired backups under `parent` (each a directory with a manifest); returns
    their ids. Run it as often as backups are made: an expired backup that still exists
    would still hold keys that were shredded since."""
    moment = now or datetime.now(UTC)
    removed = []
    for manifest_file in sorted(parent.glob("*/manifest.json")):
        manifest = json.loads(manifest_file.read_text())
        if (
            manifest.get("format") in (FORMAT, _UNSIGNED_FORMAT)
            and datetime.fromisoformat(manifest["expires_at"]) < moment
        ):
            directory = manifest_file.parent
            for path in directory.iterdir():
                path.unlink()
            directory.rmdir()
            removed.append(str(manifest["backup_id"]))
    return removed


async def _require_empty(kafka: KafkaSettings, topic: Topic[Any]) -> None:
    _, records = await _snapshot(kafka, topic)
    if records:
        raise BackupError(
            f"{kafka.namespace}{topic.name} already holds state: restore only into an empty stack"
        )


def _holds_objects(directory: Path) -> bool:
    manifest = directory / "manifest.json"
    return manifest.exists() and bool(json.loads(manifest.read_text()).get("objects"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.common.backup", description=__doc__.splitlines()[0]
    )
    parser.add_argument("action", choices=["create", "restore", "prune"])
    parser.add_argument(
        "directory",
        type=Path,
        help="backup directory (created by create); for prune, the directory holding backups",
    )
    parser.add_argument("--key-file", type=Path, help="operator's backup key: 64 hex digits")
    parser.add_argument(
        "--bucket", action="append", default=[], help="a MinIO bucket to include (repeatable)"
    )
    parser.add_argument("--max-retention-days", type=int, default=30)
    parser.add_argument("--rotation-period-hours", type=int, default=24)
    args = parser.parse_args(argv)
    if args.action != "prune" and args.key_file is None:
        parser.error("--key-file is required to create or restore a backup")
    if args.action == "prune":
        removed = prune(args.directory)
        print(
            f"prune: {len(removed)} expired backup(s) deleted"
            + "".join(f"\n  {r}" for r in removed)
        )
        return 0
    backup_key = bytes.fromhex(args.key_file.read_text().strip())
    if len(backup_key) != 32:
        parser.error("--key-file must hold 32 bytes as 64 hex digits")
    policy = Policy(
        max_retention=timedelta(days=args.max_retention_days),
        rotation_period=timedelta(hours=args.rotation_period_hours),
        max_age=timedelta(days=args.max_retention_days),
    )
    kafka = KafkaSettings()
    # A restore needs MinIO whenever the backup holds objects, named with --bucket or not.
    minio = MinioSettings() if args.bucket or _holds_objects(args.directory) else None
    try:
        if args.action == "create":
            report = asyncio.run(
                create(kafka, minio, args.bucket, args.directory, backup_key, policy)
            )
        else:
            report = asyncio.run(restore(kafka, minio, args.directory, backup_key, policy))
    except BackupError as error:
        print(f"backup: {error}", file=sys.stderr)
        return 1
    print(
        f"{args.action}: backup {report.backup_id}: "
        + ", ".join(f"{name} {count}" for name, count in report.records.items())
        + f"; {report.objects} objects; {report.dropped_keys} past-due keys dropped; "
        f"{report.seconds:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
