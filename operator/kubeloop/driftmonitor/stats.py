"""The drift statistics engine: per-feature two-sample tests and distances between a reference
(the training data of a model's FeatureSet version) and a current window (the logged live
inputs), multiple-testing correction, and the dataset-level verdict.

Tests (every statistic equals scipy's on the same data; tests/driftmonitor/test_stats.py checks):

- `ks`: two-sample Kolmogorov-Smirnov, `scipy.stats.ks_2samp` (two-sided; its exact p-value while
  both samples have at most 10,000 values, Smirnov's asymptotic `kstwo` beyond). Numerical only.
- `chi2`: chi-square test of homogeneity on the 2 x k contingency table of reference and current
  counts, `scipy.stats.chi2_contingency(table, correction=False)` (categories absent from both
  samples dropped). Not Evidently's goodness-of-fit `chisquare(current, expected=reference)`:
  that treats the reference frequencies as exact, so when the reference is itself a sample of
  1,000 rows it rejects identical distributions far more often than the nominal level. Numerical
  features are binned (below). Effect size: Cramer's V = sqrt(chi2 / n) for two rows.
- `psi`: population stability index sum((c - r) * ln(c / r)) over bin/category proportions, with
  empty cells set to 0.0001 (Evidently's convention).
- `wasserstein`: `scipy.stats.wasserstein_distance` divided by the reference's population
  standard deviation (Evidently's "normed" distance; a constant reference divides by 1).
  Numerical only.
- `jensenshannon`: `scipy.spatial.distance.jensenshannon` of the proportions (natural log, so in
  [0, sqrt(ln 2) ~ 0.83]), Evidently's convention.

Numerical features go to the binned tests through `bins` equal-mass bins of the reference (the
edges the FeatureSet profile stores, `profile.BINNING_RULE`); categorical ones use their
categories. Categories of the current window that the reference never saw are pooled in one
extra cell ("unseen") and counted in `unseenCategories`.

The `auto` rule (per feature; n_ref = the reference's non-missing values):

- numerical, n_ref <= 1000: `ks`, drift when the corrected p-value < thresholds.pValue;
- numerical, n_ref > 1000: `wasserstein`, drift when the normed distance >= thresholds.wasserstein;
  these two are Evidently's defaults, kept so that decisions agree with it (bench/bench_drift.py);
- categorical (strings, booleans, one-hot) and low-cardinality numerical (at most
  `LOW_CARDINALITY` = 5 distinct reference values, Evidently's cut): `chi2` (homogeneity) at every
  sample size, drift when the corrected p-value < thresholds.pValue AND Cramer's V >=
  `min_effect_size`, or >= `AUTO_CATEGORICAL_MIN_EFFECT` (0.02) when min_effect_size is unset.
  Evidently switches to Jensen-Shannon >= 0.1 above 1,000 rows, which misses small frequency
  shifts however large the sample (a category moving from 30% to 36% has a JS distance of about
  0.05), and uses goodness-of-fit chi-square below, which over-alarms (see `chi2`). The
  homogeneity test holds its nominal level at every n; the effect floor stops it from flagging
  negligible shifts at very large n (V = 0.02 is a 2-point move of a 50/50 binary feature; under
  no drift V ~ sqrt(df / n), below 0.02 from a few tens of thousands of rows on).

With a forced method, a feature the method does not apply to (ks or wasserstein on a categorical
feature) gets the auto choice, and its result says so (`note`). `min_effect_size`, when set, is
also required of ks (the KS statistic D) and chi2 (Cramer's V).

Multiple testing: the p-values of the features tested with ks or chi2 are corrected together:
Bonferroni (min(1, m p)), Benjamini-Hochberg (the step-up adjusted p-values, which control the
false discovery rate), or none. Distances are not corrected (they are not tests). Dataset-level
drift: the share of tested features that drifted >= drift_share.

Missing values (null, NaN; for numerical features also +-inf, which no distance can use) are left
out of every test and reported as `null_fraction` of the current window. A feature with no values
in the current window while the reference has some is reported as drifted ("all values missing");
a feature without reference values is not tested.

Two references:

- rows (`reference_from_values`): exact; the p-values equal scipy's.
- the FeatureSet version's stored profile (`reference_from_profile`, bounded memory). When the
  profile kept the whole sample (references of at most sketchK = 2048 values) the reference is
  that sample and every test is exact (auto's ks, used up to 1,000 reference values, is always
  in this case). Otherwise numerical tests use the profile's quantile grid q_0..q_Q (Q = 100 by
  default) whose ranks are off by at most delta = rankErrorBound / n_ref:
  - ks: the reference CDF is interpolated linearly between grid points, so
    |D - D_exact| <= 1/Q + delta; the p-value is computed from max(0, D - that bound), so the
    grid's resolution can hide a small shift but never raise a false alarm;
  - wasserstein: the reference quantile function is linear between grid points and, in the two
    end intervals, continues the neighbouring slope towards the min/max (a chord to the extreme
    values would smear 1% of the mass over the whole tail). Both lie in each interval's band
    [q_i, q_i+1], so |W - W_exact| <= sum_inner (q_i+1 - q_i) / (2Q) + (q_1 - q_0 + q_Q - q_Q-1) / Q
    + 2 delta (q_Q - q_0), divided by the std for the normed distance (`QuantileGrid.wasserstein_bound`).
  Each result carries its bound in `error_bound`. The bounds are worst cases; the measured errors
  at 1M rows are about 10x smaller (docs/performance.md). Binned tests use the stored histogram,
  whose bin counts are within 2 * rankErrorBound of the truth.
  Categories beyond the profile's top-k are pooled in one "other" cell (exact when the profile
  listed every category); an unlisted live category counts as unseen only when the profile's
  list is complete.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats as scipy_stats
from scipy.spatial.distance import jensenshannon as scipy_jensenshannon

from kubeloop.featureset.profile import BINNING_RULE, ColumnProfile, ReferenceProfile
from kubeloop.featureset.profile import categories_of as profile_categories

if TYPE_CHECKING:
    from kubeloop.driftmonitor.api import DriftMonitorSpec

Method = Literal["ks", "psi", "chi2", "wasserstein", "jensenshannon"]
MethodChoice = Literal["auto", "ks", "psi", "chi2", "wasserstein", "jensenshannon"]
CorrectionMethod = Literal["bonferroni", "fdr", "none"]
FeatureKind = Literal["numerical", "categorical"]

LOW_CARDINALITY = 5
"""Numerical features with at most this many distinct reference values are tested as categorical."""
SMALL_REFERENCE = 1000
"""auto: numerical features with at most this many reference values get ks, larger ones wasserstein."""
AUTO_CATEGORICAL_MIN_EFFECT = 0.02
"""auto: Cramer's V a categorical shift needs besides significance when min_effect_size is unset."""
PSI_EMPTY_PROPORTION = 1e-4
"""Proportion given to empty cells in PSI (whose log is undefined at 0), Evidently's value."""
DEFAULT_BINS = 20
"""Equal-mass bins for the binned tests of numerical features (the profile's default)."""
KS_EXACT_MAX_N = 10_000
"""Samples up to this size get scipy's exact KS p-value, larger ones the asymptotic one."""
P_VALUE_METHODS: frozenset[str] = frozenset({"ks", "chi2"})
UNSEEN = "(unseen)"
"""Label of the cell pooling categories the reference never saw."""
OTHER = "(other)"
"""Label of the cell pooling categories beyond a profile's top-k."""


@dataclass(frozen=True)
class DriftOptions:
    """How features are tested and decided (the DriftMonitor spec's fields, defaults Evidently's)."""

    method: MethodChoice = "auto"
    p_value: float = 0.05
    psi: float = 0.1
    wasserstein: float = 0.1
    jensen_shannon: float = 0.1
    correction: CorrectionMethod = "fdr"
    min_effect_size: float | None = None
    drift_share: float = 0.5
    bins: int = DEFAULT_BINS
    workers: int = 0
    """Threads testing features in parallel (numpy's sorts release the GIL); 0: min(4, CPUs)."""

    @classmethod
    def from_spec(cls, spec: DriftMonitorSpec) -> DriftOptions:
        return cls(
            method=spec.method,
            p_value=spec.thresholds.p_value,
            psi=spec.thresholds.psi,
            wasserstein=spec.thresholds.wasserstein,
            jensen_shannon=spec.thresholds.jensen_shannon,
            correction=spec.correction,
            min_effect_size=spec.min_effect_size,
            drift_share=spec.drift_share,
        )

    def threshold(self, method: Method) -> float:
        return {"ks": self.p_value, "chi2": self.p_value, "psi": self.psi, "wasserstein": self.wasserstein,
                "jensenshannon": self.jensen_shannon}[method]


# -- the tests on arrays: each equals scipy's --------------------------------------------------------


MERGE_BLOCK = 1 << 17
"""Values of each sample merged per block by the two-sample CDF walk: bounds its working memory
(about 60 bytes per value of a block) whatever the sample sizes."""


def _cdf_difference_blocks(reference: np.ndarray, current: np.ndarray,
                           block: int = MERGE_BLOCK) -> Iterator[tuple[np.ndarray, np.ndarray, float | None]]:
    """The two sorted samples merged (reference first among equal values), block by block:
    (merged values, F_ref - F_cur after each of them, the next merged value or None at the end).
    Each block takes at most `block` values from each sample, cut where the merge order says."""
    n1, n2 = reference.size, current.size
    i0 = j0 = 0
    while i0 < n1 or j0 < n2:
        i1 = min(i0 + block, n1)
        j1 = n2 if i1 == n1 else int(np.searchsorted(current, reference[i1], side="left"))
        if j1 - j0 > block:  # many current values before reference[i1]: cut on the current side
            j1 = j0 + block
            i1 = int(np.searchsorted(reference, current[j1], side="right"))
        a, b = reference[i0:i1], current[j0:j1]
        size = a.size + b.size
        position = np.searchsorted(b, a, side="left")
        position += np.arange(a.size, dtype=position.dtype)
        from_reference = np.zeros(size, dtype=np.int8)
        from_reference[position] = 1
        merged = np.empty(size, dtype=np.float64)
        merged[position] = a
        merged[from_reference == 0] = b
        seen = np.cumsum(from_reference, dtype=np.int32)  # reference values among the first k + 1
        # F_ref - F_cur = (i0 + r) / n1 - (j0 + k + 1 - r) / n2
        difference = seen * (1.0 / n1 + 1.0 / n2)
        difference += i0 / n1 - (j0 + 1) / n2
        difference -= np.arange(size, dtype=np.float64) / n2
        following = [float(v) for v, n, k in ((reference, n1, i1), (current, n2, j1)) if k < n for v in (v[k],)]
        yield merged, difference, (min(following) if following else None)
        i0, j0 = i1, j1


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> float:
    """sup |F_ref - F_cur| of two sorted finite samples (ks_2samp's statistic)."""
    result = 0.0
    for merged, difference, following in _cdf_difference_blocks(reference, current):
        if merged.size == 0:
            continue
        last_of_ties = np.append(merged[1:] != merged[:-1], following is None or following != merged[-1])
        if last_of_ties.any():
            result = max(result, float(np.abs(difference[last_of_ties]).max()))
    return result


def ks_p_values(statistics: np.ndarray, n_reference: np.ndarray, n_current: np.ndarray) -> np.ndarray:
    """ks_2samp's asymptotic two-sided p-values, for many features at once."""
    n1, n2 = np.asarray(n_reference, dtype=np.float64), np.asarray(n_current, dtype=np.float64)
    effective = np.round(n1 * n2 / (n1 + n2))
    return np.clip(scipy_stats.kstwo.sf(np.asarray(statistics, dtype=np.float64), effective), 0.0, 1.0)


def ks_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """(statistic, p-value) of the two-sided two-sample KS test: ks_2samp's, including its exact
    p-value for samples of at most 10,000 values. Inputs: finite values, any order."""
    a, b = np.sort(np.asarray(reference, dtype=np.float64)), np.sort(np.asarray(current, dtype=np.float64))
    statistic = ks_statistic(a, b)
    if max(a.size, b.size) <= KS_EXACT_MAX_N:
        return statistic, float(scipy_stats.ks_2samp(a, b).pvalue)
    return statistic, float(ks_p_values(np.array([statistic]), np.array([a.size]), np.array([b.size]))[0])


def wasserstein_sorted(reference: np.ndarray, current: np.ndarray) -> float:
    """The first Wasserstein distance of two sorted finite samples (wasserstein_distance's)."""
    total = 0.0
    for merged, difference, following in _cdf_difference_blocks(reference, current):
        if merged.size == 0:
            continue
        steps = np.diff(merged, append=merged[-1] if following is None else following)
        steps *= np.abs(difference)  # elementwise, not np.dot: BLAS threads would fight the feature threads
        total += float(steps.sum())
    return total


def normed_wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """wasserstein_distance(reference, current) / std(reference) (population std; 1 when 0)."""
    a, b = np.sort(np.asarray(reference, dtype=np.float64)), np.sort(np.asarray(current, dtype=np.float64))
    return wasserstein_sorted(a, b) / _scale(float(np.std(a)))


def _scale(std: float | None) -> float:
    return std if std is not None and std > 0 and math.isfinite(std) else 1.0


def chi2_test(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float, float]:
    """(statistic, p-value, Cramer's V) of the chi-square test of homogeneity of the 2 x k table
    (chi2_contingency(table, correction=False)); cells empty in both rows are dropped."""
    table = np.vstack([np.asarray(reference_counts, dtype=np.float64), np.asarray(current_counts, dtype=np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    total = table.sum()
    if table.shape[1] < 2 or table.sum(axis=1).min() <= 0:
        return 0.0, 1.0, 0.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / total
    statistic = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return statistic, float(scipy_stats.chi2.sf(statistic, dof)), math.sqrt(statistic / total)


def _proportions(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else counts


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Population stability index of two count vectors over the same cells."""
    r = _proportions(reference_counts)
    c = _proportions(current_counts)
    r = np.where(r == 0, PSI_EMPTY_PROPORTION, r)
    c = np.where(c == 0, PSI_EMPTY_PROPORTION, c)
    return float(np.sum((c - r) * np.log(c / r)))


def jensen_shannon(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """scipy's Jensen-Shannon distance (natural log) of two count vectors over the same cells."""
    return float(scipy_jensenshannon(_proportions(reference_counts), _proportions(current_counts)))


def adjust_p_values(p_values: Sequence[float] | np.ndarray, correction: CorrectionMethod) -> np.ndarray:
    """p-values corrected for testing them together: bonferroni, fdr (Benjamini-Hochberg adjusted
    p-values: reject at level a exactly when BH's step-up procedure does) or none. NaN stays NaN
    and does not count as a test."""
    p = np.asarray(p_values, dtype=np.float64)
    result = p.copy()
    tested = ~np.isnan(p)
    m = int(tested.sum())
    if correction == "none" or m == 0:
        return result
    values = p[tested]
    if correction == "bonferroni":
        adjusted = np.minimum(values * m, 1.0)
    elif correction == "fdr":
        order = np.argsort(values, kind="stable")
        ranked = values[order] * m / np.arange(1, m + 1)
        ranked = np.minimum.accumulate(ranked[::-1])[::-1]
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(ranked, 1.0)
    else:
        raise ValueError(f"correction must be bonferroni, fdr or none (got {correction!r})")
    result[tested] = adjusted
    return result


# -- references --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantileGrid:
    """An approximate numerical reference: the profile's quantile grid and its rank error."""

    probabilities: np.ndarray
    values: np.ndarray
    rank_error: float
    """Normalized: rankErrorBound / finite count."""

    def cdf(self, x: np.ndarray, *, left: bool = False) -> np.ndarray:
        """The reference CDF at x, linear between grid points (F(x-) with left=True)."""
        q, p = self.values, self.probabilities
        index = np.searchsorted(q, x, side="left" if left else "right")
        lower = np.clip(index - 1, 0, q.size - 1)
        upper = np.clip(index, 0, q.size - 1)
        span = q[upper] - q[lower]
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.where(span > 0, (x - q[lower]) / span, 0.0)
        value = p[lower] + fraction * (p[upper] - p[lower])
        return np.where(index <= 0, 0.0, np.where(index >= q.size, 1.0, value))

    def knots(self) -> tuple[np.ndarray, np.ndarray]:
        """The reference quantile function as a piecewise-linear curve (u, Q(u)): linear between
        grid points inside, and in the two end intervals the neighbouring interval's slope
        continued towards the min/max (clamped at them). A chord to the min/max would spread the
        end intervals' 1% over the whole range out to the most extreme value, which for skewed
        data is most of the approximation error; the continuation stays within the same band
        [q_i, q_i+1], so `wasserstein_bound` covers it."""
        p, q = self.probabilities, self.values
        if p.size < 4:
            return p, q
        lower_slope = (q[2] - q[1]) / (p[2] - p[1])
        upper_slope = (q[-2] - q[-3]) / (p[-2] - p[-3])
        u: list[float] = []
        y: list[float] = []
        start = q[1] - lower_slope * (p[1] - p[0])
        if start >= q[0] or lower_slope <= 0:
            u.append(p[0])
            y.append(max(start, q[0]))
        else:
            u += [p[0], p[1] - (q[1] - q[0]) / lower_slope]
            y += [q[0], q[0]]
        u += list(p[1:-1])
        y += list(q[1:-1])
        end = q[-2] + upper_slope * (p[-1] - p[-2])
        if end <= q[-1] or upper_slope <= 0:
            u.append(p[-1])
            y.append(min(end, q[-1]))
        else:
            u += [p[-2] + (q[-1] - q[-2]) / upper_slope, p[-1]]
            y += [q[-1], q[-1]]
        return np.asarray(u, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def quantile(self, u: np.ndarray) -> np.ndarray:
        knots_u, knots_y = self.knots()
        return np.interp(u, knots_u, knots_y)

    def wasserstein_bound(self) -> float:
        """Worst-case |W(reference, x) - W(approximation, x)| (before normalization): inside an
        interval both quantile functions lie in [q_i, q_i+1]; a monotone function differs from the
        chord by at most half the band's area, from the end-interval continuation by all of it;
        the rank error widens each band by delta on both sides."""
        p, q = self.probabilities, self.values
        areas = np.diff(q) * np.diff(p)
        if areas.size >= 3:
            inside = 0.5 * float(areas[1:-1].sum()) + float(areas[0] + areas[-1])
        else:
            inside = float(areas.sum())
        return inside + 2 * self.rank_error * float(q[-1] - q[0])


@dataclass(frozen=True)
class FeatureReference:
    """The reference of one feature: its kind and either its exact values or a profile summary."""

    name: str
    kind: FeatureKind
    count: int
    """Rows, missing values included."""
    missing: int
    values: np.ndarray | None = None
    """Numerical: the sorted finite values when exact."""
    grid: QuantileGrid | None = None
    """Numerical: the quantile grid when only a profile is known."""
    std: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    edges: np.ndarray | None = None
    """Numerical: inner edges of the equal-mass bins (`BINNING_RULE`)."""
    bin_counts: np.ndarray | None = None
    categories: list[Any] | None = None
    """Categorical: the categories, most frequent first."""
    category_counts: np.ndarray | None = None
    other_count: int = 0
    """Categorical from a profile: values beyond its top-k (pooled)."""
    complete: bool = True
    """Categorical: every category is listed (so an unlisted live value is unseen)."""
    exact: bool = True

    @property
    def size(self) -> int:
        """Non-missing values."""
        return self.count - self.missing


def _as_arrow(values: Any) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values.dictionary_decode() if pa.types.is_dictionary(values.type) else values
    array = np.asarray(values)
    if array.dtype.kind in "fiub":
        return pa.array(array, from_pandas=array.dtype.kind == "f")
    return pa.array(array.tolist() if array.dtype.kind == "O" else array, from_pandas=True)


def _is_categorical_type(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_boolean(type_) \
        or pa.types.is_fixed_size_list(type_) or pa.types.is_binary(type_) or pa.types.is_large_binary(type_)


def numeric_values(values: Any) -> tuple[np.ndarray, int]:
    """(finite float64 values, rows) of a numerical column; nulls, NaN and infinities dropped (the
    values may be a view of `values`: never modify them).
    Timestamps become epoch seconds."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        array = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(array)
        return (array if finite.all() else array[finite]), int(array.size)  # no copy when all are finite
    arrow = _as_arrow(values)
    if pa.types.is_timestamp(arrow.type) or pa.types.is_date(arrow.type):
        arrow = pc.divide(pc.cast(pc.cast(arrow, pa.timestamp("us")), pa.int64()).cast(pa.float64()), 1e6)
    floats = pc.cast(arrow.drop_null(), pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    return floats[np.isfinite(floats)], len(arrow)


def _category_values(arrow: pa.Array) -> pa.Array:
    if pa.types.is_fixed_size_list(arrow.type):
        # A oneHot vector is the index of its hot slot: read exactly as the profile read it.
        return profile_categories(arrow)
    if pa.types.is_floating(arrow.type):
        return pc.if_else(pc.is_nan(arrow), None, arrow)
    return arrow


def category_counts(values: Any) -> tuple[list[Any], np.ndarray, int]:
    """(categories most frequent first, their counts, rows) of a column; nulls (and NaN) dropped."""
    arrow = _category_values(_as_arrow(values))
    counted = pc.value_counts(arrow.drop_null())
    categories = counted.field("values").to_pylist()
    counts = counted.field("counts").to_numpy(zero_copy_only=False).astype(np.int64)
    order = sorted(range(len(categories)), key=lambda i: (-counts[i], str(categories[i])))
    return [categories[i] for i in order], counts[order], len(arrow)


def equal_mass_edges(ordered: np.ndarray, bins: int) -> np.ndarray:
    """Inner edges of `bins` equal-mass bins of sorted values: what `QuantileSketch.equal_mass_edges`
    gives for an exact sketch (the value at position floor(i n / bins), distinct, above the minimum),
    so that rows and a profile of the same rows bin alike."""
    if ordered.size == 0 or bins < 2:
        return np.empty(0, dtype=np.float64)
    positions = np.minimum((np.arange(1, bins) * ordered.size) // bins, ordered.size - 1)
    points = np.unique(ordered[positions])
    return points[points > ordered[0]]


def sorted_histogram(edges: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """`histogram_counts(edges, ordered)` for sorted finite values, in O(bins log n)."""
    cuts = np.searchsorted(ordered, np.asarray(edges, dtype=np.float64), side="left")
    return np.diff(np.concatenate(([0], cuts, [ordered.size]))).astype(np.int64)


def reference_from_values(name: str, values: Any, *, bins: int = DEFAULT_BINS) -> FeatureReference:
    """The exact reference of one feature from its rows (a numpy or arrow array)."""
    arrow_type = values.type if isinstance(values, pa.Array | pa.ChunkedArray) else None
    numpy_kind = values.dtype.kind if isinstance(values, np.ndarray) else None
    categorical = (arrow_type is not None and _is_categorical_type(arrow_type)) or numpy_kind in ("U", "S", "O", "b")
    if not categorical:
        finite, rows = numeric_values(values)
        ordered = np.sort(finite)
        if ordered.size and np.count_nonzero(ordered[1:] != ordered[:-1]) + 1 > LOW_CARDINALITY:
            edges = equal_mass_edges(ordered, bins)
            return FeatureReference(
                name=name, kind="numerical", count=rows, missing=rows - ordered.size, values=ordered,
                std=float(np.std(ordered)), minimum=float(ordered[0]), maximum=float(ordered[-1]),
                edges=edges, bin_counts=sorted_histogram(edges, ordered))
        distinct, counts = np.unique(ordered, return_counts=True)
        categories = list(distinct)
        order = np.argsort(-counts, kind="stable")
        return FeatureReference(
            name=name, kind="categorical", count=rows, missing=rows - int(counts.sum()),
            categories=[float(categories[i]) for i in order], category_counts=counts[order])
    categories_list, counts, rows = category_counts(values)
    return FeatureReference(name=name, kind="categorical", count=rows, missing=rows - int(counts.sum()),
                            categories=categories_list, category_counts=counts)


def reference_from_profile(name: str, column: ColumnProfile) -> FeatureReference:
    """The reference of one feature from its stored profile (`featureset.profile`): exact when the
    profile kept the sample or every category, approximate otherwise (see the module docstring).
    ValueError when the profile has nothing to test against."""
    missing = column.nulls
    if column.kind == "categorical" or (
        column.kind == "numeric" and column.categories is not None and column.categories.distinct_exact
        and column.categories.count_error_bound == 0 and column.categories.other_count == 0
        and len(column.categories.values) <= LOW_CARDINALITY
    ):
        summary = column.categories
        if summary is None:
            raise ValueError(f"profile of {name!r} has no category frequencies")
        numeric = column.kind == "numeric"
        complete = summary.other_count == 0 and summary.count_error_bound == 0
        return FeatureReference(
            name=name, kind="categorical", count=column.count, missing=missing,
            categories=[float(v) for v in summary.values] if numeric else list(summary.values),
            category_counts=np.asarray(summary.counts, dtype=np.int64), other_count=summary.other_count,
            complete=complete, exact=complete)
    if column.kind != "numeric" or column.numeric is None:
        raise ValueError(f"profile of {name!r} is of kind {column.kind!r}: no distribution to test against")
    summary_n = column.numeric
    infinite = summary_n.negative_infinity + summary_n.positive_infinity
    missing = column.nulls + infinite
    if summary_n.sample_values is not None and summary_n.sample_counts is not None:
        sample = np.repeat(np.asarray(summary_n.sample_values, dtype=np.float64),
                           np.asarray(summary_n.sample_counts, dtype=np.int64))
        if np.unique(sample).size <= LOW_CARDINALITY:
            return reference_from_values(name, np.concatenate([sample, np.full(missing, np.nan)]))
        edges = np.asarray(summary_n.bin_edges, dtype=np.float64)
        return FeatureReference(
            name=name, kind="numerical", count=column.count, missing=missing, values=sample,
            std=float(np.std(sample)) if sample.size else None,
            minimum=summary_n.min, maximum=summary_n.max, edges=edges, bin_counts=sorted_histogram(edges, np.sort(sample)))
    if not summary_n.quantile_values:
        return FeatureReference(name=name, kind="numerical", count=column.count, missing=column.count,
                                values=np.empty(0))
    counts = np.asarray(summary_n.bin_counts, dtype=np.int64).copy()
    # Infinities are in the end bins of the profile but are missing values for the tests here.
    counts[0] -= summary_n.negative_infinity
    counts[-1] -= summary_n.positive_infinity
    grid = QuantileGrid(
        probabilities=np.asarray(summary_n.quantile_probabilities, dtype=np.float64),
        values=np.asarray(summary_n.quantile_values, dtype=np.float64),
        rank_error=summary_n.rank_error_bound / max(summary_n.finite, 1))
    return FeatureReference(
        name=name, kind="numerical", count=column.count, missing=missing, grid=grid, std=summary_n.std,
        minimum=summary_n.min, maximum=summary_n.max, edges=np.asarray(summary_n.bin_edges, dtype=np.float64),
        bin_counts=counts, exact=False)


def references_from_profile(profile: ReferenceProfile, names: Iterable[str] | None = None, *,
                            section: Literal["columns", "features"] = "columns") -> list[FeatureReference]:
    """References of the named columns (default: every testable one) of a stored profile.
    KeyError names a column the profile does not have."""
    columns = profile.columns if section == "columns" else profile.features
    if names is None:
        names = [n for n, c in columns.items() if c.kind != "other"]
    result = []
    for name in names:
        if name not in columns:
            raise KeyError(f"{name!r} is not a {section[:-1]} of the reference profile "
                           f"(it has {', '.join(sorted(columns)) or 'none'})")
        result.append(reference_from_profile(name, columns[name]))
    return result


# -- results -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Histogram:
    """Reference and current counts over the same cells, for plots: numerical cells are
    [edges[i], edges[i+1]) (outer edges at the data's min/max), categorical ones are `labels`."""

    reference: list[int]
    current: list[int]
    edges: list[float] | None = None
    labels: list[str] | None = None


@dataclass(frozen=True)
class FeatureResult:
    """The test of one feature."""

    name: str
    kind: FeatureKind
    method: Method
    statistic: float | None
    """The test statistic (ks: D, chi2: chi-square) or distance; None when untested."""
    p_value: float | None
    """Corrected p-value (ks and chi2)."""
    raw_p_value: float | None
    threshold: float
    drifted: bool
    effect_size: float | None = None
    """ks: D, chi2: Cramer's V (what min_effect_size is compared with)."""
    min_effect_size: float | None = None
    null_fraction: float = 0.0
    """Fraction of the current window's rows without a usable value."""
    reference_null_fraction: float = 0.0
    unseen_categories: int | None = None
    reference_size: int = 0
    current_size: int = 0
    error_bound: float | None = None
    """Profile mode: worst-case error of the statistic from the profile's approximation (0: exact)."""
    note: str | None = None
    histogram: Histogram | None = None


@dataclass(frozen=True)
class DriftResult:
    """Per-feature results and the dataset-level verdict."""

    features: list[FeatureResult]
    correction: CorrectionMethod
    drift_share: float | None
    """Drifted / tested features (None when no feature was tested)."""
    drifted: bool | None
    threshold_share: float

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]


# -- the engine --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Current:
    """The current window's side of one feature."""

    rows: int
    sorted_values: np.ndarray | None = None
    categories: list[Any] | None = None
    counts: np.ndarray | None = None


def _current(reference: FeatureReference, values: Any) -> _Current:
    if values is None:
        return _Current(rows=0)
    if reference.kind == "numerical":
        finite, rows = numeric_values(values)
        return _Current(rows=rows, sorted_values=np.sort(finite))
    if reference.categories is not None and reference.categories and isinstance(reference.categories[0], float):
        finite, rows = numeric_values(values)  # low-cardinality numerical: its values are the categories
        distinct, counts = np.unique(finite, return_counts=True)
        return _Current(rows=rows, categories=[float(v) for v in distinct], counts=counts.astype(np.int64))
    categories, counts, rows = category_counts(values)
    return _Current(rows=rows, categories=categories, counts=counts)


def choose_method(reference: FeatureReference, method: MethodChoice) -> tuple[Method, str | None]:
    """The method a feature is tested with (the auto rule) and, when a forced one does not apply,
    why another was used."""
    auto: Method
    if reference.kind == "categorical":
        auto = "chi2"
    else:
        auto = "ks" if reference.size <= SMALL_REFERENCE else "wasserstein"
    if method == "auto":
        return auto, None
    if reference.kind == "categorical" and method in ("ks", "wasserstein"):
        return auto, f"{method} does not apply to a categorical feature: {auto} used"
    return method, None


def _cells(reference: FeatureReference, current: _Current) -> tuple[np.ndarray, np.ndarray, list[str], int | None]:
    """Reference and current counts over common cells, their labels, and unseen categories."""
    if reference.kind == "numerical":
        assert reference.edges is not None and reference.bin_counts is not None and current.sorted_values is not None
        labels = [f"bin {i}" for i in range(reference.edges.size + 1)]
        return reference.bin_counts, sorted_histogram(reference.edges, current.sorted_values), labels, None
    assert reference.categories is not None and reference.category_counts is not None
    assert current.categories is not None and current.counts is not None
    index = {value: i for i, value in enumerate(reference.categories)}
    listed = np.zeros(len(reference.categories), dtype=np.int64)
    unlisted_count, unlisted_distinct = 0, 0
    for value, count in zip(current.categories, current.counts, strict=True):
        position = index.get(value)
        if position is None:
            unlisted_count += int(count)
            unlisted_distinct += 1
        else:
            listed[position] = count
    labels = [str(v) for v in reference.categories]
    ref_counts = reference.category_counts
    cur_counts = listed
    if not reference.complete:
        # Unlisted live values may be in the reference's tail: compare them with it, pooled.
        ref_counts = np.append(ref_counts, reference.other_count)
        cur_counts = np.append(cur_counts, unlisted_count)
        labels.append(OTHER)
        return ref_counts, cur_counts, labels, None
    ref_counts = np.append(ref_counts, 0)
    cur_counts = np.append(cur_counts, unlisted_count)
    labels.append(UNSEEN)
    return ref_counts, cur_counts, labels, unlisted_distinct


def _grid_ks(grid: QuantileGrid, current: np.ndarray) -> float:
    """sup |F_ref - F_cur| with F_ref interpolated from the grid, checked on both sides of every
    jump of F_cur (between jumps F_cur is constant and F_ref monotone, so that is the sup)."""
    last = np.append(current[1:] != current[:-1], True)
    points = current[last]
    after = (np.flatnonzero(last) + 1) / current.size
    before = np.concatenate(([0.0], after[:-1]))
    return float(max(np.abs(after - grid.cdf(points)).max(), np.abs(before - grid.cdf(points, left=True)).max()))


def _grid_wasserstein(grid: QuantileGrid, current: np.ndarray) -> float:
    """integral over u of |Q_ref(u) - Q_cur(u)|, Q_ref linear between grid points, Q_cur a step."""
    n = current.size
    breaks = np.union1d(grid.knots()[0], np.arange(n + 1) / n)
    u0, u1 = breaks[:-1], breaks[1:]
    width = u1 - u0
    keep = width > 0
    u0, u1, width = u0[keep], u1[keep], width[keep]
    level = current[np.minimum((0.5 * (u0 + u1) * n).astype(np.int64), n - 1)]
    y0, y1 = grid.quantile(u0) - level, grid.quantile(u1) - level
    same_side = y0 * y1 >= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        crossing = (y0 * y0 + y1 * y1) / (2 * np.abs(y1 - y0))
    area = np.where(same_side, np.abs(y0 + y1) / 2, crossing)
    return float(np.sum(area * width))


def _histogram(reference: FeatureReference, current: _Current, ref_cells: np.ndarray, cur_cells: np.ndarray,
               labels: list[str]) -> Histogram:
    if reference.kind == "numerical":
        assert reference.edges is not None and current.sorted_values is not None
        lows = [v for v in (reference.minimum, current.sorted_values[0] if current.sorted_values.size else None)
                if v is not None]
        highs = [v for v in (reference.maximum, current.sorted_values[-1] if current.sorted_values.size else None)
                 if v is not None]
        inner = [float(e) for e in reference.edges]
        low = min([*lows, *inner[:1]]) if lows or inner else 0.0
        high = max([*highs, *inner[-1:]]) if highs or inner else 1.0
        return Histogram(reference=[int(c) for c in ref_cells], current=[int(c) for c in cur_cells],
                         edges=[float(low), *inner, float(high)])
    return Histogram(reference=[int(c) for c in ref_cells], current=[int(c) for c in cur_cells], labels=labels)


@dataclass(frozen=True)
class _Measured:
    method: Method
    statistic: float | None
    p_value: float | None
    effect: float | None
    error_bound: float | None
    unseen: int | None
    note: str | None
    histogram: Histogram | None
    current_size: int
    null_fraction: float


def _measure(reference: FeatureReference, values: Any, options: DriftOptions) -> _Measured:
    method, note = choose_method(reference, options.method)
    current = _current(reference, values)
    current_size = int(current.sorted_values.size if current.sorted_values is not None
                       else (current.counts.sum() if current.counts is not None else 0))
    null_fraction = 1.0 - current_size / current.rows if current.rows else 1.0
    empty = _Measured(method, None, None, None, None, None, note, None, current_size, null_fraction)
    if reference.size == 0:
        return replace(empty, note="no reference values: not tested")
    if current_size == 0:
        return replace(empty, note="all values missing in the current window")
    ref_cells, cur_cells, labels, unseen = _cells(reference, current)
    histogram = _histogram(reference, current, ref_cells, cur_cells, labels)
    statistic: float
    p_value = effect = error_bound = None
    if method in ("ks", "wasserstein"):
        cur = current.sorted_values
        assert cur is not None
        if reference.values is not None:
            if method == "ks":
                statistic, p_value = ks_test(reference.values, cur)
                effect = statistic
            else:
                statistic = wasserstein_sorted(reference.values, cur) / _scale(reference.std)
            error_bound = 0.0
        else:
            grid = reference.grid
            assert grid is not None
            if method == "ks":
                statistic = _grid_ks(grid, cur)
                error_bound = 1.0 / max(grid.probabilities.size - 1, 1) + grid.rank_error
                # Conservative: the p-value of the smallest D the exact test could have seen, so
                # the grid's resolution never makes a false alarm (at large n it would: 1% of
                # CDF resolution is far above KS's critical D).
                p_value = float(ks_p_values(np.array([max(statistic - error_bound, 0.0)]),
                                            np.array([reference.size]), np.array([cur.size]))[0])
                effect = statistic
            else:
                statistic = _grid_wasserstein(grid, cur) / _scale(reference.std)
                error_bound = grid.wasserstein_bound() / _scale(reference.std)
    else:
        if method == "chi2":
            statistic, p_value, effect = chi2_test(ref_cells, cur_cells)
        elif method == "psi":
            statistic = psi(ref_cells, cur_cells)
        else:
            statistic = jensen_shannon(ref_cells, cur_cells)
        error_bound = 0.0 if reference.exact else None
    return _Measured(method, statistic, p_value, effect, error_bound, unseen, note, histogram, current_size,
                     null_fraction)


def _workers(options: DriftOptions, features: int) -> int:
    wanted = options.workers or min(4, os.cpu_count() or 1)
    return max(1, min(wanted, features))


ReferenceSource = FeatureReference | Callable[[], FeatureReference]
"""A reference, or a function building it: built inside the worker that tests it and dropped
right after, so that a data-mode check holds one feature's sorted reference per worker, not all."""


@dataclass(frozen=True)
class _Facts:
    name: str
    kind: FeatureKind
    size: int
    missing: int
    count: int


def detect_drift(references: Sequence[ReferenceSource], current: Mapping[str, Any],
                 options: DriftOptions | None = None) -> DriftResult:
    """Tests every reference feature against its column of `current` (numpy or arrow arrays, all
    rows of the window; a missing column counts as all-missing), corrects the p-values and
    decides per feature and for the dataset. Features are tested in parallel threads."""
    options = options or DriftOptions()

    def measure(source: ReferenceSource) -> tuple[_Facts, _Measured]:
        ref = source() if callable(source) else source
        facts = _Facts(ref.name, ref.kind, ref.size, ref.missing, ref.count)
        return facts, _measure(ref, current.get(ref.name), options)

    workers = _workers(options, len(references))
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drift") as pool:
            measured = list(pool.map(measure, references))
    else:
        measured = [measure(source) for source in references]
    raw = np.array([m.p_value if m.p_value is not None else np.nan for _, m in measured], dtype=np.float64)
    corrected = adjust_p_values(raw, options.correction)
    results = []
    for (ref, m), p in zip(measured, corrected, strict=True):
        floor = options.min_effect_size
        if floor is None and options.method == "auto" and m.method == "chi2" and ref.kind == "categorical":
            floor = AUTO_CATEGORICAL_MIN_EFFECT
        if m.method not in P_VALUE_METHODS:
            floor = None
        threshold = options.threshold(m.method)
        if m.statistic is None:
            drifted = ref.size > 0 and m.current_size == 0
        elif m.method in P_VALUE_METHODS:
            drifted = bool(p < threshold) and (floor is None or (m.effect is not None and m.effect >= floor))
        else:
            drifted = bool(m.statistic >= threshold)
        results.append(FeatureResult(
            name=ref.name, kind=ref.kind, method=m.method, statistic=m.statistic,
            p_value=None if np.isnan(p) else float(p), raw_p_value=m.p_value, threshold=threshold,
            drifted=drifted, effect_size=m.effect, min_effect_size=floor, null_fraction=m.null_fraction,
            reference_null_fraction=ref.missing / ref.count if ref.count else 0.0,
            unseen_categories=m.unseen, reference_size=ref.size, current_size=m.current_size,
            error_bound=m.error_bound, note=m.note, histogram=m.histogram))
    tested = [r for r in results if r.statistic is not None or r.drifted]
    share = sum(r.drifted for r in tested) / len(tested) if tested else None
    return DriftResult(features=results, correction=options.correction, drift_share=share,
                       drifted=None if share is None else share >= options.drift_share,
                       threshold_share=options.drift_share)


def detect_drift_on_rows(reference: Mapping[str, Any], current: Mapping[str, Any],
                         options: DriftOptions | None = None, *, names: Iterable[str] | None = None) -> DriftResult:
    """Data mode: `detect_drift` against reference rows (exact), for the named columns (default:
    every reference column). Each feature's reference is built in the worker that tests it."""
    options = options or DriftOptions()
    chosen = list(names) if names is not None else list(reference)
    return detect_drift([partial(reference_from_values, name, reference[name], bins=options.bins) for name in chosen],
                        current, options)


__all__ = [
    "AUTO_CATEGORICAL_MIN_EFFECT", "BINNING_RULE", "DEFAULT_BINS", "LOW_CARDINALITY", "SMALL_REFERENCE",
    "DriftOptions", "DriftResult", "FeatureReference", "ReferenceSource", "FeatureResult", "Histogram", "QuantileGrid",
    "adjust_p_values", "category_counts", "chi2_test", "choose_method", "detect_drift", "detect_drift_on_rows",
    "jensen_shannon", "ks_p_values", "ks_statistic", "ks_test", "normed_wasserstein", "numeric_values", "psi",
    "reference_from_profile", "reference_from_values", "references_from_profile", "wasserstein_sorted",
]

