"""The trainer pod entrypoint against a real S3 server: training to success, the run record and
the artifact, determinism (repeat, 2-process DDP, kill and resume), and permanent failures.

Single-process runs call `train.main(environ)` in this process (the same code the entrypoint
runs, minus a torch import per run); DDP runs and the exit-code check start real processes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from kubeloop.store import ObjectStore
from kubeloop.trainingrun import train
from kubeloop.trainingrun.api import Hyperparameters
from kubeloop.trainingrun.models import build_model
from tests.trainingrun.conftest import (
    BUCKET,
    NAMESPACE,
    PublishedFeatureSet,
    publish_feature_set,
    run_ranks,
    run_spec,
    trainer_env,
    unique_name,
)


@pytest.fixture(autouse=True)
def _restore_torch_determinism():
    yield
    torch.use_deterministic_algorithms(False)


def train_in_process(store_env: dict[str, str], scratch: Path, name: str, spec: dict[str, Any],
                     feature_set: PublishedFeatureSet, **extra: Any) -> int:
    return train.main(trainer_env(store_env, scratch, name, spec, feature_set.reference, **extra))


def record_of(store: ObjectStore, name: str) -> dict[str, Any]:
    return store.get_json(f"trainingruns/{NAMESPACE}/{name}/record.json")


@pytest.fixture(scope="module")
def baseline(store_env, store, feature_set, tmp_path_factory) -> dict[str, Any]:
    """One uninterrupted deterministic single-process run of `run_spec()`: its record."""
    name = unique_name("baseline")
    code = train_in_process(store_env, tmp_path_factory.mktemp("scratch"), name, run_spec(), feature_set)
    assert code == train.EXIT_SUCCESS
    torch.use_deterministic_algorithms(False)
    return record_of(store, name)


def test_single_process_run_succeeds_with_record_progress_checkpoint_and_artifact(baseline, store, feature_set):
    record = baseline
    name = record["run"]["name"]
    prefix = f"trainingruns/{NAMESPACE}/{name}"
    assert record["outcome"] == "Succeeded"
    assert [e["epoch"] for e in record["epochs"]] == [1, 2, 3, 4]
    assert set(record["metrics"]) >= {"loss", "accuracy", "auc", "f1", "trainLoss"}
    assert record["keyMetric"]["name"] == "auc"
    assert record["metrics"]["auc"] > 0.8  # the label is learnable from the features
    assert record["featureSet"] == {"name": feature_set.name, "version": feature_set.version.id,
                                    "digest": feature_set.version.digest, "rows": 2400}
    assert record["data"]["trainRows"] + record["data"]["validationRows"] == 2400
    assert record["data"]["splitBy"] == "entity:customer_id"
    assert [i["width"] for i in record["data"]["inputs"]] == [1, 1, 5]  # 4 countries + 1 OOV bucket
    env = record["environment"]
    assert env["worldSize"] == 1 and env["backend"] == "gloo" and env["deviceType"] == "cpu"
    assert env["torch"] == torch.__version__ and env["numpy"] == np.__version__
    assert env["image"] == "kubeloop/trainer:test" and env["gitSha"] == "0123456789abcdef"
    assert env["hostnameCount"] == 1
    repro = record["reproducibility"]
    assert repro["seed"] == 42 and repro["deterministic"] is True
    assert repro["featureSetDigest"] == feature_set.version.digest and repro["dataDigest"].startswith("sha256:")
    assert any("use_deterministic_algorithms" in line for line in record["determinism"]["implies"])

    progress = store.get_json(f"{prefix}/progress.json")
    assert progress["percent"] == 100 and progress["epoch"] == 4 and progress["epochs"] == 4
    assert progress["attempt"] == 1 and "loss" in progress["metrics"]
    checkpoint = store.stat(f"{prefix}/checkpoints/latest.pt")
    assert checkpoint.metadata["kubeloop-epoch"] == "4"

    artifact = store.list_versions(f"{prefix}/artifact")
    assert len(artifact) == 1
    version = artifact[0]
    assert record["artifact"]["digest"] == version.digest
    assert record["artifact"]["uri"] == f"s3://{BUCKET}/{prefix}/artifact/versions/{version.id}.json"
    assert set(version.files) == {"model.pt", "model.json", "featureset.json"}
    model_json = json.loads(store.get_bytes(version.file("model.json").key))
    assert model_json["classes"] == [False, True] and model_json["family"] == "mlp"
    assert model_json["hyperparameters"]["hiddenLayers"] == [16, 8]
    featureset_json = json.loads(store.get_bytes(version.file("featureset.json").key))
    assert featureset_json["version"] == feature_set.version.id
    assert [f["name"] for f in featureset_json["fitted"]["features"]] == ["amount_std", "age_std", "country_onehot"]

    # The weights load into the model model.json describes.
    state = torch.load(io.BytesIO(store.get_bytes(version.file("model.pt").key)), weights_only=True)
    model = build_model("mlp", inputs=model_json["inputWidth"], outputs=model_json["outputs"],
                        hyperparameters=Hyperparameters.model_validate(model_json["hyperparameters"]))
    model.load_state_dict(state)
    assert model(torch.zeros(3, model_json["inputWidth"])).shape == (3, 1)


def test_deterministic_repeat_gives_the_same_artifact_digest(baseline, store_env, store, feature_set, tmp_path):
    name = unique_name("repeat")
    assert train_in_process(store_env, tmp_path, name, run_spec(), feature_set) == train.EXIT_SUCCESS
    repeat = record_of(store, name)
    assert repeat["artifact"]["digest"] == baseline["artifact"]["digest"]
    assert repeat["artifact"]["modelSha256"] == baseline["artifact"]["modelSha256"]
    assert repeat["metrics"] == baseline["metrics"]


def test_killed_run_resumes_in_attempt_2_with_the_digest_of_an_uninterrupted_run(
        baseline, store_env, store, feature_set, tmp_path):
    name = unique_name("resumed")
    prefix = f"trainingruns/{NAMESPACE}/{name}"
    first = train_in_process(store_env, tmp_path, name, run_spec(), feature_set,
                             KUBELOOP_TRAIN_FAIL_AFTER_EPOCH="2")
    assert first == train.EXIT_TRANSIENT
    assert store.stat(f"{prefix}/checkpoints/latest.pt").metadata["kubeloop-epoch"] == "2"
    assert not store.exists(f"{prefix}/record.json")
    assert store.get_json(f"{prefix}/progress.json")["percent"] == 50

    # The operator starts attempt 2 with the same environment (the hook fires in attempt 1 only).
    second = train_in_process(store_env, tmp_path, name, run_spec(), feature_set, attempt=2,
                              KUBELOOP_TRAIN_FAIL_AFTER_EPOCH="2")
    assert second == train.EXIT_SUCCESS
    record = record_of(store, name)
    assert [(e["epoch"], e["attempt"]) for e in record["epochs"]] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert record["run"]["attempt"] == 2
    assert record["artifact"]["digest"] == baseline["artifact"]["digest"]


def test_two_process_gloo_ddp_runs_are_reproducible(baseline, store_env, store, feature_set, tmp_path):
    digests = []
    for repeat in range(2):
        name = unique_name(f"ddp{repeat}")
        finished = run_ranks(trainer_env(store_env, tmp_path / str(repeat), name, run_spec(workers=2),
                                         feature_set.reference), world_size=2)
        assert finished.codes == [0, 0], "\n".join(finished.outputs)
        assert "epoch 4/4 100%" in finished.outputs[0] and "samples/s" in finished.outputs[0]
        record = record_of(store, name)
        assert record["environment"]["worldSize"] == 2 and record["environment"]["backend"] == "gloo"
        assert record["environment"]["hostnameCount"] == 1
        assert record["data"]["validationRows"] == baseline["data"]["validationRows"]
        assert record["metrics"]["auc"] > 0.8
        digests.append(record["artifact"]["digest"])
    assert digests[0] == digests[1]
    # Two ranks average the gradients of two batches per step: other weights than one process.
    assert digests[0] != baseline["artifact"]["digest"]


def test_killed_ddp_gang_resumes_in_attempt_2_with_the_digest_of_an_uninterrupted_gang(
        store_env, store, feature_set, tmp_path):
    spec = run_spec(workers=2, hyperparameters={"epochs": 3, "batchSize": 64, "learningRate": 0.01,
                                                "hiddenLayers": [16, 8], "dropout": 0.1})
    uninterrupted = unique_name("gang")
    finished = run_ranks(trainer_env(store_env, tmp_path / "a", uninterrupted, spec, feature_set.reference), 2)
    assert finished.codes == [0, 0], "\n".join(finished.outputs)
    name = unique_name("gang-killed")
    killed = run_ranks(trainer_env(store_env, tmp_path / "b", name, spec, feature_set.reference,
                                   KUBELOOP_TRAIN_FAIL_AFTER_EPOCH="1"), 2)
    assert killed.codes == [train.EXIT_TRANSIENT, train.EXIT_TRANSIENT]
    resumed = run_ranks(trainer_env(store_env, tmp_path / "b", name, spec, feature_set.reference, attempt=2,
                                    KUBELOOP_TRAIN_FAIL_AFTER_EPOCH="1"), 2)
    assert resumed.codes == [0, 0], "\n".join(resumed.outputs)
    assert "resumes after epoch 1" in resumed.outputs[0]
    record = record_of(store, name)
    assert [(e["epoch"], e["attempt"]) for e in record["epochs"]] == [(1, 1), (2, 2), (3, 2)]
    assert record["artifact"]["digest"] == record_of(store, uninterrupted)["artifact"]["digest"]


def test_bad_hyperparameter_exits_3_with_failure_json(store_env, store, feature_set, tmp_path):
    name = unique_name("badhp")
    spec = run_spec(hyperparameters={"learningRate": -1, "epochs": 2})
    finished = run_ranks(trainer_env(store_env, tmp_path, name, spec, feature_set.reference), world_size=1)
    assert finished.codes == [train.EXIT_PERMANENT]
    assert "spec.hyperparameters.learningRate" in finished.outputs[0]
    failure = store.get_json(f"trainingruns/{NAMESPACE}/{name}/failure.json")
    assert failure["reason"] == "InvalidSpec"
    assert "spec.hyperparameters.learningRate" in failure["message"]


def test_missing_target_fails_permanently_listing_the_label_columns(store_env, store, feature_set, tmp_path):
    name = unique_name("notarget")
    code = train_in_process(store_env, tmp_path, name, run_spec(target="churned"), feature_set)
    assert code == train.EXIT_PERMANENT
    failure = store.get_json(f"trainingruns/{NAMESPACE}/{name}/failure.json")
    assert failure["reason"] == "TrainingFailed"
    assert "'churned' does not exist" in failure["message"]
    assert "available: is_fraud, tier, spend" in failure["message"]
    assert not store.exists(f"trainingruns/{NAMESPACE}/{name}/record.json")


def test_missing_feature_set_version_fails_permanently(store_env, store, feature_set, tmp_path):
    name = unique_name("nofs")
    reference = dict(feature_set.reference, version="0123456789ab", digest=None)
    code = train.main(trainer_env(store_env, tmp_path, name, run_spec(), reference))
    assert code == train.EXIT_PERMANENT
    failure = store.get_json(f"trainingruns/{NAMESPACE}/{name}/failure.json")
    assert failure["reason"] == "FeatureSetNotReady"
    assert "0123456789ab does not exist" in failure["message"]


def test_corrupt_feature_set_file_fails_permanently(store_env, store, feature_set, tmp_path):
    corrupt = feature_set.raw.slice(0, 600)
    from tests.trainingrun.conftest import publish_feature_set

    published = publish_feature_set(store, tmp_path / "fs", "corrupted", corrupt)
    entry = published.version.file("features.parquet")
    store.put_bytes(entry.key, b"not parquet", metadata={"sha256": entry.digest.removeprefix("sha256:")})
    name = unique_name("corrupt")
    code = train_in_process(store_env, tmp_path, name, run_spec(featureSetRef={"name": "corrupted"}), published)
    assert code == train.EXIT_PERMANENT
    failure = store.get_json(f"trainingruns/{NAMESPACE}/{name}/failure.json")
    assert failure["reason"] == "TrainingFailed" and "corrupt" in failure["message"]


@pytest.mark.parametrize(("target", "family", "expected"), [
    ("spend", "linear", {"loss", "rmse", "mae"}),
    ("tier", "mlp", {"loss", "accuracy", "auc", "f1"}),
])
def test_regression_and_multiclass_runs_report_their_metrics(store_env, store, feature_set, tmp_path,
                                                             target, family, expected):
    task = "regression" if target == "spend" else "classification"
    hyper = {"epochs": 2, "batchSize": 128, "learningRate": 0.05}
    if family == "linear":
        hyper["hiddenLayers"] = []
    name = unique_name(target)
    spec = run_spec(target=target, model={"family": family, "task": task}, hyperparameters=hyper,
                    deterministic=False)
    assert train_in_process(store_env, tmp_path, name, spec, feature_set) == train.EXIT_SUCCESS
    record = record_of(store, name)
    assert expected <= set(record["metrics"])
    assert record["keyMetric"]["name"] == ("rmse" if task == "regression" else "accuracy")
    if task == "classification":
        assert record["data"]["classes"] == [0, 1, 2]


def test_early_stopping_stops_and_keeps_the_best_epoch(store_env, store, feature_set, tmp_path):
    name = unique_name("early")
    spec = run_spec(hyperparameters={"epochs": 40, "batchSize": 256, "learningRate": 0.5, "optimizer": "sgd",
                                     "hiddenLayers": [16], "earlyStoppingPatience": 1})
    assert train_in_process(store_env, tmp_path, name, spec, feature_set) == train.EXIT_SUCCESS
    record = record_of(store, name)
    assert record["stoppedEarly"] is True and len(record["epochs"]) < 40
    best = record["epochs"][record["bestEpoch"] - 1]
    assert record["metrics"] == best["metrics"]
    assert best["metrics"]["loss"] == min(e["metrics"]["loss"] for e in record["epochs"])
    assert store.get_json(f"trainingruns/{NAMESPACE}/{name}/progress.json")["percent"] == 100


def test_labels_are_joined_point_in_time(store_env, store, feature_set, tmp_path):
    """Labels kept apart from the features: each label row gets the features as of its time."""
    raw = feature_set.raw
    labels = pa.table({
        "customer_id": raw.column("customer_id"),
        # one hour after each feature row, so the as-of join finds it
        "event_time": pa.array(raw.column("ts").to_numpy() + np.timedelta64(3600, "s"),
                               pa.timestamp("us", tz="UTC")),
        "will_churn": raw.column("is_fraud"),
    }).slice(0, 1200)
    path = tmp_path / "labels.parquet"
    pq.write_table(labels, path)
    key = f"labels/{unique_name('churn')}/part-0.parquet"
    store.put_file(key, path)
    name = unique_name("pit")
    spec = run_spec(target="will_churn", hyperparameters={"epochs": 2, "batchSize": 64},
                    labels={"uri": f"s3://{BUCKET}/{key.rsplit('/', 1)[0]}/*.parquet", "timestampColumn": "event_time"})
    assert train_in_process(store_env, tmp_path, name, spec, feature_set) == train.EXIT_SUCCESS
    record = record_of(store, name)
    assert record["data"]["rows"] == 1200
    assert record["params"]["labels"]["timestampColumn"] == "event_time"
    assert record["metrics"]["auc"] > 0.7


def test_the_featureset_ttl_limits_the_point_in_time_join(store, feature_set, tmp_path):
    """Labels an hour after their feature rows: a TTL of 2h finds what no TTL finds; with 30m a
    label finds only a row of its customer at most 30 minutes older (another of its rows, where
    there is one), and the rest count as missing (the model's inputs are 0)."""
    raw = feature_set.raw.slice(0, 600)
    labels = pa.table({
        "customer_id": raw.column("customer_id"),
        "event_time": pa.array(raw.column("ts").to_numpy() + np.timedelta64(3600, "s"), pa.timestamp("us", tz="UTC")),
        "will_churn": raw.column("is_fraud"),
    })
    path = tmp_path / "labels.parquet"
    pq.write_table(labels, path)
    key = f"labels/{unique_name('ttl')}/part-0.parquet"
    store.put_file(key, path)
    spec = run_spec(target="will_churn",
                    labels={"uri": f"s3://{BUCKET}/{key.rsplit('/', 1)[0]}/*.parquet", "timestampColumn": "event_time"})

    def inputs(ttl: str | None) -> np.ndarray:
        published = publish_feature_set(store, tmp_path / f"fs-{ttl}", unique_name("ttl"), raw, ttl=ttl)
        context = train.parse_run(json.dumps({"name": unique_name("ttl"), "namespace": NAMESPACE, "uid": "u",
                                              "spec": spec, "featureSet": published.reference}))
        return train.training_data(store, context, tmp_path / f"scratch-{ttl}").features

    unlimited = inputs(None)
    assert unlimited.any(axis=1).all()
    assert np.array_equal(inputs("2h"), unlimited)
    short = inputs("30m")
    found = short.any(axis=1)
    assert found.sum() < len(found) / 2  # most labels' newest row is the one an hour older
    assert np.array_equal(short[found], unlimited[found])  # a TTL drops rows, it never picks others


# -- pure parts ------------------------------------------------------------------------------------


def test_epoch_order_deals_every_row_once_per_epoch_across_ranks():
    for world in (1, 2, 3):
        shards = [train.epoch_order(10, seed=5, epoch=1, rank=r, world_size=world) for r in range(world)]
        assert len({len(s) for s in shards}) == 1  # equal steps on every rank, as DDP needs
        assert set(np.concatenate(shards)) == set(range(10))
    assert not np.array_equal(train.epoch_order(100, 5, 0, 0, 1), train.epoch_order(100, 5, 1, 0, 1))
    assert np.array_equal(train.epoch_order(100, 5, 1, 0, 1), train.epoch_order(100, 5, 1, 0, 1))


def test_validation_split_is_seeded_and_keeps_entities_together():
    table = pa.table({"customer_id": pa.array(np.arange(3000) % 100), "x": pa.array(np.arange(3000))})
    mask, split_by = train.validation_mask(table, ["customer_id"], seed=1, fraction=0.2)
    assert split_by == "entity:customer_id"
    ids = np.arange(3000) % 100
    assert not set(ids[mask]) & set(ids[~mask])
    assert 0.1 < mask.mean() < 0.3
    again, _ = train.validation_mask(table, ["customer_id"], seed=1, fraction=0.2)
    other, _ = train.validation_mask(table, ["customer_id"], seed=2, fraction=0.2)
    assert np.array_equal(mask, again) and not np.array_equal(mask, other)
    by_row, split_by = train.validation_mask(table, [], seed=1, fraction=0.2)
    assert split_by == "row" and 0.15 < by_row.mean() < 0.25


def test_roc_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    truth = rng.random(200) < 0.4
    scores = np.round(rng.random(200) + truth * 0.3, 1)  # rounded: many ties
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p in scores[truth] for n in scores[~truth]]
    assert train.roc_auc(truth, scores) == pytest.approx(np.mean(pairs))
    assert train.roc_auc(np.ones(3, bool), np.arange(3.0)) is None


def test_process_layout_reads_the_torchrun_environment():
    layout = train.process_layout({"WORLD_SIZE": "4", "NODE_RANK": "1", "NPROC_PER_NODE": "2", "LOCAL_RANK": "1",
                                   "MASTER_ADDR": "trainer-0.svc", "MASTER_PORT": "23456"})
    assert (layout.rank, layout.world_size, layout.master_port, layout.grouped) == (3, 4, 23456, True)
    with pytest.raises(train.PermanentFailure):
        train.process_layout({"WORLD_SIZE": "2", "RANK": "2"})


def test_trains_on_a_version_published_by_the_materializer(store_env, store, feature_set, tmp_path):
    """The real materializer's layout (manifest features as {name, from, dtype}, label columns,
    fitted.json), end to end: materialize a FeatureSet from a Parquet file, then train on it."""
    from kubeloop.featureset import materialize

    source = tmp_path / "source" / "customers.parquet"
    source.parent.mkdir()
    pq.write_table(feature_set.raw, source)
    fs_name = unique_name("materialized")
    fs_spec = {"source": {"uri": str(source), "timestampColumn": "ts"}, "entities": ["customer_id"],
               "labelColumns": ["is_fraud"],
               "features": [{"name": "amount_std", "from": "amount",
                             "transforms": [{"type": "fillNull", "strategy": "mean"}, {"type": "standardize"}]},
                            {"name": "age_std", "from": "age", "transforms": [{"type": "standardize"}]},
                            {"name": "country_index", "from": "country", "transforms": [{"type": "vocabulary"}]}]}
    environ = dict(store_env, KUBELOOP_FEATURESET=json.dumps({"namespace": NAMESPACE, "name": fs_name, "uid": "u",
                                                              "generation": 1, "spec": fs_spec}),
                   KUBELOOP_RUN_ID="materialize-1")
    out = io.StringIO()
    (tmp_path / "work").mkdir()
    assert materialize.run(environ, options=materialize.Options(work_dir=str(tmp_path / "work")), out=out,
                           err=out) == 0, out.getvalue()
    version = store.latest_version(f"featuresets/{NAMESPACE}/{fs_name}")
    assert version is not None
    name = unique_name("on-materialized")
    spec = run_spec(featureSetRef={"name": fs_name}, hyperparameters={"epochs": 2, "batchSize": 128})
    reference = {"name": fs_name, "version": version.id, "digest": version.digest}
    assert train.main(trainer_env(store_env, tmp_path, name, spec, reference)) == train.EXIT_SUCCESS
    record = record_of(store, name)
    assert [i["name"] for i in record["data"]["inputs"]] == ["amount_std", "age_std", "country_index"]
    assert record["featureSet"]["version"] == version.id and record["data"]["rows"] == 2400
