"""Hypothesis strategies for any protobuf message, built from its descriptor.

Written here because no maintained Hypothesis extension covers protobuf 7. Values lean
towards what breaks validators: empty and huge strings, non-UUIDs and UUIDs, control and
non-ASCII characters, out-of-range numbers, unknown enum values, deep or absent
sub-messages, long repeated fields.
"""

from __future__ import annotations

import uuid
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

_F = FieldDescriptor

_TEXT = st.one_of(
    st.just(""),
    st.just(str(uuid.UUID(int=0))),
    st.uuids().map(str),
    st.text(max_size=80),
    st.integers(65, 5000).map(lambda n: "é" * n),
    st.sampled_from(["../../etc/passwd", "t/x/d/y", "%00", "\x00", "DROP TABLE", "ÄÖÜ", "🔒"]),
    st.integers(0, 9999).map(lambda n: f"{n:04d}"),
)
_BYTES = st.one_of(
    st.just(b""), st.binary(max_size=64), st.integers(2000, 20_000).map(lambda n: b"\xff" * n)
)
_INT32 = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, -1, 1, 2**31 - 1]))
_INT64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, -1, 1]))
_UINT32 = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2**32 - 1]))
_UINT64 = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**64 - 1]))

_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    _F.TYPE_STRING: _TEXT,
    _F.TYPE_BYTES: _BYTES,
    _F.TYPE_BOOL: st.booleans(),
    _F.TYPE_INT32: _INT32,
    _F.TYPE_SINT32: _INT32,
    _F.TYPE_SFIXED32: _INT32,
    _F.TYPE_INT64: _INT64,
    _F.TYPE_SINT64: _INT64,
    _F.TYPE_SFIXED64: _INT64,
    _F.TYPE_UINT32: _UINT32,
    _F.TYPE_FIXED32: _UINT32,
    _F.TYPE_UINT64: _UINT64,
    _F.TYPE_FIXED64: _UINT64,
    _F.TYPE_FLOAT: st.floats(width=32, allow_nan=True),
    _F.TYPE_DOUBLE: st.floats(allow_nan=True),
}


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.enum_type is not None:
        known = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-5, 1000))
    if field.message_type is not None:
        return messages(field.message_type, depth + 1)
    return _SCALARS[field.type]


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Field values of a message as a dict (fields left out stay unset)."""
    if depth > 3:
        return st.just({})
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        value = _value(field, depth)
        if field.is_repeated:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                continue  # maps: none in our APIs' requests
            value = st.lists(value, max_size=4 if depth else 40)
        fields[field.name] = value
    return st.fixed_dictionaries({}, optional=fields)


def build(message_class: type[Message], values: dict[str, Any]) -> Message:
    """A message from generated values; values the runtime refuses (out-of-range floats for
    a float field, an enum number in a closed enum) are dropped, as a client could not send
    them either."""
    message = message_class()
    _fill(message, values)
    return message


def _fill(message: Message, values: dict[str, Any]) -> None:
    descriptor = message.DESCRIPTOR
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        try:
            if field.type == _F.TYPE_MESSAGE:
                if field.is_repeated:
                    for item in value:
                        _fill(getattr(message, name).add(), item)
                else:
                    _fill(getattr(message, name), value)
                    getattr(message, name).SetInParent()
            elif field.is_repeated:
                getattr(message, name).extend(value)
            else:
                setattr(message, name, value)
        except (ValueError, TypeError, OverflowError):
            message.ClearField(name)
