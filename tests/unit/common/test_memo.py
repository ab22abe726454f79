"""DerivedCache: one derivation per source object, a replaced source is derived anew."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.memo import DerivedCache


@dataclass(frozen=True)
class _Record:
    value: int


def test_a_source_is_derived_once_and_a_replaced_one_again() -> None:
    calls: list[_Record] = []

    def derive(record: _Record) -> str:
        calls.append(record)
        return f"v{record.value}"

    cache: DerivedCache[str, _Record, str] = DerivedCache(derive)
    first = _Record(1)
    assert cache.get("a", first) == "v1"
    assert cache.get("a", first) == "v1"
    assert calls == [first]
    # An equal but different object is a new version of the record: never served stale.
    replaced = _Record(1)
    assert cache.get("a", replaced) == "v1"
    assert cache.get("a", _Record(2)) == "v2"
    assert len(calls) == 3


def test_past_its_limit_the_cache_starts_over() -> None:
    cache: DerivedCache[int, _Record, int] = DerivedCache(lambda record: record.value, limit=3)
    records = [_Record(n) for n in range(5)]
    for n, record in enumerate(records):
        assert cache.get(n, record) == n
    assert len(cache) <= 3
