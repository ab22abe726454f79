"""Alert clips from the client side: upload as a camera, list, download and delete as an app.

Uploads stream the MP4 in 256 KiB chunks after one metadata message; the clip id is
the camera's own (a retry with the same id and bytes stores nothing twice). Downloads
arrive decrypted over mutual TLS: the platform decrypts, so the data key never
leaves it and each play is one logged access.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import propagate

from privacam.clips.v1 import clip_service_pb2 as pb
from privacam.clips.v1 import clip_service_pb2_grpc as clips_grpc
from privacam.clips.v1 import clips_pb2
from privacam.types.v1 import types_pb2
from privacam_sdk.client import PrivacamClient

CHUNK_BYTES = 256 * 1024
UPLOAD_RETRY_SECONDS = 120.0
"""How long a camera keeps trying an upload that ends UNAVAILABLE (a store restarting, the
event bus away, a replica draining or shedding load), with jittered exponential back-off
from 0.2 s to 5 s between tries: an alert clip is worth a wait, and a restart of the event
bus takes about a minute on a busy machine. gRPC's own retry policy cannot resend a stream
of megabytes, so the SDK sends the whole upload again; the same clip id and bytes store
nothing twice."""
_UPLOAD_RETRIED = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
)
"""An upload is idempotent, so one that ran out of time (the event bus away when it was
acknowledged) is sent again like a refused one, and so is one refused ABORTED because the
server still holds the claim of the attempt that ran out of time (freed within 15 s), and so
is one a draining replica dropped unstarted (CANCELLED)."""


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def upload_requests(
    data: bytes, clip_id: str, captured_at: datetime, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[pb.UploadClipRequest]:
    """The messages of one upload: metadata, then the clip in order."""
    yield pb.UploadClipRequest(
        metadata=pb.UploadClipMetadata(
            clip_id=clip_id,
            captured_at=_timestamp(captured_at),
            content_type="video/mp4",
            size_bytes=len(data),
            sha256=hashlib.sha256(data).digest(),
        )
    )
    for offset in range(0, len(data), chunk_bytes):
        yield pb.UploadClipRequest(
            chunk=pb.ClipChunk(offset=offset, data=data[offset : offset + chunk_bytes])
        )


async def upload_clip(
    client: PrivacamClient,
    data: bytes,
    clip_id: str,
    captured_at: datetime | None = None,
    retry_seconds: float = UPLOAD_RETRY_SECONDS,
) -> pb.UploadClipResponse:
    """Upload one MP4 as the camera of `client`'s profile, again after UNAVAILABLE,
    DEADLINE_EXCEEDED or ABORTED for up to `retry_seconds`."""
    moment = captured_at or datetime.now(UTC)
    carrier: dict[str, str] = {}
    propagate.inject(carrier)  # the trace goes on, without the interceptor (see client.py)
    stub = clips_grpc.ClipIngestServiceStub(client.untraced_channel("clip_ingest"))
    give_up = time.monotonic() + retry_seconds
    attempt = 0
    while True:
        attempt += 1
        try:
            response: pb.UploadClipResponse = await stub.UploadClip(
                upload_requests(data, clip_id, moment),
                timeout=client.timeout,
                metadata=tuple(carrier.items()),
            )
            return response
        except grpc.aio.AioRpcError as error:
            backoff = random.uniform(0, min(5.0, 0.2 * 2**attempt))  # noqa: S311
            if error.code() not in _UPLOAD_RETRIED or time.monotonic() + backoff > give_up:
                raise
            await asyncio.sleep(backoff)


async def list_clips(
    client: PrivacamClient,
    device_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    page_size: int = 0,
) -> AsyncIterator[clips_pb2.Clip]:
    """Every clip of a camera in the range, newest first, page after page."""
    captured = types_pb2.TimeRange()
    if start is not None:
        captured.start.CopyFrom(_timestamp(start))
    if end is not None:
        captured.end.CopyFrom(_timestamp(end))
    token = ""
    while True:
        page = await client.clips().ListClips(
            pb.ListClipsRequest(
                device_id=device_id, captured=captured, page_size=page_size, page_token=token
            ),
            timeout=client.timeout,
        )
        for clip in page.clips:
            yield clip
        token = page.next_page_token
        if not token:
            return


async def download_clip(
    client: PrivacamClient, device_id: str, clip_id: str, pin: str = ""
) -> tuple[clips_pb2.Clip, bytes]:
    """A clip's metadata and its MP4, checked: chunks in order, the size as listed."""
    clip: clips_pb2.Clip | None = None
    data = bytearray()
    call = client.clips().DownloadClip(
        pb.DownloadClipRequest(device_id=device_id, clip_id=clip_id, pin=pin),
        timeout=client.timeout,
    )
    async for message in call:
        if message.WhichOneof("part") == "clip":
            clip = message.clip
            continue
        if message.chunk.offset != len(data):
            raise ValueError("the download's chunks arrived out of order")
        data += message.chunk.data
    if clip is None or len(data) != clip.size_bytes:
        raise ValueError("the download ended early")
    return clip, bytes(data)


async def save_clip(
    client: PrivacamClient, device_id: str, clip_id: str, path: Path, pin: str = ""
) -> clips_pb2.Clip:
    """Download a clip into a file (written only once the whole clip arrived)."""
    clip, data = await download_clip(client, device_id, clip_id, pin)
    await asyncio.to_thread(path.write_bytes, data)
    return clip
