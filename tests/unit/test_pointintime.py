"""Point-in-time joins: against a brute-force reference on random data (hypothesis), and
hand-written cases with explicit expected rows for each rule of the contract (as of,
inclusive; TTL, inclusive; last row wins ties; nulls never match; label rows unchanged)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubeloop.featureset.api import FeatureSetSpec
from kubeloop.featureset.pointintime import (
    FeatureIndex,
    _sort_with_order,
    point_in_time_join,
    point_in_time_join_batches,
)

NS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}

# -- the reference: the definition, row by row ---------------------------------------------


def instants(column: pa.ChunkedArray) -> list[int | None]:
    """Instants in nanoseconds for timestamps (the UTC instant Arrow stores, whatever the
    zone), the values themselves for integers."""
    if pa.types.is_timestamp(column.type):
        scale = NS_PER_UNIT[column.type.unit]
        return [None if v is None else v * scale for v in column.cast(pa.int64()).to_pylist()]
    return column.to_pylist()


def reference_rows(
    labels: pa.Table,
    features: pa.Table,
    entities: list[str],
    label_timestamp: str,
    feature_timestamp: str,
    ttl: int | None,
) -> list[int | None]:
    """For each label row, the index of the feature row it must get: same entity (no null
    part), feature time <= label time, the latest such time, the last row among equal times,
    and none if that row is more than `ttl` (same units as `instants`) older than the label."""
    label_keys = list(zip(*(labels[e].to_pylist() for e in entities), strict=True))
    feature_keys = list(zip(*(features[e].to_pylist() for e in entities), strict=True))
    label_times, feature_times = instants(labels[label_timestamp]), instants(features[feature_timestamp])
    chosen: list[int | None] = []
    for key, t in zip(label_keys, label_times, strict=True):
        best = None
        if t is not None and None not in key:
            for i, (fkey, ft) in enumerate(zip(feature_keys, feature_times, strict=True)):
                if None in fkey or ft is None or fkey != key or ft > t:
                    continue
                if best is None or ft >= feature_times[best]:
                    best = i
        if best is not None and ttl is not None and t - feature_times[best] > ttl:
            best = None
        chosen.append(best)
    return chosen


def expected_table(labels: pa.Table, features: pa.Table, rows: list[int | None], columns: list[str]) -> pa.Table:
    indices = pa.array(rows, type=pa.int64())
    result = labels
    for name in columns:
        result = result.append_column(name, features[name].take(indices))
    return result


def ttl_nanoseconds(ttl: timedelta | int | None) -> int | None:
    if isinstance(ttl, timedelta):
        return ttl // timedelta(microseconds=1) * 1000
    return ttl


# -- random scenarios -----------------------------------------------------------------------

KEY_KINDS = {
    # entity column types (features, labels) and a key value per entity number
    "int": ([pa.int64()], [pa.int32()], lambda i: (i * 7 - 3,)),
    "string": ([pa.string()], [pa.large_string()], lambda i: (f"e{i}",)),
    "int+string": ([pa.int16(), pa.string()], [pa.int64(), pa.string()], lambda i: (i % 2, f"k{i // 2}")),
}


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """Small tables where ties, TTL boundaries, unit boundaries, nulls and missing entities
    are all likely: times on a coarse grid of 13 ticks, jittered by the finer unit."""
    key_kind = draw(st.sampled_from(sorted(KEY_KINDS)))
    feature_key_types, label_key_types, key_of = KEY_KINDS[key_kind]
    entity_names = [f"key{j}" for j in range(len(feature_key_types))]
    n_entities = draw(st.integers(1, 4))
    time_kind = draw(st.sampled_from(["timestamp", "timestamp", "integer", "wide"]))

    if time_kind == "timestamp":
        feature_unit, label_unit = draw(st.sampled_from(list(NS_PER_UNIT))), draw(st.sampled_from(list(NS_PER_UNIT)))
        coarse = max(NS_PER_UNIT[feature_unit], NS_PER_UNIT[label_unit])
        zones = st.sampled_from(["UTC", "Europe/Paris", "Asia/Kolkata"])
        zoned = draw(st.booleans())
        feature_type = pa.timestamp(feature_unit, tz=draw(zones) if zoned else None)
        label_type = pa.timestamp(label_unit, tz=draw(zones) if zoned else None)
        origin = 1_700_000_000 * 1_000_000_000  # ns, 2023-11-14

        def time_value(unit: str, tick: int, jitter: int) -> int:
            per_tick = coarse // NS_PER_UNIT[unit]
            finer = min(jitter, per_tick - 1) if jitter >= 0 else per_tick - 1
            return origin // NS_PER_UNIT[unit] + tick * per_tick + (finer if per_tick > 1 else 0)

        ttl = draw(st.none() | st.builds(
            lambda k, extra: timedelta(microseconds=k * coarse // 1000) + extra,
            st.integers(0, 5), st.sampled_from([timedelta(0), timedelta(microseconds=1)]),
        ))
        if coarse < 1000 and ttl is not None:  # a timedelta cannot be finer than a microsecond
            ttl = timedelta(microseconds=draw(st.integers(0, 3)))
    else:
        feature_type, label_type = pa.int64(), draw(st.sampled_from([pa.int64(), pa.int32()]))
        if time_kind == "wide":
            label_type = pa.int64()
        # "wide": the time span times the entity count overflows int64 (rank positions).
        step = 2**59 if time_kind == "wide" else 1

        def time_value(unit: str, tick: int, jitter: int) -> int:
            return (tick - 6) * step + (max(jitter, 0) if time_kind == "wide" else 0)

        ttl = draw(st.none() | st.integers(0, 5).map(lambda k: k * step))
        feature_unit = label_unit = ""

    def rows(max_size: int, entity_pool: int) -> list[tuple[Any, ...]]:
        return draw(st.lists(st.tuples(
            st.integers(0, entity_pool),          # entity number (== pool: a null key part)
            st.integers(-1, 13),                  # tick (13: after every feature; -1: null time)
            st.sampled_from([0, 0, 1, -1]),       # jitter in the finer unit (-1: the last one)
        ), max_size=max_size))

    feature_rows = rows(24, n_entities)
    # Labels may name entity n_entities + 1, which no feature row has.
    label_rows = rows(16, n_entities + 1)

    def table(spec: list[tuple[Any, ...]], key_types: list[pa.DataType], time_type: pa.DataType,
              time_name: str, unit: str) -> dict[str, pa.Array]:
        columns: dict[str, pa.Array] = {}
        for j, name in enumerate(entity_names):
            values = [None if e == n_entities else key_of(e)[j] for e, _, _ in spec]
            columns[name] = pa.array(values, type=key_types[j])
        times = [None if tick < 0 else time_value(unit, tick, jitter) for _, tick, jitter in spec]
        columns[time_name] = pa.array(times, type=pa.int64()).cast(time_type)
        return columns

    feature_columns = table(feature_rows, feature_key_types, feature_type, "feature_time", feature_unit)
    feature_columns["row"] = pa.array(range(len(feature_rows)), type=pa.int64())
    feature_columns["tag"] = pa.array([f"t{i}" if i % 3 else None for i in range(len(feature_rows))])
    feature_columns["score"] = pa.array([i / 2 if i % 4 else None for i in range(len(feature_rows))], pa.float32())
    feature_columns["flag"] = pa.array([i % 3 == 1 for i in range(len(feature_rows))])
    feature_columns["small"] = pa.array([i % 200 for i in range(len(feature_rows))], pa.uint8())
    features = pa.table(feature_columns)
    chunk = draw(st.integers(1, 8))
    features = pa.Table.from_batches(features.to_batches(max_chunksize=chunk), schema=features.schema)

    label_columns = table(label_rows, label_key_types, label_type, "event_time", label_unit)
    label_columns["label"] = pa.array([i % 2 == 0 for i in range(len(label_rows))])
    labels = pa.table(label_columns)
    return {"labels": labels, "features": features, "entities": entity_names, "ttl": ttl}


FEATURE_COLUMNS = ["row", "tag", "score", "flag", "small", "feature_time"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_join_equals_the_brute_force_reference(scenario: dict[str, Any]) -> None:
    labels, features, entities, ttl = (scenario[k] for k in ("labels", "features", "entities", "ttl"))
    result = point_in_time_join(
        labels, features, entities=entities, label_timestamp="event_time", feature_timestamp="feature_time",
        ttl=ttl, feature_columns=FEATURE_COLUMNS,
    )
    rows = reference_rows(labels, features, entities, "event_time", "feature_time", ttl_nanoseconds(ttl))
    assert result["row"].to_pylist() == rows
    assert result.equals(expected_table(labels, features, rows, FEATURE_COLUMNS))

    # The contract stated directly: never from the future, never older than the TTL.
    label_times, matched_times = instants(labels["event_time"]), instants(result["feature_time"])
    limit = ttl_nanoseconds(ttl)
    for t_label, t_feature in zip(label_times, matched_times, strict=True):
        if t_feature is not None:
            assert t_feature <= t_label
            assert limit is None or t_label - t_feature <= limit


@settings(max_examples=100, deadline=None)
@given(scenarios(), st.integers(1, 5))
def test_chunked_labels_give_the_same_rows_as_one_join(scenario: dict[str, Any], chunk: int) -> None:
    labels, features, entities, ttl = (scenario[k] for k in ("labels", "features", "entities", "ttl"))
    keywords: dict[str, Any] = {
        "entities": entities, "label_timestamp": "event_time", "feature_timestamp": "feature_time", "ttl": ttl,
    }
    whole = point_in_time_join(labels, features, **keywords)
    parts = list(point_in_time_join_batches(labels.to_batches(max_chunksize=chunk), features, **keywords))
    assert len(parts) == len(labels.to_batches(max_chunksize=chunk))
    if parts:
        assert pa.concat_tables(parts).equals(whole)


# -- the sort kernel ------------------------------------------------------------------------

int64s = st.integers(-(2**63), 2**63 - 1)
clustered = st.tuples(st.integers(-3, 3), st.integers(0, 40)).map(lambda p: p[0] * 2**61 + p[1])


@settings(max_examples=300, deadline=None)
@given(st.lists(int64s | clustered, max_size=300) | st.lists(clustered, min_size=2, max_size=300))
def test_sort_with_order_is_a_stable_argsort(values: list[int]) -> None:
    array = np.array(values, dtype=np.int64)
    order, ordered = _sort_with_order(array)
    expected = np.argsort(array, kind="stable")
    np.testing.assert_array_equal(order, expected)
    np.testing.assert_array_equal(ordered, array[expected])


def test_truncated_sort_keys_are_refined_against_the_reference() -> None:
    """Entity-time keys spanning ~2**62 with a thousand rows do not fit in 64 bits with
    their row numbers: the sort truncates them and must re-sort the runs it broke (times
    cluster within a few hundred units, so truncated keys tie all the time)."""
    rng = np.random.default_rng(7)
    n_features, n_labels = 1000, 300
    times = rng.integers(0, 4, n_features) * 2**58 + rng.integers(0, 400, n_features)
    features = pa.table({
        "id": pa.array(rng.integers(0, 3, n_features)),
        "t": pa.array(times),
        "row": pa.array(np.arange(n_features)),
    })
    labels = pa.table({
        "id": pa.array(rng.integers(0, 4, n_labels)),
        "t": pa.array(rng.integers(0, 4, n_labels) * 2**58 + rng.integers(-50, 450, n_labels)),
    })
    result = point_in_time_join(
        labels, features.rename_columns(["id", "ft", "row"]), entities=["id"], label_timestamp="t",
        feature_timestamp="ft", ttl=60,
    )
    rows = reference_rows(labels, features.rename_columns(["id", "ft", "row"]), ["id"], "t", "ft", 60)
    assert result["row"].to_pylist() == rows
    assert sum(r is not None for r in rows) > 100  # the case is not vacuous


# -- hand-written cases ---------------------------------------------------------------------


def at(seconds: int) -> datetime:
    return datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


def customers(times: list[int], values: list[str], ids: list[int | None] | None = None) -> pa.Table:
    return pa.table({
        "customer_id": pa.array(ids if ids is not None else [1] * len(times), pa.int64()),
        "ts": pa.array([at(t) for t in times], pa.timestamp("us", tz="UTC")),
        "spend": pa.array(values),
    })


def label_rows(ids: list[int | None], times: list[int | None]) -> pa.Table:
    return pa.table({
        "customer_id": pa.array(ids, pa.int64()),
        "event_time": pa.array([None if t is None else at(t) for t in times], pa.timestamp("us", tz="UTC")),
        "is_fraud": pa.array([i % 2 == 0 for i in range(len(ids))]),
    })


def join(labels: pa.Table, features: pa.Table, **keywords: Any) -> pa.Table:
    keywords.setdefault("entities", ["customer_id"])
    return point_in_time_join(labels, features, label_timestamp="event_time", feature_timestamp="ts", **keywords)


def test_each_label_gets_the_latest_feature_at_or_before_it() -> None:
    features = customers([20, 10, 30], ["b", "a", "c"])  # unsorted on purpose
    labels = label_rows([1, 1, 1, 1, 1, 2], [25, 5, 10, 15, 40, 15])
    result = join(labels, features)
    assert result["spend"].to_pylist() == ["b", None, "a", "a", "c", None]
    # The label table comes back unchanged, in its order, with the features after it.
    assert result.column_names == ["customer_id", "event_time", "is_fraud", "spend"]
    assert result.select(labels.column_names).equals(labels)


def test_ttl_boundary_is_inclusive() -> None:
    features = customers([100], ["x"])
    labels = label_rows([1, 1, 1], [100, 130, 131])
    assert join(labels, features, ttl=timedelta(seconds=30))["spend"].to_pylist() == ["x", "x", None]
    # One microsecond (the columns' unit) past the TTL is too old.
    labels = pa.table({
        "customer_id": [1, 1],
        "event_time": pa.array([at(130), at(130) + timedelta(microseconds=1)], pa.timestamp("us", tz="UTC")),
    })
    assert join(labels, features, ttl=timedelta(seconds=30))["spend"].to_pylist() == ["x", None]


def test_ttl_accepts_the_featureset_duration_string() -> None:
    features = customers([0], ["x"])
    labels = label_rows([1, 1], [86_400 * 30, 86_400 * 30 + 1])
    assert join(labels, features, ttl="30d")["spend"].to_pylist() == ["x", None]
    assert join(labels, features, ttl=timedelta(days=30)).equals(join(labels, features, ttl="30d"))


def test_a_stale_latest_row_is_not_replaced_by_an_even_older_one() -> None:
    features = customers([0, 50], ["old", "stale"])
    labels = label_rows([1], [100])
    assert join(labels, features, ttl=timedelta(seconds=40))["spend"].to_pylist() == [None]


def test_ties_go_to_the_last_feature_row_in_table_order() -> None:
    features = customers([10, 10, 5, 10], ["first", "second", "older", "last"])
    labels = label_rows([1, 1], [10, 7])
    assert join(labels, features)["spend"].to_pylist() == ["last", "older"]
    # The same when the feature table arrives in several chunks.
    chunked = pa.Table.from_batches(features.to_batches(max_chunksize=1))
    assert join(labels, chunked)["spend"].to_pylist() == ["last", "older"]


def test_null_keys_and_null_timestamps_never_match() -> None:
    features = customers([10, 20, 30], ["a", "null-id", "b"], ids=[1, None, 1])
    features = features.set_column(1, "ts", pa.array([at(10), at(20), None], pa.timestamp("us", tz="UTC")))
    labels = label_rows([1, None, 1], [25, 25, None])
    # The feature row with a null timestamp (the "latest" one) is never used.
    assert join(labels, features)["spend"].to_pylist() == ["a", None, None]


def test_multi_column_string_and_integer_keys() -> None:
    features = pa.table({
        "country": ["fr", "de", "fr", "de"],
        "user": pa.array([1, 1, 2, 1], pa.int32()),
        "ts": pa.array([at(0), at(0), at(0), at(5)], pa.timestamp("s", tz="UTC")),
        "spend": [1.0, 2.0, 3.0, 4.0],
    })
    labels = pa.table({
        "country": pa.array(["de", "fr", "fr", "it", None, "de"], pa.large_string()),
        "user": pa.array([1, 1, 2, 1, 1, 1], pa.int64()),
        "event_time": pa.array([at(1), at(1), at(1), at(1), at(1), at(9)], pa.timestamp("s", tz="UTC")),
    })
    result = join(labels, features, entities=["country", "user"])
    assert result["spend"].to_pylist() == [2.0, 1.0, 3.0, None, None, 4.0]


def test_dictionary_encoded_keys_match_plain_ones() -> None:
    features = pa.table({
        "customer_id": pa.array(["a", "b"]).dictionary_encode(),
        "ts": pa.array([at(0), at(0)], pa.timestamp("ms", tz="UTC")),
        "spend": [1, 2],
    })
    labels = pa.table({"customer_id": ["b", "a", "c"], "event_time": pa.array([at(1)] * 3, pa.timestamp("ms", tz="UTC"))})
    assert join(labels, features)["spend"].to_pylist() == [2, 1, None]


def test_time_zones_are_compared_as_instants() -> None:
    paris, kolkata = ZoneInfo("Europe/Paris"), ZoneInfo("Asia/Kolkata")
    # 10:00 in Paris (winter, UTC+1) is 09:00 UTC, 14:30 in Kolkata (UTC+5:30).
    features = pa.table({
        "customer_id": [1],
        "ts": pa.array([datetime(2024, 3, 1, 10, 0, tzinfo=paris)], pa.timestamp("us", tz="Europe/Paris")),
        "spend": ["x"],
    })
    labels = pa.table({
        "customer_id": [1, 1, 1],
        "event_time": pa.array(
            [datetime(2024, 3, 1, 14, 30, tzinfo=kolkata), datetime(2024, 3, 1, 14, 29, 59, tzinfo=kolkata),
             datetime(2024, 3, 1, 9, 0, 1, tzinfo=UTC)],
            pa.timestamp("s", tz="Asia/Kolkata"),
        ),
    })
    assert join(labels, features)["spend"].to_pylist() == ["x", None, "x"]


def test_naive_and_zone_aware_timestamps_do_not_mix() -> None:
    features = customers([0], ["x"])
    labels = pa.table({"customer_id": [1], "event_time": pa.array([datetime(2024, 1, 2)], pa.timestamp("us"))})
    with pytest.raises(TypeError, match="naive timestamps.*zone-aware timestamps"):
        join(labels, features)


def test_units_are_compared_in_the_finer_one() -> None:
    second = 1_000_000_000
    features = pa.table({"customer_id": [1], "ts": pa.array([10], pa.timestamp("s")), "spend": ["x"]})
    labels = pa.table({
        "customer_id": [1, 1, 1, 1],
        "event_time": pa.array([10 * second - 1, 10 * second, 15 * second, 15 * second + 1], pa.timestamp("ns")),
    })
    assert join(labels, features, ttl=timedelta(seconds=5))["spend"].to_pylist() == [None, "x", "x", None]
    # Features finer than labels: a feature at 10.5 s is not visible to a label at 10 s.
    features = pa.table({"customer_id": [1], "ts": pa.array([10 * second + second // 2], pa.timestamp("ns")),
                         "spend": ["x"]})
    labels = pa.table({"customer_id": [1, 1], "event_time": pa.array([10, 11], pa.timestamp("s"))})
    assert join(labels, features)["spend"].to_pylist() == [None, "x"]


def test_dates_and_integer_timestamps() -> None:
    features = pa.table({"customer_id": [1, 1], "ts": pa.array([0, 10], pa.int32()), "spend": ["a", "b"]})
    labels = pa.table({"customer_id": [1, 1, 1], "event_time": pa.array([9, 10, 14], pa.int64())})
    assert join(labels, features, ttl=3)["spend"].to_pylist() == [None, "b", None]
    with pytest.raises(TypeError, match="ttl is an integer in the same units"):
        join(labels, features, ttl=timedelta(seconds=3))
    features = pa.table({"customer_id": [1], "ts": pa.array([datetime(2024, 1, 1)], pa.timestamp("ms")), "spend": ["x"]})
    labels = pa.table({"customer_id": [1, 1], "event_time": pa.array([datetime(2023, 12, 31).date(),
                                                                       datetime(2024, 1, 1).date()])})
    assert join(labels, features)["spend"].to_pylist() == [None, "x"]


def test_extreme_integer_timestamps_do_not_overflow() -> None:
    low, high = -(2**63) + 1, 2**63 - 1
    features = pa.table({"customer_id": [1, 1, 2], "ts": [low, 0, high], "spend": ["low", "zero", "high"]})
    labels = pa.table({"customer_id": [1, 1, 2, 2], "event_time": [high, low, high, -(2**63)]})
    assert join(labels, features)["spend"].to_pylist() == ["zero", "low", "high", None]
    assert join(labels, features, ttl=2**63 - 1)["spend"].to_pylist() == ["zero", "low", "high", None]
    assert join(labels, features, ttl=5)["spend"].to_pylist() == [None, "low", "high", None]


def test_empty_tables() -> None:
    features = customers([10], ["a"])
    empty_labels = label_rows([], [])
    result = join(empty_labels, features)
    assert result.num_rows == 0 and result.column_names[-1] == "spend"
    assert join(label_rows([1], [20]), features.slice(0, 0))["spend"].to_pylist() == [None]


def test_feature_columns_choose_what_is_joined() -> None:
    features = customers([10], ["a"]).append_column("visits", pa.array([3]))
    result = join(label_rows([1], [20]), features, feature_columns=["visits"])
    assert result.column_names == ["customer_id", "event_time", "is_fraud", "visits"]
    assert result["visits"].to_pylist() == [3]


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"ttl": timedelta(seconds=-1)}, ValueError, "must not be negative"),
        ({"ttl": 5}, TypeError, "timedelta or a duration string"),
        ({"ttl": "soon"}, ValueError, "invalid duration"),
        ({"entities": []}, ValueError, "at least one column"),
        ({"entities": ["customer_id", "customer_id"]}, ValueError, "duplicated columns"),
        ({"entities": ["nope"]}, KeyError, "no column 'nope'"),
        ({"feature_columns": ["is_fraud"]}, KeyError, "no column 'is_fraud'"),
    ],
)
def test_invalid_arguments_are_refused_with_a_reason(change: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        join(label_rows([1], [20]), customers([10], ["a"]), **change)


def test_clashing_column_names_and_key_types_are_refused() -> None:
    features = customers([10], ["a"]).append_column("is_fraud", pa.array([True]))
    with pytest.raises(ValueError, match=r"\['is_fraud'\] are also label columns"):
        join(label_rows([1], [20]), features)
    labels = label_rows([1], [20]).set_column(0, "customer_id", pa.array(["1"]))
    with pytest.raises(TypeError, match='entity column "customer_id" is string in the labels but int64'):
        join(labels, customers([10], ["a"]))
    labels = label_rows([1], [20]).set_column(1, "event_time", pa.array([1.5]))
    with pytest.raises(TypeError, match="timestamp, date or integer"):
        join(labels, customers([10], ["a"]))


def test_one_index_serves_many_label_tables_and_the_featureset_spec_drives_it() -> None:
    spec = FeatureSetSpec.model_validate({
        "source": {"uri": "s3://features/customers/*.parquet", "timestampColumn": "ts"},
        "entities": ["customer_id"],
        "features": [{"name": "spend", "from": "spend"}],
        "ttl": "1m",
    })
    assert spec.source.timestamp_column is not None
    index = FeatureIndex(customers([0, 100], ["a", "b"]), entities=spec.entities,
                         feature_timestamp=spec.source.timestamp_column)
    assert index.num_rows == 2
    first = index.join(label_rows([1, 1], [30, 61]), label_timestamp="event_time", ttl=spec.ttl)
    second = index.join(label_rows([1], [130]).to_batches()[0], label_timestamp="event_time", ttl=spec.ttl)
    assert first["spend"].to_pylist() == ["a", None]
    assert second["spend"].to_pylist() == ["b"]
