"""Clip format v1 throughput against raw one-shot AES-256-GCM over the same bytes.

For 1, 2 and 8 MiB clips at the default 256 KiB segment size: ``encrypt_stream`` and
``decrypt_stream`` (the paths the services use, consumed segment by segment) against
``AESGCM.encrypt`` / ``AESGCM.decrypt`` in one call over the same plaintext, with the
same library, in the same run. Both sides include building their ``AESGCM`` object, as
each clip has its own key. Target: at least 0.8x of raw.

Timing: best of many short samples (about 2 ms each). Samples of every function are
taken round-robin over the whole run (about 3 s), so raw and clip-format figures see the
same machine states; on a shared, loaded machine the best sample is the one least
disturbed by other processes, where a few long samples would mostly measure contention.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from benchmarks import Result
from benchmarks.timing import best_seconds_per_call
from privacam_core.clip_format import (
    DEFAULT_SEGMENT_SIZE,
    ClipBinding,
    decrypt_stream,
    encrypt_all,
    encrypt_stream,
)

MIB = 1024 * 1024
SIZES = (1 * MIB, 2 * MIB, 8 * MIB)
TARGET = 0.8
BUDGET_SECONDS = 3.0
BINDING = ClipBinding("tenant-bench", "cam-bench", "clip-bench")
KEY_REFERENCE = os.urandom(120)  # about the size of a serialized wrapped data key


def run() -> list[Result]:
    data_key = os.urandom(32)
    nonce = os.urandom(12)
    # (name, baseline name, size, clip-format function, raw function)
    cases: list[tuple[str, str, int, Callable[[], object], Callable[[], object]]] = []
    for size in SIZES:
        plaintext = os.urandom(size)
        raw_ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, None)
        clip = encrypt_all(plaintext, data_key, KEY_REFERENCE, BINDING)
        assert b"".join(decrypt_stream((clip,), data_key, BINDING)) == plaintext

        def raw_encrypt(plaintext: bytes = plaintext) -> object:
            return AESGCM(data_key).encrypt(nonce, plaintext, None)

        def raw_decrypt(ciphertext: bytes = raw_ciphertext) -> object:
            return AESGCM(data_key).decrypt(nonce, ciphertext, None)

        def clip_encrypt(plaintext: bytes = plaintext) -> object:
            return deque(encrypt_stream((plaintext,), data_key, KEY_REFERENCE, BINDING), 0)

        def clip_decrypt(clip: bytes = clip) -> object:
            return deque(decrypt_stream((clip,), data_key, BINDING), 0)

        label = f"{size // MIB} MiB, {DEFAULT_SEGMENT_SIZE // 1024} KiB segments"
        cases.append(
            (f"clip encrypt, {label}", "AESGCM.encrypt one-shot", size, clip_encrypt, raw_encrypt)
        )
        cases.append(
            (f"clip decrypt, {label}", "AESGCM.decrypt one-shot", size, clip_decrypt, raw_decrypt)
        )

    functions = [fn for case in cases for fn in case[3:]]
    best = best_seconds_per_call(functions, BUDGET_SECONDS)
    results: list[Result] = []
    for n, (name, baseline_name, size, _, _) in enumerate(cases):
        clip_seconds, raw_seconds = best[2 * n], best[2 * n + 1]
        results.append(
            Result.compare(
                name=name,
                value=size / clip_seconds / 1e9,
                unit="GB/s",
                baseline_name=baseline_name,
                baseline_value=size / raw_seconds / 1e9,
                target=TARGET,
            )
        )
    return results
