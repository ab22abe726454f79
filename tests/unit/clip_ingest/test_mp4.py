"""The incremental MP4 reader: duration from mvhd wherever moov is, refusals of non-MP4s."""

from __future__ import annotations

import struct
from datetime import timedelta
from functools import cache

import pytest

from services.clip_ingest.domain.mp4 import Mp4Probe, NotMp4, movie_duration
from tests.media import make_mp4


@cache
def small_clip(seconds: float) -> bytes:
    return make_mp4(seconds, width=160, height=90, fps=5, bitrate=50_000)


def probe(data: bytes, step: int) -> Mp4Probe:
    reader = Mp4Probe()
    for at in range(0, len(data), step):
        reader.feed(data[at : at + step])
    return reader


@pytest.mark.parametrize("step", [1, 7, 4096, 10**9])
def test_duration_whatever_the_chunking(step: int) -> None:
    clip = small_clip(4.0)
    assert probe(clip, step).finish().duration == timedelta(seconds=4)


def test_a_seven_second_clip_is_known_as_soon_as_moov_is_read() -> None:
    clip = small_clip(7.0)
    reader = Mp4Probe()
    at = 0
    while reader.duration is None:
        reader.feed(clip[at : at + 1000])
        at += 1000
    assert reader.duration == timedelta(seconds=7)


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _mvhd(version: int, timescale: int, duration: int) -> bytes:
    if version == 1:
        body = struct.pack(">QQIQ", 0, 0, timescale, duration)
    else:
        body = struct.pack(">IIII", 0, 0, timescale, duration)
    return _box(b"mvhd", bytes([version, 0, 0, 0]) + body + bytes(80))


FTYP = _box(b"ftyp", b"isom" + bytes(4) + b"isomavc1")


def test_moov_first_version_1_and_a_64_bit_mdat() -> None:
    mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + 5) + b"video"
    clip = FTYP + _box(b"moov", _mvhd(1, 90_000, 90_000 * 5 + 45_000)) + mdat
    assert probe(clip, 3).finish().duration == timedelta(seconds=5.5)


def test_last_box_to_the_end_of_the_file() -> None:
    clip = FTYP + _box(b"moov", _mvhd(0, 1000, 6000)) + struct.pack(">I4s", 0, b"mdat") + b"x" * 99
    assert probe(clip, 10).finish().duration == timedelta(seconds=6)


def test_fragmented_duration_comes_from_mehd() -> None:
    mehd = _box(b"mehd", bytes(4) + struct.pack(">I", 3000))
    moov = _box(b"moov", _mvhd(0, 1000, 0) + _box(b"mvex", mehd))
    assert probe(FTYP + moov, 5).finish().duration == timedelta(seconds=3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "printable"),
        (_box(b"moov", _mvhd(0, 1000, 1000)) + FTYP, "does not start with an 'ftyp'"),
        (FTYP + _box(b"mdat", b"x" * 50), "no movie box"),
        (FTYP + _box(b"moov", _mvhd(0, 1000, 1000))[:-3], "ends in the middle"),
        (FTYP + _box(b"moov", _mvhd(0, 0, 1000)), "timescale of 0"),
        (FTYP + _box(b"moov", _mvhd(0, 1000, 0xFFFFFFFF)), "does not state its duration"),
        (FTYP + _box(b"moov", _mvhd(0, 1000, 0) + _box(b"mvex", b"")), "mehd"),
        (FTYP + _box(b"moov", _box(b"free", bytes(8))), "no movie header"),
        (FTYP + struct.pack(">I4s", 4, b"free"), "impossible size"),
    ],
)
def test_not_an_mp4(data: bytes, message: str) -> None:
    with pytest.raises(NotMp4, match=message):
        probe(data, 7).finish()


def test_a_fragmented_clip_without_a_stated_duration_is_refused() -> None:
    clip = make_mp4(1.0, width=160, height=90, fps=5, bitrate=50_000, fragmented=True)
    with pytest.raises(NotMp4, match="does not state its duration"):
        probe(clip, 4096).finish()


def test_a_huge_moov_is_refused_before_it_is_buffered() -> None:
    reader = Mp4Probe(max_moov_bytes=1024)
    with pytest.raises(NotMp4, match="too large"):
        reader.feed(FTYP + struct.pack(">I4s", 10**6, b"moov"))


def test_movie_duration_of_an_overrunning_child() -> None:
    with pytest.raises(NotMp4, match="overruns"):
        movie_duration(memoryview(struct.pack(">I4s", 100, b"mvhd")))
