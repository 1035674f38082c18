"""TrainingRun end to end on the embedded cluster (`kubeloop up` in-process: API server, S3, the
local node running the trainer's Jobs as processes, the operator), driven with the real kubectl.

The FeatureSet's version is published into the store with the store API exactly as the
materializer lays it out (`publish_feature_set`, shared with the trainer's tests), so these
tests need the trainer but not a working materialization; the FeatureSet object points at the
same raw rows, uploaded to S3, so its controller materializes them too.

Timeouts in `wait_for` only stop a hang; they are not performance assertions.
"""

from __future__ import annotations

import io
import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from kubeloop.local.environment import BUCKET, S3_SECRET, LocalEnvironment
from kubeloop.store import NotFound, ObjectStore, StoreConfig
from tests.conftest import KubectlCLI
from tests.integration.conftest import wait_for
from tests.trainingrun.conftest import FEATURES, LABEL_COLUMNS, NAMESPACE, publish_feature_set, raw_rows

TRAINING = 300.0  # seconds: a hang guard for a training run (torch start-up, data, epochs)



class Cluster:
    """The running environment, kubectl against it, and the object store it uses."""

    def __init__(self, environment: LocalEnvironment, kubectl: KubectlCLI, store: ObjectStore) -> None:
        self.environment, self.kubectl, self.store = environment, kubectl, store

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self.kubectl.json("get", kind, name, "-n", NAMESPACE)

    def run_status(self, name: str) -> dict[str, Any]:
        return dict(self.get("trainingrun", name).get("status") or {})

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        found = [c for c in self.run_status(name).get("conditions") or [] if c.get("type") == type_]
        return found[0] if found else {}

    def jobs(self, run: str) -> list[dict[str, Any]]:
        listed = self.kubectl.json("get", "jobs", "-n", NAMESPACE, "-l", f"kubeloop.dev/trainingrun={run}")
        return sorted(listed["items"], key=lambda job: job["metadata"]["name"])

    def apply_run(self, name: str, **spec: Any) -> None:
        self.kubectl.apply({"apiVersion": "kubeloop.dev/v1alpha1", "kind": "TrainingRun",
                            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec})

    def phase_is(self, name: str, *phases: str) -> dict[str, Any] | None:
        current = self.run_status(name)
        return current if current.get("phase") in phases else None

    def event_reasons(self, name: str) -> set[str]:
        """Reasons of the Events about the TrainingRun `name` (what `kubectl describe` lists)."""
        return {str(event.get("reason")) for event in self.kubectl.json("get", "events", "-n", NAMESPACE)["items"]
                if (event.get("involvedObject") or {}).get("name") == name
                and (event.get("involvedObject") or {}).get("kind") == "TrainingRun"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    state = tmp_path_factory.mktemp("kubeloop")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBELOOP_PROGRESS_POLL_SECONDS", "1")  # the operator inherits it
        environment = LocalEnvironment(state_dir=state, progress=lambda _: None, with_prometheus=False)
        environment.start()
    try:
        kubectl = KubectlCLI(environment.kubeconfig, tmp_path_factory.mktemp("kubecache"))
        kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        assert environment.s3 is not None
        kubectl.apply(environment.s3.secret_manifest(S3_SECRET, NAMESPACE))
        store = ObjectStore(StoreConfig.from_env(environment.s3.store_env(BUCKET)))
        yield Cluster(environment, kubectl, store)
    finally:
        logs = state / "logs"
        for name in ("operator.log", "node.log"):
            if (logs / name).exists():
                print(f"--- {name} (tail)\n" + "\n".join((logs / name).read_text().splitlines()[-60:]))
        environment.stop()


def create_feature_set(cluster: Cluster, name: str, tmp_path: Path) -> str:
    """A FeatureSet over raw rows uploaded to S3, with a version published; its version id."""
    raw = raw_rows()
    buffer = io.BytesIO()
    pq.write_table(raw, buffer)
    cluster.store.put_bytes(f"raw/{name}/part-0.parquet", buffer.getvalue())
    published = publish_feature_set(cluster.store, tmp_path / name, name, raw)
    cluster.kubectl.apply({
        "apiVersion": "kubeloop.dev/v1alpha1", "kind": "FeatureSet",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"source": {"uri": f"s3://{BUCKET}/raw/{name}/*.parquet", "timestampColumn": "ts"},
                 "entities": ["customer_id"], "labelColumns": LABEL_COLUMNS,
                 "features": [feature.to_dict() for feature in FEATURES]},
    })
    return published.version.id


def run_spec(feature_set: str, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "featureSetRef": {"name": feature_set},
        "target": "is_fraud",
        "model": {"family": "mlp", "task": "classification"},
        "hyperparameters": {"epochs": 4, "batchSize": 64, "learningRate": 0.01, "hiddenLayers": [16, 8]},
        "seed": 42,
        "deterministic": True,
        "workers": 2,
        "resources": {"cpu": "1", "memory": "1Gi"},
    }
    spec.update(changes)
    return spec


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_a_missing_featureset_is_a_condition_and_no_job(cluster: Cluster):
    name = unique("no-fs")
    cluster.apply_run(name, **run_spec("does-not-exist"))
    condition = wait_for(lambda: cluster.condition(name, "FeatureSetReady") or None, what="FeatureSetReady",
                         timeout=60)
    assert (condition["status"], condition["reason"]) == ("False", "FeatureSetNotFound")
    assert "does-not-exist" in condition["message"]
    assert cluster.run_status(name)["phase"] == "Pending"
    assert cluster.jobs(name) == []


def test_a_bad_hyperparameter_is_refused_before_any_pod(cluster: Cluster):
    name = unique("bad-hp")
    cluster.apply_run(name, **run_spec("does-not-matter", hyperparameters={"learningRate": -1}))
    ready = wait_for(lambda: cluster.condition(name, "Ready").get("reason") == "InvalidSpec"
                     and cluster.condition(name, "Ready"), what="InvalidSpec", timeout=60)
    assert ready["status"] == "False"
    assert "spec.hyperparameters.learningRate" in ready["message"]
    assert cluster.run_status(name)["phase"] == "Failed"
    assert cluster.jobs(name) == []


def test_two_workers_train_register_and_refuse_a_spec_change(cluster: Cluster, tmp_path: Path):
    feature_set = unique("customers")
    name = unique("fraud")
    # The run is created first: it waits for its FeatureSet, and starts when that has a version.
    cluster.apply_run(name, **run_spec(feature_set, register={"model": "fraud-detector", "aliases": ["staging"]}))
    wait_for(lambda: cluster.condition(name, "FeatureSetReady").get("reason") == "FeatureSetNotFound",
             what="the run waiting for its FeatureSet")
    create_feature_set(cluster, feature_set, tmp_path)

    done = wait_for(lambda: cluster.phase_is(name, "Succeeded", "Failed"), what="the run to finish",
                    timeout=TRAINING)
    assert done["phase"] == "Succeeded", json.dumps(done, indent=2)
    assert done["attempts"] == 1
    assert set(done["metrics"]) >= {"loss", "accuracy", "auc", "f1"}
    assert done["keyMetric"]["name"] == "auc"
    assert done["artifact"]["digest"].startswith("sha256:")
    reproducibility = done["reproducibility"]
    assert reproducibility["worldSize"] == 2
    assert reproducibility["backend"] == "gloo"
    assert reproducibility["seed"] == 42 and reproducibility["deterministic"] is True
    assert reproducibility["dataDigest"].startswith("sha256:")
    assert reproducibility["torchVersion"]
    assert done["featureSetVersion"]
    assert done["progress"]["percent"] == 100
    assert done["startTime"] and done["completionTime"]

    table = cluster.kubectl("get", "tr", name, "-n", NAMESPACE).stdout
    header, row = table.splitlines()[:2]
    assert "PHASE" in header and "METRIC" in header and "VALUE" in header
    assert "Succeeded" in row and "auc" in row and f"{done['keyMetric']['value']:.4g}"[:4] in row

    # Registered: a ModelVersion named after the run, with its lineage, not owned by the run.
    assert cluster.condition(name, "Registered")["status"] == "True"
    model_version = cluster.get("modelversion", name)
    assert model_version["spec"]["trainingRunRef"] == {"name": name}
    assert model_version["spec"]["model"] == "fraud-detector"
    assert not model_version["metadata"].get("ownerReferences")
    assert cluster.condition(name, "Ready")["status"] == "True"
    wait_for(lambda: {"Succeeded", "Registered"} <= cluster.event_reasons(name), what="the run's Events")

    # The spec is immutable once the Job exists: the change is refused, nothing is re-run.
    jobs_before = cluster.jobs(name)
    cluster.kubectl("patch", "tr", name, "-n", NAMESPACE, "--type=merge", "-p", '{"spec": {"seed": 7}}')
    refused = wait_for(lambda: cluster.condition(name, "Accepted").get("reason") == "SpecImmutable"
                       and cluster.condition(name, "Accepted"), what="SpecImmutable")
    assert refused["status"] == "False"
    assert "spec.seed" in refused["message"] and "create a new TrainingRun" in refused["message"]
    assert cluster.run_status(name)["phase"] == "Succeeded"
    assert [j["metadata"]["uid"] for j in cluster.jobs(name)] == [j["metadata"]["uid"] for j in jobs_before]


def test_a_missing_target_column_fails_the_run_without_restarts(cluster: Cluster, tmp_path: Path):
    feature_set = unique("customers")
    create_feature_set(cluster, feature_set, tmp_path)
    name = unique("no-target")
    cluster.apply_run(name, **run_spec(feature_set, target="no_such_column", workers=1))
    done = wait_for(lambda: cluster.phase_is(name, "Succeeded", "Failed"), what="the run to finish",
                    timeout=TRAINING)
    assert done["phase"] == "Failed"
    ready = cluster.condition(name, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TrainingFailed")
    assert "no_such_column" in ready["message"]
    assert done["attempts"] == 1
    assert len(cluster.jobs(name)) == 1


def trainer_pids(uid: str) -> list[int]:
    """The local node's trainer processes of the TrainingRun with this uid."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(item.startswith(b"KUBELOOP_TRAININGRUN=") and uid.encode() in item for item in environ):
            found.append(int(entry.name))
    return found


def test_a_run_killed_mid_training_resumes_in_attempt_2(cluster: Cluster, tmp_path: Path):
    feature_set = unique("customers")
    create_feature_set(cluster, feature_set, tmp_path)
    name = unique("killed")
    epochs = 16
    cluster.apply_run(name, **run_spec(feature_set, maxRestarts=2, hyperparameters={
        "epochs": epochs, "batchSize": 64, "learningRate": 0.01, "hiddenLayers": [16, 8]}))
    uid = cluster.get("trainingrun", name)["metadata"]["uid"]

    def progress() -> dict[str, Any] | None:
        try:
            document = cluster.store.get_json(f"trainingruns/{NAMESPACE}/{name}/progress.json")
        except NotFound:
            return None
        return document if document.get("attempt") == 1 and document.get("epoch", 0) >= 2 else None

    # While it runs, status.progress follows progress.json (the operator polls running runs).
    wait_for(lambda: (cluster.run_status(name).get("progress") or {}).get("epoch", 0) >= 1,
             what="status.progress of a running run", timeout=TRAINING)
    assert cluster.run_status(name)["phase"] == "Running"
    wait_for(progress, what="two epochs of attempt 1", timeout=TRAINING, interval=0.05)
    pids = wait_for(lambda: trainer_pids(uid), what="the trainer processes")
    for pid in pids:  # the whole gang dies at once, as on a lost node
        os.kill(pid, signal.SIGKILL)

    running = wait_for(lambda: cluster.run_status(name).get("attempts") == 2 and cluster.run_status(name),
                       what="attempt 2", timeout=TRAINING)
    assert running["phase"] in ("Pending", "Running", "Succeeded")
    done = wait_for(lambda: cluster.phase_is(name, "Succeeded", "Failed"), what="the run to finish",
                    timeout=TRAINING)
    assert done["phase"] == "Succeeded", json.dumps(done, indent=2)
    assert done["attempts"] == 2
    assert [j["metadata"]["name"] for j in cluster.jobs(name)] == [f"{name}-a1", f"{name}-a2"]
    record = cluster.store.get_json(f"trainingruns/{NAMESPACE}/{name}/record.json")
    assert record["run"]["attempt"] == 2
    assert len(record["epochs"]) == epochs
    logs = cluster.kubectl("logs", f"job/{name}-a2", "-n", NAMESPACE).stdout
    assert "resumes after epoch" in logs
    assert {"Restarting", "Succeeded"} <= cluster.event_reasons(name)


def test_a_suspended_run_waits_and_trains_once_resumed(cluster: Cluster, tmp_path: Path):
    feature_set = unique("customers")
    create_feature_set(cluster, feature_set, tmp_path)
    name = unique("suspended")
    cluster.apply_run(name, **run_spec(feature_set, workers=1, suspend=True))
    wait_for(lambda: cluster.phase_is(name, "Suspended"), what="the Suspended phase")
    (job,) = cluster.jobs(name)
    assert job["spec"]["suspend"] is True
    assert not (job.get("status") or {}).get("active")
    cluster.kubectl("patch", "tr", name, "-n", NAMESPACE, "--type=merge", "-p", '{"spec": {"suspend": false}}')
    done = wait_for(lambda: cluster.phase_is(name, "Succeeded", "Failed"), what="the run to finish",
                    timeout=TRAINING)
    assert done["phase"] == "Succeeded"
    assert cluster.condition(name, "Accepted")["status"] == "True"  # suspend may change
    assert [j["metadata"]["uid"] for j in cluster.jobs(name)] == [job["metadata"]["uid"]]
