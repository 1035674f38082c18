"""The raw rows of a FeatureSet: which files `spec.source.uri` names, and reading them as a
stream of fixed-size blocks in bounded memory (Parquet or CSV, .csv.gz included).

Files. A URI is a local path (`/data/x.parquet`, `file:///data/*.csv`) or `s3://bucket/key`.
Glob patterns are expanded (`*` and `?` stay within one path segment, `**` crosses them, `[...]`
is a class); a URI ending in `/` (or naming a directory) means every file under it, except
names starting with `.` or `_` (`_SUCCESS`, `.crc` files of Spark and Hive). Files are read in
lexicographic order of their keys. S3 files are downloaded first (streamed, hashed on the way)
into the run's work folder, because Parquet needs random access and both passes read every file:
one download instead of two, at the price of disk space for the source.

Blocks. Every pass reads the files one after another in record batches of `batch_rows` rows
(Parquet) or `csv_block_bytes` bytes (CSV) and re-cuts them into blocks of exactly `block_rows`
rows (the last one shorter) that span file boundaries. Block boundaries therefore depend on the
data alone, never on the read size, and everything computed per block (the transforms' fits,
the profile's sketches, the Parquet row groups) is the same for any read size: that is what
makes a version's bytes, hence its id, reproducible.

Types. The first file decides each column's Arrow type (Parquet: its schema; CSV: Arrow's
inference on its first `CSV_INFER_BYTES`), and later files are cast to it. CSV columns are
then read with explicit types so a block cannot change them midway, with three refinements:
a column with a declared `validation` type is read as text and parsed by `contract.parse_declared`
(bad values are counted, not fatal); a column inferred as a timestamp or date, or the timestamp
column when it was inferred as text, is read as text and parsed as ISO 8601 into
timestamp[us, UTC] like the transforms parse timestamps (naive ones are UTC); a column whose
every feature starts with a numbers-only step (log1p, clip, standardize, minMax, bucketize,
fillNull mean) is read as float64, so integers in the first megabytes and decimals later do not
break the read. Empty CSV fields are null (strings included).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from kubeloop.featureset.api import ColumnType, Feature, Reason
from kubeloop.featureset.contract import parse_declared
from kubeloop.featureset.transforms import TransformInputError, read_column
from kubeloop.store import AccessDenied, DigestMismatch, NotFound, ObjectInfo, ObjectStore, StoreUnavailable

DEFAULT_BLOCK_ROWS = 131_072
# Arrow's Parquet reader holds about four times a batch while decoding it: half a block per read
# costs one copy to join two batches into a block and saves that much memory.
DEFAULT_BATCH_ROWS = DEFAULT_BLOCK_ROWS // 2
DEFAULT_CSV_BLOCK_BYTES = 16 * 1024 * 1024
CSV_INFER_BYTES = 16 * 1024 * 1024
"""How much of the first CSV file Arrow infers column types from."""
_CSV_HEADER_BYTES = 1024 * 1024
_NUMERIC_FIRST_STEPS = frozenset({"log1p", "clip", "standardize", "minMax", "bucketize"})
_GLOB_CHARS = re.compile(r"[*?\[]")


class SourceError(Exception):
    """The source cannot be used. `reason` is the run result's reason; `transient` says whether
    a retry may succeed (the Job's pod exits 1 rather than 3)."""

    def __init__(self, message: str, *, reason: Reason = Reason.SOURCE_UNAVAILABLE, transient: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.transient = transient


@dataclass(frozen=True)
class SourceFile:
    """One file of the source, with what the version's manifest records about it."""

    uri: str
    """Where users see it: s3://bucket/key or a local path."""
    path: Path
    """The local file read (the file itself, or its downloaded copy)."""
    size: int
    sha256: str | None = None
    """Hex digest, known once downloaded; local files are hashed during the first pass."""
    mtime_ns: int | None = None
    """A local file's modification time when resolved, to detect changes during the run."""

    def changed(self) -> bool:
        """True when a local source file is no longer the one that was read."""
        if self.mtime_ns is None:
            return False
        try:
            stat = self.path.stat()
        except OSError:
            return True
        return stat.st_size != self.size or stat.st_mtime_ns != self.mtime_ns


# -- resolving the URI ---------------------------------------------------------------------------


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key pattern) of an s3:// URI."""
    rest = uri[len("s3://"):]
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise SourceError(f"source {uri} must be s3://bucket/key (a key, a glob pattern or a prefix ending in /)",
                          reason=Reason.MATERIALIZATION_FAILED)
    return bucket, key


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regular expression matching the whole of a key against a glob pattern."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
            inner = pattern[i + 1:end]
            inner = "^" + inner[1:] if inner.startswith("!") else inner
            out.append("[" + inner.replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def local_files(uri: str) -> list[SourceFile]:
    """The local files a path, glob pattern or directory names, in lexicographic order."""
    pattern = uri[len("file://"):] if uri.startswith("file://") else uri
    if _GLOB_CHARS.search(pattern):
        paths = [Path(p) for p in glob.glob(pattern, recursive=True)]
        paths = [p for p in paths if p.is_file()]
    elif pattern.endswith("/") or Path(pattern).is_dir():
        root = Path(pattern)
        paths = [Path(folder) / name for folder, folders, names in os.walk(root)
                 for name in names if not _hidden(name)
                 if not any(_hidden(part) for part in Path(folder).relative_to(root).parts)]
    else:
        paths = [Path(pattern)] if Path(pattern).is_file() else []
    files = []
    for path in sorted(paths, key=str):
        stat = path.stat()
        files.append(SourceFile(uri=str(path), path=path, size=stat.st_size, mtime_ns=stat.st_mtime_ns))
    if not files:
        raise SourceError(f"source {uri} matches no file")
    return files


def s3_objects(store: ObjectStore, uri: str) -> list[ObjectInfo]:
    """The objects an s3:// URI names (`store` is for the URI's bucket), in key order."""
    _, pattern = split_s3_uri(uri)
    try:
        if _GLOB_CHARS.search(pattern):
            literal = pattern[:_GLOB_CHARS.search(pattern).start()]  # type: ignore[union-attr]
            matcher = glob_regex(pattern)
            found = [info for info in store.list_objects(literal, recursive=True)
                     if matcher.match(info.key) and not info.key.endswith("/")]
        else:
            found = []
            if not pattern.endswith("/"):
                try:
                    found = [store.stat(pattern)]
                except NotFound:
                    pattern += "/"
            if not found:
                found = [info for info in store.list_objects(pattern, recursive=True)
                         if not info.key.endswith("/")
                         and not any(_hidden(part) for part in info.key[len(pattern):].split("/"))]
    except StoreUnavailable as error:
        raise SourceError(f"cannot list source {uri}: {error}", transient=True) from None
    except (AccessDenied, NotFound) as error:
        raise SourceError(f"cannot list source {uri}: {error}") from None
    if not found:
        raise SourceError(f"source {uri} matches no object")
    return sorted(found, key=lambda info: info.key)


def download(store: ObjectStore, objects: Sequence[ObjectInfo], folder: Path,
             on_file: Callable[[int, int], None] | None = None) -> list[SourceFile]:
    """Downloads `objects` into `folder` (streamed and hashed); their `SourceFile`s."""
    folder.mkdir(parents=True, exist_ok=True)
    files: list[SourceFile] = []
    done = 0
    for index, info in enumerate(objects):
        uri = store.uri(info.key)
        name = info.key.rsplit("/", 1)[-1]
        destination = folder / f"{index:05d}-{name}"
        try:
            got = store.download_file(info.key, destination)
        except StoreUnavailable as error:
            raise SourceError(f"cannot download {uri}: {error}", transient=True) from None
        except NotFound:
            raise SourceError(f"{uri} disappeared while the source was read", transient=True) from None
        except (AccessDenied, DigestMismatch) as error:
            raise SourceError(f"cannot download {uri}: {error}") from None
        assert got.digest is not None
        files.append(SourceFile(uri=uri, path=destination, size=got.size, sha256=got.digest.split(":", 1)[1]))
        done += got.size
        if on_file is not None:
            on_file(index + 1, done)
    return files


class HashingStopped(Exception):
    """`sha256_of` was told to stop (the run failed before the digest was needed)."""


def sha256_of(path: Path, stop: threading.Event | None = None, *, chunk: int = 8 * 1024 * 1024) -> str:
    """Hex sha256 of a file, read in chunks (hashlib releases the GIL on each); `stop` ends it early."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while data := handle.read(chunk):
            if stop is not None and stop.is_set():
                raise HashingStopped(str(path))
            digest.update(data)
    return digest.hexdigest()


# -- reading -------------------------------------------------------------------------------------


@dataclass
class Block:
    """`block_rows` rows of the needed columns, typed; `unparsed` holds, for CSV columns with a
    declared type, the text and the mask of values that did not parse (now null in `table`)."""

    table: pa.Table
    unparsed: dict[str, tuple[pa.Array, np.ndarray]] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        return self.table.num_rows


def numeric_only_columns(features: Sequence[Feature]) -> set[str]:
    """Columns whose every feature starts with a step that takes numbers only (see the module
    docstring): safe to read as float64 from CSV."""
    verdict: dict[str, bool] = {}
    for feature in features:
        first = feature.transforms[0] if feature.transforms else None
        numeric = first is not None and (first.type in _NUMERIC_FIRST_STEPS
                                         or (first.type == "fillNull" and first.strategy == "mean"))
        verdict[feature.from_] = verdict.get(feature.from_, True) and numeric
    return {column for column, numeric in verdict.items() if numeric}


def _is_text(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


class SourceReader:
    """Reads the needed columns of a source's files as `Block`s (see the module docstring)."""

    def __init__(self, files: Sequence[SourceFile], fmt: str, columns: Sequence[str], *,
                 declared: Mapping[str, ColumnType] | None = None, numeric_only: Iterable[str] = (),
                 timestamp_column: str | None = None, batch_rows: int = DEFAULT_BATCH_ROWS,
                 block_rows: int = DEFAULT_BLOCK_ROWS, csv_block_bytes: int = DEFAULT_CSV_BLOCK_BYTES) -> None:
        if fmt not in ("parquet", "csv"):
            raise SourceError(f"unknown source format {fmt!r}", reason=Reason.MATERIALIZATION_FAILED)
        self.files = list(files)
        self.format = fmt
        self.columns = list(dict.fromkeys(columns))
        self.declared = dict(declared or {})
        self.numeric_only = set(numeric_only) - set(self.declared)
        self.timestamp_column = timestamp_column
        self.batch_rows = max(1, batch_rows)
        self.block_rows = max(1, block_rows)
        self.csv_block_bytes = max(4096, csv_block_bytes)
        self.total_rows: int | None = None
        self.total_bytes = sum(f.size for f in self.files)
        self.missing: dict[str, list[str]] = {}
        """Needed columns some files lack: column -> the URIs of those files."""
        self.available: list[str] = []
        """The columns of the first file that lacks a needed column (for messages)."""
        self._bytes_done = 0
        self._position: Callable[[], int] = lambda: 0
        self._raw_types: dict[str, pa.DataType] = {}
        self._plan: dict[str, tuple[str, Any]] = {}
        if fmt == "parquet":
            self._inspect_parquet()
        else:
            self._inspect_csv()

    # -- inspection

    def _note_columns(self, file: SourceFile, names: Sequence[str]) -> None:
        present = set(names)
        for column in self.columns:
            if column not in present:
                if not self.missing:
                    self.available = list(names)
                self.missing.setdefault(column, []).append(file.uri)

    def _inspect_parquet(self) -> None:
        total = 0
        for file in self.files:
            try:
                metadata = pq.read_metadata(file.path)
            except (pa.ArrowException, OSError) as error:
                raise SourceError(f"cannot read {file.uri} as Parquet: {error}") from None
            schema = metadata.schema.to_arrow_schema()
            total += metadata.num_rows
            self._note_columns(file, schema.names)
            for column in self.columns:
                if column not in self._raw_types and schema.get_field_index(column) >= 0:
                    self._raw_types[column] = schema.field(column).type
        self.total_rows = total
        for column, type_ in self._raw_types.items():
            self._plan[column] = ("typed", type_)

    def _open_csv(self, file: SourceFile, block_bytes: int, convert: pcsv.ConvertOptions) -> Any:
        raw = pa.OSFile(str(file.path))
        stream = pa.CompressedInputStream(raw, "gzip") if file.path.name.lower().endswith(".gz") else raw
        try:
            reader = pcsv.open_csv(stream, read_options=pcsv.ReadOptions(block_size=block_bytes),
                                   convert_options=convert)
        except (pa.ArrowException, OSError) as error:
            raw.close()
            raise SourceError(f"cannot read {file.uri} as CSV: {error}") from None
        return raw, reader

    def _inspect_csv(self) -> None:
        for file in self.files:
            raw, reader = self._open_csv(file, _CSV_HEADER_BYTES, pcsv.ConvertOptions(strings_can_be_null=True))
            names = reader.schema.names
            raw.close()
            self._note_columns(file, names)
        first = self.files[0]
        present = [c for c in self.columns if c not in self.missing or first.uri not in self.missing[c]]
        raw, reader = self._open_csv(first, CSV_INFER_BYTES,
                                     pcsv.ConvertOptions(include_columns=present, strings_can_be_null=True))
        inferred = reader.schema
        raw.close()
        for column in present:
            type_ = inferred.field(column).type
            if column in self.declared:
                self._plan[column] = ("declared", self.declared[column])
            elif pa.types.is_timestamp(type_) or pa.types.is_date(type_) or (
                    column == self.timestamp_column and _is_text(type_)):
                self._plan[column] = ("timestamp", None)
            elif column in self.numeric_only and (pa.types.is_integer(type_) or pa.types.is_null(type_)):
                self._plan[column] = ("typed", pa.float64())
            elif pa.types.is_null(type_):
                self._plan[column] = ("typed", pa.large_string())
            else:
                self._plan[column] = ("typed", type_)
        for column, (mode, type_) in self._plan.items():
            self._raw_types[column] = type_ if mode == "typed" else pa.large_string()

    # -- the normalized schema

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema of every block (the columns present in the first file)."""
        fields = []
        for column in self.columns:
            if column not in self._plan:
                continue
            mode, value = self._plan[column]
            if mode == "typed":
                type_ = value
            elif mode == "timestamp":
                type_ = pa.timestamp("us", tz="UTC")
            else:
                type_ = parse_declared(pa.array([], pa.large_string()), value)[0].type
            fields.append(pa.field(column, type_))
        return pa.schema(fields)

    @property
    def parsed_columns(self) -> set[str]:
        """CSV columns parsed by their declared type (whose type errors come with the blocks)."""
        return {c for c, (mode, _) in self._plan.items() if mode == "declared"}

    def bytes_read(self) -> int:
        """Bytes of the source read so far in the current pass (CSV progress)."""
        return self._bytes_done + self._position()

    # -- the stream

    def blocks(self, columns: Sequence[str] | None = None) -> Iterator[Block]:
        """The source as blocks of `block_rows` rows of `columns` (default: all needed ones)."""
        wanted = [c for c in (columns if columns is not None else self.columns) if c in self._plan]
        self._bytes_done = 0
        for table in _rebatch(self._raw_batches(wanted), self.block_rows):
            yield self._normalize(table)

    def _raw_batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        for file in self.files:
            if self.format == "parquet":
                yield from self._parquet_batches(file, columns)
            else:
                yield from self._csv_batches(file, columns)
            self._bytes_done += file.size
            self._position = lambda: 0

    def _parquet_batches(self, file: SourceFile, columns: list[str]) -> Iterator[pa.RecordBatch]:
        try:
            parquet = pq.ParquetFile(file.path, pre_buffer=False, buffer_size=1024 * 1024)
            for batch in parquet.iter_batches(batch_size=self.batch_rows, columns=columns):
                yield self._cast_raw(batch, file)
        except (pa.ArrowException, OSError) as error:
            raise SourceError(f"cannot read {file.uri} as Parquet: {error}") from None

    def _cast_raw(self, batch: pa.RecordBatch, file: SourceFile) -> pa.RecordBatch:
        arrays = []
        for name, array in zip(batch.schema.names, batch.columns, strict=True):
            wanted = self._raw_types[name]
            if array.type != wanted:
                try:
                    array = array.cast(wanted)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                    raise SourceError(
                        f'column "{name}" is {array.type} in {file.uri} but {wanted} in {self.files[0].uri}, '
                        f"and the values do not convert: {error}", reason=Reason.MATERIALIZATION_FAILED) from None
            arrays.append(array)
        return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)

    def _csv_batches(self, file: SourceFile, columns: list[str]) -> Iterator[pa.RecordBatch]:
        convert = pcsv.ConvertOptions(include_columns=columns, strings_can_be_null=True,
                                      column_types={c: self._raw_types[c] for c in columns})
        raw, reader = self._open_csv(file, self.csv_block_bytes, convert)
        self._position = raw.tell
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except pa.ArrowInvalid as error:
                    text = str(error)
                    if "conversion error" in text.lower():
                        raise SourceError(
                            f"{file.uri}: {text} (the column's type was inferred from the start of "
                            f"{self.files[0].uri}; declare the column's type in spec.validation.columns to "
                            "read it as that type and count the values that are not)",
                            reason=Reason.MATERIALIZATION_FAILED) from None
                    raise SourceError(f"cannot read {file.uri} as CSV: {text}") from None
                yield batch
        finally:
            self._position = lambda: 0
            raw.close()

    def _normalize(self, table: pa.Table) -> Block:
        unparsed: dict[str, tuple[pa.Array, np.ndarray]] = {}
        arrays = []
        for name in table.column_names:
            array = table.column(name).combine_chunks()
            mode, value = self._plan[name]
            if mode == "timestamp":
                try:
                    array = read_column(array, "timestamp", name)
                except TransformInputError as error:
                    raise SourceError(f"{error} (in the source)", reason=Reason.MATERIALIZATION_FAILED) from None
            elif mode == "declared":
                typed, bad = parse_declared(array, value)
                if bad.any():
                    unparsed[name] = (array, bad)
                array = typed
            arrays.append(array)
        return Block(pa.Table.from_arrays(arrays, names=table.column_names), unparsed)


def _rebatch(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Batches re-cut into tables of exactly `rows` rows (the last one shorter)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            count += take
            batch = batch.slice(take)
            if count == rows:
                yield pa.Table.from_batches(pending).combine_chunks()
                pending, count = [], 0
    if count:
        yield pa.Table.from_batches(pending).combine_chunks()
