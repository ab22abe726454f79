"""The ClipIngestService servicer: validates messages, calls ClipService, builds replies.

Who may call each RPC is in policies.py; whose camera and which grant is decided
by device_auth through the domain.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import grpc

from privacam.clips.v1 import clip_service_pb2 as pb
from privacam.clips.v1 import clip_service_pb2_grpc as pb_grpc
from privacam_core.identity import ID_PATTERN, Principal, PrincipalKind
from privacam_core.timestamps import to_datetime, to_timestamp
from services.clip_ingest.adapters.events import clip_pb
from services.clip_ingest.domain.errors import (
    AlertsOff,
    CameraBusy,
    CameraPrivate,
    ClipBusy,
    ClipConflict,
    ClipNotFound,
    ClipTooLarge,
    IntegrityFailure,
    InvalidClip,
    OwnerOnly,
    StorageUnavailable,
    UploadTooSlow,
)
from services.clip_ingest.domain.model import UploadMetadata
from services.clip_ingest.domain.service import MAX_CHUNK_BYTES, ClipService
from services.common.auth import current_principal
from services.common.errors import (
    InvalidArgument,
    PermissionDenied,
    map_domain_error,
)

for _error, _status in (
    (InvalidClip, grpc.StatusCode.INVALID_ARGUMENT),
    (ClipTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (CameraBusy, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UploadTooSlow, grpc.StatusCode.DEADLINE_EXCEEDED),
    (AlertsOff, grpc.StatusCode.FAILED_PRECONDITION),
    (CameraPrivate, grpc.StatusCode.FAILED_PRECONDITION),
    (ClipConflict, grpc.StatusCode.ALREADY_EXISTS),
    (ClipBusy, grpc.StatusCode.ABORTED),
    (ClipNotFound, grpc.StatusCode.NOT_FOUND),
    (OwnerOnly, grpc.StatusCode.PERMISSION_DENIED),
    (StorageUnavailable, grpc.StatusCode.UNAVAILABLE),
    (IntegrityFailure, grpc.StatusCode.DATA_LOSS),
):
    map_domain_error(_error, _status)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
BUSY_DRAIN_SECONDS = 1.0
"""A camera refused for having too many uploads at once is read on for at most this long
before the answer goes out: a camera that was about done sending reads the real status
(not INTERNAL, see _drain), and a trickling one holds its call no longer than this."""


def _device(value: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        raise InvalidArgument("device_id must be a camera id (lower-case letters, digits, '-')")
    return value


def _query_hash(device_id: str, start: datetime | None, end: datetime | None) -> str:
    text = f"{device_id}|{start.isoformat() if start else ''}|{end.isoformat() if end else ''}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_token(cursor: str, query: str) -> str:
    raw = json.dumps({"c": cursor, "q": query}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, query: str) -> str:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor, bound = data["c"], data["q"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidArgument("page_token is not a token this service issued") from None
    if bound != query or not isinstance(cursor, str):
        raise InvalidArgument("page_token belongs to another query; start again without it")
    return cursor


async def _chunks(
    requests: AsyncIterator[pb.UploadClipRequest],
) -> AsyncIterator[tuple[int, bytes]]:
    async for request in requests:
        if request.WhichOneof("part") != "chunk":
            raise InvalidClip("only the first message carries metadata", reason="bad_chunk")
        yield request.chunk.offset, request.chunk.data


async def _drain(requests: AsyncIterator[pb.UploadClipRequest], limit: int) -> None:
    """Read what the camera is still sending before answering. A gRPC client whose stream
    is answered while it is still writing often reports INTERNAL ("Internal error from
    Core") instead of the answer; reading on (at most `limit` bytes, the largest clip, and
    no longer than `requests` is paced to) lets it see the real status. Nothing read here
    is kept."""
    seen = 0
    with contextlib.suppress(grpc.aio.AioRpcError, grpc.RpcError, UploadTooSlow):
        async for request in requests:
            seen += len(request.chunk.data) + len(request.metadata.sha256)
            if seen > limit:
                return


async def _paced(
    requests: AsyncIterator[pb.UploadClipRequest],
    idle_seconds: float,
    deadline: float,
    deadline_seconds: float,
) -> AsyncIterator[pb.UploadClipRequest]:
    """The upload's messages, each arriving within `idle_seconds` of the previous one and
    all of them by `deadline` (the event loop's clock, `deadline_seconds` after the call
    began): a camera that stalls, trickles, or never ends its stream gives its place back."""
    loop = asyncio.get_running_loop()
    while True:
        left = deadline - loop.time()
        try:
            if left <= 0:
                raise TimeoutError
            request = await asyncio.wait_for(anext(requests), min(idle_seconds, left))
        except StopAsyncIteration:
            return
        except TimeoutError:
            if left <= idle_seconds:
                raise UploadTooSlow(
                    f"the clip did not arrive within {deadline_seconds:g} s, the most an "
                    "upload may take: it was cut off and nothing was stored; send it again "
                    "in full-size chunks, or over a faster link",
                    reason="too_slow",
                ) from None
            raise UploadTooSlow(
                f"no part of the upload arrived for {idle_seconds:g} s: it was abandoned and "
                "nothing was stored; send it again",
                reason="stalled",
            ) from None
        yield request


def _camera() -> Principal:
    caller = current_principal()
    if caller.kind is not PrincipalKind.CAMERA or caller.tenant_id is None:
        raise PermissionDenied("only cameras upload clips")
    return caller


class ClipIngestServicer(pb_grpc.ClipIngestServiceServicer):
    def __init__(
        self,
        clips: ClipService,
        max_clip_bytes: int,
        upload_idle_seconds: float = 30.0,
        upload_deadline_seconds: float = 30.0,
    ) -> None:
        self._idle_seconds = upload_idle_seconds
        self._deadline_seconds = upload_deadline_seconds
        self._clips = clips
        self._drain_limit = max_clip_bytes + 1024 * 1024

    async def UploadClip(
        self, request_iterator: AsyncIterator[pb.UploadClipRequest], context: Any
    ) -> pb.UploadClipResponse:
        stream = request_iterator.__aiter__()
        deadline = asyncio.get_running_loop().time() + self._deadline_seconds
        requests = _paced(stream, self._idle_seconds, deadline, self._deadline_seconds)
        # The camera's place is held until the answer goes out, reading on included: a
        # camera refused for tiny chunks keeps one of its own places, not a shared one.
        with contextlib.ExitStack() as place:
            try:
                caller = _camera()
                assert caller.tenant_id is not None
                place.enter_context(self._clips.upload_slot(caller.tenant_id, caller.name))
                response = await self._upload(caller, requests)
            except asyncio.CancelledError:
                raise  # the camera went away: nothing to read
            except UploadTooSlow:
                raise  # a stalled or trickling camera: nothing more will come in time
            except CameraBusy:
                until = min(deadline, asyncio.get_running_loop().time() + BUSY_DRAIN_SECONDS)
                busy = _paced(stream, BUSY_DRAIN_SECONDS, until, BUSY_DRAIN_SECONDS)
                await _drain(busy, self._drain_limit)
                raise
            except BaseException:
                await _drain(requests, self._drain_limit)  # then the refusal goes out
                raise
            await _drain(requests, self._drain_limit)  # a repeat answered before its end
            return response

    async def _upload(
        self, caller: Principal, requests: AsyncIterator[pb.UploadClipRequest]
    ) -> pb.UploadClipResponse:
        assert caller.tenant_id is not None
        try:
            first = await anext(requests, None)
        except UploadTooSlow as error:
            self._clips.refused_before_upload(error)
            raise
        if first is None or first.WhichOneof("part") != "metadata":
            raise InvalidArgument("the first message must carry the clip's metadata")
        meta = first.metadata
        if not meta.HasField("captured_at"):
            raise InvalidArgument("metadata.captured_at is required")
        metadata = UploadMetadata(
            clip_id=meta.clip_id,
            captured_at=to_datetime(meta.captured_at),
            content_type=meta.content_type,
            size_bytes=meta.size_bytes,
            sha256=meta.sha256,
        )
        uploaded = await self._clips.upload(
            caller.tenant_id, caller.name, metadata, _chunks(requests)
        )
        record = uploaded.record
        response = pb.UploadClipResponse(
            clip_id=record.clip_id,
            ingested_at=to_timestamp(record.ingested_at),
            created=uploaded.created,
        )
        response.duration.FromTimedelta(record.duration)
        return response

    async def ListClips(self, request: pb.ListClipsRequest, context: Any) -> pb.ListClipsResponse:
        device_id = _device(request.device_id)
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument(f"page_size must be 1 to {MAX_PAGE_SIZE} (0 means 50)")
        start = end = None
        if request.HasField("captured"):
            if request.captured.HasField("start"):
                start = to_datetime(request.captured.start)
            if request.captured.HasField("end"):
                end = to_datetime(request.captured.end)
        if start is not None and end is not None and end <= start:
            raise InvalidArgument("captured.end must be after captured.start")
        query = _query_hash(device_id, start, end)
        cursor = decode_token(request.page_token, query) if request.page_token else None
        records, next_cursor = await self._clips.list_clips(
            device_id, start, end, cursor, request.page_size or DEFAULT_PAGE_SIZE
        )
        return pb.ListClipsResponse(
            clips=[clip_pb(record) for record in records],
            next_page_token=encode_token(next_cursor, query) if next_cursor else "",
        )

    async def DownloadClip(
        self, request: pb.DownloadClipRequest, context: Any
    ) -> AsyncIterator[pb.DownloadClipResponse]:
        record, plaintext = await self._clips.download(
            _device(request.device_id), request.clip_id, request.pin
        )
        yield pb.DownloadClipResponse(clip=clip_pb(record))
        offset = 0
        async for piece in plaintext:
            for at in range(0, len(piece), MAX_CHUNK_BYTES):
                data = piece[at : at + MAX_CHUNK_BYTES]
                yield pb.DownloadClipResponse(chunk=pb.ClipChunk(offset=offset, data=data))
                offset += len(data)

    async def DeleteClip(
        self, request: pb.DeleteClipRequest, context: Any
    ) -> pb.DeleteClipResponse:
        deleted_at = await self._clips.delete(_device(request.device_id), request.clip_id)
        return pb.DeleteClipResponse(deleted_at=to_timestamp(deleted_at))
