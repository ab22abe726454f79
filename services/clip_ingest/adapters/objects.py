"""Encrypted clips in MinIO, written so that an object is visible only when whole.

A clip that fits in one part (the usual case: alert clips are a few megabytes at
most) is buffered, already encrypted, and sent as one PUT: atomic, and one round
trip like any other object. A larger one becomes a multipart upload, each part
sent as it fills, completed at the end or aborted on any failure, so memory per
upload is bounded by the part size and nothing partial is ever listed or served.

The MinIO client is synchronous; its calls run on a pool of our own so uploads do
not queue behind the default executor's few threads.

Request bodies are sent with an unsigned payload (UnsignedPayloadMinio): the client
library would otherwise hash every clip a second time (SHA-256 for the signature over
HTTP, MD5 for Content-MD5 over HTTPS), which was a quarter of the service's CPU per
clip. The body is the sealed clip, every segment of it authenticated under the clip's
data key and bound to its tenant, camera and clip id, so an altered object fails
closed when it is decrypted; the request line and headers (the fingerprint among them)
stay signed, and over HTTPS TLS protects the body in transit.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from minio import Minio
from minio.datatypes import Part
from minio.error import S3Error

from services.clip_ingest.domain.errors import ClipNotFound, StorageUnavailable

log = logging.getLogger("privacam.clip_ingest.objects")

_FINGERPRINT = "x-amz-meta-privacam-fingerprint"
"""The clip's fingerprint (domain/fingerprint.py), hex: a MAC under a key derived from the
clip's data key, never a plaintext digest or size."""
MIN_PART_BYTES = 5 * 1024 * 1024
"""S3's smallest part (all but the last)."""
_READ_BYTES = 256 * 1024
T = TypeVar("T")


UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


class UnsignedPayloadMinio(Minio):
    """A MinIO client whose signed requests do not hash their bodies (see above)."""

    def _build_headers(
        self,
        host: str,
        headers: dict[str, Any] | None = None,
        body: bytes | None = None,
        creds: Any = None,
    ) -> tuple[dict[str, Any], Any]:
        if not body or creds is None:
            return super()._build_headers(host, headers, body, creds)
        built, date = super()._build_headers(host, headers, None, creds)
        built["Content-Length"] = str(len(body))
        built["x-amz-content-sha256"] = UNSIGNED_PAYLOAD
        return built, date


class MinioObjects:
    """The Objects port on one MinIO bucket."""

    def __init__(
        self, client: Minio, bucket: str, part_bytes: int = MIN_PART_BYTES, threads: int = 16
    ) -> None:
        if part_bytes < MIN_PART_BYTES:
            raise ValueError(f"parts are at least {MIN_PART_BYTES} bytes")
        self.client = client
        self.bucket = bucket
        self.part_bytes = part_bytes
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="minio")

    async def run(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        # The caller's context (its trace) goes along, so MinIO's spans join the upload's.
        context = contextvars.copy_context()
        try:
            return await loop.run_in_executor(
                self._pool, lambda: context.run(function, *args, **kwargs)
            )
        except S3Error:
            raise
        except Exception as error:  # urllib3 and socket errors: the store is unreachable
            log.warning("object store call failed: %s", error.__class__.__name__)
            raise StorageUnavailable(
                "clip storage is unavailable; nothing was kept, retry later"
            ) from None

    def writer(self, name: str, fingerprint: bytes) -> MinioWriter:
        return MinioWriter(self, name, {_FINGERPRINT: fingerprint.hex()})

    async def stat(self, name: str) -> bytes | None:
        try:
            found = await self.run(self.client.stat_object, self.bucket, name)
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchObject"):
                return None
            raise
        metadata = found.metadata or {}
        try:
            return bytes.fromhex(metadata.get(_FINGERPRINT, ""))
        except ValueError:
            return b""  # not written by us: compared by size only

    async def read(self, name: str) -> AsyncIterator[bytes]:
        try:
            response = await self.run(self.client.get_object, self.bucket, name)
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchObject"):
                raise ClipNotFound("no such clip on this camera") from None
            raise
        try:
            stream = response.stream(_READ_BYTES)
            while chunk := await self.run(next, stream, b""):
                yield chunk
        finally:
            response.close()
            response.release_conn()

    async def delete(self, name: str) -> None:
        await self.run(self.client.remove_object, self.bucket, name)

    async def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def start(self) -> None:
        """The pool is ready; the bucket is checked by the shared ObjectStore."""


class MinioWriter:
    """One object being written: a single PUT, or a multipart upload once it outgrows a part."""

    def __init__(self, objects: MinioObjects, name: str, metadata: dict[str, str]) -> None:
        self._objects = objects
        self._name = name
        self._metadata = metadata
        # Segments as they come, joined once per PUT or part: growing one buffer copied
        # each clip's bytes twice more (a sixth of the service's time in a profile).
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._upload_id: str | None = None
        self._parts: list[Part] = []

    async def write(self, data: bytes) -> None:
        self._pieces.append(data)
        self._buffered += len(data)
        while self._buffered >= self._objects.part_bytes + 1:
            # Keep at least a byte back: the last part is sent by complete().
            await self._send_part(self._objects.part_bytes)

    def _take(self, length: int) -> bytes:
        """The first `length` buffered bytes (a lone segment is not copied)."""
        joined = b"".join(self._pieces)
        self._pieces = [joined[length:]] if len(joined) > length else []
        self._buffered = len(joined) - length
        return joined if len(joined) == length else joined[:length]

    async def _send_part(self, length: int) -> None:
        objects = self._objects
        if self._upload_id is None:
            headers = {"Content-Type": "application/octet-stream", **self._metadata}
            self._upload_id = await objects.run(
                objects.client._create_multipart_upload, objects.bucket, self._name, headers
            )
        part = self._take(length)
        number = len(self._parts) + 1
        etag = await objects.run(
            objects.client._upload_part,
            objects.bucket,
            self._name,
            part,
            None,
            self._upload_id,
            number,
        )
        self._parts.append(Part(number, etag))

    async def complete(self) -> None:
        objects = self._objects
        if self._upload_id is None:
            data = self._take(self._buffered)
            await objects.run(
                objects.client.put_object,
                objects.bucket,
                self._name,
                io.BytesIO(data),
                len(data),
                metadata=self._metadata,
            )
            return
        await self._send_part(self._buffered)
        await objects.run(
            objects.client._complete_multipart_upload,
            objects.bucket,
            self._name,
            self._upload_id,
            self._parts,
        )
        self._upload_id = None

    async def abort(self) -> None:
        self._pieces, self._buffered = [], 0
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        objects = self._objects
        try:
            await objects.run(
                objects.client._abort_multipart_upload, objects.bucket, self._name, upload_id
            )
        except Exception:
            # MinIO drops stale multipart uploads itself; unfinished parts are never visible.
            log.warning("multipart upload could not be aborted now")
