"""Exports' adapters: job state in Redis, sources behind the peers, the encrypted archive in
MinIO, and decryption that is logged in the household's log before it happens."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict
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
from services.common import clip_format, topics
from services.common.clock import Clock
from services.common.errors import FailedPrecondition
from services.common.kafka import EventProducer
from services.common.peers import Peers, call_options
from services.common.timestamps import to_timestamp
from services.retention import NAME
from services.retention.adapters.objects import MinioObjects, tenant_prefix
from services.retention.adapters.peers import call
from services.retention.domain.exports import ExportJob, ExportState
from services.retention.domain.model import ScheduledClip


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


EXPIRY = "retention:exports-expiry"
_ARCHIVE_DEVICE = "export"  # ClipBinding needs a device; an export belongs to none

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


class RedisExportStore:
    """`retention:export:<tenant>:<export>` hashes and `retention:export:<tenant>` sets.
    Exports are short-lived copies: if Redis is lost they are lost, and the exports
    bucket's lifecycle rule removes their archives."""

    def __init__(self, redis: Redis, prefix: str = "") -> None:
        self._redis = redis
        self._p = f"{prefix}retention:export:"
        self._expiry = f"{prefix}retention:exports-expiry"

    def _building(self, tenant_id: str) -> str:
        return f"{self._p}{tenant_id}:building"

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
        pipe.hset(f"{self._p}{job.tenant_id}:{job.export_id}", mapping=_encode(job))  # type: ignore[arg-type]
        pipe.sadd(f"{self._p}{job.tenant_id}", job.export_id)
        if job.expires_at is not None:
            member = f"{job.tenant_id}/{job.export_id}"
            pipe.zadd(self._expiry, {member: job.expires_at.timestamp()})

    async def _write(self, job: ExportJob) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            self._queue_write(pipe, job)
            await pipe.execute()

    async def update(self, job: ExportJob) -> bool:
        # WATCH makes "still there, then write" one step: a DeleteExport between the two
        # aborts the write and the loop sees the job gone.
        key = f"{self._p}{job.tenant_id}:{job.export_id}"
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
        if job.state not in (ExportState.PENDING, ExportState.BUILDING):
            await self._release(job.tenant_id, job.export_id)
        return True

    async def get(self, tenant_id: str, export_id: str) -> ExportJob | None:
        raw = await self._redis.hgetall(f"{self._p}{tenant_id}:{export_id}")
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
            pipe.delete(f"{self._p}{tenant_id}:{export_id}")
            pipe.srem(f"{self._p}{tenant_id}", export_id)
            pipe.zrem(self._expiry, f"{tenant_id}/{export_id}")
            await pipe.execute()
        if not await self._redis.scard(f"{self._p}{tenant_id}"):
            await self._redis.delete(f"{self._p}{tenant_id}", self._building(tenant_id))

    async def expired(self, now: datetime) -> list[tuple[str, str]]:
        members = await self._redis.zrangebyscore(self._expiry, "-inf", now.timestamp())
        found = []
        for member in members:
            tenant, _, export = _text(member).partition("/")
            found.append((tenant, export))
        return found


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

    async def access_log(self, tenant_id: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        token = ""
        while True:
            page = await call(
                "access_log",
                self._peers.access_log().ListEntries(
                    log_pb.ListEntriesRequest(tenant_id=tenant_id, page_size=500, page_token=token),
                    **call_options(self._peers),
                ),
            )
            for entry in page.entries:
                record = log_pb2.AccessRecord.FromString(entry.record)
                entries.append(
                    {"index": entry.index} | MessageToDict(record, preserving_proto_field_name=True)
                )
            token = page.next_page_token
            if not token:
                return entries

    async def clip_plaintext(self, clip: ScheduledClip, export_id: str) -> bytes:
        ciphertext = await self._clips.read(clip.object_name)
        header = clip_format.read_header(ciphertext)
        data_key = await self._decryption.data_key(
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
        return clip_format.decrypt_all(
            ciphertext,
            data_key,
            clip_format.ClipBinding(clip.tenant_id, clip.device_id, clip.clip_id),
        )


class MinioArchiveVault:
    """`t/<tenant>/<export>.zip.pcv1` in the exports bucket, in clip format v1."""

    def __init__(self, peers: Peers, exports: MinioObjects, decryption: Decryption) -> None:
        self._peers = peers
        self._exports = exports
        self._decryption = decryption

    @staticmethod
    def _name(tenant_id: str, export_id: str) -> str:
        return f"{tenant_prefix(tenant_id)}{export_id}.zip.pcv1"

    async def seal(self, tenant_id: str, export_id: str, archive: bytes) -> None:
        generated = await call(
            "key_manager",
            self._peers.key_manager().GenerateDataKey(
                keys_pb.GenerateDataKeyRequest(
                    context=keys_pb2.KeyContext(tenant_id=tenant_id, clip_id=export_id)
                ),
                **call_options(self._peers),
            ),
        )
        sealed = clip_format.encrypt_all(
            archive,
            generated.plaintext_key,
            generated.wrapped_key.SerializeToString(deterministic=True),
            clip_format.ClipBinding(tenant_id, _ARCHIVE_DEVICE, export_id),
        )
        await self._exports.write(self._name(tenant_id, export_id), sealed)

    async def open(self, tenant_id: str, export_id: str) -> bytes:
        try:
            sealed = await self._exports.read(self._name(tenant_id, export_id))
        except S3Error:
            raise FailedPrecondition("the stored export is gone; request a new one") from None
        header = clip_format.read_header(sealed)
        data_key = await self._decryption.data_key(
            header.key_reference,
            keys_pb2.KeyContext(tenant_id=tenant_id, clip_id=export_id),
            log_pb2.Resource(kind=log_pb2.RESOURCE_KIND_EXPORT, export_id=export_id),
        )
        return clip_format.decrypt_all(
            sealed, data_key, clip_format.ClipBinding(tenant_id, _ARCHIVE_DEVICE, export_id)
        )

    async def discard(self, tenant_id: str, export_id: str) -> None:
        await self._exports.delete([self._name(tenant_id, export_id)])

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
