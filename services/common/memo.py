"""Values derived from immutable objects, made once per object.

Stores hand out immutable records and replace them on every change, so "is this still the
object I derived from?" is an identity check: no hashing of the object, no invalidation
messages, and a change can never be served stale.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
S = TypeVar("S")
V = TypeVar("V")


class DerivedCache(Generic[K, S, V]):
    """`derive(source)` per key, remade when the key's source is another object.

    At most `limit` keys are kept; past that the cache starts over (sources of deleted
    records would otherwise stay forever)."""

    def __init__(self, derive: Callable[[S], V], limit: int = 100_000) -> None:
        self._derive = derive
        self._limit = limit
        self._items: dict[K, tuple[S, V]] = {}

    def get(self, key: K, source: S) -> V:
        cached = self._items.get(key)
        if cached is not None and cached[0] is source:
            return cached[1]
        value = self._derive(source)
        if len(self._items) >= self._limit:
            self._items.clear()
        self._items[key] = (source, value)
        return value

    def __len__(self) -> int:
        return len(self._items)
