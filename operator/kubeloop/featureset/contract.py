"""The data contract of a FeatureSet (`spec.validation`), checked while the materializer streams
the source: every rule is a count accumulated block by block, so memory does not grow with the
data (uniqueness aside, see below), and every violation is reported with its count, not just the
first one.

Rules per column (`ColumnRule`), on the values as the materializer reads them (NaN is null, as
in the transforms):
- type: the column's values must be of the declared kind. A float column passes an integer rule
  only for integral values; an integer column passes a float rule. CSV columns with a declared
  type are read as text and parsed here (`parse_declared`), so each value that does not parse
  is counted (and becomes null for the rest of the run); a Parquet column of another Arrow type
  fails with all its values (a Parquet string column under a timestamp rule is parsed as ISO 8601
  like a CSV one).
- min / max: values below / above the bound (numbers; timestamps as epoch seconds; infinities
  count). Nulls are not compared.
- allowedValues: non-null values not in the list, compared as written (1 and "1" differ for a
  string column; booleans match "true"/"false" or 1/0; timestamps match ISO 8601 strings).
- maxNullFraction: nulls / rows above the limit.
Table rules: minRows, and uniqueKeys (entities + timestamp column, when set, identify each row).

Uniqueness is exact, not probabilistic, in bounded memory: each row's key is hashed to 64 bits
(`key_hashes`); hashes are buffered up to `spill_hashes` and then spilled to 256 files on disk
by their top byte. At the end each file is sorted alone (files larger than the buffer are split
again by the next byte), and equal hashes are the only candidates for equal keys: distinct
hashes prove distinct keys, so a source without equal hashes is unique without another look.
When candidates exist (true duplicates, or a 64-bit collision), the key columns are read again
(`finish(reread_keys)`) and only the candidate rows are kept and grouped by their actual key
values, which gives the exact count of rows that repeat an earlier row's key. Nulls in keys are
values (two rows with a null entity and the same timestamp repeat each other).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubeloop.featureset.api import ColumnRule, ColumnType, Validation
from kubeloop.featureset.results import Violation
from kubeloop.featureset.transforms import TransformInputError, read_column, source_kind, stable_hash64

SAMPLES = 5
"""Offending values quoted in a message."""

DEFAULT_SPILL_HASHES = 4 * 1024 * 1024
"""Key hashes held in memory before they are spilled to disk (8 bytes each: 32 MiB)."""

_PARTITIONS = 256
_SEED = np.uint64(0x9E3779B97F4A7C15)
_COLUMN_MIX = np.uint64(0xC2B2AE3D27D4EB4F)
_NULL_HASH = np.uint64(0x27BB2EE687B0B0FD)

_INTEGER_TEXT = r"^[+-]?\d{1,19}$"
_FLOAT_TEXT = r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)$"
_BOOLEAN_TEXT = r"^(true|false|1|0)$"
_TIMESTAMP_TEXT = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"
_INT64_BOUNDS = (-(2**63), 2**63 - 1)


# -- formatting ---------------------------------------------------------------------------------


def _percent(count: int, total: int) -> str:
    if not total:
        return "0%"
    value = 100.0 * count / total
    if 0 < value < 0.001:
        return "<0.001%"
    text = f"{value:.3g}"
    return ">99.9%" if text == "100" and count < total else f"{text}%"


def _of(count: int, total: int, noun: str = "values") -> str:
    return f"{count:,} of {total:,} {noun} ({_percent(count, total)})"


def _number(value: float | int) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() and abs(value) < 1e15 else str(value)


def format_value(value: Any) -> str:
    """A value as a message quotes it: strings in double quotes, times in ISO 8601."""
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:57] + '..."'
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return _number(value)
    return str(value)


def _examples(samples: Sequence[Any]) -> str:
    return f" (e.g. {', '.join(format_value(v) for v in samples)})" if samples else ""


def _add_samples(samples: list[Any], values: pa.Array) -> None:
    if len(samples) >= SAMPLES or len(values) == 0:
        return
    for value in pc.unique(values.slice(0, 1000)).to_pylist():
        if value not in samples:
            samples.append(value)
            if len(samples) >= SAMPLES:
                return


# -- declared types -----------------------------------------------------------------------------


def _mask(array: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def _valid(array: pa.Array) -> np.ndarray:
    if array.null_count == 0:
        return np.ones(len(array), dtype=bool)
    return array.is_valid().to_numpy(zero_copy_only=False)


def _matching(text: pa.Array, pattern: str) -> np.ndarray:
    return _mask(pc.match_substring_regex(text, pattern, ignore_case=True))


def parse_declared(strings: pa.Array, column_type: ColumnType) -> tuple[pa.Array, np.ndarray]:
    """Text values (a CSV column with a declared type) parsed as `column_type`: the typed array
    (int64, float64, bool, timestamp[us, UTC] or large_string; values that do not parse become
    null) and the mask of the values that did not parse. Surrounding spaces are ignored; integers
    are decimal digits with an optional sign, within int64; floats as Arrow parses them
    (1.5, .5, 1e3, inf, nan); booleans true/false/1/0 in any case; timestamps ISO 8601 as the
    transforms read them (naive ones are UTC)."""
    if pa.types.is_dictionary(strings.type):
        strings = strings.dictionary_decode()
    strings = pc.cast(strings, pa.large_string())
    if column_type == "string":
        return strings, np.zeros(len(strings), dtype=bool)
    valid = _valid(strings)
    text = pc.utf8_trim_whitespace(strings)
    pattern = {"integer": _INTEGER_TEXT, "float": _FLOAT_TEXT, "boolean": _BOOLEAN_TEXT,
               "timestamp": _TIMESTAMP_TEXT}[column_type]
    good = valid & _matching(text, pattern)
    kept = pc.if_else(pa.array(good), text, pa.scalar(None, pa.large_string()))
    if column_type == "integer":
        kept = pc.replace_substring_regex(kept, r"^\+", "")
        wide = pc.cast(kept, pa.decimal128(20, 0))
        inside = _mask(pc.and_(pc.greater_equal(wide, pa.scalar(_INT64_BOUNDS[0], pa.decimal128(20, 0))),
                               pc.less_equal(wide, pa.scalar(_INT64_BOUNDS[1], pa.decimal128(20, 0)))))
        good &= inside
        typed = pc.cast(pc.if_else(pa.array(good), wide, pa.scalar(None, wide.type)), pa.int64())
    elif column_type == "float":
        typed = pc.cast(kept, pa.float64())
    elif column_type == "boolean":
        typed = pc.cast(pc.utf8_lower(kept), pa.bool_())
    else:
        typed, good = _parse_timestamps(kept, good)
    return typed, valid & ~good


def _parse_timestamps(text: pa.Array, good: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    try:
        return read_column(text, "timestamp"), good
    except TransformInputError:
        pass
    # Shaped like ISO 8601 but not a date (month 13 ...): find the culprits one by one. Only a
    # failing source pays for this loop.
    good = good.copy()
    values = text.to_pylist()
    for index in np.flatnonzero(good):
        try:
            read_column(pa.array([values[index]], pa.large_string()), "timestamp")
        except TransformInputError:
            good[index] = False
    kept = pc.if_else(pa.array(good), text, pa.scalar(None, pa.large_string()))
    return read_column(kept, "timestamp"), good


# -- per-column rules ---------------------------------------------------------------------------


@dataclass
class TypeErrors:
    """Values of a column that are not of its declared type."""

    count: int = 0
    found: str | None = None
    """The kind the whole column has instead (a wrong Arrow type), or None (some values)."""
    samples: list[Any] = field(default_factory=list)

    def add(self, count: int, samples: pa.Array | None = None, found: str | None = None) -> None:
        self.count += count
        if found is not None and self.found is None:
            self.found = found
        if samples is not None:
            _add_samples(self.samples, samples)


def _kind_of(type_: pa.DataType) -> str | None:
    try:
        return source_kind(type_)
    except TypeError:
        return str(type_)


def check_type(array: pa.Array, column_type: ColumnType, errors: TypeErrors) -> None:
    """Counts the values of `array` that are not of `column_type` into `errors`."""
    kind = _kind_of(array.type)
    if kind is None or kind == column_type or (column_type == "float" and kind == "integer"):
        return
    present = len(array) - array.null_count
    if column_type == "integer" and kind == "float":
        values = pc.cast(array, pa.float64())
        with np.errstate(invalid="ignore"):
            numbers = pc.fill_null(values, 0.0).to_numpy(zero_copy_only=False)
            bad = _valid(values) & ~np.isnan(numbers) & ~(np.isfinite(numbers) & (numbers == np.trunc(numbers)))
        if bad.any():
            errors.add(int(bad.sum()), values.filter(pa.array(bad)))
        return
    if column_type == "timestamp" and kind == "string":
        _, bad = parse_declared(array, "timestamp")
        if bad.any():
            errors.add(int(bad.sum()), pc.cast(array, pa.large_string()).filter(pa.array(bad)))
        return
    if present:
        errors.add(present, found=kind)


def _as_numbers(array: pa.Array, kind: str) -> pa.Array | None:
    """float64 values (timestamps as epoch seconds) for min/max, NaN as null; None if not numeric."""
    if kind == "timestamp":
        micros = pc.cast(read_column(array, "timestamp"), pa.int64())
        return pc.divide(pc.cast(micros, pa.float64()), 1e6)
    if kind in ("integer", "float"):
        return read_column(array, "float")
    return None


def _allowed_set(values: Sequence[int | str], kind: str) -> pa.Array:
    if kind == "string":
        return pa.array([v for v in values if isinstance(v, str)], pa.large_string())
    if kind == "integer":
        return pa.array([v for v in values if isinstance(v, int) and not isinstance(v, bool)], pa.int64())
    if kind == "float":
        return pa.array([float(v) for v in values if isinstance(v, int) and not isinstance(v, bool)], pa.float64())
    if kind == "boolean":
        mapped = {"true": True, "false": False, 1: True, 0: False}
        return pa.array(sorted({mapped[k] for v in values
                                if (k := v.lower() if isinstance(v, str) else v) in mapped}), pa.bool_())
    if kind == "timestamp":
        texts = pa.array([v for v in values if isinstance(v, str)], pa.large_string())
        parsed, bad = parse_declared(texts, "timestamp")
        return parsed.filter(pa.array(~bad))
    return pa.array([], pa.null())


class ColumnCheck:
    """Accumulates the counts of one `ColumnRule` over the blocks of a run."""

    def __init__(self, rule: ColumnRule, *, parsed_by_reader: bool = False) -> None:
        self.rule = rule
        self.parsed_by_reader = parsed_by_reader
        self.rows = 0
        self.nulls = 0
        self.type_errors = TypeErrors()
        self.below = 0
        self.above = 0
        self.smallest: float | None = None
        self.largest: float | None = None
        self.not_numeric: str | None = None
        self.not_numeric_count = 0
        self.not_allowed = 0
        self.not_allowed_samples: list[Any] = []
        self._allowed: dict[str, pa.Array] = {}

    def update(self, array: pa.Array | pa.ChunkedArray, unparsed: pa.Array | None = None,
               unparsed_mask: np.ndarray | None = None) -> None:
        """Adds a block of the column. For a CSV column with a declared type, `array` is the
        parsed column and `unparsed_mask` marks the values (text in `unparsed`) that did not
        parse: they are type errors, not nulls."""
        rule = self.rule
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        self.rows += len(array)
        nulls = array.null_count
        if pa.types.is_floating(array.type) and nulls < len(array):
            nulls += int(pc.sum(pc.is_nan(array)).as_py() or 0)
        if unparsed_mask is not None:
            bad = int(unparsed_mask.sum())
            nulls -= bad
            if bad:
                assert unparsed is not None
                self.type_errors.add(bad, unparsed.filter(pa.array(unparsed_mask)))
        elif rule.type is not None:
            check_type(array, rule.type, self.type_errors)
        self.nulls += nulls
        kind = _kind_of(array.type)
        if kind is None or nulls == len(array):
            return
        if rule.min is not None or rule.max is not None:
            numbers = _as_numbers(array, kind)
            if numbers is None:
                self.not_numeric = self.not_numeric or kind
                self.not_numeric_count += len(array) - nulls
            else:
                self._bounds(numbers)
        if rule.allowed_values is not None:
            self._allowed_values(array, kind)

    def _bounds(self, numbers: pa.Array) -> None:
        rule = self.rule
        extremes = pc.min_max(numbers)
        low, high = extremes["min"].as_py(), extremes["max"].as_py()
        if low is None:
            return
        if rule.min is not None:
            below = int(pc.sum(pc.less(numbers, rule.min)).as_py() or 0)
            self.below += below
        if rule.max is not None:
            above = int(pc.sum(pc.greater(numbers, rule.max)).as_py() or 0)
            self.above += above
        self.smallest = low if self.smallest is None else min(self.smallest, low)
        self.largest = high if self.largest is None else max(self.largest, high)

    def _allowed_values(self, array: pa.Array, kind: str) -> None:
        assert self.rule.allowed_values is not None
        if kind not in self._allowed:
            self._allowed[kind] = _allowed_set(self.rule.allowed_values, kind)
        allowed = self._allowed[kind]
        if kind in ("integer", "float", "boolean", "string", "timestamp"):
            values = read_column(array, kind)  # type: ignore[arg-type]
        else:
            values = array
        if pa.types.is_null(allowed.type):
            outside = _valid(values)
        else:
            outside = _valid(values) & ~_mask(pc.is_in(values, value_set=allowed))
        count = int(outside.sum())
        if count:
            self.not_allowed += count
            _add_samples(self.not_allowed_samples, values.filter(pa.array(outside)))

    def violations(self) -> list[Violation]:
        rule, column, rows = self.rule, self.rule.column, self.rows
        found: list[Violation] = []
        name = f'column "{column}"'
        errors = self.type_errors
        if errors.count:
            if errors.found is not None:
                text = f"{name}: {_of(errors.count, rows)} are {errors.found}, not {rule.type}"
            else:
                text = f"{name}: {_of(errors.count, rows)} are not {rule.type}{_examples(errors.samples)}"
            found.append(Violation(column, "type", errors.count, rows, text))
        if self.not_numeric is not None and errors.found is None:
            rules = " and ".join(r for r, v in (("min", rule.min), ("max", rule.max)) if v is not None)
            found.append(Violation(column, "min" if rule.min is not None else "max", self.not_numeric_count, rows,
                                   f"{name}: {_of(self.not_numeric_count, rows)} are {self.not_numeric}, "
                                   f"which {rules} cannot compare (they take numbers and timestamps)"))
        if self.below:
            found.append(Violation(column, "min", self.below, rows,
                                   f"{name}: {_of(self.below, rows)} are below min {_number(rule.min or 0.0)} "
                                   f"(smallest {format_value(self.smallest)})"))
        if self.above:
            found.append(Violation(column, "max", self.above, rows,
                                   f"{name}: {_of(self.above, rows)} are above max {_number(rule.max or 0.0)} "
                                   f"(largest {format_value(self.largest)})"))
        if self.not_allowed:
            found.append(Violation(column, "allowedValues", self.not_allowed, rows,
                                   f"{name}: {_of(self.not_allowed, rows)} are not in allowedValues"
                                   f"{_examples(self.not_allowed_samples)}"))
        limit = rule.max_null_fraction
        if limit is not None and rows and self.nulls / rows > limit:
            found.append(Violation(column, "maxNullFraction", self.nulls, rows,
                                   f"{name}: {_of(self.nulls, rows)} are null, more than maxNullFraction "
                                   f"{_number(limit)}"))
        return found


# -- uniqueness -----------------------------------------------------------------------------------


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _column_hash(array: pa.Array) -> np.ndarray:
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    type_ = array.type
    valid = _valid(array)
    if pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_):
        hashed = stable_hash64(array)
    elif pa.types.is_floating(type_):
        values = pc.fill_null(pc.cast(array, pa.float64()), 0.0).to_numpy(zero_copy_only=False) + 0.0  # -0.0 -> 0.0
        hashed = _fmix64(values.view(np.uint64))
    elif (pa.types.is_integer(type_) or pa.types.is_timestamp(type_) or pa.types.is_date(type_)
          or pa.types.is_boolean(type_) or pa.types.is_duration(type_) or pa.types.is_time(type_)):
        if pa.types.is_date32(type_) or pa.types.is_time32(type_):
            array = pc.cast(array, pa.int32())
        numbers = pc.fill_null(pc.cast(array, pa.int64()), 0).to_numpy(zero_copy_only=False)
        hashed = _fmix64(numbers.astype(np.int64).view(np.uint64))
    else:
        hashed = stable_hash64(pc.cast(array, pa.large_string()))
    return np.where(valid, hashed, _NULL_HASH)


def key_hashes(table: pa.Table, columns: Sequence[str]) -> np.ndarray:
    """A 64-bit hash of each row's key (the values of `columns`). Equal keys of the same column
    types give equal hashes; the reverse is checked exactly by `KeyUniqueness`."""
    hashes = np.full(table.num_rows, _SEED, dtype=np.uint64)
    for column in columns:
        hashes = _fmix64(hashes * _COLUMN_MIX + _column_hash(table.column(column).combine_chunks()))
    return hashes


def _duplicated(sorted_hashes: np.ndarray) -> np.ndarray:
    same = sorted_hashes[1:] == sorted_hashes[:-1]
    return np.unique(sorted_hashes[1:][same])


class KeyUniqueness:
    """Exact uniqueness of row keys in bounded memory (see the module docstring)."""

    def __init__(self, columns: Sequence[str], work_dir: Path, *, spill_hashes: int = DEFAULT_SPILL_HASHES) -> None:
        self.columns = list(columns)
        self.work_dir = Path(work_dir)
        self.spill_hashes = max(1024, spill_hashes)
        self.rows = 0
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._spill_dir: Path | None = None

    def update(self, table: pa.Table) -> None:
        hashes = key_hashes(table, self.columns)
        self.rows += len(hashes)
        self._buffer.append(hashes)
        self._buffered += len(hashes)
        if self._buffered >= self.spill_hashes:
            self._spill()

    def _spill(self) -> None:
        if not self._buffered:
            return
        if self._spill_dir is None:
            self._spill_dir = Path(tempfile.mkdtemp(prefix="keys-", dir=self.work_dir))
        _partition(np.concatenate(self._buffer), self._spill_dir, shift=56)
        self._buffer, self._buffered = [], 0

    def candidate_hashes(self) -> np.ndarray:
        """Sorted hashes that more than one row has: the only keys that can repeat."""
        if self._spill_dir is None:
            hashes = np.sort(np.concatenate(self._buffer)) if self._buffer else np.empty(0, np.uint64)
            return _duplicated(hashes)
        self._spill()
        found = [_duplicates_in_file(path, 48, self.spill_hashes) for path in sorted(self._spill_dir.iterdir())]
        return np.sort(np.concatenate(found)) if found else np.empty(0, np.uint64)

    def finish(self, reread_keys: Callable[[], Iterable[pa.Table]]) -> tuple[int, int, list[tuple[Any, ...]]]:
        """(rows repeating an earlier row's key, keys occurring more than once, up to SAMPLES
        example keys with their counts last). `reread_keys` reads the key columns again, in the
        same order; it is called only when two rows share a hash."""
        candidates = self.candidate_hashes()
        self.discard()
        if candidates.size == 0:
            return 0, 0, []
        kept: list[pa.Table] = []
        kept_rows = 0
        spill: _TablePartitions | None = None
        for table in reread_keys():
            hashes = key_hashes(table, self.columns)
            position = np.searchsorted(candidates, hashes)
            hit = candidates[np.minimum(position, candidates.size - 1)] == hashes
            if not hit.any():
                continue
            selected = table.select(self.columns).filter(pa.array(hit))
            selected = selected.append_column("__hash", pa.array(hashes[hit]))
            if spill is not None:
                spill.add(selected)
                continue
            kept.append(selected)
            kept_rows += selected.num_rows
            if kept_rows > self.spill_hashes:
                spill = _TablePartitions(self.work_dir, selected.schema)
                for part in kept:
                    spill.add(part)
                kept = []
        groups = [_group_counts(t, self.columns) for t in (spill.tables() if spill else [pa.concat_tables(kept)])]
        if spill is not None:
            spill.close()
        repeated = extra = 0
        examples: list[tuple[Any, ...]] = []
        for counts in groups:
            repeats = counts.filter(pc.greater(counts.column("__row_count"), 1))
            if repeats.num_rows == 0:
                continue
            rows_column = repeats.column("__row_count").to_numpy()
            repeated += repeats.num_rows
            extra += int(rows_column.sum()) - repeats.num_rows
            if len(examples) < SAMPLES:
                for row in repeats.slice(0, SAMPLES - len(examples)).to_pylist():
                    examples.append((*[row[c] for c in self.columns], row["__row_count"]))
        return extra, repeated, examples

    def discard(self) -> None:
        """Forgets the hashes and removes their spill files."""
        if self._spill_dir is not None:
            for path in self._spill_dir.iterdir():
                path.unlink()
            self._spill_dir.rmdir()
            self._spill_dir = None
        self._buffer, self._buffered = [], 0


def _partition(hashes: np.ndarray, folder: Path, shift: int) -> None:
    """Appends `hashes` to folder/<byte>.bin by the byte of each hash at `shift`."""
    part = ((hashes >> np.uint64(shift)) & np.uint64(0xFF)).astype(np.uint8)
    order = np.argsort(part, kind="stable")
    counts = np.bincount(part, minlength=_PARTITIONS)
    ordered = hashes[order]
    start = 0
    for index, count in enumerate(counts):
        if count:
            with open(folder / f"{index:03d}.bin", "ab") as handle:
                ordered[start:start + count].tofile(handle)
            start += int(count)


def _duplicates_in_file(path: Path, shift: int, budget: int) -> np.ndarray:
    """Duplicated hashes in a spill file, splitting it by the next byte while it exceeds `budget`."""
    items = path.stat().st_size // 8
    if items <= budget or shift < 0:
        hashes = np.fromfile(path, dtype=np.uint64)
        if shift < 0:  # every hash in the file shares all 64 bits: all equal
            return hashes[:1] if hashes.size > 1 else np.empty(0, np.uint64)
        return _duplicated(np.sort(hashes))
    folder = Path(tempfile.mkdtemp(prefix=path.stem + "-", dir=path.parent))
    try:
        with open(path, "rb") as handle:
            while True:
                block = np.fromfile(handle, dtype=np.uint64, count=budget)
                if block.size == 0:
                    break
                _partition(block, folder, shift)
        found = [_duplicates_in_file(child, shift - 8, budget) for child in sorted(folder.iterdir())]
    finally:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()
    return np.concatenate(found) if found else np.empty(0, np.uint64)


class _TablePartitions:
    """Candidate key rows spilled to 256 Arrow IPC files by hash, when too many to group at once."""

    def __init__(self, work_dir: Path, schema: pa.Schema) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="candidates-", dir=work_dir))
        self.schema = schema
        self.writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}

    def add(self, table: pa.Table) -> None:
        hashes = table.column("__hash").to_numpy()
        part = (hashes >> np.uint64(56)).astype(np.int64)
        for index in np.unique(part):
            if index not in self.writers:
                self.writers[int(index)] = pa.ipc.new_file(str(self.folder / f"{int(index):03d}.arrow"), self.schema)
            self.writers[int(index)].write_table(table.filter(pa.array(part == index)))

    def tables(self) -> Iterable[pa.Table]:
        for writer in self.writers.values():
            writer.close()
        for path in sorted(self.folder.iterdir()):
            with pa.memory_map(str(path)) as source:
                yield pa.ipc.open_file(source).read_all()

    def close(self) -> None:
        for path in self.folder.iterdir():
            os.unlink(path)
        self.folder.rmdir()


def _group_counts(table: pa.Table, columns: Sequence[str]) -> pa.Table:
    """Rows per distinct key (nulls are values), in first-seen order of the keys."""
    table = table.append_column("__row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    counts = table.group_by(list(columns), use_threads=False).aggregate([("__row", "count"), ("__row", "min")])
    return counts.sort_by([("__row_min", "ascending")])


# -- the whole contract ---------------------------------------------------------------------------


class ContractChecker:
    """Every rule of a `Validation`, accumulated over the blocks of one pass."""

    def __init__(self, validation: Validation | None, key_columns: Sequence[str], work_dir: Path, *,
                 parsed_columns: Iterable[str] = (), spill_hashes: int = DEFAULT_SPILL_HASHES) -> None:
        self.validation = validation
        self.key_columns = list(key_columns)
        self.work_dir = Path(work_dir)
        self.parsed_columns = frozenset(parsed_columns)
        self.spill_hashes = spill_hashes
        self.uniqueness: KeyUniqueness | None = None
        self.reset()

    @property
    def checks_uniqueness(self) -> bool:
        return self.validation is not None and self.validation.unique_keys and bool(self.key_columns)

    def reset(self) -> None:
        """Forgets what was counted (a pass that starts over)."""
        self.rows = 0
        rules = self.validation.columns if self.validation is not None else []
        self.columns = [ColumnCheck(rule, parsed_by_reader=rule.column in self.parsed_columns) for rule in rules]
        if self.uniqueness is not None:
            self.uniqueness.discard()
        self.uniqueness = KeyUniqueness(self.key_columns, self.work_dir, spill_hashes=self.spill_hashes) \
            if self.checks_uniqueness else None

    def update(self, table: pa.Table, unparsed: Mapping[str, tuple[pa.Array, np.ndarray]] | None = None) -> None:
        """Adds a block. `unparsed` holds, for CSV columns with a declared type, the text and the
        mask of the values that did not parse (see `parse_declared`)."""
        self.rows += table.num_rows
        for check in self.columns:
            text, mask = (unparsed or {}).get(check.rule.column, (None, None))
            check.update(table.column(check.rule.column), text, mask)
        if self.uniqueness is not None:
            self.uniqueness.update(table)

    def finish(self, reread_keys: Callable[[], Iterable[pa.Table]]) -> list[Violation]:
        """Every violation, in spec order: minRows, then each column's rules, then uniqueKeys."""
        found: list[Violation] = []
        validation = self.validation
        if validation is None:
            return found
        if validation.min_rows is not None and self.rows < validation.min_rows:
            found.append(Violation(None, "minRows", self.rows, validation.min_rows,
                                   f"the source has {self.rows:,} rows, fewer than minRows {validation.min_rows:,}"))
        for check in self.columns:
            found.extend(check.violations())
        if self.uniqueness is not None:
            extra, keys, examples = self.uniqueness.finish(reread_keys)
            if extra:
                names = ", ".join(f'"{c}"' for c in self.key_columns)
                shown = "; ".join(
                    ", ".join(f"{c}={format_value(v)}" for c, v in zip(self.key_columns, example[:-1], strict=True))
                    + f" ({example[-1]} rows)" for example in examples[:3])
                found.append(Violation(
                    ",".join(self.key_columns), "uniqueKeys", extra, self.rows,
                    f"key {names}: {_of(extra, self.rows, 'rows')} repeat the key of another row "
                    f"({keys:,} keys occur more than once, e.g. {shown}); uniqueKeys requires each key once"))
        return found

    def close(self) -> None:
        """Removes the uniqueness check's spill files (`finish` does it too)."""
        if self.uniqueness is not None:
            self.uniqueness.discard()

