"""The FeatureSet transforms: every step's fit and apply against hand-computed values, batch ==
online for any input (hypothesis), chunked fitting == whole fitting, JSON round trips, and the
TransformInputError messages the model server turns into HTTP 400s."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kubeloop.featureset.api import Feature, Transform
from kubeloop.featureset.transforms import (
    HASH_ALGORITHM,
    FittedFeatures,
    TransformInputError,
    _online_array,
    _Problem,
    apply_batch,
    apply_online,
    apply_rows,
    fit_pipeline,
    read_column,
    stable_hash64,
    stable_hash_value,
)

PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def T(type_: str, **params: Any) -> Transform:
    return Transform(type=type_, **params)


def feature(name: str, source: str, *transforms: Transform, dtype: str | None = None) -> Feature:
    return Feature(name=name, **{"from": source}, transforms=list(transforms), dtype=dtype)


def fit_apply(values: Any, *transforms: Transform, type_: pa.DataType | None = None, dtype: str | None = None,
              apply: Any = None) -> list[Any]:
    """Fits one feature on `values` and applies it to `apply` (default: the same values),
    checking on the way that the online form gives the same values row by row."""
    table = pa.table({"x": pa.array(values, type=type_)})
    fitted = fit_pipeline([feature("f", "x", *transforms, dtype=dtype)], [table])
    target = table if apply is None else pa.table({"x": pa.array(apply, type=type_)})
    batch = apply_batch(fitted, target).column("f").to_pylist()
    online = [apply_online(fitted, row)["f"] for row in target.to_pylist()]
    assert_same(batch, online)
    return batch


def assert_same(batch: Sequence[Any], online: Sequence[Any]) -> None:
    """Identical values: bit-identical floats (so 0.0 != -0.0), None for None, never NaN."""
    assert len(batch) == len(online)
    for b, o in zip(batch, online, strict=True):
        assert not (isinstance(b, float) and math.isnan(b)), "a pipeline produced NaN"
        if isinstance(b, float) and isinstance(o, float):
            assert b == o and math.copysign(1, b) == math.copysign(1, o), (batch, online)
        else:
            assert b == o and type(b) is type(o), (batch, online)


def fitted_params(fitted: FittedFeatures, position: int = 0, index: int = 0) -> dict[str, Any]:
    return fitted.features[index].steps[position].params


# -- hand-computed expectations, step by step ------------------------------------------------------


def test_identity_reads_source_kinds_and_nan_is_null():
    assert fit_apply([1, None, 3], type_=pa.int32()) == [1, None, 3]
    assert fit_apply([1.5, float("nan"), None, float("inf")]) == [1.5, None, None, float("inf")]
    assert fit_apply(["a", None]) == ["a", None]
    assert fit_apply(pa.array(["a", "b", "a"]).dictionary_encode()) == ["a", "b", "a"]
    fitted = fit_pipeline([feature("f", "x")], [pa.table({"x": pa.array([1], pa.int16())})])
    assert fitted.output_schema.field("f").type == pa.int64()


def test_log1p_is_null_outside_its_domain_and_keeps_infinity():
    got = fit_apply([0.0, math.e - 1, -0.5, -1.0, -2.0, None, float("nan"), float("inf"), float("-inf")], T("log1p"))
    assert got == [0.0, math.log1p(math.e - 1), math.log1p(-0.5), None, None, None, None, float("inf"), None]
    assert fit_apply([0, 9], T("log1p"), type_=pa.int64()) == [0.0, math.log1p(9)]


def test_clip_bounds_values_and_infinities():
    got = fit_apply([-5.0, 0.5, 7.0, float("inf"), float("-inf"), None], T("clip", min=0, max=1))
    assert got == [0.0, 0.5, 1.0, 1.0, 0.0, None]
    assert fit_apply([-5, 7], T("clip", min=0), type_=pa.int64()) == [0.0, 7.0]
    assert fit_apply([float("-inf"), 9.0], T("clip", max=3)) == [float("-inf"), 3.0]


def test_standardize_uses_population_std_of_finite_values():
    got = fit_apply([1.0, 2.0, 3.0, 4.0, None, float("inf")], T("standardize"))
    std = math.sqrt(1.25)
    assert got == [(1 - 2.5) / std, (2 - 2.5) / std, (3 - 2.5) / std, (4 - 2.5) / std, None, float("inf")]
    table = pa.table({"x": [1.0, 2.0, 3.0, 4.0]})
    params = fitted_params(fit_pipeline([feature("f", "x", T("standardize"))], [table]))
    assert params == {"mean": 2.5, "std": std, "count": 4}


def test_standardize_degenerate_data_uses_unit_scale():
    assert fit_apply([3.0, 3.0], T("standardize")) == [0.0, 0.0]
    assert fit_apply([None, None], T("standardize"), type_=pa.float64(), apply=[None, 5.0]) == [None, 5.0]


def test_min_max_scales_to_fitted_range_and_extrapolates():
    assert fit_apply([2.0, 4.0, 6.0], T("minMax")) == [0.0, 0.5, 1.0]
    assert fit_apply([2.0, 4.0, 6.0], T("minMax"), apply=[8.0, 0.0, None]) == [1.5, -0.5, None]
    assert fit_apply([5, 5], T("minMax"), type_=pa.int64(), apply=[5, 7]) == [0.0, 2.0]


def test_bucketize_fixed_boundaries_follow_tensorflow():
    boundaries = T("bucketize", boundaries=[0, 10, 100])
    got = fit_apply([-5.0, 10000.0, 150.0, 10.0, 5.0, 100.0, None, float("-inf"), float("inf")], boundaries)
    assert got == [0, 3, 3, 2, 1, 3, None, 0, 3]


def test_bucketize_quantiles_make_equal_mass_buckets():
    values = list(range(1, 101))
    table = pa.table({"x": values})
    fitted = fit_pipeline([feature("f", "x", T("bucketize", num_buckets=4))], [table])
    assert fitted_params(fitted) == {"boundaries": [26.0, 51.0, 76.0], "rankErrorBound": 0}
    buckets = apply_batch(fitted, table).column("f").to_pylist()
    assert [buckets.count(b) for b in range(4)] == [25, 25, 25, 25]
    # Ties merge edges; an edge at the minimum would leave bucket 0 empty, so there is none.
    tied = fit_pipeline([feature("f", "x", T("bucketize", num_buckets=4))], [pa.table({"x": [1] * 50 + [2] * 50})])
    assert fitted_params(tied)["boundaries"] == [2.0]


def test_vocabulary_orders_by_count_then_value_and_maps_unseen_to_oov():
    values = ["a", "a", "a", "c", "c", "b", "b", "d", None]
    assert fit_apply(values, T("vocabulary", max_size=2), apply=["a", "b", "c", "d", "e", None]) == [0, 1, 2, 2, 2, None]
    table = pa.table({"x": values})
    fitted = fit_pipeline([feature("f", "x", T("vocabulary", min_frequency=2))], [table])
    assert fitted_params(fitted)["vocabulary"] == ["a", "b", "c"]
    assert fitted_params(fitted)["exact"] is True


def test_vocabulary_oov_buckets_hash_unseen_values():
    fitted = fit_pipeline([feature("f", "x", T("vocabulary", oov_buckets=3))], [pa.table({"x": ["a", "b"]})])
    unseen = ["kubeloop", "München", "", "zz"]
    got = apply_batch(fitted, pa.table({"x": unseen})).column("f").to_pylist()
    assert got == [2 + reference_hash(v) % 3 for v in unseen]
    assert len(set(got)) > 1


def test_vocabulary_one_hot_vectors():
    got = fit_apply(["b", "a", "b", None], T("vocabulary", output="oneHot"), apply=["a", "b", "z", None])
    assert got == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], None]
    as_ints = fit_apply(["b", "a"], T("vocabulary", output="oneHot"), dtype="int64", apply=["a", None])
    assert as_ints == [[1, 0, 0], None]  # a tie of counts: "a" before "b"
    fitted = fit_pipeline([feature("f", "x", T("vocabulary", output="oneHot"))], [pa.table({"x": ["a", "b"]})])
    assert fitted.output_schema.field("f").type == pa.list_(pa.float32(), 3)


def test_vocabulary_of_integers_and_booleans():
    assert fit_apply([7, 7, 3, None], T("vocabulary"), type_=pa.int64(), apply=[3, 7, 9, None]) == [1, 0, 2, None]
    assert fit_apply([True, True, False], T("vocabulary"), apply=[False, True, None]) == [1, 0, None]


def reference_hash(text: str) -> int:
    """The documented hash, one byte at a time (the row kernels' form): the specification the
    vectorized kernel meets; the golden values below pin it."""
    return stable_hash_value(text)


def test_hash_matches_its_documented_definition_and_golden_values():
    assert HASH_ALGORITHM == "kubeloop-poly64-fmix64-v1"
    values = ["", "a", "kubeloop", "München", "42", "x" * 1000]
    assert [int(h) for h in stable_hash64(pa.array(values))] == [reference_hash(v) for v in values]
    # Golden values pin the algorithm: a change here re-buckets every stored version.
    golden = [0xEFD01F60BA992926, 0x02CC3025925BFD66, 0x31A3F1CD6221CC6B]
    assert [int(h) for h in stable_hash64(pa.array(["", "a", "kubeloop"]))] == golden
    assert [reference_hash(v) for v in ["", "a", "kubeloop"]] == golden
    assert fit_apply(["kubeloop", None, ""], T("hash", num_buckets=1000)) == [
        reference_hash("kubeloop") % 1000, None, reference_hash("") % 1000]


def test_hash_of_integers_and_booleans_is_the_hash_of_their_text():
    assert fit_apply([42, -7], T("hash", num_buckets=97), type_=pa.int64()) == [
        reference_hash("42") % 97, reference_hash("-7") % 97]
    assert fit_apply([True, False], T("hash", num_buckets=97)) == [
        reference_hash("true") % 97, reference_hash("false") % 97]


@given(st.lists(st.one_of(st.none(), st.text(max_size=40)), max_size=30), st.integers(0, 5), st.integers(0, 5))
@settings(max_examples=200, deadline=None)
def test_vectorized_hash_equals_reference_on_any_text_and_slices(values, start, stop):
    array = pa.array(values, type=pa.string())
    sliced = array.slice(min(start, len(values)), stop)
    expected = [reference_hash(v or "") for v in sliced.to_pylist()]
    assert [int(h) for h in stable_hash64(sliced)] == expected


def test_hash_is_the_same_in_another_process_with_another_hash_seed():
    code = (
        "import pyarrow as pa; from kubeloop.featureset.transforms import stable_hash64; "
        "print(list(map(int, stable_hash64(pa.array(['a', 'kubeloop', 'München'])))))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], env={"PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True
        ).stdout
        for seed in ("1", "2")
    }
    assert outputs == {f"{[reference_hash(v) for v in ['a', 'kubeloop', 'München']]}\n"}


def test_fill_null_constant():
    assert fit_apply([1.0, None, float("nan")], T("fillNull", strategy="constant", value=0)) == [1.0, 0.0, 0.0]
    assert fit_apply(["a", None], T("fillNull", strategy="constant", string_value="missing")) == ["a", "missing"]
    assert fit_apply([True, None], T("fillNull", strategy="constant", value=0)) == [True, False]
    assert fit_apply([1, None], T("fillNull", strategy="constant", value=2), type_=pa.int64()) == [1, 2]
    # A non-integral constant turns an integer column into floats.
    assert fit_apply([1, None], T("fillNull", strategy="constant", value=2.5), type_=pa.int64()) == [1.0, 2.5]


def test_fill_null_mean_median_most_frequent():
    assert fit_apply([1, 2, None, 4], T("fillNull", strategy="mean"), type_=pa.int64()) == [1.0, 2.0, 7 / 3, 4.0]
    # The lower median (inverted CDF), an actual value: integer columns stay integer.
    assert fit_apply([1, 2, 3, 4, None], T("fillNull", strategy="median"), type_=pa.int64()) == [1, 2, 3, 4, 2]
    assert fit_apply([5.0, 1.0, 3.0, None], T("fillNull", strategy="median")) == [5.0, 1.0, 3.0, 3.0]
    # Ties go to the smallest value, as scikit-learn's SimpleImputer.
    assert fit_apply(["b", "a", "b", "a", None], T("fillNull", strategy="mostFrequent")) == ["b", "a", "b", "a", "a"]
    assert fit_apply([None, None], T("fillNull", strategy="mean"), type_=pa.float64()) == [0.0, 0.0]
    assert fit_apply([None], T("fillNull", strategy="mostFrequent"), type_=pa.string()) == [""]


def test_fill_null_then_standardize_fits_on_filled_values():
    table = pa.table({"x": [1.0, None, 3.0]})
    fitted = fit_pipeline([feature("f", "x", T("fillNull", strategy="mean"), T("standardize"))], [table])
    assert fitted_params(fitted, 0) == {"value": 2.0}
    assert fitted_params(fitted, 1) == {"mean": 2.0, "std": math.sqrt(2 / 3), "count": 3}


def test_datetime_parts_of_timestamps_in_utc():
    paris = timezone(timedelta(hours=1))
    stamps = [datetime(2024, 3, 4, 0, 30, tzinfo=paris), datetime(2024, 12, 31, 23, 59, tzinfo=UTC), None]
    column = pa.array(stamps, type=pa.timestamp("us", tz="Europe/Paris"))
    assert fit_apply(column, T("datetime", part="hour")) == [23, 23, None]
    assert fit_apply(column, T("datetime", part="day")) == [3, 31, None]
    assert fit_apply(column, T("datetime", part="dayOfWeek")) == [6, 1, None]  # Sunday, Tuesday
    assert fit_apply(column, T("datetime", part="dayOfYear")) == [63, 366, None]
    assert fit_apply(column, T("datetime", part="year")) == [2024, 2024, None]
    naive = pa.array([datetime(2024, 1, 1, 5, 7)], type=pa.timestamp("ns"))
    assert fit_apply(naive, T("datetime", part="minute")) == [7]
    assert fit_apply(pa.array([date_days(2024, 2, 29)], pa.date32()), T("datetime", part="month")) == [2]


def date_days(year: int, month: int, day: int) -> int:
    return (datetime(year, month, day) - datetime(1970, 1, 1)).days


def test_datetime_parts_of_iso_strings():
    strings = [
        "2024-01-01",
        "2024-01-01T10:11:12",
        "2024-01-01 10:11",
        "2024-01-01T23:30:00-02:00",
        "2024-01-01T10:11:12.123456789Z",
        "2024-01-01T01:00:00+0530",
        None,
    ]
    assert fit_apply(strings, T("datetime", part="hour")) == [0, 10, 10, 1, 10, 19, None]
    assert fit_apply(strings, T("datetime", part="day")) == [1, 1, 1, 2, 1, 31, None]


def test_datetime_parts_of_epoch_seconds():
    assert fit_apply([0, 86_400 * 365 + 3600, None], T("datetime", part="year"), type_=pa.int64()) == [1970, 1971, None]
    assert fit_apply([-0.5, 59.999999], T("datetime", part="minute")) == [59, 0]
    # Outside years 1-9999 (and non-finite) is out of range: null, not an error.
    out_of_range = [1e12, -1e12, float("inf"), float("nan")]
    assert fit_apply(out_of_range, T("datetime", part="year")) == [None, None, None, None]
    assert fit_apply([2**62], T("datetime", part="year"), type_=pa.int64()) == [None]


def test_malformed_iso_strings_raise_in_both_forms():
    fitted = fit_pipeline([feature("when", "ts", T("datetime", part="hour"))], [pa.table({"ts": ["2024-01-01"]})])
    for bad in ["yesterday", "2024-13-01", "2024-01-01T25:00"]:
        with pytest.raises(TransformInputError, match=r'feature "when", column "ts": not an ISO 8601 timestamp'):
            apply_batch(fitted, pa.table({"ts": ["2024-01-01", bad]}))
        with pytest.raises(TransformInputError, match=r"not an ISO 8601 timestamp: '" + bad):
            apply_online(fitted, {"ts": bad})


def test_casts_to_dtype():
    assert fit_apply([1.9, -1.9, 3e10, float("inf"), None], dtype="int32") == [1, -1, None, None, None]
    assert fit_apply([1.9, -1.9, 3e10], dtype="int64") == [1, -1, 30_000_000_000]
    assert fit_apply([2**40, -3], type_=pa.int64(), dtype="int32") == [None, -3]
    assert fit_apply([0, 2, None], type_=pa.int64(), dtype="bool") == [False, True, None]
    assert fit_apply([True, False], dtype="float64") == [1.0, 0.0]
    assert fit_apply([1.0, 0.1, float("inf")], dtype="string") == ["1", "0.1", "inf"]
    assert fit_apply([0.1], dtype="float32") == [float(np.float32(0.1))]
    assert fit_apply([1e300], dtype="float32") == [float("inf")]
    assert fit_apply([3], T("hash", num_buckets=5), type_=pa.int64(), dtype="string") == [str(reference_hash("3") % 5)]


@pytest.mark.parametrize(
    ("values", "transforms", "dtype", "problem"),
    [
        (["a"], [T("log1p")], None, "log1p needs numbers, but its input is string"),
        ([1.5], [T("vocabulary")], None, "vocabulary needs integer, string or boolean input, but its input is float"),
        (["a"], [T("fillNull", strategy="mean")], None, "fillNull mean needs numbers, but its input is string"),
        (["a"], [T("fillNull", strategy="constant", value=1)], None, "fillNull of strings needs stringValue"),
        ([True], [T("fillNull", strategy="constant", value=2)], None, "needs value 0 or 1"),
        (["a"], [T("vocabulary", output="oneHot"), T("identity")], None, "oneHot must be the last step"),
        (["a"], [], "float32", "dtype float32 cannot hold string values"),
        ([True], [T("datetime", part="hour")], None, "datetime needs timestamps"),
    ],
)
def test_transforms_that_do_not_take_the_column_kind_fail_the_fit(values, transforms, dtype, problem):
    with pytest.raises(TransformInputError, match=r'^feature "f", column "x": ') as error:
        fit_pipeline([feature("f", "x", *transforms, dtype=dtype)], [pa.table({"x": values})])
    assert problem in str(error.value)


# -- bad input online and in batch ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def served() -> FittedFeatures:
    table = pa.table({"amount": [1.0, 2.0], "age": [30, 40], "city": ["a", "b"], "vip": [True, False]})
    return fit_pipeline(
        [
            feature("amount_std", "amount", T("standardize")),
            feature("age_bucket", "age", T("bucketize", boundaries=[18, 65])),
            feature("city_index", "city", T("vocabulary")),
            feature("vip_flag", "vip", dtype="int64"),
        ],
        [table],
    )


GOOD_ROW = {"amount": 1.5, "age": 33, "city": "b", "vip": True}


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("amount", "12.5", 'feature "amount_std", column "amount": expected a number, got string (\'12.5\')'),
        ("amount", True, 'feature "amount_std", column "amount": expected a number, got boolean (True)'),
        ("amount", [1.0], 'feature "amount_std", column "amount": expected a number, got list'),
        ("age", 33.5, 'feature "age_bucket", column "age": expected an integer, got 33.5'),
        ("age", 2**70, 'feature "age_bucket", column "age": 1180591620717411303424 is outside the int64 range'),
        ("city", 7, "feature \"city_index\", column \"city\": expected a string, got integer (7)"),
        ("vip", "yes", 'feature "vip_flag", column "vip": expected a boolean, got string (\'yes\')'),
    ],
)
def test_online_wrong_types_raise_naming_feature_column_and_problem(served, column, value, message):
    with pytest.raises(TransformInputError) as error:
        apply_online(served, {**GOOD_ROW, column: value})
    assert str(error.value) == message
    assert error.value.column == column


def test_online_missing_column_raises(served):
    row = {k: v for k, v in GOOD_ROW.items() if k != "city"}
    with pytest.raises(TransformInputError, match=r'^feature "city_index", column "city": the column is missing'):
        apply_online(served, row)


def test_online_accepts_json_friendly_equivalents(served):
    expected = apply_online(served, GOOD_ROW)
    assert apply_online(served, {**GOOD_ROW, "amount": 1.5, "age": 33.0, "extra": "ignored"}) == expected
    assert apply_online(served, {**GOOD_ROW, "amount": np.float32(1.5), "age": np.int8(33)}) == expected
    assert apply_online(served, {"amount": None, "age": None, "city": None, "vip": None}) == {
        "amount_std": None, "age_bucket": None, "city_index": None, "vip_flag": None}
    assert apply_online(served, {**GOOD_ROW, "amount": float("nan")})["amount_std"] is None


def test_batch_wrong_column_types_raise_like_online(served):
    table = pa.table({"amount": ["1.0"], "age": [1], "city": ["a"], "vip": [True]})
    with pytest.raises(TransformInputError, match=r'column "amount": expected a number, got string'):
        apply_batch(served, table)
    with pytest.raises(TransformInputError, match=r'column "age": expected an integer, got 1.5'):
        apply_batch(served, pa.table({"amount": [1.0], "age": [1.5], "city": ["a"], "vip": [True]}))
    with pytest.raises(TransformInputError, match=r'"vip": the column is missing'):
        apply_batch(served, pa.table({"amount": [1.0], "age": [1], "city": ["a"]}))
    # Integral floats and other integer widths are read as the fitted integer column.
    ok = apply_batch(served, pa.table({"amount": pa.array([1], pa.int8()), "age": [40.0], "city": ["a"], "vip": [True]}))
    assert ok.column("age_bucket").to_pylist() == [1]


def test_online_timestamps_accept_datetimes_iso_strings_and_epoch_seconds():
    table = pa.table({"ts": pa.array([datetime(2024, 5, 6, 7, 8, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))})
    fitted = fit_pipeline([feature("hour", "ts", T("datetime", part="hour")), feature("raw", "ts")], [table])
    expected = {"hour": 7, "raw": datetime(2024, 5, 6, 7, 8, tzinfo=UTC)}
    for value in [
        datetime(2024, 5, 6, 7, 8, tzinfo=UTC),
        datetime(2024, 5, 6, 7, 8),  # naive: UTC
        datetime(2024, 5, 6, 9, 8, tzinfo=timezone(timedelta(hours=2))),
        "2024-05-06T07:08:00Z",
        "2024-05-06 09:08+02:00",
        1714979280,
        1714979280.0,
        np.datetime64("2024-05-06T07:08:00"),
    ]:
        assert apply_online(fitted, {"ts": value}) == expected, value
    with pytest.raises(TransformInputError, match=r'column "ts": expected a timestamp, an ISO 8601 string or epoch'):
        apply_online(fitted, {"ts": True})


def test_empty_tables_give_empty_features(served):
    empty = pa.table({"amount": pa.array([], pa.float64()), "age": pa.array([], pa.int64()),
                      "city": pa.array([], pa.string()), "vip": pa.array([], pa.bool_())})
    result = apply_batch(served, empty)
    assert result.num_rows == 0 and result.schema == served.output_schema
    hashed = fit_pipeline([feature("h", "c", T("hash", num_buckets=3))], [pa.table({"c": pa.array([], pa.string())})])
    assert apply_batch(hashed, pa.table({"c": pa.array([], pa.string())})).num_rows == 0


def test_read_column_names_the_column():
    assert read_column(pa.chunked_array([[1.0, float("nan")]]), "float").to_pylist() == [1.0, None]
    with pytest.raises(TransformInputError, match=r'^column "c": expected an integer, got string'):
        read_column(pa.array(["x"]), "integer", "c")


# -- fitting in bounded memory -----------------------------------------------------------------------


def chunked(table: pa.Table, size: int) -> list[pa.Table]:
    return [table.slice(i, size) for i in range(0, table.num_rows, size)]


def test_fit_on_chunks_equals_fit_on_the_whole():
    rng = np.random.default_rng(7)
    n = 2_000
    amount = rng.lognormal(3, 1, n)
    amount[rng.random(n) < 0.1] = np.nan
    table = pa.table({
        "amount": amount,
        "city": pa.array(rng.choice(["a", "b", "c", "d", None], n)),
        "age": rng.integers(18, 90, n),
    })
    features = [
        feature("a_std", "amount", T("fillNull", strategy="mean"), T("standardize")),
        feature("a_mm", "amount", T("minMax")),
        feature("a_b", "amount", T("bucketize", num_buckets=10)),
        feature("a_med", "amount", T("fillNull", strategy="median")),
        feature("city", "city", T("vocabulary", max_size=3)),
        feature("city_f", "city", T("fillNull", strategy="mostFrequent")),
        feature("age", "age", T("log1p"), T("bucketize", num_buckets=5)),
    ]
    whole = fit_pipeline(features, [table])
    parts = fit_pipeline(features, chunked(table, 333))
    for w, p in zip(whole.features, parts.features, strict=True):
        for ws, ps in zip(w.steps, p.steps, strict=True):
            if ws.transform.type == "standardize" or ws.transform.strategy == "mean":
                # Means and variances agree up to floating-point rounding.
                for key in ws.params:
                    assert ps.params[key] == pytest.approx(ws.params[key], rel=1e-12, abs=1e-12)
            else:
                # Counts, min/max, vocabularies, and the sketch while exact (2000 <= k): equal.
                assert ps.params == ws.params


def test_fit_on_chunks_within_the_sketch_bound_beyond_k():
    rng = np.random.default_rng(3)
    values = rng.normal(size=20_000)
    table = pa.table({"x": values})
    fitted = fit_pipeline([feature("f", "x", T("bucketize", num_buckets=8))], chunked(table, 1_000), sketch_k=64)
    params = fitted_params(fitted)
    assert params["rankErrorBound"] > 0
    ordered = np.sort(values)
    for i, edge in enumerate(params["boundaries"], start=1):
        below = np.searchsorted(ordered, edge, side="left")
        assert abs(below - i * values.size / 8) <= params["rankErrorBound"] + 1


def test_vocabulary_beyond_capacity_keeps_the_heavy_hitters():
    rng = np.random.default_rng(5)
    heavy = ["h1"] * 3000 + ["h2"] * 2000 + ["h3"] * 1000
    noise = [f"n{i}" for i in rng.integers(0, 5000, 4000)]
    table = pa.table({"x": rng.permutation(np.array(heavy + noise, dtype=object))})
    fitted = fit_pipeline([feature("f", "x", T("vocabulary", max_size=3))], chunked(table, 500), category_capacity=50)
    assert fitted_params(fitted)["vocabulary"] == ["h1", "h2", "h3"]
    assert fitted_params(fitted)["exact"] is False


class Source:
    """A re-iterable source, as the materializer's reader: each iteration reads again."""

    def __init__(self, table: pa.Table, size: int) -> None:
        self.table, self.size, self.reads = table, size, 0

    def __iter__(self) -> Iterator[pa.Table]:
        self.reads += 1
        return iter(chunked(self.table, self.size))


def test_each_chain_of_fitted_steps_needs_a_pass_and_a_re_iterable_source():
    table = pa.table({"x": [1.0, None, 3.0, 10.0]})
    features = [feature("f", "x", T("fillNull", strategy="median"), T("log1p"), T("standardize"), T("minMax"))]
    source = Source(table, 2)
    fitted = fit_pipeline(features, source)
    assert source.reads == 3
    assert fitted == fit_pipeline(features, chunked(table, 2))  # deterministic: same chunks, same bytes
    with pytest.raises(ValueError, match="needs 3 passes"):
        fit_pipeline(features, iter(chunked(table, 2)))
    # One fitted step per feature: a one-shot iterator is enough.
    fit_pipeline([feature("g", "x", T("standardize"))], iter(chunked(table, 2)))


def test_source_kinds_come_from_schema_or_first_chunk():
    chunks = [pa.table({"x": pa.nulls(2)}), pa.table({"x": [1.5, 2.5]})]
    with pytest.raises(TransformInputError, match="entirely null in the first chunk"):
        fit_pipeline([feature("f", "x")], chunks)
    fitted = fit_pipeline([feature("f", "x", T("minMax"))], chunks, schema=pa.schema([("x", pa.float64())]))
    assert fitted_params(fitted) == {"min": 1.5, "max": 2.5, "count": 2}
    with pytest.raises(TransformInputError, match="no data to learn"):
        fit_pipeline([feature("f", "x")], [])
    empty = fit_pipeline([feature("f", "x", T("standardize"))], [], schema=pa.schema([("x", pa.int64())]))
    assert fitted_params(empty) == {"mean": 0.0, "std": 1.0, "count": 0}
    with pytest.raises(TransformInputError, match='column "x": expected a number, got string'):
        fit_pipeline([feature("f", "x", T("standardize"))], [pa.table({"x": [1.0]}), pa.table({"x": ["a"]})])


# -- JSON ----------------------------------------------------------------------------------------------


def test_fitted_features_json_round_trip_and_canonical_form(served):
    text = served.to_json()
    assert FittedFeatures.from_json(text) == served
    assert FittedFeatures.from_json(text.encode()).to_json() == text
    data = json.loads(text)
    assert data["schemaVersion"] == 1 and data["hashAlgorithm"] == HASH_ALGORITHM
    assert text == json.dumps(data, sort_keys=True, separators=(",", ":"))
    reloaded = FittedFeatures.from_json(text)
    assert apply_online(reloaded, GOOD_ROW) == apply_online(served, GOOD_ROW)


def test_fitted_features_refuse_other_versions(served):
    data = served.to_dict()
    with pytest.raises(ValueError, match="schemaVersion 2"):
        FittedFeatures.from_dict({**data, "schemaVersion": 2})
    with pytest.raises(ValueError, match="hash"):
        FittedFeatures.from_dict({**data, "hashAlgorithm": "python-hash"})


# -- batch == online, for any input (hypothesis) ------------------------------------------------------

NASTY_FLOATS = [0.0, -0.0, -1.0, -1.0000001, 1e308, -1e308, 5e-324, 2.0**53 + 1, float("inf"), float("-inf"), float("nan")]
NASTY_INTS = [0, -1, 2**63 - 1, -(2**63), 2**31, 2**53 + 1]

SOURCE_VALUES: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "float": (pa.float64(), st.one_of(st.none(), st.floats(), st.sampled_from(NASTY_FLOATS), st.integers(-3, 3).map(float))),
    "integer": (pa.int64(), st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.sampled_from(NASTY_INTS), st.integers(-3, 3))),
    "boolean": (pa.bool_(), st.one_of(st.none(), st.booleans())),
    "string": (pa.string(), st.one_of(st.none(), st.text(max_size=6), st.sampled_from(["a", "b", "c", "München", ""]))),
    "timestamp": (
        pa.timestamp("us", tz="UTC"),
        st.one_of(
            st.none(),
            st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
        ),
    ),
}

ISO_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%S+02:00"]
iso_strings = st.one_of(
    st.none(),
    st.builds(
        lambda moment, fmt: moment.strftime(fmt),
        st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30)),
        st.sampled_from(ISO_FORMATS),
    ),
    st.sampled_from(["not a date", "2024-02-30", "2024-01-01T99:00"]),
)


def numeric_steps(kind: str) -> list[Transform]:
    steps = [
        T("identity"), T("log1p"), T("clip", min=-1, max=5), T("clip", min=0), T("standardize"), T("minMax"),
        T("bucketize", boundaries=[-1, 0, 2.5]), T("bucketize", num_buckets=3),
        T("fillNull", strategy="constant", value=0), T("fillNull", strategy="constant", value=1.5),
        T("fillNull", strategy="mean"), T("fillNull", strategy="median"), T("fillNull", strategy="mostFrequent"),
        T("datetime", part="dayOfYear"),
    ]
    if kind == "integer":
        steps += categorical_steps(kind)
    return steps


def categorical_steps(kind: str) -> list[Transform]:
    fill = {"string": T("fillNull", strategy="constant", string_value="?"),
            "boolean": T("fillNull", strategy="constant", value=1),
            "integer": T("fillNull", strategy="constant", value=-1)}[kind]
    return [
        T("identity"), T("vocabulary"), T("vocabulary", max_size=2, oov_buckets=3), T("vocabulary", min_frequency=2),
        T("vocabulary", output="oneHot", oov_buckets=2), T("hash", num_buckets=7),
        T("fillNull", strategy="mostFrequent"), fill,
    ]


def next_kind(transform: Transform, kind: str) -> str:
    """The kind rules of the module docstring, restated independently."""
    if transform.type in ("log1p", "clip", "standardize", "minMax"):
        return "float"
    if transform.type in ("bucketize", "hash", "datetime"):
        return "integer"
    if transform.type == "vocabulary":
        return "vector" if transform.output == "oneHot" else "integer"
    if transform.type == "fillNull" and (
        transform.strategy == "mean" or (kind == "integer" and transform.value == 1.5)
    ):
        return "float"
    return kind


def candidate_steps(kind: str, iso: bool) -> list[Transform]:
    if kind in ("float", "integer"):
        return numeric_steps(kind)
    if kind == "timestamp":
        return [T("identity"), T("datetime", part="hour"), T("datetime", part="dayOfWeek")]
    steps = categorical_steps(kind)
    if kind == "string" and iso:
        steps += [T("datetime", part="minute"), T("datetime", part="month")]
    return steps


DTYPES_FOR = {
    "float": [None, "float32", "float64", "int32", "int64", "bool", "string"],
    "integer": [None, "float32", "float64", "int32", "int64", "bool", "string"],
    "boolean": [None, "float32", "int32", "bool", "string"],
    "string": [None, "string"],
    "timestamp": [None, "string"],
    "vector": [None, "float32", "float64", "int32", "int64", "bool"],
}


@st.composite
def pipelines(draw: st.DrawFn) -> tuple[pa.Table, list[Feature], int]:
    source = draw(st.sampled_from([*SOURCE_VALUES, "iso"]))
    iso = source == "iso"
    type_, values = (pa.string(), iso_strings) if iso else SOURCE_VALUES[source]
    rows = draw(st.lists(values, min_size=1, max_size=12))
    table = pa.table({"x": pa.array(rows, type=type_)})
    kind = "string" if iso else source
    features = []
    for index in range(draw(st.integers(1, 3))):
        transforms, current = [], kind
        for _ in range(draw(st.integers(0, 3))):
            if current == "vector":
                break
            step = draw(st.sampled_from(candidate_steps(current, iso and current == "string")))
            transforms.append(step)
            current = next_kind(step, current)
        dtype = draw(st.sampled_from(DTYPES_FOR[current]))
        features.append(feature(f"f{index}", "x", *transforms, dtype=dtype))
    return table, features, draw(st.integers(1, len(rows)))


@given(pipelines())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_batch_and_online_agree_for_any_input_and_pipeline(case):
    table, features, chunk = case
    try:
        fitted = fit_pipeline(features, chunked(table, chunk))
    except TransformInputError as error:
        # Only malformed ISO strings may stop a fit of these (kind-correct) pipelines.
        assert "ISO 8601" in str(error)
        event("fit refused a malformed ISO string")
        return
    assert FittedFeatures.from_json(fitted.to_json()) == fitted
    online_errors = 0
    online_rows = []
    for row in table.to_pylist():
        try:
            online_rows.append(apply_online(fitted, row))
        except TransformInputError:
            online_errors += 1
    try:
        batch = apply_batch(fitted, table)
    except TransformInputError:
        assert online_errors > 0  # the batch fails exactly when some row is malformed
        event("batch and online refused a malformed row")
        return
    assert online_errors == 0
    event(f"compared {fitted.features[0].source_kind} sources")
    assert batch.schema == fitted.output_schema
    for name in batch.column_names:
        assert_same(batch.column(name).to_pylist(), [row[name] for row in online_rows])
    if fitted.rowable:
        # The row kernels took these rows themselves (apply_online falls back to the columns
        # only where they do not): what the model server runs for small requests.
        computed = apply_rows(fitted, table.to_pylist())
        assert computed is not None
        event("the row kernels computed the rows")
        for index, name in enumerate(batch.column_names):
            assert_same(batch.column(name).to_pylist(), [values[index] for values in computed[1]])
        for column in {f.from_ for f in features}:
            assert_same(read_column(table.column(column), fitted.source_columns[column]).to_pylist(),
                        [sources[column] for sources in computed[0]])


JSON_VALUES = st.one_of(
    st.none(), st.floats(), st.sampled_from(NASTY_FLOATS), st.integers(-(2**70), 2**70), st.sampled_from(NASTY_INTS),
    st.integers(-3, 3), st.integers(-3, 3).map(float), st.booleans(), st.text(max_size=4), st.sampled_from(["de", "us"]),
)
JSON_SOURCES = pa.table({
    "f": pa.array([1.5, -2.0, None, 8.0], pa.float64()), "i": pa.array([1, 2, 2, None], pa.int64()),
    "b": pa.array([True, None, False, True]), "s": pa.array(["de", "us", None, "de"]),
})
JSON_FITTED = fit_pipeline([
    feature("f_std", "f", T("fillNull", strategy="mean"), T("standardize"), dtype="float32"),
    feature("f_clip", "f", T("clip", min=0, max=5), T("log1p")),
    feature("f_bucket", "f", T("bucketize", boundaries=[-1, 0, 2.5]), dtype="int32"),
    feature("i_minmax", "i", T("minMax"), dtype="int64"),
    feature("i_vocab", "i", T("vocabulary", output="oneHot", oov_buckets=2)),
    feature("i_fill", "i", T("fillNull", strategy="constant", value=1.5), dtype="bool"),
    feature("b_hash", "b", T("fillNull", strategy="constant", value=1), T("hash", num_buckets=5)),
    feature("b_id", "b", dtype="float64"),
    feature("s_vocab", "s", T("vocabulary", oov_buckets=3)),
    feature("s_hash", "s", T("hash", num_buckets=11)),
], [JSON_SOURCES])


def columns_online(fitted: FittedFeatures, row: dict[str, Any]) -> dict[str, Any]:
    """The column kernels on a one-row table read from a request row (the batch form of apply_online)."""
    table = pa.table({column: _online_array(row[column], kind) for column, kind in fitted.source_columns.items()})
    result = apply_batch(fitted, table)
    return {name: result.column(name)[0].as_py() for name in result.column_names}


@given(st.sampled_from(JSON_SOURCES.column_names), JSON_VALUES)
@settings(max_examples=600, deadline=None)
def test_row_kernels_read_json_values_as_the_column_kernels_do(column, value):
    """Any JSON value in any column: the row kernels give the column kernels' features, or leave the
    row to them (an unusual type, a value out of range, one the columns refuse with an error)."""
    row = {**{"f": 2.0, "i": 2, "b": False, "s": "us"}, column: value}
    try:
        expected = columns_online(JSON_FITTED, row)
    except (TransformInputError, _Problem):
        assert apply_rows(JSON_FITTED, [row]) is None
        event("refused")
        return
    computed = apply_rows(JSON_FITTED, [row])
    exact = all(value is None or type(value) is {"f": float, "i": int, "b": bool, "s": str}[column]
                for column, value in row.items()) and not (type(row["i"]) is int and not -(2**63) <= row["i"] < 2**63)
    if exact:
        assert computed is not None  # values of their columns' own types always take the row kernels
    if computed is None:
        event("left to the column kernels")
        return
    event("computed by the row kernels")
    for index, name in enumerate(expected):
        assert_same([expected[name]], [computed[1][0][index]])


@given(st.lists(st.one_of(st.none(), st.floats(), st.sampled_from(NASTY_FLOATS)), min_size=1, max_size=40),
       st.integers(1, 40))
@PROPERTY
def test_fit_on_chunks_equals_whole_for_any_floats(values, size):
    table = pa.table({"x": pa.array(values, type=pa.float64())})
    features = [
        feature("mm", "x", T("minMax")),
        feature("b", "x", T("bucketize", num_buckets=4)),
        feature("med", "x", T("fillNull", strategy="median")),
        feature("v", "x", T("bucketize", boundaries=[0]), T("vocabulary", max_size=1)),
        feature("s", "x", T("standardize")),
    ]
    whole, parts = fit_pipeline(features, [table]), fit_pipeline(features, chunked(table, size))
    for w, p in zip(whole.features, parts.features, strict=True):
        if w.name == "s":
            # Means agree up to rounding, whose size is relative to the sum of magnitudes (a
            # mean of 1e308 and -9.99e307 cancels), not to the mean itself.
            magnitude = sum(abs(v) for v in values if v is not None and math.isfinite(v))
            assert p.steps[0].params["count"] == w.steps[0].params["count"]
            # Below the smallest normal float every operation rounds to a subnormal step, so
            # differences there are rounding too (values=[5e-324, 0.0] gave 5e-324 vs 0.0).
            tolerance = max(1e-12 * magnitude, sys.float_info.min)
            assert p.steps[0].params["mean"] == pytest.approx(w.steps[0].params["mean"], rel=1e-12, abs=tolerance)
        else:
            assert p == w


def test_pod_modules_import_only_numpy_pyarrow_scipy_stdlib_and_the_featureset_api():
    import ast
    from pathlib import Path

    import kubeloop.featureset as package

    allowed_kubeloop = {"kubeloop.featureset.api", "kubeloop.featureset.sketch", "kubeloop.featureset.transforms"}
    for module in ("transforms", "profile", "sketch"):
        tree = ast.parse((Path(package.__file__).parent / f"{module}.py").read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                assert root in {"numpy", "pyarrow", "scipy", "__future__"} | set(sys.stdlib_module_names) or (
                    name in allowed_kubeloop
                ), f"{module}.py imports {name}"


def test_median_fill_of_an_int64_column_near_its_limit_stays_in_range():
    """Found by hypothesis: the sketch's float64 median of 2**63 - 512 rounds to 2**63."""
    from kubeloop.featureset.api import Feature, Transform
    from kubeloop.featureset.transforms import apply_batch, apply_online, fit_pipeline

    table = pa.table({"x": pa.array([None, 2**63 - 512], pa.int64())})
    features = [Feature(name="f0", from_="x", transforms=[Transform(type="fillNull", strategy="median")])]
    fitted = fit_pipeline(features, [table])
    filled = apply_batch(fitted, table).column("f0").to_pylist()
    assert filled == [2**63 - 1, 2**63 - 512]
    assert apply_online(fitted, {"x": None}) == {"f0": 2**63 - 1}
