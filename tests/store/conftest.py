"""Fixtures of the object store tests: one real S3 server (SeaweedFS) for the session.

Every test gets its own key prefix in one shared bucket, so tests never see each other's
objects and no test pays for a server start. Tests that must stop the server start their own
(`fresh_s3`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kubeloop.local.s3 import LocalS3
from kubeloop.store import ObjectStore, StoreConfig

BUCKET = "kubeloop-store-test"
PART_SIZE = 5 * 1024 * 1024  # S3's minimum part size: multipart kicks in with small test files


@pytest.fixture(scope="session")
def local_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    with LocalS3(tmp_path_factory.mktemp("store-s3")) as s3:
        s3.ensure_bucket(BUCKET)
        yield s3


def config_for(s3: LocalS3, **changes: object) -> StoreConfig:
    """A StoreConfig for `s3` built the way pods build theirs: from the Secret's environment."""
    return StoreConfig.from_env(s3.store_env(BUCKET)).replace(part_size=PART_SIZE, **changes)


@pytest.fixture(scope="session")
def store_config(local_s3: LocalS3) -> StoreConfig:
    return config_for(local_s3)


@pytest.fixture(scope="session")
def store(store_config: StoreConfig) -> ObjectStore:
    return ObjectStore(store_config)


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix of this test's own, e.g. `t/test-publish-is-idempotent-1a2b3c`."""
    name = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:60]
    return f"t/{name}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def fresh_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    """A server of this test's own, for tests that stop and restart it."""
    s3 = LocalS3(tmp_path_factory.mktemp("fresh-s3")).start()
    try:
        s3.ensure_bucket(BUCKET)
        yield s3
    finally:
        s3.stop()


@pytest.fixture
def make_file(tmp_path: Path) -> Callable[[str, bytes], Path]:
    def make(name: str, data: bytes) -> Path:
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path
    return make
