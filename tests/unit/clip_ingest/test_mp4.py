"""The incremental MP4 reader: a clip lasts what its samples last, whatever its headers say;
headers, edit lists and fragments that disagree with the samples are refused, naming the
box; non-MP4s are refused; memory and time stay bounded."""

from __future__ import annotations

import struct
from datetime import timedelta
from functools import cache

import pytest

from services.clip_ingest.domain.mp4 import MAX_SECONDS, Mp4Probe, NotMp4
from tests import mp4_boxes as b
from tests.media import make_mp4


@cache
def small_clip(seconds: float, *, fragmented: bool = False, audio: bool = False) -> bytes:
    return make_mp4(
        seconds, width=160, height=90, fps=5, bitrate=50_000, fragmented=fragmented, audio=audio
    )


def probe(data: bytes, step: int = 4096) -> Mp4Probe:
    reader = Mp4Probe()
    for at in range(0, len(data), step):
        reader.feed(data[at : at + step])
    return reader


def duration(data: bytes, step: int = 4096) -> timedelta:
    return probe(data, step).finish().duration


def refused(data: bytes, step: int = 4096) -> str:
    with pytest.raises(NotMp4) as error:
        probe(data, step).finish()
    return str(error.value)


def one_track(
    runs: list[tuple[int, int]],
    *,
    movie: int | None = None,
    edits: list[tuple[int, ...]] | None = None,
    offsets: list[tuple[int, int]] | None = None,
    tkhd_duration: int | None = None,
    mdhd_duration: int | None = None,
    samples: int | None = None,
) -> bytes:
    """ftyp, a moov with one track (timescale 1000, as the movie's) over `runs` of
    (count, duration) samples, and an mdat; headers honest unless told otherwise."""
    media = sum(count * delta for count, delta in runs)
    trak = b.trak(
        1,
        1000,
        runs,
        edits=edits,
        offsets=offsets,
        tkhd_duration=tkhd_duration,
        mdhd_duration=mdhd_duration,
        samples=samples,
    )
    return b.FTYP + b.moov(trak, duration=media if movie is None else movie) + b.mdat()


# --- honest clips --------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 7, 4096, 10**9])
def test_duration_whatever_the_chunking(step: int) -> None:
    assert duration(small_clip(4.0), step) == timedelta(seconds=4)
    fragmented = small_clip(4.0, fragmented=True, audio=True)
    assert duration(fragmented, step) == duration(fragmented)


def test_a_progressive_clip_with_video_and_audio() -> None:
    # The AAC encoder's first frame (64 ms of priming) is hidden by the audio track's edit
    # list, within a frame: both tracks present 4 s.
    assert duration(small_clip(4.0, audio=True)) == timedelta(seconds=4)


def test_a_fragmented_clip_is_as_long_as_its_fragments() -> None:
    assert duration(small_clip(4.0, fragmented=True)) == timedelta(seconds=4)
    # With audio and no edit list, the encoder's 64 ms of priming are media like any other
    # (the muxer also delays the video by as much): the clip is 4.064 s.
    with_audio = duration(small_clip(4.0, fragmented=True, audio=True))
    assert abs(with_audio - timedelta(seconds=4.064)) < timedelta(milliseconds=1)


def test_a_seven_second_clip_is_known_as_soon_as_moov_is_read() -> None:
    clip = small_clip(7.0)
    reader = Mp4Probe()
    at = 0
    while reader.duration is None:
        reader.feed(clip[at : at + 1000])
        at += 1000
    assert reader.duration == timedelta(seconds=7)


def test_a_fragmented_clip_grows_fragment_by_fragment() -> None:
    clip = small_clip(4.0, fragmented=True)
    reader = Mp4Probe()
    seen = []
    for at in range(0, len(clip), 100):
        reader.feed(clip[at : at + 100])
        if reader.duration is not None and reader.duration not in seen:
            seen.append(reader.duration)
    assert seen == [timedelta(seconds=s) for s in range(5)]
    assert reader.finish().duration == timedelta(seconds=4)


def test_moov_first_version_1_headers_and_a_64_bit_mdat() -> None:
    trak = b.trak(1, 90_000, [(55, 9_000)], movie_timescale=90_000)
    big_mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + 5) + b"video"
    moov = b.box(b"moov", b.mvhd(90_000, 90_000 * 5 + 45_000, version=1), trak)
    assert duration(b.FTYP + moov + big_mdat, 3) == timedelta(seconds=5.5)


def test_last_box_to_the_end_of_the_file() -> None:
    clip = one_track([(60, 100)]) + struct.pack(">I4s", 0, b"mdat") + b"x" * 99
    assert duration(clip, 10) == timedelta(seconds=6)


def test_two_tracks_the_longest_counts() -> None:
    moov = b.moov(b.trak(1, 1000, [(50, 100)]), b.trak(2, 16_000, [(90, 1024)]), duration=5760)
    assert duration(b.FTYP + moov) == timedelta(seconds=5.76)


def test_reordered_frames_and_the_edit_list_that_hides_their_delay() -> None:
    # B-frames, decoded I0 P2 B1 P4 B3 ...: each shown one frame after it would be in
    # order; the edit list starts the presentation at the first frame shown (media time
    # 100 ms). Nothing is hidden.
    offsets = [(1, 100)] + [(1, 200), (1, 0)] * 29 + [(1, 100)]
    clip = one_track([(60, 100)], offsets=offsets, edits=[(6000, 100)])
    assert duration(clip) == timedelta(seconds=6)


def test_an_empty_edit_delays_the_track_and_counts() -> None:
    clip = one_track([(40, 100)], movie=5000, edits=[(1000, -1), (4000, 0)])
    assert duration(clip) == timedelta(seconds=5)


def test_a_fragmented_edit_of_duration_0_runs_to_the_end_of_the_media() -> None:
    edits = [(0, 100)]  # skip the first frame (a priming frame), show the rest
    moov = b.moov(
        b.trak(1, 1000, [], edits=edits, tkhd_duration=0), duration=0, extends=b.mvex([(1, 100)])
    )
    clip = b.FTYP + moov + b.moof(b.traf(1, count=30, decode_time=0)) + b.mdat()
    clip += b.moof(b.traf(1, [100] * 31, decode_time=3000)) + b.mdat()
    assert duration(clip) == timedelta(seconds=6)


def test_mehd_and_fragments_that_agree() -> None:
    clip = small_clip(4.0, fragmented=True)
    stated = b.insert(clip, (b"moov", b"mvex"), b.full(b"mehd", 0, 0, struct.pack(">I", 4000)))
    assert duration(stated) == timedelta(seconds=4)


def test_fragments_with_gaps_in_time_count_the_gaps() -> None:
    # ffmpeg's frag_every_frame writes samples of duration 0 and lets tfdt carry the time.
    moov = b.moov(b.trak(1, 1000, []), duration=0, extends=b.mvex([(1, 0)]))
    clip = b.FTYP + moov
    for n in range(30):
        clip += b.moof(b.traf(1, count=1, decode_time=n * 200)) + b.mdat()
    assert duration(clip) == timedelta(seconds=5.8)


# --- lying clips ---------------------------------------------------------------------


@cache
def minute_clip() -> bytes:
    return small_clip(60.0)


def test_a_header_of_6_s_over_60_s_of_samples() -> None:
    assert refused(one_track([(600, 100)], movie=6000)) == (
        "stts: samples last 60.0 s but mvhd says 6.0 s"
    )
    lying = one_track([(600, 100)], movie=6000, tkhd_duration=6000, mdhd_duration=6000)
    assert refused(lying) == "stts: samples last 60.0 s but mvhd says 6.0 s"
    only_track_headers = one_track([(600, 100)], tkhd_duration=6000, mdhd_duration=6000)
    assert refused(only_track_headers) == "stts: track 1's samples last 60.0 s but tkhd says 6.0 s"
    only_mdhd = one_track([(600, 100)], mdhd_duration=6000)
    assert refused(only_mdhd) == "stts: track 1's samples last 60.0 s but mdhd says 6.0 s"


def test_a_real_minute_whose_headers_say_6_s() -> None:
    clip = minute_clip()
    assert duration(clip) == timedelta(seconds=60)
    for kind in (b"mvhd", b"tkhd", b"mdhd"):
        path = {b"mvhd": (b"moov",), b"tkhd": (b"moov", b"trak")}.get(
            kind, (b"moov", b"trak", b"mdia")
        )
        (timescale,) = (1000,) if kind != b"mdhd" else (10240,)
        clip = b.edit(clip, (*path, kind), b.set_duration(kind, 6 * timescale))
        # Its edit list still presents the minute: that is what mvhd disagrees with.
        assert refused(clip) == "elst: edits present 60.0 s but mvhd says 6.0 s"
    without_edits = b.rename(clip, (b"moov", b"trak", b"edts"), b"free")
    assert refused(without_edits) == "stts: samples last 60.0 s but mvhd says 6.0 s"


def test_a_fragmented_clip_whose_mehd_says_6_s_followed_by_more_fragments() -> None:
    clip = small_clip(12.0, fragmented=True)
    lying = b.insert(clip, (b"moov", b"mvex"), b.full(b"mehd", 0, 0, struct.pack(">I", 6000)))
    chunks = [lying[at : at + 1000] for at in range(0, len(lying), 1000)]
    fed: list[bytes] = []
    with pytest.raises(NotMp4, match=r"^trun: samples last 7\.0 s but mehd says 6\.0 s$"):
        feed_counting(Mp4Probe(), chunks, fed)
    # Refused as soon as the fragments outlast mehd, before the rest of them is read.
    assert b"moof" in b"".join(chunks[len(fed) :])


def feed_counting(reader: Mp4Probe, chunks: list[bytes], fed: list[bytes]) -> None:
    for chunk in chunks:
        fed.append(chunk)
        reader.feed(chunk)


def test_a_fragmented_clip_whose_mehd_says_more_than_its_fragments() -> None:
    moov = b.moov(b.trak(1, 1000, []), duration=0, extends=b.mvex([(1, 100)], mehd=6000))
    clip = b.FTYP + moov + b.moof(b.traf(1, count=30)) + b.mdat()
    assert refused(clip) == "trun: samples last 3.0 s but mehd says 6.0 s"


def test_an_edit_list_that_hides_media() -> None:
    hiding = one_track([(600, 100)], movie=6000, edits=[(6000, 0)])
    assert refused(hiding) == "elst: track 1's edits show 6.0 s of its 60.0 s of samples"
    # The same lie told in a real minute of video.
    clip = b.edit(minute_clip(), (b"moov", b"trak", b"edts", b"elst"), b.set_edits(6000))
    clip = b.edit(clip, (b"moov", b"mvhd"), b.set_duration(b"mvhd", 6000))
    clip = b.edit(clip, (b"moov", b"trak", b"tkhd"), b.set_duration(b"tkhd", 6000))
    assert refused(clip) == "elst: track 1's edits show 6.0 s of its 60.0 s of samples"
    # Hiding the end of the media, or skipping most of its start.
    skipping = one_track([(600, 100)], movie=6000, edits=[(6000, 54_000)])
    assert refused(skipping) == "elst: track 1's edits show 6.0 s of its 60.0 s of samples"


def test_an_edit_list_that_extends_media_counts() -> None:
    # 6 s of media shown after 54 s of nothing is a minute, whatever mvhd says.
    delayed = one_track([(60, 100)], movie=6000, edits=[(54_000, -1), (6000, 0)])
    assert refused(delayed) == "elst: edits present 60.0 s but mvhd says 6.0 s"
    honest = one_track([(60, 100)], edits=[(54_000, -1), (6000, 0)], movie=60_000)
    assert duration(honest) == timedelta(seconds=60)


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ([(6000, 0, 0)], "elst: an edit at rate 0 (a dwell); only rate-1 edits are read"),
        ([(6000, 0, 2)], "elst: an edit at rate 2+0/65536; only rate-1 edits are read"),
        ([(6000, -2)], "elst: an edit at media time -2 cannot be read"),
        ([(100, 0)] * 65, "elst: 65 edits; at most 64 are read"),
    ],
)
def test_edit_lists_that_cannot_be_read_are_refused(
    edits: list[tuple[int, ...]], message: str
) -> None:
    assert refused(one_track([(60, 100)], edits=edits, movie=6000)) == message


def test_samples_composed_on_top_of_each_other() -> None:
    # 600 frames, each shown at time 0: a minute of video composed into 0.1 s.
    offsets = [(1, -100 * n) for n in range(600)]
    clip = one_track([(600, 100)], offsets=offsets, edits=[(100, 0)], movie=100)
    assert refused(clip) == "ctts: track 1's samples are shown over 0.1 s but last 60.0 s"


def _track_with(*boxes: bytes, track_id: int = 1) -> bytes:
    """A track of 60 samples of 100 ms (timescale 1000) with `boxes` after its tkhd."""
    table = b.box(b"stbl", b.stts([(60, 100)]), b.stsz(60))
    media = b.box(b"mdia", b.mdhd(1000, 6000), b.box(b"minf", table))
    return b.box(b"trak", b.tkhd(track_id, 6000), *boxes, media)


@pytest.mark.parametrize(
    ("clip", "message"),
    [
        pytest.param(
            b.FTYP + b.box(b"moov", b.mvhd(1, 2**64 - 1, 1), b.trak(1, 1000, [(60, 100)])),
            "mvhd: states an unknown duration (all ones); a clip states its own",
            id="mvhd all ones",
        ),
        pytest.param(
            b.FTYP
            + b.box(
                b"moov", b.mvhd(1, 2**64 - 2, 1), b.trak(1, 1000, [(60, 100)], movie_timescale=1)
            ),
            "stts: samples last 6.0 s but mvhd says 18446744073709551614.0 s",
            id="mvhd 2**64-2",
        ),
        pytest.param(
            b.FTYP
            + b.moov(
                b.trak(1, 1, [(2**32 - 1, 2**32 - 1)], tkhd_duration=6000, mdhd_duration=6),
                duration=6000,
            ),
            f"stts: track 1's samples last more than {MAX_SECONDS} s (an overflow, not a clip)",
            id="stts",
        ),
        pytest.param(
            b.FTYP
            + b.moov(b.trak(1, 1000, []), duration=0, extends=b.mvex([(1, 2**32 - 1)]))
            + b.moof(b.traf(1, count=2**32 - 1)),
            f"trun: track 1's samples last more than {MAX_SECONDS} s (an overflow, not a clip)",
            id="trun",
        ),
        pytest.param(
            b.FTYP
            + b.moov(b.trak(1, 1000, []), duration=0, extends=b.mvex([(1, 100)]))
            + b.moof(b.traf(1, count=10, decode_time=0))
            + b.moof(b.traf(1, count=10, decode_time=2**64 - 1)),
            f"tfdt: track 1's fragment starts more than {MAX_SECONDS} s after its first sample "
            "(an overflow, not a clip)",
            id="tfdt",
        ),
        pytest.param(
            b.FTYP + b.moov(_track_with(b.elst([(2**64 - 1, 0)], version=1)), duration=6000),
            f"elst: edits present more than {MAX_SECONDS} s (an overflow, not a clip)",
            id="elst",
        ),
    ],
)
def test_overflowing_durations_are_refused_naming_the_box(clip: bytes, message: str) -> None:
    assert refused(clip) == message


@pytest.mark.parametrize(
    ("clip", "message"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "printable"),
        (b.box(b"moov", b.mvhd(1000, 1000)) + b.FTYP, "does not start with an 'ftyp'"),
        (b.FTYP + b.mdat(50), "no movie box"),
        (b.FTYP + b.moov(b.trak(1, 1000, [(10, 100)]), duration=1000)[:-3], "ends in the middle"),
        (b.FTYP + b.box(b"moov", b.mvhd(0, 1000)), "mvhd: the movie's timescale is 0"),
        (b.FTYP + b.box(b"moov", b.mvhd(1000, 1000)), "trak: the movie has no tracks"),
        (b.FTYP + b.box(b"moov", b.box(b"free", bytes(8))), "mvhd: moov has none"),
        (b.FTYP + b.box(b"moov", b.mvhd(1000, 0), b.mvhd(1000, 0)), "mvhd: moov has 2 of them"),
        (b.FTYP + struct.pack(">I4s", 4, b"free"), "impossible size"),
        (
            b.FTYP + b.box(b"moov", struct.pack(">I4s", 100, b"mvhd")),
            "moov: a box inside it overruns",
        ),
        (b.FTYP + b.box(b"moov", b.full(b"mvhd", 2, 0, bytes(96))), "mvhd: unknown version 2"),
        (b.FTYP + b.box(b"moov", b.full(b"mvhd", 0, 0, bytes(8))), "mvhd: the box is cut short"),
        (
            one_track([(10, 100)], samples=11),
            "stts: track 1's durations are for 10 samples but stsz has 11",
        ),
        (one_track([(10, 100)], offsets=[(9, 0)]), "ctts: track 1 has offsets for fewer samples"),
        (one_track([(10, 100)], offsets=[(11, 0)]), "ctts: track 1 has offsets for more samples"),
        (
            b.FTYP
            + b.moov(b.trak(1, 1000, [(10, 100)]), b.trak(1, 1000, [(10, 100)]), duration=1000),
            "tkhd: track_ID 1 is 0 or used twice",
        ),
        (
            b.FTYP
            + b.moov(b.box(b"trak", b.tkhd(1, 1000), b.box(b"mdia", b.mdhd(0, 1))), duration=1),
            "mdhd: track 1's timescale is 0",
        ),
        (b.FTYP + b.moov(b.box(b"trak", b.tkhd(1, 1000)), duration=1), "mdia: track 1 has none"),
    ],
)
def test_not_an_mp4(clip: bytes, message: str) -> None:
    with pytest.raises(NotMp4, match=message):
        probe(clip, 7).finish()


TFHD_1 = b.full(b"tfhd", 0, 0, struct.pack(">I", 1))
TOO_MANY = struct.pack(">I", 1000) + bytes(40)
EMPTY_FRAGMENTED = b.FTYP + b.moov(b.trak(1, 1000, []), duration=0, extends=b.mvex([(1, 100)]))


@pytest.mark.parametrize(
    ("clip", "message"),
    [
        (b.FTYP + b.moof(b.traf(1, count=1)), "moof: a movie fragment without a fragmented movie"),
        (one_track([(10, 100)]) + b.moof(b.traf(1, count=1)), "moof: a movie fragment without"),
        (
            EMPTY_FRAGMENTED + b.moov(b.trak(1, 1000, []), duration=0),
            "moov: the MP4 has two movie boxes",
        ),
        (
            EMPTY_FRAGMENTED + b.moof(b.traf(2, count=1)),
            "tfhd: a fragment of track 2, which moov does not have",
        ),
        (
            b.FTYP + b.moov(b.trak(1, 1000, []), duration=0, extends=b.mvex([(3, 100)])),
            "trex: defaults for track 3, which moov does not have",
        ),
        (
            EMPTY_FRAGMENTED + b.moof(b.traf(1, count=1, tfhd_flags=0x010000)),
            "tfhd: track 1 has a duration-is-empty fragment",
        ),
        (
            EMPTY_FRAGMENTED
            + b.moof(b.traf(1, count=20, decode_time=1000))
            + b.moof(b.traf(1, count=20, decode_time=2000)),
            r"tfdt: track 1's fragment starts at 2\.0 s, before its samples so far end \(3\.0 s\)",
        ),
        (
            EMPTY_FRAGMENTED + b.moof(b.traf(1, [100] * 1000)[:-1000]),
            "moof: a box inside it overruns",
        ),
        (
            EMPTY_FRAGMENTED + b.moof(b.box(b"traf", TFHD_1, b.full(b"trun", 0, 0x300, TOO_MANY))),
            "trun: 1000 samples do not fit in the box",
        ),
        (
            b.FTYP
            + b.moov(b.trak(1, 1000, []), duration=0, extends=b.mvex([]))
            + b.moof(b.traf(1, count=3)),
            "trun: track 1's samples have no duration",
        ),
    ],
)
def test_fragments_that_cannot_be_read(clip: bytes, message: str) -> None:
    with pytest.raises(NotMp4, match=message):
        probe(clip + b.mdat(), 5).finish()


def test_a_huge_moov_is_refused_before_it_is_buffered() -> None:
    reader = Mp4Probe(max_moov_bytes=1024)
    with pytest.raises(NotMp4, match="moov: the box is too large"):
        reader.feed(b.FTYP + struct.pack(">I4s", 10**6, b"moov"))


def test_a_huge_moof_is_refused_before_it_is_buffered() -> None:
    reader = Mp4Probe(max_moof_bytes=1024)
    with pytest.raises(NotMp4, match="moof: the box is too large"):
        reader.feed(EMPTY_FRAGMENTED + struct.pack(">I4s", 10**6, b"moof"))


def test_a_moof_running_to_the_end_of_the_file_is_bounded_too() -> None:
    reader = Mp4Probe(max_moof_bytes=1024)
    reader.feed(EMPTY_FRAGMENTED + struct.pack(">I4s", 0, b"moof"))
    with pytest.raises(NotMp4, match="moof: the box is too large"):
        reader.feed(bytes(2048))
