"""The reference profile of a FeatureSet version: what drift detection (and online-vs-reference
skew reporting) later compares live data with, built in bounded memory from the same chunks the
materializer writes.

For every feature (the transforms' outputs) and every source column it records the count and
nulls, and then:

- numeric columns (integers, floats, timestamps as epoch seconds): min, max, mean, population
  std, infinities, a quantile grid (`quantiles` + 1 points, inverted-CDF, for KS and Wasserstein
  against the reference's quantile function), a histogram with fixed edges (`bins` equal-mass
  bins, for PSI and Jensen-Shannon), the quantile sketch's own worst-case rank-error bound and,
  while the sketch is exact (at most `sketch_k` values), the whole reference sample as distinct
  values with counts so that small references get exact tests; integer columns with at most
  `low_cardinality` distinct values also get category frequencies (for chi-square);
- categorical columns (strings, booleans, a oneHot vector read as the index of its hot slot):
  the `top_k` most frequent values with counts, the count of all other values, the distinct count
  and the counter's error bound (0: exact).

Binning rule, shared by the profile and whoever bins live data against it (`histogram_counts`):
with inner edges e[0] < ... < e[m-1], bin 0 holds x < e[0], bin i holds e[i-1] <= x < e[i], bin m
holds x >= e[m-1] (the same rule as the bucketize transform), so values beyond the reference
range land in the end bins and -inf/+inf are counted in the first/last bin; nulls and NaN are in
no bin (they are `nulls`). Adjacent bins can be merged by dropping edges, which keeps counts exact.

Error bounds: the histogram counts and quantiles come from the sketch, so every count of values
below an edge is within `rankErrorBound` of the truth (bin counts within twice that), and each
quantile's true rank is within `rankErrorBound` of its target. Category counts undercount by at
most `countErrorBound`. All are 0 when exact (small data, few distinct values).

JSON (`ReferenceProfile.to_json`, schemaVersion 1):
    {"schemaVersion": 1, "kind": "kubeloop.dev/ReferenceProfile", "rows": int,
     "options": {"sketchK", "quantiles", "bins", "topK", "categoryCapacity", "lowCardinality"},
     "binning": "...the rule above...",
     "features" | "columns": {name: {
        "kind": "numeric" | "categorical" | "other", "dtype": arrow type, "count": rows, "nulls": int,
        "numeric": null | {"finite", "negativeInfinity", "positiveInfinity", "min", "max", "mean",
                           "std", "quantiles": {"probabilities": [...], "values": [...]},
                           "histogram": {"edges": [...], "counts": [...]},
                           "rankErrorBound": int, "sample": null | {"values": [...], "counts": [...]}},
        "categories": null | {"values": [...], "counts": [...], "otherCount": int,
                              "distinct": int, "distinctExact": bool, "countErrorBound": int}}}}
`count` includes nulls; histogram counts sum to count - nulls, as do category counts + otherCount.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubeloop.featureset.sketch import DEFAULT_SKETCH_K, Moments, QuantileSketch, ValueCounter
from kubeloop.featureset.transforms import FittedFeatures, apply_batch, read_column, source_kind

PROFILE_SCHEMA_VERSION = 1
"""Version of the profile JSON; readers refuse another."""

PROFILE_KIND = "kubeloop.dev/ReferenceProfile"

BINNING_RULE = (
    "bin 0 holds x < edges[0], bin i holds edges[i-1] <= x < edges[i], the last bin x >= edges[-1]; "
    "-inf and +inf fall in the first and last bin; nulls and NaN in none"
)

ProfileKind = Literal["numeric", "categorical", "other"]


@dataclass(frozen=True)
class ProfileOptions:
    """How detailed a profile is; stored in it so a reader knows what it is looking at."""

    sketch_k: int = DEFAULT_SKETCH_K
    """Quantile sketch size (see `sketch.QuantileSketch`): exact up to this many values."""
    quantiles: int = 100
    """Intervals of the quantile grid: 100 gives the percentiles 0, 1, ..., 100."""
    bins: int = 20
    """Equal-mass histogram bins (fewer when ties merge edges)."""
    top_k: int = 50
    """Categories listed by name; the rest are summed in otherCount."""
    category_capacity: int = 100_000
    """Distinct categories counted exactly before the counter becomes approximate."""
    low_cardinality: int = 50
    """Integer columns with at most this many distinct values also get category frequencies."""

    def to_dict(self) -> dict[str, int]:
        return {
            "sketchK": self.sketch_k,
            "quantiles": self.quantiles,
            "bins": self.bins,
            "topK": self.top_k,
            "categoryCapacity": self.category_capacity,
            "lowCardinality": self.low_cardinality,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileOptions:
        return cls(
            sketch_k=int(data["sketchK"]),
            quantiles=int(data["quantiles"]),
            bins=int(data["bins"]),
            top_k=int(data["topK"]),
            category_capacity=int(data["categoryCapacity"]),
            low_cardinality=int(data["lowCardinality"]),
        )


def histogram_counts(edges: Sequence[float] | np.ndarray, values: np.ndarray | pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Counts of `values` in the bins that `edges` define (`BINNING_RULE`): what the drift check
    computes for live data against a profile histogram. Nulls and NaN are not counted."""
    if isinstance(values, pa.ChunkedArray | pa.Array):
        values = _numeric_values(values)[0]
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    edges = np.asarray(edges, dtype=np.float64)
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1).astype(np.int64)


@dataclass(frozen=True)
class NumericSummary:
    """Distribution of a numeric column's non-null values."""

    finite: int
    negative_infinity: int
    positive_infinity: int
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    quantile_probabilities: list[float]
    quantile_values: list[float]
    """Empty when there are no finite values."""
    bin_edges: list[float]
    bin_counts: list[int]
    """len(bin_edges) + 1 counts, infinities included in the end bins."""
    rank_error_bound: int
    sample_values: list[float] | None = None
    sample_counts: list[int] | None = None

    def histogram_of(self, values: np.ndarray | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Live values binned with this histogram's edges (`BINNING_RULE`)."""
        return histogram_counts(self.bin_edges, values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "finite": self.finite,
            "negativeInfinity": self.negative_infinity,
            "positiveInfinity": self.positive_infinity,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "std": self.std,
            "quantiles": {"probabilities": self.quantile_probabilities, "values": self.quantile_values},
            "histogram": {"edges": self.bin_edges, "counts": self.bin_counts},
            "rankErrorBound": self.rank_error_bound,
            "sample": None
            if self.sample_values is None
            else {"values": self.sample_values, "counts": self.sample_counts},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericSummary:
        sample = data.get("sample")
        return cls(
            finite=data["finite"],
            negative_infinity=data["negativeInfinity"],
            positive_infinity=data["positiveInfinity"],
            min=data["min"],
            max=data["max"],
            mean=data["mean"],
            std=data["std"],
            quantile_probabilities=list(data["quantiles"]["probabilities"]),
            quantile_values=list(data["quantiles"]["values"]),
            bin_edges=list(data["histogram"]["edges"]),
            bin_counts=list(data["histogram"]["counts"]),
            rank_error_bound=data["rankErrorBound"],
            sample_values=None if sample is None else list(sample["values"]),
            sample_counts=None if sample is None else list(sample["counts"]),
        )


@dataclass(frozen=True)
class CategorySummary:
    """Frequencies of a column's most frequent non-null values."""

    values: list[Any]
    counts: list[int]
    other_count: int
    distinct: int
    """Exact when `distinct_exact`, else the number of values still tracked (a lower bound)."""
    distinct_exact: bool
    count_error_bound: int

    def counts_of(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Live values counted against these categories: one count per listed value, then the
        count of every other non-null value (unseen categories included) last."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        values = values.drop_null()
        listed = pa.array(self.values, type=_category_type(values.type)) if self.values else None
        if listed is None:
            return np.array([len(values)], dtype=np.int64)
        index = pc.fill_null(pc.index_in(values.cast(listed.type), value_set=listed), len(self.values))
        return np.bincount(index.to_numpy(), minlength=len(self.values) + 1).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "values": self.values,
            "counts": self.counts,
            "otherCount": self.other_count,
            "distinct": self.distinct,
            "distinctExact": self.distinct_exact,
            "countErrorBound": self.count_error_bound,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategorySummary:
        return cls(
            values=list(data["values"]),
            counts=list(data["counts"]),
            other_count=data["otherCount"],
            distinct=data["distinct"],
            distinct_exact=data["distinctExact"],
            count_error_bound=data["countErrorBound"],
        )


def _category_type(type_: pa.DataType) -> pa.DataType:
    if pa.types.is_boolean(type_):
        return pa.bool_()
    if pa.types.is_integer(type_) or pa.types.is_fixed_size_list(type_):
        return pa.int64()
    return pa.large_string()


@dataclass(frozen=True)
class ColumnProfile:
    """The profile of one feature or source column."""

    kind: ProfileKind
    dtype: str
    count: int
    nulls: int
    numeric: NumericSummary | None = None
    categories: CategorySummary | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dtype": self.dtype,
            "count": self.count,
            "nulls": self.nulls,
            "numeric": None if self.numeric is None else self.numeric.to_dict(),
            "categories": None if self.categories is None else self.categories.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnProfile:
        if data["kind"] not in ("numeric", "categorical", "other"):
            raise ValueError(f"unknown profile kind {data['kind']!r}")
        return cls(
            kind=data["kind"],
            dtype=data["dtype"],
            count=data["count"],
            nulls=data["nulls"],
            numeric=None if data.get("numeric") is None else NumericSummary.from_dict(data["numeric"]),
            categories=None if data.get("categories") is None else CategorySummary.from_dict(data["categories"]),
        )


@dataclass(frozen=True)
class ReferenceProfile:
    """Per-feature and per-source-column profiles of one FeatureSet version."""

    rows: int
    options: ProfileOptions
    features: dict[str, ColumnProfile] = field(default_factory=dict)
    columns: dict[str, ColumnProfile] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schemaVersion": PROFILE_SCHEMA_VERSION,
            "kind": PROFILE_KIND,
            "rows": self.rows,
            "options": self.options.to_dict(),
            "binning": BINNING_RULE,
            "features": {name: p.to_dict() for name, p in self.features.items()},
            "columns": {name: p.to_dict() for name, p in self.columns.items()},
        }

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no NaN)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        version = data.get("schemaVersion")
        if version != PROFILE_SCHEMA_VERSION or data.get("kind") != PROFILE_KIND:
            raise ValueError(f"not a {PROFILE_KIND} of schemaVersion {PROFILE_SCHEMA_VERSION} (got {version!r})")
        return cls(
            rows=data["rows"],
            options=ProfileOptions.from_dict(data["options"]),
            features={name: ColumnProfile.from_dict(p) for name, p in data["features"].items()},
            columns={name: ColumnProfile.from_dict(p) for name, p in data["columns"].items()},
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ReferenceProfile:
        return cls.from_dict(json.loads(text))


# -- building -----------------------------------------------------------------------------------


def _numeric_values(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """float64 values (timestamps as epoch seconds) and validity, NaN counted as null."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_timestamp(array.type) or pa.types.is_date(array.type):
        array = pc.divide(pc.cast(read_column(array, "timestamp"), pa.int64()).cast(pa.float64()), 1e6)
    elif not pa.types.is_floating(array.type):
        array = pc.cast(array, pa.float64(), safe=False)
    valid = np.ones(len(array), dtype=bool) if array.null_count == 0 else array.is_valid().to_numpy(zero_copy_only=False)
    values = pc.fill_null(array, 0.0).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    return values, valid & ~np.isnan(values)


def _profile_kind(type_: pa.DataType) -> ProfileKind | None:
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    if pa.types.is_null(type_):
        return None
    if pa.types.is_fixed_size_list(type_):
        return "categorical"
    try:
        kind = source_kind(type_)
    except TypeError:
        return "other"
    return "categorical" if kind in ("string", "boolean") else "numeric"


class _ColumnAccumulator:
    """Everything a column's profile needs, mergeable."""

    def __init__(self, options: ProfileOptions) -> None:
        self.options = options
        self.kind: ProfileKind | None = None
        self.dtype: pa.DataType | None = None
        self.count = 0
        self.nulls = 0
        self.negative_infinity = 0
        self.positive_infinity = 0
        self.moments = Moments()
        self.sketch = QuantileSketch(options.sketch_k)
        self.counter: ValueCounter | None = None

    def _start(self, kind: ProfileKind, type_: pa.DataType) -> None:
        if self.kind is None:
            self.kind, self.dtype = kind, type_
            if kind == "categorical":
                self.counter = ValueCounter(_category_type(type_), self.options.category_capacity)
            elif kind == "numeric" and pa.types.is_integer(type_):
                self.counter = ValueCounter(pa.int64(), self.options.low_cardinality)
        elif kind != self.kind:
            raise ValueError(f"a column changes from {self.dtype} to {type_} between chunks")

    def update(self, array: pa.Array | pa.ChunkedArray) -> None:
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        self.count += len(array)
        kind = _profile_kind(array.type)
        if kind is None:
            self.nulls += len(array)
            return
        self._start(kind, array.type)
        if kind == "numeric":
            values, valid = _numeric_values(array)
            self.nulls += int((~valid).sum())
            present = values[valid]
            finite = present[np.isfinite(present)]
            self.negative_infinity += int((present == -np.inf).sum())
            self.positive_infinity += int((present == np.inf).sum())
            self.moments.update(finite)
            self.sketch.update(finite)
            if self.counter is not None and pa.types.is_integer(array.type):
                self.counter.update(pc.cast(array, pa.int64(), safe=False))
                self._drop_high_cardinality()
        elif kind == "categorical":
            self.nulls += array.null_count
            assert self.counter is not None
            self.counter.update(categories_of(array))
        else:
            self.nulls += array.null_count

    def _drop_high_cardinality(self) -> None:
        # Only integer columns with few distinct values get categories; a counter that had to
        # reduce has seen more than low_cardinality values, so it is no longer needed.
        if self.kind == "numeric" and self.counter is not None and not self.counter.exact:
            self.counter = None

    def merge(self, other: _ColumnAccumulator) -> None:
        if other.kind is not None:
            assert other.dtype is not None
            low_cardinality_lost = self.kind is not None and self.counter is None
            self._start(other.kind, other.dtype)
            if self.kind == "numeric" and (low_cardinality_lost or other.counter is None):
                self.counter = None
            elif self.counter is not None and other.counter is not None:
                self.counter.merge(other.counter)
                self._drop_high_cardinality()
        self.count += other.count
        self.nulls += other.nulls
        self.negative_infinity += other.negative_infinity
        self.positive_infinity += other.positive_infinity
        self.moments.merge(other.moments)
        self.sketch.merge(other.sketch)

    def result(self) -> ColumnProfile:
        if self.kind is None:
            return ColumnProfile(kind="other", dtype="null", count=self.count, nulls=self.nulls)
        assert self.dtype is not None
        numeric = self._numeric() if self.kind == "numeric" else None
        categories = None
        if self.counter is not None:
            limit = None if self.kind == "numeric" else self.options.top_k
            values, counts = self.counter.most_common(limit)
            listed = int(counts.sum())
            categories = CategorySummary(
                values=values.to_pylist(),
                counts=[int(c) for c in counts],
                other_count=self.counter.total - listed,
                distinct=self.counter.tracked,
                distinct_exact=self.counter.exact,
                count_error_bound=self.counter.error_bound,
            )
        return ColumnProfile(
            kind=self.kind,
            dtype=str(self.dtype),
            count=self.count,
            nulls=self.nulls,
            numeric=numeric,
            categories=categories,
        )

    def _numeric(self) -> NumericSummary:
        options, sketch, moments = self.options, self.sketch, self.moments
        probabilities = np.linspace(0.0, 1.0, options.quantiles + 1)
        infinite = self.negative_infinity + self.positive_infinity
        if sketch.count == 0:
            return NumericSummary(
                finite=0,
                negative_infinity=self.negative_infinity,
                positive_infinity=self.positive_infinity,
                min=None,
                max=None,
                mean=None,
                std=None,
                quantile_probabilities=[float(p) for p in probabilities],
                quantile_values=[],
                bin_edges=[],
                bin_counts=[infinite],
                rank_error_bound=0,
            )
        edges = sketch.equal_mass_edges(options.bins)
        below = sketch.count_below(edges)
        counts = np.diff(np.concatenate(([0], below, [sketch.count])))
        counts[0] += self.negative_infinity
        counts[-1] += self.positive_infinity
        sample_values = sample_counts = None
        if sketch.exact:
            distinct, weights = sketch.distinct_items()
            sample_values, sample_counts = [float(v) for v in distinct], [int(w) for w in weights]
        return NumericSummary(
            finite=sketch.count,
            negative_infinity=self.negative_infinity,
            positive_infinity=self.positive_infinity,
            min=float(moments.min),
            max=float(moments.max),
            mean=_finite_or_none(moments.mean),
            std=_finite_or_none(moments.std),
            quantile_probabilities=[float(p) for p in probabilities],
            quantile_values=[float(v) for v in sketch.quantiles(probabilities)],
            bin_edges=[float(e) for e in edges],
            bin_counts=[int(c) for c in counts],
            rank_error_bound=sketch.rank_error_bound,
            sample_values=sample_values,
            sample_counts=sample_counts,
        )


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def categories_of(array: pa.Array) -> pa.Array:
    """The category of each row: the value itself, or the hot slot of a oneHot vector."""
    if pa.types.is_fixed_size_list(array.type):
        width = array.type.list_size
        flat = array.values.slice(array.offset * width, len(array) * width)
        matrix = np.asarray(pc.fill_null(flat, 0).to_numpy(zero_copy_only=False), dtype=np.float64)
        slots = matrix.reshape(len(array), width).argmax(axis=1) if width else np.zeros(len(array), np.int64)
        valid = array.is_valid().to_numpy(zero_copy_only=False)
        return pa.array(slots.astype(np.int64), mask=None if valid.all() else ~valid)
    if pa.types.is_boolean(array.type):
        return array
    return pc.cast(array, pa.large_string())


class ProfileBuilder:
    """Accumulates a `ReferenceProfile` chunk by chunk in bounded memory; builders of disjoint
    parts of the data merge (`merge`) into the builder of all of it."""

    def __init__(self, options: ProfileOptions | None = None) -> None:
        self.options = options or ProfileOptions()
        self.rows = 0
        self._features: dict[str, _ColumnAccumulator] = {}
        self._columns: dict[str, _ColumnAccumulator] = {}

    def update(self, features: pa.Table, columns: pa.Table | None = None) -> None:
        """Adds a chunk: the feature columns (as `apply_batch` returns them) and, optionally,
        the source columns they were computed from (the same rows)."""
        self.rows += features.num_rows
        for section, table in ((self._features, features), (self._columns, columns)):
            if table is None:
                continue
            for name in table.column_names:
                if name not in section:
                    section[name] = _ColumnAccumulator(self.options)
                section[name].update(table.column(name))

    def merge(self, other: ProfileBuilder) -> None:
        """Adds what another builder (with the same options) has seen."""
        if other.options != self.options:
            raise ValueError("cannot merge profile builders with different options")
        self.rows += other.rows
        for mine, theirs in ((self._features, other._features), (self._columns, other._columns)):
            for name, accumulator in theirs.items():
                if name not in mine:
                    mine[name] = _ColumnAccumulator(self.options)
                mine[name].merge(accumulator)

    def result(self) -> ReferenceProfile:
        return ReferenceProfile(
            rows=self.rows,
            options=self.options,
            features={name: acc.result() for name, acc in self._features.items()},
            columns={name: acc.result() for name, acc in self._columns.items()},
        )


def build_profile(
    chunks: Iterable[pa.Table],
    fitted: FittedFeatures | None = None,
    options: ProfileOptions | None = None,
) -> ReferenceProfile:
    """The profile of `chunks` in one pass. With `fitted`, chunks hold source columns: features
    are computed with `apply_batch` and source columns profiled as the transforms read them;
    without, each chunk's columns are profiled as features."""
    builder = ProfileBuilder(options)
    for chunk in chunks:
        if fitted is None:
            builder.update(chunk)
            continue
        features = apply_batch(fitted, chunk)  # raises TransformInputError for a missing column
        sources = {
            column: read_column(chunk.column(column), kind, column) for column, kind in fitted.source_columns.items()
        }
        builder.update(features, pa.table(sources))
    return builder.result()
