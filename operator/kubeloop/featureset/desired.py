"""What a FeatureSet should run: the materialization pod, its one-off Job and its CronJob.

Pure builders (values in, manifests out: no API calls, no clock, no environment), so every
manifest is covered by golden files in tests/featureset/golden/.

- `desired_materialization_job`: one Job per spec generation ("a spec change also
  materializes once"). Its name carries the generation and the FeatureSet's uid, so a new
  spec gets a new Job, and a FeatureSet deleted and created again under the same name does not
  find the old run's Job or run record.
- `desired_cronjob`: when `spec.schedule` is set, a CronJob with the same pod template.

Both run `python -m kubeloop.featureset.materialize` in the jobs image, with the environment
the materializer's contract names (see `materializer_env`). The materializer exits 0 on
success, 3 when a retry cannot help (the data broke its contract, the source does not exist):
a `podFailurePolicy` rule fails the Job at once on 3, and 1 (transient) is retried up to
`BACKOFF_LIMIT` times.

Also pure decisions about existing Jobs, for the handler: `superseded_jobs` (runs of an
older spec still going) and `needs_materialization_job` (whether to create the one-off Job).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kubeloop.core import owners
from kubeloop.core.labels import standard_labels
from kubeloop.core.naming import CRONJOB_NAME_MAX, JOB_NAME_MAX, child_name
from kubeloop.core.settings import Settings
from kubeloop.core.workloads import (
    cronjob_spec,
    entrypoint_job_spec,
    jobs_pod_template,
    object_store_env,
    scratch_env,
    secret_env,
)
from kubeloop.featureset.api import RESOURCE, FeatureSetSpec

COMPONENT = "materializer"
CONTAINER = "materialize"
MATERIALIZER_MODULE = "kubeloop.featureset.materialize"

BACKOFF_LIMIT = 2
# Finished one-off Jobs stay a day so that `kubectl get jobs` / `kubectl logs job/...` show
# what happened; the run record in the object store keeps the outcome after that.
TTL_SECONDS_AFTER_FINISHED = 24 * 3600

# Labels and annotations kubeloop puts on materialization Jobs.
TRIGGER_LABEL = "kubeloop.dev/trigger"
TRIGGER_SPEC_CHANGE = "spec-change"
TRIGGER_SCHEDULE = "schedule"
GENERATION_ANNOTATION = "kubeloop.dev/generation"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"

# The materializer's environment (its contract).
ENV_FEATURESET = "KUBELOOP_FEATURESET"
ENV_RUN_ID = "KUBELOOP_RUN_ID"
SOURCE_ENV_PREFIX = "KUBELOOP_SOURCE_"
# Keys of the Secret named by spec.source.secretRef -> required?
SOURCE_SECRET_KEYS: tuple[tuple[str, bool], ...] = (
    ("AWS_ACCESS_KEY_ID", True),
    ("AWS_SECRET_ACCESS_KEY", True),
    ("AWS_ENDPOINT_URL", False),
    ("AWS_SESSION_TOKEN", False),
)


class Owner(owners.Owner):
    """The FeatureSet the children belong to."""

    kind = RESOURCE.kind


# -- names ------------------------------------------------------------------------------------


def cronjob_name(owner: Owner) -> str:
    """`<featureset>-materialize`, short enough for the CronJob's `-<minutes>` Job suffix."""
    return child_name(owner.name, "materialize", max_length=CRONJOB_NAME_MAX)


def materialization_job_name(owner: Owner) -> str:
    """`<featureset>-g<generation>-<uid prefix>`: one per spec generation and FeatureSet object."""
    return child_name(owner.name, f"g{owner.generation}-{owner.uid[:5]}", max_length=JOB_NAME_MAX)


# -- the pod ----------------------------------------------------------------------------------


def featureset_document(spec: FeatureSetSpec, owner: Owner) -> str:
    """The `KUBELOOP_FEATURESET` value: the FeatureSet the pod materializes (canonical JSON)."""
    document = {"name": owner.name, "namespace": owner.namespace, "uid": owner.uid,
                "generation": owner.generation, "spec": spec.to_dict()}
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def materializer_env(spec: FeatureSetSpec, owner: Owner, settings: Settings) -> list[dict[str, Any]]:
    """The environment of the materializer (its contract), credentials by Secret reference only."""
    env: list[dict[str, Any]] = [
        {"name": ENV_FEATURESET, "value": featureset_document(spec, owner)},
        # The run id is the Job's name, which Jobs created by the CronJob get from it.
        {"name": ENV_RUN_ID, "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{JOB_NAME_LABEL}']"}}},
        *object_store_env(settings.object_store),
    ]
    secret_ref = spec.source.secret_ref
    if secret_ref is not None:
        env += [secret_env(SOURCE_ENV_PREFIX + key, secret_ref.name, key, optional=not required)
                for key, required in SOURCE_SECRET_KEYS]
    return [*env, *scratch_env()]


def materialization_pod_template(spec: FeatureSetSpec, owner: Owner, settings: Settings,
                                 labels: Mapping[str, str]) -> dict[str, Any]:
    """The materialization pod: restricted security context, resources from the spec."""
    return jobs_pod_template(container=CONTAINER, module=MATERIALIZER_MODULE,
                             env=materializer_env(spec, owner, settings),
                             resources=spec.resources.requirements(), labels=labels, settings=settings)


def materialization_job_spec(spec: FeatureSetSpec, owner: Owner, settings: Settings,
                             labels: Mapping[str, str]) -> dict[str, Any]:
    """The Job spec shared by the one-off Job and the CronJob's job template."""
    return entrypoint_job_spec(materialization_pod_template(spec, owner, settings, labels), container=CONTAINER,
                               backoff_limit=BACKOFF_LIMIT, ttl_seconds_after_finished=TTL_SECONDS_AFTER_FINISHED)


def _labels(owner: Owner, trigger: str) -> dict[str, str]:
    return {**standard_labels(kind=RESOURCE.kind, name=owner.name, component=COMPONENT), TRIGGER_LABEL: trigger}


# -- the children -----------------------------------------------------------------------------


def desired_materialization_job(spec: FeatureSetSpec, owner: Owner, settings: Settings) -> dict[str, Any]:
    """The one-off Job that materializes the current spec generation once."""
    labels = _labels(owner, TRIGGER_SPEC_CHANGE)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": owner.child_metadata(materialization_job_name(owner), labels,
                                         {GENERATION_ANNOTATION: str(owner.generation)}),
        "spec": materialization_job_spec(spec, owner, settings, labels),
    }


def desired_cronjob(spec: FeatureSetSpec, owner: Owner, settings: Settings) -> dict[str, Any] | None:
    """The CronJob that materializes on `spec.schedule`; None when the spec has no schedule."""
    if spec.schedule is None:
        return None
    labels = _labels(owner, TRIGGER_SCHEDULE)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": owner.child_metadata(cronjob_name(owner), labels, {GENERATION_ANNOTATION: str(owner.generation)}),
        "spec": cronjob_spec(
            spec.schedule,
            {"labels": dict(labels), "annotations": {GENERATION_ANNOTATION: str(owner.generation)}},
            materialization_job_spec(spec, owner, settings, labels)),
    }


# -- decisions about the Jobs that exist -----------------------------------------------------


def job_finished(job: Mapping[str, Any]) -> bool:
    """True once the Job is Complete or Failed (its pods are done)."""
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def owned_by(obj: Mapping[str, Any], uids: Iterable[str]) -> bool:
    """True if one of `uids` is the object's controller."""
    wanted = set(uids)
    return any(ref.get("controller") and ref.get("uid") in wanted
               for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def needs_materialization_job(job_name: str, jobs: Sequence[Mapping[str, Any]], *,
                              run_recorded: bool) -> bool:
    """Whether the one-off Job of this generation must be created.

    Not when it exists (a Job's template is immutable: a running or finished run is left as
    it is), nor when its run is already recorded in the object store: finished Jobs are
    deleted after `TTL_SECONDS_AFTER_FINISHED`, and that must not run the materialization
    again.
    """
    return not run_recorded and all(job["metadata"]["name"] != job_name for job in jobs)


def superseded_jobs(jobs: Sequence[Mapping[str, Any]], owner: Owner) -> list[str]:
    """Names of one-off Jobs of an older spec that are still running: a newer spec replaces
    them (if one finished later, its version would become the latest, from an outdated spec)."""
    current = materialization_job_name(owner)
    return [job["metadata"]["name"] for job in jobs
            if owned_by(job, [owner.uid]) and job["metadata"]["name"] != current and not job_finished(job)]
