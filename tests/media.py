"""Sample alert clips made here, never downloaded: H.264 (and AAC) in MP4 through PyAV's
bundled libx264 and libavcodec.

Noisy frames (random pixels over a level drifting in time) compress badly, so sizes are
like a real camera's; `bitrate` steers the size. Used by tests, the demo and the
clip benchmark.
"""

from __future__ import annotations

import io
import random
from array import array
from fractions import Fraction

import av


def make_mp4(
    seconds: float = 6.0,
    *,
    width: int = 640,
    height: int = 360,
    fps: int = 10,
    bitrate: int = 800_000,
    seed: int = 0,
    fragmented: bool = False,
    audio: bool = False,
) -> bytes:
    """An H.264 MP4 of exactly `seconds` (frames at `fps`), moov at the front or the end
    as the muxer chooses (libav's default puts it after mdat). `fragmented`: an empty moov
    and a fragment per second of video (a keyframe every second). `audio`: also a mono
    16 kHz AAC track of as long (whose encoder delay, one frame of 64 ms, a progressive
    file's edit list hides and a fragmented one's counts)."""
    rng = random.Random(seed)
    frames = round(seconds * fps)
    out = io.BytesIO()
    options = {"movflags": "frag_keyframe+empty_moov+default_base_moof"} if fragmented else {}
    with av.open(out, mode="w", format="mp4", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bitrate
        stream.codec_context.time_base = Fraction(1, fps)
        if fragmented:
            stream.codec_context.gop_size = fps
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        sound = container.add_stream("aac", rate=_AUDIO_RATE) if audio else None
        for index in range(frames):
            frame = av.VideoFrame(width, height, "yuv420p")
            for number, plane in enumerate(frame.planes):
                # Noise over a level that drifts with time: compresses like a real scene.
                level = (index * 5 + number * 40) % 190
                table = bytes(level + (b & 0x3F) for b in range(256))
                plane.update(rng.randbytes(plane.buffer_size).translate(table))
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            _encode_audio(container, sound, seconds, rng)
    return out.getvalue()


_AUDIO_RATE = 16_000


def _encode_audio(
    container: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    seconds: float,
    rng: random.Random,
) -> None:
    """Quiet noise, mono: a microphone in a still room."""
    total, sent = round(seconds * _AUDIO_RATE), 0
    while sent < total:
        count = min(1024, total - sent)
        frame = av.AudioFrame(format="fltp", layout="mono", samples=count)
        frame.planes[0].update(array("f", (rng.uniform(-0.1, 0.1) for _ in range(count))).tobytes())
        frame.sample_rate, frame.pts = _AUDIO_RATE, sent
        sent += count
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def padded_mp4(size: int, seconds: float = 2.0, seed: int = 0) -> bytes:
    """A valid short MP4 of exactly `size` bytes (a trailing `free` box fills it up), for
    benchmarks that need fixed sizes without encoding megabytes of video."""
    clip = make_mp4(seconds, width=160, height=90, fps=5, bitrate=50_000, seed=seed)
    filler = size - len(clip)
    if filler < 8:
        raise ValueError(f"a {seconds} s clip is {len(clip)} bytes; cannot pad it to {size}")
    return clip + filler.to_bytes(4, "big") + b"free" + bytes(filler - 8)
