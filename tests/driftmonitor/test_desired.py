"""The DriftMonitor's children as built by `driftmonitor.desired`: golden files, the Kubernetes
schema, the check's contract (environment, image, exit codes), and the retrain TrainingRun.

Golden files live in tests/driftmonitor/golden/; regenerate them with

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/driftmonitor/test_desired.py

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

from kubeloop.core.naming import CRONJOB_NAME_MAX, DNS_LABEL_MAX
from kubeloop.driftmonitor import desired
from kubeloop.driftmonitor.api import DriftMonitorSpec
from kubeloop.trainingrun.api import TrainingRunSpec

# The same settings and golden-file format as the FeatureSet's builders (both run the jobs image).
from tests.featureset.test_desired import KUBERNETES_VERSION, SETTINGS, golden_text

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
UID = "5d1f0c2e-7a3b-4e8f-9c61-0a2b3c4d5e6f"
TARGET = desired.Target(model="fraud-detector", model_version="fraud-v3", feature_set="transactions",
                        feature_set_version="0a1b2c3d4e5f", feature_set_digest="sha256:" + "ab" * 32,
                        training_run="fraud-train-3")

CHAMPION_SPEC: dict[str, Any] = {"model": "fraud-detector"}
FULL_SPEC: dict[str, Any] = {
    "modelVersionRef": {"name": "fraud-v3"},
    "schedule": "*/30 * * * *",
    "window": "6h",
    "minSamples": 500,
    "features": ["amount_log", "merchant"],
    "method": "ks",
    "thresholds": {"pValue": 0.01},
    "correction": "bonferroni",
    "minEffectSize": 0.1,
    "driftShare": 0.3,
    "reference": "data",
    "resources": {"cpu": "1", "memory": "2Gi"},
    "retrain": {"consecutiveBreaches": 2, "cooldown": "12h", "maxPerDay": 2,
                "templateRef": {"name": "fraud-template"}},
}
SOURCE_RUN: dict[str, Any] = {
    "apiVersion": "kubeloop.dev/v1alpha1", "kind": "TrainingRun",
    "metadata": {"name": "fraud-train-3", "namespace": "ml", "uid": "run-uid", "resourceVersion": "7",
                 "labels": {"team": "fraud"}},
    "spec": {"featureSetRef": {"name": "transactions"}, "featureSetVersion": "0a1b2c3d4e5f",
             "target": "is_fraud", "model": {"task": "classification", "family": "mlp"},
             "hyperparameters": {"epochs": 5}, "seed": 7, "suspend": True,
             "register": {"model": "fraud-detector", "gates": [{"metric": "auc", "min": 0.8}]}},
    "status": {"phase": "Succeeded"},
}
EVIDENCE = desired.Evidence(check_id="20260301T120000Z", drift_share=0.6666666,
                            drifted_features=("amount_log", "merchant"), model_version="fraud-v3",
                            reason="drift share 0.67 in check 20260301T120000Z (amount_log, merchant)")

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "champion": ("fraud-monitor", CHAMPION_SPEC),
    "full": ("fraud-monitor", FULL_SPEC),
    "long-name": ("fraud-detector-monitor-for-card-transactions-in-the-european-union", CHAMPION_SPEC),
}


def owner(name: str = "fraud-monitor") -> desired.Owner:
    return desired.Owner(name=name, namespace="ml", uid=UID, generation=3)


def built(case: str) -> dict[str, dict[str, Any]]:
    name, document = CASES[case]
    monitor = owner(name)
    return {"cronjob": desired.desired_cronjob(DriftMonitorSpec.model_validate(document), monitor, TARGET, SETTINGS),
            "retrain": desired.desired_retrain_run(SOURCE_RUN, monitor, 4, EVIDENCE)}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kind", ["cronjob", "retrain"])
def test_manifest_matches_golden_file(case: str, kind: str):
    manifest = built(case)[kind]
    path = GOLDEN / f"{kind}-{case}.yaml"
    if UPDATE:
        path.write_text(golden_text(manifest))
    assert path.exists(), f"no golden file {path.name}; run with UPDATE_GOLDEN=1"
    assert yaml.safe_load(path.read_text()) == manifest, f"{path.name} differs; UPDATE_GOLDEN=1 regenerates it"


def test_every_golden_file_belongs_to_a_case():
    assert {p.name for p in GOLDEN.glob("*.yaml")} == {f"{kind}-{case}.yaml" for case in CASES
                                                       for kind in ("cronjob", "retrain")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cronjob_validates_against_the_kubernetes_schema(case: str):
    kubernetes_validate.validate(built(case)["cronjob"], KUBERNETES_VERSION, strict=True)


# -- the check's contract -----------------------------------------------------------------------


def pod_of(cronjob: dict[str, Any]) -> dict[str, Any]:
    return dict(cronjob["spec"]["jobTemplate"]["spec"]["template"])


def env_of(cronjob: dict[str, Any]) -> dict[str, dict[str, Any]]:
    [container] = pod_of(cronjob)["spec"]["containers"]
    return {entry["name"]: entry for entry in container["env"]}


def test_pod_runs_the_check_in_the_jobs_image():
    [container] = pod_of(built("full")["cronjob"])["spec"]["containers"]
    assert container["image"] == SETTINGS.images.jobs
    assert container["command"] == ["python", "-m", "kubeloop.driftmonitor.check"]
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}


def test_env_carries_the_monitor_its_model_version_and_featureset_version():
    spec = DriftMonitorSpec.model_validate(FULL_SPEC)
    document = json.loads(env_of(built("full")["cronjob"])["KUBELOOP_DRIFTMONITOR"]["value"])
    assert document == {
        "name": "fraud-monitor", "namespace": "ml", "uid": UID, "spec": spec.to_dict(),
        "model": "fraud-detector", "modelVersion": "fraud-v3",
        "featureSet": {"name": "transactions", "version": "0a1b2c3d4e5f", "digest": "sha256:" + "ab" * 32}}
    assert document["spec"]["minSamples"] == 500 and document["spec"]["thresholds"]["pValue"] == 0.01  # camelCase
    assert DriftMonitorSpec.model_validate(document["spec"]) == spec


def test_env_points_at_the_object_store_with_credentials_from_the_namespace_secret():
    env = env_of(built("champion")["cronjob"])
    assert env["KUBELOOP_S3_ENDPOINT"]["value"] == SETTINGS.object_store.endpoint
    assert env["KUBELOOP_S3_BUCKET"]["value"] == "kubeloop"
    assert env["AWS_REGION"]["value"] == "us-east-1"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"] == {"secretKeyRef": {"name": "kubeloop-s3", "key": "accessKey"}}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "kubeloop-s3", "key": "secretKey"}}


def test_check_pod_is_shaped_like_the_materializer_pod():
    """One builder serves every jobs-image entrypoint: same security, same Job policies."""
    from kubeloop.featureset import desired as featureset_desired
    from kubeloop.featureset.api import FeatureSetSpec

    fs_spec = FeatureSetSpec.model_validate({"source": {"uri": "s3://raw/x.csv"}, "entities": ["id"],
                                             "features": [{"name": "a", "from": "a"}], "schedule": "0 * * * *"})
    fs_owner = featureset_desired.Owner(name="fs", namespace="ml", uid=UID, generation=1)
    materializer = featureset_desired.desired_cronjob(fs_spec, fs_owner, SETTINGS)
    check = built("champion")["cronjob"]
    assert materializer is not None
    fs_pod, check_pod = pod_of(materializer)["spec"], pod_of(check)["spec"]
    assert fs_pod["securityContext"] == check_pod["securityContext"]
    assert fs_pod["containers"][0]["securityContext"] == check_pod["containers"][0]["securityContext"]
    assert fs_pod["volumes"] == check_pod["volumes"]
    for key in ("restartPolicy", "automountServiceAccountToken", "enableServiceLinks"):
        assert fs_pod[key] == check_pod[key]
    fs_env = {e["name"]: e for e in fs_pod["containers"][0]["env"]}
    for name in ("KUBELOOP_S3_ENDPOINT", "KUBELOOP_S3_BUCKET", "AWS_REGION", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "TMPDIR", "HOME"):
        assert fs_env[name] == env_of(check)[name]


def test_cronjob_schedule_policies_and_exit_codes():
    cronjob = built("full")["cronjob"]
    spec = cronjob["spec"]
    assert spec["schedule"] == "*/30 * * * *" and spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    assert "suspend" not in spec
    job = spec["jobTemplate"]["spec"]
    [fail_job] = [rule for rule in job["podFailurePolicy"]["rules"] if rule["action"] == "FailJob"]
    assert fail_job["onExitCodes"] == {"containerName": "check", "operator": "In", "values": [3]}
    assert job["backoffLimit"] == desired.BACKOFF_LIMIT
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The Jobs the CronJob makes are found by the monitor's label.
    assert spec["jobTemplate"]["metadata"]["labels"]["kubeloop.dev/driftmonitor"] == "fraud-monitor"


def test_cronjob_is_owned_by_the_monitor():
    meta = built("champion")["cronjob"]["metadata"]
    assert meta["ownerReferences"] == [{"apiVersion": "kubeloop.dev/v1alpha1", "kind": "DriftMonitor",
                                        "name": "fraud-monitor", "uid": UID, "controller": True,
                                        "blockOwnerDeletion": True}]
    assert meta["name"] == "fraud-monitor-drift-check"


def test_a_spec_change_changes_the_same_cronjob():
    """Level-triggered apply: same name, new content; nothing to delete."""
    before = desired.desired_cronjob(DriftMonitorSpec.model_validate(CHAMPION_SPEC), owner(), TARGET, SETTINGS)
    after = desired.desired_cronjob(DriftMonitorSpec.model_validate({**CHAMPION_SPEC, "schedule": "5 * * * *"}),
                                    owner(), TARGET, SETTINGS)
    assert before["metadata"] == after["metadata"]
    assert after["spec"]["schedule"] == "5 * * * *" and before["spec"] != after["spec"]


def test_long_names_stay_within_limits():
    name = CASES["long-name"][0]
    assert len(desired.cronjob_name(owner(name))) <= CRONJOB_NAME_MAX
    assert len(desired.retrain_run_name(name, 12345)) <= DNS_LABEL_MAX
    assert desired.retrain_run_name(name, 1) != desired.retrain_run_name(name, 2)


# -- the retrain ------------------------------------------------------------------------------


def test_retrain_copies_the_source_spec_unpinned_and_not_suspended():
    run = built("champion")["retrain"]
    assert run["metadata"]["name"] == "fraud-monitor-retrain-4"
    spec = run["spec"]
    assert "featureSetVersion" not in spec and "suspend" not in spec
    assert spec["register"] == SOURCE_RUN["spec"]["register"]  # so the new model is gated and rolled out
    assert {k: v for k, v in SOURCE_RUN["spec"].items() if k not in ("featureSetVersion", "suspend")} == spec
    TrainingRunSpec.model_validate(spec)  # a valid TrainingRun spec


def test_retrain_is_owned_labelled_and_carries_the_evidence():
    meta = built("champion")["retrain"]["metadata"]
    assert meta["ownerReferences"] == [{"apiVersion": "kubeloop.dev/v1alpha1", "kind": "DriftMonitor",
                                        "name": "fraud-monitor", "uid": UID, "controller": True,
                                        "blockOwnerDeletion": True}]
    assert meta["labels"]["kubeloop.dev/driftmonitor"] == "fraud-monitor"
    assert meta["labels"]["kubeloop.dev/trigger"] == "drift"
    assert "team" not in meta["labels"]  # the source's labels are its own
    annotations = meta["annotations"]
    assert annotations["kubeloop.dev/drift-check-id"] == "20260301T120000Z"
    assert annotations["kubeloop.dev/drift-share"] == "0.6667"
    assert annotations["kubeloop.dev/drifted-features"] == "amount_log,merchant"
    assert annotations["kubeloop.dev/model-version"] == "fraud-v3"
    assert annotations["kubeloop.dev/retrain-source"] == "fraud-train-3"
    assert annotations["kubeloop.dev/retrain-number"] == "4"


def test_next_retrain_number_counts_status_and_existing_runs():
    runs = [desired.desired_retrain_run(SOURCE_RUN, owner(), n, EVIDENCE) for n in (1, 3)]
    assert desired.next_retrain_number([], 0) == 1
    assert desired.next_retrain_number(runs, 0) == 4  # a lost status write
    assert desired.next_retrain_number(runs[:1], 5) == 6  # runs deleted since
    assert [desired.retrain_number(run) for run in runs] == [1, 3]


def test_only_runs_the_monitor_controls_are_its_retrains():
    mine = desired.desired_retrain_run(SOURCE_RUN, owner(), 1, EVIDENCE)
    copied = json.loads(json.dumps(mine))
    copied["metadata"]["ownerReferences"] = []
    assert desired.retrain_runs_of([mine, copied], owner()) == [mine]


def test_retrain_number_must_be_positive():
    with pytest.raises(ValueError, match="retrain number"):
        desired.retrain_run_name("m", 0)
