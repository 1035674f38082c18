"""What a DriftMonitor should run: the CronJob of its check, and the TrainingRun of a retrain.

Pure builders (values in, manifests out: no API calls, no clock, no environment), covered by
golden files in tests/driftmonitor/golden/.

- `desired_cronjob`: runs `python -m kubeloop.driftmonitor.check` in the jobs image on
  `spec.schedule`, with the environment of the check's contract: `KUBELOOP_DRIFTMONITOR` (the
  monitor, its spec, and the ModelVersion and FeatureSet version it checks) and the object store.
  The pod, Job and CronJob shapes are those of every jobs-image entrypoint (`core.workloads`):
  exit 3 (the reference cannot be read) fails the Job at once, 1 is retried. A spec change,
  or a new champion, re-applies the CronJob: nothing needs deleting.
- `desired_retrain_run`: the TrainingRun a qualifying breach creates, cloned from a template
  run or from the run that produced the monitored model, unpinned from its FeatureSet version
  (so it trains on the newest data), not suspended, `register` kept (so the new model goes
  through gates and rollout). Its name is deterministic per retrain number, so creating it
  twice creates it once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubeloop import API_VERSION
from kubeloop.core import owners
from kubeloop.core.labels import MANAGED_BY, PART_OF, label_value, owner_label_key, standard_labels
from kubeloop.core.naming import CRONJOB_NAME_MAX, DNS_LABEL_MAX, child_name
from kubeloop.core.settings import Settings
from kubeloop.core.workloads import (
    cronjob_spec,
    entrypoint_job_spec,
    jobs_pod_template,
    object_store_env,
    scratch_env,
)
from kubeloop.driftmonitor.api import RESOURCE, DriftMonitorSpec

COMPONENT = "drift-check"
CONTAINER = "check"
CHECK_MODULE = "kubeloop.driftmonitor.check"
ENV_DRIFTMONITOR = "KUBELOOP_DRIFTMONITOR"
# A transient failure (store unreachable) is retried twice; the next schedule runs anyway.
BACKOFF_LIMIT = 2
# Finished check Jobs stay a day for `kubectl logs`; their results stay in the object store.
TTL_SECONDS_AFTER_FINISHED = 24 * 3600

TRAINING_RUN_KIND = "TrainingRun"
TRIGGER_LABEL = "kubeloop.dev/trigger"
TRIGGER_DRIFT = "drift"
RETRAIN_COMPONENT = "retrain"
# The evidence a retrain carries: which check, what it found, on which model version.
RETRAIN_NUMBER_ANNOTATION = "kubeloop.dev/retrain-number"
CHECK_ID_ANNOTATION = "kubeloop.dev/drift-check-id"
DRIFT_SHARE_ANNOTATION = "kubeloop.dev/drift-share"
DRIFTED_FEATURES_ANNOTATION = "kubeloop.dev/drifted-features"
MODEL_VERSION_ANNOTATION = "kubeloop.dev/model-version"
REASON_ANNOTATION = "kubeloop.dev/retrain-reason"
SOURCE_ANNOTATION = "kubeloop.dev/retrain-source"
# Fields of the source run's spec a retrain does not copy: a pin to an old FeatureSet version
# (a retrain trains on the newest), and suspension (a template is usually suspended).
DROPPED_SPEC_FIELDS = ("featureSetVersion", "suspend")


class Owner(owners.Owner):
    """The DriftMonitor the children belong to."""

    kind = RESOURCE.kind


@dataclass(frozen=True)
class Target:
    """What the check compares: a ModelVersion's live inputs with the FeatureSet version it
    was trained on (from the ModelVersion's status.lineage)."""

    model: str
    model_version: str
    feature_set: str
    feature_set_version: str
    feature_set_digest: str | None = None
    training_run: str | None = None
    """The TrainingRun that produced the model: the source of a retrain without a template."""

    def feature_set_document(self) -> dict[str, Any]:
        return {"name": self.feature_set, "version": self.feature_set_version, "digest": self.feature_set_digest}


@dataclass(frozen=True)
class Evidence:
    """Why a retrain is created: the check that found drift."""

    check_id: str
    drift_share: float | None
    drifted_features: Sequence[str]
    model_version: str | None
    reason: str


# -- names ------------------------------------------------------------------------------------


def cronjob_name(owner: Owner) -> str:
    """`<monitor>-drift-check`, short enough for the CronJob's `-<minutes>` Job suffix."""
    return child_name(owner.name, "drift-check", max_length=CRONJOB_NAME_MAX)


def retrain_run_name(monitor: str, number: int) -> str:
    """`<monitor>-retrain-<n>`: one name per retrain number, so a retrain is created once. A
    label value too (the run's ModelVersion and Jobs are labelled with it): at most 63."""
    if number < 1:
        raise ValueError(f"retrain number must be >= 1, not {number}")
    return child_name(monitor, f"retrain-{number}", max_length=DNS_LABEL_MAX)


# -- the check --------------------------------------------------------------------------------


def monitor_document(spec: DriftMonitorSpec, owner: Owner, target: Target) -> str:
    """The `KUBELOOP_DRIFTMONITOR` value (canonical JSON): what the check checks."""
    document = {"name": owner.name, "namespace": owner.namespace, "uid": owner.uid, "spec": spec.to_dict(),
                "model": target.model, "modelVersion": target.model_version,
                "featureSet": target.feature_set_document()}
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def check_env(spec: DriftMonitorSpec, owner: Owner, target: Target, settings: Settings) -> list[dict[str, Any]]:
    """The environment of the check (its contract), credentials by Secret reference only."""
    return [
        {"name": ENV_DRIFTMONITOR, "value": monitor_document(spec, owner, target)},
        *object_store_env(settings.object_store),
        *scratch_env(),
    ]


def _labels(owner: Owner) -> dict[str, str]:
    return standard_labels(kind=RESOURCE.kind, name=owner.name, component=COMPONENT)


def desired_cronjob(spec: DriftMonitorSpec, owner: Owner, target: Target, settings: Settings) -> dict[str, Any]:
    """The CronJob that runs the check on `spec.schedule`."""
    labels = _labels(owner)
    template = jobs_pod_template(container=CONTAINER, module=CHECK_MODULE,
                                 env=check_env(spec, owner, target, settings),
                                 resources=spec.resources.requirements(), labels=labels, settings=settings)
    job_spec = entrypoint_job_spec(template, container=CONTAINER, backoff_limit=BACKOFF_LIMIT,
                                   ttl_seconds_after_finished=TTL_SECONDS_AFTER_FINISHED)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": owner.child_metadata(cronjob_name(owner), labels),
        "spec": cronjob_spec(spec.schedule, {"labels": dict(labels)}, job_spec),
    }


# -- the retrain ------------------------------------------------------------------------------


def retrain_spec(source_spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec of a retrain: the source run's, unpinned and not suspended (see
    DROPPED_SPEC_FIELDS); everything else, `register` included, as the source has it."""
    return {key: value for key, value in source_spec.items() if key not in DROPPED_SPEC_FIELDS}


def desired_retrain_run(source: Mapping[str, Any], owner: Owner, number: int, evidence: Evidence) -> dict[str, Any]:
    """Retrain number `number` (1-based) of the monitor, cloned from the TrainingRun `source`
    (a template, or the run that produced the monitored model). Owned by the monitor, labelled
    with the trigger, annotated with the evidence."""
    share = "" if evidence.drift_share is None else f"{evidence.drift_share:.4f}"
    source_name = str((source.get("metadata") or {}).get("name", ""))
    return {
        "apiVersion": API_VERSION,
        "kind": TRAINING_RUN_KIND,
        "metadata": owner.child_metadata(
            retrain_run_name(owner.name, number),
            {
                "app.kubernetes.io/name": TRAINING_RUN_KIND.lower(),
                "app.kubernetes.io/component": RETRAIN_COMPONENT,
                "app.kubernetes.io/part-of": PART_OF,
                "app.kubernetes.io/managed-by": MANAGED_BY,
                owner_label_key(RESOURCE.kind): label_value(owner.name),
                TRIGGER_LABEL: TRIGGER_DRIFT,
            },
            {
                RETRAIN_NUMBER_ANNOTATION: str(number),
                CHECK_ID_ANNOTATION: evidence.check_id,
                DRIFT_SHARE_ANNOTATION: share,
                DRIFTED_FEATURES_ANNOTATION: ",".join(evidence.drifted_features),
                MODEL_VERSION_ANNOTATION: evidence.model_version or "",
                REASON_ANNOTATION: evidence.reason,
                SOURCE_ANNOTATION: source_name,
            }),
        "spec": retrain_spec(source.get("spec") or {}),
    }


# -- readings of the monitor's retrain runs ----------------------------------------------------


def retrain_number(run: Mapping[str, Any]) -> int | None:
    """The retrain number a run of this module carries, or None."""
    value = ((run.get("metadata") or {}).get("annotations") or {}).get(RETRAIN_NUMBER_ANNOTATION, "")
    return int(value) if str(value).isdigit() else None


def retrain_runs_of(runs: Sequence[Mapping[str, Any]], owner: Owner) -> list[Mapping[str, Any]]:
    """The runs among `runs` that the monitor controls (the label alone can be copied)."""
    return [run for run in runs
            if any(ref.get("controller") and ref.get("uid") == owner.uid
                   for ref in (run.get("metadata") or {}).get("ownerReferences") or [])]


def next_retrain_number(runs: Sequence[Mapping[str, Any]], retrains_in_status: int) -> int:
    """The number of the next retrain: one more than any the monitor has made, whether status
    counted it (a lost status write) or the run still exists (a reset status)."""
    return max([retrains_in_status, *(retrain_number(run) or 0 for run in runs)]) + 1
