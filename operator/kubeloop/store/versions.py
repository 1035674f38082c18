"""Immutable, content-addressed versions published atomically: the contract every later issue uses.

A version is a set of named files plus a JSON manifest (the caller's summary: rows, schema,
metrics ...). Its id is derived from the content, `sha256` of the canonical JSON of
`{files: {name: {sha256, size}}, manifest}`, first 12 hex digits, so the same data always gives
the same version and re-publishing it is a no-op, while any change of a byte or a manifest
field gives a new id. The creation time is recorded in the manifest but is not part of the id.

Publication (`publish_version`) is atomic for readers:
1. each file is hashed locally (streaming) and, unless its content-addressed blob is already
   there (same size and recorded digest: deduplication and idempotency), uploaded under a
   temporary key `<prefix>/.tmp/<upload>/<n>` and verified (size plus the server's ETag; read
   back when the ETag cannot be compared: see `ObjectStore.verify`);
2. each temporary is copied server-side to `<prefix>/blobs/sha256/<hex>` and verified again;
3. only then is the manifest `<prefix>/versions/<id>.json` created, with `If-None-Match: *`,
   so it never replaces an existing manifest: a reader that sees a manifest sees complete,
   verified files, and a failure at any earlier point leaves no manifest;
4. temporaries are deleted (best effort; `ObjectStore.cleanup_temporaries` sweeps leftovers).

Blobs written by a publication that failed later stay, unreferenced; they are
content-addressed, so a retry reuses them instead of uploading again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubeloop.store.content import (
    JSON_TYPE,
    Content,
    content_of_bytes,
    content_of_file,
    encode_json,
    format_digest,
    parse_digest,
    part_size_for,
)
from kubeloop.store.errors import Conflict, CorruptObject, DigestMismatch, NotFound
from kubeloop.store.layout import (
    blob_key,
    check_prefix,
    check_version_id,
    manifest_key,
    temporary_folder,
    version_id_of_manifest_key,
    version_of_uri,
    versions_folder,
)

if TYPE_CHECKING:
    from kubeloop.store.client import ObjectStore

log = logging.getLogger("kubeloop.store")

API_VERSION = "kubeloop.dev/store/v1"
KIND = "VersionManifest"
ID_LENGTH = 12  # hex digits of the content digest; collisions are detected, never overwritten
_LIST_WORKERS = 8  # manifests are small: reading them is latency-bound, so read a few at once


@dataclass(frozen=True)
class FileEntry:
    """One file of a version: where its bytes are and what they must hash to."""

    name: str
    key: str
    digest: str  # sha256:<hex>
    size: int


@dataclass(frozen=True)
class Version:
    """A published version as its manifest records it.

    `manifest` is the caller's mapping as given to `publish_version` (its summary fields, e.g.
    rows and schema for a FeatureSet version, metrics for a run).
    """

    prefix: str
    id: str
    digest: str  # sha256:<hex> of the canonical content; id is its first ID_LENGTH hex digits
    created: datetime
    files: Mapping[str, FileEntry]
    manifest: Mapping[str, Any]

    @property
    def manifest_key(self) -> str:
        return manifest_key(self.prefix, self.id)

    def file(self, name: str) -> FileEntry:
        """The entry of file `name`; NotFound listing the names the version has."""
        try:
            return self.files[name]
        except KeyError:
            raise NotFound(f"version {self.id} of {self.prefix} has no file {name!r} "
                           f"(it has: {', '.join(sorted(self.files)) or 'none'})",
                           key=self.manifest_key) from None


# -- pure parts: the content digest and the manifest document --------------------------------------


def canonical_json(value: Any) -> bytes:
    """The one byte form a JSON value is hashed in: sorted keys, no whitespace, ASCII, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode()


def content_digest(files: Mapping[str, Content], manifest: Mapping[str, Any]) -> str:
    """Bare hex sha256 identifying a version's content (files by digest and size, and manifest)."""
    document = {
        "apiVersion": API_VERSION,
        "files": {name: {"sha256": content.sha256, "size": content.size} for name, content in files.items()},
        "manifest": dict(manifest),
    }
    return hashlib.sha256(canonical_json(document)).hexdigest()


def manifest_document(version: Version) -> dict[str, Any]:
    """The JSON stored at `<prefix>/versions/<id>.json`."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "id": version.id,
        "digest": version.digest,
        "created": format_time(version.created),
        "files": {name: {"key": entry.key, "digest": entry.digest, "size": entry.size}
                  for name, entry in version.files.items()},
        "manifest": dict(version.manifest),
    }


def parse_manifest(prefix: str, version_id: str, document: Any) -> Version:
    """A `Version` from a stored manifest, checked against its own digest and its key's id.

    ValueError when the document is malformed (read_manifest raises it as CorruptObject); DigestMismatch when its content does not hash to
    the digest it claims, or the digest does not give the id it is stored under (the manifest
    was edited after publication).
    """
    key = manifest_key(prefix, version_id)
    if not isinstance(document, dict) or document.get("apiVersion") != API_VERSION \
            or document.get("kind") != KIND:
        raise ValueError(f"{key} is not a {API_VERSION} {KIND}")
    try:
        files: dict[str, FileEntry] = {}
        contents: dict[str, Content] = {}
        for name, entry in dict(document["files"]).items():
            sha256 = parse_digest(str(entry["digest"]))
            size = int(entry["size"])
            files[name] = FileEntry(name=name, key=str(entry["key"]), digest=format_digest(sha256), size=size)
            contents[name] = Content(size=size, sha256=sha256)
        manifest = dict(document["manifest"])
        claimed = parse_digest(str(document["digest"]))
        created = parse_time(str(document["created"]))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{key} is malformed: {error}") from None
    actual = content_digest(contents, manifest)
    if actual != claimed or claimed[:ID_LENGTH] != version_id or document.get("id") != version_id:
        raise DigestMismatch(
            f"manifest {key} does not match its id: its content hashes to {format_digest(actual)}, "
            f"it claims {format_digest(claimed)}; it was modified after publication",
            key=key, expected=format_digest(claimed), actual=format_digest(actual))
    for entry in files.values():
        if entry.key != blob_key(prefix, parse_digest(entry.digest)):
            raise DigestMismatch(
                f"manifest {key}: file {entry.name!r} points at {entry.key}, not at its content's key",
                key=key, expected=blob_key(prefix, parse_digest(entry.digest)), actual=entry.key)
    return Version(prefix=prefix, id=version_id, digest=format_digest(claimed), created=created,
                   files=files, manifest=manifest)


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds: sortable as text, precise enough to order publications."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone")
    return moment.astimezone(UTC)


def _check_files(files: Mapping[str, Path | bytes]) -> None:
    for name, source in files.items():
        if not isinstance(name, str) or not name or any(ord(c) < 32 for c in name):
            raise ValueError(f"file name {name!r} must be a non-empty string without control characters")
        if not isinstance(source, Path | bytes | bytearray):
            raise TypeError(f"file {name!r} must be a Path or bytes, not {type(source).__name__}")


# -- I/O ------------------------------------------------------------------------------------------


def publish_version(store: ObjectStore, prefix: str, files: Mapping[str, Path | bytes],
                    manifest: Mapping[str, Any]) -> Version:
    """Publish `files` with `manifest` as an immutable version under `prefix`; the `Version`.

    Idempotent: publishing the same files and manifest again returns the version published
    first (with its original creation time) after making sure its blobs are still there.
    Raises Conflict if a manifest with the same id but different content exists (a 48-bit id
    collision: never overwritten), DigestMismatch if a file changes while it is published,
    and whatever reading a local file raises. On any failure no manifest is written.
    """
    check_prefix(prefix)
    _check_files(files)
    try:
        canonical_json(dict(manifest))
    except (TypeError, ValueError) as error:
        raise ValueError(f"the manifest must be JSON-serializable: {error}") from None
    sources = {name: source if isinstance(source, Path) else bytes(source) for name, source in files.items()}
    # Local digests first: they decide the version id and which blobs already exist. The ETags
    # are predicted for the part size the upload will use, so verification needs no read back.
    contents = {name: _local_content(source, store.config.part_size) for name, source in sources.items()}
    digest = content_digest(contents, manifest)
    version_id = digest[:ID_LENGTH]
    upload_id = uuid.uuid4().hex
    temporaries: list[str] = []
    try:
        for index, (name, source) in enumerate(sources.items()):
            _publish_blob(store, prefix, name, source, contents[name],
                          temporary=f"{temporary_folder(prefix, upload_id)}{index}", temporaries=temporaries)
        existing = _existing_version(store, prefix, version_id, digest)
        if existing is not None:
            log.info("object store: version %s of %s already published at %s", version_id, prefix,
                     format_time(existing.created))
            return existing
        version = Version(
            prefix=prefix, id=version_id, digest=format_digest(digest), created=store.clock(),
            files={name: FileEntry(name=name, key=blob_key(prefix, content.sha256), digest=content.digest,
                                   size=content.size) for name, content in contents.items()},
            manifest=dict(manifest))
        try:
            store.put_bytes_conditionally(version.manifest_key, encode_json(manifest_document(version)),
                                          if_none_match=True, content_type=JSON_TYPE)
        except Conflict:
            # Another publisher of the same content won the race (or, with a 1-in-2^48 chance,
            # different content has the same id): theirs stands, if it is the same.
            raced = _existing_version(store, prefix, version_id, digest)
            if raced is None:  # pragma: no cover - a manifest deleted right after it was created
                raise
            return raced
        log.info("object store: published version %s of %s (%d files)", version_id, prefix, len(files))
        return version
    finally:
        store._delete_quietly(temporaries)


def _local_content(source: Path | bytes, configured_part_size: int) -> Content:
    if isinstance(source, Path):
        return content_of_file(source, part_size_for(source.stat().st_size, configured_part_size))
    return content_of_bytes(source, part_size_for(len(source), configured_part_size))


def _publish_blob(store: ObjectStore, prefix: str, name: str, source: Path | bytes, content: Content, *,
                  temporary: str, temporaries: list[str]) -> None:
    """Make `<prefix>/blobs/sha256/<hex>` hold `source`, through a verified temporary."""
    final = blob_key(prefix, content.sha256)
    try:
        present = store.stat(final)
        if present.size == content.size and present.digest == content.digest:
            return  # content-addressed: the same key with the same digest is the same bytes
    except NotFound:
        pass
    temporaries.append(temporary)
    store.upload(temporary, source, expected=content, metadata={"kubeloop-file": _ascii(name)})
    store.copy(temporary, final, metadata={"sha256": content.sha256})
    store.verify(final, content)


def _ascii(text: str) -> str:
    """Metadata values travel as HTTP headers: keep them ASCII."""
    return text.encode("ascii", "backslashreplace").decode()


def _existing_version(store: ObjectStore, prefix: str, version_id: str, digest: str) -> Version | None:
    """The published version `version_id` if its content is `digest`; None if none; Conflict else."""
    try:
        existing = read_manifest(store, prefix, version_id)
    except NotFound:
        return None
    if parse_digest(existing.digest) != digest:
        raise Conflict(
            f"version id {version_id} under {prefix} is taken by different content "
            f"({existing.digest}, not {format_digest(digest)}); refusing to overwrite it",
            key=existing.manifest_key)
    return existing


def read_manifest(store: ObjectStore, prefix: str, version_id: str) -> Version:
    """The version `version_id` of `prefix`; NotFound if it was never published.

    The manifest is checked against its own id (see `parse_manifest`), so an edited manifest
    raises DigestMismatch instead of pointing readers at other files.
    """
    check_prefix(prefix)
    check_version_id(version_id)
    key = manifest_key(prefix, version_id)
    try:
        document = store.get_json(key)
    except NotFound:
        raise NotFound(f"version {version_id} of {prefix} does not exist (no {store.uri(key)})",
                       key=key) from None
    try:
        return parse_manifest(prefix, version_id, document)
    except ValueError as error:
        raise CorruptObject(str(error)) from None


def list_versions(store: ObjectStore, prefix: str) -> list[Version]:
    """Every version published under `prefix`, oldest first (by creation time, then id).

    A manifest that cannot be read or fails its own check is left out with a warning rather
    than hiding every other version: listing feeds status, which must keep working.
    """
    check_prefix(prefix)
    ids = [version_id for info in store.list_objects(versions_folder(prefix), recursive=False)
           if (version_id := version_id_of_manifest_key(prefix, info.key)) is not None]

    def read(version_id: str) -> Version | None:
        try:
            return read_manifest(store, prefix, version_id)
        except (DigestMismatch, CorruptObject, NotFound) as error:
            # NotFound: deleted between listing and reading. Unavailable or denied: raised.
            log.warning("object store: skipping version %s of %s: %s", version_id, prefix, error)
            return None

    if len(ids) <= 1:
        found = [read(version_id) for version_id in ids]
    else:
        with ThreadPoolExecutor(max_workers=min(_LIST_WORKERS, len(ids))) as pool:
            found = list(pool.map(read, ids))
    return sorted((version for version in found if version is not None),
                  key=lambda version: (version.created, version.id))


def download(store: ObjectStore, version: Version, name: str, dest: Path | str) -> Path:
    """Download file `name` of `version` to the file `dest`, verified against the manifest.

    The digest checked is the manifest's (not the object's metadata, which is rewritten along
    with the bytes by anyone who tampers with them): a mismatch raises DigestMismatch naming
    the object and both digests, and `dest` is left untouched.
    """
    entry = version.file(name)
    destination = Path(dest)
    try:
        store.download_file(entry.key, destination, expected_digest=entry.digest, expected_size=entry.size)
    except DigestMismatch as error:
        raise DigestMismatch(
            f"file {name!r} of version {version.id} ({store.uri(entry.key)}) has {error.actual} but the "
            f"version records {entry.digest}: it was modified after publication; refusing to use it",
            key=entry.key, expected=entry.digest, actual=error.actual) from None
    except NotFound:
        raise NotFound(f"file {name!r} of version {version.id} of {version.prefix} is missing from the "
                       f"store ({store.uri(entry.key)})", key=entry.key) from None
    return destination


def verify_version(store: ObjectStore, uri: str, digest: str) -> Version:
    """The version at manifest URI `uri`, after checking that it is the version `digest` names and
    that every byte of every file hashes to what the manifest records (read and hashed, streamed:
    a tampered or truncated object is found however its metadata was rewritten).

    DigestMismatch naming the object and both digests, NotFound for a missing manifest or file,
    CorruptObject for a malformed manifest, ValueError for a URI outside the store's layout.
    """
    prefix, version_id = version_of_uri(uri, store.bucket)
    version = read_manifest(store, prefix, version_id)
    if version.digest != digest:
        raise DigestMismatch(f"{uri} is version {version.digest}, not {digest} as recorded",
                             key=version.manifest_key, expected=digest, actual=version.digest)
    for entry in version.files.values():
        try:
            actual = store.read_back(entry.key)
        except NotFound:
            raise NotFound(f"file {entry.name!r} of version {version.id} is missing from the store "
                           f"({store.uri(entry.key)})", key=entry.key) from None
        if actual.digest != entry.digest or actual.size != entry.size:
            raise DigestMismatch(
                f"file {entry.name!r} of version {version.id} ({store.uri(entry.key)}) has {actual.digest} "
                f"({actual.size} bytes) but the version records {entry.digest} ({entry.size} bytes): it was "
                "modified or truncated after publication", key=entry.key, expected=entry.digest,
                actual=actual.digest)
    return version
