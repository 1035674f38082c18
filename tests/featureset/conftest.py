"""Fixtures of the materializer tests: one real S3 server (SeaweedFS) for the session, with
kubeloop's bucket and a second bucket that plays a team's own data bucket.

Every test materializes a FeatureSet of its own name, so tests never see each other's versions
or run results, and no test pays for a server start.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubeloop.local.s3 import LocalS3
from kubeloop.store import ObjectStore, StoreConfig

STORE_BUCKET = "kubeloop-materialize"
SOURCE_BUCKET = "team-raw-data"
NAMESPACE = "ml"


@pytest.fixture(scope="session")
def materialize_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    with LocalS3(tmp_path_factory.mktemp("materialize-s3")) as s3:
        s3.ensure_bucket(STORE_BUCKET)
        s3.ensure_bucket(SOURCE_BUCKET)
        yield s3


@pytest.fixture(scope="session")
def store_env(materialize_s3: LocalS3) -> dict[str, str]:
    """The object store part of the pod's environment, as the controller sets it."""
    secret = materialize_s3.secret_manifest("kubeloop-s3", NAMESPACE)["stringData"]
    return {
        "KUBELOOP_S3_ENDPOINT": secret["S3_ENDPOINT"],
        "KUBELOOP_S3_BUCKET": STORE_BUCKET,
        "AWS_ACCESS_KEY_ID": secret["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": secret["AWS_SECRET_ACCESS_KEY"],
        "AWS_REGION": secret["AWS_REGION"],
    }


@pytest.fixture(scope="session")
def store(store_env: dict[str, str]) -> ObjectStore:
    return ObjectStore(StoreConfig.from_env(store_env))


@pytest.fixture(scope="session")
def source_store(store: ObjectStore) -> ObjectStore:
    return ObjectStore(store.config.replace(bucket=SOURCE_BUCKET))


@dataclass
class Run:
    """What one materialization run left behind."""

    code: int
    out: str
    err: str
    result: dict[str, Any] | None


@dataclass
class Materializer:
    """Runs `materialize.run` for one FeatureSet of the test's own, as its pod would."""

    store: ObjectStore
    store_env: dict[str, str]
    name: str
    runs: int = 0

    @property
    def prefix(self) -> str:
        return f"featuresets/{NAMESPACE}/{self.name}"

    def environment(self, spec: Mapping[str, Any], *, generation: int = 1,
                    extra: Mapping[str, str] | None = None) -> dict[str, str]:
        import json

        self.runs += 1
        env = dict(self.store_env)
        env.update({
            "KUBELOOP_FEATURESET": json.dumps({"name": self.name, "namespace": NAMESPACE, "uid": "uid-1234",
                                               "generation": generation, "spec": dict(spec)}),
            "KUBELOOP_RUN_ID": f"{self.name}-run-{self.runs}",
            "HOSTNAME": f"{self.name}-run-{self.runs}-pod",
        })
        env.update(extra or {})
        return env

    def run(self, spec: Mapping[str, Any], *, extra: Mapping[str, str] | None = None, generation: int = 1,
            **options: Any) -> Run:
        from kubeloop.featureset import materialize
        from kubeloop.featureset.results import run_result_key

        env = self.environment(spec, generation=generation, extra=extra)
        out, err = io.StringIO(), io.StringIO()
        code = materialize.run(env, options=materialize.Options(**options), out=out, err=err)
        key = run_result_key(NAMESPACE, self.name, env["KUBELOOP_RUN_ID"])
        result = self.store.get_json(key) if self.store.exists(key) else None
        return Run(code, out.getvalue(), err.getvalue(), result)

    def keys(self) -> list[str]:
        """Every object under the FeatureSet's prefix except its run results."""
        return [info.key for info in self.store.list_objects(self.prefix + "/")
                if not info.key.startswith(self.prefix + "/runs/")]


@pytest.fixture
def materializer(request: pytest.FixtureRequest, store: ObjectStore, store_env: dict[str, str]) -> Materializer:
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return Materializer(store, store_env, f"{slug}-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
