"""Property-based tests of the clip format parser: any change to a stored clip, and any
random input, ends in one of the format's own errors (never another exception, never
plaintext); a clip under another owner's name never decrypts."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privacam_core import clip_format as cf

KEY = bytes(range(32))
BINDING = cf.ClipBinding("tenant-a", "camera-1", "clip-1")
SEGMENT = cf.MIN_SEGMENT_SIZE


def _clip(plaintext: bytes) -> bytes:
    return b"".join(cf.encrypt_stream([plaintext], KEY, b"wrapped-key", BINDING, SEGMENT))


def _read(stored: bytes, chunk: int, binding: cf.ClipBinding = BINDING) -> bytes:
    pieces = [stored[i : i + chunk] for i in range(0, len(stored), chunk)] or [b""]
    return b"".join(cf.decrypt_stream(pieces, KEY, binding))


plaintexts = st.binary(max_size=3 * SEGMENT + 7)
chunk_sizes = st.integers(1, 2 * SEGMENT)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(plaintexts, chunk_sizes, st.data())
def test_any_single_change_fails_closed(plaintext: bytes, chunk: int, data: st.DataObject) -> None:
    stored = bytearray(_clip(plaintext))
    change = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete", "swap"]))
    at = data.draw(st.integers(0, len(stored) - 1))
    if change == "flip":
        stored[at] ^= data.draw(st.integers(1, 255))
    elif change == "truncate":
        del stored[at:]
    elif change == "insert":
        stored[at:at] = data.draw(st.binary(min_size=1, max_size=40))
    elif change == "delete":
        del stored[at : at + data.draw(st.integers(1, 40))]
    else:  # swap two segment-sized blocks after the header
        size = SEGMENT + 16
        header = len(stored) - (len(stored) // size) * size if len(stored) > size else 0
        blocks = (len(stored) - header) // size
        if blocks < 2:
            stored[at] ^= 1
        else:
            a, b = header, header + size
            stored[a : a + size], stored[b : b + size] = stored[b : b + size], stored[a : a + size]
    try:
        _read(bytes(stored), chunk)
    except cf.ClipFormatError:
        return
    raise AssertionError(f"a clip changed by {change} at {at} was accepted")


@settings(max_examples=60)
@given(plaintexts, chunk_sizes, st.sampled_from(["tenant", "device", "clip"]))
def test_a_clip_under_another_name_never_decrypts(plaintext: bytes, chunk: int, who: str) -> None:
    other = cf.ClipBinding(
        "tenant-b" if who == "tenant" else "tenant-a",
        "camera-2" if who == "device" else "camera-1",
        "clip-2" if who == "clip" else "clip-1",
    )
    stored = _clip(plaintext)
    try:
        _read(stored, chunk, other)
    except cf.ClipAuthenticationError:
        return
    raise AssertionError("a clip decrypted under another owner's name")


@settings(max_examples=200)
@given(st.binary(max_size=4096), chunk_sizes)
def test_random_bytes_are_refused_with_a_format_error(junk: bytes, chunk: int) -> None:
    try:
        _read(junk, chunk)
    except cf.ClipFormatError:
        return
    raise AssertionError("random bytes were accepted as a clip")
