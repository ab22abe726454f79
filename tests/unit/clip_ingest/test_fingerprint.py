"""A clip's fingerprint is checkable only with a key derived from its own data key and
bound to its ids: without the key it is no hash of the plaintext anyone can recompute."""

from __future__ import annotations

import hashlib
import os

from privacam_core.clip_format import ClipBinding
from services.clip_ingest.domain.fingerprint import fingerprint, fingerprint_key, matches

DIGEST = hashlib.sha256(b"a clip").digest()
BINDING = ClipBinding("tenant-a", "camera-a", "clip-1")


def test_the_tag_matches_only_its_own_size_and_digest() -> None:
    key = fingerprint_key(os.urandom(32), BINDING)
    tag = fingerprint(key, 6, DIGEST)
    assert matches(key, 6, DIGEST, tag)
    assert not matches(key, 7, DIGEST, tag)
    assert not matches(key, 6, hashlib.sha256(b"another clip").digest(), tag)
    assert DIGEST not in tag
    assert tag not in (hashlib.sha256(DIGEST).digest(), hashlib.sha256(b"a clip").digest())


def test_the_key_is_the_clips_own() -> None:
    data_key = os.urandom(32)
    key = fingerprint_key(data_key, BINDING)
    assert key != data_key
    assert key == fingerprint_key(data_key, BINDING)
    assert key != fingerprint_key(os.urandom(32), BINDING)  # another data key
    for other in (
        ClipBinding("tenant-b", "camera-a", "clip-1"),
        ClipBinding("tenant-a", "camera-b", "clip-1"),
        ClipBinding("tenant-a", "camera-a", "clip-2"),
    ):
        assert key != fingerprint_key(data_key, other)
    tag = fingerprint(key, 6, DIGEST)
    assert not matches(fingerprint_key(data_key, ClipBinding("t", "d", "c")), 6, DIGEST, tag)
