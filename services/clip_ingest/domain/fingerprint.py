"""A clip's fingerprint: how a retried upload is told from other content under the same
clip id, with nothing derived from the plaintext left in clear.

A stored clip used to carry its plaintext SHA-256 and size as MinIO metadata. Whoever
could read the bucket's metadata (a MinIO credential, a replica, a copy of the bucket
kept after the clip's key was destroyed) could confirm a guess ("is this video in that
household?") and learn each clip's exact size. Now the object carries only

    tag = HMAC-SHA256(K, "privacam-clip-fingerprint-v1" || size (u64) || SHA-256)
    K   = HKDF-SHA256(data key, info = "privacam-clip-fingerprint-v1" || binding)

under the clip's own data key and bound to its tenant, camera and clip (the binding
encoded as in clip format v1). Without K the tag says nothing, and K is gone for good
when the clip's key period is destroyed: crypto-shredding reaches the tag too.

Why a MAC under the data key rather than the digest moved inside the encrypted clip:
a retry has to be judged when it arrives, before anything could be decrypted. Opening
the stored clip needs its data key, which the key manager releases only against a
receipt from the household's access log, and a camera's retry is no access to log. K is
derived from the data key the upload holds anyway, so it costs no call. (Nothing needs
the digest after decryption: AEAD already proves a decrypted clip is the one sealed,
and a reader who wants the SHA-256 computes it on the way out.)

K itself is remembered in Redis, never beside the tag in MinIO, for the retry window
(`RETRY_MEMORY_SECONDS`, a day by default; dropped with the clip's index entry): a
retry within it is compared exactly. Neither store alone can confirm a guess, and
after the window not even both. A later retry of an indexed clip whose object is still
there is taken as the same clip when its size is the stored size (which the object's
own length tells anyway); the stored clip is never replaced either way.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privacam_core.clip_format import ClipBinding

LABEL = b"privacam-clip-fingerprint-v1"
KEY_BYTES = 32
TAG_BYTES = 32


def fingerprint_key(data_key: bytes, binding: ClipBinding) -> bytes:
    """The clip's fingerprint key, derived from its data key (which it never reveals)."""
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=LABEL + binding.encode()
    )
    return hkdf.derive(bytes(data_key))


def fingerprint(key: bytes, size_bytes: int, sha256: bytes) -> bytes:
    """The tag of a clip of `size_bytes` bytes whose plaintext SHA-256 is `sha256`."""
    message = LABEL + size_bytes.to_bytes(8, "big") + sha256
    return hmac.new(key, message, hashlib.sha256).digest()


def matches(key: bytes, size_bytes: int, sha256: bytes, tag: bytes) -> bool:
    """True when `tag` is this clip's (constant time)."""
    return hmac.compare_digest(fingerprint(key, size_bytes, sha256), tag)
