"""kopf glue for ModelVersion: read what exists, let status.py decide, apply, write status once.

Reads: the TrainingRun and its run record (`trainingruns/<ns>/<run>/record.json`), the model's
registry index (`models/<ns>/<model>/index.json`), the model's InferenceService and the
ModelVersions it involves (the champion, the version whose template it holds), and, when a
canary step is due, the server's figures from Prometheus (canary.py). Writes: the artifact's
verification (once per artifact digest: every byte is read and hashed), the registry entry and
aliases (compare-and-swap), the InferenceService (server-side apply), the champion alias when
a rollout completes, Events on promotion, rollback and retirement.

Re-reconciles: the InferenceService's changes reconcile every ModelVersion of its model (the
one rolling out, the champion, the one retiring); versions rolling out or serving are also polled
every `progress_poll_seconds` (`core.reconcile.PhasePoller`), since a canary step ends by time, not
by an event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import kopf

from kubeloop import API_VERSION
from kubeloop.core import conditions
from kubeloop.core.apimodel import parse_duration
from kubeloop.core.events import Event, post_event
from kubeloop.core.kube import KubeClient, api_errors_translated
from kubeloop.core.labels import MANAGED_BY
from kubeloop.core.reconcile import (
    ObjectStoreNotConfigured,
    Observed,
    Reconcilable,
    Runtime,
    register_poller,
    register_reconciler,
    resync_object,
)
from kubeloop.modelversion import desired, gates, status
from kubeloop.modelversion.api import RESOURCE, ConditionType, ModelVersionSpec, Reason
from kubeloop.modelversion.canary import canary_health
from kubeloop.store import CorruptObject, DigestMismatch, NotFound, ObjectStore, StoreError
from kubeloop.store.registry import Registry, move_champion, read_registry, register_version

log = logging.getLogger("kubeloop.modelversion")

CHILDREN = [("serving.kserve.io", "v1beta1", "inferenceservices")]
TRAINING_RUN_KIND = "TrainingRun"
RECORD_FILE = "record.json"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
# A version that retired, rolled back or failed no longer counts as a champion to return to.
NOT_LIVE_PHASES = ("Retired", "RolledBack", "Failed", "GatesFailed")
# Polled: a rollout step ends by time, and a serving version retires when another one's rollout
# completes (an event of the InferenceService normally says so first; a lost race must not leave
# two champions until the periodic resync). Pending versions too: the run's success normally
# wakes them first (`training_run_changed`), but the run creates its version before its own
# status says Succeeded, and a pass that lost that race must not wait for the periodic resync.
POLLED_PHASES = (*status.ROLLING_OUT_PHASES, "Serving", "Pending")


def reconcile(spec: ModelVersionSpec, observed: Observed) -> dict[str, Any]:
    runtime = Runtime.get()
    client = runtime.client
    namespace, run_name = observed.namespace, spec.training_run_ref.name
    with api_errors_translated(f"reading TrainingRun {namespace}/{run_name}"):
        run = client.get(API_VERSION, TRAINING_RUN_KIND, namespace, run_name)
    inputs = status.StatusInputs(spec, observed, champion=bool(observed.status.get("champion")),
                                 aliases=tuple(observed.status.get("aliases") or ()))
    store: ObjectStore | None = None
    record, record_error = None, None
    # The store (a Secret read) only once there is a record to read: a version waiting for its
    # run is polled, and each poll needs the run alone.
    if run is not None and (run.get("status") or {}).get("phase") == "Succeeded":
        try:
            store = runtime.store_for(namespace)
        except ObjectStoreNotConfigured as error:
            record_error = str(error)
        else:
            record, record_error = read_record(store, namespace, run)
    source = status.registration_source(run_name, namespace, run, record, record_error)
    if isinstance(source, tuple):
        return status.compute_status(replace(inputs, waiting=source))
    assert store is not None  # a record was read from it
    inputs = replace(inputs, registration=source)
    try:
        return reconcile_registered(spec, observed, runtime, store, source, inputs)
    except StoreError as error:
        message = f"cannot use the object store: {error}"
        log.warning("ModelVersion %s/%s: %s", namespace, observed.name, message)
        return status.compute_status(replace(inputs, store_error=message))


def reconcile_registered(spec: ModelVersionSpec, observed: Observed, runtime: Runtime, store: ObjectStore,
                         registration: status.Registration, inputs: status.StatusInputs) -> dict[str, Any]:
    client, settings = runtime.client, runtime.settings
    verification = verify_artifact(store, observed.status, registration)
    inputs = replace(inputs, verification=verification)
    if verification.status != "True":
        post(client, observed, Event("Warning", verification.reason, verification.message))
        return status.compute_status(inputs)
    # The registry is read before registering only when the gates need the champion's metrics:
    # a version re-reconciled every poll interval reads and (when nothing changed) skips writing once.
    verdict = frozen_gates(observed) or evaluate_gates(
        spec, observed.name, read_registry(store, observed.namespace, spec.model), registration.metrics)
    registry = register_version(store, observed.namespace, spec.model, observed.name,
                                registration.registry_entry(spec.training_run_ref.name),
                                list(spec.aliases) if verdict.passed else [], observed.now)
    inputs = replace(inputs, gates=verdict, champion=registry.champion == observed.name,
                     aliases=tuple(registry.aliases_of(observed.name)))
    if not verdict.passed:
        post(client, observed, Event("Warning", verdict.reason, verdict.message))
    if not verdict.passed or not spec.serving.enabled:
        return status.compute_status(inputs)
    decision, isvc = serve(spec, observed, client, settings, registry, registration)
    if decision.promote:
        registry = move_champion(store, observed.namespace, spec.model, observed.name,
                                 f"rollout of {observed.name} completed", observed.now, expected=registry.champion)
        if registry.champion != observed.name:  # another writer moved it first: decide again next pass
            decision = replace(decision, phase="Deploying", promote=False)
    if decision.event is not None:
        post(client, observed, Event(*decision.event))
    isvc_status = (isvc or {}).get("status") or {}
    ready = conditions.find_condition(isvc_status.get("conditions"), "Ready") or {}
    return status.compute_status(replace(
        inputs, serving=decision, champion=registry.champion == observed.name,
        aliases=tuple(registry.aliases_of(observed.name)),
        inference_service={"name": desired.inference_service_name(spec.model), "url": isvc_status.get("url"),
                           "ready": ready.get("status") == "True"} if isvc is not None else None))


def serve(spec: ModelVersionSpec, observed: Observed, client: KubeClient, settings: Any, registry: Registry,
          registration: status.Registration) -> tuple[status.ServingDecision, dict[str, Any] | None]:
    """Decide this version's serving step and apply the InferenceService it calls for."""
    namespace, me = observed.namespace, observed.name
    name = desired.inference_service_name(spec.model)
    where = f"InferenceService {namespace}/{name}"
    with api_errors_translated(f"reading {where}"):
        isvc = client.get(desired.ISVC_API_VERSION, desired.ISVC_KIND, namespace, name)
        deployed = desired.deployed_version_of(isvc)
        deployed_obj = client.get(API_VERSION, RESOURCE.kind, namespace, deployed) if deployed and deployed != me \
            else None
        champion = registry.champion
        champion_obj = client.get(API_VERSION, RESOURCE.kind, namespace, champion) if champion and champion != me \
            else None
    managed = isvc is None or ((isvc.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY
    champion_live = champion == me or (
        champion_obj is not None and (champion_obj.get("status") or {}).get("phase") not in NOT_LIVE_PHASES)
    facts = status.ServingFacts(
        me=me, champion=champion, champion_live=champion_live,
        deployed_phase=((deployed_obj or {}).get("status") or {}).get("phase") if deployed != me else None,
        traffic=status.traffic_of(isvc, deployed, managed), previous=observed.status)
    decision = status.decide_serving(spec, facts, observed.now)
    if decision.needs_health and spec.serving.rollout is not None:
        health = canary_health(settings.prometheus_url, namespace, spec.model, me,
                               parse_duration(spec.serving.rollout.interval))
        decision = status.decide_serving(spec, replace(facts, health=health), observed.now)
    if decision.apply:
        owner_obj = champion_obj if champion_live and champion_obj is not None else None
        owner = desired.OwnerVersion(me, observed.uid) if owner_obj is None else desired.OwnerVersion(
            owner_obj["metadata"]["name"], owner_obj["metadata"]["uid"])
        manifest = desired.desired_inference_service(
            desired.DeployedVersion(me, namespace, spec.model, registration.artifact_uri,
                                    registration.artifact_digest),
            spec.serving, owner, settings, canary_percent=decision.canary_percent)
        with api_errors_translated(f"applying {where}"):
            isvc = client.apply(manifest)
    return decision, isvc


# -- the artifact and the gates ----------------------------------------------------------------------


def read_record(store: ObjectStore, namespace: str,
                run: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The run record of a succeeded TrainingRun, or why it cannot be read."""
    name = run["metadata"]["name"]
    key = f"trainingruns/{namespace}/{name}/{RECORD_FILE}"
    try:
        record = store.get_json(key)
    except NotFound:
        return None, f"the run record {store.uri(key)} of TrainingRun \"{name}\" is missing"
    except StoreError as error:
        return None, f"cannot read the run record of TrainingRun \"{name}\": {error}"
    if not isinstance(record, dict):
        return None, f"{store.uri(key)} is not a run record"
    uid = (record.get("run") or {}).get("uid")
    if uid not in (None, run["metadata"].get("uid")):
        return None, (f"{store.uri(key)} belongs to an earlier TrainingRun named \"{name}\" (uid {uid}); waiting "
                      "for this run's record")
    return record, None


def verify_artifact(store: ObjectStore, previous: Mapping[str, Any],
                    registration: status.Registration) -> status.Decision:
    """ArtifactVerified: kept when this digest was verified before, else every byte is checked."""
    verified = conditions.find_condition(previous.get("conditions"), ConditionType.ARTIFACT_VERIFIED) or {}
    if verified.get("status") == "True" and (previous.get("artifact") or {}).get("digest") == \
            registration.artifact_digest:
        return status.Decision("True", str(verified["reason"]), str(verified["message"]))
    refused = "refused: it will never be served; retrain, or restore the artifact"
    try:
        version = store.verify_version(registration.artifact_uri, registration.artifact_digest)
    except DigestMismatch as error:
        return status.Decision("False", Reason.ARTIFACT_DIGEST_MISMATCH, f"{error}; {refused}")
    except (CorruptObject, ValueError) as error:
        return status.Decision("False", Reason.ARTIFACT_DIGEST_MISMATCH, f"{error}; {refused}")
    except NotFound as error:
        return status.Decision("False", Reason.ARTIFACT_MISSING, f"{error}; {refused}")
    recorded = registration.record_files
    changed = sorted(name for name, entry in version.files.items() if recorded.get(name) not in (None, entry.digest))
    if changed:
        return status.Decision("False", Reason.ARTIFACT_DIGEST_MISMATCH,
                               f"file(s) {', '.join(changed)} differ from the run record's digests; {refused}")
    return status.Decision("True", Reason.ARTIFACT_VERIFIED,
                           f"{len(version.files)} file(s) of {registration.artifact_digest[:19]} verified")


def frozen_gates(observed: Observed) -> gates.GateVerdict | None:
    """The verdict already given for this generation, if any (gates are judged once)."""
    previous = observed.status
    condition = conditions.find_condition(previous.get("conditions"), ConditionType.GATES_PASSED)
    if condition is None or condition.get("observedGeneration") != observed.generation \
            or condition.get("status") not in ("True", "False"):
        return None
    return gates.GateVerdict(list(previous.get("gates") or []), condition["status"] == "True",
                             str(condition["reason"]), str(condition["message"]))


def evaluate_gates(spec: ModelVersionSpec, me: str, registry: Registry,
                   metrics: Mapping[str, float]) -> gates.GateVerdict:
    """The gates against the registry's champion (its metrics as registered, kept even when its
    ModelVersion object was deleted)."""
    champion = registry.champion if registry.champion != me else None
    champion_metrics = (registry.versions.get(champion) or {}).get("metrics") if champion else None
    return gates.evaluate_gates(spec.gates, metrics, champion, champion_metrics)


def post(client: KubeClient, observed: Observed, event: Event) -> None:
    if Runtime.get().settings.post_events:
        post_event(client, API_VERSION, RESOURCE.kind, observed, event)


# -- registration with kopf, and re-reconciles ------------------------------------------------------


def register(registry: kopf.OperatorRegistry) -> None:
    register_reconciler(registry, RESOURCE, reconcile, children=CHILDREN)
    kopf.on.event(*CHILDREN[0], id="modelversions-of-model", registry=registry,
                  labels={desired.MODEL_LABEL: kopf.PRESENT})(inference_service_changed)
    # A run creates its ModelVersion in the same pass that finds it Succeeded, before that status
    # is written: the version's first pass may see the run still Running, so the run's own
    # change must wake the version (else it waits for the periodic resync).
    kopf.on.event("kubeloop.dev", "v1alpha1", "trainingruns", id="modelversions-of-run",
                  registry=registry)(training_run_changed)
    register_poller(registry, Reconcilable(RESOURCE, reconcile), POLLED_PHASES)


def training_run_changed(body: Mapping[str, Any], **_: Any) -> None:
    """A TrainingRun changed: once it has finished (succeeded, or failed for good), reconcile the
    ModelVersions still waiting for it, so that they register or say why they cannot."""
    if (body.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
        return
    meta = body.get("metadata") or {}
    client = Runtime.get().client
    for version in client.list(API_VERSION, RESOURCE.kind, meta.get("namespace")):
        if ((version.get("spec") or {}).get("trainingRunRef") or {}).get("name") != meta.get("name"):
            continue
        if (version.get("status") or {}).get("phase") not in (None, "Pending"):
            continue  # registered already: the run's later changes do not concern it
        resync_object(client, Reconcilable(RESOURCE, reconcile), version, now=datetime.now(UTC))


def inference_service_changed(body: Mapping[str, Any], **_: Any) -> None:
    """A model's InferenceService changed: reconcile every version of that model now."""
    meta = body.get("metadata") or {}
    model = (meta.get("labels") or {}).get(desired.MODEL_LABEL)
    client = Runtime.get().client
    for version in client.list(API_VERSION, RESOURCE.kind, meta.get("namespace")):
        if (version.get("spec") or {}).get("model") == model:
            resync_object(client, Reconcilable(RESOURCE, reconcile), version, now=datetime.now(UTC))
