"""`ObjectStore`: kubeloop's one way to read and write the S3 bucket (minio SDK underneath).

Objects are streamed in both directions (files are never loaded whole: uploads go in parts of
`StoreConfig.part_size`, downloads in 1 MiB chunks to a temporary file beside the destination),
and every object kubeloop writes carries its sha256 as user metadata (`x-amz-meta-sha256`), so
any reader can check what it got. Versions (`versions.py`) and compare-and-swap documents
(`documents.py`) are built on the primitives here and exposed as methods of the same class.

Every request goes through `transport.call`: bounded retries of transient failures, errors
translated to `StoreError` subclasses whose messages name the endpoint and never a credential.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

from minio import Minio
from minio.commonconfig import REPLACE, CopySource
from minio.deleteobjects import DeleteObject
from minio.helpers import ObjectWriteResult

from kubeloop.store import documents, versions
from kubeloop.store.config import StoreConfig
from kubeloop.store.content import (
    CHUNK_SIZE,
    JSON_TYPE,
    Content,
    HashingReader,
    StreamHasher,
    content_of_bytes,
    content_of_file,
    decode_json,
    encode_json,
    format_digest,
    is_md5_etag,
    parse_digest,
    part_size_for,
)
from kubeloop.store.documents import TaggedJson
from kubeloop.store.errors import (
    ConditionalWritesUnsupported,
    Conflict,
    DigestMismatch,
    NotFound,
    StoreError,
)
from kubeloop.store.layout import temporaries_root
from kubeloop.store.transport import (
    Operation,
    RetryPolicy,
    call,
    http_pool,
    is_store_failure,
    is_transient,
    may_have_been_applied,
    translate,
)

log = logging.getLogger("kubeloop.store")

DIGEST_METADATA = "sha256"  # sent as x-amz-meta-sha256: <hex>
_META_PREFIX = "x-amz-meta-"
BINARY_TYPE = "application/octet-stream"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ObjectInfo:
    """One object as the store describes it.

    `digest` is `sha256:<hex>` from the object's metadata when kubeloop wrote it (None for
    listings, which do not carry metadata, and for objects written by other tools).
    """

    key: str
    size: int
    etag: str | None = None
    last_modified: datetime | None = None
    digest: str | None = None
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


class ObjectStore:
    """The object store of one bucket.

    Thread-safe (the SDK's client and its connection pool are), so one instance per process
    serves every reconcile worker. `clock` is injected so that version timestamps are testable.
    """

    def __init__(self, config: StoreConfig, *, clock: Callable[[], datetime] = utc_now,
                 retry_policy: RetryPolicy | None = None) -> None:
        self.config = config
        self.clock = clock
        self.retry_policy = retry_policy or RetryPolicy.from_config(config)
        self._client = Minio(config.endpoint, access_key=config.access_key, secret_key=config.secret_key,
                             secure=config.secure, region=config.region, http_client=http_pool(config))
        self._conditional_writes: bool | None = None
        self._probe_lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **kwargs: Any) -> ObjectStore:
        """The store a pod's environment describes (see `StoreConfig.from_env`)."""
        return cls(StoreConfig.from_env(environ), **kwargs)

    def __repr__(self) -> str:
        return f"ObjectStore({self.config.url}, bucket={self.bucket!r})"

    @property
    def bucket(self) -> str:
        return self.config.bucket

    def uri(self, key: str) -> str:
        """`s3://bucket/key`, the form status fields and run records use."""
        return f"s3://{self.bucket}/{key}"

    def _call(self, action: str, key: str | None, function: Callable[[], Any], **kwargs: Any) -> Any:
        return call(self.config, Operation(action, self.bucket, key), function,
                    policy=self.retry_policy, **kwargs)

    # -- bucket ----------------------------------------------------------------------------------

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (idempotent, also when two callers race)."""
        def ensure() -> None:
            if self._client.bucket_exists(self.bucket):
                return
            try:
                self._client.make_bucket(self.bucket)
            except Exception as error:
                if getattr(error, "code", None) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise
        self._call("creating", None, ensure)

    # -- writing ---------------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, *, content_type: str = BINARY_TYPE,
                  metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        """Write `data` to `key` (replacing it), with its sha256 as metadata; verified."""
        return self.upload(key, data, content_type=content_type, metadata=metadata)

    def put_file(self, key: str, path: Path | str, *, content_type: str = BINARY_TYPE,
                 metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        """Stream the file at `path` to `key` (multipart above `part_size`); verified."""
        # A Path (or subclass) is used as given: Path(path) would make a new plain PosixPath.
        source = path if isinstance(path, Path) else Path(path)
        return self.upload(key, source, content_type=content_type, metadata=metadata)

    def put_json(self, key: str, doc: Any) -> ObjectInfo:
        """Write a JSON document (sorted keys, UTF-8: equal documents give equal bytes)."""
        return self.upload(key, encode_json(doc), content_type=JSON_TYPE)

    def upload(self, key: str, source: Path | bytes, *, content_type: str = BINARY_TYPE,
               metadata: Mapping[str, str] | None = None, expected: Content | None = None) -> ObjectInfo:
        """Upload `source` to `key` and verify what the server stored.

        The sha256 (and the ETag S3 will compute) is known before the upload starts, from the
        bytes or from one streaming pass over the file, because S3 takes metadata with the
        first request of an upload. The upload then reads through a hasher: a file that changes
        while it is sent is detected (the object is deleted and DigestMismatch raised) instead
        of being stored under a digest it does not have. Finally `verify` checks size and
        content against the server's own view.
        """
        if expected is None:
            size = source.stat().st_size if isinstance(source, Path) else len(source)
            part_size = part_size_for(size, self.config.part_size)
            expected = content_of_file(source, part_size) if isinstance(source, Path) \
                else content_of_bytes(source, part_size)
        else:
            part_size = part_size_for(expected.size, self.config.part_size)
        headers = _metadata_headers(metadata)
        headers[DIGEST_METADATA] = expected.sha256

        def attempt() -> ObjectWriteResult:
            with _open_source(source) as stream:
                reader = HashingReader(stream, etags=False)
                result = self._client.put_object(
                    self.bucket, key, cast(BinaryIO, reader), expected.size, content_type=content_type,
                    metadata=cast(Any, headers), part_size=part_size,
                    num_parallel_uploads=self.config.parallel_uploads)
            sent = reader.hasher.result()
            if sent.sha256 != expected.sha256 or sent.size != expected.size:
                self._delete_quietly([key])
                what = source if isinstance(source, Path) else "the data"
                raise DigestMismatch(
                    f"{what} changed while it was uploaded to {self.uri(key)}: it had "
                    f"{expected.digest} ({expected.size} bytes) when hashed and {sent.digest} "
                    f"({sent.size} bytes) when sent; the object was removed",
                    key=key, expected=expected.digest, actual=sent.digest)
            return result

        self._call("uploading to", key, attempt)
        return self.verify(key, expected)

    def verify(self, key: str, expected: Content) -> ObjectInfo:
        """Check that `key` holds exactly the bytes described by `expected`; its `ObjectInfo` if so.

        Size always comes from a HEAD. Content is checked with the server's ETag when it has
        the MD5 form S3 gives unencrypted objects (MD5 of the object, or MD5 of the part MD5s
        and `-N` for multipart): the server computes it from the bytes it stored, and
        `expected` was computed from the same bytes as the sha256, so equal ETags prove the
        stored bytes have the expected sha256 without transferring them again. When the ETag
        is of another kind or differs (SSE-KMS objects, a copy that re-chunked the object), the
        object is read back and hashed, which is authoritative. DigestMismatch otherwise.
        """
        info = self.stat(key)
        if info.size != expected.size:
            raise DigestMismatch(
                f"{self.uri(key)} holds {info.size} bytes where {expected.size} were written "
                f"({expected.digest}): the upload was truncated or the object replaced",
                key=key, expected=expected.digest, actual=f"size {info.size}")
        if info.digest is not None and info.digest != expected.digest:
            raise DigestMismatch(
                f"{self.uri(key)} is recorded with {info.digest} but {expected.digest} was written: "
                "another writer replaced it", key=key, expected=expected.digest, actual=info.digest)
        etag = (info.etag or "").strip('"').lower()
        if is_md5_etag(etag) and etag in expected.etags:
            return info
        actual = self.read_back(key)
        if actual.sha256 != expected.sha256:
            raise DigestMismatch(
                f"{self.uri(key)} has {actual.digest} but {expected.digest} was written",
                key=key, expected=expected.digest, actual=actual.digest)
        return info

    def read_back(self, key: str) -> Content:
        """The sha256 of the stored bytes, streamed (bounded memory)."""
        def attempt() -> Content:
            hasher = StreamHasher(etags=False)
            with self._raw_stream(key) as response:
                for chunk in response.stream(CHUNK_SIZE):
                    hasher.update(chunk)
            return hasher.result()
        return cast(Content, self._call("reading back", key, attempt))

    def copy(self, source_key: str, key: str, *, content_type: str = BINARY_TYPE,
             metadata: Mapping[str, str] | None = None) -> str:
        """Server-side copy of `source_key` to `key` with the given metadata (replaced, not
        copied); the new object's ETag. Follow with `verify` to check what the copy stored.

        Metadata is always given explicitly: the SDK copies objects above 5 GiB as a multipart
        compose that would drop metadata under the COPY directive.
        """
        headers = _metadata_headers(metadata)
        headers["Content-Type"] = content_type
        result = self._call("copying to", key, lambda: self._client.copy_object(
            self.bucket, key, CopySource(self.bucket, source_key), metadata=cast(Any, headers),
            metadata_directive=REPLACE))
        return str(result.etag or "").strip('"')

    # -- reading ---------------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        """The whole object in memory: for small objects (JSON documents, manifests)."""
        return self.get_with_info(key)[0]

    def get_json(self, key: str) -> Any:
        """A JSON document; StoreError naming the key when it is not JSON."""
        return decode_json(self.get_bytes(key), self.uri(key))

    def download_file(self, key: str, dest: Path | str, *, expected_digest: str | None = None,
                      expected_size: int | None = None) -> ObjectInfo:
        """Stream `key` into the file `dest`, checking its sha256 on the way.

        The expected digest is `expected_digest` when given (a manifest's record: the one that
        counts, since metadata can be rewritten together with the bytes) or the object's own
        metadata. The bytes go to a temporary file beside `dest` that is renamed into place only
        once verified, so `dest` never holds unverified or partial content.
        """
        destination = Path(dest)
        destination.parent.mkdir(parents=True, exist_ok=True)

        def attempt() -> ObjectInfo:
            descriptor, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
            try:
                hasher = StreamHasher(etags=False)
                with os.fdopen(descriptor, "wb") as handle, self._raw_stream(key) as response:
                    info = _info_from_headers(key, response.headers)
                    for chunk in response.stream(CHUNK_SIZE):
                        hasher.update(chunk)
                        handle.write(chunk)
                actual = hasher.result()
                wanted = expected_digest or info.digest
                if wanted is not None and parse_digest(wanted) != actual.sha256:
                    raise DigestMismatch(
                        f"{self.uri(key)} has {actual.digest} but {format_digest(parse_digest(wanted))} "
                        "was recorded for it: the object was modified or corrupted after it was written; "
                        "refusing to use it", key=key, expected=format_digest(parse_digest(wanted)),
                        actual=actual.digest)
                if expected_size is not None and actual.size != expected_size:
                    raise DigestMismatch(
                        f"{self.uri(key)} has {actual.size} bytes where {expected_size} were recorded",
                        key=key, expected=f"size {expected_size}", actual=f"size {actual.size}")
                os.replace(temporary, destination)
                return ObjectInfo(key=key, size=actual.size, etag=info.etag,
                                  last_modified=info.last_modified, digest=actual.digest,
                                  content_type=info.content_type, metadata=info.metadata)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise

        return cast(ObjectInfo, self._call("downloading", key, attempt))

    @contextlib.contextmanager
    def open_stream(self, key: str) -> Iterator[BinaryIO]:
        """A readable stream of the object, for consumers that parse as they read.

        Opening is retried; a failure in the middle of reading is not (the caller has consumed
        part of the stream) and surfaces as StoreUnavailable.
        """
        response = self._call("reading", key, lambda: self._client.get_object(self.bucket, key))
        try:
            yield cast(BinaryIO, response)
        except Exception as error:
            if is_store_failure(error):
                raise translate(error, self.config, Operation("reading", self.bucket, key)) from error
            raise
        finally:
            response.close()
            response.release_conn()

    @contextlib.contextmanager
    def _raw_stream(self, key: str) -> Iterator[Any]:
        """The SDK's streaming GET, untranslated and not retried: for use inside an attempt
        that `_call` retries as a whole (nesting retries would multiply the attempts)."""
        response = self._client.get_object(self.bucket, key)
        try:
            yield response
        finally:
            response.close()
            response.release_conn()

    def get_with_info(self, key: str) -> tuple[bytes, ObjectInfo]:
        """The whole object and what its GET response said (ETag, metadata) in one request,
        so that body and ETag belong together (compare-and-swap relies on it)."""
        def attempt() -> tuple[bytes, ObjectInfo]:
            response = self._client.get_object(self.bucket, key)
            try:
                data = response.read()
                return data, _info_from_headers(key, response.headers, size=len(data))
            finally:
                response.close()
                response.release_conn()
        return cast(tuple[bytes, ObjectInfo], self._call("reading", key, attempt))

    def stat(self, key: str) -> ObjectInfo:
        """Size, ETag, time, digest and metadata of `key`; NotFound if it does not exist."""
        stat = self._call("inspecting", key, lambda: self._client.stat_object(self.bucket, key))
        return ObjectInfo(
            key=key, size=int(stat.size or 0), etag=(stat.etag or "").strip('"') or None,
            last_modified=stat.last_modified, digest=_digest_from_metadata(stat.metadata or {}),
            content_type=stat.content_type, metadata=_user_metadata(stat.metadata or {}))

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except NotFound:
            return False
        return True

    def list_objects(self, prefix: str = "", *, recursive: bool = True) -> Iterator[ObjectInfo]:
        """Objects under `prefix`; lazily, page by page.

        Recursive listings are in key order. Non-recursive listings also yield the "folders"
        one level down, as ObjectInfo with a key ending in '/' and size 0, after the objects of
        the same page (the SDK's order; S3 returns them as two lists). A transient failure between pages resumes after the last
        key yielded instead of starting over.
        """
        last: str | None = None
        failures = 0
        while True:
            try:
                for item in self._client.list_objects(self.bucket, prefix=prefix, recursive=recursive,
                                                      start_after=last):
                    last = item.object_name
                    yield ObjectInfo(key=item.object_name, size=int(item.size or 0),
                                     etag=(item.etag or "").strip('"') or None,
                                     last_modified=item.last_modified)
                return
            except Exception as error:
                if not is_store_failure(error):
                    raise
                failures += 1
                if not is_transient(error) or failures >= self.retry_policy.max_attempts:
                    raise translate(error, self.config, Operation("listing", self.bucket, prefix),
                                    attempts=failures) from error
                self.retry_policy.sleep(self.retry_policy.delay(failures))

    # -- deleting --------------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error (S3 semantics)."""
        self._call("deleting", key, lambda: self._client.remove_object(self.bucket, key))

    def delete_many(self, keys: Iterable[str], *, retry: bool = True) -> int:
        """Remove keys in batches of up to 1000 (one request each); the number removed."""
        pending = list(keys)
        removed = 0
        for start in range(0, len(pending), 1000):
            batch = pending[start:start + 1000]

            def remove(batch: list[str] = batch) -> None:
                errors = list(self._client.remove_objects(self.bucket, [DeleteObject(key) for key in batch]))
                if errors:
                    raise StoreError(f"could not delete {len(errors)} objects in s3://{self.bucket}: "
                                     f"{errors[0].code} on {errors[0].name}")
            self._call("deleting objects in", batch[0], remove, retry=retry)
            removed += len(batch)
        return removed

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under `prefix` (which must be non-empty); the number removed."""
        if not prefix:
            raise ValueError("refusing to delete the whole bucket: give a non-empty prefix")
        return self.delete_many([info.key for info in self.list_objects(prefix, recursive=True)])

    def _delete_quietly(self, keys: list[str]) -> None:
        """Best-effort cleanup that never hides the error being handled."""
        if not keys:
            return
        try:
            self.delete_many(keys, retry=False)
        except StoreError as error:
            log.warning("object store: could not remove %d temporary objects (%s); "
                        "cleanup_temporaries() removes leftovers later", len(keys), error)

    def cleanup_temporaries(self, prefix: str, *, older_than: timedelta = timedelta(hours=1)) -> int:
        """Remove temporaries that interrupted publications left under `prefix`; the number removed.

        Only temporaries older than `older_than` go: younger ones may belong to a publication
        still in progress (a pod that is uploading a large checkpoint right now).
        """
        cutoff = self.clock() - older_than
        stale = [info.key for info in self.list_objects(temporaries_root(prefix), recursive=True)
                 if info.last_modified is not None and info.last_modified < cutoff]
        return self.delete_many(stale) if stale else 0

    # -- URLs ------------------------------------------------------------------------------------

    def presigned_get_url(self, key: str, *, expires: timedelta = timedelta(hours=1)) -> str:
        """A URL that lets anyone holding it GET `key` until it expires (computed locally).

        The URL embeds the access key id and a signature, never the secret key; still, treat it
        as a bearer credential and do not log it.
        """
        return cast(str, self._call("signing a URL for", key,
                                    lambda: self._client.presigned_get_object(self.bucket, key, expires=expires),
                                    retry=False))

    # -- conditional writes ----------------------------------------------------------------------

    def put_bytes_conditionally(self, key: str, data: bytes, *, if_match: str | None = None,
                                if_none_match: bool = False, content_type: str = BINARY_TYPE) -> str:
        """PUT with `If-Match: <etag>` or `If-None-Match: *`; the new ETag, or Conflict.

        A transient failure is retried; if the failed attempt may have reached the server and
        the retry then meets a failed precondition, the object is read back: when it holds our
        bytes, our write did land and this is success, not a conflict.
        """
        if (if_match is None) == (not if_none_match):
            raise ValueError("give exactly one of if_match and if_none_match")
        content = content_of_bytes(data)
        headers = {"Content-Type": content_type, f"{_META_PREFIX}{DIGEST_METADATA}": content.sha256}
        if if_match is not None:
            tag = if_match.strip('"')
            headers["If-Match"] = f'"{tag}"'
        else:
            headers["If-None-Match"] = "*"
        maybe_applied = False

        def note(error: BaseException) -> None:
            nonlocal maybe_applied
            maybe_applied = maybe_applied or may_have_been_applied(error)

        def attempt() -> str:
            # The SDK's public put_object turns unknown headers into x-amz-meta-* metadata, so
            # the conditional headers go through its lower-level PUT (present in minio 7.2).
            result = self._client._put_object(self.bucket, key, data, cast(Any, headers))
            return (result.etag or "").strip('"')

        try:
            return cast(str, self._call("writing", key, attempt, on_retry=note))
        except (Conflict, NotFound):
            # NotFound: AWS answers If-Match on a deleted key with 404, SeaweedFS with 412.
            if maybe_applied:
                with contextlib.suppress(NotFound):
                    stored, info = self.get_with_info(key)
                    if stored == data and info.etag:
                        return info.etag
            state = "was changed by another writer since it was read" if if_match is not None \
                else "already exists"
            raise Conflict(f"{self.uri(key)} {state}"
                           + (f" (expected ETag {if_match})" if if_match is not None else ""),
                           key=key) from None

    def supports_conditional_writes(self, near_key: str) -> bool:
        """Whether the server honours If-Match / If-None-Match on PUT (probed once, then cached).

        Servers that do not know these headers ignore them and overwrite, which would turn
        every compare-and-swap into a silent lost update, so this is measured, not assumed: a
        probe object beside `near_key` (within any prefix-scoped permission the key has) is
        created, then written again with a false precondition of each kind; both must fail.
        """
        with self._probe_lock:
            if self._conditional_writes is None:
                probe = f"{near_key}.cas-probe-{uuid.uuid4().hex}"
                try:
                    self.put_bytes_conditionally(probe, b"probe", if_none_match=True)
                    honoured = True
                    for condition in ({"if_none_match": True}, {"if_match": "0" * 32}):
                        try:
                            self.put_bytes_conditionally(probe, b"overwritten", **cast(Any, condition))
                            honoured = False
                        except Conflict:
                            pass
                finally:
                    self._delete_quietly([probe])
                self._conditional_writes = honoured
                log.info("object store at %s %s conditional writes", self.config.url,
                         "supports" if honoured else "ignores")
            return self._conditional_writes

    def require_conditional_writes(self, near_key: str) -> None:
        """Raise ConditionalWritesUnsupported unless the server honours preconditions."""
        if not self.supports_conditional_writes(near_key):
            raise ConditionalWritesUnsupported(
                f"the object store at {self.config.url} ignores If-Match/If-None-Match preconditions, "
                "so concurrent updates of shared documents (the registry index) could be lost; use an "
                "S3 service that supports conditional writes (AWS S3, MinIO, SeaweedFS >= 3.8x, R2)")

    # -- versions (versions.py) ------------------------------------------------------------------

    def publish_version(self, prefix: str, files: Mapping[str, Path | bytes],
                        manifest: Mapping[str, Any]) -> versions.Version:
        """See `versions.publish_version`: atomic, content-addressed, idempotent publication."""
        return versions.publish_version(self, prefix, files, manifest)

    def list_versions(self, prefix: str) -> list[versions.Version]:
        """See `versions.list_versions`: every published version, oldest first."""
        return versions.list_versions(self, prefix)

    def latest_version(self, prefix: str) -> versions.Version | None:
        """The most recently published version under `prefix`, or None."""
        found = versions.list_versions(self, prefix)
        return found[-1] if found else None

    def read_manifest(self, prefix: str, version_id: str) -> versions.Version:
        """See `versions.read_manifest`: one version, its manifest checked against its id."""
        return versions.read_manifest(self, prefix, version_id)

    def verify_version(self, uri: str, digest: str) -> versions.Version:
        """See `versions.verify_version`: a version whose every byte was read and checked."""
        return versions.verify_version(self, uri, digest)

    def download(self, version: versions.Version, name: str, dest: Path | str) -> Path:
        """See `versions.download`: a file of a version, verified against the manifest's digest."""
        return versions.download(self, version, name, dest)

    # -- compare-and-swap documents (documents.py) -----------------------------------------------

    def read_json_with_etag(self, key: str) -> TaggedJson:
        """See `documents.read_json_with_etag`."""
        return documents.read_json_with_etag(self, key)

    def write_json_if_match(self, key: str, doc: Any, etag: str | None) -> str:
        """See `documents.write_json_if_match`."""
        return documents.write_json_if_match(self, key, doc, etag)

    def update_json(self, key: str, change: Callable[[Any], Any], *, attempts: int = 10) -> TaggedJson:
        """See `documents.update_json`."""
        return documents.update_json(self, key, change, attempts=attempts)


# -- helpers -----------------------------------------------------------------------------------


def _metadata_headers(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """User metadata as the SDK wants it (bare names; it adds x-amz-meta-)."""
    headers: dict[str, str] = {}
    for name, value in (metadata or {}).items():
        bare = name.lower().removeprefix(_META_PREFIX)
        if not bare or not all(c.isalnum() or c in "-_" for c in bare):
            raise ValueError(f"metadata name {name!r} must be letters, digits, '-' or '_'")
        headers[bare] = value
    return headers


def _user_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower()[len(_META_PREFIX):]: value for name, value in headers.items()
            if name.lower().startswith(_META_PREFIX)}


def _digest_from_metadata(headers: Mapping[str, str]) -> str | None:
    value = _user_metadata(headers).get(DIGEST_METADATA)
    if not value:
        return None
    try:
        return format_digest(parse_digest(value))
    except ValueError:
        return None


def _info_from_headers(key: str, headers: Mapping[str, str], *, size: int | None = None) -> ObjectInfo:
    modified = headers.get("Last-Modified")
    last_modified = None
    if modified:
        with contextlib.suppress(TypeError, ValueError):
            last_modified = parsedate_to_datetime(modified)
    length = headers.get("Content-Length")
    return ObjectInfo(
        key=key, size=size if size is not None else int(length or 0),
        etag=(headers.get("ETag") or "").strip('"') or None, last_modified=last_modified,
        digest=_digest_from_metadata(headers), content_type=headers.get("Content-Type"),
        metadata=_user_metadata(headers))


@contextlib.contextmanager
def _open_source(source: Path | bytes) -> Iterator[BinaryIO]:
    if isinstance(source, Path):
        with source.open("rb") as handle:
            yield handle
    else:
        yield io.BytesIO(source)
