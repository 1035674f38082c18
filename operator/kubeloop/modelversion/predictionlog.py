"""The prediction log: every row a model server predicted, with its raw inputs, in the object store.

The model server writes it (`PredictionLogWriter`, batched from a background thread); the drift
check reads it (`iter_prediction_log` / `read_prediction_log`). This module is the contract
between the two, so it holds only pyarrow and the object store (no torch, no kserve).

Layout: under `prediction_log_prefix(namespace, model, model_version)`, one immutable Parquet
object per batch, written with one PUT:

    <prefix>/dt=YYYY-MM-DD/hour=HH/<YYYYMMDDTHHMMSSffffffZ>-<writer>-<seq:06d>.parquet

The key's time is the batch's first row's time (rows are sorted by time within an object). A
batch never spans two hours: the writer splits it at hour boundaries, so every row of
`hour=HH` arrived in that hour and a reader of a window lists only the hours that overlap it.
`writer` tells replicas (and restarts of one pod) apart; `seq` counts a writer's objects.

Columns: `timestamp` (timestamp[us, UTC], when the request arrived), `request_id`, `model_version`,
one column per raw source column (the kinds `transforms.read_column` reads them as: int64,
float64, bool, large_string, timestamp[us, UTC]), `prediction` (float64: binary = probability of the
positive class, regression = the value, multiclass = the probability of the predicted class) and
`predicted_class` (string, null for regression).
"""

from __future__ import annotations

import io
import logging
import os
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kubeloop.featureset.transforms import Kind, read_column
from kubeloop.store import ObjectStore

log = logging.getLogger(__name__)

TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
LEADING_COLUMNS = ("timestamp", "request_id", "model_version")
TRAILING_COLUMNS = ("prediction", "predicted_class")
OUTCOMES = ("written", "dropped", "failed")

_SOURCE_TYPES: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "string": pa.large_string(),
    "timestamp": TIMESTAMP_TYPE,
}
_KEY_TIME = "%Y%m%dT%H%M%S%fZ"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OBJECT_NAME = re.compile(r"^(\d{8}T\d{12}Z)-([a-z0-9-]+)-(\d{6,})\.parquet$")


def prediction_log_prefix(namespace: str, model: str, model_version: str) -> str:
    """Where one ModelVersion's served predictions are logged: `predictions/<ns>/<model>/<version>`."""
    for what, value in (("namespace", namespace), ("model", model), ("model version", model_version)):
        if not value or "/" in value:
            raise ValueError(f"prediction log: {what} {value!r} must be a non-empty name without '/'")
    return f"predictions/{namespace}/{model}/{model_version}"


def prediction_log_schema(source_columns: Mapping[str, str]) -> pa.Schema:
    """The Arrow schema of a log whose requests carry `source_columns` (name -> source kind)."""
    clash = sorted(set(source_columns) & {*LEADING_COLUMNS, *TRAILING_COLUMNS})
    if clash:
        raise ValueError(f"prediction log: source column(s) {', '.join(clash)} clash with the log's own columns")
    fields = [pa.field("timestamp", TIMESTAMP_TYPE, nullable=False), pa.field("request_id", pa.string()),
              pa.field("model_version", pa.string())]
    for name, kind in source_columns.items():
        if kind not in _SOURCE_TYPES:
            raise ValueError(f"prediction log: column {name!r} has kind {kind!r}, which is not a source kind")
        fields.append(pa.field(name, _SOURCE_TYPES[kind]))
    fields += [pa.field("prediction", pa.float64()), pa.field("predicted_class", pa.string())]
    return pa.schema(fields)


def hour_folder(prefix: str, moment: datetime) -> str:
    """`<prefix>/dt=YYYY-MM-DD/hour=HH` of the hour holding `moment` (UTC)."""
    moment = moment.astimezone(UTC)
    return f"{prefix}/dt={moment:%Y-%m-%d}/hour={moment:%H}"


def object_key(prefix: str, first: datetime, writer: str, seq: int) -> str:
    """The key of a batch whose first (earliest) row arrived at `first`."""
    first = first.astimezone(UTC)
    return f"{hour_folder(prefix, first)}/{first.strftime(_KEY_TIME)}-{writer}-{seq:06d}.parquet"


def writer_id(hostname: str | None = None) -> str:
    """A writer name unique across replicas and restarts: the pod's name plus random hex."""
    host = re.sub(r"[^a-z0-9-]+", "-", (hostname or os.environ.get("HOSTNAME") or "server").lower()).strip("-")
    return f"{host[:40] or 'server'}-{secrets.token_hex(3)}"


# -- building batches ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedRequest:
    """The rows of one successful request, as the server has them: no conversion on its path.

    `sources` holds the raw source columns either as the table the request became (any Arrow
    types the transforms accepted; they are read as their kinds in the writer's thread) or, for
    requests the row kernels computed, as one dict per row of the values already read as their
    kinds (`transforms.apply_rows`). `predicted_class` is one label per row (None for regression).
    """

    time: datetime
    request_id: str
    sources: pa.Table | Sequence[Mapping[str, Any]]
    prediction: np.ndarray
    predicted_class: Sequence[str | None] | None

    @property
    def rows(self) -> int:
        return self.sources.num_rows if isinstance(self.sources, pa.Table) else len(self.sources)


class HeldRows:
    """Row-form requests held column by column, as lists of plain values.

    The writer appends each such request's values here as it arrives and keeps nothing per
    request: a buffer of thousands of request objects would be scanned by every garbage
    collection of the server process while it waits for its flush (measured: ~7 us per request)."""

    def __init__(self, source_names: Sequence[str]) -> None:
        self.micros: list[int] = []
        self.request_ids: list[str] = []
        self.sources: dict[str, list[Any]] = {name: [] for name in source_names}
        self.prediction: list[float] = []
        self.predicted_class: list[str | None] = []

    @property
    def rows(self) -> int:
        return len(self.micros)

    def add(self, request: LoggedRequest) -> None:
        rows = request.sources
        assert not isinstance(rows, pa.Table)
        count = len(rows)
        self.micros.extend([_micros(request.time)] * count)
        self.request_ids.extend([request.request_id] * count)
        if count == 1:  # nearly every request: appends, without a list per column
            row = rows[0]
            for name, values in self.sources.items():
                values.append(row.get(name))
        else:
            for name, values in self.sources.items():
                values.extend([row.get(name) for row in rows])
        self.prediction.extend(np.asarray(request.prediction, dtype=np.float64).reshape(-1).tolist())
        self.predicted_class.extend(request.predicted_class if request.predicted_class is not None else [None] * count)

    def table(self, schema: pa.Schema, model_version: str) -> pa.Table:
        columns = {
            "timestamp": pa.array(self.micros, type=pa.int64()).cast(TIMESTAMP_TYPE),
            "request_id": pa.array(self.request_ids, type=pa.string()),
            "model_version": pa.array([model_version] * self.rows, type=pa.string()),
            "prediction": pa.array(self.prediction, type=pa.float64()),
            "predicted_class": pa.array(self.predicted_class, type=pa.string()),
        }
        for name, values in self.sources.items():  # already read as their kinds by the row kernels
            columns[name] = pa.array(values, type=schema.field(name).type)
        return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)


def source_names(schema: pa.Schema) -> list[str]:
    """The source columns of a log schema."""
    return [name for name in schema.names if name not in LEADING_COLUMNS and name not in TRAILING_COLUMNS]


def prediction_log_table(schema: pa.Schema, model_version: str, requests: Sequence[LoggedRequest],
                         held: HeldRows | None = None) -> pa.Table:
    """The log rows of `requests` (and of `held`, the row-form requests a writer collected) in
    `schema`, sorted by time (stable: requests of the same microsecond keep their order within
    their form, and table-form requests come before row-form ones).

    Source columns of table-form requests are read with `transforms.read_column`, the same rules
    the transforms applied when the request was predicted, so the logged values are what the
    model's features came from; row-form requests hold values already read by those rules.
    """
    held = held or HeldRows(source_names(schema))
    tables = []
    for request in requests:
        if isinstance(request.sources, pa.Table):
            tables.append(request)
        else:
            held.add(request)
    parts = ([_tables_part(schema, model_version, tables)] if tables else []) + (
        [held.table(schema, model_version)] if held.rows else [])
    if not parts:
        return schema.empty_table()
    table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
    micros = pc.cast(table.column("timestamp"), pa.int64()).to_numpy()
    order = np.argsort(micros, kind="stable")
    return table if len(order) < 2 or bool(np.all(order[1:] > order[:-1])) else table.take(pa.array(order))


def _tables_part(schema: pa.Schema, model_version: str, requests: Sequence[LoggedRequest]) -> pa.Table:
    names = source_names(schema)
    kinds = {name: _kind_of(schema.field(name).type) for name in names}
    rows = [request.rows for request in requests]
    total = sum(rows)
    micros = np.repeat(np.array([_micros(request.time) for request in requests], dtype=np.int64), rows)
    ids = np.repeat(np.array([request.request_id for request in requests], dtype=object), rows)
    columns: dict[str, pa.Array] = {
        "timestamp": pa.array(micros, type=pa.int64()).cast(TIMESTAMP_TYPE),
        "request_id": pa.array(ids, type=pa.string()),
        "model_version": pa.array([model_version] * total, type=pa.string()),
    }
    # Requests of one shape (the same Arrow types: nearly all of them) are concatenated and read
    # once per column; reading each request's columns one by one would cost the writer thread
    # more CPU than the requests themselves.
    try:
        # One concatenation when every request has the same schema (Arrow checks that they agree).
        merged = [pa.concat_tables([request.sources for request in requests]).select(names)]
    except pa.ArrowInvalid:
        runs: list[tuple[pa.Schema, list[pa.Table]]] = []
        for request in requests:
            sources = request.sources
            assert isinstance(sources, pa.Table)  # only table-form requests come here
            if sources.column_names != names:
                sources = sources.select(names)
            if runs and runs[-1][0].equals(sources.schema):
                runs[-1][1].append(sources)
            else:
                runs.append((sources.schema, [sources]))
        merged = [pa.concat_tables(run) for _, run in runs]
    for name in names:
        parts = [read_column(table.column(name), kinds[name], name) for table in merged]
        columns[name] = pa.concat_arrays(parts) if parts else pa.array([], type=schema.field(name).type)
    predictions = [np.asarray(request.prediction, dtype=np.float64).reshape(-1) for request in requests]
    columns["prediction"] = pa.array(np.concatenate(predictions) if predictions else np.empty(0), pa.float64())
    classes: list[str | None] = []
    for request in requests:
        classes.extend(request.predicted_class if request.predicted_class is not None else [None] * request.rows)
    columns["predicted_class"] = pa.array(classes, type=pa.string())
    return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)


def split_by_hour(table: pa.Table, max_rows: int) -> list[pa.Table]:
    """A time-sorted log table cut at hour boundaries and into pieces of at most `max_rows`."""
    if table.num_rows == 0:
        return []
    hours = pc.cast(table.column("timestamp"), pa.int64()).to_numpy() // 3_600_000_000
    cuts = [0, *(np.flatnonzero(hours[1:] != hours[:-1]) + 1).tolist(), table.num_rows]
    pieces = []
    for start, end in zip(cuts, cuts[1:], strict=False):
        for offset in range(start, end, max(1, max_rows)):
            pieces.append(table.slice(offset, min(max(1, max_rows), end - offset)))
    return pieces


def encode_parquet(table: pa.Table) -> bytes:
    """One Parquet file in memory (zstd): an object is PUT whole, so it is never half-published."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("prediction log: request times must be timezone-aware")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _kind_of(type_: pa.DataType) -> Kind:
    for kind, known in _SOURCE_TYPES.items():
        if known == type_:
            return kind  # type: ignore[return-value]
    raise ValueError(f"prediction log: {type_} is not a source column type")


# -- the writer ---------------------------------------------------------------------------------


@dataclass
class _Batch:
    """A batch with its key fixed once: a retry PUTs the same bytes to the same key, so a write
    whose response was lost is not duplicated under a second key."""

    key: str
    data: bytes
    rows: int


class PredictionLogWriter:
    """Buffers logged requests and writes them in batches from one background thread.

    `submit` never touches the store and never blocks on it: it appends to a buffer under a
    lock and returns. The thread flushes when `batch_rows` rows are buffered or `flush_seconds`
    after the previous flush. Rows held (buffered or built but not yet written) never exceed
    `max_rows`: a request that would pass the bound is dropped and counted, so a store outage
    costs memory up to the bound, never latency. A failed write keeps its batches (same keys)
    and retries them at the next flush; `on_rows(outcome, count)` reports written, dropped and
    failed rows (failed counts rows per failed attempt, so a row can count more than once).
    """

    def __init__(self, store: ObjectStore, prefix: str, schema: pa.Schema, model_version: str, *,
                 writer: str | None = None, batch_rows: int = 10_000, flush_seconds: float = 5.0,
                 max_rows: int = 100_000, on_rows: Callable[[str, int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if batch_rows < 1 or max_rows < 1 or flush_seconds <= 0:
            raise ValueError("prediction log: batch_rows and max_rows must be >= 1, flush_seconds > 0")
        self.store = store
        self.prefix = prefix
        self.schema = schema
        self.model_version = model_version
        self.writer = writer or writer_id()
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.max_rows = max_rows
        self._on_rows = on_rows or (lambda outcome, count: None)
        self._clock = clock
        self._lock = threading.Condition()
        self._requests: list[LoggedRequest] = []  # table-form requests
        self._held = HeldRows(source_names(schema))  # row-form requests, column by column
        self._buffered_rows = 0
        self._unwritten: deque[_Batch] = deque()
        self._unwritten_rows = 0
        self._seq = 0
        self._closing = False
        self._flushing = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def held_rows(self) -> int:
        """Rows not yet written (buffered or in batches waiting for the store)."""
        with self._lock:
            return self._buffered_rows + self._unwritten_rows

    def submit(self, request: LoggedRequest) -> bool:
        """Buffer a request's rows; False (and counted as dropped) when the bound is reached."""
        rows = request.rows
        with self._lock:
            if self._closing or self._buffered_rows + self._unwritten_rows + rows > self.max_rows:
                accepted = False
            else:
                if isinstance(request.sources, pa.Table):
                    self._requests.append(request)
                else:
                    self._held.add(request)  # nothing of the request outlives this call
                self._buffered_rows += rows
                accepted = True
                if self._buffered_rows >= self.batch_rows:
                    self._lock.notify()
        if not accepted:
            self._on_rows("dropped", rows)
        return accepted

    def start(self) -> None:
        """Start the flushing thread (a daemon: a killed process loses at most the buffer)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting rows, write what is held (one attempt), and stop the thread."""
        with self._lock:
            self._closing = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("prediction log: %d row(s) were not written within %.0f s of shutdown",
                            self.held_rows, timeout)
        else:
            self.flush()

    def _run(self) -> None:
        last = self._clock()
        while True:
            with self._lock:
                while not self._closing and self._buffered_rows < self.batch_rows:
                    remaining = self.flush_seconds - (self._clock() - last)
                    if remaining <= 0:
                        break
                    self._lock.wait(remaining)
                closing = self._closing
            self.flush()
            last = self._clock()
            if closing:
                return

    def flush(self) -> int:
        """Build batches of the buffered rows and write every held batch; the rows written.

        Stops at the first failing write (the store is likely down: the other batches wait for
        the next flush rather than each running through the retries)."""
        with self._flushing:
            with self._lock:
                requests, self._requests = self._requests, []
                held, self._held = self._held, HeldRows(source_names(self.schema))
                rows, self._buffered_rows = self._buffered_rows, 0
                self._unwritten_rows += rows
            if rows:
                self._build(requests, held, rows)
            written = 0
            while True:
                with self._lock:
                    if not self._unwritten:
                        break
                    batch = self._unwritten[0]
                try:
                    self.store.put_bytes(batch.key, batch.data, content_type="application/vnd.apache.parquet")
                except Exception as error:  # any failure: keep the batch, count it, retry next flush
                    log.warning("prediction log: writing %s failed (%d row(s) kept for the next flush): %s",
                                batch.key, batch.rows, error)
                    self._on_rows("failed", batch.rows)
                    break
                with self._lock:
                    self._unwritten.popleft()
                    self._unwritten_rows -= batch.rows
                written += batch.rows
                self._on_rows("written", batch.rows)
                log.debug("prediction log: wrote %d row(s) to %s", batch.rows, batch.key)
            return written

    def _build(self, requests: list[LoggedRequest], held: HeldRows, rows: int) -> None:
        try:
            table = prediction_log_table(self.schema, self.model_version, requests, held)
            batches = []
            for piece in split_by_hour(table, self.batch_rows):
                first = piece.column("timestamp")[0].as_py()
                batches.append(_Batch(object_key(self.prefix, first, self.writer, self._seq),
                                      encode_parquet(piece), piece.num_rows))
                self._seq += 1
        except Exception:
            # Cannot happen for rows the transforms accepted; if it does, losing these rows (counted)
            # is better than a writer thread that dies and stops logging altogether.
            log.exception("prediction log: %d row(s) could not be encoded and are dropped", rows)
            with self._lock:
                self._unwritten_rows -= rows
            self._on_rows("dropped", rows)
            return
        with self._lock:
            self._unwritten.extend(batches)


# -- reading ------------------------------------------------------------------------------------


def _hour_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


_DIRECT_HOURS = 48  # up to this many hours, list each hour folder; beyond, list days first


def _hour_folders(store: ObjectStore, prefix: str, since: datetime, until: datetime) -> Iterator[str]:
    """The hour folders that overlap [since, until), in time order."""
    first, end = _hour_start(since), until.astimezone(UTC)
    if end <= first:
        return
    if (end - first) <= timedelta(hours=_DIRECT_HOURS):
        hour = first
        while hour < end:
            yield hour_folder(prefix, hour) + "/"
            hour += timedelta(hours=1)
        return
    # A long window (or an open one such as since=datetime.min): only list what exists.
    for day in _child_folders(store, f"{prefix}/", "dt="):
        try:
            day_start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            continue
        if day_start + timedelta(days=1) <= first or day_start >= end:
            continue
        for hh in _child_folders(store, f"{prefix}/dt={day}/", "hour="):
            if not (hh.isdigit() and len(hh) == 2):
                continue
            start = day_start + timedelta(hours=int(hh))
            if first <= start < end:
                yield f"{prefix}/dt={day}/hour={hh}/"


def _child_folders(store: ObjectStore, folder: str, label: str) -> list[str]:
    names = []
    for info in store.list_objects(folder, recursive=False):
        name = info.key[len(folder):].rstrip("/")
        if info.key.endswith("/") and name.startswith(label):
            names.append(name[len(label):])
    return sorted(names)


def prediction_log_keys(store: ObjectStore, prefix: str, *, since: datetime, until: datetime) -> Iterator[str]:
    """Keys of the objects that can hold rows of [since, until), in time order per hour."""
    for folder in _hour_folders(store, prefix, since, until):
        keys = []
        for info in store.list_objects(folder, recursive=False):
            match = _OBJECT_NAME.match(info.key[len(folder):])
            if match is None:
                continue
            first = datetime.strptime(match.group(1), _KEY_TIME).replace(tzinfo=UTC)
            if first < until:  # rows are sorted: an object starting at/after `until` has none
                keys.append((match.group(1), info.key))
        yield from (key for _, key in sorted(keys))


def iter_prediction_log(store: ObjectStore, prefix: str, *, since: datetime, until: datetime,
                        columns: Iterable[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The logged rows with `since <= timestamp < until`, one object at a time (bounded memory).

    `columns` selects columns (default: all; `timestamp` is read anyway to filter). Objects
    that are not Parquet log objects are skipped; a corrupt one raises (a reader should not
    silently compute drift on part of its window)."""
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("prediction log: since and until must be timezone-aware")
    wanted = list(columns) if columns is not None else None
    low = pa.scalar(_micros(since), pa.int64()).cast(TIMESTAMP_TYPE)
    high = pa.scalar(_micros(until), pa.int64()).cast(TIMESTAMP_TYPE)
    for key in prediction_log_keys(store, prefix, since=since, until=until):
        table = pq.read_table(io.BytesIO(store.get_bytes(key)))
        stamps = table.column("timestamp")
        table = table.filter(pc.and_(pc.greater_equal(stamps, low), pc.less(stamps, high)))
        if wanted is not None:
            missing = [name for name in wanted if name not in table.column_names]
            if missing:
                raise ValueError(f"prediction log object {key} lacks column(s) {', '.join(missing)}")
            table = table.select(wanted)
        if table.num_rows:
            yield from table.to_batches()


def read_prediction_log(store: ObjectStore, prefix: str, *, since: datetime, until: datetime,
                        columns: Iterable[str] | None = None) -> pa.Table:
    """`iter_prediction_log` concatenated into one table (empty table: no columns when nothing matched)."""
    batches = list(iter_prediction_log(store, prefix, since=since, until=until, columns=columns))
    return pa.Table.from_batches(batches) if batches else pa.table({})
