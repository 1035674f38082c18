"""kopf glue for TrainingRun: resolve the FeatureSet, create the attempt's Job and the Service,
read what the trainer wrote, derive the status (see core.reconcile for validation and the one
status write).

One pass, the same for create, update, resume, a Job's change, the periodic resync and the
progress poll:

1. the run's Jobs are listed (one per attempt, label `kubeloop.dev/trainingrun=<name>`);
2. before the first Job: the FeatureSet is read and its version resolved; a missing FeatureSet
   or one without a (the pinned) version leaves the run Pending with a condition saying so;
   a FeatureSet event re-reconciles the runs waiting for it (`featureset_changed`);
3. the object store is read (progress.json, record.json, failure.json): a missing Secret or an
   unreachable store becomes a condition, never a failed pass;
4. the Job of the current attempt is created if missing, and after a transient failure the Job
   of the next one. Jobs are created, never modified (only `spec.suspend` is passed on to the
   running Job): every attempt uses the spec and FeatureSet version recorded in the run's
   first Job, so a refused spec change (SpecImmutable) is never half-applied;
5. on success with spec.register, the ModelVersion is created (see `ensure_model_version`);
6. `status.compute_status` derives the status.

Progress while running: `core.reconcile.PhasePoller`, one small thread that re-reconciles Running runs
every `KUBELOOP_PROGRESS_POLL_SECONDS` (5 s). Not a kopf daemon or timer: those need a finalizer
on every TrainingRun (docs/performance.md); nor Pod events: the trainer writes progress.json
without any pod changing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from kubeloop import API_VERSION
from kubeloop.core import conditions
from kubeloop.core.events import post_event
from kubeloop.core.kube import KubeClient, api_errors_translated
from kubeloop.core.labels import label_value, owner_label_key
from kubeloop.core.reconcile import (
    ObjectStoreNotConfigured,
    Observed,
    Reconcilable,
    Runtime,
    register_poller,
    register_reconciler,
    resync_object,
)
from kubeloop.core.settings import Settings
from kubeloop.store import NotFound, ObjectStore, StoreError
from kubeloop.trainingrun import desired, status
from kubeloop.trainingrun.api import RESOURCE, TrainingRunSpec

log = logging.getLogger("kubeloop.trainingrun")

CHILDREN = [("batch", "v1", "jobs")]
PROGRESS_FILE, RECORD_FILE, FAILURE_FILE = "progress.json", "record.json", "failure.json"
# A document the trainer wrote before the current Job was created belongs to another run (a
# TrainingRun deleted and created again under the same name); this much clock skew between the
# object store and the API server is tolerated.
CLOCK_SKEW = timedelta(seconds=5)
FEATURESET_KIND = "FeatureSet"


def reconcile(spec: TrainingRunSpec, observed: Observed) -> dict[str, Any]:
    runtime = Runtime.get()
    client, settings = runtime.client, runtime.settings
    owner = desired.Owner.of(observed)
    where = f"TrainingRun {owner.namespace}/{owner.name}"
    with api_errors_translated(f"listing the Jobs of {where}"):
        jobs = run_jobs(client, owner)
    attempts = max([int(observed.status.get("attempts") or 0)] + [desired.job_attempt(j) or 0 for j in jobs])
    job = status.current_job(jobs)
    recorded = desired.recorded_run(job) if job is not None else None
    trained = trained_spec(spec, recorded)
    finished = observed.status.get("phase") in status.TERMINAL_PHASES and bool(observed.status.get("completionTime"))

    resolution: tuple[status.Decision, desired.FeatureSetVersion | None] = (
        status.Decision("Unknown", "Pending", ""), None)
    if job is None and not finished:
        pinned = spec.feature_set_version or (observed.status.get("featureSetVersion") if attempts else None)
        resolution, job = start_attempt(client, settings, spec, owner, max(attempts, 1), pinned)
        if job is not None:
            jobs, attempts, recorded = [*jobs, job], max(attempts, 1), desired.recorded_run(job)

    facts = status.StoreFacts()
    prefix = desired.store_prefix(owner.namespace, owner.name)
    if job is not None:
        facts = read_store(runtime, owner, prefix, job)
        state = status.attempt_state(job, trained, facts.failure)
        version = status.recorded_feature_set(recorded)
        if status.should_restart(state, attempts, trained.max_restarts) and not finished and version is not None:
            log.info("%s: attempt %d failed (%s); starting attempt %d", where, attempts, state.message, attempts + 1)
            # The generation whose spec the run trains with, not that of a refused change.
            trained_owner = replace(owner, generation=int((recorded or {}).get("generation") or owner.generation))
            job = create_attempt(client, owner, desired.desired_job(trained, trained_owner, attempts + 1, version,
                                                                    settings))
            jobs, attempts = [*jobs, job], attempts + 1
            # What the trainer wrote about the failed attempt does not describe the new one.
            facts = status.StoreFacts(progress=facts.progress, error=facts.error)
        else:
            with api_errors_translated(f"updating spec.suspend of Job {status.job_name_of(job)}"):
                pass_on_suspend(client, job, trained)

    def compute(registration: status.Registration | None) -> dict[str, Any]:
        return status.compute_status(
            spec, observed, trained=trained, recorded=recorded, resolution=resolution, jobs=jobs, attempts=attempts,
            store=facts, registration=registration,
            run_record_uri=f"s3://{settings.object_store.bucket}/{prefix}/{RECORD_FILE}")

    new_status = compute(None)
    if new_status["phase"] == "Succeeded" and trained.registration is not None:
        # Registered once: a ModelVersion deleted later by a user is not created again.
        new_status = compute(status.previous_registration(observed.status)
                             or ensure_model_version(client, owner, trained))
    if settings.post_events:
        for event in status.transition_events(observed.status, new_status):
            post_event(client, API_VERSION, RESOURCE.kind, observed, event)
    return new_status


def register(registry: kopf.OperatorRegistry) -> None:
    register_reconciler(registry, RESOURCE, reconcile, children=CHILDREN)
    kopf.on.event("kubeloop.dev", "v1alpha1", "featuresets", id="trainingruns-waiting",
                  registry=registry)(featureset_changed)
    # status.progress follows progress.json, which no watch event announces.
    register_poller(registry, Reconcilable(RESOURCE, reconcile), ("Running",))


# -- children ---------------------------------------------------------------------------------


def run_jobs(client: KubeClient, owner: desired.Owner) -> list[dict[str, Any]]:
    """The run's Jobs (every attempt's), those it controls."""
    selector = f"{owner_label_key(RESOURCE.kind)}={label_value(owner.name)}"
    return [job for job in client.list("batch/v1", "Job", owner.namespace, label_selector=selector)
            if any(ref.get("controller") and ref.get("uid") == owner.uid
                   for ref in job["metadata"].get("ownerReferences") or [])]


def start_attempt(client: KubeClient, settings: Settings, spec: TrainingRunSpec, owner: desired.Owner,
                  attempt: int, pinned: str | None
                  ) -> tuple[tuple[status.Decision, desired.FeatureSetVersion | None], dict[str, Any] | None]:
    """Resolve the FeatureSet version and, when there is one, create the attempt's Job.

    The FeatureSet decision, and the Job (None while the run waits for its FeatureSet)."""
    with api_errors_translated(f"reading FeatureSet {owner.namespace}/{spec.feature_set_ref.name}"):
        featureset = client.get(API_VERSION, FEATURESET_KIND, owner.namespace, spec.feature_set_ref.name)
    resolution = status.feature_set_resolution(spec.feature_set_ref.name, pinned, featureset)
    version = resolution[1]
    if version is None:
        return resolution, None
    return resolution, create_attempt(client, owner, desired.desired_job(spec, owner, attempt, version, settings))


def create_attempt(client: KubeClient, owner: desired.Owner, job: Mapping[str, Any]) -> dict[str, Any]:
    """Apply the run's Service and create the attempt's Job; an existing Job is returned as it
    is, never modified."""
    meta = job["metadata"]
    with api_errors_translated(f"creating Job {meta['namespace']}/{meta['name']}"):
        client.apply(desired.desired_service(owner))
        created, new = client.create(job)
    if new:
        log.info("created Job %s/%s", meta["namespace"], meta["name"])
    return created


def trained_spec(spec: TrainingRunSpec, recorded: Mapping[str, Any] | None) -> TrainingRunSpec:
    """The spec the run trains with: the one recorded in its Job, with the current `suspend`."""
    recorded_spec = (recorded or {}).get("spec")
    if not isinstance(recorded_spec, Mapping):
        return spec
    try:
        return TrainingRunSpec.model_validate({**recorded_spec, "suspend": spec.suspend})
    except ValidationError:  # a Job of an older operator whose spec no longer parses: go on with today's
        return spec


def pass_on_suspend(client: KubeClient, job: Mapping[str, Any], spec: TrainingRunSpec) -> None:
    """Pass `spec.suspend` on to the unfinished attempt's Job (the one field changed on a Job)."""
    if status.job_condition(job, "Complete") or status.job_condition(job, "Failed"):
        return
    change = desired.suspend_change(job, spec)
    if change is not None:
        meta = job["metadata"]
        log.info("Job %s/%s: spec.suspend=%s", meta["namespace"], meta["name"], change)
        client.merge_patch("batch/v1", "Job", meta["namespace"], meta["name"], {"spec": {"suspend": change}})


# -- the object store -------------------------------------------------------------------------


def read_store(runtime: Runtime, owner: desired.Owner, prefix: str, job: Mapping[str, Any]) -> status.StoreFacts:
    """What the trainer wrote for the current attempt's run, or why the store cannot be read."""
    since = conditions.parse_timestamp(job["metadata"].get("creationTimestamp"))
    try:
        store = runtime.store_for(owner.namespace)
        documents = {name: read_document(store, f"{prefix}/{name}", owner.uid, since)
                     for name in (PROGRESS_FILE, RECORD_FILE, FAILURE_FILE)}
    except (ObjectStoreNotConfigured, StoreError) as error:
        message = f"cannot read the object store: {error}"
        log.info("TrainingRun %s/%s: %s", owner.namespace, owner.name, message)
        return status.StoreFacts(error=message)
    failure = documents[FAILURE_FILE]
    if failure is not None and failure.get("attempt") not in (None, desired.job_attempt(job)):
        failure = None  # a permanent failure of an earlier attempt does not explain this one
    return status.StoreFacts(progress=documents[PROGRESS_FILE], record=documents[RECORD_FILE], failure=failure)


def read_document(store: ObjectStore, key: str, uid: str, since: datetime | None) -> dict[str, Any] | None:
    """A JSON object the trainer wrote for this run, or None (absent, not an object, or stale:
    written before `since` or naming another TrainingRun's uid)."""
    try:
        data, info = store.get_with_info(key)
    except NotFound:
        return None
    try:
        document = json.loads(data)
    except ValueError:
        log.warning("object store: ignoring %s: not JSON", key)
        return None
    if not isinstance(document, dict):
        return None
    if since is not None and info.last_modified is not None and info.last_modified < since - CLOCK_SKEW:
        return None
    if document_uid(document) not in (None, uid):
        return None
    return document


def document_uid(document: Mapping[str, Any]) -> str | None:
    """The TrainingRun uid a trainer document names, if any."""
    for section in (document, document.get("trainingRun"), document.get("run")):
        if isinstance(section, Mapping) and isinstance(section.get("uid"), str):
            return str(section["uid"])
    return None


# -- registration -----------------------------------------------------------------------------


def ensure_model_version(client: KubeClient, owner: desired.Owner, spec: TrainingRunSpec) -> status.Registration:
    """Create the ModelVersion unless it exists; an existing one is never changed."""
    manifest = desired.desired_model_version(owner, spec)
    model = manifest["spec"]["model"]
    try:
        existing, created = client.create(manifest)
    except ApiException as exc:
        return status.Registration(owner.name, False, f'cannot create ModelVersion "{owner.name}": '
                                   f"{exc.status} {exc.reason}")
    ref = ((existing.get("spec") or {}).get("trainingRunRef") or {}).get("name")
    if ref != owner.name:
        return status.Registration(owner.name, False,
                                   f'ModelVersion "{owner.name}" already exists for TrainingRun "{ref}"; delete it '
                                   "or rename this run to register its model")
    verb = "created" if created else "exists"
    return status.Registration(owner.name, True, f'ModelVersion "{owner.name}" of model "{model}" {verb}')


# -- re-reconciles ----------------------------------------------------------------------------


def featureset_changed(body: Mapping[str, Any], **_: Any) -> None:
    """A FeatureSet changed: reconcile the runs in its namespace waiting for it (no Job yet)."""
    meta = body.get("metadata") or {}
    namespace, name = meta.get("namespace"), meta.get("name")
    client = Runtime.get().client
    for run in client.list(API_VERSION, RESOURCE.kind, namespace):
        if ((run.get("spec") or {}).get("featureSetRef") or {}).get("name") != name:
            continue
        if (run.get("status") or {}).get("attempts"):
            continue  # started: the version it trains on is fixed
        resync_object(client, Reconcilable(RESOURCE, reconcile), run, now=datetime.now(UTC))
