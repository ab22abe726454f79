"""A slow or greedy camera cannot starve the others: each upload has a deadline and an
idle limit, chunks have a floor, and a camera has a bounded number of places. Every
breach is refused with nothing stored, counted, and logged without an id."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest

from privacam.clips.v1 import clip_service_pb2 as pb
from privacam_core.identity import Principal, PrincipalKind
from privacam_sdk.clips import upload_requests
from services.clip_ingest.api.servicer import BUSY_DRAIN_SECONDS, ClipIngestServicer
from services.clip_ingest.domain.errors import CameraBusy, InvalidClip, UploadTooSlow
from services.clip_ingest.domain.service import Limits
from services.common.auth import reset_current_principal, set_current_principal
from tests.media import make_mp4
from tests.unit.clip_ingest.fakes import make_kit

T, D, D2 = "tenant-a", "camera-a", "camera-b"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MIN_CHUNK = 16 * 1024


@cache
def clip(seed: int = 0) -> bytes:
    return make_mp4(3.0, width=320, height=180, fps=5, bitrate=200_000, seed=seed)


class Kit:
    def __init__(self, deadline: float = 5.0, idle: float = 5.0) -> None:
        limits = Limits(max_clip_bytes=4 * 1024 * 1024, min_chunk_bytes=MIN_CHUNK)
        made = make_kit(limits, NOW, (D, D2))
        self.objects, self.index, self.metrics = made.objects, made.index, made.metrics
        self.clips = made.clips
        self.servicer = ClipIngestServicer(self.clips, 4 * 1024 * 1024, idle, deadline)

    def nothing_stored(self) -> bool:
        return not self.objects.stored and not self.objects.pending and not self.index.claims

    async def upload(
        self, device: str, requests: AsyncIterator[pb.UploadClipRequest]
    ) -> pb.UploadClipResponse:
        """One UploadClip call as `device`, in-process (the interceptor's part is the
        principal; domain errors come out as raised, the interceptor maps them)."""
        token = set_current_principal(
            Principal(PrincipalKind.CAMERA, device, T, "privacam.local", 1, NOW)
        )
        try:
            return await self.servicer.UploadClip(requests, None)
        finally:
            reset_current_principal(token)


async def paced(
    data: bytes,
    clip_id: str = "clip-1",
    chunk_bytes: int = 64 * 1024,
    pause: float = 0.0,
    then_wait: float = 0.0,
) -> AsyncIterator[pb.UploadClipRequest]:
    """The SDK's messages for `data`, `pause` seconds apart; then the stream stays open
    `then_wait` seconds before it ends."""
    for message in upload_requests(data, clip_id, NOW - timedelta(seconds=10), chunk_bytes):
        yield message
        await asyncio.sleep(pause)
    await asyncio.sleep(then_wait)


async def trickle(
    clip_id: str = "trickle", seconds: float = 60.0
) -> AsyncIterator[pb.UploadClipRequest]:
    """Metadata, then one byte every 50 ms for `seconds`."""
    data = clip()
    messages = upload_requests(data, clip_id, NOW - timedelta(seconds=10), 1)
    started = time.monotonic()
    for message in messages:
        yield message
        if time.monotonic() - started > seconds:
            return
        await asyncio.sleep(0.05)


@contextlib.contextmanager
def took(at_most: float) -> Iterator[None]:
    began = time.monotonic()
    yield
    assert time.monotonic() - began < at_most


# --- chunk floor ------------------------------------------------------------------------


async def test_a_chunk_below_the_floor_is_refused_unless_it_is_the_last() -> None:
    kit = Kit()
    data = clip()
    with pytest.raises(InvalidClip, match=f"at least {MIN_CHUNK} bytes"):
        await kit.upload(D, paced(data, chunk_bytes=MIN_CHUNK - 1))
    assert kit.nothing_stored()
    assert kit.metrics.counts["refused:small_chunk"] == 1
    assert kit.objects.aborted == 1  # the object's buffers were dropped
    # Exactly the floor is fine, and the last chunk may be anything (here 1,339 bytes).
    assert len(data) % MIN_CHUNK < MIN_CHUNK
    assert (await kit.upload(D, paced(data, chunk_bytes=MIN_CHUNK))).created
    small = make_mp4(0.4, width=64, height=64, fps=5, bitrate=20_000)
    assert len(small) < MIN_CHUNK  # a clip smaller than the floor: one last chunk
    assert (await kit.upload(D, paced(small, "small", chunk_bytes=MIN_CHUNK))).created


# --- deadline and idle limit --------------------------------------------------------------


async def test_a_trickling_upload_is_cut_off_at_its_deadline_with_nothing_stored() -> None:
    kit = Kit(deadline=0.6, idle=5.0)
    # Full-size chunks, each well within the idle limit, but 20 of them 0.1 s apart.
    with took(0.6 + 0.5), pytest.raises(UploadTooSlow, match=r"within 0\.6 s") as refused:
        await kit.upload(D, paced(clip(), chunk_bytes=MIN_CHUNK, pause=0.1))
    assert refused.value.reason == "too_slow"
    assert "nothing was stored" in str(refused.value)
    assert kit.nothing_stored()
    assert kit.objects.aborted == 1
    assert kit.metrics.counts["refused:too_slow"] == 1
    # The camera's places are back: a prompt upload goes through.
    assert (await kit.upload(D, paced(clip()))).created


async def test_a_stream_left_open_after_its_last_chunk_is_cut_off_too() -> None:
    kit = Kit(deadline=0.5, idle=5.0)
    with took(1.0), pytest.raises(UploadTooSlow):
        await kit.upload(D, paced(clip(), then_wait=30))
    assert kit.nothing_stored()


async def test_a_stall_is_abandoned_after_the_idle_limit_even_before_the_metadata() -> None:
    kit = Kit(deadline=10.0, idle=0.3)

    async def silent() -> AsyncIterator[pb.UploadClipRequest]:
        await asyncio.sleep(30)
        yield pb.UploadClipRequest()  # pragma: no cover

    with took(1.0), pytest.raises(UploadTooSlow, match=r"for 0\.3 s") as refused:
        await kit.upload(D, silent())
    assert refused.value.reason == "stalled"
    assert kit.metrics.counts["refused:stalled"] == 1
    with took(1.0), pytest.raises(UploadTooSlow, match=r"for 0\.3 s"):
        await kit.upload(D, paced(clip(), chunk_bytes=MIN_CHUNK, pause=0.5))
    assert kit.metrics.counts["refused:stalled"] == 2
    assert kit.nothing_stored()


async def test_a_refused_trickler_is_answered_by_its_deadline() -> None:
    """A refusal reads on (so a normal camera sees the status, not INTERNAL), but a camera
    trickling on after it does not hold the call past the upload's deadline."""
    kit = Kit(deadline=0.8, idle=5.0)
    with took(0.8 + 0.5), pytest.raises(InvalidClip, match="too small"):
        await kit.upload(D, trickle())
    assert kit.metrics.counts["refused:small_chunk"] == 1
    assert kit.nothing_stored()


# --- places per camera ----------------------------------------------------------------------


async def test_a_camera_gets_two_places_and_a_third_upload_is_refused_at_once() -> None:
    kit = Kit(deadline=3.0, idle=5.0)
    slow = [
        asyncio.create_task(kit.upload(D, paced(clip(), f"slow-{n}", pause=0.4))) for n in range(2)
    ]
    await asyncio.sleep(0.2)
    with took(BUSY_DRAIN_SECONDS + 0.5), pytest.raises(CameraBusy, match="2 uploads in progress"):
        await kit.upload(D, trickle("third"))
    assert kit.metrics.counts["refused:camera_busy"] == 1
    # Another camera is not affected, and a prompt third upload of the same camera that
    # is refused reads its stream to the end first (so it sees RESOURCE_EXHAUSTED).
    assert (await kit.upload(D2, paced(clip(), "other"))).created
    sent = []

    async def prompt() -> AsyncIterator[pb.UploadClipRequest]:
        async for message in paced(clip(), "prompt"):
            yield message
        sent.append("all")

    with pytest.raises(CameraBusy):
        await kit.upload(D, prompt())
    assert sent == ["all"]
    assert all([(await task).created for task in slow])
    assert (await kit.upload(D, paced(clip(), "third"))).created


async def test_a_place_is_given_back_whatever_ends_the_upload() -> None:
    kit = Kit(deadline=0.5, idle=5.0)
    for _ in range(3):  # more than the camera's places, one after another
        with pytest.raises(UploadTooSlow):
            await kit.upload(D, paced(clip(), chunk_bytes=MIN_CHUNK, pause=0.2))
        with pytest.raises(InvalidClip):
            await kit.upload(D, paced(clip(), chunk_bytes=1024))
    task = asyncio.create_task(kit.upload(D, paced(clip(), pause=1)))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Both places at once, each upload well inside the 0.5 s deadline even on a busy
    # machine (3 messages, 10 ms apart).
    first = asyncio.create_task(kit.upload(D, paced(clip(), "a", pause=0.01)))
    second = asyncio.create_task(kit.upload(D, paced(clip(), "b", pause=0.01)))
    assert (await first).created
    assert (await second).created


async def test_breaches_are_logged_without_ids_and_not_once_per_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kit = Kit(deadline=3.0, idle=5.0)
    slow = [
        asyncio.create_task(kit.upload(D, paced(clip(), f"slow-{n}", pause=0.2))) for n in range(2)
    ]
    await asyncio.sleep(0.1)
    with caplog.at_level(logging.WARNING, logger="privacam.clip_ingest"):
        for _ in range(5):
            with pytest.raises(CameraBusy):
                await kit.upload(D, trickle("busy", seconds=0))
    await asyncio.gather(*slow)
    lines = [r for r in caplog.records if r.getMessage().startswith("upload refused")]
    assert len(lines) == 1
    assert lines[0].__dict__["reason"] == "camera_busy"
    text = repr(lines[0].__dict__)
    assert T not in text
    assert D not in text
    assert kit.metrics.counts["refused:camera_busy"] == 5
