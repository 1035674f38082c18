"""The reference profile and the mergeable summaries under it: correctness on known
distributions, the sketch's self-reported error bound on hostile orders, chunk and merge
consistency, the shared binning rule, and the JSON schema."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeloop.featureset.api import Feature, Transform
from kubeloop.featureset.profile import (
    BINNING_RULE,
    PROFILE_SCHEMA_VERSION,
    ProfileBuilder,
    ProfileOptions,
    ReferenceProfile,
    build_profile,
    histogram_counts,
)
from kubeloop.featureset.sketch import Moments, QuantileSketch, ValueCounter
from kubeloop.featureset.transforms import apply_batch, fit_pipeline

PROPERTY = settings(max_examples=80, deadline=None)


def chunked(table: pa.Table, size: int) -> list[pa.Table]:
    return [table.slice(i, size) for i in range(0, table.num_rows, size)]


def true_rank_below(ordered: np.ndarray, value: float) -> int:
    return int(np.searchsorted(ordered, value, side="left"))


# -- the quantile sketch ----------------------------------------------------------------------------


def test_sketch_is_exact_up_to_k_values():
    rng = np.random.default_rng(0)
    values = rng.normal(size=500)
    sketch = QuantileSketch(k=512)
    for part in np.array_split(values, 7):
        sketch.update(part)
    assert sketch.exact and sketch.rank_error_bound == 0
    probabilities = np.linspace(0, 1, 41)
    assert np.array_equal(sketch.quantiles(probabilities), np.quantile(values, probabilities, method="inverted_cdf"))
    items, weights = sketch.distinct_items()
    assert np.array_equal(items, np.sort(values)) and set(weights) == {1}
    edges = [-1.0, 0.0, 0.5]
    assert list(sketch.count_below(edges)) == [int((values < e).sum()) for e in edges]


@pytest.mark.parametrize("order", ["sorted", "reversed", "random", "ties", "sawtooth"])
def test_sketch_error_stays_within_its_reported_bound_for_any_order(order):
    rng = np.random.default_rng(1)
    n, k = 40_000, 64
    values = {
        "sorted": np.arange(n, dtype=float),
        "reversed": np.arange(n, dtype=float)[::-1],
        "random": rng.normal(size=n),
        "ties": rng.integers(0, 7, n).astype(float),
        "sawtooth": np.tile(np.arange(1000, dtype=float), n // 1000),
    }[order]
    sketch = QuantileSketch(k=k)
    for part in np.array_split(values, 37):
        sketch.update(part)
    bound = sketch.rank_error_bound
    # The bound is at most (floor(log2(N/k)) + 1) * N / k, and the actual error never exceeds it.
    assert 0 < bound <= (math.floor(math.log2(n / k)) + 1) * n / k
    ordered = np.sort(values)
    probes = np.quantile(values, np.linspace(0, 1, 101))
    estimated = sketch.count_below(probes)
    for probe, estimate in zip(probes, estimated, strict=True):
        assert abs(int(estimate) - true_rank_below(ordered, probe)) <= bound
    for p, q in zip(np.linspace(0, 1, 21), sketch.quantiles(np.linspace(0, 1, 21)), strict=True):
        # True rank interval of the answer [#<q, #<=q] comes within bound of the target p * n.
        low, high = true_rank_below(ordered, q), int(np.searchsorted(ordered, q, side="right"))
        assert low - bound <= p * n <= high + bound
    assert sketch.quantiles([0, 1]).tolist() == [values.min(), values.max()]
    assert sketch.sorted_view()[1][-1] == n  # total weight is exact


def test_sketch_merge_equals_a_sketch_of_everything_within_the_bounds():
    rng = np.random.default_rng(2)
    a, b = rng.exponential(size=30_000), rng.exponential(size=10_000) + 3
    left, right = QuantileSketch(k=128), QuantileSketch(k=128)
    left.update(a)
    right.update(b)
    left.merge(right)
    both = np.sort(np.concatenate((a, b)))
    assert left.count == both.size and left.min == both[0] and left.max == both[-1]
    for probe in np.quantile(both, np.linspace(0.05, 0.95, 19)):
        assert abs(int(left.count_below([probe])[0]) - true_rank_below(both, probe)) <= left.rank_error_bound


def test_sketch_is_deterministic():
    values = np.random.default_rng(3).normal(size=10_000)
    first, second = QuantileSketch(k=32), QuantileSketch(k=32)
    for sketch in (first, second):
        for part in np.array_split(values, 9):
            sketch.update(part)
    assert np.array_equal(first.sorted_view()[0], second.sorted_view()[0])
    assert first.rank_error_bound == second.rank_error_bound


def test_moments_merge_and_overflow_safety():
    rng = np.random.default_rng(4)
    values = rng.normal(1e9, 1.0, 10_000)
    merged = Moments()
    for part in np.array_split(values, 13):
        merged.update(part)
    assert merged.count == values.size and merged.min == values.min() and merged.max == values.max()
    assert merged.mean == pytest.approx(values.mean(), rel=1e-15)
    assert merged.std == pytest.approx(values.std(), rel=1e-9)  # no cancellation at 1e9
    huge = Moments()
    huge.update(np.array([1.7e308, 1.7e308]))
    assert huge.mean == 1.7e308


@given(st.lists(st.integers(0, 30), max_size=300), st.integers(1, 12), st.integers(1, 50))
@PROPERTY
def test_value_counter_misra_gries_bound(values, capacity, size):
    counter = ValueCounter(pa.int64(), capacity)
    for start in range(0, len(values), size):
        part = ValueCounter(pa.int64(), capacity)
        part.update(pa.array(values[start : start + size], type=pa.int64()))
        counter.merge(part)
    truth = {v: values.count(v) for v in set(values)}
    tracked, counts = counter.most_common()
    reported = dict(zip(tracked.to_pylist(), counts.tolist(), strict=True))
    assert counter.total == len(values) and counter.tracked <= capacity
    assert counter.error_bound <= len(values) / (capacity + 1)
    for value, true_count in truth.items():
        assert true_count - counter.error_bound <= reported.get(value, 0) <= true_count
    if len(truth) <= capacity:
        assert counter.exact and reported == truth


# -- profiles of known distributions ------------------------------------------------------------------


def test_numeric_profile_of_a_normal_distribution():
    rng = np.random.default_rng(10)
    n = 100_000
    values = rng.normal(5.0, 2.0, n)
    values[:1000] = np.nan
    values[1000:1010] = np.inf
    values[1010:1015] = -np.inf
    table = pa.table({"x": values})
    options = ProfileOptions(sketch_k=256, bins=10)
    profile = build_profile(chunked(table, 7_000), options=options).features["x"]
    assert profile.kind == "numeric" and profile.dtype == "double"
    assert (profile.count, profile.nulls) == (n, 1000)
    numeric = profile.numeric
    assert numeric is not None
    finite = values[np.isfinite(values)]
    assert (numeric.finite, numeric.positive_infinity, numeric.negative_infinity) == (finite.size, 10, 5)
    assert (numeric.min, numeric.max) == (finite.min(), finite.max())
    assert numeric.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert numeric.std == pytest.approx(finite.std(), rel=1e-9)
    assert numeric.mean == pytest.approx(5.0, abs=0.05) and numeric.std == pytest.approx(2.0, abs=0.05)
    bound = numeric.rank_error_bound
    assert 0 < bound <= 0.05 * finite.size and numeric.sample_values is None
    ordered = np.sort(finite)
    for p, q in zip(numeric.quantile_probabilities, numeric.quantile_values, strict=True):
        low, high = true_rank_below(ordered, q), int(np.searchsorted(ordered, q, side="right"))
        assert low - bound <= p * finite.size <= high + bound
    # Histogram: equal-mass bins, each within twice the bound of the exact count with these edges.
    assert len(numeric.bin_edges) == 9 and len(numeric.bin_counts) == 10
    exact = histogram_counts(numeric.bin_edges, values)
    assert sum(numeric.bin_counts) == exact.sum() == n - 1000
    assert exact[0] >= 5 and exact[-1] >= 10  # the infinities are in the end bins
    for estimated, true in zip(numeric.bin_counts, exact, strict=True):
        assert abs(estimated - true) <= 2 * bound
        assert true == pytest.approx((n - 1000) / 10, rel=0.1)


def test_small_reference_profile_is_exact_and_carries_the_sample():
    values = [3.0, 1.0, 2.0, 2.0, None, 10.0, 4.0, 4.0, 4.0]
    profile = build_profile([pa.table({"x": values})], options=ProfileOptions(bins=4, quantiles=4)).features["x"]
    numeric = profile.numeric
    assert numeric is not None and numeric.rank_error_bound == 0
    present = np.array([v for v in values if v is not None])
    assert numeric.quantile_values == list(np.quantile(present, [0, 0.25, 0.5, 0.75, 1], method="inverted_cdf"))
    assert numeric.sample_values == [1.0, 2.0, 3.0, 4.0, 10.0] and numeric.sample_counts == [1, 2, 1, 3, 1]
    assert numeric.bin_counts == list(histogram_counts(numeric.bin_edges, present))
    assert numeric.bin_edges == [2.0, 4.0]  # split points at 2/8, 4/8, 6/8 are 2, 4, 4: ties merge


def test_categorical_profile_top_k_and_other():
    values = ["a"] * 50 + ["b"] * 30 + ["c"] * 15 + ["d"] * 4 + ["e"] + [None] * 7
    profile = build_profile([pa.table({"s": values})], options=ProfileOptions(top_k=2)).features["s"]
    assert profile.kind == "categorical" and profile.numeric is None
    categories = profile.categories
    assert categories is not None
    assert (profile.count, profile.nulls) == (107, 7)
    assert (categories.values, categories.counts, categories.other_count) == (["a", "b"], [50, 30], 20)
    assert (categories.distinct, categories.distinct_exact, categories.count_error_bound) == (5, True, 0)
    live = pa.array(["a", "z", None, "b", "b", "c"])
    assert categories.counts_of(live).tolist() == [1, 2, 2]  # a, b, other (z and c)


def test_booleans_and_low_cardinality_integers_get_category_frequencies():
    rng = np.random.default_rng(11)
    table = pa.table({
        "flag": rng.random(1000) < 0.25,
        "few": rng.integers(0, 4, 1000),
        "many": rng.integers(0, 10_000, 1000),
    })
    profile = build_profile(chunked(table, 300), options=ProfileOptions(low_cardinality=10))
    flag = profile.features["flag"].categories
    assert flag is not None and flag.values == [False, True]
    assert flag.counts == [int((~table.column("flag").to_numpy()).sum()), int(table.column("flag").to_numpy().sum())]
    few = profile.features["few"]
    assert few.kind == "numeric" and few.numeric is not None and few.categories is not None
    assert sorted(few.categories.values) == [0, 1, 2, 3] and sum(few.categories.counts) == 1000
    assert profile.features["many"].categories is None


def test_timestamps_are_profiled_as_epoch_seconds():
    stamps = [datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC), None]
    profile = build_profile([pa.table({"t": pa.array(stamps, pa.timestamp("ms", tz="UTC"))})]).features["t"]
    assert profile.kind == "numeric" and profile.nulls == 1
    assert profile.numeric is not None
    assert (profile.numeric.min, profile.numeric.max) == (1704067200.0, 1704153600.0)


def test_empty_and_all_null_columns_serialize():
    table = pa.table({"x": pa.array([None, None], pa.float64()), "n": pa.nulls(2), "l": pa.array([[1], None])})
    profile = build_profile([table])
    x = profile.features["x"]
    assert x.numeric is not None and x.numeric.bin_counts == [0] and x.numeric.min is None
    assert (profile.features["n"].kind, profile.features["n"].nulls) == ("other", 2)
    assert (profile.features["l"].kind, profile.features["l"].nulls) == ("other", 1)
    assert ReferenceProfile.from_json(profile.to_json()) == profile


# -- chunks and merges ---------------------------------------------------------------------------------


def mixed_table(seed: int, n: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 3.0, n)
    x[rng.random(n) < 0.05] = np.nan
    return pa.table({
        "x": x,
        "i": rng.integers(0, 6, n),
        "s": pa.array(rng.choice(["red", "green", "blue", None], n, p=[0.5, 0.3, 0.15, 0.05])),
    })


def test_chunked_and_merged_profiles_agree_with_the_whole():
    table = mixed_table(12, 30_000)
    options = ProfileOptions(sketch_k=512)
    whole = build_profile([table], options=options)
    in_chunks = build_profile(chunked(table, 4_096), options=options)
    left, right = ProfileBuilder(options), ProfileBuilder(options)
    for chunk in chunked(table.slice(0, 11_000), 3_000):
        left.update(chunk)
    for chunk in chunked(table.slice(11_000), 5_000):
        right.update(chunk)
    left.merge(right)
    merged = left.result()
    ordered = np.sort(np.array([v for v in table.column("x").to_pylist() if v is not None and not math.isnan(v)]))
    for profile in (in_chunks, merged):
        assert profile.rows == whole.rows == 30_000
        for name in ("i", "s"):
            # Exact summaries are exactly equal however the data was split.
            assert profile.features[name].categories == whole.features[name].categories
            assert profile.features[name].nulls == whole.features[name].nulls
        x, w = profile.features["x"].numeric, whole.features["x"].numeric
        assert x is not None and w is not None
        assert (x.finite, x.min, x.max, profile.features["x"].nulls) == (w.finite, w.min, w.max, whole.features["x"].nulls)
        assert x.mean == pytest.approx(w.mean, rel=1e-12) and x.std == pytest.approx(w.std, rel=1e-12)
        for p, q in zip(x.quantile_probabilities, x.quantile_values, strict=True):
            low, high = true_rank_below(ordered, q), int(np.searchsorted(ordered, q, side="right"))
            assert low - x.rank_error_bound <= p * ordered.size <= high + x.rank_error_bound
        assert sum(x.bin_counts) == sum(w.bin_counts) == ordered.size


def test_builders_with_other_options_do_not_merge():
    with pytest.raises(ValueError, match="different options"):
        ProfileBuilder(ProfileOptions(bins=5)).merge(ProfileBuilder(ProfileOptions(bins=6)))


def test_a_column_that_changes_kind_between_chunks_is_refused():
    builder = ProfileBuilder()
    builder.update(pa.table({"x": [1.0]}))
    with pytest.raises(ValueError, match="changes from double to string"):
        builder.update(pa.table({"x": ["a"]}))


# -- the binning rule is the bucketize rule -------------------------------------------------------------


def test_histogram_bins_follow_the_bucketize_rule():
    edges = [0.0, 10.0, 100.0]
    values = np.array([-5, 0, 5, 10, 99.9, 100, 1e9, -np.inf, np.inf, np.nan])
    assert histogram_counts(edges, values).tolist() == [2, 2, 2, 3]
    feature = Feature(name="b", **{"from": "x"}, transforms=[Transform(type="bucketize", boundaries=edges)])
    table = pa.table({"x": values})
    fitted = fit_pipeline([feature], [table])
    buckets = apply_batch(fitted, table).column("b").to_numpy(zero_copy_only=False)
    buckets = buckets[~np.isnan(buckets)].astype(int)
    assert np.bincount(buckets, minlength=4).tolist() == histogram_counts(edges, values).tolist()
    assert "edges[i-1] <= x < edges[i]" in BINNING_RULE


# -- profiles of a fitted FeatureSet --------------------------------------------------------------------


def test_profile_of_features_and_source_columns():
    table = mixed_table(13, 5_000).append_column(
        "when", pa.array(np.arange(5_000) * 3600, pa.int64())
    )
    features = [
        Feature(name="x_std", **{"from": "x"}, transforms=[Transform(type="fillNull", strategy="median"),
                                                         Transform(type="standardize")], dtype="float32"),
        Feature(name="colour", **{"from": "s"}, transforms=[Transform(type="vocabulary", output="oneHot")]),
        Feature(name="hour", **{"from": "when"}, transforms=[Transform(type="datetime", part="hour")]),
    ]
    fitted = fit_pipeline(features, chunked(table, 1_000))
    profile = build_profile(chunked(table, 1_000), fitted)
    assert set(profile.features) == {"x_std", "colour", "hour"}
    assert set(profile.columns) == {"x", "s", "when"}
    x_std = profile.features["x_std"]
    assert x_std.nulls == 0 and x_std.dtype == "float"
    assert x_std.numeric is not None and x_std.numeric.mean == pytest.approx(0.0, abs=1e-6)
    colour = profile.features["colour"].categories
    assert colour is not None and profile.features["colour"].kind == "categorical"
    # The oneHot vector is profiled by its hot slot: vocabulary order red, green, blue, then OOV.
    s = table.column("s").to_pylist()
    assert colour.values == [0, 1, 2] and colour.counts == [s.count("red"), s.count("green"), s.count("blue")]
    assert profile.features["colour"].nulls == s.count(None)
    hour = profile.features["hour"]
    assert hour.categories is not None and sorted(hour.categories.values) == list(range(24))
    assert profile.columns["x"].nulls == sum(1 for v in table.column("x").to_pylist() if v is None or math.isnan(v))


# -- JSON -----------------------------------------------------------------------------------------------


def test_profile_json_round_trip_and_schema():
    profile = build_profile(chunked(mixed_table(14, 3_000), 1_000))
    text = profile.to_json()
    assert ReferenceProfile.from_json(text) == profile
    data = json.loads(text)
    assert data["schemaVersion"] == PROFILE_SCHEMA_VERSION and data["kind"] == "kubeloop.dev/ReferenceProfile"
    assert data["binning"] == BINNING_RULE and data["options"]["bins"] == 20
    x = data["features"]["x"]
    assert set(x) == {"kind", "dtype", "count", "nulls", "numeric", "categories"}
    assert set(x["numeric"]) == {
        "finite", "negativeInfinity", "positiveInfinity", "min", "max", "mean", "std",
        "quantiles", "histogram", "rankErrorBound", "sample"}
    assert len(x["numeric"]["histogram"]["counts"]) == len(x["numeric"]["histogram"]["edges"]) + 1
    assert set(data["features"]["s"]["categories"]) == {
        "values", "counts", "otherCount", "distinct", "distinctExact", "countErrorBound"}
    with pytest.raises(ValueError, match="schemaVersion"):
        ReferenceProfile.from_dict({**data, "schemaVersion": 99})
