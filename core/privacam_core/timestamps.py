"""Protobuf Timestamps to and from timezone-aware UTC datetimes, the one way every service
converts them (a naive datetime would silently mean the machine's local time)."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_timestamp(moment: datetime) -> Timestamp:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: Privacam keeps every time timezone-aware (UTC)")
    # Whole seconds and microseconds from the difference, exactly (no float): this runs for
    # every timestamp of every reply, and protobuf's FromDatetime costs several times more.
    since = moment - _EPOCH
    return Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000)


def to_datetime(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)
