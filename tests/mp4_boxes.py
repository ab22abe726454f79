"""MP4 boxes built and edited by hand, for clips that lie (and honest ones to compare).

Builders write ISO/IEC 14496-12 boxes with only the fields the clip reader looks at
set; `edit` and `insert` change boxes inside a real (PyAV-made) file, fixing the sizes
of the boxes around them. Used by the MP4 reader's unit and fuzz tests and by the
integration test that uploads lying clips.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence

CONTAINERS = frozenset(
    {b"moov", b"trak", b"edts", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf"}
)


def box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return box(kind, bytes([version]) + flags.to_bytes(3, "big"), *parts)


FTYP = box(b"ftyp", b"isom" + bytes(4) + b"isomavc1")


def mvhd(timescale: int, duration: int, version: int = 0) -> bytes:
    if version == 1:
        times = struct.pack(">QQIQ", 0, 0, timescale, duration)
    else:
        times = struct.pack(">IIII", 0, 0, timescale, duration)
    return full(b"mvhd", version, 0, times, bytes(80))


def tkhd(track_id: int, duration: int, version: int = 0) -> bytes:
    if version == 1:
        times = struct.pack(">QQIIQ", 0, 0, track_id, 0, duration)
    else:
        times = struct.pack(">IIIII", 0, 0, track_id, 0, duration)
    return full(b"tkhd", version, 3, times, bytes(60))


def mdhd(timescale: int, duration: int, version: int = 0) -> bytes:
    if version == 1:
        times = struct.pack(">QQIQ", 0, 0, timescale, duration)
    else:
        times = struct.pack(">IIII", 0, 0, timescale, duration)
    return full(b"mdhd", version, 0, times, bytes(4))


def elst(edits: Sequence[tuple[int, ...]], version: int = 0) -> bytes:
    """Edits of (duration in the movie timescale, media time[, rate]); rate 1 unless said."""
    entry = ">QqhH" if version == 1 else ">IihH"
    rows = b"".join(struct.pack(entry, e[0], e[1], e[2] if len(e) == 3 else 1, 0) for e in edits)
    return box(b"edts", full(b"elst", version, 0, struct.pack(">I", len(edits)), rows))


def stts(runs: Sequence[tuple[int, int]]) -> bytes:
    rows = b"".join(struct.pack(">II", count, delta) for count, delta in runs)
    return full(b"stts", 0, 0, struct.pack(">I", len(runs)), rows)


def ctts(runs: Sequence[tuple[int, int]], version: int = 0) -> bytes:
    rows = b"".join(struct.pack(">Ii", count, offset) for count, offset in runs)
    return full(b"ctts", version, 0, struct.pack(">I", len(runs)), rows)


def stsz(count: int) -> bytes:
    return full(b"stsz", 0, 0, struct.pack(">II", 1000, count))


def trak(
    track_id: int,
    timescale: int,
    runs: Sequence[tuple[int, int]],
    *,
    tkhd_duration: int | None = None,
    mdhd_duration: int | None = None,
    movie_timescale: int = 1000,
    edits: Sequence[tuple[int, ...]] | None = None,
    offsets: Sequence[tuple[int, int]] | None = None,
    samples: int | None = None,
) -> bytes:
    """A track whose samples are `runs` of (count, duration); the headers say what the
    samples last unless told otherwise."""
    media = sum(count * delta for count, delta in runs)
    if mdhd_duration is None:
        mdhd_duration = media
    if tkhd_duration is None:
        tkhd_duration = sum(e[0] for e in edits) if edits else media * movie_timescale // timescale
    table = stts(runs) + (ctts(offsets) if offsets is not None else b"")
    table += stsz(sum(count for count, _ in runs) if samples is None else samples)
    return box(
        b"trak",
        tkhd(track_id, tkhd_duration),
        elst(edits) if edits is not None else b"",
        box(b"mdia", mdhd(timescale, mdhd_duration), box(b"minf", box(b"stbl", table))),
    )


def mvex(defaults: Iterable[tuple[int, int]], mehd: int | None = None) -> bytes:
    """trex (track_ID, default_sample_duration) for each track, and a mehd if given."""
    extends = full(b"mehd", 0, 0, struct.pack(">I", mehd)) if mehd is not None else b""
    for track_id, duration in defaults:
        extends += full(b"trex", 0, 0, struct.pack(">IIIII", track_id, 1, duration, 0, 0))
    return box(b"mvex", extends)


def moov(*traks: bytes, duration: int, timescale: int = 1000, extends: bytes = b"") -> bytes:
    return box(b"moov", mvhd(timescale, duration), *traks, extends)


def traf(
    track_id: int,
    durations: Sequence[int] | None = None,
    *,
    count: int | None = None,
    default: int | None = None,
    decode_time: int | None = None,
    offsets: Sequence[int] | None = None,
    tfhd_flags: int = 0,
) -> bytes:
    """A track fragment: samples with `durations` each, or `count` samples taking their
    duration from `default` (tfhd) or the trex."""
    flags = tfhd_flags | (0x08 if default is not None else 0)
    header = struct.pack(">I", track_id)
    if default is not None:
        header += struct.pack(">I", default)
    parts = [full(b"tfhd", 0, flags, header)]
    if decode_time is not None:
        parts.append(full(b"tfdt", 1, 0, struct.pack(">Q", decode_time)))
    run_flags = (0x100 if durations is not None else 0) | (0x800 if offsets is not None else 0)
    number = len(durations) if durations is not None else (count or 0)
    rows = b""
    for index in range(number if run_flags else 0):
        if durations is not None:
            rows += struct.pack(">I", durations[index])
        if offsets is not None:
            rows += struct.pack(">i", offsets[index])
    parts.append(full(b"trun", 1, run_flags, struct.pack(">I", number), rows))
    return box(b"traf", *parts)


def moof(*trafs: bytes) -> bytes:
    return box(b"moof", full(b"mfhd", 0, 0, struct.pack(">I", 1)), *trafs)


def mdat(size: int = 16) -> bytes:
    return box(b"mdat", bytes(size))


# --- editing real files --------------------------------------------------------------


def _walk(
    data: bytes | bytearray, start: int, end: int, path: tuple[bytes, ...]
) -> list[tuple[tuple[bytes, ...], int, int, int]]:
    """(path, box start, payload start, box end) of every box, containers descended."""
    found = []
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, at + 8)
            header = 16
        elif size == 0:
            size = end - at
        here = (*path, kind)
        found.append((here, at, at + header, at + size))
        if kind in CONTAINERS:
            found += _walk(data, at + header, at + size, here)
        at += size
    return found


def edit(data: bytes, path: tuple[bytes, ...], change: Callable[[bytearray], None]) -> bytes:
    """`change` each box at `path` (e.g. (b"moov", b"trak", b"tkhd")) in place; the
    payload (after the box header) keeps its length."""
    out = bytearray(data)
    boxes = [b for b in _walk(out, 0, len(out), ()) if b[0] == path]
    assert boxes, f"no {path} in the file"
    for _, _, payload, end in boxes:
        body = bytearray(out[payload:end])
        change(body)
        assert len(body) == end - payload
        out[payload:end] = body
    return bytes(out)


def rename(data: bytes, path: tuple[bytes, ...], kind: bytes) -> bytes:
    """Every box at `path` becomes a box of type `kind` (b"free": gone for a reader)."""
    out = bytearray(data)
    for where, start, _, _ in _walk(out, 0, len(out), ()):
        if where == path:
            out[start + 4 : start + 8] = kind
    return bytes(out)


def insert(data: bytes, path: tuple[bytes, ...], new: bytes) -> bytes:
    """`new` boxes at the start of the (first) container at `path`; the containers
    around it grow (32-bit sizes)."""
    out = bytearray(data)
    boxes = _walk(out, 0, len(out), ())
    target = next(b for b in boxes if b[0] == path)
    for where, start, _, _ in boxes:
        if where == path[: len(where)]:
            (size,) = struct.unpack_from(">I", out, start)
            struct.pack_into(">I", out, start, size + len(new))
    out[target[2] : target[2]] = new
    return bytes(out)


_DURATION_AT = {
    (b"mvhd", 0): (16, ">I"),
    (b"mvhd", 1): (24, ">Q"),
    (b"mdhd", 0): (16, ">I"),
    (b"mdhd", 1): (24, ">Q"),
    (b"tkhd", 0): (20, ">I"),
    (b"tkhd", 1): (28, ">Q"),
}


def set_duration(kind: bytes, duration: int) -> Callable[[bytearray], None]:
    """A `change` that sets the duration of an mvhd, tkhd or mdhd (either version)."""

    def change(body: bytearray) -> None:
        at, fmt = _DURATION_AT[kind, body[0]]
        struct.pack_into(fmt, body, at, duration)

    return change


def set_edits(duration: int, media_time: int | None = None) -> Callable[[bytearray], None]:
    """A `change` that sets every edit of an elst to `duration` (and `media_time`)."""

    def change(body: bytearray) -> None:
        (count,) = struct.unpack_from(">I", body, 4)
        wide = body[0] == 1
        for number in range(count):
            at = 8 + number * (20 if wide else 12)
            struct.pack_into(">Q" if wide else ">I", body, at, duration)
            if media_time is not None:
                struct.pack_into(">q" if wide else ">i", body, at + (8 if wide else 4), media_time)

    return change
