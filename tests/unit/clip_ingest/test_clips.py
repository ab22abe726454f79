"""ClipService over in-memory ports: every refusal leaves nothing behind; playback is
logged before any key is asked for; clips and entries under a foreign name fail closed."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pytest

from privacam_core.clip_format import ClipBinding
from services.clip_ingest.domain.errors import (
    AlertsOff,
    ClipBusy,
    ClipConflict,
    ClipTooLarge,
    IntegrityFailure,
    InvalidClip,
    OwnerOnly,
    StorageUnavailable,
)
from services.clip_ingest.domain.fingerprint import fingerprint, fingerprint_key
from services.clip_ingest.domain.model import (
    CameraSettings,
    ClipRecord,
    UploadMetadata,
    Viewer,
    object_name,
)
from services.clip_ingest.domain.service import Limits, Uploaded
from tests.media import make_mp4
from tests.unit.clip_ingest.fakes import Kit, make_kit

T, D, D2 = "tenant-a", "camera-a", "camera-b"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CHUNK = 64 * 1024


@cache
def clip(seconds: float = 3.0, seed: int = 0) -> bytes:
    return make_mp4(seconds, width=320, height=180, fps=5, bitrate=200_000, seed=seed)


@pytest.fixture
def kit() -> Kit:
    made = make_kit(Limits(max_clip_bytes=4 * 1024 * 1024), NOW, (D, D2))
    made.cameras.viewers = {D: Viewer(T, is_owner=True), D2: Viewer(T, is_owner=True)}
    return made


def meta(data: bytes, clip_id: str = "clip-1", **changes: Any) -> UploadMetadata:
    base = UploadMetadata(
        clip_id, NOW - timedelta(seconds=10), "video/mp4", len(data), hashlib.sha256(data).digest()
    )
    return replace(base, **changes)


async def chunks(data: bytes, step: int = CHUNK) -> AsyncIterator[tuple[int, bytes]]:
    for at in range(0, len(data), step):
        yield at, data[at : at + step]


async def upload(kit: Kit, data: bytes, device: str = D, **changes: Any) -> Uploaded:
    return await kit.clips.upload(T, device, meta(data, **changes), chunks(data))


def nothing_stored(kit: Kit) -> bool:
    return not kit.objects.stored and not kit.objects.pending and not kit.index.entries


async def test_an_upload_is_stored_encrypted_and_announced(kit: Kit) -> None:
    data = clip()
    uploaded = await kit.clips.upload(T, D, meta(data), chunks(data))
    assert uploaded.created
    record = uploaded.record
    assert record.duration == timedelta(seconds=3)
    assert record.delete_after == NOW + timedelta(days=7)
    assert record.object_name == object_name(T, D, "clip-1")
    assert "clip-1" not in record.object_name
    assert T in record.object_name
    stored, tag = kit.objects.stored[record.object_name]
    # The object's metadata is a fingerprint under the clip's own data key, never its
    # digest or size; the key is remembered in the index (for a day), not beside it.
    (data_key,) = kit.keys.keys.values()
    tag_key, seconds = kit.index.remembered[(T, D, "clip-1")]
    assert tag_key == fingerprint_key(data_key, ClipBinding(T, D, "clip-1"))
    assert tag == fingerprint(tag_key, len(data), hashlib.sha256(data).digest())
    assert tag != hashlib.sha256(data).digest()
    assert seconds == 24 * 3600
    assert data[1000:1032] not in stored
    assert stored.startswith(b"PCLIP")
    assert kit.events.published == [("ingested", record)]
    assert kit.index.entries[(T, D, "clip-1")] == record
    assert record.key_version == 3
    assert kit.metrics.counts["ingested"] == 1
    assert not kit.index.claims


async def test_a_retry_stores_nothing_new_and_keeps_the_first_time(kit: Kit) -> None:
    data = clip()
    first = await kit.clips.upload(T, D, meta(data), chunks(data))
    kit.clock.advance(timedelta(minutes=1))
    again = await kit.clips.upload(T, D, meta(data), chunks(data))
    assert not again.created
    assert again.record.ingested_at == first.record.ingested_at
    assert len(kit.events.published) == 1
    assert len(kit.objects.stored) == 1


async def test_the_same_id_with_other_content_is_a_conflict(kit: Kit) -> None:
    await upload(kit, clip())
    other = clip(3.0, seed=1)
    assert len(other) != len(clip())
    with pytest.raises(ClipConflict):
        await upload(kit, other)
    assert kit.metrics.counts["refused:conflict"] == 1


def _same_size_other_bytes(data: bytes) -> bytes:
    """Another clip of exactly the same size (a byte of the media data changed)."""
    other = bytearray(data)
    other[len(data) // 2] ^= 0xFF
    return bytes(other)


async def test_other_content_of_the_same_size_is_a_conflict_while_remembered(kit: Kit) -> None:
    data = clip()
    await upload(kit, data)
    with pytest.raises(ClipConflict, match="other content"):
        await upload(kit, _same_size_other_bytes(data))
    assert not (await upload(kit, data)).created  # the real retry still is one
    assert len(kit.objects.stored) == 1


async def test_after_the_retry_window_a_retry_is_known_by_its_size(kit: Kit) -> None:
    """Once the fingerprint key is forgotten nothing about the stored clip can be known
    without decrypting it: a retry of the same size is taken as the same clip (nothing is
    stored either way), one of another size is still a conflict."""
    data = clip()
    first = await upload(kit, data)
    kit.index.remembered.clear()
    again = await upload(kit, _same_size_other_bytes(data))
    assert not again.created
    assert again.record == first.record
    with pytest.raises(ClipConflict):
        await upload(kit, clip(3.0, seed=1))
    assert len(kit.objects.stored) == 1
    assert len(kit.events.published) == 1


async def test_a_deleted_clip_forgets_its_fingerprint_key(kit: Kit) -> None:
    await upload(kit, clip())
    assert kit.index.remembered
    await kit.clips.delete(D, "clip-1")
    assert not kit.index.remembered


async def test_alerts_off_refuses_before_anything_is_read_or_stored(kit: Kit) -> None:
    kit.cameras.settings[D] = CameraSettings(False, 7)

    async def never() -> AsyncIterator[tuple[int, bytes]]:
        raise AssertionError("the clip must not be read")
        yield 0, b""  # pragma: no cover

    with pytest.raises(AlertsOff, match="turn them on"):
        await kit.clips.upload(T, D, meta(clip()), never())
    assert nothing_stored(kit)
    assert kit.keys.generated == 0
    assert kit.metrics.counts["refused:alerts_off"] == 1


@pytest.mark.parametrize(
    ("changes", "error", "reason"),
    [
        ({"clip_id": "bad id!"}, InvalidClip, "invalid"),
        ({"content_type": "video/quicktime"}, InvalidClip, "not_mp4"),
        ({"size_bytes": 0}, InvalidClip, "invalid"),
        ({"size_bytes": 5 * 1024 * 1024}, ClipTooLarge, "too_large"),
        ({"sha256": b"short"}, InvalidClip, "invalid"),
        ({"captured_at": NOW + timedelta(hours=1)}, InvalidClip, "invalid"),
    ],
)
async def test_bad_metadata(kit: Kit, changes: dict[str, Any], error: type, reason: str) -> None:
    with pytest.raises(error):
        await upload(kit, clip(), **changes)
    assert nothing_stored(kit)
    assert kit.metrics.counts[f"refused:{reason}"] == 1


async def test_an_over_long_clip_is_refused_and_nothing_is_visible(kit: Kit) -> None:
    data = clip(7.0)
    with pytest.raises(InvalidClip, match=r"7\.00 s long; alert clips are at most 6 s"):
        await upload(kit, data)
    assert nothing_stored(kit)
    assert kit.metrics.counts["refused:too_long"] == 1
    assert not kit.index.claims


async def test_a_non_mp4_is_refused(kit: Kit) -> None:
    data = b"GIF89a" + bytes(5000)
    with pytest.raises(InvalidClip, match="not an MP4"):
        await upload(kit, data)
    assert nothing_stored(kit)
    assert kit.metrics.counts["refused:not_mp4"] == 1


async def test_bad_chunks_and_streams(kit: Kit) -> None:
    data = clip()
    digest = hashlib.sha256(data).digest()

    async def out_of_order() -> AsyncIterator[tuple[int, bytes]]:
        yield 0, data[:20_000]
        yield 40_000, data[40_000:60_000]

    async def oversized() -> AsyncIterator[tuple[int, bytes]]:
        yield 0, data[: 256 * 1024 + 1]

    async def truncated() -> AsyncIterator[tuple[int, bytes]]:
        yield 0, data[:20_000]

    async def too_much() -> AsyncIterator[tuple[int, bytes]]:
        for at in range(0, len(data), CHUNK):
            yield at, data[at : at + CHUNK]
        yield len(data), b"xx"

    async def empty_chunk() -> AsyncIterator[tuple[int, bytes]]:
        yield 0, b""

    cases = [
        (out_of_order(), "out of order", "bad_chunk"),
        (oversized(), "1 to 262144 bytes", "bad_chunk"),
        (truncated(), "ended after 20000", "truncated"),
        (too_much(), "more bytes than", "bad_chunk"),
        (empty_chunk(), "1 to 262144 bytes", "bad_chunk"),
    ]
    for stream, message, reason in cases:
        with pytest.raises(InvalidClip, match=message):
            await kit.clips.upload(T, D, meta(data, sha256=digest), stream)
        assert kit.metrics.counts[f"refused:{reason}"] >= 1
    tampered = bytearray(data)
    tampered[-5] ^= 1
    with pytest.raises(InvalidClip, match="SHA-256 does not match"):
        await kit.clips.upload(T, D, meta(data), chunks(bytes(tampered)))
    assert nothing_stored(kit)
    assert (await upload(kit, data)).created


async def test_kafka_down_takes_the_object_back_and_a_retry_succeeds(kit: Kit) -> None:
    data = clip()
    kit.events.fail = True
    with pytest.raises(StorageUnavailable, match="retry later"):
        await upload(kit, data)
    assert nothing_stored(kit)
    assert kit.metrics.counts["refused:unavailable"] == 1
    kit.events.fail = False
    assert (await upload(kit, data)).created
    assert len(kit.objects.stored) == 1


async def test_storage_down_leaves_nothing_and_a_retry_succeeds(kit: Kit) -> None:
    data = clip()
    kit.objects.fail_writes = True
    with pytest.raises(StorageUnavailable):
        await upload(kit, data)
    assert nothing_stored(kit)
    assert not kit.events.published
    assert kit.objects.aborted == 1
    kit.objects.fail_writes = False
    assert (await upload(kit, data)).created


async def test_a_cancelled_upload_is_aborted_and_releases_its_id(kit: Kit) -> None:
    data = clip()
    gate = asyncio.Event()

    async def stalls() -> AsyncIterator[tuple[int, bytes]]:
        yield 0, data[:CHUNK]
        gate.set()
        await asyncio.sleep(3600)
        yield CHUNK, data[CHUNK:]  # pragma: no cover

    task = asyncio.create_task(kit.clips.upload(T, D, meta(data), stalls()))
    await gate.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert nothing_stored(kit)
    assert kit.metrics.counts["refused:cancelled"] == 1
    assert not kit.index.claims
    assert (await upload(kit, data)).created


async def test_a_camera_giving_up_while_the_event_is_sent_gets_one_event(kit: Kit) -> None:
    """The camera's deadline passes while the clip's event is being sent: the event and the
    index entry are still written, so the camera's retry finds the clip instead of storing
    and announcing it a second time."""
    data = clip()
    sending, release = asyncio.Event(), asyncio.Event()
    publish = kit.events.ingested

    async def slow_ingested(record: ClipRecord) -> None:
        sending.set()
        await release.wait()
        await publish(record)

    kit.events.ingested = slow_ingested  # type: ignore[method-assign]
    task = asyncio.create_task(upload(kit, data))
    await sending.wait()
    task.cancel()
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [kind for kind, _ in kit.events.published] == ["ingested"]
    assert not kit.index.claims
    retry = await upload(kit, data)
    assert not retry.created
    assert [kind for kind, _ in kit.events.published] == ["ingested"]


async def test_a_concurrent_upload_of_the_same_id_is_refused(kit: Kit) -> None:
    assert (await kit.index.claim(T, D, "clip-1", 60))[0]
    with pytest.raises(ClipBusy, match="in progress"):
        await upload(kit, clip())


# --- playback -------------------------------------------------------------------------


async def _all(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in stream])


async def test_download_is_logged_before_the_key_is_released(kit: Kit) -> None:
    data = clip()
    await upload(kit, data)
    record, plaintext = await kit.clips.download(D, "clip-1", "1234")
    assert await _all(plaintext) == data
    assert record.clip_id == "clip-1"
    assert kit.log == [f"playback:{T}:{D}:clip-1", "unwrap:receipt-1"]
    assert kit.cameras.pin_checks[-1] == (D, True, "1234")
    assert kit.events.accesses == [(T, D, "clip-1", "access-play")]
    assert kit.metrics.counts["played:ok"] == 1


async def test_an_object_swapped_between_cameras_fails_closed(kit: Kit) -> None:
    await upload(kit, clip(3.0, 0), device=D)
    await upload(kit, clip(3.0, 1), device=D2)
    a, b = object_name(T, D, "clip-1"), object_name(T, D2, "clip-1")
    kit.objects.stored[a], kit.objects.stored[b] = kit.objects.stored[b], kit.objects.stored[a]
    for device in (D, D2):
        with pytest.raises(IntegrityFailure, match="integrity check"):
            await kit.clips.download(device, "clip-1", "")
    assert kit.metrics.counts["integrity:object"] == 2


async def test_an_object_under_the_right_key_name_but_another_binding_fails_at_segment_0(
    kit: Kit,
) -> None:
    # Even a key that would unwrap does not open a clip sealed for another camera.
    await upload(kit, clip(3.0, 0), device=D)
    await upload(kit, clip(3.0, 1), device=D2)
    a, b = object_name(T, D, "clip-1"), object_name(T, D2, "clip-1")
    kit.objects.stored[a] = kit.objects.stored[b]

    async def lenient(reference: bytes, *_: object) -> bytes:
        return kit.keys.keys[reference]

    kit.keys.unwrap = lenient  # type: ignore[method-assign,assignment]
    with pytest.raises(IntegrityFailure):
        await kit.clips.download(D, "clip-1", "")


async def test_a_swapped_index_entry_is_neither_listed_nor_served(kit: Kit) -> None:
    await upload(kit, clip(3.0, 0), device=D)
    await upload(kit, clip(3.0, 1), device=D2, clip_id="clip-2")
    other = kit.index.entries.pop((T, D2, "clip-2"))
    kit.index.entries[(T, D, "clip-2")] = other
    listed, _ = await kit.clips.list_clips(D, None, None, None, 50)
    assert [r.clip_id for r in listed] == ["clip-1"]
    with pytest.raises(IntegrityFailure):
        await kit.clips.download(D, "clip-2", "")
    assert kit.metrics.counts["integrity:index"] == 2
    assert kit.log[0] == f"listing:{T}:{D}"


async def test_only_the_owner_deletes_and_deletion_is_announced(kit: Kit) -> None:
    await upload(kit, clip())
    kit.cameras.viewers[D] = Viewer(T, is_owner=False)
    with pytest.raises(OwnerOnly):
        await kit.clips.delete(D, "clip-1")
    kit.cameras.viewers[D] = Viewer(T, is_owner=True)
    assert await kit.clips.delete(D, "clip-1") == NOW
    assert not kit.objects.stored
    assert not kit.index.entries
    assert kit.events.published[-1][0] == "deleted:OWNER_REQUEST"
    await kit.clips.on_deleted(T, D, ["clip-1"])  # the event coming back changes nothing


async def test_the_index_follows_the_topic(kit: Kit) -> None:
    await upload(kit, clip())
    record = kit.index.entries.pop((T, D, "clip-1"))
    await kit.clips.on_ingested(record)
    assert kit.index.entries[(T, D, "clip-1")] == record
    await kit.clips.on_ingested(replace(record, object_name="t/x/d/y/c/z"))
    await kit.clips.on_deleted(T, D, ["clip-1"])
    assert not kit.index.entries
