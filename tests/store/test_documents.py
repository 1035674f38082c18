"""Compare-and-swap JSON documents (the registry's alias index) on a real S3 server."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import urllib3

from kubeloop.store import ConditionalWritesUnsupported, Conflict, ObjectStore, StoreConfig, TaggedJson


@pytest.fixture
def fresh_store(store_config: StoreConfig) -> ObjectStore:
    """A store whose conditional-write probe has not run yet."""
    return ObjectStore(store_config)


def test_create_read_and_swap(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}/index.json"
    assert store.read_json_with_etag(key) == TaggedJson(None, None)
    etag = store.write_json_if_match(key, {"aliases": {"champion": "v1"}}, None)
    read = store.read_json_with_etag(key)
    assert read == TaggedJson({"aliases": {"champion": "v1"}}, etag)
    with pytest.raises(Conflict, match="already exists"):
        store.write_json_if_match(key, {"aliases": {}}, None)  # create-only refuses to replace
    new_etag = store.write_json_if_match(key, {"aliases": {"champion": "v2"}}, etag)
    assert new_etag != etag
    with pytest.raises(Conflict, match="changed by another writer") as raised:
        store.write_json_if_match(key, {"aliases": {"champion": "stale"}}, etag)
    assert raised.value.key == key
    assert store.read_json_with_etag(key) == TaggedJson({"aliases": {"champion": "v2"}}, new_etag)


def test_two_writers_one_wins_the_other_detects_it_and_merges(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}/index.json"
    store.write_json_if_match(key, {"aliases": {}}, None)
    a = store.read_json_with_etag(key)
    b = store.read_json_with_etag(key)
    store.write_json_if_match(key, {"aliases": {**a.doc["aliases"], "champion": "v3"}}, a.etag)
    with pytest.raises(Conflict):
        store.write_json_if_match(key, {"aliases": {**b.doc["aliases"], "staging": "v4"}}, b.etag)
    fresh = store.read_json_with_etag(key)
    store.write_json_if_match(key, {"aliases": {**fresh.doc["aliases"], "staging": "v4"}}, fresh.etag)
    assert store.read_json_with_etag(key).doc == {"aliases": {"champion": "v3", "staging": "v4"}}


def test_a_document_deleted_since_it_was_read_is_a_conflict(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}/index.json"
    etag = store.write_json_if_match(key, {"n": 1}, None)
    store.delete(key)
    with pytest.raises(Conflict):
        store.write_json_if_match(key, {"n": 2}, etag)
    assert not store.exists(key)


def test_concurrent_updates_lose_nothing(store_config: StoreConfig, prefix: str) -> None:
    key = f"{prefix}/counter.json"
    writers, increments = 8, 10
    errors: list[BaseException] = []

    def work(writer: int) -> None:
        store = ObjectStore(store_config)  # one client each, as separate pods would have
        try:
            for step in range(increments):
                store.update_json(key, lambda doc, w=writer, s=step: {
                    "n": (doc or {"n": 0})["n"] + 1, "log": [*(doc or {"log": []})["log"], f"{w}.{s}"]},
                    attempts=100)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    final = ObjectStore(store_config).read_json_with_etag(key).doc
    assert final["n"] == writers * increments
    assert sorted(final["log"]) == sorted(f"{w}.{s}" for w in range(writers) for s in range(increments))


def test_update_without_change_writes_nothing(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}/index.json"
    written = store.update_json(key, lambda doc: {"aliases": {"champion": "v1"}})
    again = store.update_json(key, lambda doc: doc)
    assert again == written


def test_seaweedfs_honours_conditional_writes_and_the_probe_cleans_up(fresh_store: ObjectStore,
                                                                      prefix: str) -> None:
    assert fresh_store.supports_conditional_writes(f"{prefix}/index.json") is True
    assert list(fresh_store.list_objects(f"{prefix}/")) == []


def test_a_server_that_ignores_preconditions_is_refused(fresh_store: ObjectStore, prefix: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulates an S3 service without conditional writes: it drops the headers and overwrites."""
    real_put = fresh_store._client._put_object

    def ignoring(bucket: str, key: str, data: bytes, headers: dict[str, Any], *args: Any) -> Any:
        kept = {name: value for name, value in headers.items() if not name.lower().startswith("if-")}
        return real_put(bucket, key, data, kept, *args)
    monkeypatch.setattr(fresh_store._client, "_put_object", ignoring)
    key = f"{prefix}/index.json"
    with pytest.raises(ConditionalWritesUnsupported, match="could be lost"):
        fresh_store.write_json_if_match(key, {"aliases": {}}, None)
    assert not fresh_store.exists(key)
    assert list(fresh_store.list_objects(f"{prefix}/")) == []  # probe removed


def test_a_write_whose_answer_was_lost_is_not_a_conflict(fresh_store: ObjectStore, prefix: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The PUT lands but the connection drops before the answer: the retry meets its own write."""
    key = f"{prefix}/index.json"
    fresh_store.supports_conditional_writes(key)
    etag = fresh_store.write_json_if_match(key, {"v": 1}, None)
    real_put = fresh_store._client._put_object
    dropped: list[str] = []

    def lose_first_answer(bucket: str, name: str, *args: Any) -> Any:
        result = real_put(bucket, name, *args)
        if not dropped:
            dropped.append(name)
            raise urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
        return result
    monkeypatch.setattr(fresh_store._client, "_put_object", lose_first_answer)
    new_etag = fresh_store.write_json_if_match(key, {"v": 2}, etag)
    assert dropped == [key]
    assert fresh_store.read_json_with_etag(key) == TaggedJson({"v": 2}, new_etag)
