"""The prediction log: pure builders (schema, keys, tables, hour splits) and the writer and readers
against the real S3 server, including a store outage and the buffer's bound."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kubeloop.featureset.transforms import TransformInputError
from kubeloop.modelversion.predictionlog import (
    HeldRows,
    LoggedRequest,
    PredictionLogWriter,
    encode_parquet,
    iter_prediction_log,
    object_key,
    prediction_log_keys,
    prediction_log_prefix,
    prediction_log_schema,
    prediction_log_table,
    read_prediction_log,
    split_by_hour,
    writer_id,
)
from kubeloop.store import ObjectStore

SOURCES = {"amount": "float", "country": "string", "visits": "integer"}
T0 = datetime(2026, 3, 1, 9, 59, 58, 123456, tzinfo=UTC)


def request(moment: datetime, amounts: list[object], *, request_id: str = "r",
            classes: list[str | None] | None = None) -> LoggedRequest:
    n = len(amounts)
    sources = pa.table({"amount": pa.array(amounts), "country": pa.array(["de"] * n),
                        "visits": pa.array(list(range(n)), pa.int32())})
    return LoggedRequest(time=moment, request_id=request_id, sources=sources,
                         prediction=np.linspace(0.1, 0.9, n), predicted_class=classes)


def fresh_prefix() -> str:
    return prediction_log_prefix("ml", "fraud", f"v{uuid.uuid4().hex[:8]}")


def wait_until(condition: object, what: str, limit: float = 60.0) -> None:
    """Polls `condition()`; the limit is a hang guard, not a timing assertion."""
    deadline = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


# -- pure -----------------------------------------------------------------------------------------


def test_prefix_and_keys() -> None:
    assert prediction_log_prefix("ml", "fraud", "fraud-v3") == "predictions/ml/fraud/fraud-v3"
    with pytest.raises(ValueError, match="model version"):
        prediction_log_prefix("ml", "fraud", "a/b")
    key = object_key("p", T0, "pod-1-abc123", 7)
    assert key == "p/dt=2026-03-01/hour=09/20260301T095958123456Z-pod-1-abc123-000007.parquet"
    assert writer_id("Fraud_Predictor.7").startswith("fraud-predictor-7-")


def test_schema_follows_source_kinds() -> None:
    schema = prediction_log_schema({"amount": "float", "n": "integer", "ok": "boolean", "c": "string",
                                    "t": "timestamp"})
    assert schema.names == ["timestamp", "request_id", "model_version", "amount", "n", "ok", "c", "t",
                            "prediction", "predicted_class"]
    assert [str(t) for t in schema.types] == ["timestamp[us, tz=UTC]", "string", "string", "double", "int64",
                                              "bool", "large_string", "timestamp[us, tz=UTC]", "double", "string"]
    with pytest.raises(ValueError, match="prediction"):
        prediction_log_schema({"prediction": "float"})


def test_table_reads_sources_as_their_kinds_and_sorts_by_time() -> None:
    schema = prediction_log_schema(SOURCES)
    later = request(T0 + timedelta(seconds=1), [1, 2], request_id="b", classes=["yes", "no"])
    earlier = request(T0, [2.5], request_id="a", classes=["no"])
    table = prediction_log_table(schema, "v1", [later, earlier])
    assert table.schema == schema
    assert table.column("request_id").to_pylist() == ["a", "b", "b"]
    assert table.column("amount").to_pylist() == [2.5, 1.0, 2.0]  # int64 request values read as float
    assert table.column("visits").type == pa.int64()
    assert table.column("predicted_class").to_pylist() == ["no", "yes", "no"]
    assert table.column("timestamp").to_pylist()[0] == T0
    regression = prediction_log_table(schema, "v1", [request(T0, [1.0])])
    assert regression.column("predicted_class").to_pylist() == [None]
    with pytest.raises(TransformInputError, match='column "amount"'):
        prediction_log_table(schema, "v1", [request(T0, ["x"])])


def row_request(moment: datetime, amounts: list[float | None], *, request_id: str = "r",
                classes: list[str | None] | None = None) -> LoggedRequest:
    """`request`'s rows in row form: values already read as their kinds (as `apply_rows` gives them)."""
    rows = [{"amount": amount, "country": "de", "visits": index} for index, amount in enumerate(amounts)]
    return LoggedRequest(time=moment, request_id=request_id, sources=rows,
                         prediction=np.linspace(0.1, 0.9, len(amounts)), predicted_class=classes)


def test_row_form_requests_log_the_same_rows_as_table_form() -> None:
    schema = prediction_log_schema(SOURCES)
    moments = [T0 + timedelta(milliseconds=ms) for ms in (5, 0, 5, 9)]
    amounts: list[list[float | None]] = [[1.0, None], [2.5], [3.0], [4.0, 5.0, 6.0]]
    tables = [request(m, a, request_id=f"r{i}", classes=["c"] * len(a)) for i, (m, a) in enumerate(zip(moments, amounts, strict=True))]
    rows = [row_request(m, a, request_id=f"r{i}", classes=["c"] * len(a))
            for i, (m, a) in enumerate(zip(moments, amounts, strict=True))]
    expected = prediction_log_table(schema, "v1", tables)
    assert prediction_log_table(schema, "v1", rows).equals(expected)
    # Interleaved forms, and row-form requests a writer already holds, give the same sorted table.
    mixed = [tables[0], rows[1], tables[2], rows[3]]
    assert prediction_log_table(schema, "v1", mixed).equals(expected)
    held = HeldRows(["amount", "country", "visits"])
    for row in rows[1:3]:
        held.add(row)
    # Requests of the same microsecond keep their order within a form; across forms (r0, r2 here)
    # table-form requests come first.
    assert prediction_log_table(schema, "v1", [tables[0], tables[3]], held).equals(expected)
    assert held.rows == 2 and prediction_log_table(schema, "v1", []).num_rows == 0


def test_split_by_hour_and_size() -> None:
    schema = prediction_log_schema(SOURCES)
    table = prediction_log_table(schema, "v", [request(T0, [1.0] * 3), request(T0 + timedelta(seconds=3), [1.0] * 4)])
    pieces = split_by_hour(table, 3)
    assert [p.num_rows for p in pieces] == [3, 3, 1]
    assert {p.column("timestamp")[0].as_py().hour for p in pieces} == {9, 10}
    assert all(len({t.hour for t in p.column("timestamp").to_pylist()}) == 1 for p in pieces)


# -- writer and readers on the real store -----------------------------------------------------


def test_written_batches_are_read_back_by_window(serving_store: ObjectStore) -> None:
    prefix = fresh_prefix()
    counts: dict[str, int] = {}
    writer = PredictionLogWriter(serving_store, prefix, prediction_log_schema(SOURCES), "v1", writer="w",
                                 batch_rows=1000, on_rows=lambda o, n: counts.__setitem__(o, counts.get(o, 0) + n))
    assert writer.submit(request(T0, [1.0, 2.0], request_id="a", classes=["1", "0"]))
    assert writer.submit(request(T0 + timedelta(seconds=4), [3.0], request_id="b", classes=["1"]))
    assert writer.flush() == 3
    assert counts == {"written": 3}
    keys = [info.key for info in serving_store.list_objects(prefix + "/")]
    assert keys == [f"{prefix}/dt=2026-03-01/hour=09/20260301T095958123456Z-w-000000.parquet",
                    f"{prefix}/dt=2026-03-01/hour=10/20260301T100002123456Z-w-000001.parquet"]
    stored = pq.read_table(pa.BufferReader(serving_store.get_bytes(keys[0])))
    assert stored.schema == prediction_log_schema(SOURCES)

    whole = read_prediction_log(serving_store, prefix, since=T0 - timedelta(hours=1), until=T0 + timedelta(hours=1))
    assert whole.column("request_id").to_pylist() == ["a", "a", "b"]
    assert whole.column("amount").to_pylist() == [1.0, 2.0, 3.0]
    assert whole.column("model_version").to_pylist() == ["v1"] * 3
    # [since, until): the second request alone, only the asked-for columns.
    later = read_prediction_log(serving_store, prefix, since=T0 + timedelta(seconds=1),
                                until=T0 + timedelta(seconds=5), columns=["amount", "prediction"])
    assert later.column_names == ["amount", "prediction"] and later.column("amount").to_pylist() == [3.0]
    # Only the overlapping hour is listed.
    assert list(prediction_log_keys(serving_store, prefix, since=T0, until=T0 + timedelta(seconds=1))) == keys[:1]
    # An open window takes the listing path through the day and hour folders: same rows.
    opened = read_prediction_log(serving_store, prefix, since=datetime(2000, 1, 1, tzinfo=UTC),
                                 until=datetime(2100, 1, 1, tzinfo=UTC))
    assert opened.equals(whole)
    assert read_prediction_log(serving_store, prefix, since=T0 + timedelta(hours=5),
                               until=T0 + timedelta(hours=6)).num_rows == 0
    batches = list(iter_prediction_log(serving_store, prefix, since=T0 - timedelta(hours=1), until=T0 + timedelta(hours=1)))
    assert [b.num_rows for b in batches] == [2, 1]


def test_bound_drops_and_counts(serving_store: ObjectStore) -> None:
    dropped: list[int] = []
    writer = PredictionLogWriter(serving_store, fresh_prefix(), prediction_log_schema(SOURCES), "v1",
                                 max_rows=3, on_rows=lambda o, n: dropped.append(n) if o == "dropped" else None)
    assert writer.submit(request(T0, [1.0, 2.0]))
    assert not writer.submit(request(T0, [1.0, 2.0]))
    assert writer.submit(request(T0, [1.0]))
    assert (writer.held_rows, dropped) == (3, [2])


def test_store_outage_keeps_rows_and_retries_same_keys(serving_store: ObjectStore,
                                                       unreachable_store: ObjectStore) -> None:
    prefix = fresh_prefix()
    counts: dict[str, int] = {}
    writer = PredictionLogWriter(unreachable_store, prefix, prediction_log_schema(SOURCES), "v1", writer="w",
                                 max_rows=4, on_rows=lambda o, n: counts.__setitem__(o, counts.get(o, 0) + n))
    assert writer.submit(request(T0, [1.0, 2.0]))
    assert writer.flush() == 0
    assert counts == {"failed": 2} and writer.held_rows == 2
    # While the store is down, the held rows still count against the bound.
    assert writer.submit(request(T0 + timedelta(seconds=1), [3.0, 4.0]))
    assert not writer.submit(request(T0, [5.0]))
    writer.store = serving_store  # the store is back
    assert writer.flush() == 4
    assert writer.held_rows == 0 and counts == {"failed": 2, "dropped": 1, "written": 4}
    keys = [info.key.rsplit("/", 1)[1] for info in serving_store.list_objects(prefix + "/")]
    assert keys == ["20260301T095958123456Z-w-000000.parquet", "20260301T095959123456Z-w-000001.parquet"]
    table = read_prediction_log(serving_store, prefix, since=T0, until=T0 + timedelta(minutes=1))
    assert table.column("amount").to_pylist() == [1.0, 2.0, 3.0, 4.0]


def test_background_thread_flushes_by_size_and_on_close(serving_store: ObjectStore) -> None:
    prefix = fresh_prefix()
    writer = PredictionLogWriter(serving_store, prefix, prediction_log_schema(SOURCES), "v1",
                                 batch_rows=2, flush_seconds=3600)
    writer.start()
    writer.submit(request(T0, [1.0, 2.0]))  # reaches batch_rows: flushed without waiting for the interval
    wait_until(lambda: writer.held_rows == 0, "the size-triggered flush")
    writer.submit(request(T0 + timedelta(seconds=1), [3.0]))
    writer.submit(row_request(T0 + timedelta(seconds=2), [4.0, None]))
    assert writer.held_rows == 3
    writer.close()
    assert writer.held_rows == 0
    assert not writer.submit(request(T0, [4.0]))  # closed: nothing is accepted any more
    table = read_prediction_log(serving_store, prefix, since=T0, until=T0 + timedelta(minutes=1))
    assert table.column("amount").to_pylist() == [1.0, 2.0, 3.0, 4.0, None]
    assert table.column("visits").to_pylist() == [0, 1, 0, 0, 1]


def test_encoded_objects_are_plain_parquet() -> None:
    table = prediction_log_table(prediction_log_schema(SOURCES), "v", [request(T0, [1.0])])
    assert pq.read_table(pa.BufferReader(encode_parquet(table))).equals(table)
