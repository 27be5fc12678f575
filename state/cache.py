"""A bounded in-process cache: the hot tier in front of SQLite."""
from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_MISSING = object()


class LRUCache(Generic[K, V]):
    """Least-recently-used map with a fixed capacity and hit/miss counters.

    Safe to share between threads without a lock: each `OrderedDict` call is atomic
    under the GIL, and a key another thread evicted between two calls is simply not
    moved (a `KeyError` there means "already gone")."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("cache capacity must be positive")
        self.capacity = capacity
        self._data: OrderedDict[K, V] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: K) -> bool:
        return key in self._data

    def get(self, key: K, default: object = _MISSING) -> V | object:
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            self.misses += 1
            return default
        self.hits += 1
        try:
            self._data.move_to_end(key)
        except KeyError:
            pass
        return value

    def peek(self, key: K, default: object = _MISSING) -> V | object:
        """The value without counting a hit or a miss, or moving it (prefetch asks
        what is cached already)."""
        return self._data.get(key, default)

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        try:
            self._data.move_to_end(key)
            if len(self._data) > self.capacity:
                self._data.popitem(last=False)
        except KeyError:
            pass

    def resize(self, capacity: int) -> None:
        """A new capacity; the least recently used entries beyond it are dropped."""
        if capacity <= 0:
            raise ValueError("cache capacity must be positive")
        self.capacity = capacity
        while len(self._data) > capacity:
            self._data.popitem(last=False)

    def discard(self, key: K) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()


MISSING = _MISSING
