"""The transforms of a FeatureSet: fitted once at materialization, then applied by the batch
materializer and by the model server from the same fitted parameters and the same module, so
the features a model is served are the features it was trained on.

A feature is a source column passed through `Feature.transforms`, then cast to `Feature.dtype`.
`fit_pipeline` fits every step on chunks of data (bounded memory: mergeable summaries from
`sketch.py`) and returns `FittedFeatures`, whose JSON the version stores and the server loads.

Two forms apply it. `apply_batch` transforms an Arrow table with the column kernels (vectorized
over columns: the materializer, and requests of many rows). `apply_rows` computes the same
features for a few request rows with the row kernels, each its column kernel restated on one
Python value with the same float64 operations in the same order: a column kernel's fixed cost per
call is what a one-row request would otherwise pay (~100 us for seven features against ~5 us;
docs/performance.md). The row kernels cover the common steps; whatever they do not restate
(timestamps, datetime, casts to string, values of unusual types, anything malformed) they hand to
the column kernels, which then compute the row or word the error. That the two forms agree bit for
bit is checked for any pipeline and any input by tests/unit/test_transforms.py (hypothesis), and
for served predictions by tests/modelversion/test_serve.py. `apply_online` computes one request
row: the row kernels where they apply, else a one-row table through `apply_batch`.

Semantics, identical in both forms:

Kinds. A source column is read as one of five kinds, fixed at fit time from the first chunk's
Arrow type (or `schema=`): integer (any int/uint, as int64), float (float16/32/64, decimal, as
float64), boolean, string (string/large_string/string_view/dictionary), timestamp (timestamp of
any unit and zone, date32/date64; naive timestamps are taken as UTC). Every later table or
request is coerced to that kind: integers are accepted for float columns; floats for integer
columns only when integral; anything else (a string for a number, a bool for a number, a number
for a string) raises `TransformInputError`, which the model server turns into an HTTP 400.

Missing values. Null is missing, and so is NaN: float NaN becomes null when a column is read.
Nulls pass through every step as null except `fillNull`, which replaces them (vocabulary, hash
and oneHot included: a null category stays null rather than taking an OOV slot, so a model
never silently sees "missing" as a category; put fillNull first to give it one). No step ever
outputs NaN: a NaN produced by arithmetic becomes null.

Domains. Values outside a step's domain become null (log1p of x <= -1, an epoch or timestamp
outside years 1-9999, a cast to an integer dtype that overflows or is not finite). Infinities
are values: clip maps them to the bounds, bucketize to the first/last bucket, log1p(+inf) is
+inf, standardize/minMax keep them infinite; fitting ignores them (means, ranges, quantiles
and modes are of finite values). Values that cannot be interpreted at all raise (a malformed timestamp
string). minMax extrapolates outside the fitted range (as scikit-learn's MinMaxScaler; add a
clip for [0, 1]); unseen categories go to the OOV buckets.

Steps (`Transform.type`):
- identity: any kind, unchanged.
- log1p: number -> float, ln(1 + x).
- clip: number -> float, bounded by min and/or max.
- standardize: number -> float, (x - mean) / std with the population std (ddof 0) of the finite
  fitted values; std 0 or no data -> 1, no data -> mean 0.
- minMax: number -> float, (x - min) / (max - min); max == min -> (x - min); no data -> x.
- bucketize: number -> integer, the number of boundaries <= x (TF's Bucketize, tft.apply_buckets):
  bucket 0 is x < b[0], bucket i is b[i-1] <= x < b[i], len(b) is x >= b[-1]. With numBuckets
  the boundaries are fitted equal-mass edges (`QuantileSketch.equal_mass_edges`: the values at
  ranks i/numBuckets of the data; ties merge edges, so heavily tied data gets fewer buckets).
- vocabulary: integer/string/boolean -> integer index (most frequent first, ties by value;
  minFrequency, then maxSize) or a oneHot vector (fixed_size_list<float32>, must be the last step).
  Unseen values: index len(vocabulary) + stable_hash(value) % oovBuckets (oovBuckets default 1).
- hash: integer/string/boolean -> integer in [0, numBuckets): stable_hash(value) % numBuckets.
- fillNull: constant (value for numbers and booleans (0/1), stringValue for strings), mean, median
  (the sketch's lower median: an actual value, so integer columns stay integer), mostFrequent
  (ties -> smallest value, as scikit-learn). Mean on integers, or a non-integral constant,
  gives float. Nothing to fit on (all null) -> 0, 0.0, false or "".
- datetime: timestamp, ISO 8601 string, or epoch seconds (integer or float) -> integer part in
  UTC: year, month (1-12), day (1-31), hour, minute, dayOfWeek (Monday = 0 ... Sunday = 6, as
  Python and pandas), dayOfYear (1-366). ISO strings are what Arrow parses: YYYY-MM-DD, optionally
  followed by T or a space and HH:MM[:SS[.fraction]], optionally Z or +HH[:MM]; without a zone they
  are UTC; digits beyond microseconds are truncated. Epoch floats are floored to microseconds.

Casts (`Feature.dtype`; omitted: integer -> int64, float -> float64, boolean -> bool, string ->
string, timestamp -> timestamp[us, UTC], oneHot -> fixed_size_list<float32>): floats to integers
truncate toward zero, out of range or non-finite -> null; numbers to bool are x != 0; to string
use Arrow's shortest round-trip formatting; a oneHot vector's element type is cast.

Stable hash (`HASH_ALGORITHM`): over the UTF-8 bytes of the value (integers as their decimal
form, so 42 and "42" agree; booleans as "true"/"false"):
    h = 0xCBF29CE484222325                                 (the FNV-1 64-bit offset basis)
    for each byte b: h = h * 0x100000001B3 + (b + 1)        (the FNV-1 64-bit prime; mod 2**64)
    h ^= len(bytes) * 0x9E3779B97F4A7C15; h = fmix64(h)     (MurmurHash3's 64-bit finalizer)
and bucket = h % n. Never Python's salted `hash()`; any language can reproduce it, and it is
computed here for a whole column at once (powers of the multiplier, prefix sums mod 2**64).

Fitting runs one pass over the chunks per fitted step in the longest chain of fitted steps
(fillNull(mean) then standardize needs two, because standardize fits on filled values), so
`chunks` must be re-iterable when a feature has more than one fitted step.
"""

from __future__ import annotations

import abc
import bisect
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from typing import Any, Literal, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubeloop.featureset.api import Feature, FeatureDtype, Transform
from kubeloop.featureset.sketch import (
    DEFAULT_CATEGORY_CAPACITY,
    DEFAULT_SKETCH_K,
    Moments,
    QuantileSketch,
    ValueCounter,
)

FITTED_SCHEMA_VERSION = 1
"""Version of `FittedFeatures.to_json()`; readers refuse a newer one."""

HASH_ALGORITHM = "kubeloop-poly64-fmix64-v1"
"""Name of the stable hash, stored with fitted parameters so a reader can refuse another."""

Kind = Literal["integer", "float", "boolean", "string", "timestamp", "vector"]
"""What a column holds between steps. The first five are source kinds (as `ColumnType`);
vector is a oneHot output."""

SOURCE_KINDS: tuple[Kind, ...] = ("integer", "float", "boolean", "string", "timestamp")

_KIND_TYPES: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "string": pa.large_string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
_NUMERIC = frozenset({"integer", "float"})
_CATEGORICAL = frozenset({"integer", "string", "boolean"})

# Years 1 to 9999 in microseconds since the epoch: what Python's datetime can hold.
_MIN_US = -62_135_596_800 * 1_000_000
_MAX_US = 253_402_300_800 * 1_000_000

_HASH_SEED = np.uint64(0xCBF29CE484222325)
_HASH_MULTIPLIER = np.uint64(0x100000001B3)
_HASH_LENGTH_MIX = np.uint64(0x9E3779B97F4A7C15)

_SMALL = 16
"""Up to this many rows (a request), kernels take a per-value path where Arrow's per-call set-up
(hash tables, casts) would cost more than the rows; the results are the same by construction."""


class TransformInputError(ValueError):
    """Input a feature cannot be computed from: a missing column, a value of the wrong type, a
    malformed timestamp, or a transform that does not take the column's kind. The message names
    the feature, the column and the problem; the model server answers it with HTTP 400."""

    def __init__(self, feature: str | None, column: str, problem: str) -> None:
        self.feature = feature
        self.column = column
        self.problem = problem
        where = f'feature "{feature}", column "{column}"' if feature else f'column "{column}"'
        super().__init__(f"{where}: {problem}")


class _Problem(Exception):
    """A kernel's complaint; the pipeline adds the feature and column names."""


# -- array helpers ------------------------------------------------------------------------------


def _validity(array: pa.Array) -> np.ndarray:
    if array.null_count == 0:
        return np.ones(len(array), dtype=bool)
    return array.is_valid().to_numpy(zero_copy_only=False)


def _numbers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Values as float64 (nulls as 0) and the validity mask of an integer/float/bool array."""
    if array.null_count == 0:
        values = array.to_numpy(zero_copy_only=False)  # zero-copy for numbers
        return values.astype(np.float64, copy=False), np.ones(len(values), dtype=bool)
    valid = _validity(array)
    if array.null_count:
        array = pc.fill_null(array, pa.scalar(False if pa.types.is_boolean(array.type) else 0, array.type))
    return array.to_numpy(zero_copy_only=False).astype(np.float64, copy=False), valid


def _integers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    valid = _validity(array)
    if array.null_count:
        array = pc.fill_null(array, pa.scalar(0, array.type))
    return array.to_numpy(zero_copy_only=False).astype(np.int64, copy=False), valid


def _float_array(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    """A float64 array; NaN (from arithmetic) is null, as everywhere in a pipeline."""
    nan = np.isnan(values)
    if nan.any():
        valid = valid & ~nan
    return pa.array(values, type=pa.float64(), mask=None if valid.all() else ~valid)


def _int_array(values: np.ndarray, valid: np.ndarray, type_: pa.DataType | None = None) -> pa.Array:
    return pa.array(values, type=type_ or pa.int64(), mask=None if valid.all() else ~valid)


def _finite(array: pa.Array) -> np.ndarray:
    values, valid = _numbers(array)
    return values[valid & np.isfinite(values)]


def _sample(array: pa.Array) -> str:
    """The first non-null value, for error messages."""
    present = array.drop_null()
    if len(present) == 0:
        return ""
    text = repr(present[0].as_py())
    return f" ({text[:60]}{'...' if len(text) > 60 else ''})"


def _describe(type_: pa.DataType) -> str:
    if pa.types.is_boolean(type_):
        return "boolean"
    if pa.types.is_integer(type_):
        return "integer"
    if pa.types.is_floating(type_) or pa.types.is_decimal(type_):
        return "float"
    if _is_string(type_):
        return "string"
    if pa.types.is_timestamp(type_) or pa.types.is_date(type_):
        return "timestamp"
    return str(type_)


def _is_string(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_)


def source_kind(type_: pa.DataType) -> Kind | None:
    """The kind a source column of this Arrow type is read as; None for the null type (unknown).
    Raises TypeError for types a feature cannot come from (lists, structs, binary)."""
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    if pa.types.is_null(type_):
        return None
    if pa.types.is_boolean(type_):
        return "boolean"
    if pa.types.is_integer(type_):
        return "integer"
    if pa.types.is_floating(type_) or pa.types.is_decimal(type_):
        return "float"
    if _is_string(type_):
        return "string"
    if pa.types.is_timestamp(type_) or pa.types.is_date(type_):
        return "timestamp"
    raise TypeError(f"a feature cannot be computed from a column of type {type_}")


# -- coercion: the only door into a pipeline, for tables and requests alike -------------------------


def _coerce(array: pa.Array, kind: Kind) -> pa.Array:
    """Reads a column as `kind`, or raises `_Problem` saying why it cannot."""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    type_ = array.type
    if pa.types.is_null(type_):
        return pa.nulls(len(array), _KIND_TYPES[kind])
    if kind == "timestamp":
        return _to_timestamp(array)
    if type_ == _KIND_TYPES[kind]:  # already of its kind (a request or a Parquet column nearly always is)
        if kind == "float" and _has_nan(array):
            values, valid = _numbers(array)
            return _float_array(values, valid)
        return array
    if kind == "integer":
        if pa.types.is_integer(type_):
            largest = pc.max(array).as_py() if pa.types.is_uint64(type_) else None
            if largest is not None and largest >= 2**63:
                raise _Problem(f"{largest} is outside the int64 range")
            return pc.cast(array, pa.int64())
        if pa.types.is_floating(type_):
            values, valid = _numbers(array)
            valid &= ~np.isnan(values)
            with np.errstate(invalid="ignore"):
                bad = valid & ~((values == np.trunc(values)) & (values >= -(2.0**63)) & (values < 2.0**63))
            if bad.any():
                raise _Problem(f"expected an integer, got {float(values[bad][0])!r}")
            return _int_array(np.where(valid, values, 0).astype(np.int64), valid)
    elif kind == "float":
        if pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_):
            array = pc.cast(array, pa.float64(), safe=False)
            if _has_nan(array):
                values, valid = _numbers(array)
                return _float_array(values, valid)
            return array
    elif kind == "boolean":
        if pa.types.is_boolean(type_):
            return array
    elif kind == "string" and _is_string(type_):
        return pc.cast(array, pa.large_string())
    raise _Problem(f"expected {_NOUNS[kind]}, got {_describe(type_)}{_sample(array)}")


def _has_nan(array: pa.Array) -> bool:
    """Whether a float64 array holds NaN among its valid values."""
    if array.null_count == 0:
        return bool(np.isnan(array.to_numpy()).any())  # zero-copy
    return array.null_count != len(array) and bool(pc.any(pc.is_nan(array)).as_py())


def read_column(array: pa.Array | pa.ChunkedArray, kind: Kind, column: str = "") -> pa.Array:
    """A column read as `kind` by the rules every pipeline starts with (see the module
    docstring): int64, float64 without NaN, bool, large_string or timestamp[us, UTC]. The
    profile and the drift check read data through it, so they see what the transforms see.
    Raises `TransformInputError` naming `column` when the column cannot be read as `kind`."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    try:
        return _coerce(array, kind)
    except _Problem as problem:
        raise TransformInputError(None, column, str(problem)) from None


_NOUNS = {
    "integer": "an integer",
    "float": "a number",
    "boolean": "a boolean",
    "string": "a string",
    "timestamp": "a timestamp, an ISO 8601 string or epoch seconds",
}


def _microseconds(values: np.ndarray, valid: np.ndarray, per_unit: int, divide: bool) -> tuple[np.ndarray, np.ndarray]:
    """Integer time values to microseconds (floor), null outside years 1-9999."""
    if divide:
        micros = np.floor_divide(values, per_unit)
    else:
        # Range-check before multiplying so that nothing overflows int64.
        inside = (values >= _MIN_US // per_unit) & (values <= _MAX_US // per_unit)
        valid = valid & inside
        micros = np.where(inside, values, 0) * per_unit
    valid = valid & (micros >= _MIN_US) & (micros < _MAX_US)
    return np.where(valid, micros, 0), valid


_UNIT_MICROS = {"s": (1_000_000, False), "ms": (1_000, False), "us": (1, False), "ns": (1_000, True)}
_ZONED = r"[T ]\d{2}:\d{2}(:\d{2}(\.\d*)?)?(Z|[+-]\d{2}(:?\d{2})?)$"


def _to_timestamp(array: pa.Array) -> pa.Array:
    """timestamp[us, UTC] from a timestamp/date column, ISO 8601 strings or epoch seconds."""
    type_ = array.type
    if pa.types.is_timestamp(type_) or pa.types.is_date(type_):
        if pa.types.is_timestamp(type_):
            per_unit, divide = _UNIT_MICROS[type_.unit]
        elif pa.types.is_date32(type_):
            per_unit, divide = 86_400_000_000, False
        else:
            per_unit, divide = 1_000, False
        raw, valid = _integers(pc.cast(pc.cast(array, pa.int32()) if pa.types.is_date32(type_) else array, pa.int64()))
        micros, valid = _microseconds(raw, valid, per_unit, divide)
    elif _is_string(type_):
        micros, valid = _iso_microseconds(pc.cast(array, pa.large_string()))
    elif pa.types.is_integer(type_):
        if pa.types.is_uint64(type_):
            # Beyond int64 is far outside years 1-9999 anyway: null, like any out-of-range epoch.
            array = pc.if_else(pc.less(array, pa.scalar(2**63, pa.uint64())), array, pa.scalar(None, pa.uint64()))
        raw, valid = _integers(pc.cast(array, pa.int64()))
        micros, valid = _microseconds(raw, valid, 1_000_000, False)
    elif pa.types.is_floating(type_) or pa.types.is_decimal(type_):
        seconds, valid = _numbers(pc.cast(array, pa.float64(), safe=False))
        with np.errstate(invalid="ignore", over="ignore"):
            scaled = np.floor(seconds * 1e6)
            valid = valid & np.isfinite(scaled) & (scaled >= _MIN_US) & (scaled < _MAX_US)
        micros = np.where(valid, scaled, 0).astype(np.int64)
    else:
        raise _Problem(f"expected {_NOUNS['timestamp']}, got {_describe(type_)}{_sample(array)}")
    return pa.array(micros, type=pa.int64(), mask=None if valid.all() else ~valid).cast(_KIND_TYPES["timestamp"])


def _iso_microseconds(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    # Arrow parses an offset only into a zoned type and no offset only into a naive one, so the
    # two are parsed apart and recombined; digits beyond microseconds are cut (a floor).
    strings = pc.replace_substring_regex(strings, r"(\.\d{6})\d+", r"\1")
    zoned = pc.match_substring_regex(strings, _ZONED)
    none = pa.scalar(None, pa.large_string())
    try:
        with_zone = pc.cast(pc.if_else(zoned, strings, none), pa.timestamp("us", tz="UTC"))
        without = pc.cast(pc.if_else(zoned, none, strings), pa.timestamp("us"))
    except pa.ArrowInvalid as error:
        detail = str(error).split(":", 1)[-1].split(" as a scalar")[0].strip()
        raise _Problem(f"not an ISO 8601 timestamp: {detail}") from None
    raw = pc.coalesce(pc.cast(with_zone, pa.int64()), pc.cast(without, pa.int64()))
    values, valid = _integers(raw)
    return _microseconds(values, valid, 1, False)


def _online_array(value: Any, kind: Kind) -> pa.Array:
    """A one-element Arrow array holding a request value with the Arrow type its Python type
    maps to; `_coerce` then applies exactly the rules a table column gets."""
    if value is None:
        return pa.nulls(1, _KIND_TYPES[kind])
    if isinstance(value, bool | np.bool_):
        return pa.array([bool(value)], type=pa.bool_())
    if isinstance(value, int | np.integer):
        number = int(value)
        if -(2**63) <= number < 2**63:
            return pa.array([number], type=pa.int64())
        if kind in ("float", "timestamp"):
            try:
                return pa.array([float(number)], type=pa.float64())
            except OverflowError:
                pass
        raise _Problem(f"{number} is outside the int64 range")
    if isinstance(value, float | np.floating):
        return pa.array([float(value)], type=pa.float64())
    if isinstance(value, str):
        return pa.array([value], type=pa.large_string())
    if isinstance(value, datetime):
        return pa.array([value], type=pa.timestamp("us", tz="UTC" if value.tzinfo else None))
    if isinstance(value, date):
        return pa.array([value], type=pa.date32())
    if isinstance(value, np.datetime64):
        return pa.array(np.array([value]))
    raise _Problem(f"expected {_NOUNS[kind]}, got {type(value).__name__}")


# -- the stable hash ----------------------------------------------------------------------------


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _canonical_strings(array: pa.Array) -> pa.Array:
    """The text a value is hashed as (nulls as empty strings; callers mask them)."""
    if not pa.types.is_large_string(array.type):
        array = pc.cast(array, pa.large_string())
    return pc.fill_null(array, "") if array.null_count else array


_POWERS_KEPT = 4096
_powers = np.ones(1, dtype=np.uint64)


def _hash_powers(longest: int) -> np.ndarray:
    """powers[i] = P**i mod 2**64 (uint64 products wrap, which is the mod) for i <= longest; the
    table for values up to `_POWERS_KEPT` bytes is kept between calls."""
    global _powers
    if len(_powers) > longest:
        return _powers
    size = max(longest + 1, min(2 * len(_powers), _POWERS_KEPT + 1))
    powers = np.ones(size, dtype=np.uint64)
    powers[1:] = np.cumprod(np.full(size - 1, _HASH_MULTIPLIER, dtype=np.uint64))
    if size <= _POWERS_KEPT + 1:
        _powers = powers
    return powers


def stable_hash64(array: pa.Array) -> np.ndarray:
    """`HASH_ALGORITHM` of each value of an integer, string or boolean array, as uint64.

    Horner's rule h = h * P + (b + 1) from the seed S over the L bytes of a value equals
    S * P**L + the sum of (b_j + 1) * P**(L - 1 - j), so every byte's term is computed at once from a table of powers
    of P and the per-value sums come from a prefix sum; all arithmetic wraps mod 2**64 exactly
    as the byte-at-a-time definition does.
    """
    strings = _canonical_strings(array)
    n = len(strings)
    if n == 0:
        return np.empty(0, dtype=np.uint64)
    buffers = strings.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64, count=n + 1, offset=strings.offset * 8)
    lengths = offsets[1:] - offsets[:-1]
    first, last = int(offsets[0]), int(offsets[-1])
    powers = _hash_powers(int(lengths.max()))
    poly = _HASH_SEED * powers[lengths]
    if last > first:
        data = np.frombuffer(buffers[2], dtype=np.uint8)[first:last].astype(np.uint64) + np.uint64(1)
        exponents = np.repeat(offsets[1:] - 1, lengths) - np.arange(first, last)
        prefix = np.zeros(last - first + 1, dtype=np.uint64)
        np.cumsum(data * powers[exponents], dtype=np.uint64, out=prefix[1:])
        poly += prefix[offsets[1:] - first] - prefix[offsets[:-1] - first]
    return _fmix64(poly ^ (lengths.astype(np.uint64) * _HASH_LENGTH_MIX))


def _hash_buckets(array: pa.Array, buckets: int) -> np.ndarray:
    return (stable_hash64(array) % np.uint64(buckets)).astype(np.int64)


# -- steps --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FittedStep:
    """One step ready to apply: the spec, the kinds around it and its (JSON) parameters."""

    transform: Transform
    input_kind: Kind
    output_kind: Kind
    params: dict[str, Any]

    def apply(self, array: pa.Array) -> pa.Array:
        """Applies the step to a column of `input_kind` (the batch kernel, used by both forms)."""
        return _KERNELS[self.transform.type](array, self)

    # Constants a kernel derives from the parameters, built once per step rather than per call.

    @cached_property
    def vocabulary_array(self) -> pa.Array:
        """A vocabulary step's values as an Arrow array of the input kind."""
        return pa.array(self.params["vocabulary"], type=_KIND_TYPES[self.input_kind])

    @cached_property
    def vocabulary_positions(self) -> dict[Any, int]:
        """A vocabulary step's value -> index (the first occurrence, as index_in)."""
        positions: dict[Any, int] = {}
        for position, value in enumerate(self.vocabulary_array.to_pylist()):
            positions.setdefault(value, position)
        return positions

    @cached_property
    def boundaries(self) -> np.ndarray:
        """A bucketize step's boundaries as float64."""
        return np.asarray(self.params["boundaries"], dtype=np.float64)

    @cached_property
    def boundary_list(self) -> list[float]:
        """A bucketize step's boundaries as Python floats (the same float64 values), for bisect."""
        return self.boundaries.tolist()

    @cached_property
    def fill_value(self) -> Any:
        """A fillNull step's value as the column kernel fills it (Arrow's conversion to the
        output kind), as a Python value."""
        return pa.scalar(self.params["value"], _KIND_TYPES[self.output_kind]).as_py()

    def to_dict(self) -> dict[str, Any]:
        return {
            "transform": self.transform.to_dict(),
            "inputKind": self.input_kind,
            "outputKind": self.output_kind,
            "params": self.params,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FittedStep:
        return cls(
            transform=Transform.model_validate(data["transform"]),
            input_kind=_kind(data["inputKind"]),
            output_kind=_kind(data["outputKind"]),
            params=dict(data["params"]),
        )


def _kind(value: Any) -> Kind:
    if value not in get_args(Kind):
        raise ValueError(f"unknown kind {value!r}")
    return value


def _output_kind(transform: Transform, kind: Kind) -> Kind:
    """The kind a step produces from `kind`, or `_Problem` when it does not take `kind`."""
    type_ = transform.type
    if kind == "vector":
        raise _Problem(f"{type_} cannot follow a oneHot vocabulary (oneHot must be the last step)")
    if type_ == "identity":
        return kind
    if type_ in ("log1p", "clip", "standardize", "minMax", "bucketize"):
        if kind not in _NUMERIC:
            raise _Problem(f"{type_} needs numbers, but its input is {kind}")
        return "integer" if type_ == "bucketize" else "float"
    if type_ in ("vocabulary", "hash"):
        if kind not in _CATEGORICAL:
            hint = " (bucketize it first)" if kind == "float" else ""
            raise _Problem(f"{type_} needs integer, string or boolean input, but its input is {kind}{hint}")
        return "vector" if type_ == "vocabulary" and transform.output == "oneHot" else "integer"
    if type_ == "datetime":
        if kind == "boolean":
            raise _Problem("datetime needs timestamps, ISO 8601 strings or epoch seconds, but its input is boolean")
        return "integer"
    if type_ == "fillNull":
        return _fill_kind(transform, kind)
    raise _Problem(f"unknown transform {type_}")


def _fill_kind(transform: Transform, kind: Kind) -> Kind:
    strategy = transform.strategy
    if kind == "timestamp":
        raise _Problem("fillNull does not take timestamps; extract a part with datetime first")
    if strategy in ("mean", "median") and kind not in _NUMERIC:
        raise _Problem(f"fillNull {strategy} needs numbers, but its input is {kind}")
    if strategy == "mean":
        return "float"
    if strategy == "constant":
        if kind == "string":
            if transform.string_value is None:
                raise _Problem("fillNull of strings needs stringValue, not value")
            return kind
        if transform.value is None:
            raise _Problem(f"fillNull of {kind} needs value, not stringValue")
        if kind == "boolean":
            if transform.value not in (0, 1):
                raise _Problem(f"fillNull of booleans needs value 0 or 1, not {transform.value}")
            return kind
        if kind == "integer" and not _is_int64(transform.value):
            return "float"
    return kind


def _is_int64(value: float) -> bool:
    return math.isfinite(value) and value == math.trunc(value) and -(2.0**63) <= value < 2.0**63


# Fitters: what a step accumulates over chunks, and the parameters it derives.


class _Fitter(abc.ABC):
    @abc.abstractmethod
    def update(self, array: pa.Array) -> None: ...

    @abc.abstractmethod
    def params(self) -> dict[str, Any]: ...


class _MomentsFitter(_Fitter):
    def __init__(self, derive: Callable[[Moments], dict[str, Any]]) -> None:
        self.moments = Moments()
        self.derive = derive

    def update(self, array: pa.Array) -> None:
        self.moments.update(_finite(array))

    def params(self) -> dict[str, Any]:
        return self.derive(self.moments)


class _SketchFitter(_Fitter):
    def __init__(self, derive: Callable[[QuantileSketch], dict[str, Any]], k: int) -> None:
        self.sketch = QuantileSketch(k)
        self.derive = derive

    def update(self, array: pa.Array) -> None:
        self.sketch.update(_finite(array))

    def params(self) -> dict[str, Any]:
        return self.derive(self.sketch)


class _CounterFitter(_Fitter):
    def __init__(self, derive: Callable[[ValueCounter], dict[str, Any]], kind: Kind, capacity: int) -> None:
        self.counter = ValueCounter(_KIND_TYPES[kind], capacity)
        self.derive = derive

    def update(self, array: pa.Array) -> None:
        if pa.types.is_floating(array.type):
            array = pa.array(_finite(array), type=array.type)  # infinities are values, not modes
        self.counter.update(array)

    def params(self) -> dict[str, Any]:
        return self.derive(self.counter)


def _finite_or(value: float, default: float) -> float:
    return float(value) if math.isfinite(value) else default


def _standardize_params(m: Moments) -> dict[str, Any]:
    std = m.std
    return {
        "mean": _finite_or(m.mean, 0.0) if m.count else 0.0,
        "std": float(std) if math.isfinite(std) and std > 0 else 1.0,
        "count": m.count,
    }


def _min_max_params(m: Moments) -> dict[str, Any]:
    if not m.count:
        return {"min": 0.0, "max": 1.0, "count": 0}
    return {"min": m.min, "max": m.max, "count": m.count}


def _fitter(transform: Transform, kind: Kind, sketch_k: int, capacity: int) -> _Fitter | None:
    """What a step fits on, or None for steps whose parameters come from the spec alone."""
    type_ = transform.type
    if type_ == "standardize":
        return _MomentsFitter(_standardize_params)
    if type_ == "minMax":
        return _MomentsFitter(_min_max_params)
    if type_ == "bucketize" and transform.num_buckets is not None:
        buckets = transform.num_buckets

        def edges(sketch: QuantileSketch) -> dict[str, Any]:
            edges = sketch.equal_mass_edges(buckets)
            return {"boundaries": [float(v) for v in edges], "rankErrorBound": sketch.rank_error_bound}

        return _SketchFitter(edges, sketch_k)
    if type_ == "vocabulary":
        limit, minimum = transform.max_size, transform.min_frequency or 1

        def vocabulary(counter: ValueCounter) -> dict[str, Any]:
            values, _ = counter.most_common(limit, minimum)
            return {
                "vocabulary": values.to_pylist(),
                "oovBuckets": transform.oov_buckets or 1,
                "output": transform.output or "index",
                "exact": counter.exact,
            }

        return _CounterFitter(vocabulary, kind, capacity)
    if type_ == "fillNull":
        out = _fill_kind(transform, kind)
        if transform.strategy == "mean":
            return _MomentsFitter(lambda m: {"value": _finite_or(m.mean, 0.0) if m.count else 0.0})
        if transform.strategy == "median":

            def median(sketch: QuantileSketch) -> dict[str, Any]:
                value = float(sketch.quantiles([0.5])[0]) if sketch.count else 0.0
                # The sketch holds float64: near the int64 limits the float may round past them.
                as_int = max(-(2**63), min(2**63 - 1, int(value)))
                return {"value": as_int if out == "integer" else value, "rankErrorBound": sketch.rank_error_bound}

            return _SketchFitter(median, sketch_k)
        if transform.strategy == "mostFrequent":

            def most_frequent(counter: ValueCounter) -> dict[str, Any]:
                values, _ = counter.most_common(1)
                value = values[0].as_py() if len(values) else _ZERO[kind]
                return {"value": value, "exact": counter.exact}

            return _CounterFitter(most_frequent, kind, capacity)
    return None


_ZERO: dict[str, Any] = {"integer": 0, "float": 0.0, "boolean": False, "string": ""}


def _static_params(transform: Transform, kind: Kind) -> dict[str, Any]:
    type_ = transform.type
    if type_ == "clip":
        return {"min": transform.min, "max": transform.max}
    if type_ == "bucketize":
        return {"boundaries": [float(b) for b in transform.boundaries or []]}
    if type_ == "hash":
        return {"numBuckets": transform.num_buckets, "algorithm": HASH_ALGORITHM}
    if type_ == "datetime":
        return {"part": transform.part}
    if type_ == "fillNull":
        if kind == "string":
            return {"value": transform.string_value}
        if kind == "boolean":
            return {"value": bool(transform.value)}
        value = float(transform.value or 0.0)  # _fill_kind has checked that value is set
        return {"value": int(value) if _fill_kind(transform, kind) == "integer" else value}
    return {}


# Kernels: one per step type, vectorized over a column; the online form calls them on one row.


def _identity(array: pa.Array, step: FittedStep) -> pa.Array:
    return array


def _log1p(array: pa.Array, step: FittedStep) -> pa.Array:
    values, valid = _numbers(array)
    valid = valid & (values > -1)
    # Arrow's log1p is a plain per-element libm call: the same result for any array length.
    result = pc.log1p(pa.array(np.where(valid, values, 0.0), type=pa.float64()))
    return _float_array(result.to_numpy(), valid)


def _clip(array: pa.Array, step: FittedStep) -> pa.Array:
    values, valid = _numbers(array)
    low, high = step.params["min"], step.params["max"]
    if low is not None:
        values = np.maximum(values, low)
    if high is not None:
        values = np.minimum(values, high)
    return _float_array(values, valid)


def _standardize(array: pa.Array, step: FittedStep) -> pa.Array:
    values, valid = _numbers(array)
    with np.errstate(invalid="ignore", over="ignore"):
        return _float_array((values - step.params["mean"]) / step.params["std"], valid)


def _min_max(array: pa.Array, step: FittedStep) -> pa.Array:
    values, valid = _numbers(array)
    low, high = step.params["min"], step.params["max"]
    scale = high - low
    if not (math.isfinite(scale) and scale > 0):
        scale = 1.0
    with np.errstate(invalid="ignore", over="ignore"):
        return _float_array((values - low) / scale, valid)


def _bucketize(array: pa.Array, step: FittedStep) -> pa.Array:
    values, valid = _numbers(array)
    return _int_array(np.searchsorted(step.boundaries, values, side="right").astype(np.int64), valid)


def _vocabulary(array: pa.Array, step: FittedStep) -> pa.Array:
    size, oov = len(step.params["vocabulary"]), int(step.params["oovBuckets"])
    valid = _validity(array)
    if len(array) <= _SMALL:
        # A few rows (a request): a dict lookup per value; Arrow's index_in would build a hash
        # table of the whole vocabulary on every call. Same mapping, first occurrence wins.
        positions = step.vocabulary_positions
        found = [positions.get(value) for value in array.to_pylist()]
        known = np.array([position is not None for position in found], dtype=bool)
        index = np.array([position or 0 for position in found], dtype=np.int64)
    else:
        index, known = _integers(pc.index_in(array, value_set=step.vocabulary_array))
    unseen = valid & ~known
    if unseen.any():
        index[unseen] = size if oov == 1 else size + _hash_buckets(array.filter(pa.array(unseen)), oov)
    if step.params["output"] != "oneHot":
        return _int_array(index, valid)
    width = size + oov
    matrix = np.zeros((len(array), width), dtype=np.float32)
    rows = np.flatnonzero(valid)
    matrix[rows, index[rows]] = 1.0
    return pa.FixedSizeListArray.from_arrays(
        pa.array(matrix.reshape(-1)), width, mask=None if valid.all() else pa.array(~valid)
    )


def _hash(array: pa.Array, step: FittedStep) -> pa.Array:
    return _int_array(_hash_buckets(array, int(step.params["numBuckets"])), _validity(array))


def _fill_null(array: pa.Array, step: FittedStep) -> pa.Array:
    target = _KIND_TYPES[step.output_kind]
    if array.type != target:
        array = pc.cast(array, target, safe=False)
    if not array.null_count:
        return array
    return pc.fill_null(array, pa.scalar(step.params["value"], target))


_PARTS: dict[str, Callable[[pa.Array], pa.Array]] = {
    "year": pc.year,
    "month": pc.month,
    "day": pc.day,
    "hour": pc.hour,
    "minute": pc.minute,
    "dayOfWeek": lambda ts: pc.day_of_week(ts, count_from_zero=True, week_start=1),
    "dayOfYear": pc.day_of_year,
}


def _datetime(array: pa.Array, step: FittedStep) -> pa.Array:
    return pc.cast(_PARTS[step.params["part"]](_to_timestamp(array)), pa.int64())


_KERNELS: dict[str, Callable[[pa.Array, FittedStep], pa.Array]] = {
    "identity": _identity,
    "log1p": _log1p,
    "clip": _clip,
    "standardize": _standardize,
    "minMax": _min_max,
    "bucketize": _bucketize,
    "vocabulary": _vocabulary,
    "hash": _hash,
    "fillNull": _fill_null,
    "datetime": _datetime,
}


# Row kernels: the same steps on the value of one request row (a Python value of the step's input
# kind, None for null), for requests too small to amortize the column kernels' per-call cost. Each
# is its column kernel restated on one value with the same float64 operations in the same order
# (IEEE arithmetic gives the same bits; log1p is libm's in both; max/min pick as numpy's do), and
# `tests/unit/test_transforms.py` checks for any pipeline and input that both forms agree bit for
# bit. What they do not restate (timestamps, datetime, casts to string, unusual Python types,
# integers beyond 64 bits) raises `_NotRowable`, and the request takes the column kernels.


class _NotRowable(Exception):
    """A value or step the row kernels leave to the column kernels."""


_ROW_SOURCE_KINDS = frozenset({"integer", "float", "boolean", "string"})


def _row_source(value: Any, kind: Kind) -> Any:
    """A request value read as `kind` by `_coerce`'s rules (NaN is null; an integral float is an
    integer), for the exact Python types JSON gives; `_NotRowable` for anything else, including
    what `_coerce` refuses, so that the column path words the error."""
    if value is None:
        return None
    type_ = type(value)
    if kind == "float":
        if type_ is float:
            return None if value != value else value
        if type_ is int and -(2**63) <= value < 2**63:
            return float(value)
    elif kind == "integer":
        if type_ is int and -(2**63) <= value < 2**63:
            return value
        if type_ is float:
            if value != value:
                return None
            if -(2.0**63) <= value < 2.0**63 and value == math.trunc(value):
                return int(value)
    elif (kind == "boolean" and type_ is bool) or (kind == "string" and type_ is str):
        return value
    raise _NotRowable


def _float_value(value: float) -> float | None:
    return None if value != value else value  # NaN from arithmetic is null, as in _float_array


def _log1p_value(value: Any, step: FittedStep) -> Any:
    return math.log1p(value) if value is not None and value > -1 else None


def _clip_value(value: Any, step: FittedStep) -> Any:
    if value is None:
        return None
    number, low, high = float(value), step.params["min"], step.params["max"]
    if low is not None and not number > low:  # np.maximum keeps its second operand on ties (-0.0, 0)
        number = float(low)
    if high is not None and not number < high:
        number = float(high)
    return number


def _standardize_value(value: Any, step: FittedStep) -> Any:
    if value is None:
        return None
    return _float_value((float(value) - step.params["mean"]) / step.params["std"])


def _min_max_value(value: Any, step: FittedStep) -> Any:
    if value is None:
        return None
    low, high = step.params["min"], step.params["max"]
    scale = high - low
    if not (math.isfinite(scale) and scale > 0):
        scale = 1.0
    return _float_value((float(value) - low) / scale)


def _bucketize_value(value: Any, step: FittedStep) -> Any:
    return None if value is None else bisect.bisect_right(step.boundary_list, float(value))


_MASK64 = (1 << 64) - 1


def _hash_text(value: Any) -> str:
    if type(value) is bool:
        return "true" if value else "false"
    return value if type(value) is str else str(value)


def stable_hash_value(value: Any) -> int:
    """`HASH_ALGORITHM` of one integer, string or boolean: the byte-at-a-time definition."""
    try:
        data = _hash_text(value).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: Arrow refuses such a string, with its own words
        raise _NotRowable from None
    h = 0xCBF29CE484222325
    for byte in data:
        h = (h * 0x100000001B3 + byte + 1) & _MASK64
    h ^= (len(data) * 0x9E3779B97F4A7C15) & _MASK64
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _MASK64
    return h ^ (h >> 33)


def _vocabulary_value(value: Any, step: FittedStep) -> Any:
    if value is None:
        return None
    index = step.vocabulary_positions.get(value)
    if index is None:
        size, oov = len(step.params["vocabulary"]), int(step.params["oovBuckets"])
        index = size if oov == 1 else size + stable_hash_value(value) % oov
    if step.params["output"] != "oneHot":
        return index
    vector = [0.0] * (len(step.params["vocabulary"]) + int(step.params["oovBuckets"]))
    vector[index] = 1.0
    return vector


def _hash_value(value: Any, step: FittedStep) -> Any:
    return None if value is None else stable_hash_value(value) % int(step.params["numBuckets"])


def _fill_null_value(value: Any, step: FittedStep) -> Any:
    if value is None:
        return step.fill_value
    return float(value) if step.output_kind == "float" and step.input_kind == "integer" else value


_ROW_KERNELS: dict[str, Callable[[Any, FittedStep], Any]] = {
    "identity": lambda value, step: value,
    "log1p": _log1p_value,
    "clip": _clip_value,
    "standardize": _standardize_value,
    "minMax": _min_max_value,
    "bucketize": _bucketize_value,
    "vocabulary": _vocabulary_value,
    "hash": _hash_value,
    "fillNull": _fill_null_value,
}


# -- the final cast -----------------------------------------------------------------------------

_CASTABLE: dict[str, frozenset[str]] = {
    "float32": frozenset({"integer", "float", "boolean", "vector"}),
    "float64": frozenset({"integer", "float", "boolean", "vector"}),
    "int32": frozenset({"integer", "float", "boolean", "vector"}),
    "int64": frozenset({"integer", "float", "boolean", "vector"}),
    "bool": frozenset({"integer", "float", "boolean", "vector"}),
    "string": frozenset({"integer", "float", "boolean", "string", "timestamp"}),
}
_DTYPES: dict[str, pa.DataType] = {
    "float32": pa.float32(),
    "float64": pa.float64(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "bool": pa.bool_(),
    "string": pa.string(),
}


def _check_cast(kind: Kind, dtype: FeatureDtype | None) -> None:
    if dtype is not None and kind not in _CASTABLE[dtype]:
        raise _Problem(f"dtype {dtype} cannot hold {kind} values")


def output_type(kind: Kind, dtype: FeatureDtype | None, width: int | None = None) -> pa.DataType:
    """The Arrow type of a feature whose last step produces `kind`, cast to `dtype`."""
    if kind == "vector":
        return pa.list_(_DTYPES[dtype] if dtype else pa.float32(), width or 0)
    if dtype is not None:
        return _DTYPES[dtype]
    return pa.string() if kind == "string" else _KIND_TYPES[kind]


def _cast_values(values: np.ndarray, valid: np.ndarray, target: pa.DataType) -> tuple[np.ndarray, np.ndarray]:
    """Numbers (float64, or bool/float32 for vectors) to a numeric or boolean dtype."""
    if pa.types.is_boolean(target):
        return values != 0, valid
    if pa.types.is_floating(target):
        with np.errstate(over="ignore"):
            return values.astype(target.to_pandas_dtype()), valid
    bits = target.bit_width - 1
    with np.errstate(invalid="ignore"):
        truncated = np.trunc(values)
        valid = valid & np.isfinite(truncated) & (truncated >= -(2.0**bits)) & (truncated < 2.0**bits)
    return np.where(valid, truncated, 0).astype(target.to_pandas_dtype()), valid


def _cast_output(array: pa.Array, kind: Kind, dtype: FeatureDtype | None, target: pa.DataType) -> pa.Array:
    """`array` (of `kind`) cast to the feature's `output_type(kind, dtype)`, `target`."""
    if kind == "vector":
        if dtype is None or dtype == "float32":
            return array
        valid = _validity(array)
        width = array.type.list_size
        flat = array.values.slice(array.offset * width, len(array) * width)
        values, _ = _cast_values(flat.to_numpy(), np.ones(len(flat), dtype=bool), _DTYPES[dtype])
        return pa.FixedSizeListArray.from_arrays(
            pa.array(values, type=_DTYPES[dtype]), width, mask=None if valid.all() else pa.array(~valid)
        )
    if array.type == target:
        return array
    if pa.types.is_string(target) or kind == "string":
        return pc.cast(array, target)
    if kind == "integer" and pa.types.is_integer(target):
        values, valid = _integers(array)
        bits = target.bit_width - 1
        valid = valid & (values >= -(2**bits)) & (values < 2**bits)
        return _int_array(np.where(valid, values, 0).astype(target.to_pandas_dtype()), valid, target)
    values, valid = _numbers(array)
    cast, valid = _cast_values(values, valid, target)
    return pa.array(cast, type=target, mask=None if valid.all() else ~valid)


def _cast_value(value: Any, kind: Kind, dtype: FeatureDtype | None) -> Any:
    """`_cast_output` on one value of a `rowable` feature."""
    if value is None or dtype is None or kind == "vector":
        return value  # a rowable vector's dtype is None or float32, its elements' own type
    if dtype == "float64":
        return float(value)
    if dtype == "float32":
        with np.errstate(over="ignore"):
            return float(np.float32(value))
    if dtype == "bool":
        return value if kind == "boolean" else value != 0
    bits = 31 if dtype == "int32" else 63
    if kind == "integer":
        return value if -(2**bits) <= value < 2**bits else None
    number = float(value)
    if not math.isfinite(number):
        return None
    truncated = math.trunc(number)
    return truncated if -(2**bits) <= truncated < 2**bits else None


# -- fitted features ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FittedFeature:
    """A feature ready to compute: its source column, fitted steps and output type."""

    name: str
    source: str
    source_kind: Kind
    steps: tuple[FittedStep, ...]
    dtype: FeatureDtype | None

    @property
    def output_kind(self) -> Kind:
        return self.steps[-1].output_kind if self.steps else self.source_kind

    @cached_property
    def output_type(self) -> pa.DataType:
        width = None
        if self.output_kind == "vector":
            params = self.steps[-1].params
            width = len(params["vocabulary"]) + int(params["oovBuckets"])
        return output_type(self.output_kind, self.dtype, width)

    def compute(self, source: pa.Array) -> pa.Array:
        """The feature from its source column, already coerced to `source_kind`."""
        array = source
        try:
            for step in self.steps:
                array = step.apply(array)
            return _cast_output(array, self.output_kind, self.dtype, self.output_type)
        except _Problem as problem:
            raise TransformInputError(self.name, self.source, str(problem)) from None

    @cached_property
    def rowable(self) -> bool:
        """Whether the row kernels take this feature (see `apply_rows`)."""
        return (
            self.source_kind in _ROW_SOURCE_KINDS
            and all(step.transform.type in _ROW_KERNELS for step in self.steps)
            and (self.dtype in (None, "float32") if self.output_kind == "vector" else self.dtype != "string")
        )

    @cached_property
    def compute_value(self) -> Callable[[Any], Any]:
        """The feature of one source value already read by `_row_source`, by the row kernels (the
        feature must be `rowable`); raises `_NotRowable` for a value they leave to the columns.
        Built once per feature: the server calls it for every feature of every row."""
        plan = tuple((_ROW_KERNELS[step.transform.type], step) for step in self.steps)
        kind, dtype = self.output_kind, self.dtype
        if dtype is None or kind == "vector":  # the last step's values are the feature's (no cast)
            if len(plan) == 1:
                kernel, step = plan[0]
                return lambda value: kernel(value, step)

            def steps_only(value: Any) -> Any:
                for kernel, step in plan:
                    value = kernel(value, step)
                return value

            return steps_only

        def steps_and_cast(value: Any) -> Any:
            for kernel, step in plan:
                value = kernel(value, step)
            return _cast_value(value, kind, dtype)

        return steps_and_cast

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "from": self.source,
            "sourceKind": self.source_kind,
            "dtype": self.dtype,
            "outputType": str(self.output_type),
            "steps": [step.to_dict() for step in self.steps],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FittedFeature:
        dtype = data.get("dtype")
        if dtype is not None and dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}")
        return cls(
            name=data["name"],
            source=data["from"],
            source_kind=_kind(data["sourceKind"]),
            steps=tuple(FittedStep.from_dict(step) for step in data["steps"]),
            dtype=dtype,
        )


@dataclass(frozen=True)
class FittedFeatures:
    """Every feature of a FeatureSet version with its fitted parameters: what a version stores
    (`to_json`) and the model server loads (`from_json`) to compute exactly what training saw."""

    features: tuple[FittedFeature, ...]

    @property
    def source_columns(self) -> dict[str, Kind]:
        """Columns a table or request must carry, with the kind each is read as."""
        return {f.source: f.source_kind for f in self.features}

    @cached_property
    def source_users(self) -> tuple[tuple[str, str, Kind], ...]:
        """(column, the first feature computed from it, the column's kind) per source column, in
        `source_columns` order: errors about a column name a feature."""
        users: dict[str, tuple[str, str, Kind]] = {}
        for feature in self.features:
            users.setdefault(feature.source, (feature.source, feature.name, feature.source_kind))
        return tuple(users.values())

    @cached_property
    def rowable(self) -> bool:
        """Whether `apply_rows` can compute every feature (no timestamp sources, no datetime
        step, no string dtype, no oneHot dtype other than float32)."""
        return all(feature.rowable for feature in self.features)

    @cached_property
    def output_schema(self) -> pa.Schema:
        """Arrow schema of `apply_batch`'s result (built once: the server applies it per request)."""
        return pa.schema([pa.field(f.name, f.output_type) for f in self.features])

    def to_dict(self) -> dict[str, Any]:
        return {
            "schemaVersion": FITTED_SCHEMA_VERSION,
            "hashAlgorithm": HASH_ALGORITHM,
            "features": [feature.to_dict() for feature in self.features],
        }

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no NaN): equal fits give equal bytes, hence digests."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FittedFeatures:
        version = data.get("schemaVersion")
        if version != FITTED_SCHEMA_VERSION:
            raise ValueError(f"fitted features schemaVersion {version!r} is not {FITTED_SCHEMA_VERSION}")
        if data.get("hashAlgorithm") != HASH_ALGORITHM:
            raise ValueError(f"fitted features use hash {data.get('hashAlgorithm')!r}, this reader {HASH_ALGORITHM}")
        return cls(features=tuple(FittedFeature.from_dict(f) for f in data["features"]))

    @classmethod
    def from_json(cls, text: str | bytes) -> FittedFeatures:
        return cls.from_dict(json.loads(text))


# -- fit ----------------------------------------------------------------------------------------


def _needs_fit(transform: Transform) -> bool:
    return (
        transform.type in ("standardize", "minMax", "vocabulary")
        or (transform.type == "bucketize" and transform.num_buckets is not None)
        or (transform.type == "fillNull" and transform.strategy != "constant")
    )


def _source_array(table: pa.Table, feature: str, column: str, kind: Kind) -> pa.Array:
    if table.schema.get_field_index(column) < 0:
        raise TransformInputError(feature, column, "the column is missing")
    chunks = table.column(column)
    # One chunk (a request, a record batch) is used as it is; more are concatenated.
    array = chunks.chunk(0) if chunks.num_chunks == 1 else chunks.combine_chunks()
    try:
        return _coerce(array, kind)
    except _Problem as problem:
        raise TransformInputError(feature, column, str(problem)) from None


def fit_pipeline(
    features: Sequence[Feature],
    chunks: Iterable[pa.Table],
    *,
    schema: pa.Schema | None = None,
    sketch_k: int = DEFAULT_SKETCH_K,
    category_capacity: int = DEFAULT_CATEGORY_CAPACITY,
) -> FittedFeatures:
    """Fits every feature's steps on `chunks` in bounded memory.

    Source kinds come from `schema` where it names a column, else from the first chunk (a column
    whose first chunk is entirely null has no type there: pass `schema`). Each pass over `chunks`
    fits one more fitted step of every feature on the outputs of its already fitted prefix, so a
    feature with several fitted steps needs `chunks` to be re-iterable (a list, or an object whose
    `__iter__` reads the source again). Vocabularies and mostFrequent are exact while a column
    has at most `category_capacity` distinct values; quantiles (bucketize numBuckets, median)
    carry the sketch's `rankErrorBound` in their parameters (0: exact).
    """
    features = list(features)
    kinds: dict[str, Kind] = {}
    for feature in features:
        if schema is not None and schema.get_field_index(feature.from_) >= 0:
            kinds[feature.from_] = _inferred_kind(feature, schema.field(feature.from_).type)
    stages = [[i for i, t in enumerate(f.transforms) if _needs_fit(t)] for f in features]
    passes = max((len(s) for s in stages), default=0)
    if passes == 0 and any(f.from_ not in kinds for f in features):
        passes = 1
    if passes > 1 and isinstance(chunks, Iterator):
        raise ValueError(
            f"fitting needs {passes} passes over the data (a feature has {passes} fitted steps in a "
            "row), but chunks is a one-shot iterator: pass a list or a re-iterable source"
        )

    steps: list[list[FittedStep | None]] = [[None] * len(f.transforms) for f in features]
    kinds_ready = len(kinds) == len({f.from_ for f in features})
    if kinds_ready:
        _plan(features, kinds, steps)
    for stage in range(passes):
        fitters: dict[int, tuple[int, _Fitter]] = {}
        if kinds_ready:
            fitters = _stage_fitters(features, kinds, steps, stages, stage, sketch_k, category_capacity)
        for chunk in chunks:
            if not kinds_ready:
                for feature in features:
                    if feature.from_ not in kinds:
                        if chunk.schema.get_field_index(feature.from_) < 0:
                            raise TransformInputError(feature.name, feature.from_, "the column is missing")
                        kinds[feature.from_] = _inferred_kind(feature, chunk.schema.field(feature.from_).type)
                kinds_ready = True
                _plan(features, kinds, steps)
                fitters = _stage_fitters(features, kinds, steps, stages, stage, sketch_k, category_capacity)
            sources: dict[str, pa.Array] = {}
            for index, (position, fitter) in fitters.items():
                feature = features[index]
                if feature.from_ not in sources:
                    sources[feature.from_] = _source_array(chunk, feature.name, feature.from_, kinds[feature.from_])
                array = sources[feature.from_]
                try:
                    for step in _planned(steps[index][:position]):
                        array = step.apply(array)
                except _Problem as problem:
                    raise TransformInputError(feature.name, feature.from_, str(problem)) from None
                fitter.update(array)
        if not kinds_ready:
            missing = sorted(f.from_ for f in features if f.from_ not in kinds)
            raise TransformInputError(None, missing[0], "no data to learn the column's type from: pass schema")
        for index, (position, fitter) in fitters.items():
            (placeholder,) = _planned(steps[index][position : position + 1])
            steps[index][position] = FittedStep(
                placeholder.transform, placeholder.input_kind, placeholder.output_kind, fitter.params()
            )

    return FittedFeatures(
        features=tuple(
            FittedFeature(
                name=f.name,
                source=f.from_,
                source_kind=kinds[f.from_],
                steps=_planned(steps[i]),
                dtype=f.dtype,
            )
            for i, f in enumerate(features)
        )
    )


def _planned(steps: Sequence[FittedStep | None]) -> tuple[FittedStep, ...]:
    """Steps that `_plan` has filled in (all of them, once kinds are known)."""
    planned = tuple(step for step in steps if step is not None)
    assert len(planned) == len(steps), "a step was used before the pipeline was planned"
    return planned


def _inferred_kind(feature: Feature, type_: pa.DataType) -> Kind:
    try:
        kind = source_kind(type_)
    except TypeError as error:
        raise TransformInputError(feature.name, feature.from_, str(error)) from None
    if kind is None:
        raise TransformInputError(
            feature.name, feature.from_, "the column is entirely null in the first chunk, so its type is unknown: pass schema"
        )
    return kind


def _plan(features: Sequence[Feature], kinds: Mapping[str, Kind], steps: list[list[FittedStep | None]]) -> None:
    """Checks every pipeline against its source kind and fills in the steps fitted on nothing
    (fitted ones get placeholder parameters until their pass)."""
    for index, feature in enumerate(features):
        kind = kinds[feature.from_]
        try:
            for position, transform in enumerate(feature.transforms):
                out = _output_kind(transform, kind)
                params = {} if _needs_fit(transform) else _static_params(transform, kind)
                steps[index][position] = FittedStep(transform, kind, out, params)
                kind = out
            _check_cast(kind, feature.dtype)
        except _Problem as problem:
            raise TransformInputError(feature.name, feature.from_, str(problem)) from None


def _stage_fitters(
    features: Sequence[Feature],
    kinds: Mapping[str, Kind],
    steps: list[list[FittedStep | None]],
    stages: list[list[int]],
    stage: int,
    sketch_k: int,
    capacity: int,
) -> dict[int, tuple[int, _Fitter]]:
    fitters: dict[int, tuple[int, _Fitter]] = {}
    for index, positions in enumerate(stages):
        if stage < len(positions):
            position = positions[stage]
            step = steps[index][position]
            assert step is not None
            fitter = _fitter(step.transform, step.input_kind, sketch_k, capacity)
            assert fitter is not None
            fitters[index] = (position, fitter)
    return fitters


# -- apply --------------------------------------------------------------------------------------


def apply_batch(fitted: FittedFeatures, table: pa.Table) -> pa.Table:
    """The feature columns computed from a table holding the source columns (extra columns are
    ignored). Vectorized: no Python loop over rows. Raises `TransformInputError` for a missing
    column or a column that cannot be read as its fitted kind."""
    sources: dict[str, pa.Array] = {}
    columns = []
    for feature in fitted.features:
        if feature.source not in sources:
            sources[feature.source] = _source_array(table, feature.name, feature.source, feature.source_kind)
        columns.append(feature.compute(sources[feature.source]))
    return pa.Table.from_arrays(columns, schema=fitted.output_schema)


ROWS_MAX = 64
"""Up to this many rows the model server takes `apply_rows` (per value) rather than `apply_batch`
(per column): measured in the server, the row kernels cost less up to about 100 rows (the column
kernels' fixed cost per call is ~120 us for seven features, the row kernels' ~3 us per row)."""


def apply_rows(fitted: FittedFeatures,
               rows: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]] | None:
    """The features of a few request rows by the row kernels: per row, the source values as read
    (column -> value of its kind, None for null) and the feature values in `fitted.features`
    order, exactly `apply_batch`'s values for a table of these rows.

    None when the row kernels do not take these rows (`fitted` is not `rowable`, or a value is
    missing, of an unusual type or malformed): the caller then builds a table and calls
    `apply_batch`, which computes the same features or raises the `TransformInputError`."""
    if not fitted.rowable:
        return None
    users, features = fitted.source_users, fitted.features
    sources_rows, feature_rows = [], []
    try:
        for row in rows:
            sources = {column: _row_source(row[column], kind) for column, _, kind in users}
            feature_rows.append(tuple([feature.compute_value(sources[feature.source]) for feature in features]))
            sources_rows.append(sources)
    except (KeyError, _NotRowable):
        return None
    return sources_rows, feature_rows


def apply_online(fitted: FittedFeatures, row: Mapping[str, Any]) -> dict[str, Any]:
    """The features of one request row (JSON-like values: None, bool, int, float, str, datetime,
    date): `apply_rows`, or `apply_batch` on a one-row table where the row kernels do not take
    it; the same values either way. Raises `TransformInputError` naming the feature, the column
    and the problem."""
    computed = apply_rows(fitted, [row])
    if computed is not None:
        return {feature.name: value for feature, value in zip(fitted.features, computed[1][0], strict=True)}
    arrays: dict[str, pa.Array] = {}
    for column, feature, kind in fitted.source_users:
        if column not in row:
            raise TransformInputError(feature, column, "the column is missing from the request")
        try:
            arrays[column] = _online_array(row[column], kind)
        except _Problem as problem:
            raise TransformInputError(feature, column, str(problem)) from None
    result = apply_batch(fitted, pa.table(arrays) if arrays else pa.table({}))
    return {name: result.column(name)[0].as_py() for name in result.column_names}
