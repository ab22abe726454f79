"""The clip store's client signs requests without hashing their bodies."""

from __future__ import annotations

from typing import Any

from minio import Minio
from minio.credentials.credentials import Credentials

from services.clip_ingest.adapters.objects import UNSIGNED_PAYLOAD, UnsignedPayloadMinio

CREDS = Credentials("access", "secret-key-of-enough-length")
BODY = b"\x00sealed clip bytes" * 1000


def _headers(
    client: Minio, body: bytes | None, given: dict[str, str] | None = None
) -> dict[str, Any]:
    headers, _ = client._build_headers("minio:9000", dict(given or {}), body, CREDS)
    return headers


def test_a_body_is_sent_unsigned_with_its_length_over_http_and_https() -> None:
    for secure in (False, True):
        client = UnsignedPayloadMinio("minio:9000", "access", "secret", secure=secure)
        headers = _headers(client, BODY)
        assert headers["x-amz-content-sha256"] == UNSIGNED_PAYLOAD
        assert headers["Content-Length"] == str(len(BODY))
        assert "Content-MD5" not in headers  # no second hash of the clip over HTTPS either


def test_requests_without_a_body_and_given_digests_are_as_the_library_builds_them() -> None:
    ours = UnsignedPayloadMinio("minio:9000", "access", "secret", secure=False)
    library = Minio("minio:9000", "access", "secret", secure=False)
    for headers in (_headers(ours, None), _headers(library, None)):
        assert headers["x-amz-content-sha256"] == (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
    # A request that states its own Content-MD5 (multipart completion) keeps it.
    given = {"Content-MD5": "c29tZSBtZDU="}
    assert _headers(ours, b"<xml/>", given)["Content-MD5"] == "c29tZSBtZDU="


def test_the_library_would_hash_the_body() -> None:
    # What the subclass exists to avoid: if the library stops hashing bodies, drop it.
    library = Minio("minio:9000", "access", "secret", secure=False)
    assert _headers(library, BODY)["x-amz-content-sha256"] != UNSIGNED_PAYLOAD
