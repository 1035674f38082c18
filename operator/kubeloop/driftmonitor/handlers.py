"""kopf glue for DriftMonitor: resolve the monitored ModelVersion, apply the check's CronJob,
read the newest check result, decide on a retrain, derive the status (see core.reconcile for
validation and the one status write).

One pass, the same for create, update, resume, a child's change (a check Job finished, a
retrain TrainingRun changed), a champion's change and the periodic resync:

1. the ModelVersion to monitor: spec.modelVersionRef, or the champion of spec.model. None
   (not found, no champion, no lineage yet) is a condition, and the monitor's CronJob is
   deleted: a check of nothing would only fail;
2. the CronJob is applied (server-side apply: a spec change or a new champion updates it);
3. the check's Jobs and the monitor's retrain TrainingRuns are listed;
4. `latest.json` is read from the object store. A missing Secret, an unreachable store or an
   unreadable result becomes a condition, never a failed pass;
5. `status.retrain_decision` decides; a retrain is created with a deterministic name
   (`<monitor>-retrain-<n>`) by a create that treats "already exists" as done, so repeated or
   concurrent passes create it once;
6. metrics and Events, then `status.compute_status`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import kopf

from kubeloop import API_VERSION
from kubeloop.core.events import Event, post_event
from kubeloop.core.kube import KubeClient, api_errors_translated
from kubeloop.core.labels import label_value, owner_label_key
from kubeloop.core.metrics import OPERATOR_METRICS
from kubeloop.core.reconcile import (
    ObjectStoreNotConfigured,
    Observed,
    Reconcilable,
    Runtime,
    register_reconciler,
    resync_object,
)
from kubeloop.core.settings import Settings
from kubeloop.driftmonitor import desired, results, status
from kubeloop.driftmonitor.api import RESOURCE, DriftMonitorSpec, Reason
from kubeloop.store import StoreError

log = logging.getLogger("kubeloop.driftmonitor")

CHILDREN = [("batch", "v1", "jobs"), ("batch", "v1", "cronjobs"), ("kubeloop.dev", "v1alpha1", "trainingruns")]
MODEL_VERSION_KIND = "ModelVersion"


def reconcile(spec: DriftMonitorSpec, observed: Observed) -> dict[str, Any]:
    runtime = Runtime.get()
    client, settings = runtime.client, runtime.settings
    owner = desired.Owner.of(observed)
    where = f"DriftMonitor {owner.namespace}/{owner.name}"
    with api_errors_translated(f"reading the ModelVersions {where} monitors"):
        target = status.resolve_target(spec, owner.namespace, model_versions(client, spec, owner.namespace))
    with api_errors_translated(f"applying the CronJob of {where}"):
        cronjob = apply_cronjob(client, spec, owner, target[1], settings)
        jobs = check_jobs(client, owner, cronjob)
        runs = retrain_runs(client, owner)

    result, store_error = read_result(runtime, owner)
    breaches = status.consecutive_breaches(result, observed.status)
    decision = status.retrain_decision(status.RetrainFacts(
        retrain=spec.retrain, result=result, breaches=breaches, runs=runs, now=observed.now))
    events: list[Event] = []
    if decision is not None and decision.create and result is not None:
        decision, run, created = start_retrain(client, spec, owner, target[1], runs, observed, result, decision)
        if run is not None:
            runs = [*runs, run]
        if created:
            OPERATOR_METRICS.drift.count_retrain(owner.namespace, owner.name)
            events.append(Event("Normal", Reason.RETRAIN_CREATED, decision.message))

    record_metrics(owner, result, observed.status)
    new_status = status.compute_status(spec, observed, target=target, jobs=jobs, result=result,
                                       store_error=store_error, runs=runs, decision=decision)
    if settings.post_events:
        for event in [*status.transition_events(observed.status, new_status), *events]:
            post_event(client, RESOURCE.api_version, RESOURCE.kind, observed, event)
    return new_status


def register(registry: kopf.OperatorRegistry) -> None:
    register_reconciler(registry, RESOURCE, reconcile, children=CHILDREN)
    kopf.on.event("kubeloop.dev", "v1alpha1", "modelversions", id="driftmonitors-following",
                  registry=registry)(model_version_changed)
    kopf.on.event("kubeloop.dev", "v1alpha1", "driftmonitors", id="drift-metrics",
                  registry=registry)(forget_deleted_monitor)


# -- what is monitored ------------------------------------------------------------------------


def model_versions(client: KubeClient, spec: DriftMonitorSpec, namespace: str) -> list[dict[str, Any]]:
    """The ModelVersions `status.resolve_target` chooses from: the one spec.modelVersionRef
    names (if it exists), else every one in the namespace (the champion is among them)."""
    if spec.model_version_ref is not None:
        found = client.get(API_VERSION, MODEL_VERSION_KIND, namespace, spec.model_version_ref.name)
        return [found] if found is not None else []
    return client.list(API_VERSION, MODEL_VERSION_KIND, namespace)


# -- children ---------------------------------------------------------------------------------


def apply_cronjob(client: KubeClient, spec: DriftMonitorSpec, owner: desired.Owner, target: desired.Target | None,
                  settings: Settings) -> Mapping[str, Any] | None:
    """Apply the check's CronJob; without a target, delete ours (a check of nothing would fail)."""
    if target is not None:
        return client.apply(desired.desired_cronjob(spec, owner, target, settings))
    name = desired.cronjob_name(owner)
    existing = client.get("batch/v1", "CronJob", owner.namespace, name)
    if existing is not None and _controlled_by(existing, owner.uid):
        log.info("DriftMonitor %s/%s: nothing to monitor, deleting CronJob %s", owner.namespace, owner.name, name)
        client.delete("batch/v1", "CronJob", owner.namespace, name)
    return None


def _controlled_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("controller") and ref.get("uid") == uid
               for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def _selector(owner: desired.Owner) -> str:
    return f"{owner_label_key(RESOURCE.kind)}={label_value(owner.name)}"


def check_jobs(client: KubeClient, owner: desired.Owner, cronjob: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The Jobs of the monitor's CronJob (scheduled or created from it by hand)."""
    if cronjob is None:
        return []
    uid = cronjob["metadata"]["uid"]
    return [job for job in client.list("batch/v1", "Job", owner.namespace, label_selector=_selector(owner))
            if _controlled_by(job, uid)]


def retrain_runs(client: KubeClient, owner: desired.Owner) -> list[Mapping[str, Any]]:
    """The monitor's retrain TrainingRuns (labelled and controlled by it)."""
    listed = client.list(API_VERSION, desired.TRAINING_RUN_KIND, owner.namespace, label_selector=_selector(owner))
    return desired.retrain_runs_of(listed, owner)


# -- the object store -------------------------------------------------------------------------


def read_result(runtime: Runtime, owner: desired.Owner) -> tuple[results.CheckResult | None, str | None]:
    """The newest check result of this monitor, or why it cannot be read."""
    try:
        store = runtime.store_for(owner.namespace)
        result = results.read_latest_result(store, owner.namespace, owner.name)
    except (ObjectStoreNotConfigured, StoreError) as error:
        message = f"cannot read the check results from the object store: {error}"
        log.info("DriftMonitor %s/%s: %s", owner.namespace, owner.name, message)
        return None, message
    except results.InvalidResult as error:
        key = results.latest_result_key(owner.namespace, owner.name)
        return None, (f"cannot use the newest check result {key}: {error}; the check image and the operator "
                      "must be of the same kubeloop version")
    if result is not None and result.monitor_uid not in (None, owner.uid):
        return None, None  # left by an earlier monitor of the same name: not this one's check
    return result, None


# -- the retrain ------------------------------------------------------------------------------


def start_retrain(client: KubeClient, spec: DriftMonitorSpec, owner: desired.Owner, target: desired.Target | None,
                  runs: Sequence[Mapping[str, Any]], observed: Observed, result: results.CheckResult,
                  decision: status.RetrainDecision
                  ) -> tuple[status.RetrainDecision, dict[str, Any] | None, bool]:
    """Create the retrain TrainingRun: the decision as it turned out, the monitor's run of that
    name (None when its source is missing), and whether this pass created it."""
    template = spec.retrain.template_ref if spec.retrain is not None else None
    source_name = template.name if template is not None else (target.training_run if target else None)
    what = "spec.retrain.templateRef" if template is not None else "the TrainingRun that produced the model"
    if not source_name:
        return status.RetrainDecision(
            Reason.RETRAIN_SOURCE_NOT_FOUND,
            "drift calls for a retrain, but the monitored ModelVersion names no TrainingRun; "
            "set spec.retrain.templateRef to a TrainingRun to copy"), None, False
    with api_errors_translated(f"reading TrainingRun {owner.namespace}/{source_name}"):
        source = client.get(API_VERSION, desired.TRAINING_RUN_KIND, owner.namespace, source_name)
    if source is None:
        return status.RetrainDecision(
            Reason.RETRAIN_SOURCE_NOT_FOUND,
            f'drift calls for a retrain, but TrainingRun "{source_name}" ({what}) does not exist in namespace '
            f'"{owner.namespace}"; create it or set spec.retrain.templateRef to a TrainingRun to copy'), None, False
    number = desired.next_retrain_number(runs, int(observed.status.get("retrains") or 0))
    manifest = desired.desired_retrain_run(source, owner, number, status.evidence_of(result, decision))
    name = manifest["metadata"]["name"]
    with api_errors_translated(f"creating TrainingRun {owner.namespace}/{name}"):
        created, new = client.create(manifest)
    if not new:
        log.info("DriftMonitor %s/%s: retrain %s exists already", owner.namespace, owner.name, name)
        # Another pass created it: it counts as the monitor's run, not as a new retrain.
        return decision, (created if desired.retrain_runs_of([created], owner) else None), False
    log.info("DriftMonitor %s/%s: created retrain %s (%s)", owner.namespace, owner.name, name, decision.message)
    return status.RetrainDecision(Reason.RETRAIN_CREATED, f'created TrainingRun "{name}": {decision.message}',
                                  create=True), created, True


# -- metrics ----------------------------------------------------------------------------------


def record_metrics(owner: desired.Owner, result: results.CheckResult | None, previous: Mapping[str, Any]) -> None:
    """Export the newest check's figures; count it once (see `status.is_new_check`)."""
    if result is None:
        return
    statistics = {(str(f["name"]), str(f.get("method", ""))): float(f["statistic"])
                  for f in result.features if "statistic" in f}
    OPERATOR_METRICS.drift.observe_check(owner.namespace, owner.name, drift_share=result.drift_share,
                                         drifted=result.drifted, statistics=statistics)
    if status.is_new_check(result, previous):
        OPERATOR_METRICS.drift.count_check(owner.namespace, owner.name, result.check_id, result.verdict)


def forget_deleted_monitor(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
    """A deleted monitor's series disappear from /metrics."""
    if event.get("type") == "DELETED":
        meta = body.get("metadata", {})
        OPERATOR_METRICS.drift.forget(str(meta.get("namespace", "")), str(meta.get("name", "")))


# -- re-reconciles ----------------------------------------------------------------------------


def model_version_changed(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
    """A ModelVersion changed: reconcile the monitors whose target it changes (a new or lost
    champion, the version a monitor names appearing, disappearing, or getting its lineage)."""
    meta = body.get("metadata") or {}
    namespace = meta.get("namespace")
    client = Runtime.get().client
    deleted = event.get("type") == "DELETED"
    for monitor in client.list(API_VERSION, RESOURCE.kind, namespace):
        if status.affected_by_model_version(monitor, body, deleted=deleted):
            resync_object(client, Reconcilable(RESOURCE, reconcile), monitor, now=datetime.now(UTC))
