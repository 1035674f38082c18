"""The in-memory object store of the local API server: objects, resourceVersions, change log.

What etcd plus the watch cache are to kube-apiserver:

- one global, monotonically increasing resourceVersion stamped on every write;
- the current state of every object (never mutated in place: every write stores a new dict,
  so readers may hand stored dicts out without copying);
- a bounded log of recent changes, from which watches resume at a resourceVersion
  (older than the log's window: "too old", which the API answers with 410 Gone);
- live fan-out of changes to watchers and to in-process listeners (the controllers);
- indexes by uid and by owner uid, for the garbage collector.

It knows nothing about HTTP, validation or API semantics; `operations.py` does.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

StorageKey = tuple[str, str]  # (group, plural): every served version of a resource shares it
ObjectKey = tuple[str | None, str]  # (namespace or None for cluster-scoped, name)
FullKey = tuple[StorageKey, str | None, str]

ADDED, MODIFIED, DELETED = 'ADDED', 'MODIFIED', 'DELETED'


@dataclass(frozen=True)
class Change:
    """One committed write, as watchers see it."""

    resource_version: int
    storage: StorageKey
    type: str  # ADDED, MODIFIED or DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None  # the previous state (None for ADDED)


class ResourceVersionTooOld(Exception):
    """The change log no longer reaches back to the requested resourceVersion."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


@dataclass(eq=False)
class Watcher:
    """A live subscription to the changes of one storage (optionally one namespace)."""

    storage: StorageKey
    namespace: str | None
    queue: asyncio.Queue[Change | None] = field(default_factory=asyncio.Queue)

    def stop(self) -> None:
        self.queue.put_nowait(None)


def metadata(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get('metadata')
    return meta if isinstance(meta, dict) else {}


def owner_uids(obj: dict[str, Any] | None) -> set[str]:
    if obj is None:
        return set()
    refs = metadata(obj).get('ownerReferences') or []
    return {ref['uid'] for ref in refs if isinstance(ref, dict) and isinstance(ref.get('uid'), str)}


def with_resource_version(obj: dict[str, Any], resource_version: int) -> dict[str, Any]:
    return {**obj, 'metadata': {**metadata(obj), 'resourceVersion': str(resource_version)}}


class ObjectStore:
    """Objects by storage and (namespace, name), stamped with a global resourceVersion."""

    def __init__(self, *, change_window: int = 10_000) -> None:
        self._objects: dict[StorageKey, dict[ObjectKey, dict[str, Any]]] = collections.defaultdict(dict)
        self._resource_version = 0
        self._log: collections.deque[Change] = collections.deque(maxlen=change_window)
        self._log_floor = 0  # changes with resourceVersion > floor are all still in the log
        self._watchers: dict[StorageKey, set[Watcher]] = collections.defaultdict(set)
        self._listeners: list[Callable[[Change], None]] = []
        self._by_uid: dict[str, FullKey] = {}
        self._dependents: dict[str, set[FullKey]] = collections.defaultdict(set)

    # Reading.

    @property
    def resource_version(self) -> int:
        return self._resource_version

    @property
    def oldest_watchable_version(self) -> int:
        """Watches may resume from this resourceVersion or any later one."""
        return self._log_floor

    def get(self, storage: StorageKey, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._objects[storage].get((namespace, name))

    def objects(self, storage: StorageKey, namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects ordered by namespace and name, as kube-apiserver lists them (etcd key order)."""
        objs = self._objects[storage]
        keys = sorted((key for key in objs if namespace is None or key[0] == namespace),
                      key=lambda key: (key[0] or '', key[1]))
        return [objs[key] for key in keys]

    def storages(self) -> list[StorageKey]:
        return [storage for storage, objs in self._objects.items() if objs]

    def in_namespace(self, namespace: str) -> Iterator[tuple[StorageKey, dict[str, Any]]]:
        for storage, objs in list(self._objects.items()):
            for (ns, _), obj in list(objs.items()):
                if ns == namespace:
                    yield storage, obj

    def find_uid(self, uid: str) -> FullKey | None:
        return self._by_uid.get(uid)

    def dependents_of(self, uid: str) -> list[FullKey]:
        return sorted(self._dependents.get(uid, ()), key=lambda key: (key[0], key[1] or '', key[2]))

    # Writing: each write gets the next resourceVersion and is logged and fanned out.

    def add(self, storage: StorageKey, obj: dict[str, Any]) -> dict[str, Any]:
        return self._commit(storage, ADDED, obj, old=None)

    def modify(self, storage: StorageKey, obj: dict[str, Any]) -> dict[str, Any]:
        old = self.get(storage, metadata(obj).get('namespace'), metadata(obj)['name'])
        if old is None:
            raise KeyError(f"{storage} {metadata(obj).get('namespace')}/{metadata(obj)['name']} is absent")
        return self._commit(storage, MODIFIED, obj, old=old)

    def remove(self, storage: StorageKey, namespace: str | None, name: str,
               last_state: dict[str, Any] | None = None) -> dict[str, Any]:
        """Delete an object; the DELETED event carries its last state (by default, the stored one)."""
        old = self.get(storage, namespace, name)
        if old is None:
            raise KeyError(f"{storage} {namespace}/{name} is absent")
        return self._commit(storage, DELETED, last_state if last_state is not None else old, old=old)

    def _commit(self, storage: StorageKey, kind: str, obj: dict[str, Any],
                old: dict[str, Any] | None) -> dict[str, Any]:
        self._resource_version += 1
        stamped = with_resource_version(obj, self._resource_version)
        meta = metadata(stamped)
        key: ObjectKey = (meta.get('namespace'), meta['name'])
        if kind == DELETED:
            del self._objects[storage][key]
        else:
            self._objects[storage][key] = stamped
        self._reindex((storage, *key), old, None if kind == DELETED else stamped)

        change = Change(self._resource_version, storage, kind, stamped, old)
        if len(self._log) == self._log.maxlen:
            self._log_floor = self._log[0].resource_version
        self._log.append(change)
        for watcher in self._watchers.get(storage, ()):
            if watcher.namespace is None or watcher.namespace == key[0]:
                watcher.queue.put_nowait(change)
        for listener in self._listeners:
            listener(change)
        return stamped

    def _reindex(self, key: FullKey, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        old_uid = metadata(old).get('uid') if old else None
        new_uid = metadata(new).get('uid') if new else None
        if old_uid and old_uid != new_uid:
            self._by_uid.pop(old_uid, None)
        if new_uid:
            self._by_uid[new_uid] = key
        old_owners, new_owners = owner_uids(old), owner_uids(new)
        for uid in old_owners - new_owners:
            self._dependents[uid].discard(key)
            if not self._dependents[uid]:
                del self._dependents[uid]
        for uid in new_owners - old_owners:
            self._dependents[uid].add(key)

    # Watching.

    def changes_since(self, storage: StorageKey, resource_version: int) -> list[Change]:
        """Logged changes of one storage after `resource_version`, oldest first."""
        if resource_version < self._log_floor:
            raise ResourceVersionTooOld(resource_version, self._log_floor)
        newer: list[Change] = []
        for change in reversed(self._log):  # the recent tail is usually short: stop early
            if change.resource_version <= resource_version:
                break
            if change.storage == storage:
                newer.append(change)
        newer.reverse()
        return newer

    def watch(self, storage: StorageKey, namespace: str | None) -> Watcher:
        watcher = Watcher(storage, namespace)
        self._watchers[storage].add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers[watcher.storage].discard(watcher)

    def stop_watchers(self, storage: StorageKey | None = None) -> None:
        """End live watches (all of them, or those of one storage whose resource vanished)."""
        for key, watchers in self._watchers.items():
            if storage is None or key == storage:
                for watcher in watchers:
                    watcher.stop()

    def add_listener(self, listener: Callable[[Change], None]) -> None:
        """Call `listener` synchronously after every committed change (controllers use it)."""
        self._listeners.append(listener)
