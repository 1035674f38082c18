"""Digests and the S3 ETags predicted for them (pure; the server's side is in test_client)."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from kubeloop.store.content import (
    HashingReader,
    StreamHasher,
    content_of_bytes,
    format_digest,
    is_md5_etag,
    parse_digest,
    part_size_for,
)

PART = 5 * 1024 * 1024


def test_digest_format_round_trip() -> None:
    hexdigest = hashlib.sha256(b"x").hexdigest()
    assert format_digest(hexdigest) == f"sha256:{hexdigest}"
    assert parse_digest(f"sha256:{hexdigest.upper()}") == hexdigest
    assert parse_digest(hexdigest) == hexdigest
    for bad in ("md5:" + hexdigest, "sha256:abc", "sha256:" + "g" * 64, ""):
        with pytest.raises(ValueError):
            parse_digest(bad)


@pytest.mark.parametrize("size", [0, 1, PART - 1, PART, PART + 1, 2 * PART, 2 * PART + 7])
def test_etag_follows_s3_rules(size: int) -> None:
    data = os.urandom(size)
    content = content_of_bytes(data, PART)
    assert content.sha256 == hashlib.sha256(data).hexdigest()
    assert content.md5 == hashlib.md5(data).hexdigest()
    parts = [data[i:i + PART] for i in range(0, size, PART)] or [b""]
    if len(parts) == 1:
        assert content.etag == hashlib.md5(data).hexdigest()
    else:
        composite = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
        assert content.etag == f"{composite}-{len(parts)}"
    assert content.etag is not None and is_md5_etag(content.etag)


@pytest.mark.parametrize("chunk", [1, 1000, 65536, 65536 + 3, 10**6])
def test_result_does_not_depend_on_chunking(chunk: int) -> None:
    part = 65536  # part boundaries fall inside, between and across chunks
    data = os.urandom(3 * part + 12345)
    reader = HashingReader(io.BytesIO(data), part)
    while reader.read(chunk):
        pass
    assert reader.hasher.result() == content_of_bytes(data, part)


def test_sha256_only_mode_skips_etags() -> None:
    hasher = StreamHasher(etags=False)
    hasher.update(b"abc")
    result = hasher.result()
    assert result.sha256 == hashlib.sha256(b"abc").hexdigest() and result.etags == frozenset()


def test_md5_etag_shape() -> None:
    assert is_md5_etag('"' + "a" * 32 + '"') and is_md5_etag("a" * 32 + "-12")
    assert not is_md5_etag("a" * 31) and not is_md5_etag("opaque-etag")


def test_part_size_grows_only_past_ten_thousand_parts() -> None:
    assert part_size_for(0, PART) == PART
    assert part_size_for(10_000 * PART, PART) == PART
    bigger = part_size_for(10_000 * PART + 1, PART)
    assert bigger > PART and bigger % (1024 * 1024) == 0 and -(-(10_000 * PART + 1) // bigger) <= 10_000
