"""What a TrainingRun should run: one batch/v1 Job per attempt and a headless Service for the
workers' rendezvous. Pure builders (values in, manifests out: no API calls, no clock, no
environment), covered by golden files in tests/trainingrun/golden/.

- `desired_job`: the Job of attempt `n`, named `<run>-a<n>`. Indexed with completions =
  parallelism = workers when workers > 1 (one rank per pod, the rank from the completion
  index), suspended when `spec.suspend` or `spec.queueName` (Kueue admits the whole gang by
  unsuspending it). A failed attempt is never modified: the next attempt is a new Job, so all
  workers restart together and the trainer resumes from its last checkpoint.
- `desired_service`: headless (clusterIP None, publishNotReadyAddresses), so that
  `<job>-0.<service>` resolves to rank 0 before any pod is Ready.

The trainer's contract (`trainingrun/train.py`): command `python -m kubeloop.trainingrun.train`
(under `torchrun` when procsPerWorker > 1) in `settings.images.trainer`, the environment built by `trainer_env`, and the exit codes 0
(success), 3 (permanent: the podFailurePolicy fails the Job at once, no restart) and 1
(transient: the attempt fails, the operator may start the next one).

`desired_model_version`: the ModelVersion that `spec.register` creates on success.

Also pure readings of a Job this module built: `job_attempt`, `recorded_run` (the run document
the Job was created with: the spec and FeatureSet version every later attempt keeps).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubeloop import API_VERSION
from kubeloop.core import owners
from kubeloop.core.labels import (
    MANAGED_BY,
    PART_OF,
    label_value,
    owner_label_key,
    selector_labels,
    standard_labels,
)
from kubeloop.core.naming import DNS_LABEL_MAX, JOB_NAME_MAX, child_name
from kubeloop.core.settings import Settings
from kubeloop.core.workloads import (
    EXIT_PERMANENT_FAILURE,
    SCRATCH_PATH,
    SCRATCH_VOLUME,
    restricted_container_security,
    restricted_pod_security,
)
from kubeloop.trainingrun.api import RESOURCE, TrainingRunSpec

COMPONENT = "trainer"
CONTAINER = "trainer"
TRAINER_MODULE = "kubeloop.trainingrun.train"
RENDEZVOUS_PORT = 29500
RENDEZVOUS_PORT_NAME = "rendezvous"

# The trainer follows the entrypoints' exit-code contract (EXIT_PERMANENT_FAILURE: retrying cannot
# help) and has the same read-only root with one scratch volume (core.workloads).
# Shared memory for data loader workers and NCCL: the container runtime's 64 MiB default is
# too small for more than one process per pod.
SHM_VOLUME = "dshm"
SHM_PATH = "/dev/shm"
NON_ROOT_ID = 1000
GPU_RESOURCE = "nvidia.com/gpu"
# The taint GPU node pools usually carry (GKE, EKS, AKS and the NVIDIA GPU operator's docs).
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}

# Labels and annotations kubeloop puts on a run's Jobs and pods.
ATTEMPT_LABEL = "kubeloop.dev/attempt"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
SPEC_HASH_ANNOTATION = "kubeloop.dev/spec-hash"
COMPLETION_INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"

# The trainer's environment (its contract).
ENV_TRAININGRUN = "KUBELOOP_TRAININGRUN"
# Fields a user may change on a running run: they do not change what is trained.
MUTABLE_SPEC_FIELDS = ("suspend",)


class Owner(owners.Owner):
    """The TrainingRun the children belong to, as its metadata says."""

    kind = RESOURCE.kind


@dataclass(frozen=True)
class FeatureSetVersion:
    """The FeatureSet version a run trains on (resolved once, before its first Job)."""

    name: str
    version: str
    digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "digest": self.digest}


# -- names ------------------------------------------------------------------------------------


def job_name(run: str, attempt: int) -> str:
    """`<run>-a<attempt>`, short enough for the Job's pod names and hostnames."""
    return child_name(run, f"a{attempt}", max_length=JOB_NAME_MAX)


def service_name(run: str) -> str:
    """`<run>-workers`: a DNS-1035 label (a Service name must start with a letter)."""
    name = child_name(run, "workers", max_length=DNS_LABEL_MAX)
    return name if name[0].isalpha() else child_name(f"tr-{run}", "workers", max_length=DNS_LABEL_MAX)


def store_prefix(namespace: str, name: str) -> str:
    """Where the trainer writes progress.json, record.json, failure.json and checkpoints."""
    return f"trainingruns/{namespace}/{name}"


# -- the spec a Job was built from -------------------------------------------------------------


def spec_hash(spec: TrainingRunSpec) -> str:
    """sha256 of the spec's canonical JSON, without the fields that may change while it runs."""
    document = {key: value for key, value in spec.to_dict().items() if key not in MUTABLE_SPEC_FIELDS}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def run_document(spec: TrainingRunSpec, owner: Owner, attempt: int, feature_set: FeatureSetVersion) -> str:
    """The `KUBELOOP_TRAININGRUN` value (canonical JSON): what the trainer trains."""
    document = {"name": owner.name, "namespace": owner.namespace, "uid": owner.uid,
                "generation": owner.generation, "attempt": attempt, "spec": spec.to_dict(),
                "featureSet": feature_set.to_dict()}
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def job_attempt(job: Mapping[str, Any]) -> int | None:
    """The attempt a Job of this module runs (its attempt label), or None."""
    value = ((job.get("metadata") or {}).get("labels") or {}).get(ATTEMPT_LABEL, "")
    return int(value) if str(value).isdigit() else None


def recorded_run(job: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run document a Job was created with (its trainer container's `KUBELOOP_TRAININGRUN`)."""
    template = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in template.get("containers") or []:
        for entry in container.get("env") or []:
            if entry.get("name") == ENV_TRAININGRUN and "value" in entry:
                try:
                    document = json.loads(entry["value"])
                except ValueError:
                    return None
                return document if isinstance(document, dict) else None
    return None


# -- the pod ----------------------------------------------------------------------------------


def _secret_env(variable: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _index_env(variable: str) -> dict[str, Any]:
    return {"name": variable, "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX_FIELD}}}


def trainer_image(spec: TrainingRunSpec, settings: Settings) -> str:
    return spec.model.image or settings.images.trainer


def trainer_env(spec: TrainingRunSpec, owner: Owner, attempt: int, feature_set: FeatureSetVersion,
                settings: Settings) -> list[dict[str, Any]]:
    """The torchrun/PyTorchJob environment plus kubeloop's (the trainer's contract).

    With one worker there is no Indexed Job and no peer: ranks are 0 and the rendezvous is
    the pod itself. With several, rank 0 is the pod of completion index 0, reached through the
    headless Service as `<job>-0.<service>`.
    """
    store = settings.object_store
    indexed = spec.workers > 1
    master = f"{job_name(owner.name, attempt)}-0.{service_name(owner.name)}" if indexed else "localhost"
    rank: list[dict[str, Any]] = ([_index_env("NODE_RANK"), _index_env("RANK")] if indexed
                                  else [{"name": "NODE_RANK", "value": "0"}, {"name": "RANK", "value": "0"}])
    return [
        {"name": ENV_TRAININGRUN, "value": run_document(spec, owner, attempt, feature_set)},
        {"name": "MASTER_ADDR", "value": master},
        {"name": "MASTER_PORT", "value": str(RENDEZVOUS_PORT)},
        {"name": "WORLD_SIZE", "value": str(spec.workers * spec.procs_per_worker)},
        {"name": "NNODES", "value": str(spec.workers)},
        {"name": "NPROC_PER_NODE", "value": str(spec.procs_per_worker)},
        *rank,
        {"name": "LOCAL_RANK", "value": "0"},
        {"name": "KUBELOOP_S3_ENDPOINT", "value": store.endpoint},
        {"name": "KUBELOOP_S3_BUCKET", "value": store.bucket},
        {"name": "AWS_REGION", "value": store.region},
        _secret_env("AWS_ACCESS_KEY_ID", store.secret_name, "accessKey"),
        _secret_env("AWS_SECRET_ACCESS_KEY", store.secret_name, "secretKey"),
        {"name": "KUBELOOP_IMAGE", "value": trainer_image(spec, settings)},
        {"name": "KUBELOOP_SCRATCH", "value": SCRATCH_PATH},
        {"name": "TMPDIR", "value": SCRATCH_PATH},
        {"name": "HOME", "value": SCRATCH_PATH},
        # Progress lines reach `kubectl logs` as they are printed.
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def _uses_shared_memory(spec: TrainingRunSpec) -> bool:
    return spec.procs_per_worker > 1 or spec.resources.gpus > 0


def trainer_container(spec: TrainingRunSpec, owner: Owner, attempt: int, feature_set: FeatureSetVersion,
                      settings: Settings) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": trainer_image(spec, settings),
    }
    if spec.model.image is None and spec.procs_per_worker == 1:
        container["command"] = ["python", "-m", TRAINER_MODULE]
    elif spec.model.image is None:
        # torchrun starts one process per GPU and gives each its RANK, LOCAL_RANK and WORLD_SIZE.
        container["command"] = ["torchrun", "--nnodes=$(NNODES)", "--nproc-per-node=$(NPROC_PER_NODE)",
                                "--node-rank=$(NODE_RANK)", "--master-addr=$(MASTER_ADDR)",
                                "--master-port=$(MASTER_PORT)", "-m", TRAINER_MODULE]
    else:
        if spec.model.command is not None:
            container["command"] = list(spec.model.command)
        if spec.model.args is not None:
            container["args"] = list(spec.model.args)
    mounts = [{"name": SCRATCH_VOLUME, "mountPath": SCRATCH_PATH}]
    if _uses_shared_memory(spec):
        mounts.append({"name": SHM_VOLUME, "mountPath": SHM_PATH})
    container.update({
        "env": trainer_env(spec, owner, attempt, feature_set, settings),
        "ports": [{"name": RENDEZVOUS_PORT_NAME, "containerPort": RENDEZVOUS_PORT, "protocol": "TCP"}],
        # resources.requirements() puts nvidia.com/gpu in limits when gpus > 0.
        "resources": spec.resources.requirements(),
        "securityContext": restricted_container_security(),
        "volumeMounts": mounts,
    })
    return container


def pod_template(spec: TrainingRunSpec, owner: Owner, attempt: int, feature_set: FeatureSetVersion,
                 settings: Settings, labels: Mapping[str, str]) -> dict[str, Any]:
    """A worker pod: restricted security context, scheduling fields from the spec."""
    tolerations = [t.to_dict() for t in spec.tolerations]
    if spec.resources.gpus and GPU_TOLERATION not in tolerations:
        tolerations.append(dict(GPU_TOLERATION))
    volumes: list[dict[str, Any]] = [{"name": SCRATCH_VOLUME, "emptyDir": {}}]
    if _uses_shared_memory(spec):
        volumes.append({"name": SHM_VOLUME, "emptyDir": {"medium": "Memory"}})
    pod: dict[str, Any] = {
        # podFailurePolicy needs Never; a failed rank fails the attempt (backoffLimit 0 by default).
        "restartPolicy": "Never",
        # With the Job's hostname <job>-<index>, this makes <job>-<index>.<service> resolve.
        "subdomain": service_name(owner.name),
        # The trainer talks to its peers and the object store only, never to the API server.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security(NON_ROOT_ID),
        "containers": [trainer_container(spec, owner, attempt, feature_set, settings)],
        "volumes": volumes,
    }
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if tolerations:
        pod["tolerations"] = tolerations
    if spec.priority_class_name:
        pod["priorityClassName"] = spec.priority_class_name
    return {"metadata": {"labels": dict(labels)}, "spec": pod}


def _labels(owner: Owner) -> dict[str, str]:
    return standard_labels(kind=RESOURCE.kind, name=owner.name, component=COMPONENT)


# -- the children -----------------------------------------------------------------------------


def desired_job(spec: TrainingRunSpec, owner: Owner, attempt: int, feature_set: FeatureSetVersion,
                settings: Settings) -> dict[str, Any]:
    """The Job of attempt `attempt` (1-based) of the run."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, not {attempt}")
    pod_labels = {**_labels(owner), ATTEMPT_LABEL: str(attempt)}
    job_labels = dict(pod_labels)
    if spec.queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = spec.queue_name
    job_spec: dict[str, Any] = {
        "parallelism": spec.workers,
        "completions": spec.workers,
    }
    if spec.workers > 1:
        job_spec["completionMode"] = "Indexed"
    job_spec.update({
        "backoffLimit": spec.backoff_limit,
        # Kueue admits a queued Job by unsuspending it, all pods at once (gang admission).
        "suspend": spec.suspend or spec.queue_name is not None,
        "podFailurePolicy": {"rules": [
            # The trainer's permanent failures (a bad target column ...): no retry can help.
            {"action": "FailJob",
             "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [EXIT_PERMANENT_FAILURE]}},
        ]},
        "template": pod_template(spec, owner, attempt, feature_set, settings, pod_labels),
    })
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    if spec.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(owner.name, attempt),
            "namespace": owner.namespace,
            "labels": job_labels,
            "annotations": {SPEC_HASH_ANNOTATION: spec_hash(spec)},
            "ownerReferences": [owner.reference()],
        },
        "spec": job_spec,
    }


def desired_service(owner: Owner) -> dict[str, Any]:
    """The headless Service that gives every worker pod a DNS name for the rendezvous."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(owner.name),
            "namespace": owner.namespace,
            "labels": _labels(owner),
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "clusterIP": "None",
            # Rank 0 must be resolvable while the workers start, before any is Ready.
            "publishNotReadyAddresses": True,
            "selector": selector_labels(kind=RESOURCE.kind, name=owner.name, component=COMPONENT),
            "ports": [{"name": RENDEZVOUS_PORT_NAME, "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT,
                       "protocol": "TCP"}],
        },
    }


# -- registration and suspension ---------------------------------------------------------------


def desired_model_version(owner: Owner, spec: TrainingRunSpec) -> dict[str, Any]:
    """The ModelVersion of spec.register: named after the run, spec = the template + lineage.

    Not owned by the TrainingRun: a registered version outlives the run that produced it
    (deleting old runs must not retire a model that serves traffic). The label links it back.
    """
    if spec.registration is None:
        raise ValueError("the spec has no register section")
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelVersion",
        "metadata": {
            "name": owner.name,
            "namespace": owner.namespace,
            "labels": {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/managed-by": MANAGED_BY,
                       "app.kubernetes.io/name": "modelversion", owner_label_key(RESOURCE.kind): label_value(owner.name)},
        },
        "spec": {**spec.registration.to_dict(), "trainingRunRef": {"name": owner.name}},
    }


def suspend_change(job: Mapping[str, Any], spec: TrainingRunSpec) -> bool | None:
    """The `spec.suspend` to set on the attempt's Job so that it follows the run's, or None.

    With a Kueue queue, resuming is Kueue's decision (it admits the gang by unsuspending the
    Job): the operator only suspends it."""
    suspended = bool((job.get("spec") or {}).get("suspend"))
    if spec.suspend and not suspended:
        return True
    if not spec.suspend and suspended and spec.queue_name is None:
        return False
    return None
