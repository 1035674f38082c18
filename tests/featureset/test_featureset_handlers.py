"""The FeatureSet handler's reads of the object store, against real S3 (the `store` fixture of
tests/featureset/conftest.py): versions as `ObjectStore.list_versions` gives them, each
immutable manifest read once per process."""

from __future__ import annotations

import uuid

import pytest

from kubeloop.featureset import handlers
from kubeloop.store import ObjectStore


@pytest.fixture
def prefix() -> str:
    return f"featuresets/handlers/t-{uuid.uuid4().hex[:8]}"


def test_published_versions_are_those_of_the_store_oldest_first(store: ObjectStore, prefix: str):
    assert handlers.published_versions(store, prefix) == []
    for rows in (10, 20, 30):
        store.publish_version(prefix, {"features.parquet": f"rows={rows}".encode()}, {"rows": rows})
    found = handlers.published_versions(store, prefix)
    assert [v.id for v in found] == [v.id for v in store.list_versions(prefix)]
    assert [v.manifest["rows"] for v in found] == [10, 20, 30]


def test_each_manifest_is_read_once(store: ObjectStore, prefix: str, monkeypatch: pytest.MonkeyPatch):
    store.publish_version(prefix, {"a": b"1"}, {"rows": 1})
    reads: list[str] = []
    original = ObjectStore.read_manifest

    def counting(self: ObjectStore, prefix_: str, version_id: str):  # type: ignore[no-untyped-def]
        reads.append(version_id)
        return original(self, prefix_, version_id)

    monkeypatch.setattr(ObjectStore, "read_manifest", counting)
    first = handlers.published_versions(store, prefix)
    store.publish_version(prefix, {"a": b"2"}, {"rows": 2})
    second = handlers.published_versions(store, prefix)
    assert len(first) == 1 and len(second) == 2
    assert reads == [first[0].id, second[1].id]  # the new one only


def test_a_tampered_manifest_is_left_out(store: ObjectStore, prefix: str):
    good = store.publish_version(prefix, {"a": b"good"}, {"rows": 1})
    bad = store.publish_version(prefix, {"a": b"bad"}, {"rows": 2})
    document = store.get_json(bad.manifest_key)
    document["manifest"]["rows"] = 2000
    store.put_json(bad.manifest_key, document)
    assert [v.id for v in handlers.published_versions(store, prefix)] == [good.id]
