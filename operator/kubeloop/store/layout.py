"""Where things live in the bucket: pure functions from names to object keys.

Kept in one place so that the layout documented in the package docstring is the layout the
code writes, and so that a reader in another language (or a person with `aws s3 ls`) can find
everything from a prefix alone:

    <prefix>/versions/<id>.json       version manifests, written last, never overwritten
    <prefix>/blobs/sha256/<hex>       file contents, content-addressed, immutable
    <prefix>/.tmp/<upload>/<n>        temporaries of a publication in progress

Temporaries sit under the publication's own prefix (not in a bucket-wide folder) so that
credentials scoped to one prefix can publish, and so that deleting a prefix deletes everything
it ever wrote.
"""

from __future__ import annotations

import re

VERSIONS = "versions"
BLOBS = "blobs/sha256"
TEMPORARY = ".tmp"
MANIFEST_SUFFIX = ".json"
RESERVED_SEGMENTS = frozenset({VERSIONS, "blobs", TEMPORARY})

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+@,-]*$")
_VERSION_ID = re.compile(r"^[0-9a-f]{12,64}$")


def check_prefix(prefix: str) -> str:
    """`prefix` if it is a usable version prefix, else ValueError saying why.

    Segments are restricted to characters that need no escaping in S3 keys or URLs, and the
    layout's own folder names are refused so that one prefix cannot nest inside another's files.
    """
    if not prefix or prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError(f"prefix {prefix!r} must be non-empty, without leading or trailing '/'")
    for segment in prefix.split("/"):
        if not _SEGMENT.match(segment) or segment in {".", ".."}:
            raise ValueError(
                f"prefix {prefix!r}: segment {segment!r} must start with a letter or digit and hold "
                "only letters, digits and . _ = + @ , -")
        if segment in RESERVED_SEGMENTS:
            raise ValueError(f"prefix {prefix!r}: {segment!r} is reserved by the store's layout")
    return prefix


def check_version_id(version_id: str) -> str:
    """`version_id` if it has the shape publish_version gives ids, else ValueError."""
    if not _VERSION_ID.match(version_id):
        raise ValueError(f"{version_id!r} is not a version id (12-64 lower-case hex digits)")
    return version_id


def versions_folder(prefix: str) -> str:
    return f"{prefix}/{VERSIONS}/"


def manifest_key(prefix: str, version_id: str) -> str:
    return f"{prefix}/{VERSIONS}/{version_id}{MANIFEST_SUFFIX}"


def version_id_of_manifest_key(prefix: str, key: str) -> str | None:
    """The version id a manifest key names, or None for anything else in the folder."""
    folder = versions_folder(prefix)
    if not key.startswith(folder) or not key.endswith(MANIFEST_SUFFIX):
        return None
    candidate = key[len(folder):-len(MANIFEST_SUFFIX)]
    return candidate if _VERSION_ID.match(candidate) else None


def blob_key(prefix: str, sha256_hex: str) -> str:
    return f"{prefix}/{BLOBS}/{sha256_hex}"


def temporary_folder(prefix: str, upload_id: str) -> str:
    return f"{prefix}/{TEMPORARY}/{upload_id}/"


def temporaries_root(prefix: str) -> str:
    return f"{prefix}/{TEMPORARY}/"


def version_of_uri(uri: str, bucket: str) -> tuple[str, str]:
    """(prefix, version id) of a version manifest's URI `s3://<bucket>/<prefix>/versions/<id>.json`,
    as run records and ModelVersion statuses give artifacts; ValueError naming what is wrong."""
    head = f"s3://{bucket}/"
    if not uri.startswith(head):
        raise ValueError(f"{uri!r} is not in this object store's bucket (s3://{bucket}/...)")
    key = uri[len(head):]
    folder = f"/{VERSIONS}/"
    prefix, found, name = key.rpartition(folder)
    if not found or not name.endswith(MANIFEST_SUFFIX):
        raise ValueError(f"{uri!r} is not a version manifest (.../{VERSIONS}/<id>{MANIFEST_SUFFIX})")
    version_id = name[:-len(MANIFEST_SUFFIX)]
    check_prefix(prefix)
    check_version_id(version_id)
    return prefix, version_id
