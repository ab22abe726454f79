"""Canonical JSON for what device_auth stores: sorted keys, RFC 3339 UTC times.

Shared by the Kafka state adapter (state.py) and the Redis adapter (ephemeral.py).
Canonical means one record has exactly one encoding, so equal records give equal
bytes; readers still compare decoded records, never bytes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast

from privacam_core.identity import PrincipalKind
from services.device_auth.domain.records import Subject

JsonObject = dict[str, Any]


def dumps(document: JsonObject) -> bytes:
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def loads(data: bytes | str) -> JsonObject:
    document = json.loads(data)
    if not isinstance(document, dict):
        raise ValueError("a stored record must be a JSON object")
    return cast(JsonObject, document)


def time_text(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds, e.g. 2026-01-01T00:00:00.000000Z."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("stored times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"stored time {text!r} has no time zone")
    return moment.astimezone(UTC)


def optional_time_text(moment: datetime | None) -> str | None:
    return None if moment is None else time_text(moment)


def parse_optional_time(text: str | None) -> datetime | None:
    return None if text is None else parse_time(text)


def subject_json(subject: Subject | None) -> JsonObject | None:
    if subject is None:
        return None
    return {"kind": subject.kind.value, "tenant_id": subject.tenant_id, "name": subject.name}


def parse_subject(document: JsonObject | None) -> Subject | None:
    if document is None:
        return None
    return Subject(
        kind=PrincipalKind(document["kind"]),
        tenant_id=document["tenant_id"],
        name=document["name"],
    )
