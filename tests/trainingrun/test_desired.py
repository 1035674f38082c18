"""The TrainingRun's children as built by `trainingrun.desired`: golden files, the Kubernetes
schema, and the trainer's contract (environment, exit codes, names).

Golden files live in tests/trainingrun/golden/; regenerate them with

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/trainingrun/test_desired.py

and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kubeloop.core.naming import JOB_NAME_MAX
from kubeloop.core.settings import Images, ObjectStore, Settings
from kubeloop.trainingrun import desired
from kubeloop.trainingrun.api import TrainingRunSpec

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
KUBERNETES_VERSION = "1.37"
UID = "7d3c9a51-2b8e-4f0a-9c61-0e4d2a9b5f21"

SETTINGS = Settings(
    images=Images(trainer="ghcr.io/kubeloop/trainer:0.1.0"),
    object_store=ObjectStore(endpoint="http://kubeloop-s3.kubeloop-system:8333", bucket="kubeloop",
                             secret_name="kubeloop-s3", region="us-east-1"),
)
FEATURE_SET = desired.FeatureSetVersion(
    name="transactions", version="3f9a1c2b7d4e",
    digest="sha256:5b0e3c4f1a2d9e8b7c6a5f4e3d2c1b0a9f8e7d6c5b4a39281706f5e4d3c2b1a0")

CPU_SPEC: dict[str, Any] = {
    "featureSetRef": {"name": "transactions"},
    "target": "is_fraud",
    "model": {"task": "classification"},
    "hyperparameters": {"epochs": 5},
}

GPU_SPEC: dict[str, Any] = {
    "featureSetRef": {"name": "transactions"},
    "featureSetVersion": "3f9a1c2b7d4e",
    "target": "is_fraud",
    "model": {"family": "mlp", "task": "classification"},
    "hyperparameters": {"epochs": 30, "batchSize": 4096, "hiddenLayers": [512, 256]},
    "deterministic": True,
    "workers": 4,
    "procsPerWorker": 8,
    "resources": {"cpu": "32", "memory": "256Gi", "gpus": 8},
    "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "training", "effect": "NoSchedule"}],
    "priorityClassName": "training-high",
    "queueName": "gpu-team-a",
    "backoffLimit": 0,
    "maxRestarts": 3,
    "ttlSecondsAfterFinished": 86400,
}

SUSPENDED_SPEC: dict[str, Any] = {
    **CPU_SPEC,
    "workers": 2,
    "suspend": True,
    "activeDeadlineSeconds": 3600,
    "backoffLimit": 1,
}

CASES: dict[str, tuple[str, dict[str, Any], int]] = {
    # case: (TrainingRun name, spec, attempt)
    "cpu-1-worker": ("fraud-cpu", CPU_SPEC, 1),
    "gpu-4x8-kueue": ("fraud-gpu", GPU_SPEC, 2),
    "suspended-deadline": ("fraud-suspended", SUSPENDED_SPEC, 1),
}


def owner(name: str, generation: int = 1) -> desired.Owner:
    return desired.Owner(name=name, namespace="ml", uid=UID, generation=generation)


def built(case: str) -> dict[str, dict[str, Any]]:
    name, document, attempt = CASES[case]
    spec = TrainingRunSpec.model_validate(document)
    return {"job": desired.desired_job(spec, owner(name), attempt, FEATURE_SET, SETTINGS),
            "service": desired.desired_service(owner(name))}


def golden_text(manifest: dict[str, Any]) -> str:
    # width: the trainer's JSON stays one line, not folded at arbitrary places.
    return yaml.safe_dump(manifest, sort_keys=False, width=1_000_000)


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {entry["name"]: entry.get("value", entry.get("valueFrom")) for entry in container["env"]}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kind", ["job", "service"])
def test_manifest_matches_golden_file(case: str, kind: str):
    manifest = built(case)[kind]
    path = GOLDEN / f"{kind}-{case}.yaml"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(golden_text(manifest))
    assert path.exists(), f"no golden file {path.name}; run with UPDATE_GOLDEN=1"
    assert yaml.safe_load(path.read_text()) == manifest, f"{path.name} differs; UPDATE_GOLDEN=1 regenerates it"


@pytest.mark.parametrize("case", sorted(CASES))
def test_manifests_validate_against_the_kubernetes_schema(case: str):
    for manifest in built(case).values():
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_catches_a_misspelt_field():
    job = built("cpu-1-worker")["job"]
    job["spec"]["template"]["spec"]["subdomian"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


def test_every_golden_file_belongs_to_a_case():
    expected = {f"{kind}-{case}.yaml" for case in CASES for kind in ("job", "service")}
    assert {p.name for p in GOLDEN.glob("*.yaml")} == expected


# -- the contract ------------------------------------------------------------------------------


def test_one_worker_is_a_plain_job_with_rank_zero():
    job = built("cpu-1-worker")["job"]
    assert "completionMode" not in job["spec"]
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 1
    env = env_of(job)
    assert env["RANK"] == env["NODE_RANK"] == env["LOCAL_RANK"] == "0"
    assert env["WORLD_SIZE"] == env["NNODES"] == env["NPROC_PER_NODE"] == "1"
    assert env["MASTER_PORT"] == "29500"
    assert job["spec"]["suspend"] is False


def test_several_workers_are_an_indexed_gang_ranked_by_completion_index():
    job = built("gpu-4x8-kueue")["job"]
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 4
    env = env_of(job)
    index = {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
    assert env["RANK"] == env["NODE_RANK"] == index
    assert (env["WORLD_SIZE"], env["NNODES"], env["NPROC_PER_NODE"]) == ("32", "4", "8")
    service = desired.service_name("fraud-gpu")
    assert env["MASTER_ADDR"] == f"fraud-gpu-a2-0.{service}"
    assert job["spec"]["template"]["spec"]["subdomain"] == service


def test_the_run_document_is_what_the_trainer_reads():
    job = built("gpu-4x8-kueue")["job"]
    document = json.loads(env_of(job)["KUBELOOP_TRAININGRUN"])
    assert document == {
        "name": "fraud-gpu", "namespace": "ml", "uid": UID, "generation": 1, "attempt": 2,
        "spec": TrainingRunSpec.model_validate(GPU_SPEC).to_dict(), "featureSet": FEATURE_SET.to_dict(),
    }
    assert desired.recorded_run(job) == document
    assert desired.job_attempt(job) == 2


def test_gpus_get_limits_the_gpu_toleration_and_shared_memory():
    pod = built("gpu-4x8-kueue")["job"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert desired.GPU_TOLERATION in pod["tolerations"]
    assert {"key": "dedicated", "operator": "Equal", "value": "training", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert pod["priorityClassName"] == "training-high"


def test_a_queue_name_labels_the_job_for_kueue_and_creates_it_suspended():
    job = built("gpu-4x8-kueue")["job"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-team-a"
    assert job["spec"]["suspend"] is True


def test_the_pod_is_restricted_with_a_writable_scratch_volume():
    pod = built("cpu-1-worker")["job"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert {"name": "scratch", "mountPath": "/scratch"} in container["volumeMounts"]
    assert env_of(built("cpu-1-worker")["job"])["KUBELOOP_SCRATCH"] == "/scratch"
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert "tolerations" not in pod


def test_object_store_credentials_come_from_the_namespace_secret():
    env = env_of(built("cpu-1-worker")["job"])
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "kubeloop-s3", "key": "accessKey"}}
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "kubeloop-s3", "key": "secretKey"}}
    assert env["KUBELOOP_S3_ENDPOINT"] == "http://kubeloop-s3.kubeloop-system:8333"
    assert env["KUBELOOP_S3_BUCKET"] == "kubeloop"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["KUBELOOP_IMAGE"] == "ghcr.io/kubeloop/trainer:0.1.0"


def test_exit_code_3_fails_the_job_at_once():
    rules = built("cpu-1-worker")["job"]["spec"]["podFailurePolicy"]["rules"]
    assert {"action": "FailJob", "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [3]}} in rules
    assert built("cpu-1-worker")["job"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_job_fields_from_the_spec():
    job = built("suspended-deadline")["job"]
    assert job["spec"]["suspend"] is True
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    assert job["spec"]["backoffLimit"] == 1
    assert "ttlSecondsAfterFinished" not in job["spec"]
    assert built("gpu-4x8-kueue")["job"]["spec"]["ttlSecondsAfterFinished"] == 86400


def test_labels_and_owner():
    job = built("cpu-1-worker")["job"]
    assert job["metadata"]["labels"]["kubeloop.dev/trainingrun"] == "fraud-cpu"
    assert job["metadata"]["labels"]["kubeloop.dev/attempt"] == "1"
    assert job["spec"]["template"]["metadata"]["labels"]["kubeloop.dev/attempt"] == "1"
    assert job["metadata"]["ownerReferences"] == [{
        "apiVersion": "kubeloop.dev/v1alpha1", "kind": "TrainingRun", "name": "fraud-cpu", "uid": UID,
        "controller": True, "blockOwnerDeletion": True}]


def test_the_service_is_headless_and_selects_the_runs_pods():
    service = built("suspended-deadline")["service"]
    pod_labels = built("suspended-deadline")["job"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["port"] == 29500


def test_user_images_keep_their_command():
    spec = TrainingRunSpec.model_validate({**CPU_SPEC, "model": {
        "task": "regression", "image": "ghcr.io/acme/train:1", "command": ["python", "train.py"], "args": ["--x"]},
        "hyperparameters": {"anything": 1}})
    container = desired.desired_job(spec, owner("acme"), 1, FEATURE_SET, SETTINGS)["spec"]["template"]["spec"][
        "containers"][0]
    assert (container["image"], container["command"], container["args"]) == (
        "ghcr.io/acme/train:1", ["python", "train.py"], ["--x"])


def test_names_fit_kubernetes_limits():
    long = "a-very-long-training-run-name-for-the-fraud-team-with-many-words-in-it"
    for attempt in (1, 10, 100):
        name = desired.job_name(long, attempt)
        assert len(name) <= JOB_NAME_MAX
        assert len(f"{name}-{attempt}") <= 63  # the pods' hostnames
    assert desired.job_name(long, 1) != desired.job_name(long, 2)
    assert len(desired.service_name(long)) <= 63
    assert desired.service_name("7-run")[0].isalpha()


def test_the_spec_hash_ignores_suspend_only():
    spec = TrainingRunSpec.model_validate(CPU_SPEC)
    assert desired.spec_hash(spec) == desired.spec_hash(TrainingRunSpec.model_validate({**CPU_SPEC, "suspend": True}))
    assert desired.spec_hash(spec) != desired.spec_hash(TrainingRunSpec.model_validate({**CPU_SPEC, "seed": 1}))


def test_attempts_start_at_one():
    with pytest.raises(ValueError):
        desired.desired_job(TrainingRunSpec.model_validate(CPU_SPEC), owner("x"), 0, FEATURE_SET, SETTINGS)


def test_the_registered_model_version_carries_the_template_and_the_lineage():
    from kubeloop.modelversion.api import ModelVersionSpec

    spec = TrainingRunSpec.model_validate({**CPU_SPEC, "register": {
        "model": "fraud-detector", "aliases": ["staging"], "gates": [{"metric": "auc", "min": 0.85}]}})
    model_version = desired.desired_model_version(owner("fraud-cpu"), spec)
    assert model_version["metadata"]["name"] == "fraud-cpu"
    assert "ownerReferences" not in model_version["metadata"]  # it outlives the run
    assert model_version["metadata"]["labels"]["kubeloop.dev/trainingrun"] == "fraud-cpu"
    parsed = ModelVersionSpec.model_validate(model_version["spec"])
    assert parsed.training_run_ref.name == "fraud-cpu"
    assert parsed.model == "fraud-detector" and parsed.aliases == ["staging"]
    with pytest.raises(ValueError):
        desired.desired_model_version(owner("x"), TrainingRunSpec.model_validate(CPU_SPEC))


@pytest.mark.parametrize(("job_suspended", "changes", "expected"), [
    (False, {"suspend": True}, True),
    (True, {"suspend": False}, False),
    (True, {"suspend": False, "queueName": "team-a"}, None),  # Kueue resumes it
    (False, {"suspend": True, "queueName": "team-a"}, True),
    (False, {}, None),
    (True, {"suspend": True}, None),
])
def test_suspend_change(job_suspended: bool, changes: dict[str, Any], expected: bool | None):
    job = {"spec": {"suspend": job_suspended}}
    assert desired.suspend_change(job, TrainingRunSpec.model_validate({**CPU_SPEC, **changes})) is expected
