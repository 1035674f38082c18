"""Fixtures of the drift check tests: one real S3 server (SeaweedFS) for the session, a FeatureSet
version published the way the materializer lays it out (tests/trainingrun/conftest.py's
`publish_feature_set`), and prediction log objects written with the server's own
`predictionlog` functions. Fixture names start with `drift_` so that the controller tests the
lead adds to this folder do not collide with them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from kubeloop.local.s3 import LocalS3
from kubeloop.modelversion.predictionlog import (
    LoggedRequest,
    encode_parquet,
    object_key,
    prediction_log_prefix,
    prediction_log_schema,
    prediction_log_table,
)
from kubeloop.store import ObjectStore, StoreConfig
from tests.trainingrun.conftest import NAMESPACE, PublishedFeatureSet, publish_feature_set, raw_rows

DRIFT_BUCKET = "kubeloop-drift-test"
DRIFT_NAMESPACE = NAMESPACE
DRIFT_FEATURE_SET = "customers"
LOG_SOURCE_KINDS = {"amount": "float", "age": "float", "country": "string"}


@pytest.fixture(scope="session")
def drift_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    with LocalS3(tmp_path_factory.mktemp("drift-s3")) as s3:
        s3.ensure_bucket(DRIFT_BUCKET)
        yield s3


@pytest.fixture(scope="session")
def drift_store_env(drift_s3: LocalS3) -> dict[str, str]:
    return drift_s3.store_env(DRIFT_BUCKET)


@pytest.fixture(scope="session")
def drift_store(drift_store_env: dict[str, str]) -> ObjectStore:
    return ObjectStore(StoreConfig.from_env(drift_store_env))


@pytest.fixture(scope="session")
def drift_feature_set(drift_store: ObjectStore, tmp_path_factory: pytest.TempPathFactory) -> PublishedFeatureSet:
    return publish_feature_set(drift_store, tmp_path_factory.mktemp("drift-fs"), DRIFT_FEATURE_SET, raw_rows())


def live_rows(rows: int, seed: int, *, age_shift: float = 0.0) -> pa.Table:
    """Live inputs drawn like `raw_rows` (the source columns the server logs), optionally with the
    age column shifted."""
    table = raw_rows(rows, seed)
    age = table.column("age").to_numpy() + age_shift
    return pa.table({"amount": table.column("amount"), "age": pa.array(age), "country": table.column("country")})


def write_prediction_log(store: ObjectStore, model: str, model_version: str, rows: pa.Table, start: datetime,
                         spacing: timedelta) -> None:
    """Logs `rows` as the server does: one request per row, `spacing` apart from `start`, batched
    into objects of at most 500 rows that never span an hour."""
    schema = prediction_log_schema(LOG_SOURCE_KINDS)
    prefix = prediction_log_prefix(DRIFT_NAMESPACE, model, model_version)
    requests = [
        LoggedRequest(time=start + i * spacing, request_id=f"r{i}", sources=rows.slice(i, 1),
                      prediction=np.array([0.5]), predicted_class=["1"])
        for i in range(rows.num_rows)
    ]
    seq = 0
    batch: list[LoggedRequest] = []
    for request in requests:
        if batch and (len(batch) == 500 or request.time.hour != batch[0].time.hour):
            store.put_bytes(object_key(prefix, batch[0].time, "test-writer", seq),
                            encode_parquet(prediction_log_table(schema, model_version, batch)))
            seq, batch = seq + 1, []
        batch.append(request)
    if batch:
        store.put_bytes(object_key(prefix, batch[0].time, "test-writer", seq),
                        encode_parquet(prediction_log_table(schema, model_version, batch)))
