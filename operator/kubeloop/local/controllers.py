"""The control loops a cluster runs beside kube-apiserver, shrunk to what the API depends on.

- the garbage collector: ownerReferences with background, foreground and orphan propagation;
- the namespace controller: a deleted namespace empties, then disappears;
- the apiextensions controllers: a CRD is served as soon as it is stored, and a deleted CRD
  first deletes its custom resources, then stops being served.

They react to committed changes (a store listener marks what to look at) and act on the
next turn of the event loop, through the same `ObjectAPI` as clients do: finalizers hold
them back exactly as they hold back a client's delete.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubeloop.local import crds
from kubeloop.local.catalog import ResourceCatalog, ResourceDef
from kubeloop.local.errors import APIError
from kubeloop.local.operations import (
    CRDS,
    FOREGROUND_FINALIZER,
    NAMESPACE_FINALIZER,
    NAMESPACES,
    ORPHAN_FINALIZER,
    DeleteOptions,
    ObjectAPI,
    WriteOptions,
    finalizers_of,
    is_deleting,
    with_meta,
)
from kubeloop.local.store import DELETED, Change, FullKey, StorageKey, metadata

logger = logging.getLogger(__name__)


class Controllers:
    """Runs the garbage collector, namespace and CRD lifecycles after each relevant change."""

    def __init__(self, api: ObjectAPI, catalog: ResourceCatalog) -> None:
        self.api = api
        self.store = api.store
        self.catalog = catalog
        self._suspects: set[FullKey] = set()  # objects whose owners or dependents need a look
        self._terminating_namespaces: set[str] = set()
        self._terminating_crds: set[str] = set()
        self._wakeup: asyncio.Event | None = None
        self.store.add_listener(self._observe)

    async def run(self) -> None:
        """Reconcile whenever something changed; runs until cancelled."""
        wakeup = self._wakeup_event()
        while True:
            await wakeup.wait()
            wakeup.clear()
            self.reconcile()

    def _wakeup_event(self) -> asyncio.Event:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        return self._wakeup

    @property
    def idle(self) -> bool:
        """True when the last change has been acted on (what waits on others' finalizers may remain)."""
        return not self._wakeup_event().is_set()

    def reconcile(self) -> None:
        """Act on everything marked, until nothing more can be done right now."""
        for _ in range(10_000):  # a bound against a bug that would mark forever
            namespaces, crd_names = set(self._terminating_namespaces), set(self._terminating_crds)
            self._collect_garbage()
            for namespace in namespaces:
                self._empty_namespace(namespace)
            for name in crd_names:
                self._clean_up_crd(name)
            if (not self._suspects and self._terminating_namespaces <= namespaces
                    and self._terminating_crds <= crd_names):
                return  # what remains waits on finalizers that others must remove: a change wakes us
        logger.error("The local controllers did not settle; pending: %r", self._suspects)

    # Observing changes (synchronously, inside the store's commit).

    def _observe(self, change: Change) -> None:
        obj, meta = change.obj, metadata(change.obj)
        key: FullKey = (change.storage, meta.get('namespace'), meta['name'])
        if change.storage == CRDS:
            self._serve_crd(change)
        if change.type == DELETED:
            self._observe_deletion(change.storage, obj)
        else:
            if meta.get('ownerReferences') or (change.old and metadata(change.old).get('ownerReferences')):
                self._suspects.add(key)
            if is_deleting(obj):
                self._mark_deleting(change.storage, obj, key)
        self._wakeup_event().set()

    def _observe_deletion(self, storage: StorageKey, obj: dict[str, Any]) -> None:
        meta = metadata(obj)
        self._suspects.update(self.store.dependents_of(meta.get('uid', '')))
        self._suspects.update(self._owners_of(obj))  # a foreground owner may be free now
        namespace = meta.get('namespace')
        if namespace and self._namespace_is_terminating(namespace):
            self._terminating_namespaces.add(namespace)
        crd_name = self._terminating_crd_serving(storage)
        if crd_name is not None:
            self._terminating_crds.add(crd_name)

    def _mark_deleting(self, storage: StorageKey, obj: dict[str, Any], key: FullKey) -> None:
        if any(f in finalizers_of(obj) for f in (FOREGROUND_FINALIZER, ORPHAN_FINALIZER)):
            self._suspects.add(key)
        if storage == NAMESPACES:
            self._terminating_namespaces.add(metadata(obj)['name'])
        if storage == CRDS:
            self._terminating_crds.add(metadata(obj)['name'])

    def _owners_of(self, obj: dict[str, Any]) -> list[FullKey]:
        keys = [self.store.find_uid(ref.get('uid', '')) for ref in metadata(obj).get('ownerReferences') or []]
        return [key for key in keys if key is not None]

    def _namespace_is_terminating(self, namespace: str) -> bool:
        ns = self.store.get(NAMESPACES, None, namespace)
        return ns is not None and is_deleting(ns)

    def _terminating_crd_serving(self, storage: StorageKey) -> str | None:
        name = f"{storage[1]}.{storage[0]}"
        crd = self.store.get(CRDS, None, name) if storage[0] else None
        return name if crd is not None and is_deleting(crd) else None

    def _serve_crd(self, change: Change) -> None:
        """Serve what a stored CRD declares, at once: clients may use it on their next request."""
        name = metadata(change.obj)['name']
        served_before = {res.storage for res in self.catalog.unregister_custom(name)}
        if change.type == DELETED:
            for storage in served_before:
                self.store.stop_watchers(storage)
            return
        for definition in crds.resource_definitions(change.obj):
            self.catalog.register_custom(definition)

    # The garbage collector.

    def _collect_garbage(self) -> None:
        while self._suspects:
            storage, namespace, name = self._suspects.pop()
            obj = self.store.get(storage, namespace, name)
            res = self.catalog.preferred(*storage)
            if obj is None or res is None:
                continue
            try:
                if is_deleting(obj) and FOREGROUND_FINALIZER in finalizers_of(obj):
                    self._delete_dependents_first(res, obj)
                elif is_deleting(obj) and ORPHAN_FINALIZER in finalizers_of(obj):
                    self._orphan_dependents(res, obj)
                current = self.store.get(storage, namespace, name)
                if current is not None:
                    self._check_owners(res, current)
            except APIError as exc:  # e.g. a concurrent change: the change itself marks it again
                logger.debug("Garbage collection of %s %s/%s postponed: %s", storage, namespace, name, exc)

    def _check_owners(self, res: ResourceDef, obj: dict[str, Any]) -> None:
        """Delete a dependent whose owners are all gone; drop references to vanished owners."""
        refs = metadata(obj).get('ownerReferences') or []
        if not refs or is_deleting(obj):
            return
        solid, waiting = [], []
        for ref in refs:
            owner = self._owner(obj, ref)
            if owner is not None and is_deleting(owner) and FOREGROUND_FINALIZER in finalizers_of(owner):
                waiting.append(ref)
            elif owner is not None:
                solid.append(ref)
        if solid:
            if len(solid) < len(refs):
                self.api.update(res, obj, with_meta(obj, ownerReferences=solid), WriteOptions())
            return
        meta = metadata(obj)
        has_dependents = bool(self.store.dependents_of(meta.get('uid', '')))
        policy = 'Foreground' if waiting and has_dependents else 'Background'
        self.api.delete(res, meta.get('namespace'), meta['name'], DeleteOptions(propagation_policy=policy))

    def _owner(self, dependent: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any] | None:
        key = self.store.find_uid(ref.get('uid', ''))
        if key is None:
            return None
        storage, namespace, name = key
        if namespace is not None and namespace != metadata(dependent).get('namespace'):
            return None  # owners are looked up in the dependent's namespace, or cluster-wide
        return self.store.get(storage, namespace, name)

    def _delete_dependents_first(self, res: ResourceDef, owner: dict[str, Any]) -> None:
        uid = metadata(owner).get('uid', '')
        for key in self.store.dependents_of(uid):
            self._suspects.add(key)  # each dependent sees its owner waiting and goes
        blocking = [key for key in self.store.dependents_of(uid) if self._blocks_owner(key, uid)]
        if not blocking:
            self._remove_finalizer(res, owner, FOREGROUND_FINALIZER)

    def _blocks_owner(self, key: FullKey, owner_uid: str) -> bool:
        dependent = self.store.get(*key)
        refs = metadata(dependent).get('ownerReferences') or [] if dependent else []
        return any(ref.get('uid') == owner_uid and ref.get('blockOwnerDeletion') for ref in refs)

    def _orphan_dependents(self, res: ResourceDef, owner: dict[str, Any]) -> None:
        uid = metadata(owner).get('uid', '')
        for storage, namespace, name in self.store.dependents_of(uid):
            dependent = self.store.get(storage, namespace, name)
            dependent_res = self.catalog.preferred(*storage)
            if dependent is None or dependent_res is None:
                continue
            refs = [ref for ref in metadata(dependent).get('ownerReferences') or [] if ref.get('uid') != uid]
            self.api.update(dependent_res, dependent, with_meta(dependent, ownerReferences=refs or None),
                            WriteOptions())
        self._remove_finalizer(res, owner, ORPHAN_FINALIZER)

    def _remove_finalizer(self, res: ResourceDef, obj: dict[str, Any], finalizer: str) -> None:
        current = self.store.get(res.storage, metadata(obj).get('namespace'), metadata(obj)['name'])
        if current is None or finalizer not in finalizers_of(current):
            return
        remaining = [f for f in finalizers_of(current) if f != finalizer]
        self.api.update(res, current, with_meta(current, finalizers=remaining or None), WriteOptions())

    # The namespace controller.

    def _empty_namespace(self, namespace: str) -> None:
        ns_res = self.catalog.preferred(*NAMESPACES)
        ns = self.store.get(NAMESPACES, None, namespace)
        if ns is None or ns_res is None or not is_deleting(ns):
            self._terminating_namespaces.discard(namespace)
            return
        for storage, obj in list(self.store.in_namespace(namespace)):
            res = self.catalog.preferred(*storage)
            if res is not None and not is_deleting(obj):
                self._delete_quietly(res, obj)
        if next(self.store.in_namespace(namespace), None) is not None:
            return  # finalizers hold some content: a later deletion brings us back
        self._terminating_namespaces.discard(namespace)
        finalizers = [f for f in (ns.get('spec') or {}).get('finalizers') or [] if f != NAMESPACE_FINALIZER]
        finalized = {**ns, 'spec': {**(ns.get('spec') or {}), 'finalizers': finalizers}}
        self.api.update(ns_res, ns, finalized, WriteOptions(), subresource='finalize')

    def _delete_quietly(self, res: ResourceDef, obj: dict[str, Any]) -> None:
        try:
            self.api.delete(res, metadata(obj).get('namespace'), metadata(obj)['name'], DeleteOptions())
        except APIError as exc:
            logger.debug("Could not delete %s %s: %s", res.plural, metadata(obj)['name'], exc)

    # The CRD cleanup controller.

    def _clean_up_crd(self, name: str) -> None:
        crd = self.store.get(CRDS, None, name)
        crd_res = self.catalog.preferred(*CRDS)
        if crd is None or crd_res is None or not is_deleting(crd):
            self._terminating_crds.discard(name)
            return
        if not any(c.get('type') == 'Terminating' for c in (crd.get('status') or {}).get('conditions') or []):
            status = crds.terminating_status(crd.get('status') or {}, self.api.now())
            crd = self.api.update(crd_res, crd, {**crd, 'status': status}, WriteOptions(), subresource='status').obj
        storage = (crd['spec']['group'], crd['spec']['names']['plural'])
        res = self.catalog.preferred(*storage)
        if res is not None:
            for obj in self.store.objects(storage):
                if not is_deleting(obj):
                    self._delete_quietly(res, obj)
        if self.store.objects(storage):
            return  # custom resources with finalizers: their deletion brings us back
        self._terminating_crds.discard(name)
        self._remove_finalizer(crd_res, crd, crds.CLEANUP_FINALIZER)
