"""Fixtures of the model server and prediction log tests: one real S3 server (SeaweedFS) for the
session, under names of their own (`serving_*`, `served_*`) so that other tests in this folder can
add fixtures without clashing.

- `serving_s3`: the running `LocalS3`; `serving_store_env`: the store part of a pod's environment
  (the Secret's keys plus `KUBELOOP_S3_BUCKET`); `serving_store`: an `ObjectStore` on it.
- `unreachable_store`: an `ObjectStore` whose endpoint refuses connections, with one attempt per
  operation: a store outage that fails fast.
- `serving_feature_set`: a published FeatureSet version (the trainer tests' raw rows and features).
- `served_artifacts(kind)` (binary, multiclass, regression) and `served_artifact` (binary):
  artifacts made by the real trainer (`train.main`, in this process) from that version, as a
  TrainingRun pod makes them; a `ServedArtifact` has the URI and digest its run record gives.
- `start_server(env)` starts `python -m kubeloop.modelversion.serve` on a free loopback port and
  returns once it prints its readiness line (`RunningServer`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kubeloop.local.s3 import LocalS3
from kubeloop.store import ObjectStore, StoreConfig
from kubeloop.trainingrun import train
from tests.trainingrun.conftest import (
    PublishedFeatureSet,
    publish_feature_set,
    raw_rows,
    run_spec,
    trainer_env,
    unique_name,
)

REPO = Path(__file__).resolve().parents[2]
SERVING_FEATURE_SET = "serving-customers"
HANG_GUARD = 120.0  # seconds: only against a hang, never a timing assertion

SERVING_BUCKET = "kubeloop-serving-test"
SERVING_NAMESPACE = "ml"


@pytest.fixture(scope="session")
def serving_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    with LocalS3(tmp_path_factory.mktemp("serving-s3")) as s3:
        s3.ensure_bucket(SERVING_BUCKET)
        yield s3


@pytest.fixture(scope="session")
def serving_store_env(serving_s3: LocalS3) -> dict[str, str]:
    return serving_s3.store_env(SERVING_BUCKET)


@pytest.fixture(scope="session")
def serving_store(serving_store_env: dict[str, str]) -> ObjectStore:
    return ObjectStore(StoreConfig.from_env(serving_store_env))


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def unreachable_store(serving_store: ObjectStore) -> ObjectStore:
    config = serving_store.config.replace(endpoint=f"127.0.0.1:{closed_port()}", max_attempts=1,
                                          connect_timeout=1.0)
    return ObjectStore(config)


@pytest.fixture(scope="session")
def serving_feature_set(serving_store: ObjectStore, tmp_path_factory: pytest.TempPathFactory) -> PublishedFeatureSet:
    return publish_feature_set(serving_store, tmp_path_factory.mktemp("serving-fs"), SERVING_FEATURE_SET,
                               raw_rows(rows=1200))


@dataclass(frozen=True)
class ServedArtifact:
    """A trained model's artifact as its run record describes it, and the data it came from."""

    uri: str
    digest: str
    target: str
    task: str
    feature_set: PublishedFeatureSet
    record: Mapping[str, Any]


def train_artifact(store_env: Mapping[str, str], store: ObjectStore, scratch: Path,
                   feature_set: PublishedFeatureSet, target: str, task: str) -> ServedArtifact:
    """Train with the real trainer in this process (a TrainingRun pod's code path) and read the
    run record it publishes."""
    name = unique_name(f"serve-{target.replace('_', '-')}")
    spec = run_spec(featureSetRef={"name": feature_set.name}, target=target, model={"family": "mlp", "task": task},
                    hyperparameters={"epochs": 2, "batchSize": 128, "learningRate": 0.01, "hiddenLayers": [8]})
    assert train.main(trainer_env(store_env, scratch, name, spec, feature_set.reference)) == train.EXIT_SUCCESS
    record = store.get_json(f"{train.run_prefix(SERVING_NAMESPACE, name)}/{train.RECORD_FILE}")
    return ServedArtifact(uri=record["artifact"]["uri"], digest=record["artifact"]["digest"], target=target,
                          task=task, feature_set=feature_set, record=record)


ARTIFACT_TARGETS = {"binary": ("is_fraud", "classification"), "multiclass": ("tier", "classification"),
                    "regression": ("spend", "regression")}


@pytest.fixture(scope="session")
def served_artifacts(serving_store_env: dict[str, str], serving_store: ObjectStore,
                     serving_feature_set: PublishedFeatureSet,
                     tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], ServedArtifact]:
    """`served_artifacts(kind)`: the artifact of a model of `kind` (binary, multiclass or
    regression), trained on first use and then shared by the session."""
    made: dict[str, ServedArtifact] = {}

    def artifact(kind: str) -> ServedArtifact:
        if kind not in made:
            target, task = ARTIFACT_TARGETS[kind]
            made[kind] = train_artifact(serving_store_env, serving_store, tmp_path_factory.mktemp(f"train-{kind}"),
                                        serving_feature_set, target, task)
        return made[kind]

    return artifact


@pytest.fixture(scope="session")
def served_artifact(served_artifacts: Callable[[str], ServedArtifact]) -> ServedArtifact:
    """The binary classifier (target is_fraud) most server tests use."""
    return served_artifacts("binary")


def server_env(store_env: Mapping[str, str], artifact: ServedArtifact, *, model: str = "fraud",
               model_version: str | None = None, **extra: str) -> dict[str, str]:
    """A predictor pod's environment (as `modelversion/desired.py` writes it), bound to loopback."""
    environ = dict(store_env)
    environ.update({
        "KUBELOOP_MODEL": model, "KUBELOOP_MODEL_VERSION": model_version or unique_name(f"{model}-v"),
        "KUBELOOP_NAMESPACE": SERVING_NAMESPACE, "KUBELOOP_ARTIFACT_URI": artifact.uri,
        "KUBELOOP_ARTIFACT_DIGEST": artifact.digest, "PORT": str(closed_port()),
        "KUBELOOP_BIND_ADDRESS": "127.0.0.1", "KUBELOOP_PREDICTION_LOG_FLUSH_SECONDS": "0.2",
    })
    environ.update(extra)
    return environ


@dataclass
class RunningServer:
    """A server process and what it printed so far (read by a thread, so pipes never fill)."""

    process: subprocess.Popen[str]
    env: Mapping[str, str]
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def request(self, method: str, path: str, body: Any = None, *,
                headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        """(status, decoded JSON or text) of one HTTP request; HTTP errors are answers, not raised."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"content-type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=HANG_GUARD) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def stop(self) -> int:
        """SIGTERM, as the kubelet sends it; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(HANG_GUARD)


def launch_server(env: Mapping[str, str]) -> RunningServer:
    """Start the server process; returns at once (see `start_server` to wait for readiness)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KUBELOOP_", "AWS_", "S3_"))}
    base.update(env)
    base["PYTHONPATH"] = str(REPO / "operator")
    base["OMP_NUM_THREADS"] = "1"
    process = subprocess.Popen([sys.executable, "-m", "kubeloop.modelversion.serve"], env=base, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    server = RunningServer(process=process, env=env)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return server


def start_server(env: Mapping[str, str]) -> RunningServer:
    """Start the server and return once it says it is ready; fails with its output if it exits."""
    server = launch_server(env)
    deadline = time.monotonic() + HANG_GUARD
    while " ready on " not in server.output:
        if server.process.poll() is not None:
            time.sleep(0.1)  # let the reader thread take the last lines
            raise AssertionError(f"the server exited with {server.process.returncode}:\n{server.output}")
        if time.monotonic() > deadline:
            server.process.kill()
            raise AssertionError(f"the server did not get ready:\n{server.output}")
        time.sleep(0.02)
    return server
