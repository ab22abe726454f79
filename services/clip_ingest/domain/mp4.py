"""An incremental reader of an MP4's top-level boxes: is it MP4, and how long is it?

Written by hand because no maintained Python MP4 library parses a stream as it
arrives (pymp4 and PyAV want the whole file or a seekable one); the clip must be
judged chunk by chunk so that memory stays bounded and an over-long or non-MP4
clip is refused before the rest of it is read. Only what ISO/IEC 14496-12 says
about box framing and `mvhd`/`mehd` is needed:

* every box is `size (u32) | type (4 chars)`, `size == 1` means a u64 size follows,
  `size == 0` means "to the end of the file" (only the last box);
* `ftyp` must come first; `moov` may come before or after `mdat`;
* `moov/mvhd` gives the timescale and the duration; a fragmented MP4 whose mvhd
  duration is 0 gives it in `moov/mvex/mehd`.

Media data (`mdat`) is skipped by size, never buffered; `moov` is buffered (it is a
few kilobytes for a short clip) up to a limit.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import timedelta

MAX_MOOV_BYTES = 4 * 1024 * 1024
"""moov of a 6-second clip is kilobytes; anything near this is not a short clip."""
_PRINTABLE = frozenset(range(0x20, 0x7F))


class NotMp4(ValueError):
    """The bytes are not a well-formed MP4 (or its duration cannot be read)."""


@dataclass(frozen=True)
class Mp4Info:
    duration: timedelta


def _children(data: memoryview) -> dict[bytes, memoryview]:
    """Boxes directly inside a container's payload, first of each type."""
    found: dict[bytes, memoryview] = {}
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            if offset + 16 > len(data):
                raise NotMp4("the MP4 movie header is cut short")
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:
            size = len(data) - offset
        if size < header or offset + size > len(data):
            raise NotMp4("the MP4 movie header has a box that overruns its container")
        found.setdefault(bytes(kind), data[offset + header : offset + size])
        offset += size
    return found


def _full_box_times(payload: memoryview, what: str) -> tuple[int, int]:
    """(version, payload offset after version/flags) of a FullBox."""
    if len(payload) < 4:
        raise NotMp4(f"the MP4 {what} box is too short")
    return payload[0], 4


def movie_duration(moov: memoryview) -> timedelta:
    """Duration from a complete moov payload."""
    boxes = _children(moov)
    mvhd = boxes.get(b"mvhd")
    if mvhd is None:
        raise NotMp4("the MP4 has no movie header (moov/mvhd)")
    version, at = _full_box_times(mvhd, "mvhd")
    try:
        if version == 1:
            timescale, duration = struct.unpack_from(">IQ", mvhd, at + 16)
            unknown = duration == 0xFFFFFFFFFFFFFFFF
        elif version == 0:
            timescale, duration = struct.unpack_from(">II", mvhd, at + 8)
            unknown = duration == 0xFFFFFFFF
        else:
            raise NotMp4(f"the MP4 movie header has unknown version {version}")
    except struct.error:
        raise NotMp4("the MP4 movie header (mvhd) is too short") from None
    if timescale == 0:
        raise NotMp4("the MP4 movie header has a timescale of 0")
    if duration == 0 and b"mvex" in boxes:
        # Fragmented MP4: the whole duration is in the movie extends header, if anywhere.
        mehd = _children(boxes[b"mvex"]).get(b"mehd")
        if mehd is None:
            raise NotMp4("the fragmented MP4 does not state its duration (moov/mvex/mehd)")
        version, at = _full_box_times(mehd, "mehd")
        try:
            (duration,) = struct.unpack_from(">Q" if version == 1 else ">I", mehd, at)
        except struct.error:
            raise NotMp4("the MP4 mehd box is too short") from None
    if unknown or duration == 0:
        raise NotMp4("the MP4 does not state its duration")
    return timedelta(microseconds=duration * 1_000_000 // timescale)


class Mp4Probe:
    """Feed the clip's bytes in order; learn its duration as soon as moov is complete."""

    def __init__(self, max_moov_bytes: int = MAX_MOOV_BYTES) -> None:
        self._max_moov = max_moov_bytes
        self._header = bytearray()  # the box header being gathered (8 or 16 bytes)
        self._kind = b""
        self._remaining = 0  # bytes of the current box's payload still to come
        self._to_end = False  # current box has size 0: it runs to the end of the file
        self._moov: bytearray | None = None
        self._boxes = 0
        self.duration: timedelta | None = None

    def feed(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            if self._to_end:
                self._take(view)
                return
            if self._remaining:
                taken = min(self._remaining, len(view))
                self._take(view[:taken])
                self._remaining -= taken
                view = view[taken:]
                if not self._remaining:
                    self._box_done()
                continue
            view = self._gather_header(view)

    def _gather_header(self, view: memoryview) -> memoryview:
        need = 8 if len(self._header) < 8 else 16
        taken = min(need - len(self._header), len(view))
        self._header += view[:taken]
        view = view[taken:]
        if len(self._header) < 8:
            return view
        size, kind = struct.unpack_from(">I4s", self._header)
        if size == 1 and len(self._header) < 16:
            return view
        header_length = len(self._header)
        if size == 1:
            (size,) = struct.unpack_from(">Q", self._header, 8)
        self._start_box(kind, size, header_length)
        self._header.clear()
        return view

    def _start_box(self, kind: bytes, size: int, header_length: int) -> None:
        if not set(kind) <= _PRINTABLE:
            raise NotMp4("not an MP4 file: a box type is not printable")
        if self._boxes == 0 and kind != b"ftyp":
            raise NotMp4("not an MP4 file: it does not start with an 'ftyp' box")
        self._boxes += 1
        self._kind = kind
        if kind == b"moov":
            if self._moov is not None or self.duration is not None:
                raise NotMp4("the MP4 has two movie boxes (moov)")
            self._moov = bytearray()
        if size == 0:
            self._to_end = True
            self._remaining = 0
            return
        if size < header_length:
            raise NotMp4(f"the MP4 box '{kind.decode()}' has an impossible size {size}")
        self._remaining = size - header_length
        if kind == b"moov" and self._remaining > self._max_moov:
            raise NotMp4("the MP4 movie box (moov) is too large for a short clip")
        if not self._remaining:
            self._box_done()

    def _take(self, piece: memoryview) -> None:
        if self._moov is not None:
            if len(self._moov) + len(piece) > self._max_moov:
                raise NotMp4("the MP4 movie box (moov) is too large for a short clip")
            self._moov += piece

    def _box_done(self) -> None:
        if self._moov is not None:
            moov, self._moov = self._moov, None
            self.duration = movie_duration(memoryview(moov))

    def finish(self) -> Mp4Info:
        """The clip ended: it must end on a box boundary and have had a movie header."""
        if self._to_end:
            self._to_end = False
            self._box_done()
        elif self._header or self._remaining:
            raise NotMp4("the MP4 ends in the middle of a box")
        if self._boxes == 0:
            raise NotMp4("not an MP4 file: it is empty")
        if self.duration is None:
            raise NotMp4("the MP4 has no movie box (moov): its duration is unknown")
        return Mp4Info(self.duration)
