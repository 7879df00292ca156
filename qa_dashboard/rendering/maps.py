"""Slices of the stored voxel maps, read once and kept in bounded memory caches.

An axial slice is one zarr chunk, so it is read alone. A coronal or sagittal slice touches every axial chunk, so
the first one of a map reads the whole volume into the volume cache and later slices are views into it. Both
caches are least-recently-used and bounded; everything is thread-safe (the dev server and gunicorn use threads).

Every cache is tied to the store's version (:meth:`MapCache.at_version`, from
:func:`qa_dashboard.store.store_version`): a batch that redoes a case rewrites its maps at the same paths, so when
the version changes everything read before is dropped, and each entry is keyed by the version current when its read
began (a read racing a change is never served under the new version).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline.store.artifacts import AXES, ArtifactStore

VOLUME_CACHE_BYTES = 1 << 30
SLICE_CACHE_BYTES = 256 << 20
DERIVED_CACHE_ITEMS = 256
RENDER_CACHE_BYTES = 64 << 20  # rendered slice images (PNG data URIs), keyed by everything that shapes them


class LruCache:
    """A least-recently-used mapping bounded by the total ``nbytes`` of its values (``weigh`` of each)."""

    def __init__(self, capacity: int, weigh: Callable[[Any], int]) -> None:
        self.capacity, self.weigh = capacity, weigh
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Event] = {}

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: Any) -> Any:
        weight = self.weigh(value)
        with self._lock:
            if key in self._items:
                self._size -= self.weigh(self._items.pop(key))
            self._items[key] = value
            self._size += weight
            while self._size > self.capacity and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._size -= self.weigh(dropped)
        return value

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The cached value of ``key``, computing (outside the lock) and caching it when absent. Threads asking for
        a key being computed wait for that computation instead of repeating it (many users opening one page)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            pending = self._pending.get(key)
            computing = pending is None
            if pending is None:
                pending = self._pending[key] = threading.Event()
        if not computing:
            pending.wait()
            found = self.get(key)
            return found if found is not None else compute()  # the computation failed, or was dropped already
        try:
            return self.put(key, compute())
        finally:
            with self._lock:
                del self._pending[key]
            pending.set()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0


def _nbytes(value: NDArray[np.generic]) -> int:
    return int(value.nbytes)


class MapCache:
    """Cached reads of the maps of one artifact store; also the caches of values derived from whole maps and of
    rendered pictures. All are of one store version (:meth:`at_version`)."""

    def __init__(self, artifacts: ArtifactStore) -> None:
        self.artifacts = artifacts
        self.version: Hashable = None
        self._volumes = LruCache(VOLUME_CACHE_BYTES, _nbytes)
        self._slices = LruCache(SLICE_CACHE_BYTES, _nbytes)
        self._derived = LruCache(DERIVED_CACHE_ITEMS, lambda _value: 1)
        self._renders = LruCache(RENDER_CACHE_BYTES, len)
        self._lock = threading.Lock()

    def at_version(self, version: Hashable) -> None:
        """Serve what the store holds at ``version``: when it differs from the last one, every cache is emptied."""
        with self._lock:
            if version == self.version:
                return
            self.version = version
            for cache in (self._volumes, self._slices, self._derived, self._renders):
                cache.clear()

    def volume(self, path: str) -> NDArray[np.generic]:
        """The whole map (Z, Y, X) or (C, Z, Y, X)."""
        return self._volumes.get_or_compute((self.version, path), lambda: self.artifacts.read(path))

    def plane(self, path: str, axis: str, index: int) -> NDArray[np.generic]:
        """One slice (axial, coronal or sagittal) of a map; for (C, Z, Y, X) maps the class axis stays first."""
        version = self.version
        volume = self._volumes.get((version, path))
        if volume is None and axis == "axial":
            return self._slices.get_or_compute((version, path, index),
                                               lambda: self.artifacts.read_slice(path, axis, index))
        if volume is None:
            volume = self.volume(path)
        selection: list[slice | int] = [slice(None)] * volume.ndim
        offset = volume.ndim - 3
        if not 0 <= index < volume.shape[offset + AXES[axis]]:
            # the artifact store's own check, with its message naming the map
            return self.artifacts.read_slice(path, axis, index)
        selection[offset + AXES[axis]] = index
        return volume[tuple(selection)]

    def derived(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """A value computed from whole maps or the database (thresholds, slice profiles, regions, query results),
        cached under ``key``."""
        return self._derived.get_or_compute((self.version, key), compute)

    def rendered(self, key: Hashable, compute: Callable[[], str]) -> str:
        """A rendered picture (a PNG data URI, or "" for none), cached under ``key``."""
        return self._renders.get_or_compute((self.version, key), compute)
