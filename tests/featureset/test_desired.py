"""The FeatureSet's children as built by `featureset.desired`: golden files, the Kubernetes
schema, and the materializer's contract (environment, exit codes, names).

Golden files live in tests/featureset/golden/; regenerate them with

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/featureset/test_desired.py

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

from kubeloop.core.naming import CRONJOB_NAME_MAX, JOB_NAME_MAX
from kubeloop.core.settings import Images, ObjectStore, Settings
from kubeloop.featureset import desired
from kubeloop.featureset.api import FeatureSetSpec

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
KUBERNETES_VERSION = "1.37"
UID = "0b5c1a7e-6f1d-4c59-9a53-2f0de4b7c111"

SETTINGS = Settings(
    images=Images(jobs="ghcr.io/kubeloop/jobs:0.1.0"),
    object_store=ObjectStore(endpoint="http://kubeloop-s3.kubeloop-system:8333", bucket="kubeloop",
                             secret_name="kubeloop-s3", region="us-east-1"),
)

MINIMAL_SPEC: dict[str, Any] = {
    "source": {"uri": "s3://raw/customers/*.csv"},
    "entities": ["customer_id"],
    "features": [{"name": "age", "from": "age"}],
}

SCHEDULED_SPEC: dict[str, Any] = {
    "source": {"uri": "s3://kubeloop-data/transactions/*.parquet", "timestampColumn": "event_time",
               "secretRef": {"name": "kubeloop-data-credentials"}},
    "entities": ["card_id"],
    "labelColumns": ["is_fraud"],
    "features": [
        {"name": "amount_log", "from": "amount",
         "transforms": [{"type": "fillNull", "strategy": "median"}, {"type": "log1p"}, {"type": "standardize"}]},
        {"name": "merchant_category", "from": "merchant_category",
         "transforms": [{"type": "vocabulary", "maxSize": 64, "oovBuckets": 1}]},
    ],
    "validation": {"minRows": 1000, "columns": [{"column": "amount", "min": 0, "maxNullFraction": 0.01}]},
    "schedule": "0 2 * * *",
    "resources": {"cpu": "2", "memory": "4Gi"},
}

CASES: dict[str, tuple[str, dict[str, Any], int]] = {
    # case: (FeatureSet name, spec, generation)
    "minimal": ("customers", MINIMAL_SPEC, 1),
    "scheduled": ("transactions", SCHEDULED_SPEC, 4),
    "long-name": ("card-transactions-aggregated-over-thirty-days-for-the-fraud-team", SCHEDULED_SPEC, 12),
}


def spec_of(document: dict[str, Any]) -> FeatureSetSpec:
    return FeatureSetSpec.model_validate(document)


def owner(name: str = "transactions", generation: int = 1, uid: str = UID) -> desired.Owner:
    return desired.Owner(name=name, namespace="ml", uid=uid, generation=generation)


def built(case: str) -> dict[str, dict[str, Any] | None]:
    name, document, generation = CASES[case]
    spec, fs = spec_of(document), owner(name, generation)
    return {"job": desired.desired_materialization_job(spec, fs, SETTINGS),
            "cronjob": desired.desired_cronjob(spec, fs, SETTINGS)}


class _NoAliases(yaml.SafeDumper):
    """Spell every value out: `&id001` / `*id001` make a golden file hard to review."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def golden_text(manifest: dict[str, Any]) -> str:
    # width: the materializer's JSON stays one line, not folded at arbitrary places.
    return yaml.dump(manifest, Dumper=_NoAliases, sort_keys=False, width=1_000_000)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kind", ["job", "cronjob"])
def test_manifest_matches_golden_file(case: str, kind: str):
    manifest = built(case)[kind]
    path = GOLDEN / f"{kind}-{case}.yaml"
    if manifest is None:
        assert not path.exists(), f"{path.name} exists but {case} builds no {kind}"
        return
    text = golden_text(manifest)
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"no golden file {path.name}; run with UPDATE_GOLDEN=1"
    assert yaml.safe_load(path.read_text()) == manifest, f"{path.name} differs; UPDATE_GOLDEN=1 regenerates it"


@pytest.mark.parametrize("case", sorted(CASES))
def test_manifests_validate_against_the_kubernetes_schema(case: str):
    for manifest in built(case).values():
        if manifest is not None:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_catches_a_misspelt_field():
    job = built("minimal")["job"]
    assert job is not None
    job["spec"]["backoffLimt"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


def test_every_golden_file_belongs_to_a_case():
    expected = {f"{kind}-{case}.yaml" for case in CASES for kind, m in built(case).items() if m is not None}
    assert {p.name for p in GOLDEN.glob("*.yaml")} == expected


# -- the materializer's contract ----------------------------------------------------------------


def container_of(manifest: dict[str, Any]) -> dict[str, Any]:
    pod = manifest["spec"]["template"] if manifest["kind"] == "Job" else \
        manifest["spec"]["jobTemplate"]["spec"]["template"]
    [container] = pod["spec"]["containers"]
    return dict(container)


def env_of(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container_of(manifest)["env"]}


def test_pod_runs_the_materializer_in_the_jobs_image():
    container = container_of(built("minimal")["job"])  # type: ignore[arg-type]
    assert container["image"] == SETTINGS.images.jobs
    assert container["command"] == ["python", "-m", "kubeloop.featureset.materialize"]


def test_env_carries_the_featureset_and_run_id():
    spec, fs = spec_of(SCHEDULED_SPEC), owner(generation=4)
    env = env_of(desired.desired_materialization_job(spec, fs, SETTINGS))
    document = json.loads(env["KUBELOOP_FEATURESET"]["value"])
    assert document == {"name": "transactions", "namespace": "ml", "uid": UID, "generation": 4,
                        "spec": spec.to_dict()}
    assert document["spec"]["source"]["timestampColumn"] == "event_time"  # camelCase, as in the CR
    assert FeatureSetSpec.model_validate(document["spec"]) == spec
    assert env["KUBELOOP_RUN_ID"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}}


def test_env_points_at_the_object_store_with_credentials_from_the_namespace_secret():
    env = env_of(built("minimal")["job"])  # type: ignore[arg-type]
    assert env["KUBELOOP_S3_ENDPOINT"]["value"] == SETTINGS.object_store.endpoint
    assert env["KUBELOOP_S3_BUCKET"]["value"] == "kubeloop"
    assert env["AWS_REGION"]["value"] == "us-east-1"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"] == {"secretKeyRef": {"name": "kubeloop-s3", "key": "accessKey"}}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "kubeloop-s3", "key": "secretKey"}}
    assert not any(name.startswith("KUBELOOP_SOURCE_") for name in env)
    assert all("value" not in entry for name, entry in env.items() if "AWS_" in name and "REGION" not in name)


def test_source_secret_ref_becomes_source_credentials():
    env = env_of(built("scheduled")["job"])  # type: ignore[arg-type]
    for key, optional in [("AWS_ACCESS_KEY_ID", False), ("AWS_SECRET_ACCESS_KEY", False),
                          ("AWS_ENDPOINT_URL", True), ("AWS_SESSION_TOKEN", True)]:
        ref = env[f"KUBELOOP_SOURCE_{key}"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "kubeloop-data-credentials" and ref["key"] == key
        assert ref.get("optional", False) is optional


def test_cronjob_and_one_off_job_run_the_same_pod():
    manifests = built("scheduled")
    job, cronjob = manifests["job"], manifests["cronjob"]
    assert job is not None and cronjob is not None
    job_spec, template_spec = job["spec"], cronjob["spec"]["jobTemplate"]["spec"]
    assert job_spec["template"]["spec"] == template_spec["template"]["spec"]
    assert {k: v for k, v in job_spec.items() if k != "template"} == \
        {k: v for k, v in template_spec.items() if k != "template"}


def test_cronjob_schedule_and_policies():
    cronjob = built("scheduled")["cronjob"]
    assert cronjob is not None
    assert cronjob["spec"]["schedule"] == "0 2 * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert cronjob["spec"]["startingDeadlineSeconds"] > 0
    assert cronjob["spec"]["successfulJobsHistoryLimit"] >= 1 and cronjob["spec"]["failedJobsHistoryLimit"] >= 1
    # Jobs the CronJob makes are found by the FeatureSet's label.
    assert cronjob["spec"]["jobTemplate"]["metadata"]["labels"]["kubeloop.dev/featureset"] == "transactions"


def test_no_schedule_no_cronjob():
    assert desired.desired_cronjob(spec_of(MINIMAL_SPEC), owner(), SETTINGS) is None


def test_exit_code_3_fails_the_job_at_once_and_others_are_retried():
    job = built("minimal")["job"]
    assert job is not None
    assert job["spec"]["backoffLimit"] == 2
    [fail_job] = [rule for rule in job["spec"]["podFailurePolicy"]["rules"] if rule["action"] == "FailJob"]
    assert fail_job["onExitCodes"] == {"containerName": "materialize", "operator": "In", "values": [3]}
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy requires it
    assert job["spec"]["ttlSecondsAfterFinished"] >= 3600


def test_pod_is_restricted_and_resources_come_from_the_spec():
    job = built("scheduled")["job"]
    assert job is not None
    pod = job["spec"]["template"]["spec"]
    container = container_of(job)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}
    assert pod["automountServiceAccountToken"] is False


def test_children_are_owned_by_the_featureset_and_labelled():
    for manifest in built("scheduled").values():
        assert manifest is not None
        meta = manifest["metadata"]
        [ref] = meta["ownerReferences"]
        assert ref == {"apiVersion": "kubeloop.dev/v1alpha1", "kind": "FeatureSet", "name": "transactions",
                       "uid": UID, "controller": True, "blockOwnerDeletion": True}
        assert meta["labels"]["kubeloop.dev/featureset"] == "transactions"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "kubeloop-operator"
        assert meta["namespace"] == "ml"


# -- names ------------------------------------------------------------------------------------


def test_one_job_per_generation_and_per_featureset_object():
    names = {desired.materialization_job_name(owner(generation=g, uid=uid))
             for g in (1, 2) for uid in (UID, "9e8d7c6b-0000-0000-0000-000000000000")}
    assert len(names) == 4
    assert desired.materialization_job_name(owner(generation=2)) == "transactions-g2-0b5c1"
    assert desired.materialization_job_name(owner(generation=2)) == desired.materialization_job_name(owner(generation=2))


@pytest.mark.parametrize("length", [1, 40, 63, 253])
def test_names_fit_their_limits(length: int):
    fs = owner(name="a" * length, generation=123456)
    assert len(desired.materialization_job_name(fs)) <= JOB_NAME_MAX
    assert len(desired.cronjob_name(fs)) <= CRONJOB_NAME_MAX
    assert len(desired.materialization_job_name(fs)) <= 63 - len("-xxxxx")


# -- decisions about existing Jobs -------------------------------------------------------------


def job(name: str, *, owner_uid: str = UID, finished: str | None = None) -> dict[str, Any]:
    conditions = [{"type": finished, "status": "True"}] if finished else []
    return {"metadata": {"name": name, "ownerReferences": [{"uid": owner_uid, "controller": True}]},
            "status": {"conditions": conditions}}


def test_one_off_job_is_created_unless_it_exists_or_its_run_is_recorded():
    name = desired.materialization_job_name(owner())
    assert desired.needs_materialization_job(name, [], run_recorded=False)
    assert desired.needs_materialization_job(name, [job("transactions-materialize-29000000")], run_recorded=False)
    assert not desired.needs_materialization_job(name, [job(name, finished="Complete")], run_recorded=False)
    # Deleted after its TTL, but it ran: not again.
    assert not desired.needs_materialization_job(name, [], run_recorded=True)


def test_running_jobs_of_an_older_spec_are_superseded():
    fs = owner(generation=3)
    current = desired.materialization_job_name(fs)
    jobs = [
        job(desired.materialization_job_name(owner(generation=1)), finished="Complete"),
        job(desired.materialization_job_name(owner(generation=2))),  # still running
        job(current),
        job("transactions-materialize-29000000", owner_uid="cronjob-uid"),  # the CronJob's
    ]
    assert desired.superseded_jobs(jobs, fs) == ["transactions-g2-0b5c1"]
