"""Property-based tests of the MP4 reader: generated movies and fragments (with numbers
that break parsers: 0, all ones, 2**31, overflowing products), box trees of any shape and
changed bytes, fed in any chunking, end in a duration or the reader's own NotMp4, never
another exception, and in bounded time; honest movies get their samples' duration."""

from __future__ import annotations

import struct
import time
from datetime import timedelta
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.clip_ingest.domain.mp4 import MAX_SECONDS, Mp4Probe, NotMp4
from tests import mp4_boxes as b

SECONDS_PER_INPUT = 2.0
"""An input of a few kilobytes takes milliseconds; this is far from any real run."""

u32 = st.one_of(
    st.sampled_from([0, 1, 2, 100, 1000, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1]),
    st.integers(0, 2**32 - 1),
)
i32 = st.one_of(st.sampled_from([-(2**31), -1, 0, 1, 2**31 - 1]), st.integers(-(2**31), 2**31 - 1))
u64 = st.one_of(u32, st.sampled_from([2**63, 2**64 - 2, 2**64 - 1]), st.integers(0, 2**64 - 1))
small = st.integers(0, 200)


def mostly(sane: st.SearchStrategy[int], wild: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    """Sane 11 times in 12, so that generated movies often get past the first checks to
    the later ones; wild (boundaries, overflows) the 12th."""
    return st.sampled_from([sane] * 11 + [wild]).flatmap(lambda chosen: chosen)


timescales = mostly(st.sampled_from([1000, 10240, 16000, 44100, 90000]), st.one_of(st.just(0), u32))
counts = mostly(st.integers(0, 40), u32)
deltas = mostly(st.integers(0, 4000), u32)


def feed(data: bytes, chunk: int) -> str:
    """What the reader makes of `data` fed `chunk` bytes at a time: a duration or a refusal;
    anything else fails the test, as does taking too long."""
    started = time.monotonic()
    reader = Mp4Probe()
    try:
        for at in range(0, len(data), chunk):
            reader.feed(data[at : at + chunk])
            if reader.duration is not None:
                assert timedelta(0) <= reader.duration <= timedelta(seconds=MAX_SECONDS)
        result = f"{reader.finish().duration}"
    except NotMp4 as error:
        result = f"refused: {error}"
    assert result != "refused: ", "a refusal must say why"
    assert time.monotonic() - started < SECONDS_PER_INPUT, "the reader took too long"
    return result


@st.composite
def tracks(draw: st.DrawFn, track_id: int, fragmented: bool) -> tuple[bytes, int]:
    """A trak, and what its presentation lasts if its samples are all there (movie ticks)."""
    runs = draw(st.lists(st.tuples(counts, deltas), max_size=4))
    if fragmented and draw(st.booleans()):
        runs = []
    samples = sum(n for n, _ in runs)
    timescale = draw(timescales)
    edits = None
    if draw(st.booleans()):
        edit = st.tuples(
            mostly(st.integers(0, 8000), u32),
            mostly(st.integers(-1, 2000), i32),
            mostly(st.just(1), st.sampled_from([0, 2, -1])),
        )
        edits = draw(st.lists(edit, max_size=3))
    offsets = None
    if samples and draw(st.booleans()):
        # Mostly a run per sample (reordered frames), sometimes any runs at all.
        per_sample = st.lists(
            st.integers(-200, 2000), min_size=min(samples, 200), max_size=min(samples, 200)
        ).map(lambda values: [(1, v) for v in values])
        wild = st.lists(st.tuples(counts, i32), max_size=4)
        offsets = draw(
            per_sample if samples <= 200 and draw(st.sampled_from([1, 1, 1, 0])) else wild
        )
    media = sum(count * delta for count, delta in runs)
    honest = (min(-(-media * 1000 // max(timescale, 1)), 2**32 - 1), min(media, 2**32 - 1))
    shown = sum(e[0] for e in edits) if edits else honest[0]
    trak = b.trak(
        draw(mostly(st.just(track_id), u32)),
        timescale,
        runs,
        tkhd_duration=draw(mostly(st.just(honest[0]), u32)),
        mdhd_duration=draw(mostly(st.just(honest[1]), u32)),
        movie_timescale=1000,
        edits=edits,
        offsets=offsets,
        samples=draw(mostly(st.just(min(samples, 2**32 - 1)), small)),
    )
    return trak, shown


@st.composite
def fragments(draw: st.DrawFn, count: int) -> bytes:
    out = b""
    decode_times = [0] * (count + 2)
    for _ in range(draw(st.integers(0, 5))):
        trafs = []
        for _ in range(draw(st.integers(0, 3))):
            track_id = draw(mostly(st.integers(1, count), u32))
            per_sample = draw(st.booleans())
            number = draw(st.integers(0, 8)) if per_sample else draw(counts)
            durations = (
                draw(st.lists(deltas, min_size=number, max_size=number)) if per_sample else None
            )
            default = draw(st.none() | deltas)
            at = decode_times[track_id] if track_id <= count else 0
            decode_time = draw(st.none() | st.just(at) | mostly(st.integers(0, 10**6), u64))
            trafs.append(
                b.traf(
                    track_id,
                    durations,
                    count=None if per_sample else number,
                    default=default,
                    decode_time=decode_time,
                    offsets=draw(
                        st.lists(st.integers(-100, 1000), min_size=number, max_size=number)
                    )
                    if per_sample and draw(st.booleans())
                    else None,
                    tfhd_flags=draw(mostly(st.sampled_from([0, 0x020000]), st.just(0x010000))),
                )
            )
            if track_id <= count:
                step = sum(durations) if durations is not None else number * (default or 0)
                decode_times[track_id] = min((decode_time or at) + step, 2**64 - 1)
        out += b.moof(*trafs) + b.mdat(draw(st.integers(0, 8)))
    return out


@st.composite
def movies(draw: st.DrawFn) -> bytes:
    """ftyp, a moov of 1-3 generated tracks, maybe fragments, and some media."""
    fragmented = draw(st.booleans())
    count = draw(st.integers(1, 3))
    traks, shown = zip(
        *(draw(tracks(number + 1, fragmented)) for number in range(count)), strict=True
    )
    extends = b""
    if fragmented:
        honest = [(n, draw(deltas)) for n in range(1, count + 1)]
        wild = st.lists(st.tuples(st.integers(1, count + 1), deltas), max_size=count)
        defaults = draw(st.just(honest) if draw(st.sampled_from([1, 1, 1, 1, 0])) else wild)
        extends = b.mvex(defaults, mehd=draw(st.none() | mostly(st.integers(0, 10_000), u32)))
    version = draw(st.sampled_from([0, 1]))
    longest = min(max(shown), 2**32 - 1)
    stated = mostly(st.just(longest) | st.integers(0, 10_000), u64 if version else u32)
    header = b.mvhd(draw(mostly(st.just(1000), timescales)), draw(stated), version)
    moov = b.box(b"moov", header, *traks, extends)
    media = b.mdat(draw(st.integers(0, 64)))
    tail = draw(fragments(count)) if fragmented else b""
    return b.FTYP + (moov + media if draw(st.booleans()) else media + moov) + tail


def changed(data: bytes, how: str, at: int, extra: bytes) -> bytes:
    at %= max(len(data), 1)
    if how == "flip":
        return data[:at] + bytes([data[at] ^ (extra[0] if extra else 0xFF)]) + data[at + 1 :]
    if how == "truncate":
        return data[:at]
    if how == "insert":
        return data[:at] + extra + data[at:]
    if how == "delete":
        return data[:at] + data[at + len(extra) + 1 :]
    if how == "word":  # a 32-bit field set to a boundary value
        value = struct.pack(">I", [0, 1, 2**31, 2**32 - 1][len(extra) % 4])
        return data[:at] + value + data[at + 4 :]
    return data


chunk_sizes = st.one_of(st.sampled_from([1, 3, 8, 4096, 2**20]), st.integers(1, 5000))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(movies(), chunk_sizes)
def test_generated_movies_end_in_a_duration_or_a_refusal(movie: bytes, chunk: int) -> None:
    feed(movie, chunk)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    movies(),
    chunk_sizes,
    st.sampled_from(["flip", "truncate", "insert", "delete", "word", "none"]),
    st.integers(0, 2**16),
    st.binary(max_size=24),
)
def test_changed_movies_end_in_a_duration_or_a_refusal(
    movie: bytes, chunk: int, how: str, at: int, extra: bytes
) -> None:
    feed(changed(movie, how, at, extra), chunk)


KINDS = [
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"mvex", b"moof", b"traf",
    b"mvhd", b"tkhd", b"mdhd", b"elst", b"stts", b"ctts", b"stsz", b"stz2", b"trex",
    b"mehd", b"tfhd", b"tfdt", b"trun", b"mdat", b"free", b"ftyp",
]  # fmt: skip


def _tree(kinds: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    leaf = st.builds(b.box, kinds, st.binary(max_size=48))
    full = st.builds(
        lambda kind, version, flags, body: b.full(kind, version, flags, body),
        kinds,
        st.sampled_from([0, 1, 2]),
        st.integers(0, 2**24 - 1),
        st.binary(max_size=48),
    )
    return st.recursive(
        leaf | full,
        lambda children: st.builds(
            lambda kind, parts: b.box(kind, *parts), kinds, st.lists(children, max_size=4)
        ),
        max_leaves=24,
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_tree(st.sampled_from(KINDS)), max_size=6), chunk_sizes)
def test_box_trees_of_any_shape_end_in_a_duration_or_a_refusal(
    boxes: list[bytes], chunk: int
) -> None:
    feed(b.FTYP + b"".join(boxes), chunk)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096), chunk_sizes)
def test_random_bytes_after_ftyp_end_in_a_duration_or_a_refusal(junk: bytes, chunk: int) -> None:
    feed(b.FTYP + junk, chunk)


@st.composite
def honest_movies(draw: st.DrawFn) -> tuple[bytes, Fraction]:
    """A movie whose headers say what its samples last, and that duration."""
    longest = Fraction(0)
    traks = []
    for track_id in range(1, draw(st.integers(1, 3)) + 1):
        timescale = draw(st.sampled_from([1000, 10240, 16000, 44100, 90000]))
        runs = draw(
            st.lists(
                st.tuples(st.integers(1, 50), st.integers(1, timescale // 4)),
                min_size=1,
                max_size=4,
            )
        )
        media = sum(count * delta for count, delta in runs)
        longest = max(longest, Fraction(media, timescale))
        movie_ticks = -(-media * 1000 // timescale)  # what a muxer writes: rounded up
        traks.append(b.trak(track_id, timescale, runs, tkhd_duration=movie_ticks))
    moov = b.moov(*traks, duration=-(-longest * 1000 // 1))
    return b.FTYP + moov + b.mdat(), longest


@settings(max_examples=100, deadline=None)
@given(honest_movies(), chunk_sizes)
def test_honest_movies_last_what_their_samples_last(
    honest: tuple[bytes, Fraction], chunk: int
) -> None:
    movie, seconds = honest
    assert feed(movie, chunk) == str(timedelta(microseconds=int(seconds * 1_000_000)))
