"""ModelVersion end to end on the embedded cluster (API server, S3, Prometheus, the local node
running trainer Jobs and InferenceService revisions as processes, the operator), driven with the
real kubectl and plain HTTP, as a user would:

FeatureSet → TrainingRun (register) → ModelVersion passes its gates → InferenceService Ready →
v1 and v2 predictions from raw features equal the trainer's own predictions on the same rows (no
training/serving skew) → the requests are in the prediction log; a version that fails a gate stays
GatesFailed while the champion keeps serving; a tampered artifact is refused; a bad request gets a
400 naming the feature; a staged rollout moves traffic step by step, promotes the new version and
retires the old champion.

Timeouts in `wait_for` only stop a hang; they are not performance assertions.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from kubeloop.local.environment import BUCKET, S3_SECRET, LocalEnvironment
from kubeloop.local.prometheus import prometheus_binary
from kubeloop.modelversion.predictionlog import prediction_log_prefix, read_prediction_log
from kubeloop.store import ObjectStore, StoreConfig
from kubeloop.store.layout import version_of_uri
from kubeloop.store.registry import read_registry
from kubeloop.trainingrun.api import Hyperparameters
from kubeloop.trainingrun.models import build_model, input_matrix, objective_for
from tests.conftest import KubectlCLI
from tests.integration.conftest import wait_for
from tests.trainingrun.conftest import NAMESPACE, raw_rows
from tests.trainingrun.test_trainingrun_e2e import create_feature_set, run_spec, unique

HANG = 300.0  # seconds: a hang guard for training plus a server start
MODEL = "fraud"
SOURCE_COLUMNS = ("amount", "age", "country")


class Cluster:
    def __init__(self, environment: LocalEnvironment, kubectl: KubectlCLI, store: ObjectStore) -> None:
        self.environment, self.kubectl, self.store = environment, kubectl, store

    def status(self, kind: str, name: str) -> dict[str, Any]:
        """The object's status; {} while the object does not exist (yet)."""
        found = self.kubectl("get", kind, name, "-n", NAMESPACE, "-o", "json", "--ignore-not-found")
        return dict(json.loads(found.stdout).get("status") or {}) if found.stdout.strip() else {}

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        return next((c for c in self.status("modelversion", name).get("conditions") or []
                     if c.get("type") == type_), {})

    def phase_in(self, name: str, *phases: str) -> dict[str, Any] | None:
        current = self.status("modelversion", name)
        return current if current.get("phase") in phases else None

    def apply(self, kind: str, name: str, spec: dict[str, Any]) -> None:
        self.kubectl.apply({"apiVersion": "kubeloop.dev/v1alpha1", "kind": kind,
                            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec})

    def train(self, feature_set: str, name: str, **changes: Any) -> dict[str, Any]:
        self.apply("TrainingRun", name, run_spec(feature_set, workers=1, **changes))
        done = wait_for(lambda: (s := self.status("trainingrun", name)).get("phase") in ("Succeeded", "Failed") and s,
                        what=f"TrainingRun {name}", timeout=HANG)
        assert done["phase"] == "Succeeded", json.dumps(done, indent=2)
        return done


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    state = tmp_path_factory.mktemp("kubeloop")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBELOOP_PROGRESS_POLL_SECONDS", "1")  # rollouts and progress are polled every second
        # No periodic resync within a test's time: every step must be driven by the watches and
        # pollers that drive it on a cluster, not rescued by the hourly (default 5 min) pass.
        patch.setenv("KUBELOOP_RESYNC_SECONDS", "3600")
        environment = LocalEnvironment(state_dir=state, progress=lambda _: None,
                                       with_prometheus=prometheus_binary() is not None)
        environment.start()
    try:
        kubectl = KubectlCLI(environment.kubeconfig, tmp_path_factory.mktemp("kubecache"))
        kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        assert environment.s3 is not None
        secret = environment.s3.secret_manifest(S3_SECRET, NAMESPACE)
        kubectl.apply(secret)
        store = ObjectStore(StoreConfig.from_env(environment.s3.store_env(BUCKET)))
        yield Cluster(environment, kubectl, store)
    finally:
        logs = state / "logs"
        for name in ("operator.log", "node.log"):
            if (logs / name).exists():
                print(f"--- {name} (tail)\n" + "\n".join((logs / name).read_text().splitlines()[-80:]))
        environment.stop()


@pytest.fixture(scope="module")
def feature_set(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    name = unique("payments")
    create_feature_set(cluster, name, tmp_path_factory.mktemp("fs"))  # type: ignore[arg-type]
    return name


@pytest.fixture(scope="module")
def champion(cluster: Cluster, feature_set: str) -> str:
    """The first version of the model, trained, registered, gated and serving all traffic."""
    run = unique("fraud-a")
    cluster.train(feature_set, run, register={"model": MODEL, "aliases": ["staging"],
                                              "gates": [{"metric": "auc", "min": 0.5}]})
    wait_for(lambda: cluster.phase_in(run, "Serving", "Failed", "GatesFailed", "RolledBack"),
             what="the first version to serve", timeout=HANG)
    return run


def post(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def raw_instances(rows: pa.Table) -> list[dict[str, Any]]:
    return [{column: row[column] for column in SOURCE_COLUMNS} for row in rows.to_pylist()]


def trainer_predictions(store: ObjectStore, artifact_uri: str, feature_set: str, rows: int) -> np.ndarray:
    """The trainer's own predictions for the first `rows` rows of the FeatureSet version it trained
    on: the materialized features (not the raw rows), the trainer's input matrix, the model."""
    prefix, version_id = version_of_uri(artifact_uri, store.bucket)
    version = store.read_manifest(prefix, version_id)
    model_json = json.loads(store.get_bytes(version.file("model.json").key))
    feature_json = json.loads(store.get_bytes(version.file("featureset.json").key))
    state = torch.load(__import__("io").BytesIO(store.get_bytes(version.file("model.pt").key)), weights_only=True)
    model = build_model(model_json["family"], inputs=model_json["inputWidth"], outputs=model_json["outputs"],
                        hyperparameters=Hyperparameters.model_validate(model_json["hyperparameters"]))
    model.load_state_dict(state)
    model.eval()
    fs_version = store.read_manifest(f"featuresets/{NAMESPACE}/{feature_set}", feature_json["version"])
    features = pq.read_table(__import__("io").BytesIO(store.get_bytes(fs_version.file("features.parquet").key)))
    matrix, _ = input_matrix(features.slice(0, rows), feature_json["features"])
    objective = objective_for(model_json["task"], len(model_json["classes"] or []) or None)
    with torch.inference_mode():
        return objective.scores(model(torch.from_numpy(matrix))).numpy().astype(np.float64)


def test_registered_version_serves_raw_features_without_skew_and_logs_them(cluster: Cluster, champion: str,
                                                                           feature_set: str):
    status = cluster.status("modelversion", champion)
    assert status["phase"] == "Serving", json.dumps(status, indent=2)
    assert status["champion"] is True and status["aliases"] == ["champion", "staging"]
    assert status["gates"][0]["passed"] is True and status["gates"][0]["metric"] == "auc"
    assert status["lineage"]["trainingRun"] == champion and status["lineage"]["featureSet"] == feature_set
    assert status["lineage"]["featureSetVersion"] and status["lineage"]["seed"] == 42
    assert cluster.condition(champion, "ArtifactVerified")["status"] == "True"
    isvc = status["inferenceService"]
    assert isvc["ready"] is True and isvc["trafficPercent"] == 100 and isvc["name"] == MODEL
    url = isvc["url"].rstrip("/")

    rows = raw_rows().slice(0, 40)
    expected = trainer_predictions(cluster.store, status["artifact"]["uri"], feature_set, 40)
    code, v1 = post(f"{url}/v1/models/{MODEL}:predict", {"instances": raw_instances(rows)})
    assert code == 200, v1
    np.testing.assert_allclose(np.array(v1["predictions"], dtype=np.float64), expected, rtol=1e-6, atol=1e-7)

    inputs = [{"name": "amount", "shape": [40], "datatype": "FP64", "data": rows.column("amount").to_pylist()},
              {"name": "age", "shape": [40], "datatype": "FP64", "data": rows.column("age").to_pylist()},
              {"name": "country", "shape": [40], "datatype": "BYTES", "data": rows.column("country").to_pylist()}]
    code, v2 = post(f"{url}/v2/models/{MODEL}/infer", {"inputs": inputs})
    assert code == 200, v2
    np.testing.assert_allclose(np.array(v2["outputs"][0]["data"], dtype=np.float64), expected, rtol=1e-6, atol=1e-7)

    code, bad = post(f"{url}/v1/models/{MODEL}:predict", {"instances": [{"amount": 10.0, "age": 30.0}]})
    assert code == 400 and "country" in json.dumps(bad), bad

    prefix = prediction_log_prefix(NAMESPACE, MODEL, champion)
    logged = wait_for(lambda: (t := read_prediction_log(cluster.store, prefix, since=_epoch(), until=_future()))
                      .num_rows >= 80 and t, what="the prediction log", timeout=60)
    assert set(SOURCE_COLUMNS) <= set(logged.column_names) and "prediction" in logged.column_names
    assert sorted(logged.column("country").to_pylist()[:40]) == sorted(rows.column("country").to_pylist())

    table = cluster.kubectl("get", "mv", champion, "-n", NAMESPACE).stdout
    assert "Serving" in table and MODEL in table and "100" in table


def _epoch() -> Any:
    from datetime import UTC, datetime
    return datetime(2000, 1, 1, tzinfo=UTC)


def _future() -> Any:
    from datetime import UTC, datetime, timedelta
    return datetime.now(UTC) + timedelta(days=1)


def test_a_version_applied_before_its_run_succeeds_registers_when_the_run_does(cluster: Cluster, feature_set: str):
    """GitOps order: the ModelVersion is synced before its run has trained. It waits with a
    condition saying so, and the run's success itself wakes it (no resync in this module)."""
    run = unique("fraud-early")
    cluster.apply("ModelVersion", run, {"model": f"{MODEL}-early", "trainingRunRef": {"name": run},
                                        "serving": {"enabled": False}})
    waiting = wait_for(lambda: cluster.phase_in(run, "Pending") and cluster.condition(run, "Ready"),
                       what="the version waiting for its run", timeout=HANG)
    assert waiting["reason"] == "TrainingRunNotFound" and run in waiting["message"]
    cluster.train(feature_set, run)
    registered = wait_for(lambda: cluster.phase_in(run, "Registered", "GatesFailed", "Failed"),
                          what="the version registered after its run succeeded", timeout=HANG)
    assert registered["phase"] == "Registered", json.dumps(registered, indent=2)
    assert registered["lineage"]["trainingRun"] == run


def test_a_version_failing_a_gate_is_not_deployed_and_the_champion_keeps_serving(
        cluster: Cluster, champion: str, feature_set: str):
    run = unique("fraud-b")
    cluster.train(feature_set, run, register={"model": MODEL, "gates": [{"metric": "auc", "min": 0.9999},
                                                                       {"metric": "no_such_metric", "min": 0}]})
    gated = wait_for(lambda: cluster.phase_in(run, "GatesFailed", "Serving", "Canary", "Deploying"),
                     what="the gates' verdict", timeout=120)
    assert gated["phase"] == "GatesFailed", json.dumps(gated, indent=2)
    ready = cluster.condition(run, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "GatesFailed"
    assert "< 0.9999" in ready["message"] and "no metric 'no_such_metric'" in ready["message"]
    assert [g["passed"] for g in gated["gates"]] == [False, False]
    isvc = cluster.kubectl.json("get", "inferenceservice", MODEL, "-n", NAMESPACE)
    assert isvc["metadata"]["annotations"]["kubeloop.dev/model-version"] == champion
    assert cluster.status("modelversion", champion)["phase"] == "Serving"
    assert read_registry(cluster.store, NAMESPACE, MODEL).champion == champion


def test_a_tampered_artifact_is_refused_and_never_served(cluster: Cluster, champion: str, feature_set: str):
    run = unique("fraud-c")
    done = cluster.train(feature_set, run)
    prefix, version_id = version_of_uri(done["artifact"]["uri"], cluster.store.bucket)
    version = cluster.store.read_manifest(prefix, version_id)
    blob = version.file("model.pt")
    cluster.store.put_bytes(blob.key, cluster.store.get_bytes(blob.key)[:-16])  # truncated
    cluster.apply("ModelVersion", run, {"model": MODEL, "trainingRunRef": {"name": run}})
    refused = wait_for(lambda: cluster.phase_in(run, "Failed", "Serving", "Canary", "Deploying"),
                       what="the artifact's verification", timeout=120)
    assert refused["phase"] == "Failed", json.dumps(refused, indent=2)
    verified = cluster.condition(run, "ArtifactVerified")
    assert verified["status"] == "False" and verified["reason"] == "ArtifactDigestMismatch"
    assert "model.pt" in verified["message"] and "never be served" in verified["message"]
    isvc = cluster.kubectl.json("get", "inferenceservice", MODEL, "-n", NAMESPACE)
    assert isvc["metadata"]["annotations"]["kubeloop.dev/model-version"] == champion


def test_a_staged_rollout_promotes_the_new_version_and_retires_the_champion(
        cluster: Cluster, champion: str, feature_set: str, tmp_path: Path):
    run = unique("fraud-d")
    cluster.train(feature_set, run, seed=7)
    cluster.apply("ModelVersion", run, {"model": MODEL, "trainingRunRef": {"name": run},
                                        "gates": [{"metric": "auc", "minDeltaVsChampion": -0.5}],
                                        "serving": {"rollout": {"steps": [50, 100], "interval": "2s"}}})
    canary = wait_for(lambda: cluster.phase_in(run, "Canary"), what="the canary step", timeout=HANG)
    assert canary["rollout"]["previousChampion"] == champion
    url = canary["inferenceService"]["url"].rstrip("/")
    instances = raw_instances(raw_rows().slice(0, 5))
    try:
        served = wait_for(lambda: _serve_until_promoted(cluster, url, instances, run),
                          what="the rollout to complete", timeout=HANG)
    except AssertionError:
        print(json.dumps({"candidate": cluster.status("modelversion", run),
                          "champion": cluster.status("modelversion", champion),
                          "isvc": cluster.kubectl.json("get", "inferenceservice", MODEL, "-n", NAMESPACE)}, indent=1))
        raise
    assert served["champion"] is True and served["inferenceService"]["trafficPercent"] == 100
    rolled_out = cluster.condition(run, "RolledOut")
    assert rolled_out["status"] == "True" and rolled_out["reason"] == "Promoted"
    assert served["gates"][0]["championValue"] is not None
    retired = wait_for(lambda: cluster.phase_in(champion, "Retired"), what="the old champion to retire", timeout=60)
    assert retired["champion"] is False and retired["inferenceService"]["trafficPercent"] == 0
    registry = read_registry(cluster.store, NAMESPACE, MODEL)
    assert registry.champion == run
    assert [h["to"] for h in registry.history if h["alias"] == "champion"][-2:] == [champion, run]
    versions = cluster.kubectl("get", "mv", "-n", NAMESPACE).stdout
    assert "Retired" in versions and "Serving" in versions


def _serve_until_promoted(cluster: Cluster, url: str, instances: list[dict[str, Any]], run: str) -> Any:
    code, body = post(f"{url}/v1/models/{MODEL}:predict", {"instances": instances})
    assert code == 200, body  # traffic keeps being answered throughout the rollout
    return cluster.phase_in(run, "Serving")
