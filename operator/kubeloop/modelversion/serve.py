"""kubeloop's model server: the KServe predictor of a ModelVersion (`python -m kubeloop.modelversion.serve`).

It serves one trained model with the FeatureSet transforms it was trained with, so clients send
raw source columns and get predictions of exactly the features the model saw in training. A
request of up to `transforms.ROWS_MAX` rows goes through the row kernels (`transforms.apply_rows`,
`models.input_rows`); a larger one, or one the row kernels leave to the columns, is turned into an
Arrow table and passed through `transforms.apply_batch` (the code the materializer ran) and
`models.input_matrix` (the code the trainer ran). Both forms give the same scores bit for bit
(tests/unit/test_transforms.py, tests/modelversion/test_serve.py); then the model and
`Objective.scores`.

Environment (the contract `modelversion/desired.py` fills in):

    KUBELOOP_MODEL            registered model name; the model's name in the URLs
    KUBELOOP_MODEL_VERSION    ModelVersion name (metrics label, prediction log)
    KUBELOOP_NAMESPACE        namespace (prediction log prefix)
    KUBELOOP_ARTIFACT_URI     s3://<bucket>/<prefix>/versions/<id>.json, the artifact's version manifest
    KUBELOOP_ARTIFACT_DIGEST  sha256:<hex>, the version digest the ModelVersion verified
    KUBELOOP_S3_ENDPOINT, KUBELOOP_S3_BUCKET, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
    PORT                      HTTP port (Knative's contract), default 8080
    KUBELOOP_BIND_ADDRESS     address to listen on, default 0.0.0.0 (the local node sets 127.0.0.1)
    KUBELOOP_PREDICTION_LOG   "true" (default) or "false"
    KUBELOOP_PREDICTION_LOG_BATCH_ROWS (10000), KUBELOOP_PREDICTION_LOG_FLUSH_SECONDS (5),
    KUBELOOP_PREDICTION_LOG_MAX_ROWS (100000)

Exit codes: 0 after a clean shutdown (SIGTERM), 1 transient (the store is unreachable at start:
the kubelet restarts the container), 3 permanent: the configuration is invalid or the artifact
cannot be used (its digest differs from KUBELOOP_ARTIFACT_DIGEST, a file's sha256 differs from
the manifest, something is missing or unreadable). A permanent failure prints one line saying
why to stderr and never opens the port.

HTTP (one port, PORT on KUBELOOP_BIND_ADDRESS only; KServe's gRPC server is disabled):

    POST /v1/models/<model>:predict   {"instances": [{column: value, ...}, ...]} -> {"predictions": [...]}
    POST /v2/models/<model>/infer     one tensor per source column (name = column, shape [n],
                                      FP64/FP32/INT64/INT32/BOOL/BYTES) -> tensor "predictions" (FP64)
    GET  /v2/health/ready, /v2/models/<model>/ready, /v2/models/<model>, /v1/models/<model>, /metrics

Predictions: binary classification -> probability of the positive class (`classes[1]`),
multiclass -> the list of class probabilities (v2: shape [n, classes]), regression -> the value.
Input the transforms cannot take (a missing column, a value of the wrong type, an empty request)
is answered with HTTP 400 and a message naming the feature and the column. v2 numeric tensors
have no nulls: send NaN for a missing number (the transforms read NaN as null).

Every predicted row is logged (`predictionlog.PredictionLogWriter`): buffered in memory and
written in batches by a background thread, so a request never waits for the object store; the
buffer is bounded and the rest flushed at shutdown.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import torch
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.errors import InvalidInput, ModelNotFound
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from kubeloop.featureset.transforms import (
    ROWS_MAX,
    FittedFeatures,
    TransformInputError,
    apply_batch,
    apply_rows,
)
from kubeloop.modelversion.predictionlog import (
    LoggedRequest,
    PredictionLogWriter,
    prediction_log_prefix,
    prediction_log_schema,
)
from kubeloop.store import (
    CorruptObject,
    DigestMismatch,
    NotFound,
    ObjectStore,
    StoreConfigError,
    StoreError,
    Version,
)
from kubeloop.store.layout import version_of_uri
from kubeloop.trainingrun.api import Hyperparameters
from kubeloop.trainingrun.models import Objective, build_model, input_matrix, input_rows, objective_for

log = logging.getLogger("kubeloop.modelversion.serve")

EXIT_OK = 0
EXIT_TRANSIENT = 1
EXIT_PERMANENT = 3

ARTIFACT_FILES = ("model.pt", "model.json", "featureset.json")
LOG_CLOSE_SECONDS = 15.0  # the last flush at shutdown; the rest of the grace period is uvicorn's drain
V2_DATATYPES = ("FP64", "FP32", "INT64", "INT32", "BOOL", "BYTES")
_N = TypeVar("_N", int, float)
_TRUE, _FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off"})


class ServerConfigError(ValueError):
    """The environment does not describe a servable model; the message names the variable."""


class ArtifactError(Exception):
    """The artifact cannot be served (missing, tampered with, inconsistent): never retried."""


# -- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSettings:
    """The server's environment, parsed and checked (pure: tests pass a dict)."""

    model: str
    model_version: str
    namespace: str
    artifact_uri: str
    artifact_digest: str
    port: int = 8080
    bind_address: str = "0.0.0.0"
    prediction_log: bool = True
    log_batch_rows: int = 10_000  # rows per Parquet object: fewer, larger PUTs (flush_seconds bounds the wait)
    log_flush_seconds: float = 5.0
    log_max_rows: int = 100_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ServerSettings:
        def required(name: str) -> str:
            value = environ.get(name, "").strip()
            if not value:
                raise ServerConfigError(f"{name} is not set")
            return value

        digest = required("KUBELOOP_ARTIFACT_DIGEST")
        hex_part = digest.removeprefix("sha256:")
        if not digest.startswith("sha256:") or len(hex_part) != 64 or any(c not in "0123456789abcdef" for c in hex_part):
            raise ServerConfigError(f"KUBELOOP_ARTIFACT_DIGEST={digest!r} is not sha256:<64 lower-case hex digits>")
        return cls(
            model=required("KUBELOOP_MODEL"),
            model_version=required("KUBELOOP_MODEL_VERSION"),
            namespace=required("KUBELOOP_NAMESPACE"),
            artifact_uri=required("KUBELOOP_ARTIFACT_URI"),
            artifact_digest=digest,
            port=_number(environ, "PORT", 8080, int, low=1, high=65535),
            bind_address=environ.get("KUBELOOP_BIND_ADDRESS", "").strip() or "0.0.0.0",
            prediction_log=_flag(environ, "KUBELOOP_PREDICTION_LOG", True),
            log_batch_rows=_number(environ, "KUBELOOP_PREDICTION_LOG_BATCH_ROWS", 10_000, int, low=1),
            log_flush_seconds=_number(environ, "KUBELOOP_PREDICTION_LOG_FLUSH_SECONDS", 5.0, float, low=0.001),
            log_max_rows=_number(environ, "KUBELOOP_PREDICTION_LOG_MAX_ROWS", 100_000, int, low=1),
        )


def _number(environ: Mapping[str, str], name: str, default: _N, kind: Callable[[str], _N], *,
            low: _N | None = None, high: _N | None = None) -> _N:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ServerConfigError(f"{name}={text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if (low is not None and value < low) or (high is not None and value > high) or not math.isfinite(value):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise ServerConfigError(f"{name}={text!r} must be {bounds}")
    return value


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    text = environ.get(name, "").strip().lower()
    if not text:
        return default
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ServerConfigError(f"{name}={text!r} must be true or false")


# -- the artifact -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedModel:
    """A loaded artifact: everything a prediction needs, nothing that changes per request.

    `fitted` holds only the features the model takes (a FeatureSet may also define features the
    model does not use, such as one computed from the target), so requests need only their
    source columns. `classes` are the class labels, as strings, in the model's output order.
    """

    version: Version
    fitted: FittedFeatures
    inputs: tuple[str, ...]
    objective: Objective
    module: torch.nn.Module
    classes: tuple[str, ...] | None
    feature_set: Mapping[str, Any]

    @property
    def source_columns(self) -> dict[str, str]:
        return dict(self.fitted.source_columns)

    @cached_property
    def input_widths(self) -> tuple[int | None, ...]:
        """Per input, None for a number, the vector's length for a oneHot (`models.input_rows`)."""
        return tuple(feature.output_type.list_size if feature.output_kind == "vector" else None
                     for feature in self.fitted.features)


def class_label(value: Any) -> str:
    """A class value as the log and clients see it: strings as they are, others as JSON (true, 3)."""
    return value if isinstance(value, str) else json.dumps(value)


def load_artifact(store: ObjectStore, uri: str, digest: str, scratch: Path) -> ServedModel:
    """Read, verify and rebuild the model of the version at `uri`; ArtifactError saying what is wrong.

    The version's digest must be `digest` (what the ModelVersion verified), and `store.download`
    checks every file's sha256 against the manifest: a byte changed anywhere is refused."""
    try:
        prefix, version_id = version_of_uri(uri, store.bucket)
    except ValueError as error:
        raise ArtifactError(f"KUBELOOP_ARTIFACT_URI: {error}") from None
    try:
        version = store.read_manifest(prefix, version_id)
    except NotFound:
        raise ArtifactError(f"the artifact {uri} does not exist in the object store") from None
    except (DigestMismatch, CorruptObject) as error:
        raise ArtifactError(f"the artifact's manifest {uri} is corrupt: {error}") from None
    if version.digest != digest:
        raise ArtifactError(f"the artifact {uri} has digest {version.digest}, not {digest} as verified for "
                            "this ModelVersion: refusing to serve it")
    missing = [name for name in ARTIFACT_FILES if name not in version.files]
    if missing:
        raise ArtifactError(f"the artifact {uri} lacks {', '.join(missing)}")
    try:
        paths = {name: store.download(version, name, scratch / name) for name in ARTIFACT_FILES}
    except (DigestMismatch, NotFound, CorruptObject) as error:
        raise ArtifactError(f"the artifact {uri} is damaged: {error}") from None
    try:
        model_json = json.loads(paths["model.json"].read_bytes())
        feature_set = json.loads(paths["featureset.json"].read_bytes())
        state = torch.load(paths["model.pt"], map_location="cpu", weights_only=True)
    except (ValueError, RuntimeError, OSError, EOFError, pickle.UnpicklingError) as error:  # JSON errors: ValueError
        raise ArtifactError(f"the artifact {uri} is unreadable: {type(error).__name__}: {error}") from None
    try:
        return served_model(version, model_json, feature_set, state)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ArtifactError(f"the artifact {uri} cannot be served: {type(error).__name__}: {error}") from None


def served_model(version: Version, model_json: Mapping[str, Any], feature_set: Mapping[str, Any],
                 state: Mapping[str, torch.Tensor]) -> ServedModel:
    """The model rebuilt from an artifact's documents and state dict, checked for consistency:
    the transforms must produce exactly the inputs (names and widths) the model was trained on."""
    if feature_set.get("fitted") is None:
        raise ValueError("featureset.json has no fitted transforms: the FeatureSet version had no fitted.json")
    fitted_all = FittedFeatures.from_dict(feature_set["fitted"])
    inputs = tuple(str(item["name"]) for item in model_json["inputs"])
    by_name = {feature.name: feature for feature in fitted_all.features}
    unknown = [name for name in inputs if name not in by_name]
    if unknown:
        raise ValueError(f"the model's input(s) {', '.join(unknown)} are not features of the FeatureSet version")
    fitted = FittedFeatures(features=tuple(by_name[name] for name in inputs))
    empty = pa.Table.from_batches([], schema=fitted.output_schema)
    matrix, described = input_matrix(empty, inputs)
    widths = [int(item["width"]) for item in model_json["inputs"]]
    if [int(item["width"]) for item in described] != widths or matrix.shape[1] != int(model_json["inputWidth"]):
        raise ValueError(f"the transforms give input widths {[item['width'] for item in described]}, the model was "
                         f"trained on {widths} (inputWidth {model_json['inputWidth']})")
    classes = model_json.get("classes")
    objective = objective_for(model_json["task"], len(classes) if classes is not None else None)
    if objective.kind != model_json.get("objective", objective.kind) or objective.outputs != model_json["outputs"]:
        raise ValueError(f"model.json says objective {model_json.get('objective')} with {model_json['outputs']} "
                         f"output(s), its task and classes give {objective.kind} with {objective.outputs}")
    hyperparameters = Hyperparameters.model_validate(model_json.get("hyperparameters") or {})
    module = build_model(model_json["family"], inputs=int(model_json["inputWidth"]), outputs=objective.outputs,
                         hyperparameters=hyperparameters)
    module.load_state_dict(state, strict=True)
    module.eval()
    return ServedModel(version=version, fitted=fitted, inputs=inputs, objective=objective, module=module,
                       classes=tuple(class_label(c) for c in classes) if classes is not None else None,
                       feature_set=feature_set)


# -- requests -> Arrow tables ----------------------------------------------------------------------


def _json_array(values: list[Any], kind: str, feature: str, column: str) -> pa.Array:
    """A column of JSON values as Arrow infers it; `apply_batch` then reads it by the column's
    kind exactly as it reads a table's (int for a float column is fine, "abc" for one is not).

    Values that all have the Python type of the column's kind or are null (nearly every request)
    are built directly with that kind's Arrow type: the same values, without the inference and
    the later cast (large_string) that cost more than the row itself."""
    try:
        if kind == "float":
            if all(type(v) is float for v in values):
                return pa.array(np.array(values, dtype=np.float64))
            if all(type(v) is float or v is None for v in values):
                return pa.array(values, type=pa.float64())
        elif kind == "string" and all(type(v) is str or v is None for v in values):
            return pa.array(values, type=pa.large_string())
        elif kind == "integer" and all(type(v) is int or v is None for v in values):
            return pa.array(values, type=pa.int64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass  # inferred below, which gives the error its message
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as error:
        kinds = sorted({type(v).__name__ for v in values if v is not None})
        problem = f"values of different types ({', '.join(kinds)})" if len(kinds) > 1 else str(error)
        raise TransformInputError(feature, column, problem) from None


def v1_table(body: Any, fitted: FittedFeatures) -> pa.Table:
    """The source columns of a v1 request body `{"instances": [{column: value, ...}, ...]}`.

    Columns the model does not use are ignored. Raises `InvalidInput` (HTTP 400) naming the
    problem, and the feature and column where there is one."""
    return instances_table(v1_instances(body), fitted)


def v1_instances(body: Any) -> list[dict[str, Any]]:
    """The rows of a v1 request body, checked to be a non-empty list of objects (else `InvalidInput`)."""
    if not isinstance(body, dict):
        raise InvalidInput('the request body must be a JSON object {"instances": [{column: value, ...}, ...]}')
    instances = body.get("instances")
    if not isinstance(instances, list):
        raise InvalidInput('"instances" must be a list of objects {column: value, ...}')
    if not instances:
        raise InvalidInput('"instances" is empty: send at least one row')
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise InvalidInput(f"instances[{index}] must be an object {{column: value, ...}}, got "
                               f"{type(instance).__name__}")
    return instances


def instances_table(instances: list[dict[str, Any]], fitted: FittedFeatures) -> pa.Table:
    """The source columns of v1 rows as an Arrow table (`InvalidInput` naming feature and column)."""
    arrays = {}
    try:
        for column, feature, kind in fitted.source_users:
            try:
                values = [instance[column] for instance in instances]
            except KeyError:
                index = next(i for i, instance in enumerate(instances) if column not in instance)
                raise TransformInputError(feature, column, f"the column is missing from instances[{index}]") from None
            arrays[column] = _json_array(values, kind, feature, column)
    except TransformInputError as error:
        raise InvalidInput(str(error)) from None
    return pa.table(arrays)


def _tensor_values(tensor: Any, feature: str, column: str) -> tuple[np.ndarray | list[Any], int]:
    """A v2 input tensor's values (numpy, or the decoded strings of BYTES) and its row count."""
    datatype = str(tensor.datatype).upper()
    if datatype not in V2_DATATYPES:
        raise TransformInputError(feature, column, f"datatype {datatype} is not one of {', '.join(V2_DATATYPES)}")
    shape = [int(d) for d in tensor.shape]
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise TransformInputError(feature, column, f"shape {shape} is not [n] (one value per row)")
    try:
        values = tensor.as_numpy().reshape(-1)
    except (ValueError, TypeError, InvalidInput) as error:
        raise TransformInputError(feature, column, f"the data are not {datatype} of shape {shape}: {error}") from None
    if datatype == "BYTES":
        try:
            return [v.decode("utf-8") if isinstance(v, bytes) else v for v in values.tolist()], shape[0]
        except UnicodeDecodeError as error:
            raise TransformInputError(feature, column, f"BYTES values must be UTF-8 strings: {error}") from None
    return values, shape[0]


def _tensor_array(values: np.ndarray | list[Any], feature: str, column: str) -> pa.Array:
    if isinstance(values, np.ndarray):
        return pa.array(values)
    try:
        return pa.array(values, type=pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise TransformInputError(feature, column, f"BYTES values must be UTF-8 strings: {error}") from None


V2Columns = dict[str, "np.ndarray | list[Any]"]


def v2_columns(request: InferRequest, fitted: FittedFeatures) -> tuple[V2Columns, int]:
    """The source columns of a v2 request (one input tensor per source column, all of length
    n >= 1) as values, and n; `InvalidInput` naming the problem, the feature and the column."""
    tensors = {tensor.name: tensor for tensor in request.inputs}
    columns, rows = {}, {}
    try:
        for column, feature, _ in fitted.source_users:
            if column not in tensors:
                raise TransformInputError(feature, column, f"the request has no input tensor named {column!r} "
                                          f"(inputs: {', '.join(tensors) or 'none'})")
            columns[column], rows[column] = _tensor_values(tensors[column], feature, column)
    except TransformInputError as error:
        raise InvalidInput(str(error)) from None
    if len(set(rows.values())) > 1:
        raise InvalidInput(f"input tensors have different lengths: {rows}")
    if not rows or next(iter(rows.values())) == 0:
        raise InvalidInput("the request has no rows: send tensors of shape [n] with n >= 1")
    return columns, next(iter(rows.values()))


def v2_rows(columns: V2Columns) -> list[dict[str, Any]]:
    """v2 columns as rows of Python values (for the row kernels)."""
    names = list(columns)
    values = [column.tolist() if isinstance(column, np.ndarray) else column for column in columns.values()]
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


def v2_columns_table(columns: V2Columns, fitted: FittedFeatures) -> pa.Table:
    """v2 columns as an Arrow table (`InvalidInput` naming feature and column)."""
    try:
        return pa.table({column: _tensor_array(columns[column], feature, column)
                         for column, feature, _ in fitted.source_users})
    except TransformInputError as error:
        raise InvalidInput(str(error)) from None


def v2_table(request: InferRequest, fitted: FittedFeatures) -> pa.Table:
    """The source columns of a v2 request: one input tensor per source column, all of length n."""
    return v2_columns_table(v2_columns(request, fitted)[0], fitted)


# -- prediction ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Predictions:
    """A batch's scores (binary/regression `[n]`, multiclass `[n, classes]`, float32 as the model
    computes them) and, per row, the logged prediction (float64) and predicted class."""

    scores: np.ndarray
    prediction: np.ndarray
    predicted_class: list[str | None] | None


def predict_table(served: ServedModel, table: pa.Table) -> Predictions:
    """Predictions for the raw source columns in `table`: transforms, input matrix, model, scores.

    Raises `TransformInputError` for input the transforms cannot take."""
    features = apply_batch(served.fitted, table)
    matrix, _ = input_matrix(features, served.inputs)
    return predict_matrix(served, torch.from_numpy(matrix))


def predict_rows(served: ServedModel,
                 instances: Sequence[Mapping[str, Any]]) -> tuple[Predictions, list[dict[str, Any]]] | None:
    """Predictions for a few request rows (v1 instances, or v2 columns as rows: `v2_rows`) by
    the row kernels (`transforms.apply_rows`,
    `models.input_rows`), and the source values as read (for the prediction log); the same
    predictions as `predict_table` on a table of these rows. None where the row kernels do not
    take the rows (the caller then takes the table path, which also words any error)."""
    computed = apply_rows(served.fitted, instances)
    if computed is None:
        return None
    sources, features = computed
    rows = input_rows(features, served.input_widths)
    if rows is None:
        return None
    return predict_matrix(served, torch.tensor(rows, dtype=torch.float32)), sources


def predict_matrix(served: ServedModel, matrix: torch.Tensor) -> Predictions:
    """The model's predictions for an input matrix `[rows, inputWidth]` (float32)."""
    with torch.inference_mode():
        scores = served.objective.scores(served.module(matrix)).numpy()
    kind, classes = served.objective.kind, served.classes
    if kind == "multiclass":
        best = scores.argmax(axis=1)
        assert classes is not None
        return Predictions(scores, scores[np.arange(len(best)), best].astype(np.float64),
                           [classes[i] for i in best.tolist()])
    prediction = scores.astype(np.float64)
    if kind == "binary":
        assert classes is not None
        return Predictions(scores, prediction, [classes[1] if p >= 0.5 else classes[0] for p in scores.tolist()])
    return Predictions(scores, prediction, None)


# -- metrics ------------------------------------------------------------------------------------


_PROBABILITY_BUCKETS = tuple(i / 20 for i in range(1, 20)) + (1.0,)
_VALUE_BUCKETS = (-1e4, -1e3, -100.0, -10.0, -1.0, 0.0, 1.0, 10.0, 100.0, 1e3, 1e4)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServerMetrics:
    """The server's Prometheus metrics (names in the shared contract), children bound to this
    model and version once so that the request path only increments."""

    def __init__(self, model: str, model_version: str, objective: str,
                 registry: CollectorRegistry = REGISTRY) -> None:
        labels = ("model", "model_version")
        self.requests = Counter("kubeloop_server_requests_total", "Prediction requests by protocol and HTTP status.",
                                (*labels, "protocol", "code"), registry=registry)
        self.duration = Histogram("kubeloop_server_request_duration_seconds",
                                  "Time from request to response of prediction requests.", (*labels, "protocol"),
                                  buckets=_LATENCY_BUCKETS, registry=registry)
        self.errors = Counter("kubeloop_server_errors_total",
                              "Failed prediction requests: invalid_input (HTTP 4xx) or internal (HTTP 5xx).",
                              (*labels, "kind"), registry=registry)
        self.predictions = Histogram("kubeloop_server_prediction",
                                     "Predicted values (probability of the positive or predicted class, or the "
                                     "regression value).", labels,
                                     buckets=_VALUE_BUCKETS if objective == "regression" else _PROBABILITY_BUCKETS,
                                     registry=registry)
        self.log_rows = Counter("kubeloop_server_prediction_log_rows_total",
                                "Prediction log rows by outcome (failed counts each failed write attempt).",
                                (*labels, "outcome"), registry=registry)
        self._key = (model, model_version)
        self._durations = {p: self.duration.labels(*self._key, p) for p in ("v1", "v2")}
        self._prediction = self.predictions.labels(*self._key)
        self._errors = {k: self.errors.labels(*self._key, k) for k in ("invalid_input", "internal")}
        self._log_rows = {o: self.log_rows.labels(*self._key, o) for o in ("written", "dropped", "failed")}
        self._requests: dict[tuple[str, int], Any] = {}

    def request(self, protocol: str, code: int, seconds: float) -> None:
        child = self._requests.get((protocol, code))
        if child is None:
            child = self._requests[(protocol, code)] = self.requests.labels(*self._key, protocol, str(code))
        child.inc()
        self._durations[protocol].observe(seconds)
        if 400 <= code < 500:
            self._errors["invalid_input"].inc()
        elif code >= 500:
            self._errors["internal"].inc()

    def predicted(self, values: np.ndarray) -> None:
        for value in values.tolist():
            self._prediction.observe(value)

    def log_rows_outcome(self, outcome: str, rows: int) -> None:
        self._log_rows[outcome].inc(rows)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class RequestMetricsMiddleware:
    """ASGI middleware counting the prediction routes' requests by the status actually sent.

    It sits outside KServe's exception handlers, so a 400 from a bad body, a 400 from the
    transforms and a 500 all count with the code the client got. Plain ASGI (not Starlette's
    BaseHTTPMiddleware) to add microseconds, not a task per request."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, metrics: ServerMetrics,
                 routes: Mapping[str, str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        protocol = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if protocol is None:
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            self.metrics.request(protocol, status, time.perf_counter() - started)


def prediction_routes(model: str) -> dict[str, str]:
    """Path -> protocol of the model's prediction endpoints."""
    return {f"/v1/models/{model}:predict": "v1", f"/v2/models/{model}/infer": "v2"}


# -- the KServe model ---------------------------------------------------------------------------


class KubeloopModel(Model):
    """The served model: a KServe `Model` whose `predict` takes raw source columns (v1 or v2)."""

    def __init__(self, name: str, served: ServedModel, *, model_version: str, metrics: ServerMetrics,
                 writer: PredictionLogWriter | None) -> None:
        super().__init__(name)
        self.served = served
        self.model_version = model_version
        self.metrics = metrics
        self.writer = writer
        self.ready = True  # loaded and verified before the server is built
        # Ids for requests that bring none: unique per process (random prefix), and a counter is
        # cheaper than a uuid4 per request.
        self._ids = itertools.count(1)
        self._id_prefix = uuid.uuid4().hex[:12]

    def _next_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    def load(self) -> bool:
        return bool(self.ready)

    def predict(self, payload: Any, headers: Mapping[str, str] | None = None) -> dict[str, Any] | InferResponse:
        arrived = datetime.now(UTC)
        v2 = isinstance(payload, InferRequest)
        # A few rows go through the row kernels (same results, a fraction of the columns' cost);
        # more rows, or rows the row kernels leave to the columns, through an Arrow table.
        predicted = None
        if v2:
            columns, count = v2_columns(payload, self.served.fitted)
            if count <= ROWS_MAX:
                predicted = predict_rows(self.served, v2_rows(columns))
            if predicted is None:
                table = v2_columns_table(columns, self.served.fitted)
        else:
            instances = v1_instances(payload)
            if len(instances) <= ROWS_MAX:
                predicted = predict_rows(self.served, instances)
            if predicted is None:
                table = instances_table(instances, self.served.fitted)
        if predicted is not None:
            result, sources = predicted
        else:
            try:
                result, sources = predict_table(self.served, table), table
            except TransformInputError as error:
                raise InvalidInput(str(error)) from None
        self.metrics.predicted(result.prediction)
        if self.writer is not None or v2:  # a v1 answer without a log has no use for an id
            request_id = (payload.id if v2 else None) or (headers or {}).get("x-request-id") or self._next_id()
        if self.writer is not None:
            self.writer.submit(LoggedRequest(time=arrived, request_id=str(request_id), sources=sources,
                                             prediction=result.prediction, predicted_class=result.predicted_class))
        if v2:
            output = InferOutput(name="predictions", shape=list(result.scores.shape), datatype="FP64",
                                 data=result.scores.astype(np.float64).reshape(-1).tolist())
            return InferResponse(response_id=str(request_id), model_name=self.name, infer_outputs=[output],
                                 model_version=self.model_version)
        return {"predictions": result.scores.astype(np.float64).tolist()}


# -- the server ---------------------------------------------------------------------------------


class BoundModelServer(ModelServer):
    """KServe's ModelServer listening on one address only, announcing when it listens.

    KServe 0.21 hard-codes uvicorn's host to 0.0.0.0. `start` builds the REST server and then
    calls `setup_event_loop` before serving, so that hook is where the host is set. Signals:
    uvicorn handles SIGTERM/SIGINT while it serves (graceful shutdown), then re-raises them to
    the handlers installed before; kserve's would schedule a task on a loop that is closing, so
    ours only logs, and `main` flushes the prediction log after `start` returns."""

    def __init__(self, *, bind_address: str, announce: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind_address = bind_address
        self.announce = announce

    def setup_event_loop(self) -> None:
        if self._rest_server is None:
            raise RuntimeError("kserve's ModelServer.start no longer builds its REST server before setting up "
                               "the event loop: the bind address cannot be applied")
        self._rest_server.config.host = self.bind_address
        self.servers.append(self._announce_when_listening())
        super().setup_event_loop()

    async def _announce_when_listening(self) -> None:
        server = self._rest_server._server
        while not server.started and not server.should_exit:
            await asyncio.sleep(0.01)
        if server.started:
            print(self.announce, flush=True)

    def register_signal_handler(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
            signal.signal(sig, lambda number, frame: log.info("signal %d: shutting down", number))


def build_writer(settings: ServerSettings, store: ObjectStore, served: ServedModel,
                 metrics: ServerMetrics) -> PredictionLogWriter | None:
    if not settings.prediction_log:
        return None
    return PredictionLogWriter(
        store, prediction_log_prefix(settings.namespace, settings.model, settings.model_version),
        prediction_log_schema(served.source_columns), settings.model_version,
        batch_rows=settings.log_batch_rows, flush_seconds=settings.log_flush_seconds,
        max_rows=settings.log_max_rows, on_rows=metrics.log_rows_outcome)


class _QuietClientErrors(logging.Filter):
    """KServe logs every client error (invalid input, an unknown model) with its traceback at
    ERROR; a bad request is not a server fault, so it becomes one INFO line (and a burst of bad
    requests stays cheap)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, InvalidInput | ModelNotFound):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args, record.exc_info, record.exc_text = "client error: %s", (str(error),), None, None
        return True


def configure_logging() -> None:
    """Plain lines on stderr; KServe's per-request timing lines (`kserve.trace`) and uvicorn's
    per-request access lines (`uvicorn.access`, which would reach the root handler set here) are
    off, since `kubeloop_server_requests_total` and `kubeloop_server_request_duration_seconds`
    have the same figures without a write per request (a line per request cost the server more
    CPU than the FeatureSet transforms)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kserve").addFilter(_QuietClientErrors())
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def _permanent(message: str) -> int:
    print(f"server: {message}", file=sys.stderr, flush=True)
    return EXIT_PERMANENT


def main(environ: Mapping[str, str] | None = None) -> int:
    """Load, verify and serve until SIGTERM; the exit code (see the module docstring)."""
    env = dict(os.environ if environ is None else environ)
    configure_logging()
    try:
        settings = ServerSettings.from_env(env)
        store = ObjectStore.from_env(env)
    except (ServerConfigError, StoreConfigError) as error:
        return _permanent(f"invalid configuration: {error}")
    scratch = Path(tempfile.mkdtemp(prefix="kubeloop-serve-", dir=env.get("KUBELOOP_SCRATCH") or None))
    try:
        served = load_artifact(store, settings.artifact_uri, settings.artifact_digest, scratch)
    except ArtifactError as error:
        return _permanent(f"not serving: {error}")
    except StoreError as error:
        print(f"server: the object store is unavailable, exiting to be restarted: {error}", file=sys.stderr,
              flush=True)
        return EXIT_TRANSIENT
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    try:
        prediction_log_schema(served.source_columns)
    except ValueError as error:
        return _permanent(f"not serving: {error}")
    metrics = ServerMetrics(settings.model, settings.model_version, served.objective.kind)
    writer = build_writer(settings, store, served, metrics)
    model = KubeloopModel(settings.model, served, model_version=settings.model_version, metrics=metrics,
                          writer=writer)
    from kserve.model_server import app  # the FastAPI app KServe's REST server serves

    app.add_middleware(RequestMetricsMiddleware, metrics=metrics, routes=prediction_routes(settings.model))
    announce = (f"server: model {settings.model} {settings.model_version} ready on "
                f"{settings.bind_address}:{settings.port} (artifact {served.version.digest})")
    server = BoundModelServer(bind_address=settings.bind_address, announce=announce, http_port=settings.port,
                              enable_grpc=False, workers=1, enable_docs_url=False, enable_latency_logging=False)
    if writer is not None:
        writer.start()
    try:
        server.start([model])
        return EXIT_OK
    except SystemExit as stop:  # uvicorn exits 1 when it cannot bind
        return int(stop.code) if isinstance(stop.code, int) else EXIT_TRANSIENT
    except Exception:
        traceback.print_exc()
        return EXIT_TRANSIENT
    finally:
        if writer is not None:
            # Within Kubernetes' default 30 s grace period, after uvicorn's own drain of requests.
            writer.close(timeout=LOG_CLOSE_SECONDS)
            log.info("server: prediction log closed (%d row(s) not written)", writer.held_rows)


if __name__ == "__main__":
    sys.exit(main())
