"""Content addressing: sha256 digests computed while bytes stream, never by loading them whole.

A digest is written `sha256:<64 hex>` everywhere kubeloop shows or stores one (status fields,
manifests, run records), the form OCI and Docker use, so the algorithm is never ambiguous.

`StreamHasher` also computes the S3 ETag the server should report for the same bytes: the MD5
of the object for a single PUT, or the MD5 of the parts' MD5s followed by `-<parts>` for a
multipart upload cut at `part_size`. Comparing it with the ETag the server returns after an
upload proves that the server stored exactly the bytes whose sha256 was computed, without
reading them back (see `ObjectStore.verify`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from kubeloop.store.errors import CorruptObject

ALGORITHM = "sha256"
JSON_TYPE = "application/json"
CHUNK_SIZE = 1024 * 1024  # large enough that hashing, not the Python loop, is the cost
MAX_PARTS = 10_000  # S3's limit on the parts of one multipart upload
_HEX = re.compile(r"^[0-9a-f]{64}$")
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}(-[0-9]+)?$")


def format_digest(hexdigest: str) -> str:
    """`sha256:<hex>` from a bare hex digest."""
    return f"{ALGORITHM}:{hexdigest}"


def parse_digest(digest: str) -> str:
    """The bare lower-case hex of `sha256:<hex>` (or of a bare hex digest); ValueError otherwise."""
    algorithm, _, value = digest.strip().rpartition(":")
    if algorithm not in {"", ALGORITHM} or not _HEX.match(value.lower()):
        raise ValueError(f"{digest!r} is not a sha256 digest (sha256:<64 hex digits>)")
    return value.lower()


def is_md5_etag(etag: str) -> bool:
    """Whether an ETag has the MD5 shape S3 gives unencrypted objects (the only comparable kind)."""
    return bool(_MD5_ETAG.match(etag.strip('"').lower()))


@dataclass(frozen=True)
class Content:
    """What the bytes of one object are: size, sha256 and the ETags S3 may report for them."""

    size: int
    sha256: str  # bare hex
    etag: str | None = None  # the ETag of these bytes uploaded in parts of part_size
    md5: str | None = None  # the MD5 of the whole object (the ETag of a single PUT or some copies)

    @property
    def digest(self) -> str:
        """`sha256:<hex>`."""
        return format_digest(self.sha256)

    @property
    def etags(self) -> frozenset[str]:
        """Every ETag a server may compute from exactly these bytes (MD5 forms only)."""
        return frozenset(tag for tag in (self.etag, self.md5) if tag)


class StreamHasher:
    """Sees the bytes once and computes sha256, plus (with `etags`) whole and per-part MD5s.

    Part boundaries are positions in the stream, so the result does not depend on how the bytes
    were chunked by whoever read them. `etags=False` skips the MD5s where only the sha256 is
    wanted (re-hashing an upload, checking a download).
    """

    def __init__(self, part_size: int | None = None, *, etags: bool = True) -> None:
        self._sha256 = hashlib.sha256()
        self._etags = etags
        self._part_size = part_size
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._part_md5 = hashlib.md5(usedforsecurity=False)
        self._part_filled = 0
        self._part_digests: list[bytes] = []
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        self._sha256.update(data)
        self.size += len(data)
        if not self._etags:
            return
        self._md5.update(data)
        if self._part_size is None:
            return
        view = memoryview(data)
        while view:
            room = self._part_size - self._part_filled
            piece, view = view[:room], view[room:]
            self._part_md5.update(piece)
            self._part_filled += len(piece)
            if self._part_filled == self._part_size:
                self._part_digests.append(self._part_md5.digest())
                self._part_md5 = hashlib.md5(usedforsecurity=False)
                self._part_filled = 0

    def result(self) -> Content:
        """The content seen so far (call once the stream is exhausted)."""
        sha256 = self._sha256.hexdigest()
        if not self._etags:
            return Content(size=self.size, sha256=sha256)
        md5 = self._md5.hexdigest()
        digests = list(self._part_digests)
        if self._part_filled:
            digests.append(self._part_md5.digest())
        if len(digests) <= 1:
            etag = md5  # a single part is uploaded with a plain PUT: its ETag is the object's MD5
        else:
            etag = f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"
        return Content(size=self.size, sha256=sha256, etag=etag, md5=md5)


class HashingReader:
    """A read-only stream over `source` that hashes what passes through it.

    The upload reads through it, so the bytes hashed are the bytes sent, even when the source
    changes while it is read (a file rewritten during publication is caught by comparing the
    result with the digest computed beforehand).
    """

    def __init__(self, source: BinaryIO, part_size: int | None = None, *, etags: bool = True) -> None:
        self._source = source
        self.hasher = StreamHasher(part_size, etags=etags)

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if data:
            self.hasher.update(data)
        return data


def part_size_for(size: int, configured: int) -> int:
    """The part size an upload of `size` bytes uses: the configured one, or larger when the
    object would otherwise need more than S3's 10,000 parts (rounded up to whole MiB)."""
    needed = -(-size // MAX_PARTS)
    if needed <= configured:
        return configured
    mib = 1024 * 1024
    return -(-needed // mib) * mib


def content_of_bytes(data: bytes, part_size: int | None = None) -> Content:
    """Digest and ETag of bytes in memory."""
    hasher = StreamHasher(part_size)
    hasher.update(data)
    return hasher.result()


def content_of_chunks(chunks: Iterable[bytes], part_size: int | None = None) -> Content:
    """Digest and ETag of a stream given as chunks (e.g. an HTTP response read piecewise)."""
    hasher = StreamHasher(part_size)
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.result()


def content_of_file(path: Path, part_size: int | None = None) -> Content:
    """Digest and ETag of a file, read in 1 MiB chunks (bounded memory for any size)."""
    with path.open("rb") as handle:
        return content_of_chunks(iter(lambda: handle.read(CHUNK_SIZE), b""), part_size)


def encode_json(doc: Any) -> bytes:
    """Stable JSON bytes for stored documents: sorted keys (equal documents, equal bytes and
    ETags), indented for people browsing the bucket, UTF-8, no NaN (not JSON)."""
    return (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def decode_json(data: bytes, where: str) -> Any:
    """A stored JSON document; CorruptObject naming `where` when it is not JSON."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptObject(f"{where} is not a JSON document ({error})") from None
