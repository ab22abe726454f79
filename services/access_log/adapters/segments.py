"""Log segments and the checkpoint in MinIO: the log's durable copy beyond Kafka retention.

A segment is one tenant's consecutive entries, written once and never changed:
``<ns>t/<tenant>/segments/<first>-<last>`` (indices zero-padded, so names sort in log
order), holding ``MAGIC`` then each record as a 4-byte big-endian length and its bytes.
The checkpoint ``<ns>checkpoint.json`` names, per partition of the access topic, the next
offset not yet covered by segments, and the tenants whose logs were deleted. ``<ns>`` is
the Kafka namespace, so environments sharing a bucket never read each other's logs.

Names hold opaque ids only. Loading never repairs: a gap, a disagreeing overlap or an
unreadable segment stops that tenant's log at the last good entry and is counted, so the
owner's next consistency check fails visibly instead of the log quietly healing.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime

from minio import Minio
from minio.deleteobjects import DeleteObject

from privacam_core.merkle import EMPTY_ROOT
from services.access_log.adapters import metrics
from services.access_log.domain.log import LogEnding

log = logging.getLogger("privacam.access_log.segments")

MAGIC = b"PRIVACAM-LOG-SEGMENT-1\n"
_LENGTH = struct.Struct(">I")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAME = re.compile(r"t/([a-z0-9-]{1,63})/segments/(\d{20})-(\d{20})$")


class SegmentError(ValueError):
    pass


def encode_segment(records: list[bytes]) -> bytes:
    return MAGIC + b"".join(_LENGTH.pack(len(r)) + r for r in records)


def decode_segment(data: bytes) -> list[bytes]:
    if not data.startswith(MAGIC):
        raise SegmentError("not a log segment")
    records, position = [], len(MAGIC)
    while position < len(data):
        if position + _LENGTH.size > len(data):
            raise SegmentError("truncated segment")
        (length,) = _LENGTH.unpack_from(data, position)
        position += _LENGTH.size
        if position + length > len(data):
            raise SegmentError("truncated segment")
        records.append(data[position : position + length])
        position += length
    return records


@dataclass
class Checkpoint:
    offsets: dict[int, int] = field(default_factory=dict)
    """Partition -> next offset of the access topic not covered by stored segments."""
    deleted: set[str] = field(default_factory=set)
    """Tenants whose logs were deleted (never applied again)."""
    endings: dict[str, LogEnding] = field(default_factory=dict)
    """How each deleted log ended (its deletion statement's content). A checkpoint written
    before endings were kept has none: such a log ended at size 0 at the Unix epoch."""

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "offsets": {str(p): o for p, o in sorted(self.offsets.items())},
                "deleted": sorted(self.deleted),
                "endings": {
                    tenant: {
                        "size": ending.size,
                        "root": ending.root.hex(),
                        "deleted_at": ending.deleted_at.isoformat(),
                    }
                    for tenant, ending in sorted(self.endings.items())
                },
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Checkpoint:
        document = json.loads(data)
        deleted = set(document["deleted"])
        endings = {
            tenant: LogEnding(
                int(item["size"]),
                bytes.fromhex(item["root"]),
                datetime.fromisoformat(item["deleted_at"]),
            )
            for tenant, item in document.get("endings", {}).items()
        }
        for tenant in deleted - set(endings):
            endings[tenant] = LogEnding(0, EMPTY_ROOT, _EPOCH)
        return cls({int(p): int(o) for p, o in document["offsets"].items()}, deleted, endings)


class SegmentStore:
    def __init__(self, client: Minio, bucket: str, namespace: str) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = namespace

    def segment_name(self, tenant_id: str, first: int, last: int) -> str:
        return f"{self._prefix}t/{tenant_id}/segments/{first:020d}-{last:020d}"

    @property
    def checkpoint_name(self) -> str:
        return f"{self._prefix}checkpoint.json"

    async def write_segment(self, tenant_id: str, first: int, records: list[bytes]) -> None:
        data = encode_segment(records)
        name = self.segment_name(tenant_id, first, first + len(records) - 1)
        await asyncio.to_thread(
            self._client.put_object,
            self._bucket,
            name,
            io.BytesIO(data),
            len(data),
            content_type="application/octet-stream",
        )
        metrics.SEGMENTS_WRITTEN.inc()
        metrics.SEGMENT_ENTRIES.inc(len(records))

    async def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        data = checkpoint.to_json()
        await asyncio.to_thread(
            self._client.put_object,
            self._bucket,
            self.checkpoint_name,
            io.BytesIO(data),
            len(data),
            content_type="application/json",
        )

    async def read_checkpoint(self) -> Checkpoint | None:
        try:
            data = await asyncio.to_thread(self._read, self.checkpoint_name)
        except KeyError:
            return None
        return Checkpoint.from_json(data)

    def _read(self, name: str) -> bytes:
        from minio.error import S3Error

        try:
            response = self._client.get_object(self._bucket, name)
        except S3Error as error:
            if error.code == "NoSuchKey":
                raise KeyError(name) from None
            raise
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    def _list(self, prefix: str) -> list[str]:
        return [
            str(obj.object_name)
            for obj in self._client.list_objects(self._bucket, prefix=prefix, recursive=True)
        ]

    async def load_all(self) -> dict[str, list[bytes]]:
        """Every tenant's stored entries from index 0, up to the first gap or bad segment."""
        names = await asyncio.to_thread(self._list, f"{self._prefix}t/")
        by_tenant: dict[str, list[tuple[int, int, str]]] = {}
        for name in names:
            match = _NAME.search(name[len(self._prefix) :])
            if match is None:
                metrics.LOAD_ERRORS.inc()
                continue
            tenant, first, last = match.group(1), int(match.group(2)), int(match.group(3))
            by_tenant.setdefault(tenant, []).append((first, last, name))
        logs: dict[str, list[bytes]] = {}
        for tenant, segments in by_tenant.items():
            logs[tenant] = await self._load_tenant(sorted(segments))
        return logs

    async def _load_tenant(self, segments: list[tuple[int, int, str]]) -> list[bytes]:
        records: list[bytes] = []
        for first, last, name in segments:
            try:
                part = decode_segment(await asyncio.to_thread(self._read, name))
            except (SegmentError, KeyError):
                metrics.LOAD_ERRORS.inc()
                log.error("unreadable log segment; the log stops before it")
                break
            if len(part) != last - first + 1 or first > len(records):
                metrics.LOAD_ERRORS.inc()
                log.error("log segments do not line up; the log stops at the gap")
                break
            overlap = len(records) - first
            if overlap > 0:  # written by two replicas: must agree where they overlap
                if records[first:] != part[: min(overlap, len(part))]:
                    metrics.LOAD_ERRORS.inc()
                    log.error("two log segments disagree; the log stops before them")
                    break
                part = part[overlap:]
            records.extend(part)
        return records

    async def delete_tenant(self, tenant_id: str) -> int:
        """Remove every stored segment of a tenant; returns how many were removed."""

        def remove() -> int:
            names = self._list(f"{self._prefix}t/{tenant_id}/")
            if names:
                errors = list(
                    self._client.remove_objects(self._bucket, [DeleteObject(n) for n in names])
                )
                if errors:
                    raise RuntimeError(f"{len(errors)} segments could not be deleted")
            return len(names)

        return await asyncio.to_thread(remove)
