"""Atomic, content-addressed publication of versions against a real S3 server."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path, PosixPath
from typing import Any

import pytest

from kubeloop.local.s3 import LocalS3
from kubeloop.store import (
    Conflict,
    CorruptObject,
    DigestMismatch,
    NotFound,
    ObjectStore,
    StoreConfig,
    StoreUnavailable,
    Version,
)
from kubeloop.store.content import content_of_bytes, content_of_file
from kubeloop.store.layout import blob_key, manifest_key
from kubeloop.store.versions import ID_LENGTH, content_digest
from tests.store.conftest import config_for

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


class Clock:
    """An injected clock: each call returns the next of the given times."""

    def __init__(self, *times: datetime) -> None:
        self.times = list(times)

    def __call__(self) -> datetime:
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


def keys_under(store: ObjectStore, prefix: str) -> dict[str, str | None]:
    return {info.key: info.etag for info in store.list_objects(f"{prefix}/", recursive=True)}


def expected_id(files: dict[str, bytes], manifest: dict[str, Any]) -> str:
    return content_digest({name: content_of_bytes(data) for name, data in files.items()}, manifest)[:ID_LENGTH]


@pytest.fixture
def clocked(store_config: StoreConfig) -> Callable[..., ObjectStore]:
    return lambda *times: ObjectStore(store_config, clock=Clock(*times))


def test_publish_writes_blobs_then_the_manifest(store: ObjectStore, prefix: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    features = tmp_path / "features.parquet"
    features.write_bytes(b"PAR1" + bytes(range(256)) * 100 + b"PAR1")
    writes: list[tuple[str, str]] = []
    original = store._client._url_open

    def recording(method: str, region: str, **kwargs: Any) -> Any:
        if method in {"PUT", "POST"} and kwargs.get("object_name"):
            writes.append((method, kwargs["object_name"]))
        return original(method, region, **kwargs)
    monkeypatch.setattr(store._client, "_url_open", recording)

    version = store.publish_version(prefix, {"features.parquet": features, "params.json": b'{"mean": 1.5}'},
                                    {"rows": 100, "schema": {"x": "float64"}})

    assert len(version.id) == ID_LENGTH and version.digest.startswith(f"sha256:{version.id}")
    assert version.manifest == {"rows": 100, "schema": {"x": "float64"}}
    entry = version.file("features.parquet")
    assert entry.digest == content_of_file(features).digest and entry.size == features.stat().st_size
    assert entry.key == blob_key(prefix, content_of_file(features).sha256)
    # The manifest is the last write, after every blob was copied to its final key.
    assert writes[-1] == ("PUT", manifest_key(prefix, version.id))
    final_copies = [i for i, (_, key) in enumerate(writes) if "/blobs/sha256/" in key]
    assert len(final_copies) == 2 and max(final_copies) < len(writes) - 1
    # Blobs carry their digest; no temporary is left behind.
    assert store.stat(entry.key).digest == entry.digest
    assert sorted(keys_under(store, prefix)) == sorted(
        [version.manifest_key, entry.key, version.file("params.json").key])
    assert store.read_manifest(prefix, version.id) == version
    assert store.list_versions(prefix) == [version]
    out = store.download(version, "features.parquet", tmp_path / "out" / "f.parquet")
    assert out.read_bytes() == features.read_bytes()


def test_republishing_the_same_content_is_a_no_op(clocked: Callable[..., ObjectStore], prefix: str) -> None:
    files = {"model.pt": b"weights" * 1000, "config.json": b"{}"}
    first = clocked(T0).publish_version(prefix, files, {"epochs": 3})
    before = keys_under(clocked(T0), prefix)
    again = clocked(T0 + timedelta(hours=1)).publish_version(prefix, dict(reversed(list(files.items()))),
                                                             {"epochs": 3})
    assert again == first and again.created == T0  # the original version, with its original time
    assert keys_under(clocked(T0), prefix) == before  # nothing rewritten (same keys, same ETags)
    assert first.id == expected_id(files, {"epochs": 3})


def test_different_content_gives_a_different_version(clocked: Callable[..., ObjectStore], prefix: str) -> None:
    store = clocked(T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2))
    base = store.publish_version(prefix, {"data": b"a" * 100}, {"rows": 1})
    changed_byte = store.publish_version(prefix, {"data": b"a" * 99 + b"b"}, {"rows": 1})
    changed_manifest = store.publish_version(prefix, {"data": b"a" * 100}, {"rows": 2})
    assert len({base.id, changed_byte.id, changed_manifest.id}) == 3
    assert [v.id for v in store.list_versions(prefix)] == [base.id, changed_byte.id, changed_manifest.id]
    # Same bytes, same blob: a manifest-only change stores no new data.
    assert changed_manifest.file("data").key == base.file("data").key
    blobs = [key for key in keys_under(store, prefix) if "/blobs/" in key]
    assert len(blobs) == 2


def test_list_versions_orders_by_creation_time_not_by_id(clocked: Callable[..., ObjectStore],
                                                         prefix: str) -> None:
    times = [T0 + timedelta(hours=2), T0, T0 + timedelta(hours=1), T0 + timedelta(microseconds=1)]
    published = []
    for index, moment in enumerate(times):
        published.append(clocked(moment).publish_version(prefix, {"f": f"content {index}".encode()},
                                                         {"index": index, "label": f"v{index}"}))
    listed = clocked(T0).list_versions(prefix)
    assert [v.manifest["index"] for v in listed] == [1, 3, 2, 0]
    assert [v.created for v in listed] == sorted(times)
    assert all(isinstance(v, Version) and v.digest.startswith("sha256:") for v in listed)
    assert clocked(T0).latest_version(prefix) == published[0]
    assert clocked(T0).list_versions(f"{prefix}-empty") == []
    assert clocked(T0).latest_version(f"{prefix}-empty") is None


class FailingFile(PosixPath):
    """Reads normally when hashed, then fails with an I/O error part-way through the upload."""

    opens = 0
    fail_after = 6 * 1024 * 1024  # after the first multipart part has been sent

    def open(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        type(self).opens += 1
        handle = super().open(*args, **kwargs)
        return handle if type(self).opens == 1 else _FailingReader(handle, self.fail_after)


class _FailingReader(io.RawIOBase):
    def __init__(self, handle: Any, fail_after: int) -> None:
        self._handle, self._left = handle, fail_after

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            raise OSError(5, "Input/output error (injected)")
        data = self._handle.read(min(size, self._left) if size >= 0 else self._left)
        self._left -= len(data)
        return bytes(data)

    def __exit__(self, *args: Any) -> None:
        self._handle.close()


def test_a_failure_midway_leaves_no_manifest_and_the_previous_version_listed(
        store: ObjectStore, prefix: str, tmp_path: Path) -> None:
    previous = store.publish_version(prefix, {"features.parquet": b"v1 features"}, {"rows": 1})
    big = tmp_path / "features.parquet"
    big.write_bytes(b"x" * (12 * 1024 * 1024))
    FailingFile.opens = 0
    files = {"params.json": b'{"v": 2}', "features.parquet": FailingFile(big)}
    with pytest.raises(OSError, match="injected"):
        store.publish_version(prefix, files, {"rows": 2})
    assert FailingFile.opens == 2  # hashed, then failed while uploading (not retried: a local error)
    failed_id = content_digest({"params.json": content_of_bytes(b'{"v": 2}'),
                                "features.parquet": content_of_file(big)}, {"rows": 2})[:ID_LENGTH]
    assert not store.exists(manifest_key(prefix, failed_id))
    assert store.list_versions(prefix) == [previous]
    assert [key for key in keys_under(store, prefix) if "/.tmp/" in key] == []  # temporaries cleaned up
    # The same publication succeeds once the file reads again, reusing what was uploaded.
    retried = store.publish_version(prefix, {"params.json": b'{"v": 2}', "features.parquet": big}, {"rows": 2})
    assert retried.id == failed_id
    assert [v.id for v in store.list_versions(prefix)] == [previous.id, retried.id]


class StoppingFile(PosixPath):
    """Stops the S3 server while its bytes are being uploaded (a store crash mid-publication)."""

    server: LocalS3 | None = None
    opens = 0

    def open(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        type(self).opens += 1
        if type(self).opens == 2 and type(self).server is not None:
            type(self).server.stop()
        return super().open(*args, **kwargs)


def test_the_store_going_down_midway_leaves_no_manifest(fresh_s3: LocalS3, tmp_path: Path) -> None:
    config = config_for(fresh_s3, max_attempts=2)
    store = ObjectStore(config)
    previous = store.publish_version("fs/ns/crash", {"a": b"first"}, {"n": 1})
    source = tmp_path / "b.bin"
    source.write_bytes(b"second" * 1000)
    StoppingFile.server, StoppingFile.opens = fresh_s3, 0
    with pytest.raises(StoreUnavailable, match=config.url):
        store.publish_version("fs/ns/crash", {"a": b"first", "b": StoppingFile(source)}, {"n": 2})
    assert StoppingFile.opens >= 2  # hashed, then the store went down while uploading it
    port = fresh_s3.port
    with LocalS3(fresh_s3.directory, port=port) as restarted:
        assert restarted.endpoint == config.url
        assert store.list_versions("fs/ns/crash") == [previous]
        assert len(list(store.list_objects("fs/ns/crash/versions/"))) == 1
        # Temporaries the failed publication could not remove are swept by age.
        store.cleanup_temporaries("fs/ns/crash", older_than=timedelta(0))
        assert [info.key for info in store.list_objects("fs/ns/crash/.tmp/")] == []
        second = store.publish_version("fs/ns/crash", {"a": b"first", "b": source}, {"n": 2})
        assert [v.id for v in store.list_versions("fs/ns/crash")] == [previous.id, second.id]


def test_tampered_blob_is_caught_on_download(store: ObjectStore, prefix: str, tmp_path: Path) -> None:
    version = store.publish_version(prefix, {"model.pt": b"good weights"}, {"acc": 0.9})
    entry = version.file("model.pt")
    forged = b"evil weights"  # same size, and the attacker also rewrites the metadata
    store._client.put_object(store.bucket, entry.key, io.BytesIO(forged), len(forged),
                             metadata={"sha256": content_of_bytes(forged).sha256})
    dest = tmp_path / "model.pt"
    with pytest.raises(DigestMismatch) as raised:
        store.download(version, "model.pt", dest)
    error = raised.value
    assert (error.key, error.expected, error.actual) == (entry.key, entry.digest, content_of_bytes(forged).digest)
    assert entry.key in str(error) and entry.digest in str(error) and error.actual in str(error)
    assert not dest.exists()
    # Truncation is caught as well.
    store._client.put_object(store.bucket, entry.key, io.BytesIO(b"good"), 4)
    with pytest.raises(DigestMismatch):
        store.download(version, "model.pt", dest)


def test_tampered_manifest_is_refused_and_skipped_in_listings(
        store: ObjectStore, prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    kept = store.publish_version(prefix, {"f": b"1"}, {"acc": 0.5})
    edited = store.publish_version(prefix, {"f": b"2"}, {"acc": 0.6})
    document = store.get_json(edited.manifest_key)
    document["manifest"]["acc"] = 0.99  # someone "improves" a metric after the fact
    store.put_json(edited.manifest_key, document)
    with pytest.raises(DigestMismatch, match="modified after publication"):
        store.read_manifest(prefix, edited.id)
    with caplog.at_level(logging.WARNING, logger="kubeloop.store"):
        assert store.list_versions(prefix) == [kept]
    assert edited.id in caplog.text
    store.put_bytes(manifest_key(prefix, "f" * ID_LENGTH), b"not json")  # garbage in the folder
    with pytest.raises(CorruptObject, match="not a JSON document"):
        store.read_manifest(prefix, "f" * ID_LENGTH)
    assert store.list_versions(prefix) == [kept]
    # Re-publishing the genuine content does not overwrite the edited manifest silently.
    with pytest.raises(DigestMismatch):
        store.publish_version(prefix, {"f": b"2"}, {"acc": 0.6})


def test_concurrent_publishers_of_the_same_content_agree(store_config: StoreConfig, prefix: str) -> None:
    results: list[Version] = []
    errors: list[BaseException] = []

    def publish(index: int) -> None:
        try:
            store = ObjectStore(store_config, clock=Clock(T0 + timedelta(seconds=index)))
            results.append(store.publish_version(prefix, {"f": b"same" * 1000}, {"k": "v"}))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(results) == 6
    assert len({(v.id, v.created) for v in results}) == 1  # everyone sees the one winner
    assert ObjectStore(store_config).list_versions(prefix) == results[:1]


def test_publication_input_is_checked(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        store.publish_version("/abs", {"f": b""}, {})
    with pytest.raises(ValueError, match="reserved"):
        store.publish_version(f"{prefix}/versions", {"f": b""}, {})
    with pytest.raises(ValueError, match="JSON"):
        store.publish_version(prefix, {"f": b""}, {"bad": float("nan")})
    with pytest.raises(ValueError, match="file name"):
        store.publish_version(prefix, {"": b""}, {})
    with pytest.raises(TypeError):
        store.publish_version(prefix, {"f": "not bytes"}, {})  # type: ignore[dict-item]
    assert list(store.list_objects(f"{prefix}/")) == []


def test_missing_things_are_not_found(store: ObjectStore, prefix: str, tmp_path: Path) -> None:
    version = store.publish_version(prefix, {"a": b"1", "b": b"2"}, {})
    with pytest.raises(NotFound, match="has no file 'c' \\(it has: a, b\\)"):
        store.download(version, "c", tmp_path / "c")
    with pytest.raises(NotFound, match="does not exist"):
        store.read_manifest(prefix, "0" * ID_LENGTH)
    store.delete(version.file("a").key)
    with pytest.raises(NotFound, match="missing from the store"):
        store.download(version, "a", tmp_path / "a")
    # Re-publication repairs a version whose blob went missing.
    assert store.publish_version(prefix, {"a": b"1", "b": b"2"}, {}) == version
    assert store.download(version, "a", tmp_path / "a").read_bytes() == b"1"


def test_young_temporaries_are_left_to_their_publication(clocked: Callable[..., ObjectStore],
                                                         prefix: str) -> None:
    key = f"{prefix}/.tmp/upload-in-progress/0"
    now = clocked(datetime.now(UTC))
    now.put_bytes(key, b"partial")
    assert now.cleanup_temporaries(prefix, older_than=timedelta(hours=1)) == 0
    assert now.exists(key)
    later = clocked(datetime.now(UTC) + timedelta(hours=2))
    assert later.cleanup_temporaries(prefix, older_than=timedelta(hours=1)) == 1
    assert not now.exists(key)


def test_conflict_is_raised_for_a_taken_id(store: ObjectStore, prefix: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Two contents that map to the same id (a 48-bit collision, forced here) never overwrite."""
    from kubeloop.store import versions
    first = store.publish_version(prefix, {"f": b"one"}, {})
    real = versions.content_digest

    def colliding(files: Any, manifest: Any) -> str:
        digest = real(files, manifest)
        return first.id + digest[ID_LENGTH:] if digest != versions.parse_digest(first.digest) else digest
    monkeypatch.setattr(versions, "content_digest", colliding)
    with pytest.raises(Conflict, match=f"version id {first.id} .* is taken by different content"):
        store.publish_version(prefix, {"f": b"two"}, {})
    monkeypatch.undo()
    assert store.list_versions(prefix) == [first]


@pytest.fixture(autouse=True)
def _reset_path_classes() -> Iterator[None]:
    yield
    StoppingFile.server = None


def test_verify_version_reads_every_byte_and_names_what_changed(store: ObjectStore, prefix: str) -> None:
    version = store.publish_version(prefix, {"model.pt": b"weights" * 100, "model.json": b"{}"}, {"kind": "x"})
    uri = store.uri(version.manifest_key)
    assert store.verify_version(uri, version.digest).id == version.id
    with pytest.raises(DigestMismatch, match="not sha256:0+ as recorded"):
        store.verify_version(uri, "sha256:" + "0" * 64)
    blob = version.file("model.pt")
    # Same size, other bytes, metadata left as it was: only hashing the bytes finds it.
    forged = b"WEIGHTS" * 100
    store._client.put_object(store.bucket, blob.key, io.BytesIO(forged), len(forged),
                             metadata={"sha256": blob.digest[7:]})
    with pytest.raises(DigestMismatch, match="file 'model.pt' of version .* modified or truncated"):
        store.verify_version(uri, version.digest)
    store.delete(blob.key)
    with pytest.raises(NotFound, match="file 'model.pt' of version .* is missing"):
        store.verify_version(uri, version.digest)
    with pytest.raises(ValueError, match="not in this object store's bucket"):
        store.verify_version("s3://elsewhere/x/versions/aaaaaaaaaaaa.json", version.digest)
