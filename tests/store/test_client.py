"""ObjectStore against a real S3 server (SeaweedFS): round trips, streaming, digests, listing."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
import urllib.request
from collections.abc import Callable
from pathlib import Path, PosixPath
from typing import Any

import pytest

from kubeloop.store import DigestMismatch, NotFound, ObjectStore, StoreConfig, StoreError
from kubeloop.store.content import CHUNK_SIZE, content_of_bytes, content_of_file
from tests.store.conftest import PART_SIZE

HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never via a proxy
LARGE = 30 * 1024 * 1024 + 12345  # 7 parts of 5 MiB, the last one short


def write_random_file(path: Path, size: int) -> Path:
    """A file of random bytes written in chunks (the test itself never holds it in memory)."""
    with path.open("wb") as handle:
        remaining = size
        while remaining:
            step = min(remaining, CHUNK_SIZE)
            handle.write(os.urandom(step))
            remaining -= step
    return path


def test_bytes_round_trip_with_digest_metadata(store: ObjectStore, prefix: str) -> None:
    info = store.put_bytes(f"{prefix}/a.bin", b"hello world", metadata={"purpose": "test"})
    expected = "sha256:" + hashlib.sha256(b"hello world").hexdigest()
    assert info.digest == expected and info.size == 11
    assert store.get_bytes(f"{prefix}/a.bin") == b"hello world"
    stat = store.stat(f"{prefix}/a.bin")
    assert stat.digest == expected
    assert stat.metadata["purpose"] == "test"
    assert stat.etag == hashlib.md5(b"hello world").hexdigest()  # the server's own hash


def test_json_round_trip(store: ObjectStore, prefix: str) -> None:
    doc = {"b": [1, 2.5, None], "a": {"ü": True}}
    info = store.put_json(f"{prefix}/doc.json", doc)
    assert store.get_json(f"{prefix}/doc.json") == doc
    assert store.stat(f"{prefix}/doc.json").content_type == "application/json"
    # Sorted keys: equal documents give equal bytes, hence equal ETags.
    assert store.put_json(f"{prefix}/doc2.json", dict(reversed(list(doc.items())))).etag == info.etag
    store.put_bytes(f"{prefix}/not.json", b"\x00garbage")
    with pytest.raises(StoreError, match="not a JSON document"):
        store.get_json(f"{prefix}/not.json")


def test_large_file_streams_through_multipart_in_bounded_memory(
        store_config: StoreConfig, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One part in flight makes the bound tight: (1 + 2) parts of 5 MiB, half the file's size.
    store = ObjectStore(store_config.replace(parallel_uploads=1))
    source = write_random_file(tmp_path / "large.bin", LARGE)
    read_backs: list[str] = []
    original = store.read_back
    monkeypatch.setattr(store, "read_back", lambda key: read_backs.append(key) or original(key))

    tracemalloc.start()
    try:
        info = store.put_file(f"{prefix}/large.bin", source)
        upload_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        downloaded = store.download_file(f"{prefix}/large.bin", tmp_path / "back" / "large.bin")
        download_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    expected = content_of_file(source, PART_SIZE)
    assert info.size == LARGE and info.digest == expected.digest
    assert info.etag == expected.etag and info.etag.endswith("-7")  # multipart, as S3 computes it
    assert downloaded.digest == expected.digest
    assert content_of_file(tmp_path / "back" / "large.bin").sha256 == expected.sha256
    # Verified with the server's ETag, without reading 30 MB back.
    assert read_backs == []
    # At most (parallel uploads + 2) parts held (StoreConfig's bound), and 1 MiB chunks downloading.
    assert upload_peak < (store.config.parallel_uploads + 2) * PART_SIZE + 2 * 1024 * 1024 < LARGE / 1.5
    assert download_peak < 4 * CHUNK_SIZE


def test_download_refuses_object_whose_bytes_do_not_match_its_metadata(
        store: ObjectStore, prefix: str, tmp_path: Path) -> None:
    key = f"{prefix}/blob"
    good = content_of_bytes(b"original")
    # Someone replaces the bytes but keeps the old digest in the metadata.
    store._client.put_object(store.bucket, key, io.BytesIO(b"tampered"), 8, metadata={"sha256": good.sha256})
    dest = tmp_path / "out" / "blob"
    with pytest.raises(DigestMismatch) as raised:
        store.download_file(key, dest)
    assert raised.value.expected == good.digest
    assert raised.value.actual == content_of_bytes(b"tampered").digest
    assert key in str(raised.value)
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # no partial or temporary file left


def test_verify_falls_back_to_reading_back_when_etags_cannot_be_compared(
        store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}/v"
    store.put_bytes(key, b"payload")
    right = content_of_bytes(b"payload")
    opaque = type(right)(size=right.size, sha256=right.sha256)  # no ETag known: only reading back decides
    assert store.verify(key, opaque).size == 7
    wrong = type(right)(size=7, sha256=content_of_bytes(b"PAYLOAD").sha256)
    store._client.put_object(store.bucket, key, io.BytesIO(b"payload"), 7)  # no digest metadata
    with pytest.raises(DigestMismatch):
        store.verify(key, wrong)
    with pytest.raises(DigestMismatch, match="6 were written"):
        store.verify(key, type(right)(size=6, sha256=right.sha256))


class ChangingFile(PosixPath):
    """A file whose content is replaced between the moment it is hashed and the moment it is sent."""

    opened = 0

    def open(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        type(self).opened += 1
        if type(self).opened == 2:
            self.write_bytes(b"B" * self.stat().st_size)
        return super().open(*args, **kwargs)


def test_a_file_changed_during_upload_is_caught_and_removed(store: ObjectStore, prefix: str,
                                                            tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"A" * 1000)
    ChangingFile.opened = 0
    with pytest.raises(DigestMismatch, match="changed while it was uploaded"):
        store.put_file(f"{prefix}/f", ChangingFile(tmp_path / "f"))
    assert not store.exists(f"{prefix}/f")


def test_stat_exists_delete(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}/x"
    assert not store.exists(key)
    with pytest.raises(NotFound) as raised:
        store.stat(key)
    assert raised.value.key == key
    with pytest.raises(NotFound):
        store.get_bytes(key)
    store.put_bytes(key, b"1")
    assert store.exists(key)
    store.delete(key)
    store.delete(key)  # deleting a missing key is fine (S3 semantics)
    assert not store.exists(key)


def test_list_recursive_and_by_folder_then_delete_prefix(store: ObjectStore, prefix: str) -> None:
    keys = [f"{prefix}/a/1", f"{prefix}/a/2", f"{prefix}/b/1", f"{prefix}/top"]
    for key in keys:
        store.put_bytes(key, key.encode())
    listed = list(store.list_objects(f"{prefix}/", recursive=True))
    assert [info.key for info in listed] == sorted(keys)
    assert all(info.size == len(info.key) and info.last_modified is not None for info in listed)
    assert sorted(info.key for info in store.list_objects(f"{prefix}/", recursive=False)) == \
        [f"{prefix}/a/", f"{prefix}/b/", f"{prefix}/top"]
    assert [info.key for info in store.list_objects(f"{prefix}/a/")] == [f"{prefix}/a/1", f"{prefix}/a/2"]
    assert store.delete_prefix(f"{prefix}/a/") == 2
    assert [info.key for info in store.list_objects(f"{prefix}/")] == [f"{prefix}/b/1", f"{prefix}/top"]
    with pytest.raises(ValueError):
        store.delete_prefix("")


def test_listing_more_than_one_page(store: ObjectStore, prefix: str) -> None:
    keys = sorted(f"{prefix}/k{i:04d}" for i in range(1100))  # S3 pages hold 1000 keys
    store.delete_many([])
    for key in keys:
        store._client.put_object(store.bucket, key, io.BytesIO(b""), 0)
    assert [info.key for info in store.list_objects(f"{prefix}/")] == keys
    assert store.delete_prefix(prefix) == 1100


def test_presigned_get_url(store: ObjectStore, prefix: str) -> None:
    store.put_bytes(f"{prefix}/shared.txt", b"for a browser")
    url = store.presigned_get_url(f"{prefix}/shared.txt")
    assert url.startswith(store.config.url) and store.config.secret_key not in url
    with HTTP.open(url, timeout=30) as response:
        assert response.read() == b"for a browser"


def test_open_stream_reads_incrementally(store: ObjectStore, prefix: str) -> None:
    data = os.urandom(3 * CHUNK_SIZE)
    store.put_bytes(f"{prefix}/s", data)
    with store.open_stream(f"{prefix}/s") as stream:
        first = stream.read(10)
        rest = stream.read()
    assert first + rest == data


def test_uri(store: ObjectStore) -> None:
    assert store.uri("a/b") == f"s3://{store.bucket}/a/b"


@pytest.fixture
def count_requests(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    calls = []
    original = store._client._url_open

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return original(*args, **kwargs)
    monkeypatch.setattr(store._client, "_url_open", counting)
    return lambda: len(calls)


def test_small_upload_costs_two_requests(store: ObjectStore, prefix: str,
                                         count_requests: Callable[[], int]) -> None:
    store.put_bytes(f"{prefix}/small", b"x" * 100)
    assert count_requests() == 2  # PUT + HEAD for the size/ETag check; no read back
