"""kopf glue for FeatureSet: build the desired children, apply them, read what they produced,
derive the status (see core.reconcile for validation and the one status write).

One pass, the same for create, update, resume, a child's change and the periodic resync:

1. the CronJob (when `spec.schedule` is set) is applied; removing the schedule deletes it;
2. the FeatureSet's Jobs are listed by label (one-off Jobs it owns, Jobs its CronJob made);
3. the object store is read: published versions and run records. A missing Secret or an
   unreachable store becomes a condition, never a failed pass;
4. the one-off Job of the current spec generation is created unless it exists or its run
   is already recorded; running one-off Jobs of an older spec are deleted;
5. `status.compute_status` derives the status; Events are posted for a new version or a
   failed run.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from kubeloop.core.events import post_event
from kubeloop.core.kube import KubeClient, api_errors_translated
from kubeloop.core.labels import label_value, owner_label_key
from kubeloop.core.reconcile import ObjectStoreNotConfigured, Observed, Runtime, register_reconciler
from kubeloop.featureset import desired, results, status
from kubeloop.featureset.api import RESOURCE, FeatureSetSpec
from kubeloop.store import CorruptObject, DigestMismatch, NotFound, ObjectStore, StoreError, Version
from kubeloop.store.layout import version_id_of_manifest_key, versions_folder

log = logging.getLogger("kubeloop.featureset")

CHILDREN = [("batch", "v1", "jobs"), ("batch", "v1", "cronjobs")]
# Run results read per pass: the newest Job's is among them, and the newest successful run's
# (which decides the latest version) nearly always.
RECENT_RUNS = 5


def reconcile(spec: FeatureSetSpec, observed: Observed) -> dict[str, Any]:
    runtime = Runtime.get()
    client, settings = runtime.client, runtime.settings
    owner = desired.Owner.of(observed)
    prefix = results.featureset_prefix(owner.namespace, owner.name)
    with api_errors_translated(f"reconciling the CronJob and Jobs of FeatureSet {owner.namespace}/{owner.name}"):
        cronjob = apply_cronjob(client, desired.desired_cronjob(spec, owner, settings), owner)
        jobs = materialization_jobs(client, owner, cronjob)

    store, versions, store_error = None, None, None
    try:
        store = runtime.store_for(owner.namespace)
        versions = published_versions(store, prefix)
    except (ObjectStoreNotConfigured, StoreError) as error:
        store_error = f"cannot read the object store: {error}"
        log.info("FeatureSet %s/%s: %s", owner.namespace, owner.name, store_error)

    job_name = desired.materialization_job_name(owner)
    with api_errors_translated(f"creating the materialization Job {owner.namespace}/{job_name}"):
        recorded = store is not None and versions is not None and run_recorded(store, owner, job_name)
        if desired.needs_materialization_job(job_name, jobs, run_recorded=recorded):
            jobs = [*jobs, client.apply(desired.desired_materialization_job(spec, owner, settings))]
        for name in desired.superseded_jobs(jobs, owner):
            log.info("FeatureSet %s/%s: deleting Job %s of an older spec", owner.namespace, owner.name, name)
            client.delete("batch/v1", "Job", owner.namespace, name)
            jobs = [job for job in jobs if job["metadata"]["name"] != name]

    runs: list[dict[str, Any]] = []
    if store is not None and versions is not None:
        try:
            runs = results.read_runs(store, owner.namespace, owner.name, limit=RECENT_RUNS)
        except StoreError as error:
            store_error = f"cannot read the run results: {error}"

    new_status = status.compute_status(
        spec, observed, jobs=jobs, versions=versions, runs=runs, store_error=store_error,
        now=observed.now, bucket=settings.object_store.bucket, prefix=prefix)
    if settings.post_events:
        for event in status.transition_events(observed.status, new_status):
            post_event(client, RESOURCE.api_version, RESOURCE.kind, observed, event)
    return new_status


def register(registry: kopf.OperatorRegistry) -> None:
    register_reconciler(registry, RESOURCE, reconcile, children=CHILDREN)


# -- children -----------------------------------------------------------------------------------


def apply_cronjob(client: KubeClient, manifest: Mapping[str, Any] | None,
                  owner: desired.Owner) -> Mapping[str, Any] | None:
    """Apply the CronJob, or delete ours when the spec has no schedule; the CronJob or None."""
    if manifest is not None:
        return client.apply(manifest)
    name = desired.cronjob_name(owner)
    existing = client.get("batch/v1", "CronJob", owner.namespace, name)
    if existing is not None and desired.owned_by(existing, [owner.uid]):
        log.info("FeatureSet %s/%s: schedule removed, deleting CronJob %s", owner.namespace, owner.name, name)
        client.delete("batch/v1", "CronJob", owner.namespace, name)
    return None


def materialization_jobs(client: KubeClient, owner: desired.Owner,
                         cronjob: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The FeatureSet's Jobs: its one-off Jobs and those its CronJob created."""
    owners = [owner.uid]
    if cronjob is not None:
        owners.append(cronjob["metadata"]["uid"])
    selector = f"{owner_label_key(RESOURCE.kind)}={label_value(owner.name)}"
    return [job for job in client.list("batch/v1", "Job", owner.namespace, label_selector=selector)
            if desired.owned_by(job, owners)]


# -- the object store ---------------------------------------------------------------------------


class _ManifestCache:
    """Version manifests already read. They are immutable (content-addressed, never
    overwritten), so each is read once per operator process, not on every pass."""

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._items: OrderedDict[tuple[str, str, str], Version] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> Version | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[str, str, str], version: Version) -> None:
        with self._lock:
            self._items[key] = version
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)


_MANIFESTS = _ManifestCache()
_READ_WORKERS = 8


def published_versions(store: ObjectStore, prefix: str) -> list[Version]:
    """Every version published under `prefix`, oldest first (as `ObjectStore.list_versions`,
    reading only the manifests this process has not read before)."""
    ids = [version_id for info in store.list_objects(versions_folder(prefix), recursive=False)
           if (version_id := version_id_of_manifest_key(prefix, info.key)) is not None]

    def read(version_id: str) -> Version | None:
        key = (store.bucket, prefix, version_id)
        cached = _MANIFESTS.get(key)
        if cached is not None:
            return cached
        try:
            version = store.read_manifest(prefix, version_id)
        except (NotFound, CorruptObject, DigestMismatch) as error:
            log.warning("object store: skipping version %s of %s: %s", version_id, prefix, error)
            return None
        _MANIFESTS.put(key, version)
        return version

    if len(ids) <= 1:
        found = [read(version_id) for version_id in ids]
    else:
        with ThreadPoolExecutor(max_workers=min(_READ_WORKERS, len(ids))) as pool:
            found = list(pool.map(read, ids))
    return sorted((v for v in found if v is not None), key=lambda v: (v.created, v.id))


def run_recorded(store: ObjectStore, owner: desired.Owner, run_id: str) -> bool:
    """Whether run `run_id` already happened (it wrote its run result)."""
    try:
        return store.exists(results.run_result_key(owner.namespace, owner.name, run_id))
    except StoreError:
        return False
