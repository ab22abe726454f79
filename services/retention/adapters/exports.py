"""Exports' adapters: job state and the build queue in Redis, sources behind the peers, the
encrypted archive in MinIO (a multipart upload while it is built), and decryption that is
logged in the household's log before it happens."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from google.protobuf.json_format import MessageToDict
from minio.datatypes import Part
from minio.error import S3Error
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from privacam.accesslog.v1 import access_log_service_pb2 as log_pb
from privacam.accesslog.v1 import log_pb2
from privacam.identity.v1 import device_auth_service_pb2 as identity_pb
from privacam.keys.v1 import key_manager_service_pb2 as keys_pb
from privacam.keys.v1 import keys_pb2
from privacam.retention.v1 import events_pb2 as pb
from privacam.retention.v1 import retention_pb2
from privacam.types.v1 import types_pb2
from privacam_core import clip_format
from privacam_core.clip_format import BytesLike
from privacam_core.timestamps import to_timestamp
from services.common import topics
from services.common.clock import Clock
from services.common.errors import FailedPrecondition
from services.common.kafka import EventProducer
from services.common.peers import Peers, call_options
from services.retention import NAME
from services.retention.adapters.objects import MinioObjects, tenant_prefix
from services.retention.adapters.peers import call
from services.retention.domain.archive import UploadLost
from services.retention.domain.exports import OPEN, ExportJob, ExportState
from services.retention.domain.model import ScheduledClip


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


STATES_PB = {
    ExportState.PENDING: retention_pb2.EXPORT_STATE_PENDING,
    ExportState.BUILDING: retention_pb2.EXPORT_STATE_BUILDING,
    ExportState.READY: retention_pb2.EXPORT_STATE_READY,
    ExportState.FAILED: retention_pb2.EXPORT_STATE_FAILED,
    ExportState.EXPIRED: retention_pb2.EXPORT_STATE_EXPIRED,
}


def job_pb(job: ExportJob) -> retention_pb2.Export:
    message = retention_pb2.Export(
        export_id=job.export_id,
        state=STATES_PB[job.state],
        items_done=job.items_done,
        items_total=job.items_total,
        requested_at=to_timestamp(job.requested_at),
        size_bytes=job.size_bytes,
        sha256=job.sha256,
        failure_reason=job.failure_reason,
    )
    if job.ready_at is not None:
        message.ready_at.CopyFrom(to_timestamp(job.ready_at))
    if job.expires_at is not None:
        message.expires_at.CopyFrom(to_timestamp(job.expires_at))
    return message


def _encode(job: ExportJob) -> dict[str, str]:
    def moment(value: datetime | None) -> str:
        return "" if value is None else str(value.timestamp())

    return {
        "state": job.state.value,
        "requested_at": moment(job.requested_at),
        "items_done": str(job.items_done),
        "items_total": str(job.items_total),
        "ready_at": moment(job.ready_at),
        "expires_at": moment(job.expires_at),
        "size_bytes": str(job.size_bytes),
        "sha256": job.sha256.hex(),
        "failure_reason": job.failure_reason,
    }


def _decode(tenant_id: str, export_id: str, raw: dict[Any, Any]) -> ExportJob:
    fields = {_text(key): _text(value) for key, value in raw.items()}

    def moment(name: str) -> datetime | None:
        return datetime.fromtimestamp(float(fields[name]), UTC) if fields.get(name) else None

    requested = moment("requested_at")
    assert requested is not None
    return ExportJob(
        export_id=export_id,
        tenant_id=tenant_id,
        state=ExportState(fields["state"]),
        requested_at=requested,
        items_done=int(fields.get("items_done", "0")),
        items_total=int(fields.get("items_total", "0")),
        ready_at=moment("ready_at"),
        expires_at=moment("expires_at"),
        size_bytes=int(fields.get("size_bytes", "0")),
        sha256=bytes.fromhex(fields.get("sha256", "")),
        failure_reason=fields.get("failure_reason", ""),
    )


_ENQUEUE = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'pending' and state ~= 'building' then return 0 end
redis.call('ZADD', KEYS[2], 'NX', redis.call('HGET', KEYS[1], 'requested_at'), ARGV[1])
return 1
"""


class RedisExportStore:
    """`retention:export:<tenant>:<export>` hashes, `retention:export:<tenant>` sets, and
    the build queue `retention:export-queue` (`<tenant>/<export>` by the time it may be
    built next: when it was asked for, later after a failed attempt). Exports are
    short-lived copies: if Redis is lost they are lost, the exports bucket's lifecycle
    rule removes their archives and the builders' janitor their unfinished uploads."""

    def __init__(self, redis: Redis, prefix: str = "") -> None:
        self._redis = redis
        self._p = f"{prefix}retention:export:"
        self._expiry = f"{prefix}retention:exports-expiry"
        self._queue = f"{prefix}retention:export-queue"
        self._enqueue = redis.register_script(_ENQUEUE)

    def _building(self, tenant_id: str) -> str:
        return f"{self._p}{tenant_id}:building"

    def job_key(self, tenant_id: str, export_id: str) -> str:
        return f"{self._p}{tenant_id}:{export_id}"

    async def create(self, job: ExportJob) -> bool:
        # The marker makes "one export building at a time" hold across concurrent calls and
        # replicas; it goes when the job ends, or after a day if its worker never finishes.
        if not await self._redis.set(
            self._building(job.tenant_id), job.export_id, nx=True, ex=86_400
        ):
            return False
        await self._write(job)
        return True

    async def _release(self, tenant_id: str, export_id: str) -> None:
        if _text(await self._redis.get(self._building(tenant_id)) or b"") == export_id:
            await self._redis.delete(self._building(tenant_id))

    def _queue_write(self, pipe: Pipeline, job: ExportJob) -> None:
        pipe.hset(self.job_key(job.tenant_id, job.export_id), mapping=_encode(job))  # type: ignore[arg-type]
        pipe.sadd(f"{self._p}{job.tenant_id}", job.export_id)
        member = f"{job.tenant_id}/{job.export_id}"
        if job.state in OPEN:
            pipe.zadd(self._queue, {member: job.requested_at.timestamp()}, nx=True)
        else:
            pipe.zrem(self._queue, member)
        if job.expires_at is not None:
            pipe.zadd(self._expiry, {member: job.expires_at.timestamp()})

    async def _write(self, job: ExportJob) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            self._queue_write(pipe, job)
            await pipe.execute()

    async def update(self, job: ExportJob) -> bool:
        # WATCH makes "still there, then write" one step: a DeleteExport between the two
        # aborts the write and the loop sees the job gone.
        key = self.job_key(job.tenant_id, job.export_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    if not await pipe.exists(key):
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return False
                    pipe.multi()  # type: ignore[no-untyped-call]
                    self._queue_write(pipe, job)
                    await pipe.execute()
                    break
                except WatchError:
                    continue
        if job.state not in OPEN:
            await self._release(job.tenant_id, job.export_id)
        return True

    async def get(self, tenant_id: str, export_id: str) -> ExportJob | None:
        raw = await self._redis.hgetall(self.job_key(tenant_id, export_id))
        return _decode(tenant_id, export_id, raw) if raw else None

    async def of_tenant(self, tenant_id: str) -> list[ExportJob]:
        jobs = []
        for member in await self._redis.smembers(f"{self._p}{tenant_id}"):
            job = await self.get(tenant_id, _text(member))
            if job is not None:
                jobs.append(job)
        return jobs

    async def remove(self, tenant_id: str, export_id: str) -> None:
        await self._release(tenant_id, export_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.job_key(tenant_id, export_id))
            pipe.srem(f"{self._p}{tenant_id}", export_id)
            pipe.zrem(self._expiry, f"{tenant_id}/{export_id}")
            pipe.zrem(self._queue, f"{tenant_id}/{export_id}")
            await pipe.execute()
        if not await self._redis.scard(f"{self._p}{tenant_id}"):
            await self._redis.delete(f"{self._p}{tenant_id}", self._building(tenant_id))

    async def expired(self, now: datetime) -> list[tuple[str, str]]:
        members = await self._redis.zrangebyscore(self._expiry, "-inf", now.timestamp())
        return [_pair(member) for member in members]

    async def enqueue(self, tenant_id: str, export_id: str) -> bool:
        return bool(
            await self._enqueue(
                keys=[self.job_key(tenant_id, export_id), self._queue],
                args=[f"{tenant_id}/{export_id}"],
            )
        )

    async def queued(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        members = await self._redis.zrangebyscore(
            self._queue, "-inf", now.timestamp(), start=0, num=limit
        )
        return [_pair(member) for member in members]

    async def defer(self, tenant_id: str, export_id: str, until: datetime) -> None:
        await self._redis.zadd(
            self._queue, {f"{tenant_id}/{export_id}": until.timestamp()}, xx=True
        )

    async def dequeue(self, tenant_id: str, export_id: str) -> None:
        await self._redis.zrem(self._queue, f"{tenant_id}/{export_id}")


def _pair(member: Any) -> tuple[str, str]:
    tenant, _, export = _text(member).partition("/")
    return tenant, export


class Decryption:
    """Log, then unwrap: an access-log receipt for this very access, then the key."""

    def __init__(self, peers: Peers, clock: Clock) -> None:
        self._peers = peers
        self._clock = clock

    async def data_key(
        self, reference: bytes, context: keys_pb2.KeyContext, resource: log_pb2.Resource
    ) -> bytes:
        wrapped = keys_pb2.WrappedKey.FromString(reference)
        appended = await call(
            "access_log",
            self._peers.access_log().Append(
                log_pb.AppendRequest(
                    record=log_pb2.AccessRecord(
                        access_id=str(uuid.uuid4()),
                        tenant_id=context.tenant_id,
                        principal=types_pb2.Principal(
                            kind=types_pb2.PRINCIPAL_KIND_SERVICE, id=NAME
                        ),
                        resource=resource,
                        purpose=types_pb2.ACCESS_PURPOSE_DATA_EXPORT,
                        service=NAME,
                        occurred_at=to_timestamp(self._clock.now()),
                    )
                ),
                **call_options(self._peers),
            ),
        )
        unwrapped = await call(
            "key_manager",
            self._peers.key_manager().Unwrap(
                keys_pb.UnwrapRequest(
                    wrapped_key=wrapped,
                    context=context,
                    purpose=types_pb2.ACCESS_PURPOSE_DATA_EXPORT,
                    receipt=appended.receipt,
                ),
                **call_options(self._peers),
            ),
        )
        return bytes(unwrapped.plaintext_key)


_CLIP_GONE = "a clip was deleted while the export was being built; request a new export"


class PeerExportSources:
    def __init__(self, peers: Peers, clips: MinioObjects, decryption: Decryption) -> None:
        self._peers = peers
        self._clips = clips
        self._decryption = decryption

    async def account(self, tenant_id: str, export_id: str) -> dict[str, Any]:
        answer = await call(
            "device_auth",
            self._peers.device_auth().ExportTenant(
                identity_pb.ExportTenantRequest(tenant_id=tenant_id, export_id=export_id),
                **call_options(self._peers),
            ),
        )
        return MessageToDict(answer, preserving_proto_field_name=True)

    async def access_log(self, tenant_id: str) -> AsyncIterator[list[dict[str, Any]]]:
        token = ""
        while True:
            page = await call(
                "access_log",
                self._peers.access_log().ListEntries(
                    log_pb.ListEntriesRequest(tenant_id=tenant_id, page_size=500, page_token=token),
                    **call_options(self._peers),
                ),
            )
            yield [
                {"index": entry.index}
                | MessageToDict(
                    log_pb2.AccessRecord.FromString(entry.record),
                    preserving_proto_field_name=True,
                )
                for entry in page.entries
            ]
            token = page.next_page_token
            if not token:
                return

    async def clip_key(self, clip: ScheduledClip) -> bytes:
        try:
            header = clip_format.read_header(
                await self._clips.read_range(clip.object_name, 0, clip_format.HEADER_MAX_LENGTH)
            )
        except S3Error as error:
            if error.code == "NoSuchKey":
                raise FailedPrecondition(_CLIP_GONE) from None
            raise
        return await self._decryption.data_key(
            header.key_reference,
            keys_pb2.KeyContext(
                tenant_id=clip.tenant_id, device_id=clip.device_id, clip_id=clip.clip_id
            ),
            # The household's log shows "clip X read for a data export"; the export itself
            # is logged when its archive is opened for download.
            log_pb2.Resource(
                kind=log_pb2.RESOURCE_KIND_CLIP, device_id=clip.device_id, clip_id=clip.clip_id
            ),
        )

    async def clip_media(self, clip: ScheduledClip, data_key: bytes) -> AsyncIterator[bytes]:
        binding = clip_format.ClipBinding(clip.tenant_id, clip.device_id, clip.clip_id)
        chunks = self._clips.read_chunks(clip.object_name)
        try:
            async for plaintext in clip_format.adecrypt_stream(chunks, data_key, binding):
                yield plaintext
        except S3Error as error:
            if error.code == "NoSuchKey":
                raise FailedPrecondition(_CLIP_GONE) from None
            raise
        finally:
            await chunks.aclose()


class MinioArchiveStore:
    """`t/<tenant>/<export>.zip.pcv1` in the exports bucket, in clip format v1, written by
    a multipart upload part by part (minio's own put_object cannot go on after a crash)."""

    def __init__(self, peers: Peers, exports: MinioObjects, decryption: Decryption) -> None:
        self._peers = peers
        self._exports = exports
        self._client = exports.client
        self._bucket = exports.bucket
        self._decryption = decryption

    @staticmethod
    def _name(tenant_id: str, export_id: str) -> str:
        return f"{tenant_prefix(tenant_id)}{export_id}.zip.pcv1"

    async def new_key(self, tenant_id: str, export_id: str) -> tuple[bytes, bytes]:
        generated = await call(
            "key_manager",
            self._peers.key_manager().GenerateDataKey(
                keys_pb.GenerateDataKeyRequest(
                    context=keys_pb2.KeyContext(tenant_id=tenant_id, clip_id=export_id)
                ),
                **call_options(self._peers),
            ),
        )
        return (
            bytes(generated.plaintext_key),
            generated.wrapped_key.SerializeToString(deterministic=True),
        )

    async def unwrap_key(self, tenant_id: str, export_id: str, key_reference: bytes) -> bytes:
        return await self._decryption.data_key(
            key_reference,
            keys_pb2.KeyContext(tenant_id=tenant_id, clip_id=export_id),
            log_pb2.Resource(kind=log_pb2.RESOURCE_KIND_EXPORT, export_id=export_id),
        )

    async def header(self, tenant_id: str, export_id: str) -> bytes:
        try:
            return await self._exports.read_range(
                self._name(tenant_id, export_id), 0, clip_format.HEADER_MAX_LENGTH
            )
        except S3Error:
            raise FailedPrecondition("the stored export is gone; request a new one") from None

    def sealed(self, tenant_id: str, export_id: str) -> AsyncIterator[bytes]:
        return self._exports.read_chunks(self._name(tenant_id, export_id))

    async def start_upload(self, tenant_id: str, export_id: str) -> str:
        return await asyncio.to_thread(
            self._client._create_multipart_upload,
            self._bucket,
            self._name(tenant_id, export_id),
            {"Content-Type": "application/octet-stream"},
        )

    async def upload_part(
        self, tenant_id: str, export_id: str, upload_id: str, number: int, data: BytesLike
    ) -> str:
        try:
            return await asyncio.to_thread(
                self._client._upload_part,
                self._bucket,
                self._name(tenant_id, export_id),
                # minio hashes and sends any buffer (urllib3 takes a memoryview as it is);
                # only its hint says bytes, and a copy would double the part in memory.
                cast(bytes, data),
                None,
                upload_id,
                number,
            )
        except S3Error as error:
            if error.code == "NoSuchUpload":
                raise UploadLost("the export's upload is gone") from None
            raise

    async def complete_upload(
        self, tenant_id: str, export_id: str, upload_id: str, etags: Sequence[str]
    ) -> None:
        parts = [Part(number, etag) for number, etag in enumerate(etags, start=1)]
        try:
            await asyncio.to_thread(
                self._client._complete_multipart_upload,
                self._bucket,
                self._name(tenant_id, export_id),
                upload_id,
                parts,
            )
        except S3Error as error:
            if error.code == "NoSuchUpload":
                raise UploadLost("the export's upload is gone") from None
            raise

    async def _uploads(self, name: str) -> list[tuple[str, str]]:
        """(object name, upload id) of the unfinished uploads of object `name`. MinIO lists
        uploads of one object only (a prefix that is not a whole name finds none)."""

        def run() -> list[tuple[str, str]]:
            found: list[tuple[str, str]] = []
            key_marker: str | None = None
            while True:
                page = self._client._list_multipart_uploads(
                    self._bucket,
                    prefix=name,
                    key_marker=key_marker,
                    max_uploads=1000,
                )
                found += [
                    (upload.object_name, upload.upload_id)
                    for upload in page.uploads
                    if upload.object_name and upload.upload_id
                ]
                if not page.is_truncated or not page.next_key_marker:
                    return found
                # minio 7.2 drops NextUploadIdMarker: a key's further uploads past a page
                # end wait for the next run.
                key_marker = page.next_key_marker

        return await asyncio.to_thread(run)

    async def _abort(self, name: str, upload_id: str) -> None:
        try:
            await asyncio.to_thread(
                self._client._abort_multipart_upload, self._bucket, name, upload_id
            )
        except S3Error as error:
            if error.code != "NoSuchUpload":
                raise

    async def abort_uploads(self, tenant_id: str, export_id: str) -> int:
        name = self._name(tenant_id, export_id)
        uploads = [(n, u) for n, u in await self._uploads(name) if n == name]
        for _, upload_id in uploads:
            await self._abort(name, upload_id)
        return len(uploads)

    async def discard(self, tenant_id: str, export_id: str) -> None:
        await self._exports.delete([self._name(tenant_id, export_id)])
        await self.abort_uploads(tenant_id, export_id)

    async def discard_tenant(self, tenant_id: str) -> int:
        names = await self._exports.tenant_objects(tenant_id)
        await self._exports.delete(names)
        return len(names)


class KafkaExportEvents:
    def __init__(self, producer: EventProducer, clock: Clock) -> None:
        self._producer = producer
        self._clock = clock

    async def _publish(self, job: ExportJob, **event: Any) -> None:
        await self._producer.publish(
            topics.RETENTION,
            job.tenant_id,
            pb.RetentionEvent(
                metadata=types_pb2.EventMetadata(
                    event_id=str(uuid.uuid4()),
                    occurred_at=to_timestamp(self._clock.now()),
                    tenant_id=job.tenant_id,
                    producer=NAME,
                ),
                **event,
            ),
        )

    async def export_requested(self, job: ExportJob) -> None:
        await self._publish(job, export_requested=pb.ExportRequested(export_id=job.export_id))

    async def export_ready(self, job: ExportJob) -> None:
        assert job.expires_at is not None
        await self._publish(
            job,
            export_ready=pb.ExportReady(
                export_id=job.export_id,
                size_bytes=job.size_bytes,
                expires_at=to_timestamp(job.expires_at),
            ),
        )

    async def export_deleted(self, job: ExportJob) -> None:
        await self._publish(
            job,
            export_deleted=pb.ExportDeleted(
                export_id=job.export_id, final_state=STATES_PB[job.state]
            ),
        )
