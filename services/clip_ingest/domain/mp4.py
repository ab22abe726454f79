"""An incremental reader of an MP4 as it streams in: is it MP4, and how long is its media?

A clip's duration is what its samples last, not what its headers say: the sample
durations of every track (`stts` in `moov`, and `trun` in every movie fragment with the
`tfhd`/`trex` defaults, per track_ID, in each track's `mdhd` timescale), as the track's
edit list (`elst`) presents them (ISO/IEC 14496-12 8.6.6); the clip lasts as long as its
longest track. The headers' claims (`mvhd`, `tkhd`, `mdhd`, `mvex/mehd`) must agree with
the samples within one frame (the track's longest sample, at most a second, plus a tick
of rounding). A header of 6 s over a minute of samples, a `mehd` of 6 s followed by a
minute of fragments, an edit list that hides all but 6 s of a minute, samples composed
on top of each other: each is refused with a `NotMp4` naming the box, as are boxes that
cannot be read and numbers beyond any clip (more than a day; never an OverflowError).

Written by hand because no maintained Python library reads an MP4 as it streams and
checks its sample tables against its headers in bounded memory: pymp4 (on construct,
last released 2023) and cs.iso14496 parse a whole box from a buffer or file into a tree
of Python objects, PyAV (libavformat) wants the whole file or a seekable one and takes
the headers' word for the duration; none checks that `stts` or `trun` agree with
`mvhd`/`mehd`. The clip is judged chunk by chunk so that
memory stays bounded and an over-long or lying clip is refused before the rest is read.

What is read (everything else is skipped by size, never buffered):

* box framing: `size (u32) | type (4 chars)`, `size == 1` means a u64 size follows,
  `size == 0` means "to the end of the file" (only the last box); `ftyp` comes first;
* `moov` (before or after `mdat`; buffered up to 4 MiB, kilobytes for a short clip):
  `mvhd` timescale and duration; per `trak` (at most 16): `tkhd` id and duration,
  `edts/elst`, `mdhd` timescale and duration, `stbl/stts` (decoding times), `ctts`
  (composition offsets), `stsz`/`stz2` (sample count); `mvex/mehd`, `mvex/trex` defaults;
* each `moof` (after a `moov` with `mvex`; buffered up to 256 KiB, one at a time, at most
  4096 of them): per `traf`, `tfhd` (track, default duration), `tfdt` and `trun` (sample
  count, durations, composition offsets). A `tfdt` may leave a gap after the track's
  samples so far (it counts: players keep to `tfdt`, and ffmpeg's `frag_every_frame`
  writes samples of duration 0 and lets `tfdt` carry the time), never go back by more
  than a frame.

A track's samples must be shown over as long as they last (their composition times, with
`ctts`/`trun` offsets, span their decoding times within a frame: reordered frames do,
frames piled on one instant do not). Edit lists are read for rate-1 edits and empty edits
(`media_time == -1`); a last edit of duration 0 in a fragmented file runs to the end of
the media, as 14496-12 allows. An edit list that hides more than a frame of its track's
media is refused (the stored media would outlast the duration it is counted as); one that
extends it (empty edits, edits past the media) counts at its full length. Dwell edits
(rate 0), other rates and more than 64 edits are refused rather than guessed at. In a
fragmented file `mvhd`, `tkhd` and `mdhd` may describe the initial movie (the samples in
`moov`, none after an empty moov) or the whole, and all-ones there means "not known yet";
in a file without fragments they describe the whole and all-ones is refused.

Time is linear in the bytes read: the worst input found (8 MiB of minimal `trun` boxes)
takes about 1.3 s of one core on the shared development machine; a 6-second 640x360
clip (progressive, or fragmented with audio) takes 0.2-0.5 ms.
"""

from __future__ import annotations

import itertools
import operator
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from fractions import Fraction

MAX_MOOV_BYTES = 4 * 1024 * 1024
"""moov of a 6-second clip is kilobytes; anything near this is not a short clip."""
MAX_MOOF_BYTES = 256 * 1024
"""A movie fragment's header is a few bytes per sample: kilobytes for a short clip."""
MAX_SECONDS = 24 * 3600
"""Durations beyond this are no clip's: refused as overflows, never carried further."""
MAX_EDITS = 64
"""A camera's edit list has one or two edits."""
MAX_TRACKS = 16
"""A camera's clip has a video track, maybe audio and metadata."""
MAX_FRAGMENTS = 4096
"""A 6-second clip fragmented at every frame of 60 fps video and AAC audio has ~450."""
MAX_FRAME = 1
"""The most one frame of tolerance may be (seconds), however long a track's samples are."""
_PRINTABLE = frozenset(range(0x20, 0x7F))
_ONES = {0: 0xFFFFFFFF, 1: 0xFFFFFFFFFFFFFFFF}


class NotMp4(ValueError):
    """The bytes are not a well-formed MP4, or its boxes disagree about its duration."""


@dataclass(frozen=True)
class Mp4Info:
    duration: timedelta


def _seconds(value: Fraction) -> str:
    """Seconds to the millisecond, exactly (a float would round a 64-bit duration)."""
    whole, millis = divmod(round(value * 1000), 1000)
    return f"{whole}.{millis:03d}".rstrip("0").removesuffix(".") + (".0" if millis == 0 else "")


# --- reading boxes -------------------------------------------------------------------


def _boxes(data: memoryview, where: str) -> list[tuple[bytes, memoryview]]:
    """The boxes directly inside a container's payload, in order."""
    found: list[tuple[bytes, memoryview]] = []
    offset = 0
    while offset < len(data):
        if offset + 8 > len(data):
            raise NotMp4(f"{where}: a box inside it is cut short")
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            if offset + 16 > len(data):
                raise NotMp4(f"{where}: a box inside it is cut short")
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:
            size = len(data) - offset
        if size < header or offset + size > len(data):
            raise NotMp4(f"{where}: a box inside it overruns its container")
        found.append((bytes(kind), data[offset + header : offset + size]))
        offset += size
    return found


def _one(boxes: list[tuple[bytes, memoryview]], kind: bytes, where: str) -> memoryview | None:
    """The box of this type, if there is one; two of them are refused (a reader that takes
    the first and a player that takes the last would disagree)."""
    found = [payload for name, payload in boxes if name == kind]
    if len(found) > 1:
        raise NotMp4(f"{kind.decode()}: {where} has {len(found)} of them")
    return found[0] if found else None


def _need(boxes: list[tuple[bytes, memoryview]], kind: bytes, where: str) -> memoryview:
    payload = _one(boxes, kind, where)
    if payload is None:
        raise NotMp4(f"{kind.decode()}: {where} has none")
    return payload


def _full(payload: memoryview, name: str, versions: tuple[int, ...] = (0, 1)) -> tuple[int, int]:
    """(version, flags) of a FullBox."""
    if len(payload) < 4:
        raise NotMp4(f"{name}: the box is cut short")
    version = payload[0]
    if version not in versions:
        raise NotMp4(f"{name}: unknown version {version}")
    return version, int.from_bytes(payload[1:4], "big")


def _read(fmt: str, payload: memoryview, at: int, name: str) -> tuple[int, ...]:
    try:
        return struct.unpack_from(fmt, payload, at)
    except struct.error:
        raise NotMp4(f"{name}: the box is cut short") from None


def _table(payload: memoryview, at: int, entry: str, name: str) -> Iterator[tuple[int, ...]]:
    """The entries of a table that starts with its u32 entry count at `at`."""
    (count,) = _read(">I", payload, at, name)
    size = struct.calcsize(entry)
    if count * size > len(payload) - at - 4:
        raise NotMp4(f"{name}: {count} entries do not fit in the box")
    return struct.iter_unpack(entry, payload[at + 4 : at + 4 + count * size])


def _stated(box: str, ticks: int, version: int, fragmented: bool, who: str = "") -> bool:
    """Whether a header's duration is a claim to check. All ones means "unknown": allowed
    in a fragmented file (the whole is not known when moov is written), not otherwise."""
    if ticks != _ONES[version]:
        return True
    if fragmented:
        return False
    raise NotMp4(f"{box}: {who}states an unknown duration (all ones); a clip states its own")


# --- tracks --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Edit:
    duration: int  # movie timescale; 0 on the last edit of a fragmented file: to the end
    media_time: int  # media timescale; -1: an empty edit


@dataclass
class _Track:
    track_id: int
    timescale: int  # mdhd
    movie_timescale: int
    edits: tuple[_Edit, ...] | None
    to_end: bool = False  # the last edit runs to the end of the media
    edited: Fraction = Fraction(0)  # what the edits present, but a last edit to the end
    default_duration: int | None = None  # trex
    samples: int = 0
    first: int | None = None  # decoding time of the first sample
    next_dts: int = 0  # of the next sample: the last one's end, or its fragment's tfdt
    end: int = 0  # the latest end of a sample in decoding time
    composed: tuple[int, int] | None = None  # earliest and latest composition time
    max_delta: int = 0
    fragments: bool = False  # samples came in trun
    offsets_in: str = "ctts"

    def add(self, count: int, delta: int, offset: int, box: str) -> None:
        """`count` samples of duration `delta` and composition offset `offset`."""
        if count:
            start = self.next_dts + offset
            self._counted(count, start, start + count * delta, count * delta, delta, box)

    def add_each(self, durations: list[int], offsets: list[int] | None, box: str) -> None:
        """Samples with a duration (and maybe a composition offset) each."""
        if not durations:
            return
        times = list(itertools.accumulate(durations, initial=self.next_dts))
        if offsets is None:
            start, end = times[0], times[-1]
        else:  # sample i is shown from times[i] + offsets[i] to times[i + 1] + offsets[i]
            start = min(map(operator.add, times[:-1], offsets))
            end = max(map(operator.add, times[1:], offsets))
        total = times[-1] - self.next_dts
        self._counted(len(durations), start, end, total, max(durations), box)

    def _counted(
        self, count: int, start: int, end: int, total: int, longest: int, box: str
    ) -> None:
        low, high = self.composed or (start, end)
        self.composed = (min(low, start), max(high, end))
        if self.first is None:
            self.first = self.next_dts
        self.next_dts += total
        self.end = max(self.end, self.next_dts)
        self.samples += count
        self.max_delta = max(self.max_delta, longest)
        if self.media > MAX_SECONDS * self.timescale:
            raise NotMp4(
                f"{box}: track {self.track_id}'s samples last more than {MAX_SECONDS} s "
                "(an overflow, not a clip)"
            )

    def skip_to(self, decode_time: int) -> None:
        """A fragment's tfdt: where its samples start. The first one sets where the track's
        media starts; later ones may leave a gap (time that counts: players keep to tfdt,
        and some muxers write samples of duration 0 and let tfdt carry the time) but may
        not go back by more than a frame."""
        if self.first is None:
            self.next_dts = decode_time
        elif self.next_dts - decode_time > self.frame_ticks():
            raise NotMp4(
                f"tfdt: track {self.track_id}'s fragment starts at "
                f"{_seconds(Fraction(decode_time, self.timescale))} s, before its samples so "
                f"far end ({_seconds(Fraction(self.next_dts, self.timescale))} s)"
            )
        elif decode_time - self.first > MAX_SECONDS * self.timescale:
            raise NotMp4(
                f"tfdt: track {self.track_id}'s fragment starts more than {MAX_SECONDS} s "
                "after its first sample (an overflow, not a clip)"
            )
        else:
            self.next_dts = decode_time

    @property
    def media(self) -> int:
        """How long the samples last (media timescale): from the first one's decoding time
        to the end of the last."""
        return 0 if self.first is None else self.end - self.first

    @property
    def media_seconds(self) -> Fraction:
        return Fraction(self.media, self.timescale)

    def frame_ticks(self) -> int:
        """One frame of slack (media timescale): the longest sample, at most MAX_FRAME,
        plus a tick of rounding in the media's and in the movie's timescale."""
        longest = min(self.max_delta, self.timescale * MAX_FRAME)
        return longest + 1 + -(-self.timescale // self.movie_timescale)

    def frame(self) -> Fraction:
        return Fraction(self.frame_ticks(), self.timescale)

    def presentation(self) -> Fraction:
        """How long the track is shown: its edits' durations, or its samples'."""
        if self.edits is None:
            return self.media_seconds
        if not self.to_end or self.composed is None:
            return self.edited
        rest = max(0, self.composed[1] - self.edits[-1].media_time)
        return self.edited + Fraction(rest, self.timescale)

    def shown(self) -> Fraction:
        """How much of the samples' composition span the edits show."""
        if self.composed is None:
            return Fraction(0)
        low, high = self.composed
        if self.edits is None:
            return Fraction(high - low, self.timescale)
        spans = []
        for number, edit in enumerate(self.edits):
            if edit.media_time < 0:
                continue
            start = Fraction(edit.media_time)
            if self.to_end and number == len(self.edits) - 1:
                stop = Fraction(high)
            else:
                stop = start + Fraction(edit.duration * self.timescale, self.movie_timescale)
            start, stop = max(start, Fraction(low)), min(stop, Fraction(high))
            if stop > start:
                spans.append((start, stop))
        covered, reached = Fraction(0), Fraction(low)
        for start, stop in sorted(spans):
            start = max(start, reached)
            if stop > start:
                covered += stop - start
                reached = stop
        return covered / self.timescale

    def source(self, media: bool) -> tuple[str, str]:
        """The box and the phrase that say what the track lasts."""
        if not media and self.edits is not None:
            return "elst", "edits present"
        return ("trun" if self.fragments else "stts"), "samples last"

    def check(self) -> None:
        """The samples are shown once each, and the edits hide at most a frame of them."""
        if self.composed is None:
            return
        span = Fraction(self.composed[1] - self.composed[0], self.timescale)
        if abs(span - self.media_seconds) > self.frame():
            raise NotMp4(
                f"{self.offsets_in}: track {self.track_id}'s samples are shown over "
                f"{_seconds(span)} s but last {_seconds(self.media_seconds)} s"
            )
        shown = self.shown()
        if span - shown > self.frame():
            raise NotMp4(
                f"elst: track {self.track_id}'s edits show {_seconds(shown)} s of its "
                f"{_seconds(span)} s of samples"
            )


def _edits(
    edts: memoryview | None, movie_timescale: int, fragmented: bool
) -> tuple[tuple[_Edit, ...] | None, bool]:
    if edts is None:
        return None, False
    elst = _one(_boxes(edts, "edts"), b"elst", "edts")
    if elst is None:
        return None, False
    version, _ = _full(elst, "elst")
    entry = ">QqhH" if version == 1 else ">IihH"
    (count,) = _read(">I", elst, 4, "elst")
    if count > MAX_EDITS:
        raise NotMp4(f"elst: {count} edits; at most {MAX_EDITS} are read")
    edits: list[_Edit] = []
    for duration, media_time, rate, fraction in _table(elst, 4, entry, "elst"):
        if media_time < -1:
            raise NotMp4(f"elst: an edit at media time {media_time} cannot be read")
        if media_time != -1 and (rate, fraction) != (1, 0):
            rate_text = "0 (a dwell)" if (rate, fraction) == (0, 0) else f"{rate}+{fraction}/65536"
            raise NotMp4(f"elst: an edit at rate {rate_text}; only rate-1 edits are read")
        edits.append(_Edit(duration, media_time))
    if sum(e.duration for e in edits) > MAX_SECONDS * movie_timescale:
        raise NotMp4(f"elst: edits present more than {MAX_SECONDS} s (an overflow, not a clip)")
    to_end = fragmented and bool(edits) and edits[-1].duration == 0 and edits[-1].media_time >= 0
    return tuple(edits), to_end


# --- claims --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    """A header's duration: of the movie (track None: the longest track), or a track's."""

    box: str
    ticks: int
    timescale: int
    track: _Track | None = None
    media: bool = False  # mdhd: the track's samples, not its presentation


# --- the movie -----------------------------------------------------------------------


@dataclass
class _Movie:
    timescale: int
    fragmented: bool
    tracks: dict[int, _Track] = field(default_factory=dict)
    claims: list[_Claim] = field(default_factory=list)
    fragments: int = 0

    @classmethod
    def read(cls, moov: memoryview) -> _Movie:
        boxes = _boxes(moov, "moov")
        mvhd = _need(boxes, b"mvhd", "moov")
        version, _ = _full(mvhd, "mvhd")
        timescale, duration = _read(
            ">IQ" if version == 1 else ">II", mvhd, 20 if version else 12, "mvhd"
        )
        if timescale == 0:
            raise NotMp4("mvhd: the movie's timescale is 0")
        mvex = _one(boxes, b"mvex", "moov")
        movie = cls(timescale, fragmented=mvex is not None)
        claims = []
        if _stated("mvhd", duration, version, movie.fragmented):
            claims.append(_Claim("mvhd", duration, timescale))
        for name, payload in boxes:
            if name == b"trak":
                claims += movie._read_track(payload)
        if not movie.tracks:
            raise NotMp4("trak: the movie has no tracks")
        if mvex is not None:
            claims += movie._read_mvex(mvex)
        if movie.fragmented:
            # mvhd, tkhd and mdhd may describe the samples in moov: then nothing is left to
            # check; otherwise they are claims about the whole, checked as fragments come.
            claims = [c for c in claims if c.box == "mehd" or not movie._agrees(c, final=True)]
        movie.claims = claims
        if not movie.fragmented:
            movie.finish()
        return movie

    def _read_track(self, trak: memoryview) -> list[_Claim]:
        boxes = _boxes(trak, "trak")
        tkhd = _need(boxes, b"tkhd", "a trak")
        version, _ = _full(tkhd, "tkhd")
        if version == 1:
            track_id, tkhd_duration = _read(">I4xQ", tkhd, 20, "tkhd")
        else:
            track_id, tkhd_duration = _read(">I4xI", tkhd, 12, "tkhd")
        if track_id == 0 or track_id in self.tracks:
            raise NotMp4(f"tkhd: track_ID {track_id} is 0 or used twice")
        if len(self.tracks) == MAX_TRACKS:
            raise NotMp4(f"trak: more than {MAX_TRACKS} tracks; a camera's clip has a few")
        mdia = _boxes(_need(boxes, b"mdia", f"track {track_id}"), "mdia")
        mdhd = _need(mdia, b"mdhd", f"track {track_id}'s mdia")
        mdhd_version, _ = _full(mdhd, "mdhd")
        media_timescale, media_duration = _read(
            ">IQ" if mdhd_version == 1 else ">II", mdhd, 20 if mdhd_version else 12, "mdhd"
        )
        if media_timescale == 0:
            raise NotMp4(f"mdhd: track {track_id}'s timescale is 0")
        edits, to_end = _edits(
            _one(boxes, b"edts", f"track {track_id}"), self.timescale, self.fragmented
        )
        track = _Track(track_id, media_timescale, self.timescale, edits, to_end)
        if edits is not None:
            explicit = edits[:-1] if to_end else edits
            track.edited = Fraction(sum(e.duration for e in explicit), self.timescale)
        minf = _boxes(_need(mdia, b"minf", f"track {track_id}'s mdia"), "minf")
        stbl = _boxes(_need(minf, b"stbl", f"track {track_id}'s minf"), "stbl")
        _read_samples(track, stbl)
        self.tracks[track_id] = track
        claims = []
        headers = (
            ("tkhd", tkhd_duration, version, self.timescale, False),
            ("mdhd", media_duration, mdhd_version, media_timescale, True),
        )
        for box, ticks, box_version, scale, media in headers:
            if _stated(box, ticks, box_version, self.fragmented, f"track {track_id} "):
                claims.append(_Claim(box, ticks, scale, track, media))
        return claims

    def _read_mvex(self, mvex: memoryview) -> list[_Claim]:
        boxes = _boxes(mvex, "mvex")
        for name, trex in boxes:
            if name == b"trex":
                _full(trex, "trex", (0,))
                track_id, _, duration = _read(">III", trex, 4, "trex")
                track = self.tracks.get(track_id)
                if track is None:
                    raise NotMp4(f"trex: defaults for track {track_id}, which moov does not have")
                if track.default_duration is not None:
                    raise NotMp4(f"trex: track {track_id} has two")
                track.default_duration = duration
        mehd = _one(boxes, b"mehd", "mvex")
        if mehd is None:
            return []
        version, _ = _full(mehd, "mehd")
        (duration,) = _read(">Q" if version == 1 else ">I", mehd, 4, "mehd")
        return [] if duration == _ONES[version] else [_Claim("mehd", duration, self.timescale)]

    def _longest(self) -> _Track:
        return max(self.tracks.values(), key=_Track.presentation)

    def _agrees(self, claim: _Claim, final: bool) -> bool:
        """The claim is within a frame of the samples (while fragments still come: it is
        not yet exceeded)."""
        track = claim.track or self._longest()
        value = track.media_seconds if claim.media else track.presentation()
        said = Fraction(claim.ticks, claim.timescale)
        return value <= said + track.frame() and (not final or value >= said - track.frame())

    def _refuse(self, claim: _Claim) -> None:
        track = claim.track or self._longest()
        value = track.media_seconds if claim.media else track.presentation()
        box, phrase = track.source(claim.media)
        subject = phrase if claim.track is None else f"track {track.track_id}'s {phrase}"
        raise NotMp4(
            f"{box}: {subject} {_seconds(value)} s but {claim.box} says "
            f"{_seconds(Fraction(claim.ticks, claim.timescale))} s"
        )

    def finish(self) -> None:
        """Every sample is in: each track shows its samples once, hides at most a frame
        of them, and every header agrees."""
        for track in self.tracks.values():
            track.check()
        for claim in self.claims:
            if not self._agrees(claim, final=True):
                self._refuse(claim)

    # --- fragments ---

    def add_fragment(self, moof: memoryview) -> None:
        self.fragments += 1
        if self.fragments > MAX_FRAGMENTS:
            raise NotMp4(f"moof: more than {MAX_FRAGMENTS} movie fragments; a clip has fewer")
        for name, traf in _boxes(moof, "moof"):
            if name == b"traf":
                self._read_traf(traf)
        for claim in self.claims:
            if not self._agrees(claim, final=False):
                self._refuse(claim)

    def _read_traf(self, traf: memoryview) -> None:
        boxes = _boxes(traf, "traf")
        tfhd = _need(boxes, b"tfhd", "a traf")
        _, flags = _full(tfhd, "tfhd", (0,))
        (track_id,) = _read(">I", tfhd, 4, "tfhd")
        track = self.tracks.get(track_id)
        if track is None:
            raise NotMp4(f"tfhd: a fragment of track {track_id}, which moov does not have")
        if flags & 0x010000:
            raise NotMp4(f"tfhd: track {track_id} has a duration-is-empty fragment (not read)")
        at = 8 + (8 if flags & 0x01 else 0) + (4 if flags & 0x02 else 0)
        default = track.default_duration
        if flags & 0x08:
            (default,) = _read(">I", tfhd, at, "tfhd")
        tfdt = _one(boxes, b"tfdt", "a traf")
        if tfdt is not None:
            version, _ = _full(tfdt, "tfdt")
            (decode_time,) = _read(">Q" if version == 1 else ">I", tfdt, 4, "tfdt")
            track.skip_to(decode_time)
        for name, trun in boxes:
            if name == b"trun":
                _read_trun(track, trun, default)


def _read_samples(track: _Track, stbl: list[tuple[bytes, memoryview]]) -> None:
    """The samples in moov: stts durations merged with ctts offsets, counted against stsz."""
    where = f"track {track.track_id}'s stbl"
    stts = _need(stbl, b"stts", where)
    _full(stts, "stts", (0,))
    ctts = _one(stbl, b"ctts", where)
    offsets: Iterator[tuple[int, ...]] | None = None
    if ctts is not None:
        _full(ctts, "ctts")
        offsets = _table(ctts, 4, ">Ii", "ctts")  # offsets read signed, as players do
    left, offset = 0, 0
    for count, delta in _table(stts, 4, ">II", "stts"):
        while count:
            if offsets is not None and not left:
                following = next(offsets, None)
                if following is None:
                    raise NotMp4(f"ctts: track {track.track_id} has offsets for fewer samples")
                left, offset = following
                continue
            run = count if offsets is None else min(count, left)
            track.add(run, delta, offset, "stts")
            count -= run
            left -= run if offsets is not None else 0
    if offsets is not None and (left or any(n for n, _ in offsets)):
        raise NotMp4(f"ctts: track {track.track_id} has offsets for more samples than stts")
    stsz, stz2 = _one(stbl, b"stsz", where), _one(stbl, b"stz2", where)
    if (stsz is None) == (stz2 is None):
        raise NotMp4(f"stsz: {where} needs one stsz or stz2")
    sizes = stsz if stsz is not None else stz2
    assert sizes is not None
    _full(sizes, "stsz", (0,))
    (count,) = _read(">I", sizes, 8, "stsz")
    if count != track.samples:
        raise NotMp4(
            f"stts: track {track.track_id}'s durations are for {track.samples} samples but "
            f"stsz has {count}"
        )


_TRUN_FIELDS = ((0x100, "duration"), (0x200, "size"), (0x400, "flags"), (0x800, "offset"))


def _read_trun(track: _Track, trun: memoryview, default: int | None) -> None:
    _, flags = _full(trun, "trun")
    (count,) = _read(">I", trun, 4, "trun")
    at = 8 + (4 if flags & 0x01 else 0) + (4 if flags & 0x04 else 0)
    present = [name for bit, name in _TRUN_FIELDS if flags & bit]
    if count * 4 * len(present) > len(trun) - at:
        raise NotMp4(f"trun: {count} samples do not fit in the box")
    track.fragments = True
    if "duration" not in present and default is None:
        raise NotMp4(f"trun: track {track.track_id}'s samples have no duration")
    if "offset" in present:
        track.offsets_in = "trun"
    if "duration" not in present and "offset" not in present:
        assert default is not None
        track.add(count, default, 0, "trun")
        return
    fmt = ">" + "".join("i" if name == "offset" else "I" for name in present)
    rows = list(struct.iter_unpack(fmt, trun[at : at + count * 4 * len(present)]))
    column = {name: number for number, name in enumerate(present)}
    if "duration" in column:
        durations = [row[column["duration"]] for row in rows]
    else:
        assert default is not None
        durations = [default] * count
    offsets = [row[column["offset"]] for row in rows] if "offset" in column else None
    track.add_each(durations, offsets, "trun")


# --- the stream ----------------------------------------------------------------------


class Mp4Probe:
    """Feed the clip's bytes in order. `duration` is how long the clip is at least, as soon
    as moov is read (for a file without fragments, its final duration), growing with each
    fragment; `finish()` checks the whole and returns the final duration."""

    def __init__(
        self, max_moov_bytes: int = MAX_MOOV_BYTES, max_moof_bytes: int = MAX_MOOF_BYTES
    ) -> None:
        self._limits = {b"moov": max_moov_bytes, b"moof": max_moof_bytes}
        self._header = bytearray()  # the box header being gathered (8 or 16 bytes)
        self._kind = b""
        self._remaining = 0  # bytes of the current box's payload still to come
        self._to_end = False  # current box has size 0: it runs to the end of the file
        self._buffer: bytearray | None = None  # the moov or moof being gathered
        self._movie: _Movie | None = None
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
        if kind == b"moov" and self._movie is not None:
            raise NotMp4("moov: the MP4 has two movie boxes")
        if kind == b"moof" and (self._movie is None or not self._movie.fragmented):
            raise NotMp4("moof: a movie fragment without a fragmented movie (moov/mvex) before it")
        if kind in self._limits:
            self._buffer = bytearray()
        if size == 0:
            self._to_end = True
            self._remaining = 0
            return
        if size < header_length:
            raise NotMp4(f"the MP4 box '{kind.decode()}' has an impossible size {size}")
        self._remaining = size - header_length
        if kind in self._limits and self._remaining > self._limits[kind]:
            raise NotMp4(f"{kind.decode()}: the box is too large for a short clip")
        if not self._remaining:
            self._box_done()

    def _take(self, piece: memoryview) -> None:
        if self._buffer is not None:
            if len(self._buffer) + len(piece) > self._limits[self._kind]:
                raise NotMp4(f"{self._kind.decode()}: the box is too large for a short clip")
            self._buffer += piece

    def _box_done(self) -> None:
        if self._buffer is None:
            return
        payload, self._buffer = memoryview(self._buffer), None
        if self._kind == b"moov":
            self._movie = _Movie.read(payload)
        else:
            assert self._movie is not None
            self._movie.add_fragment(payload)
        self._update_duration()

    def _update_duration(self) -> None:
        assert self._movie is not None
        longest = max(track.presentation() for track in self._movie.tracks.values())
        self.duration = timedelta(microseconds=int(longest * 1_000_000))

    def finish(self) -> Mp4Info:
        """The clip ended: it must end on a box boundary, have had a movie box, and its
        samples, edits and headers must agree."""
        if self._to_end:
            self._to_end = False
            self._box_done()
        elif self._header or self._remaining:
            raise NotMp4("the MP4 ends in the middle of a box")
        if self._boxes == 0:
            raise NotMp4("not an MP4 file: it is empty")
        if self._movie is None:
            raise NotMp4("the MP4 has no movie box (moov): its duration is unknown")
        if self._movie.fragmented:
            self._movie.finish()
        self._update_duration()
        assert self.duration is not None
        return Mp4Info(self.duration)
