"""The model server (`python -m kubeloop.modelversion.serve`) against real artifacts made by the
real trainer, in the real object store, over HTTP on loopback: exact predictions (the trainer's
own code path and the materialized features give the same numbers), v1 and v2, HTTP 400 for
bad input, metrics, the prediction log, shutdown, refusal of unusable artifacts, a store outage.
"""

from __future__ import annotations

import json
import math
import re
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeloop.featureset.transforms import FittedFeatures, apply_batch, read_column
from kubeloop.local.s3 import LocalS3
from kubeloop.modelversion import serve
from kubeloop.modelversion.predictionlog import prediction_log_prefix, read_prediction_log
from kubeloop.store import ObjectStore, StoreConfig, Version
from kubeloop.store.layout import version_of_uri
from kubeloop.trainingrun.api import Hyperparameters
from kubeloop.trainingrun.models import (
    UnsupportedFeatureType,
    build_model,
    feature_block,
    input_matrix,
    input_rows,
    objective_for,
)
from tests.modelversion.conftest import (
    HANG_GUARD,
    SERVING_BUCKET,
    SERVING_NAMESPACE,
    RunningServer,
    ServedArtifact,
    launch_server,
    server_env,
    start_server,
)

SOURCES = ["amount", "age", "country"]
V1 = "/v1/models/fraud:predict"
V2 = "/v2/models/fraud/infer"


def wait_until(condition: Any, what: str) -> Any:
    """Polls `condition()` until it returns something truthy; the limit only guards against a hang."""
    deadline = time.monotonic() + HANG_GUARD
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)
    return value


def artifact_version(store: ObjectStore, artifact: ServedArtifact) -> Version:
    return store.read_manifest(*version_of_uri(artifact.uri, store.bucket))


def trainer_scores(store: ObjectStore, artifact: ServedArtifact, rows: pa.Table | None, tmp: Path, *,
                   features: pa.Table | None = None) -> np.ndarray:
    """What the trainer's code computes: the FeatureSet's transforms on raw `rows` (or already
    materialized `features`), `input_matrix`, the module rebuilt from model.pt, `Objective.scores`."""
    version = artifact_version(store, artifact)
    docs = {name: json.loads(store.download(version, name, tmp / name).read_bytes())
            for name in ("model.json", "featureset.json")}
    spec = docs["model.json"]
    inputs = [item["name"] for item in spec["inputs"]]
    if features is None:
        assert rows is not None
        features = apply_batch(FittedFeatures.from_dict(docs["featureset.json"]["fitted"]), rows)
    matrix, _ = input_matrix(features, inputs)
    objective = objective_for(spec["task"], len(spec["classes"]) if spec["classes"] else None)
    module = build_model(spec["family"], inputs=spec["inputWidth"], outputs=objective.outputs,
                         hyperparameters=Hyperparameters.model_validate(spec["hyperparameters"]))
    module.load_state_dict(torch.load(store.download(version, "model.pt", tmp / "model.pt"), weights_only=True))
    module.eval()
    with torch.no_grad():
        return objective.scores(module(torch.from_numpy(matrix))).numpy()


def instances(rows: pa.Table) -> list[dict[str, Any]]:
    return rows.select(SOURCES).to_pylist()


def v2_body(rows: pa.Table, **datatypes: str) -> dict[str, Any]:
    kinds = {"amount": "FP64", "age": "FP64", "country": "BYTES", **datatypes}
    return {"inputs": [{"name": name, "shape": [rows.num_rows], "datatype": kinds[name],
                        "data": rows.column(name).to_pylist()} for name in SOURCES]}


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            sample_labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(sample_labels.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).connections("inet")
            if c.status == psutil.CONN_LISTEN}


def refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def fraud_server(serving_store_env: dict[str, str], served_artifact: ServedArtifact) -> Iterator[RunningServer]:
    server = start_server(server_env(serving_store_env, served_artifact, model_version="fraud-v1",
                                     KUBELOOP_PREDICTION_LOG_BATCH_ROWS="5"))
    yield server
    server.stop()


# -- pure parts ---------------------------------------------------------------------------------


def test_settings_from_env(served_artifact: ServedArtifact) -> None:
    env = {"KUBELOOP_MODEL": "fraud", "KUBELOOP_MODEL_VERSION": "fraud-v3", "KUBELOOP_NAMESPACE": "ml",
           "KUBELOOP_ARTIFACT_URI": served_artifact.uri, "KUBELOOP_ARTIFACT_DIGEST": served_artifact.digest}
    settings = serve.ServerSettings.from_env(env)
    assert (settings.port, settings.bind_address, settings.prediction_log, settings.log_batch_rows,
            settings.log_flush_seconds, settings.log_max_rows) == (8080, "0.0.0.0", True, 10_000, 5.0, 100_000)
    custom = serve.ServerSettings.from_env({**env, "PORT": "9000", "KUBELOOP_BIND_ADDRESS": "127.0.0.1",
                                            "KUBELOOP_PREDICTION_LOG": "false",
                                            "KUBELOOP_PREDICTION_LOG_MAX_ROWS": "10"})
    assert (custom.port, custom.bind_address, custom.prediction_log, custom.log_max_rows) == \
        (9000, "127.0.0.1", False, 10)
    for change, message in [({"KUBELOOP_MODEL": ""}, "KUBELOOP_MODEL is not set"),
                            ({"KUBELOOP_ARTIFACT_DIGEST": "abc"}, "KUBELOOP_ARTIFACT_DIGEST='abc'"),
                            ({"PORT": "http"}, "PORT='http' is not an integer"),
                            ({"PORT": "70000"}, "PORT='70000' must be between 1 and 65535"),
                            ({"KUBELOOP_PREDICTION_LOG": "maybe"}, "must be true or false"),
                            ({"KUBELOOP_PREDICTION_LOG_FLUSH_SECONDS": "0"}, "FLUSH_SECONDS='0' must be")]:
        with pytest.raises(serve.ServerConfigError, match=re.escape(message)):
            serve.ServerSettings.from_env({**env, **change})


def test_loaded_model_predicts_what_the_trainer_code_computes(serving_store: ObjectStore,
                                                              served_artifact: ServedArtifact,
                                                              tmp_path: Path) -> None:
    served = serve.load_artifact(serving_store, served_artifact.uri, served_artifact.digest, tmp_path / "a")
    assert served.inputs == ("amount_std", "age_std", "country_onehot")
    assert served.source_columns == {"amount": "float", "age": "float", "country": "string"}
    rows = served_artifact.feature_set.raw.slice(0, 64)
    result = serve.predict_table(served, rows)
    expected = trainer_scores(serving_store, served_artifact, rows, tmp_path / "b")
    assert result.scores.dtype == np.float32 and np.array_equal(result.scores, expected)
    assert result.predicted_class == ["true" if p >= 0.5 else "false" for p in expected.tolist()]


def test_row_path_predicts_exactly_what_the_table_path_does(serving_store: ObjectStore,
                                                            served_artifact: ServedArtifact, tmp_path: Path) -> None:
    """Requests of up to ROWS_MAX rows take the row kernels; they must give the table path's
    scores bit for bit, and the source values the log would read from the table."""
    served = serve.load_artifact(serving_store, served_artifact.uri, served_artifact.digest, tmp_path)
    rows = instances(served_artifact.feature_set.raw.slice(0, 60))
    assert any(row["amount"] is None for row in rows)
    rows += [{"amount": 120, "age": 41, "country": "zz"},  # integers for float columns, an unseen country
             {"amount": float("nan"), "age": -0.0, "country": None},
             {"amount": 1e308, "age": float("inf"), "country": "de"}]
    for size in (1, 7, serve.ROWS_MAX):
        for start in range(0, len(rows), size):
            chunk = rows[start:start + size]
            computed = serve.predict_rows(served, chunk)
            assert computed is not None, chunk
            by_rows, sources = computed
            table = serve.instances_table(chunk, served.fitted)
            by_table = serve.predict_table(served, table)
            assert by_rows.scores.dtype == np.float32
            assert by_rows.scores.tobytes() == by_table.scores.tobytes()
            assert by_rows.predicted_class == by_table.predicted_class
            for column, kind in served.source_columns.items():
                assert [values[column] for values in sources] == read_column(table.column(column), kind).to_pylist()
    # v2 columns (numpy values, decoded strings) take the same way.
    columns = {"amount": np.array([1.5, np.nan], np.float32), "age": np.array([30, 41], np.int32),
               "country": ["de", "xx"]}
    computed = serve.predict_rows(served, serve.v2_rows(columns))
    assert computed is not None
    by_table = serve.predict_table(served, serve.v2_columns_table(columns, served.fitted))
    assert computed[0].scores.tobytes() == by_table.scores.tobytes()
    # What the row kernels leave to the table path, which words the error.
    for bad in ({"amount": "lots", "age": 30, "country": "de"}, {"age": 30, "country": "de"},
                {"amount": True, "age": 30, "country": "de"}, {"amount": 1.0, "age": 30, "country": 7}):
        assert serve.predict_rows(served, [bad]) is None


def test_v1_table_errors_name_the_feature_and_column(serving_store: ObjectStore, served_artifact: ServedArtifact,
                                                     tmp_path: Path) -> None:
    fitted = serve.load_artifact(serving_store, served_artifact.uri, served_artifact.digest, tmp_path).fitted
    good = {"amount": 1.0, "age": 30, "country": "de"}
    cases = [
        ([], "the request body must be a JSON object"),
        ({"instances": {}}, '"instances" must be a list'),
        ({"instances": []}, '"instances" is empty'),
        ({"instances": [good, 3]}, "instances[1] must be an object"),
        ({"instances": [good, {"amount": 1.0, "country": "de"}]},
         'feature "age_std", column "age": the column is missing from instances[1]'),
        ({"instances": [good, {**good, "country": 7}]}, 'feature "country_onehot", column "country": values of '
                                                        "different types (int, str)"),
    ]
    for body, message in cases:
        with pytest.raises(serve.InvalidInput) as caught:
            serve.v1_table(body, fitted)
        assert message in str(caught.value)
    assert serve.v1_table({"instances": [{**good, "extra": [1]}]}, fitted).column_names == SOURCES


def test_input_matrix_is_the_trainers_encoding() -> None:
    """The shared encoding: nulls, NaN and infinities of numbers -> 0, vectors as they are (nulls 0),
    integers and booleans as numbers; the whole matrix equals its feature blocks side by side."""
    table = pa.table({
        "x": pa.array([1.5, None, float("nan"), float("inf")]),
        "n": pa.array([1, None, 3, -4], pa.int32()),
        "b": pa.array([True, None, False, True]),
        "v": pa.array([[0.0, 1.0], None, [1.0, None], [float("inf"), 0.0]], pa.list_(pa.float32(), 2)),
    })
    matrix, inputs = input_matrix(table, ["x", "n", "b", "v"])
    assert matrix.dtype == np.float32 and matrix.flags.c_contiguous
    assert matrix.tolist() == [[1.5, 1, 1, 0, 1], [0, 0, 0, 0, 0], [0, 3, 0, 1, 0], [0, -4, 1, math.inf, 0]]
    assert [(i["name"], i["width"]) for i in inputs] == [("x", 1), ("n", 1), ("b", 1), ("v", 2)]
    blocks = [feature_block(name, table.column(name))[0] for name in table.column_names]
    assert np.array_equal(np.concatenate(blocks, axis=1), matrix)
    with pytest.raises(UnsupportedFeatureType, match="feature 's' has type string"):
        input_matrix(pa.table({"s": ["a"]}), ["s"])


FEATURE_VALUES = st.tuples(
    st.one_of(st.none(), st.floats(), st.sampled_from([0.0, -0.0, 1e308, -5e-324, math.inf, -math.inf, math.nan])),
    st.one_of(st.none(), st.floats(width=32)),
    st.one_of(st.none(), st.integers(-(2**53), 2**53)),
    st.one_of(st.none(), st.booleans()),
    st.one_of(st.none(), st.lists(st.sampled_from([0.0, 1.0]), min_size=3, max_size=3)),
)


@given(st.lists(FEATURE_VALUES, min_size=1, max_size=6))
@settings(max_examples=200, deadline=None)
def test_input_rows_are_input_matrix_bit_for_bit(rows: list[tuple[Any, ...]]) -> None:
    """The server's row form of the encoding gives the trainer's matrix, float32 bit for bit."""
    table = pa.table({
        "x": pa.array([r[0] for r in rows], pa.float64()),
        "h": pa.array([r[1] for r in rows], pa.float32()),
        "n": pa.array([r[2] for r in rows], pa.int64()),
        "b": pa.array([r[3] for r in rows], pa.bool_()),
        "v": pa.array([r[4] for r in rows], pa.list_(pa.float32(), 3)),
    })
    matrix, _ = input_matrix(table, table.column_names)
    values = [tuple(table.column(name)[i].as_py() for name in table.column_names) for i in range(len(rows))]
    encoded = input_rows(values, [None, None, None, None, 3])
    assert encoded is not None
    assert torch.tensor(encoded, dtype=torch.float32).numpy().tobytes() == matrix.tobytes()
    assert input_rows([(2**53 + 1,)], [None]) is None  # what input_matrix refuses is left to it


# -- over HTTP ----------------------------------------------------------------------------------


def test_v1_predictions_equal_the_trainer_and_the_materialized_features(
        fraud_server: RunningServer, serving_store: ObjectStore, served_artifact: ServedArtifact,
        tmp_path: Path) -> None:
    rows = served_artifact.feature_set.raw.slice(0, serve.ROWS_MAX + 16)  # the column kernels' path
    assert rows.column("amount").null_count > 0  # nulls travel as JSON null and are filled by the transforms
    status, answer = fraud_server.request("POST", V1, {"instances": instances(rows)})
    assert status == 200, answer
    expected = trainer_scores(serving_store, served_artifact, rows, tmp_path / "raw")
    assert answer["predictions"] == expected.astype(np.float64).tolist()
    version = served_artifact.feature_set.version
    materialized = pq.read_table(serving_store.download(version, "features.parquet", tmp_path / "f.parquet"))
    from_features = trainer_scores(serving_store, served_artifact, None, tmp_path / "mat",
                                   features=materialized.slice(0, rows.num_rows))
    assert answer["predictions"] == from_features.astype(np.float64).tolist()
    # One row, and a few: the row kernels' path gives the same numbers as the batch.
    status, single = fraud_server.request("POST", V1, {"instances": instances(rows.slice(3, 1))})
    assert (status, single["predictions"]) == (200, answer["predictions"][3:4])
    status, few = fraud_server.request("POST", V1, {"instances": instances(rows.slice(0, 40))})
    assert (status, few["predictions"]) == (200, answer["predictions"][:40])


def test_v2_predictions_equal_v1(fraud_server: RunningServer, served_artifact: ServedArtifact) -> None:
    raw = served_artifact.feature_set.raw
    rows = raw.filter(pa.compute.is_valid(raw.column("amount"))).slice(0, 10)
    _, v1 = fraud_server.request("POST", V1, {"instances": instances(rows)})
    status, v2 = fraud_server.request("POST", V2, v2_body(rows), headers={"x-request-id": "v2-check"})
    assert status == 200, v2
    [output] = v2["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("predictions", "FP64", [10])
    assert output["data"] == v1["predictions"]
    assert v2["model_name"] == "fraud" and v2["model_version"] == "fraud-v1"
    # Integers for a float column and FP32 tensors are read as the fitted kind says.
    ints = {"inputs": [{"name": "amount", "shape": [1], "datatype": "INT32", "data": [120]},
                       {"name": "age", "shape": [1], "datatype": "FP32", "data": [41.5]},
                       {"name": "country", "shape": [1], "datatype": "BYTES", "data": ["us"]}]}
    status, answer = fraud_server.request("POST", V2, ints)
    _, same = fraud_server.request("POST", V1, {"instances": [{"amount": 120, "age": 41.5, "country": "us"}]})
    assert status == 200 and answer["outputs"][0]["data"] == same["predictions"]


@pytest.mark.parametrize(("path", "body", "message"), [
    (V1, {"instances": [{"amount": "lots", "age": 30, "country": "de"}]},
     'feature \\"amount_std\\", column \\"amount\\": expected a number, got string'),
    (V1, {"instances": [{"amount": 1.0, "country": "de"}]}, 'feature \\"age_std\\", column \\"age\\": the column is'),
    (V1, {"instances": [{"amount": 1.0, "age": True, "country": "de"}]}, "expected a number, got boolean"),
    (V1, {"instances": []}, "is empty"),
    (V1, {"rows": []}, '\\"instances\\" must be a list'),
    (V1, b"{not json", "Unrecognized request format"),
    (V2, {"inputs": [{"name": "amount", "shape": [1], "datatype": "FP64", "data": [1.0]},
                     {"name": "age", "shape": [1], "datatype": "FP64", "data": [1.0]}]},
     'feature \\"country_onehot\\", column \\"country\\": the request has no input tensor named'),
    (V2, {"inputs": [{"name": "amount", "shape": [1], "datatype": "FP64", "data": [1.0]},
                     {"name": "age", "shape": [1], "datatype": "FP64", "data": [1.0]},
                     {"name": "country", "shape": [1], "datatype": "FP64", "data": [3.0]}]},
     'column \\"country\\": expected a string, got float'),
    (V2, {"inputs": [{"name": "amount", "shape": [1], "datatype": "UINT8", "data": [1]},
                     {"name": "age", "shape": [1], "datatype": "FP64", "data": [1.0]},
                     {"name": "country", "shape": [1], "datatype": "BYTES", "data": ["de"]}]},
     "datatype UINT8 is not one of FP64, FP32, INT64, INT32, BOOL, BYTES"),
    (V2, {"inputs": [{"name": "amount", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
                     {"name": "age", "shape": [1], "datatype": "FP64", "data": [1.0]},
                     {"name": "country", "shape": [1], "datatype": "BYTES", "data": ["de"]}]},
     "input tensors have different lengths"),
])
def test_bad_input_is_http_400_naming_the_problem(fraud_server: RunningServer, path: str, body: Any,
                                                  message: str) -> None:
    status, answer = fraud_server.request("POST", path, body)
    assert status == 400, answer
    assert message in json.dumps(answer)


def test_readiness_and_metadata(fraud_server: RunningServer) -> None:
    assert fraud_server.request("GET", "/v2/health/ready")[0] == 200
    assert fraud_server.request("GET", "/v2/models/fraud/ready")[0] == 200
    assert fraud_server.request("GET", "/v1/models/fraud") == (200, {"name": "fraud", "ready": True})
    status, metadata = fraud_server.request("GET", "/v2/models/fraud")
    assert status == 200 and metadata["name"] == "fraud"
    assert fraud_server.request("POST", "/v1/models/other:predict", {"instances": [{}]})[0] == 404
    # One port, on the bind address only: no gRPC, no wildcard.
    assert listening_addresses(fraud_server.process.pid) == {("127.0.0.1", int(fraud_server.env["PORT"]))}
    assert "ready on 127.0.0.1:" in fraud_server.output


def test_metrics_count_requests_errors_predictions_and_log_rows(fraud_server: RunningServer) -> None:
    labels = {"model": "fraud", "model_version": "fraud-v1"}
    before = fraud_server.request("GET", "/metrics")[1]
    row = {"amount": 12.0, "age": 50, "country": "fr"}
    assert fraud_server.request("POST", V1, {"instances": [row, row]})[0] == 200
    assert fraud_server.request("POST", V1, {"instances": [{"amount": "x", "age": 1, "country": "fr"}]})[0] == 400
    assert fraud_server.request("POST", V2, {"inputs": []})[0] == 400
    after = fraud_server.request("GET", "/metrics")[1]

    def delta(name: str, **extra: str) -> float:
        return metric(after, name, **labels, **extra) - metric(before, name, **labels, **extra)

    assert delta("kubeloop_server_requests_total", protocol="v1", code="200") == 1
    assert delta("kubeloop_server_requests_total", protocol="v1", code="400") == 1
    assert delta("kubeloop_server_requests_total", protocol="v2", code="400") == 1
    assert delta("kubeloop_server_request_duration_seconds_count", protocol="v1") == 2
    assert delta("kubeloop_server_errors_total", kind="invalid_input") == 2
    assert delta("kubeloop_server_errors_total", kind="internal") == 0
    assert delta("kubeloop_server_prediction_count") == 2
    assert 0 <= delta("kubeloop_server_prediction_sum") <= 2
    # KServe's own metrics are on the same endpoint.
    assert "request_predict_seconds" in after
    wait_until(lambda: metric(fraud_server.request("GET", "/metrics")[1], "kubeloop_server_prediction_log_rows_total",
                              **labels, outcome="written") > 0, "written log rows")
    # Client errors are one line each, not a traceback.
    assert "Traceback" not in fraud_server.output, fraud_server.output


def test_predicted_rows_are_logged_with_their_raw_values(fraud_server: RunningServer, serving_store: ObjectStore,
                                                         served_artifact: ServedArtifact) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    prefix = prediction_log_prefix(SERVING_NAMESPACE, "fraud", "fraud-v1")
    # A few rows (row kernels, logged column by column) and many (column kernels, logged as a table).
    for request_id, rows in [("log-check-1", served_artifact.feature_set.raw.slice(100, 7)),
                             ("log-check-2", served_artifact.feature_set.raw.slice(200, serve.ROWS_MAX + 6))]:
        status, answer = fraud_server.request("POST", V1, {"instances": instances(rows)},
                                              headers={"x-request-id": request_id})
        assert status == 200

        def logged() -> pa.Table | None:
            table = read_prediction_log(serving_store, prefix, since=since,
                                        until=datetime.now(UTC) + timedelta(hours=1))
            if table.num_rows == 0:
                return None
            mine = table.filter(pa.compute.equal(table.column("request_id"), request_id))  # noqa: B023
            return mine if mine.num_rows == rows.num_rows else None  # noqa: B023

        table = wait_until(logged, f"the logged rows of {request_id}")
        assert table.column_names == ["timestamp", "request_id", "model_version", "amount", "age", "country",
                                      "prediction", "predicted_class"]
        for name in SOURCES:
            assert table.column(name).to_pylist() == rows.column(name).to_pylist()
        assert table.column("prediction").to_pylist() == answer["predictions"]
        assert table.column("predicted_class").to_pylist() == ["true" if p >= 0.5 else "false"
                                                               for p in answer["predictions"]]
        assert set(table.column("model_version").to_pylist()) == {"fraud-v1"}
        assert since <= table.column("timestamp")[0].as_py() <= datetime.now(UTC)


def test_sigterm_flushes_the_buffered_log_and_exits_0(serving_store_env: dict[str, str],
                                                       serving_store: ObjectStore,
                                                       served_artifact: ServedArtifact) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    server = start_server(server_env(serving_store_env, served_artifact, model_version="fraud-flush",
                                     KUBELOOP_PREDICTION_LOG_FLUSH_SECONDS="3600",
                                     KUBELOOP_PREDICTION_LOG_BATCH_ROWS="100000"))
    rows = served_artifact.feature_set.raw.slice(0, 3)
    for index in range(3):
        assert server.request("POST", V1, {"instances": instances(rows.slice(index, 1))})[0] == 200
    prefix = prediction_log_prefix(SERVING_NAMESPACE, "fraud", "fraud-flush")
    until = datetime.now(UTC) + timedelta(hours=1)
    assert read_prediction_log(serving_store, prefix, since=since, until=until).num_rows == 0  # still buffered
    assert server.stop() == 0, server.output
    table = read_prediction_log(serving_store, prefix, since=since, until=until)
    assert table.column("amount").to_pylist() == rows.column("amount").to_pylist()


def test_predictions_without_a_log(serving_store_env: dict[str, str], serving_store: ObjectStore,
                                   served_artifact: ServedArtifact) -> None:
    server = start_server(server_env(serving_store_env, served_artifact, model_version="fraud-nolog",
                                     KUBELOOP_PREDICTION_LOG="false"))
    try:
        assert server.request("POST", V1, {"instances": [{"amount": 1.0, "age": 2.0, "country": "de"}]})[0] == 200
    finally:
        assert server.stop() == 0
    prefix = prediction_log_prefix(SERVING_NAMESPACE, "fraud", "fraud-nolog")
    assert list(serving_store.list_objects(prefix + "/")) == []


def copy_artifact(source: ObjectStore, artifact: ServedArtifact, target: ObjectStore, prefix: str,
                  tmp: Path) -> tuple[str, Version]:
    """Publish the artifact's files again under `prefix` of `target`: a copy one may damage."""
    version = artifact_version(source, artifact)
    files = {name: source.download(version, name, tmp / name) for name in version.files}
    copy = target.publish_version(prefix, files, version.manifest)
    return target.uri(copy.manifest_key), copy


def unusable(case: str, store: ObjectStore, artifact: ServedArtifact, tmp: Path) -> tuple[dict[str, str], str]:
    """Environment changes that make the artifact unusable, and the message the server must print."""
    if case == "digest":
        return {"KUBELOOP_ARTIFACT_DIGEST": "sha256:" + "0" * 64}, "refusing to serve it"
    if case == "missing":
        return {"KUBELOOP_ARTIFACT_URI": artifact.uri.rsplit("/", 1)[0] + "/000000000000.json"}, "does not exist"
    uri, copy = copy_artifact(store, artifact, store, f"models/{SERVING_NAMESPACE}/tampered-{tmp.name[-6:]}", tmp)
    blob = copy.file("model.pt").key
    original = store.get_bytes(blob)
    store.put_bytes(blob, original[:-1] + bytes([original[-1] ^ 1]))  # one bit flipped
    return {"KUBELOOP_ARTIFACT_URI": uri, "KUBELOOP_ARTIFACT_DIGEST": copy.digest}, "is damaged"


@pytest.mark.parametrize("case", ["digest", "missing", "tampered"])
def test_unusable_artifact_exits_3_and_never_listens(case: str, serving_store_env: dict[str, str],
                                                     serving_store: ObjectStore, served_artifact: ServedArtifact,
                                                     tmp_path: Path) -> None:
    changes, message = unusable(case, serving_store, served_artifact, tmp_path)
    env = server_env(serving_store_env, served_artifact, **changes)
    server = launch_server(env)
    assert server.process.wait(HANG_GUARD) == serve.EXIT_PERMANENT
    wait_until(lambda: "not serving" in server.output, "the reader thread")
    assert message in server.output, server.output
    assert " ready on " not in server.output and refused(int(env["PORT"]))


def test_invalid_configuration_exits_3(serving_store_env: dict[str, str], served_artifact: ServedArtifact) -> None:
    server = launch_server(server_env(serving_store_env, served_artifact, KUBELOOP_PREDICTION_LOG_MAX_ROWS="none"))
    assert server.process.wait(HANG_GUARD) == serve.EXIT_PERMANENT
    wait_until(lambda: "KUBELOOP_PREDICTION_LOG_MAX_ROWS='none' is not an integer" in server.output, "the message")


def test_a_store_outage_does_not_fail_requests(serving_store: ObjectStore, served_artifact: ServedArtifact,
                                               tmp_path: Path) -> None:
    with LocalS3(tmp_path / "s3") as s3:
        s3.ensure_bucket(SERVING_BUCKET)
        store_env = s3.store_env(SERVING_BUCKET)
        own = ObjectStore(StoreConfig.from_env(store_env))
        uri, copy = copy_artifact(serving_store, served_artifact, own, "models/ml/outage", tmp_path / "copy")
        server = start_server(server_env(store_env, served_artifact, model_version="fraud-outage",
                                         KUBELOOP_ARTIFACT_URI=uri, KUBELOOP_ARTIFACT_DIGEST=copy.digest,
                                         KUBELOOP_PREDICTION_LOG_MAX_ROWS="10"))
        try:
            s3.stop()
            row = {"amount": 5.0, "age": 33, "country": "de"}
            statuses = [server.request("POST", V1, {"instances": [row, row]})[0] for _ in range(10)]
            assert statuses == [200] * 10
            labels = {"model": "fraud", "model_version": "fraud-outage"}
            text = wait_until(lambda: (m := server.request("GET", "/metrics")[1]) and metric(
                m, "kubeloop_server_prediction_log_rows_total", **labels, outcome="failed") > 0 and m,
                "a failed log write")
            # At most 10 rows are held; the rest were dropped and counted.
            assert metric(text, "kubeloop_server_prediction_log_rows_total", **labels, outcome="dropped") >= 10
            assert metric(text, "kubeloop_server_prediction_log_rows_total", **labels, outcome="written") == 0
        finally:
            server.process.kill()
            server.process.wait(HANG_GUARD)


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_multiclass_and_regression_models(kind: str, served_artifacts: Callable[[str], ServedArtifact],
                                          serving_store_env: dict[str, str], serving_store: ObjectStore,
                                          tmp_path: Path) -> None:
    artifact = served_artifacts(kind)
    rows = artifact.feature_set.raw.filter(pa.compute.is_valid(artifact.feature_set.raw.column("amount"))).slice(0, 6)
    expected = trainer_scores(serving_store, artifact, rows, tmp_path)
    server = start_server(server_env(serving_store_env, artifact, model=kind))
    try:
        status, v1 = server.request("POST", f"/v1/models/{kind}:predict", {"instances": instances(rows)})
        assert status == 200, v1
        assert v1["predictions"] == expected.astype(np.float64).tolist()
        status, v2 = server.request("POST", f"/v2/models/{kind}/infer", v2_body(rows))
        assert status == 200, v2
        assert v2["outputs"][0]["shape"] == list(expected.shape)
        assert v2["outputs"][0]["data"] == expected.astype(np.float64).reshape(-1).tolist()
    finally:
        assert server.stop() == 0
    if kind == "multiclass":
        assert expected.shape == (6, 3) and all(math.isclose(sum(p), 1.0, rel_tol=1e-5) for p in v1["predictions"])
    else:
        assert expected.shape == (6,)
