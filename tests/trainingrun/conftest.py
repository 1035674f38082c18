"""Fixtures of the trainer tests: one real S3 server (SeaweedFS) for the session, a FeatureSet
version built in it directly with the store API (fit the transforms, apply them, publish the
files a materializer publishes), and helpers that run the trainer in-process or as processes.

The trainer's environment is exactly what the TrainingRun controller gives a pod:
`KUBELOOP_TRAININGRUN`, the store's Secret keys, `KUBELOOP_S3_BUCKET`, `KUBELOOP_SCRATCH`
and, for ranks of a gang, `MASTER_ADDR=127.0.0.1`, `MASTER_PORT`, `WORLD_SIZE`, `RANK` ...
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kubeloop.featureset.api import Feature
from kubeloop.featureset.profile import build_profile
from kubeloop.featureset.transforms import apply_batch, fit_pipeline
from kubeloop.local.s3 import LocalS3
from kubeloop.store import ObjectStore, StoreConfig, Version

BUCKET = "kubeloop-train-test"
NAMESPACE = "ml"
FEATURE_SET = "customers"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def local_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    with LocalS3(tmp_path_factory.mktemp("train-s3")) as s3:
        s3.ensure_bucket(BUCKET)
        yield s3


@pytest.fixture(scope="session")
def store_env(local_s3: LocalS3) -> dict[str, str]:
    """The store part of a trainer pod's environment (the Secret's keys plus the bucket)."""
    return local_s3.store_env(BUCKET)


@pytest.fixture(scope="session")
def store(store_env: dict[str, str]) -> ObjectStore:
    return ObjectStore(StoreConfig.from_env(store_env))


def raw_rows(rows: int = 2400, seed: int = 7) -> pa.Table:
    """Raw source rows: 300 customers observed over time, a binary, a 3-class and a numeric label."""
    rng = np.random.default_rng(seed)
    customer = rng.integers(0, 300, rows)
    ts = np.datetime64("2026-01-01T00:00:00", "s") + np.sort(rng.integers(0, 86_400 * 60, rows)).astype("m8[s]")
    amount = rng.gamma(2.0, 50.0, rows)
    age = rng.normal(40, 12, rows)
    country = rng.choice(["de", "fr", "us", "jp"], rows)
    noise = rng.normal(0, 0.5, rows)
    score = 0.02 * (amount - 100) - 0.05 * (age - 40) + (country == "us") * 1.0 + noise
    amount_with_nulls = pa.array(amount, mask=rng.random(rows) < 0.03)
    return pa.table({
        "customer_id": pa.array(customer, pa.int64()),
        "ts": pa.array(ts.astype("datetime64[us]"), pa.timestamp("us", tz="UTC")),
        "amount": amount_with_nulls,
        "age": pa.array(age),
        "country": pa.array(country),
        "is_fraud": pa.array(score > 0.8),
        "tier": pa.array(np.digitize(score, [-0.5, 0.8]).astype(np.int64)),
        "spend": pa.array(3.0 * score + 10.0),
    })


FEATURES = [
    Feature.model_validate({"name": "amount_std", "from": "amount",
                            "transforms": [{"type": "fillNull", "strategy": "mean"}, {"type": "standardize"}]}),
    Feature.model_validate({"name": "age_std", "from": "age", "transforms": [{"type": "standardize"}]}),
    Feature.model_validate({"name": "country_onehot", "from": "country",
                            "transforms": [{"type": "vocabulary", "output": "oneHot"}]}),
]
LABEL_COLUMNS = ["is_fraud", "tier", "spend"]


@dataclass(frozen=True)
class PublishedFeatureSet:
    name: str
    version: Version
    raw: pa.Table

    @property
    def reference(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version.id, "digest": self.version.digest}


def publish_feature_set(store: ObjectStore, folder: Path, name: str, raw: pa.Table, *,
                        ttl: str | None = None) -> PublishedFeatureSet:
    """A FeatureSet version as the materializer lays it out: features.parquet (entities, timestamp,
    label columns, features), fitted.json, schema.json, profile.json and the manifest."""
    fitted = fit_pipeline(FEATURES, [raw])
    features = apply_batch(fitted, raw)
    keep = raw.select(["customer_id", "ts", *LABEL_COLUMNS])
    table = pa.Table.from_arrays([*keep.columns, *features.columns], names=[*keep.column_names, *features.column_names])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "features.parquet"
    pq.write_table(table, path)
    schema = [{"name": f.name, "dtype": str(f.type),
               "role": "entity" if f.name == "customer_id" else "timestamp" if f.name == "ts"
               else "label" if f.name in LABEL_COLUMNS else "feature"} for f in table.schema]
    profile = build_profile([raw], fitted)
    version = store.publish_version(
        f"featuresets/{NAMESPACE}/{name}",
        {"features.parquet": path, "fitted.json": fitted.to_json().encode(),
         "schema.json": json.dumps(schema).encode(), "profile.json": profile.to_json().encode()},
        {"rows": table.num_rows, "features": [f.name for f in FEATURES], "entities": ["customer_id"],
         "timestampColumn": "ts", "labelColumns": LABEL_COLUMNS, "schema": schema, **({"ttl": ttl} if ttl else {})})
    return PublishedFeatureSet(name=name, version=version, raw=raw)


@pytest.fixture(scope="session")
def feature_set(store: ObjectStore, tmp_path_factory: pytest.TempPathFactory) -> PublishedFeatureSet:
    return publish_feature_set(store, tmp_path_factory.mktemp("fs"), FEATURE_SET, raw_rows())


def run_spec(**changes: Any) -> dict[str, Any]:
    """A small, fast TrainingRun spec (camelCase, as the CR holds it)."""
    spec: dict[str, Any] = {
        "featureSetRef": {"name": FEATURE_SET},
        "target": "is_fraud",
        "model": {"family": "mlp", "task": "classification"},
        "hyperparameters": {"epochs": 4, "batchSize": 64, "learningRate": 0.01, "hiddenLayers": [16, 8],
                            "dropout": 0.1},
        "seed": 42,
        "deterministic": True,
    }
    spec.update(changes)
    return spec


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def trainer_env(store_env: Mapping[str, str], scratch: Path, name: str, spec: Mapping[str, Any],
                feature_set: Mapping[str, Any], *, attempt: int = 1, uid: str | None = None,
                namespace: str = NAMESPACE, **extra: str) -> dict[str, str]:
    environ = dict(store_env)
    environ["KUBELOOP_TRAININGRUN"] = json.dumps({
        "name": name, "namespace": namespace, "uid": uid or f"uid-{name}", "generation": 1,
        "attempt": attempt, "spec": dict(spec), "featureSet": dict(feature_set)})
    environ["KUBELOOP_SCRATCH"] = str(scratch)
    environ["KUBELOOP_IMAGE"] = "kubeloop/trainer:test"
    environ["KUBELOOP_GIT_SHA"] = "0123456789abcdef"
    environ.update(extra)
    return environ


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Finished:
    codes: list[int]
    outputs: list[str]


def run_ranks(environ: Mapping[str, str], world_size: int) -> Finished:
    """Start `world_size` trainer processes on loopback (as an Indexed Job's pods would be) and
    wait for all of them; their exit codes and outputs, rank order.

    The free port is found before rank 0 binds it, so another process on the machine may take it
    in between: that one failure (rank 0 cannot bind, a transient exit 1 the operator would
    retry) is retried here with another port, up to 3 times."""
    for _ in range(3):
        finished = _run_ranks_once(environ, world_size)
        if not any("Address already in use" in output for output in finished.outputs):
            break
    return finished


def _run_ranks_once(environ: Mapping[str, str], world_size: int) -> Finished:
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KUBELOOP_", "AWS_", "S3_"))}
    base.update(environ)
    base["PYTHONPATH"] = str(REPO / "operator")
    base["OMP_NUM_THREADS"] = "1"
    processes = []
    for rank in range(world_size):
        env = dict(base, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size),
                   RANK=str(rank), NODE_RANK=str(rank), NNODES=str(world_size), NPROC_PER_NODE="1",
                   LOCAL_RANK="0")
        processes.append(subprocess.Popen([sys.executable, "-m", "kubeloop.trainingrun.train"], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [process.communicate()[0] for process in processes]
    return Finished(codes=[process.returncode for process in processes], outputs=outputs)
