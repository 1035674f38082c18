"""A controller's work queue and its view of the objects it writes, as client-go gives controllers.

- `WorkQueue`: keys to reconcile; a key is never processed by two workers at once, a key
  added while it is processed is processed again afterwards, and `add_after` delays a key.
- `WrittenObjects`: an informer's cache overlaid with the objects this controller wrote
  (create/patch/delete responses) until the watch catches up, so that a reconcile never acts
  on a state older than its own last write (what the real controllers' "expectations" do).
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterator
from typing import Any, Generic, TypeVar

from kubeloop.local.node.client import Informer, ObjectKey, object_key

K = TypeVar('K', bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._queued: list[K] = []
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._wakeup = asyncio.Event()

    def add(self, key: K) -> None:
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.append(key)
            self._wakeup.set()

    def add_after(self, key: K, seconds: float) -> None:
        """Add `key` after `seconds` (wall time); an earlier pending delay for it wins."""
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, seconds)
        current = self._timers.get(key)
        if current is not None and current.when() <= when:
            return
        if current is not None:
            current.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> K:
        while not self._queued:
            self._wakeup.clear()
            await self._wakeup.wait()
        key = self._queued.pop(0)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


def _version(obj: dict[str, Any]) -> int:
    value = str((obj.get('metadata') or {}).get('resourceVersion') or '0')
    return int(value) if value.isdigit() else 0


def _uid(obj: dict[str, Any]) -> str:
    return str((obj.get('metadata') or {}).get('uid') or '')


class WrittenObjects:
    """An informer's cache plus this controller's own newer writes (see the module docstring)."""

    def __init__(self, informer: Informer) -> None:
        self.informer = informer
        self._written: dict[ObjectKey, dict[str, Any]] = {}
        self._gone: set[str] = set()  # uids this controller deleted, until the watch says so

    def remember(self, obj: dict[str, Any]) -> None:
        self._written[object_key(obj)] = obj

    def remember_gone(self, obj: dict[str, Any]) -> None:
        self._gone.add(_uid(obj))
        self._written.pop(object_key(obj), None)

    def observe(self, kind: str, obj: dict[str, Any]) -> None:
        """Called with each watch event: drop writes the cache has caught up with."""
        key = object_key(obj)
        if kind == 'DELETED':
            self._gone.discard(_uid(obj))
            if key in self._written and _uid(self._written[key]) == _uid(obj):
                del self._written[key]
            return
        written = self._written.get(key)
        if written is not None and (_uid(written) != _uid(obj) or _version(obj) >= _version(written)):
            del self._written[key]

    def get(self, key: ObjectKey) -> dict[str, Any] | None:
        cached = self.informer.cache.get(key)
        written = self._written.get(key)
        newest = written if written is not None and (cached is None or _version(written) > _version(cached)) else cached
        if newest is None or _uid(newest) in self._gone:
            return None
        return newest

    def values(self) -> Iterator[dict[str, Any]]:
        for key in set(self.informer.cache) | set(self._written):
            obj = self.get(key)
            if obj is not None:
                yield obj
