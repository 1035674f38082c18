"""The FeatureSet materialization pod: `python -m kubeloop.featureset.materialize`.

It reads a FeatureSet's source, checks the data contract, fits and applies the transforms, and
publishes one immutable, content-addressed version to the object store; at the end of every
run, success or failure, it writes a run result that the controller turns into status.

Inputs (environment; the controller's Job sets them):
    KUBELOOP_FEATURESET     JSON {"name", "namespace", "uid", "generation", "spec": <CR spec, camelCase>}
    KUBELOOP_RUN_ID         the Job name (fallback: HOSTNAME, the pod name)
    KUBELOOP_S3_ENDPOINT, KUBELOOP_S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION
                            kubeloop's object store (`StoreConfig.from_env`)
    KUBELOOP_SOURCE_AWS_ACCESS_KEY_ID, KUBELOOP_SOURCE_AWS_SECRET_ACCESS_KEY,
    KUBELOOP_SOURCE_AWS_ENDPOINT_URL, KUBELOOP_SOURCE_AWS_SESSION_TOKEN
                            the source's credentials when spec.source.secretRef is set (the first
                            two are required then: their absence is SecretNotFound); otherwise an
                            s3:// source is read with the store's credentials, from any bucket
    KUBELOOP_BATCH_ROWS     optional: rows per Parquet read (memory knob; never changes the result)
    KUBELOOP_WORK_DIR       optional: scratch folder (S3 sources are downloaded there, the output is
                            written there before upload; default the system temp folder)

Two passes over the source, streamed in blocks of `block_rows` rows (`sources.py`):
1. contract + fit: every `spec.validation` rule is counted (`contract.py`, in a thread beside
   the fit), the transforms are fitted with their mergeable accumulators
   (`transforms.fit_pipeline`; a feature with k fitted steps in a row needs k reads, the later
   ones of its column only), and local source files are hashed in another thread;
2. write: `transforms.apply_batch` on each block, one Parquet row group per block (feature
   columns after the entity, timestamp and label columns), and the reference profile
   (`profile.ProfileBuilder`, the same code as `profile.build_profile`); Parquet encoding and
   the profile each run in a thread of their own, one block behind the transforms.
Memory: one read batch, a few blocks in flight (about 25 MB each for 20 features at the default
131,072 rows) and the accumulators' fixed sizes, whatever the input's size; uniqueness keeps 8
bytes per row up to `spill_hashes` rows and spills beyond (see `contract.py`); S3 sources are
downloaded to the work folder (disk, not memory). Of the options only `block_rows` (sketches and
row groups follow blocks; recorded in the manifest) and `part_rows` (how the rows are split into
files) change the published bytes; the read size never does.

Output (under `featuresets/<namespace>/<name>`, see `results.py` for the layout):
- a version published with `ObjectStore.publish_version`: files `features.parquet` (or
  `features-00000.parquet`, ... when above `part_rows` rows), `fitted.json`
  (`FittedFeatures.to_json`), `schema.json`, `profile.json` (`ReferenceProfile.to_json`), and a
  manifest: rows, features [{name, from, dtype}], entities, timestampColumn, labelColumns, ttl (when
  the spec sets one), schema [{name, dtype, role}], source {uri, format, files [{uri, sha256,
  size}]}, specDigest, featureFiles, blockRows. The version id is the digest of the files and this manifest, so the
  same data and spec give the same id and re-publishing is a no-op: that is why the run's id,
  the generation and the time are NOT in the manifest (they would make every run a new version);
  the store records the creation time of the first publication in the version (`created`), and
  the run result records runId, generation and specDigest next to the version id.
- the run result `runs/<runId>.json` (`results.RunResult`).

A contract violation, a missing column, or any failure before publication publishes nothing.
Exit codes: 0 published (or already published); 3 permanent (ContractViolated,
SourceUnavailable for a source that matches nothing or cannot be parsed, SecretNotFound, an
invalid spec or a spec the data cannot be transformed with: MaterializationFailed); 1 transient
(a store unreachable, the source changing while it is read, anything unexpected), which the Job
retries. Progress goes to stdout, which `kubectl logs` shows.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.parquet as pq
from minio import Minio
from pydantic import ValidationError

from kubeloop.featureset.api import FeatureSetSpec, Reason
from kubeloop.featureset.contract import DEFAULT_SPILL_HASHES, ContractChecker
from kubeloop.featureset.profile import ProfileBuilder, ReferenceProfile
from kubeloop.featureset.results import (
    EXIT_PERMANENT,
    EXIT_SUCCESS,
    EXIT_TRANSIENT,
    RunResult,
    Violation,
    check_run_id,
    featureset_prefix,
    spec_digest,
    write_run,
)
from kubeloop.featureset.sources import (
    DEFAULT_BATCH_ROWS,
    DEFAULT_BLOCK_ROWS,
    DEFAULT_CSV_BLOCK_BYTES,
    SourceError,
    SourceFile,
    SourceReader,
    download,
    local_files,
    numeric_only_columns,
    s3_objects,
    sha256_of,
    split_s3_uri,
)
from kubeloop.featureset.transforms import (
    FittedFeatures,
    TransformInputError,
    apply_batch,
    fit_pipeline,
    read_column,
)
from kubeloop.store import (
    AccessDenied,
    Conflict,
    DigestMismatch,
    NotFound,
    ObjectStore,
    StoreConfig,
    StoreConfigError,
    StoreError,
    StoreUnavailable,
    Version,
    parse_endpoint,
)
from kubeloop.store.transport import http_pool

FEATURESET_VARIABLE = "KUBELOOP_FEATURESET"
RUN_ID_VARIABLE = "KUBELOOP_RUN_ID"
BATCH_ROWS_VARIABLE = "KUBELOOP_BATCH_ROWS"
WORK_DIR_VARIABLE = "KUBELOOP_WORK_DIR"
SOURCE_ACCESS_KEY_VARIABLE = "KUBELOOP_SOURCE_AWS_ACCESS_KEY_ID"
SOURCE_SECRET_KEY_VARIABLE = "KUBELOOP_SOURCE_AWS_SECRET_ACCESS_KEY"
SOURCE_ENDPOINT_VARIABLE = "KUBELOOP_SOURCE_AWS_ENDPOINT_URL"
SOURCE_SESSION_TOKEN_VARIABLE = "KUBELOOP_SOURCE_AWS_SESSION_TOKEN"

FEATURES_FILE = "features.parquet"
FITTED_FILE = "fitted.json"
SCHEMA_FILE = "schema.json"
PROFILE_FILE = "profile.json"
VERSION_KIND = "FeatureSetVersion"
VERSION_FORMAT = 1
"""Version of the manifest and files' layout; part of the content, so a change makes new ids."""

DEFAULT_PART_ROWS = 64 * DEFAULT_BLOCK_ROWS
PARQUET_COMPRESSION = "zstd"


# -- inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What the controller asked for: one FeatureSet at one generation, in one run."""

    namespace: str
    name: str
    uid: str | None
    generation: int | None
    raw_spec: Mapping[str, Any]
    spec: FeatureSetSpec
    run_id: str
    pod: str | None = None

    @property
    def prefix(self) -> str:
        return featureset_prefix(self.namespace, self.name)


class JobError(Exception):
    """KUBELOOP_FEATURESET is missing or invalid. `namespace`/`name` are set when known, so a
    run result can still be written."""

    def __init__(self, message: str, *, namespace: str | None = None, name: str | None = None,
                 run_id: str | None = None, uid: str | None = None, generation: int | None = None,
                 raw_spec: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.namespace, self.name, self.run_id = namespace, name, run_id
        self.uid, self.generation, self.raw_spec = uid, generation, raw_spec


def _validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        parts.append(f"spec.{location}: {item['msg']}" if location else item["msg"])
    return "; ".join(parts)


def parse_job(environ: Mapping[str, str]) -> Job:
    """The job from the environment; JobError saying what is wrong."""
    text = environ.get(FEATURESET_VARIABLE)
    if not text:
        raise JobError(f"{FEATURESET_VARIABLE} is not set: the controller passes the FeatureSet as JSON there")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise JobError(f"{FEATURESET_VARIABLE} is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise JobError(f"{FEATURESET_VARIABLE} must be a JSON object")
    namespace, name = document.get("namespace"), document.get("name")
    if not isinstance(namespace, str) or not namespace or not isinstance(name, str) or not name:
        raise JobError(f"{FEATURESET_VARIABLE} must name the FeatureSet: namespace and name are required")
    run_id = environ.get(RUN_ID_VARIABLE) or environ.get("HOSTNAME") or ""
    try:
        check_run_id(run_id)
    except ValueError as error:
        raise JobError(f"{RUN_ID_VARIABLE} (or HOSTNAME): {error}") from None
    uid = document.get("uid") if isinstance(document.get("uid"), str) else None
    generation = document.get("generation")
    generation = generation if isinstance(generation, int) and not isinstance(generation, bool) else None
    raw_spec = document.get("spec")
    if not isinstance(raw_spec, dict):
        raise JobError(f"{FEATURESET_VARIABLE} has no spec object", namespace=namespace, name=name, run_id=run_id,
                       uid=uid, generation=generation)
    try:
        spec = FeatureSetSpec.model_validate(raw_spec)
    except ValidationError as error:
        raise JobError(f"invalid spec: {_validation_message(error)}", namespace=namespace, name=name,
                       run_id=run_id, uid=uid, generation=generation, raw_spec=raw_spec) from None
    return Job(namespace=namespace, name=name, uid=uid, generation=generation, raw_spec=raw_spec, spec=spec,
               run_id=run_id, pod=environ.get("HOSTNAME") or None)


@dataclass(frozen=True)
class Options:
    """How a run reads and writes; none of these changes the published bytes except
    `block_rows` (recorded in the manifest) and `part_rows`."""

    batch_rows: int = DEFAULT_BATCH_ROWS
    block_rows: int = DEFAULT_BLOCK_ROWS
    csv_block_bytes: int = DEFAULT_CSV_BLOCK_BYTES
    part_rows: int = DEFAULT_PART_ROWS
    spill_hashes: int = DEFAULT_SPILL_HASHES
    work_dir: str | None = None
    progress_seconds: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Options:
        changes: dict[str, Any] = {}
        if environ.get(BATCH_ROWS_VARIABLE):
            try:
                changes["batch_rows"] = max(1, int(environ[BATCH_ROWS_VARIABLE]))
            except ValueError:
                raise JobError(f"{BATCH_ROWS_VARIABLE} must be a number of rows") from None
        if environ.get(WORK_DIR_VARIABLE):
            changes["work_dir"] = environ[WORK_DIR_VARIABLE]
        return cls(**changes)


class Failure(Exception):
    """A run that ends without a version: the run result's reason and message, and the exit code."""

    def __init__(self, reason: Reason, message: str, *, transient: bool = False,
                 violations: Sequence[Violation] = (), rows: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.exit_code = EXIT_TRANSIENT if transient else EXIT_PERMANENT
        self.violations = list(violations)
        self.rows = rows


# -- progress -------------------------------------------------------------------------------------


def _rate(rows: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if rows >= size:
            return f"{rows / size:.3g}{unit}"
    return f"{rows:.0f}"


def _bytes(size: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


class Progress:
    """Progress lines on stdout: one when a phase starts, then at most every `interval` seconds,
    and one when it ends; percent and ETA when the size is known (rows for Parquet, bytes for CSV)."""

    def __init__(self, out: TextIO, *, interval: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out
        self.interval = interval
        self.clock = clock
        self.phase = ""
        self.rows = 0
        self.total_rows: int | None = None
        self.bytes_read: Callable[[], int] | None = None
        self.total_bytes: int | None = None
        self._started = self._shown = 0.0

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def start(self, phase: str, *, total_rows: int | None = None, total_bytes: int | None = None,
              bytes_read: Callable[[], int] | None = None) -> None:
        self.phase, self.rows = phase, 0
        self.total_rows, self.total_bytes, self.bytes_read = total_rows, total_bytes, bytes_read
        self._started = self._shown = self.clock()
        size = f" ({self.total_rows:,} rows)" if total_rows is not None else (
            f" ({_bytes(total_bytes)})" if total_bytes else "")
        self.line(f"{phase}: started{size}")

    def advance(self, rows: int) -> None:
        self.rows += rows
        now = self.clock()
        if now - self._shown >= self.interval:
            self._shown = now
            self.line(f"{self.phase}: {self._status(now)}")

    def _status(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-9)
        text = f"{self.rows:,} rows"
        fraction = None
        if self.total_rows:
            text += f" of {self.total_rows:,}"
            fraction = self.rows / self.total_rows
        elif self.total_bytes and self.bytes_read is not None:
            fraction = min(1.0, self.bytes_read() / self.total_bytes)
        text += f", {_rate(self.rows / elapsed)} rows/s"
        if fraction is not None:
            text += f", {100 * fraction:.1f}%"
            if 0 < fraction < 1:
                text += f", {elapsed * (1 - fraction) / fraction:.0f} s left"
        return text

    def finish(self) -> None:
        now = self.clock()
        elapsed = now - self._started
        self.line(f"{self.phase}: done, {self.rows:,} rows in {elapsed:.1f} s "
                  f"({_rate(self.rows / max(elapsed, 1e-9))} rows/s)")


# -- the source -----------------------------------------------------------------------------------


class _SessionTokenStore(ObjectStore):
    """An ObjectStore whose client signs with a session token as well: a source Secret may hold
    temporary credentials, which kubeloop's own store (static keys) never needs."""

    def __init__(self, config: StoreConfig, session_token: str) -> None:
        super().__init__(config)
        self._client = Minio(config.endpoint, access_key=config.access_key, secret_key=config.secret_key,
                             session_token=session_token, secure=config.secure, region=config.region,
                             http_client=http_pool(config))


def source_store(job: Job, store: ObjectStore, environ: Mapping[str, str]) -> ObjectStore:
    """The store an s3:// source is read from: the source Secret's credentials (and endpoint)
    when spec.source.secretRef is set, else kubeloop's own, in the source's bucket."""
    bucket, _ = split_s3_uri(job.spec.source.uri)
    secret = job.spec.source.secret_ref
    try:
        if secret is None:
            return store if bucket == store.bucket else ObjectStore(store.config.replace(bucket=bucket))
        access_key = environ.get(SOURCE_ACCESS_KEY_VARIABLE, "").strip()
        secret_key = environ.get(SOURCE_SECRET_KEY_VARIABLE, "").strip()
        if not access_key or not secret_key:
            missing = [v for v, value in ((SOURCE_ACCESS_KEY_VARIABLE, access_key),
                                          (SOURCE_SECRET_KEY_VARIABLE, secret_key)) if not value]
            raise Failure(Reason.SECRET_NOT_FOUND,
                          f'spec.source.secretRef: Secret "{secret.name}" was not found in namespace '
                          f'"{job.namespace}" or lacks the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY '
                          f"({', '.join(missing)} not set in the pod)")
        endpoint = environ.get(SOURCE_ENDPOINT_VARIABLE, "").strip()
        host, secure = parse_endpoint(endpoint) if endpoint else (store.config.endpoint, store.config.secure)
        config = store.config.replace(endpoint=host, secure=secure, bucket=bucket, access_key=access_key,
                                      secret_key=secret_key)
        token = environ.get(SOURCE_SESSION_TOKEN_VARIABLE, "").strip()
        return _SessionTokenStore(config, token) if token else ObjectStore(config)
    except StoreConfigError as error:
        raise Failure(Reason.SOURCE_UNAVAILABLE, f"source {job.spec.source.uri}: {error}") from None


def resolve_source(job: Job, store: ObjectStore, environ: Mapping[str, str], work: Path,
                   progress: Progress) -> list[SourceFile]:
    """The source's files, local (S3 objects downloaded into `work`)."""
    uri = job.spec.source.uri
    if not uri.startswith("s3://"):
        return local_files(uri)
    bucket_store = source_store(job, store, environ)
    objects = s3_objects(bucket_store, uri)
    total = sum(info.size for info in objects)
    progress.line(f"download: {len(objects)} file(s), {_bytes(total)} from {uri}")
    started = time.monotonic()
    files = download(bucket_store, objects, work / "source")
    progress.line(f"download: done in {time.monotonic() - started:.1f} s")
    return files


def _needed_columns(spec: FeatureSetSpec) -> list[str]:
    columns = [*spec.entities]
    if spec.source.timestamp_column:
        columns.append(spec.source.timestamp_column)
    columns += spec.label_columns
    columns += [f.from_ for f in spec.features]
    if spec.validation is not None:
        columns += [rule.column for rule in spec.validation.columns]
    return list(dict.fromkeys(columns))


def _key_columns(spec: FeatureSetSpec) -> list[str]:
    return [*spec.entities, *([spec.source.timestamp_column] if spec.source.timestamp_column else [])]


def _passthrough_columns(spec: FeatureSetSpec) -> list[str]:
    return list(dict.fromkeys(_key_columns(spec) + list(spec.label_columns)))


def _missing_violations(spec: FeatureSetSpec, reader: SourceReader) -> list[Violation]:
    uses: dict[str, list[str]] = {}
    for column in spec.entities:
        uses.setdefault(column, []).append("an entity")
    if spec.source.timestamp_column:
        uses.setdefault(spec.source.timestamp_column, []).append("the timestamp column")
    for column in spec.label_columns:
        uses.setdefault(column, []).append("a label column")
    for feature in spec.features:
        uses.setdefault(feature.from_, []).append(f'the from of feature "{feature.name}"')
    for rule in spec.validation.columns if spec.validation else []:
        uses.setdefault(rule.column, []).append("a validation rule's column")
    total = len(reader.files)
    found = []
    available = ", ".join(reader.available[:30]) + (", ..." if len(reader.available) > 30 else "")
    for column, lacking in reader.missing.items():
        where = "the source" if len(lacking) == total else f"{len(lacking)} of {total} source files (first: {lacking[0]})"
        found.append(Violation(column, "present", len(lacking), total,
                               f'column "{column}" is missing from {where}; it is {" and ".join(uses[column])} '
                               f"(columns found: {available})"))
    return found


# Steps that may be fitted (a superset of what `transforms` fits: bucketize with boundaries and
# fillNull constant are not), to know which columns a second fitting read needs. Were transforms
# to fit another step type, its second read would lack a column and fail loudly.
_MAYBE_FITTED = frozenset({"standardize", "minMax", "vocabulary", "bucketize", "fillNull"})


def _refit_columns(spec: FeatureSetSpec) -> list[str]:
    """Columns of features with more than one fitted step: all that fitting reads after pass 1."""
    return list(dict.fromkeys(f.from_ for f in spec.features
                              if sum(t.type in _MAYBE_FITTED for t in f.transforms) > 1))


class _SourcePasses:
    """The source as `fit_pipeline` iterates it: each iteration reads the source again. The first
    complete one also counts the contract (in a thread of its own, overlapping the fit); later
    ones read only `refit_columns`."""

    def __init__(self, reader: SourceReader, contract: ContractChecker, progress: Progress,
                 refit_columns: Sequence[str]) -> None:
        self.reader = reader
        self.contract = contract
        self.progress = progress
        self.refit_columns = list(refit_columns)
        self.checked = False
        self.reads = 0

    def __iter__(self) -> Iterator[pa.Table]:
        checking = not self.checked
        self.reads += 1
        phase = "pass 1 (contract, fit)" if self.reads == 1 else \
            f"pass 1.{self.reads} ({'contract, ' if checking else ''}fit)"
        self.progress.start(phase, total_rows=self.reader.total_rows,
                            total_bytes=None if self.reader.total_rows is not None else self.reader.total_bytes,
                            bytes_read=self.reader.bytes_read)
        if not checking:
            for block in self.reader.blocks(self.refit_columns):
                self.progress.advance(block.num_rows)
                yield block.table
            self.progress.finish()
            return
        self.contract.reset()
        counting = _Background("contract")
        try:
            for block in self.reader.blocks():
                counting.submit(self.contract.update, block.table, block.unparsed)
                self.progress.advance(block.num_rows)
                yield block.table
            counting.drain()
        finally:
            counting.abandon()  # a no-op once drained; stops the thread when fitting gave up midway
        self.progress.finish()
        self.checked = True


# -- writing --------------------------------------------------------------------------------------


class _Background:
    """One worker thread running tasks in submission order, at most `depth` in flight: a stage of
    pass 2 that overlaps the main thread's work (Parquet encoding, compression and the
    profile's sorts release the GIL) while holding a bounded number of blocks."""

    def __init__(self, name: str, depth: int = 1) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: deque[Future[None]] = deque()
        self._depth = depth

    def submit(self, task: Callable[..., None], *args: Any) -> None:
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()  # a failed task raises here
        self._pending.append(self._pool.submit(task, *args))

    def drain(self) -> None:
        """Waits for every task; raises the first failure."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def abandon(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


class _PartWriter:
    """Parquet part files of at most `part_rows` rows, one row group per block."""

    def __init__(self, folder: Path, schema: pa.Schema, part_rows: int) -> None:
        self.folder = folder
        self.schema = schema
        self.part_rows = part_rows
        self.paths: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_part = 0
        # Dictionary encoding pays off for integers, strings and booleans; for floats it is
        # tried, abandoned, and costs a third of the write time.
        self._dictionary = [f.name for f in schema if not pa.types.is_floating(f.type)]
        folder.mkdir(parents=True, exist_ok=True)

    def _roll(self) -> None:
        if self._writer is not None:
            self._writer.close()
        path = self.folder / f"features-{len(self.paths):05d}.parquet"
        self.paths.append(path)
        self._writer = pq.ParquetWriter(path, self.schema, compression=PARQUET_COMPRESSION,
                                        use_dictionary=self._dictionary)
        self._rows_in_part = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None or (self._rows_in_part and self._rows_in_part + table.num_rows > self.part_rows):
            self._roll()
        assert self._writer is not None
        # Contiguous arrays: Parquet page boundaries follow Arrow chunks, and bytes must not.
        self._writer.write_table(table.combine_chunks(), row_group_size=table.num_rows)
        self._rows_in_part += table.num_rows

    def close(self) -> dict[str, Path]:
        """{file name in the version: path}: features.parquet for one part."""
        if self._writer is None:
            self._roll()
        assert self._writer is not None
        self._writer.close()
        self._writer = None
        if len(self.paths) == 1:
            single = self.folder / FEATURES_FILE
            self.paths[0].rename(single)
            return {FEATURES_FILE: single}
        return {path.name: path for path in self.paths}


def write_features(spec: FeatureSetSpec, reader: SourceReader, fitted: FittedFeatures, folder: Path,
                   options: Options, progress: Progress) -> tuple[dict[str, Path], ReferenceProfile, pa.Schema, int]:
    """Pass 2: the feature files, the reference profile, the files' schema and the row count.
    The main thread reads and transforms; writing and profiling each run in a thread of their
    own, in block order (so the bytes and the profile do not depend on the timing)."""
    passthrough = _passthrough_columns(spec)
    source_schema = reader.schema
    schema = pa.schema([source_schema.field(c) for c in passthrough] + list(fitted.output_schema))
    writer = _PartWriter(folder, schema, options.part_rows)
    builder = ProfileBuilder()
    writing, profiling = _Background("parquet"), _Background("profile")
    rows = 0
    progress.start("pass 2 (transform, write, profile)", total_rows=reader.total_rows,
                   total_bytes=None if reader.total_rows is not None else reader.total_bytes,
                   bytes_read=reader.bytes_read)
    try:
        for block in reader.blocks():
            table = block.table
            features = apply_batch(fitted, table)
            writing.submit(writer.write, pa.Table.from_arrays(
                [table.column(c) for c in passthrough] + features.columns, schema=schema))
            sources = {column: read_column(table.column(column), kind, column)
                       for column, kind in fitted.source_columns.items()}
            profiling.submit(builder.update, features, pa.table(sources))
            rows += table.num_rows
            progress.advance(table.num_rows)
        writing.drain()
        profiling.drain()
    except BaseException:
        writing.abandon()
        profiling.abandon()
        raise
    files = writer.close()
    progress.finish()
    return files, builder.result(), schema, rows


def _roles(spec: FeatureSetSpec) -> dict[str, str]:
    roles = {column: "entity" for column in spec.entities}
    if spec.source.timestamp_column:
        roles[spec.source.timestamp_column] = "timestamp"
    roles.update({column: "label" for column in spec.label_columns})
    return roles


def schema_document(spec: FeatureSetSpec, schema: pa.Schema, fitted: FittedFeatures,
                    source_schema: pa.Schema) -> dict[str, Any]:
    """schema.json: the feature files' columns with their roles, and the inputs a serving request
    must send (each feature's from, with the kind the transforms read it as)."""
    roles = _roles(spec)
    columns = [{"name": f.name, "dtype": str(f.type), "role": roles.get(f.name, "feature"), "nullable": f.nullable}
               for f in schema]
    inputs = [{"name": column, "dtype": str(source_schema.field(column).type), "kind": kind, "role": "input"}
              for column, kind in fitted.source_columns.items()]
    return {"kind": "FeatureSetSchema", "formatVersion": VERSION_FORMAT, "columns": columns, "inputs": inputs}


def _canonical(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


# -- one run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    version: Version
    rows: int
    new: bool
    """False when the same content was published before (an idempotent re-run)."""
    features: int


def _probe(store: ObjectStore, prefix: str) -> None:
    """One listing, so an unreachable store or a missing bucket fails the run before any work."""
    next(iter(store.list_objects(f"{prefix}/versions/", recursive=False)), None)


def open_source(job: Job, store: ObjectStore, environ: Mapping[str, str], work: Path, options: Options,
                progress: Progress) -> SourceReader:
    """The source's reader; a ContractViolated Failure when it lacks a column the spec reads."""
    spec = job.spec
    files = resolve_source(job, store, environ, work, progress)
    declared = {rule.column: rule.type for rule in (spec.validation.columns if spec.validation else [])
                if rule.type is not None}
    reader = SourceReader(
        files, spec.source.effective_format, _needed_columns(spec), declared=declared,
        numeric_only=numeric_only_columns(spec.features) - set(_passthrough_columns(spec)),
        timestamp_column=spec.source.timestamp_column, batch_rows=options.batch_rows,
        block_rows=options.block_rows, csv_block_bytes=options.csv_block_bytes)
    progress.line(f"source: {len(files)} file(s), {_bytes(reader.total_bytes)}"
                  + (f", {reader.total_rows:,} rows" if reader.total_rows is not None else "")
                  + f", {spec.source.effective_format}")
    missing = _missing_violations(spec, reader)
    if missing:
        raise Failure(Reason.CONTRACT_VIOLATED, _violations_message(missing), violations=missing)
    return reader


def check_and_fit(spec: FeatureSetSpec, reader: SourceReader, work: Path, options: Options,
                  progress: Progress) -> tuple[FittedFeatures, int, dict[str, str]]:
    """Pass 1: (fitted features, rows, {local source file uri: sha256 hex}); a Failure naming every
    violation when the contract does not hold, or the transform error when fitting fails."""
    stop = threading.Event()
    hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
    try:
        digests: dict[str, Future[str]] = {f.uri: hashing.submit(sha256_of, f.path, stop)
                                           for f in reader.files if f.sha256 is None}
        keys = _key_columns(spec)
        contract = ContractChecker(spec.validation, keys, work, parsed_columns=reader.parsed_columns,
                                   spill_hashes=options.spill_hashes)
        passes = _SourcePasses(reader, contract, progress, _refit_columns(spec))
        fit_error: TransformInputError | None = None
        fitted: FittedFeatures | None = None
        try:
            fitted = fit_pipeline(spec.features, passes, schema=reader.schema)
        except TransformInputError as error:
            fit_error = error  # the contract may say why: count it before reporting
        if not passes.checked:
            for _ in passes:
                pass
        violations = contract.finish(lambda: (block.table for block in reader.blocks(keys)))
        if violations:
            message = _violations_message(violations)
            if fit_error is not None:
                message += f"; also {fit_error}"
            raise Failure(Reason.CONTRACT_VIOLATED, message, violations=violations, rows=contract.rows)
        if fit_error is not None:
            raise Failure(Reason.MATERIALIZATION_FAILED, str(fit_error), rows=contract.rows)
        assert fitted is not None
        return fitted, contract.rows, {uri: future.result() for uri, future in digests.items()}
    finally:
        stop.set()  # a failed run does not wait for the digests of a large source
        hashing.shutdown(wait=True, cancel_futures=True)


def version_manifest(job: Job, reader: SourceReader, fitted: FittedFeatures, schema: Mapping[str, Any],
                     digests: Mapping[str, str], feature_files: Sequence[str], rows: int,
                     options: Options) -> dict[str, Any]:
    """The caller's part of the version manifest: content only (see the module docstring)."""
    spec = job.spec
    manifest: dict[str, Any] = {
        "kind": VERSION_KIND,
        "formatVersion": VERSION_FORMAT,
        "featureSet": {"namespace": job.namespace, "name": job.name},
        "rows": rows,
        "features": [{"name": f.name, "from": f.source, "dtype": str(f.output_type)} for f in fitted.features],
        "entities": list(spec.entities),
        "timestampColumn": spec.source.timestamp_column,
        "labelColumns": list(spec.label_columns),
        "schema": [{"name": c["name"], "dtype": c["dtype"], "role": c["role"]}
                   for c in [*schema["columns"], *schema["inputs"]]],
        "source": {
            "uri": spec.source.uri,
            "format": spec.source.effective_format,
            "files": [{"uri": f.uri, "sha256": "sha256:" + (f.sha256 or digests[f.uri]), "size": f.size}
                      for f in reader.files],
        },
        "specDigest": spec_digest(job.raw_spec),
        "featureFiles": sorted(feature_files),
        "blockRows": options.block_rows,
    }
    if spec.ttl is not None:
        # The trainer's point-in-time join of labels reads it (absent: no limit; versions without a
        # TTL keep the ids they had before the field existed).
        manifest["ttl"] = spec.ttl
    return manifest


def materialize(job: Job, store: ObjectStore, *, environ: Mapping[str, str], options: Options,
                progress: Progress, started: datetime) -> Published:
    """Reads, checks, fits, writes and publishes; raises `Failure` (or a StoreError) when it
    cannot. Nothing is published unless every check passed."""
    spec = job.spec
    _probe(store, job.prefix)
    with tempfile.TemporaryDirectory(prefix="materialize-", dir=options.work_dir) as scratch:
        work = Path(scratch)
        reader = open_source(job, store, environ, work, options, progress)
        fitted, rows, digests = check_and_fit(spec, reader, work, options, progress)
        try:
            outputs, profile, schema, rows = write_features(spec, reader, fitted, work / "out", options, progress)
        except TransformInputError as error:
            raise Failure(Reason.MATERIALIZATION_FAILED, str(error), rows=rows) from None
        changed = [f.uri for f in reader.files if f.changed()]
        if changed:
            raise Failure(Reason.MATERIALIZATION_FAILED,
                          f"the source changed while it was read ({', '.join(changed[:3])}); retrying reads it again",
                          transient=True, rows=rows)
        schema_json = schema_document(spec, schema, fitted, reader.schema)
        files: dict[str, Path | bytes] = dict(outputs)
        files[FITTED_FILE] = fitted.to_json().encode()
        files[SCHEMA_FILE] = _canonical(schema_json)
        files[PROFILE_FILE] = profile.to_json().encode()
        manifest = version_manifest(job, reader, fitted, schema_json, digests, list(outputs), rows, options)
        progress.line(f"publish: {len(files)} file(s) to {store.uri(job.prefix)}")
        version = store.publish_version(job.prefix, files, manifest)
        return Published(version=version, rows=rows, new=version.created >= started, features=len(fitted.features))


def _violations_message(violations: Sequence[Violation]) -> str:
    head = "the data contract is violated"
    if violations and violations[0].rule == "present":
        head = "the source lacks columns the FeatureSet reads" if len(violations) > 1 else \
            "the source lacks a column the FeatureSet reads"
    return f"{head}: " + "; ".join(v.message for v in violations)


def _classify(error: BaseException) -> Failure:
    """A Failure for an error of kubeloop's own store (or anything unexpected)."""
    if isinstance(error, StoreUnavailable):
        return Failure(Reason.MATERIALIZATION_FAILED, f"the object store is unavailable: {error}", transient=True)
    if isinstance(error, (AccessDenied, NotFound, Conflict)):
        return Failure(Reason.MATERIALIZATION_FAILED, f"the object store refused: {error}")
    if isinstance(error, DigestMismatch):
        return Failure(Reason.MATERIALIZATION_FAILED, f"publication failed verification: {error}", transient=True)
    if isinstance(error, StoreError):
        return Failure(Reason.MATERIALIZATION_FAILED, f"object store error: {error}", transient=True)
    return Failure(Reason.MATERIALIZATION_FAILED,
                   f"unexpected error: {type(error).__name__}: {error}", transient=True)


def run(environ: Mapping[str, str], *, options: Options | None = None, out: TextIO | None = None,
        err: TextIO | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        store: ObjectStore | None = None) -> int:
    """One materialization run as the pod performs it; the exit code. `store` replaces the one
    the environment describes (tests and benchmarks tune its part size)."""
    out = out or sys.stdout
    err = err or sys.stderr
    started = clock()
    begun = time.monotonic()
    progress = Progress(out, interval=options.progress_seconds if options else 5.0)
    try:
        options = options or Options.from_env(environ)
        job = parse_job(environ)
    except JobError as error:
        return _fail_early(error, environ, started, clock, out, err)
    try:
        store = store or ObjectStore.from_env(environ)
    except StoreConfigError as error:
        print(f"materialize: Failed: object store configuration: {error}", file=err, flush=True)
        return EXIT_PERMANENT
    progress.line(f"materialize {job.namespace}/{job.name} (generation {job.generation}, run {job.run_id}): "
                  f"{job.spec.source.uri} -> {store.uri(job.prefix)}")
    result: RunResult
    try:
        published = materialize(job, store, environ=environ, options=options, progress=progress, started=started)
    except Exception as error:  # noqa: BLE001 - every failure becomes a run result
        failure = error if isinstance(error, Failure) else (
            Failure(error.reason, str(error), transient=error.transient) if isinstance(error, SourceError)
            else _classify(error))
        if not isinstance(error, (Failure, SourceError, StoreError)):
            traceback.print_exc(file=err)
        for violation in failure.violations:
            progress.line(f"violation: {violation.message}")
        result = _result(job, started, clock(), failure.reason, failure.message, failure.exit_code,
                         rows=failure.rows, violations=failure.violations)
    else:
        version = published.version
        what = "published" if published.new else "already published (same data and spec)"
        message = (f"version {version.id} {what}: {published.rows:,} rows, {published.features} features, "
                   f"{len(version.files)} files")
        result = _result(job, started, clock(), Reason.MATERIALIZED, message, EXIT_SUCCESS, rows=published.rows,
                         version=version)
    return _finish(store, result, begun, out, err)


def _result(job: Job, started: datetime, finished: datetime, reason: Reason, message: str, exit_code: int, *,
            rows: int = 0, violations: Sequence[Violation] = (), version: Version | None = None) -> RunResult:
    return RunResult(run_id=job.run_id, namespace=job.namespace, name=job.name, uid=job.uid,
                     generation=job.generation, spec_digest=spec_digest(job.raw_spec), pod=job.pod,
                     started_at=started, finished_at=finished, reason=reason, message=message, exit_code=exit_code,
                     version=version.id if version else None, version_digest=version.digest if version else None,
                     rows=rows, violations=tuple(violations))


def _finish(store: ObjectStore, result: RunResult, begun: float, out: TextIO, err: TextIO) -> int:
    code = result.exit_code
    try:
        key = write_run(store, result)
    except StoreError as error:
        print(f"materialize: cannot write the run result: {error}", file=err, flush=True)
        key = None
        if isinstance(error, StoreUnavailable):
            code = EXIT_TRANSIENT  # the controller needs the result: let the Job try again
    elapsed = time.monotonic() - begun
    where = f" (result {store.uri(key)})" if key else ""
    print(f"materialize: {result.outcome} ({result.reason}) in {elapsed:.1f} s: {result.message}{where}",
          file=out, flush=True)
    return code


def _fail_early(error: JobError, environ: Mapping[str, str], started: datetime, clock: Callable[[], datetime],
                out: TextIO, err: TextIO) -> int:
    """A job that cannot even be parsed: a run result when the FeatureSet is known, else stderr."""
    if error.namespace and error.name and error.run_id:
        try:
            store = ObjectStore.from_env(environ)
        except StoreConfigError:
            store = None
        if store is not None:
            raw_spec = error.raw_spec if error.raw_spec is not None else {}
            result = RunResult(run_id=error.run_id, namespace=error.namespace, name=error.name, uid=error.uid,
                               generation=error.generation, spec_digest=spec_digest(raw_spec) if raw_spec else None,
                               pod=environ.get("HOSTNAME") or None, started_at=started, finished_at=clock(),
                               reason=Reason.MATERIALIZATION_FAILED, message=str(error), exit_code=EXIT_PERMANENT)
            return _finish(store, result, time.monotonic(), out, err)
    print(f"materialize: Failed: {error}", file=err, flush=True)
    return EXIT_PERMANENT


def main(argv: Sequence[str] | None = None) -> int:
    """The pod's entrypoint: no arguments, everything comes from the environment."""
    if argv:
        print(__doc__, file=sys.stderr)
        return EXIT_PERMANENT
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    return run(os.environ)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
