"""The materializer end to end, without Kubernetes: `materialize.run` with a pod's environment
against a real S3 server (SeaweedFS), reading local and s3:// Parquet and CSV sources."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from kubeloop.featureset.api import FeatureSetSpec
from kubeloop.featureset.materialize import FEATURES_FILE, FITTED_FILE, PROFILE_FILE, SCHEMA_FILE
from kubeloop.featureset.profile import ReferenceProfile, build_profile
from kubeloop.featureset.results import spec_digest
from kubeloop.featureset.transforms import FittedFeatures, apply_batch, fit_pipeline
from kubeloop.store import ObjectStore, Version
from tests.featureset.conftest import NAMESPACE, SOURCE_BUCKET, Materializer

START_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
COUNTRIES = ["FR", "DE", "US", "ES"]


def transactions(rows: int = 1200, seed: int = 0) -> pa.Table:
    """Deterministic raw rows: entity + timestamp unique, a few null amounts."""
    rng = np.random.default_rng(seed)
    amount = np.round(rng.lognormal(3.0, 1.0, rows), 2)
    nulls = np.zeros(rows, dtype=bool)
    nulls[::50] = True
    return pa.table({
        "customer_id": pa.array(np.arange(rows) % 97, pa.int64()),
        "event_time": pa.array(START_US + np.arange(rows) * 3_600_000_000 // 7, pa.timestamp("us", tz="UTC")),
        "amount": pa.array(amount, mask=nulls),
        "country": pa.array([COUNTRIES[i] for i in rng.integers(0, len(COUNTRIES), rows)]),
        "age": pa.array(rng.integers(18, 90, rows), pa.int64()),
        "is_fraud": pa.array(rng.random(rows) < 0.1),
    })


def feature_spec(uri: str, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": {"uri": uri, "timestampColumn": "event_time"},
        "entities": ["customer_id"],
        "labelColumns": ["is_fraud"],
        "features": [
            {"name": "amount_z", "from": "amount",
             "transforms": [{"type": "fillNull", "strategy": "mean"}, {"type": "log1p"}, {"type": "standardize"}]},
            {"name": "amount_bucket", "from": "amount", "transforms": [{"type": "bucketize", "numBuckets": 4}]},
            {"name": "country_index", "from": "country", "transforms": [{"type": "vocabulary"}]},
            {"name": "country_hash", "from": "country", "transforms": [{"type": "hash", "numBuckets": 8}]},
            {"name": "age_scaled", "from": "age", "transforms": [{"type": "minMax"}]},
            {"name": "hour", "from": "event_time", "transforms": [{"type": "datetime", "part": "hour"}]},
        ],
        "validation": {
            "minRows": 10,
            "columns": [
                {"column": "amount", "min": 0, "maxNullFraction": 0.05},
                {"column": "country", "allowedValues": COUNTRIES},
                {"column": "age", "type": "integer", "min": 0, "max": 130},
            ],
        },
    }
    spec.update(changes)
    return spec


def write_parquet(table: pa.Table, path: Path, **options: Any) -> Path:
    pq.write_table(table, path, **options)
    return path


def write_csv(table: pa.Table, path: Path) -> Path:
    buffer = pa.BufferOutputStream()
    pcsv.write_csv(table, buffer)
    data = buffer.getvalue().to_pybytes()
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


def only_version(store: ObjectStore, materializer: Materializer) -> Version:
    (version,) = store.list_versions(materializer.prefix)
    return version


def read_file(store: ObjectStore, version: Version, name: str, tmp_path: Path) -> Path:
    return store.download(version, name, tmp_path / "downloads" / version.id / name)


def blocks(table: pa.Table, rows: int) -> list[pa.Table]:
    return [table.slice(start, rows).combine_chunks() for start in range(0, table.num_rows, rows)]


# -- success ------------------------------------------------------------------------------------


def test_parquet_source_publishes_a_version_with_features_fitted_schema_and_profile(
        materializer: Materializer, store: ObjectStore, data_dir: Path, tmp_path: Path) -> None:
    table = transactions()
    write_parquet(table.slice(0, 700), data_dir / "part-0.parquet")
    write_parquet(table.slice(700), data_dir / "part-1.parquet")
    spec = feature_spec(f"{data_dir}/*.parquet")

    run = materializer.run(spec)

    assert run.code == 0, run.out + run.err
    version = only_version(store, materializer)
    assert set(version.files) == {FEATURES_FILE, FITTED_FILE, SCHEMA_FILE, PROFILE_FILE}
    manifest = version.manifest
    assert manifest["rows"] == table.num_rows
    assert manifest["entities"] == ["customer_id"]
    assert manifest["timestampColumn"] == "event_time"
    assert manifest["labelColumns"] == ["is_fraud"]
    assert manifest["features"] == [
        {"name": "amount_z", "from": "amount", "dtype": "double"},
        {"name": "amount_bucket", "from": "amount", "dtype": "int64"},
        {"name": "country_index", "from": "country", "dtype": "int64"},
        {"name": "country_hash", "from": "country", "dtype": "int64"},
        {"name": "age_scaled", "from": "age", "dtype": "double"},
        {"name": "hour", "from": "event_time", "dtype": "int64"},
    ]
    assert manifest["specDigest"] == spec_digest(spec)
    assert "ttl" not in manifest  # no TTL in the spec: the join has no limit
    assert manifest["source"]["uri"] == spec["source"]["uri"]
    assert manifest["source"]["files"] == [
        {"uri": str(path), "size": path.stat().st_size,
         "sha256": "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()}
        for path in (data_dir / "part-0.parquet", data_dir / "part-1.parquet")]
    assert [(c["name"], c["role"]) for c in manifest["schema"] if c["role"] != "input"] == [
        ("customer_id", "entity"), ("event_time", "timestamp"), ("is_fraud", "label"), ("amount_z", "feature"),
        ("amount_bucket", "feature"), ("country_index", "feature"), ("country_hash", "feature"),
        ("age_scaled", "feature"), ("hour", "feature")]
    assert [c for c in manifest["schema"] if c["role"] == "input"] == [
        {"name": "amount", "dtype": "double", "role": "input"},
        {"name": "country", "dtype": "string", "role": "input"},
        {"name": "age", "dtype": "int64", "role": "input"},
        {"name": "event_time", "dtype": "timestamp[us, tz=UTC]", "role": "input"},
    ]

    features = pq.read_table(read_file(store, version, FEATURES_FILE, tmp_path))
    fitted = FittedFeatures.from_json(read_file(store, version, FITTED_FILE, tmp_path).read_bytes())
    assert features.column_names == ["customer_id", "event_time", "is_fraud", "amount_z", "amount_bucket",
                                     "country_index", "country_hash", "age_scaled", "hour"]
    assert features.select(["customer_id", "event_time", "is_fraud"]).equals(
        table.select(["customer_id", "event_time", "is_fraud"]))
    assert features.drop_columns(["customer_id", "event_time", "is_fraud"]).equals(apply_batch(fitted, table))
    schema = json.loads(read_file(store, version, SCHEMA_FILE, tmp_path).read_bytes())
    assert [c["name"] for c in schema["columns"]] == features.column_names

    assert run.result is not None
    assert run.result["outcome"] == "Succeeded" and run.result["reason"] == "Materialized"
    assert run.result["version"] == version.id and run.result["versionDigest"] == version.digest
    assert run.result["rows"] == table.num_rows and run.result["violations"] == []
    assert run.result["featureSet"] == {"namespace": NAMESPACE, "name": materializer.name, "uid": "uid-1234",
                                        "generation": 1}
    assert run.result["specDigest"] == spec_digest(spec)
    assert run.result["exitCode"] == 0


def test_fitted_parameters_and_profile_match_a_recomputation(
        materializer: Materializer, store: ObjectStore, data_dir: Path, tmp_path: Path) -> None:
    # 5,000 rows in blocks of 700: several blocks, and more values than the quantile sketch
    # holds exactly (2,048), so fits and profile depend on the blocks being the same.
    table = transactions(5000, seed=3)
    path = write_parquet(table, data_dir / "data.parquet", row_group_size=1000)
    spec = feature_spec(str(path))

    run = materializer.run(spec, block_rows=700, batch_rows=333)

    assert run.code == 0, run.out + run.err
    version = only_version(store, materializer)
    assert version.manifest["blockRows"] == 700
    features = FeatureSetSpec.model_validate(spec).features
    chunks = blocks(table, 700)
    expected_fit = fit_pipeline(features, chunks, schema=table.schema)
    stored_fit = read_file(store, version, FITTED_FILE, tmp_path).read_text()
    assert stored_fit == expected_fit.to_json()
    expected_profile = build_profile(chunks, expected_fit)
    stored_profile = ReferenceProfile.from_json(read_file(store, version, PROFILE_FILE, tmp_path).read_bytes())
    assert stored_profile.to_json() == expected_profile.to_json()
    assert stored_profile.rows == 5000
    assert stored_profile.features["amount_z"].numeric is not None
    assert stored_profile.features["amount_z"].numeric.rank_error_bound != 0  # the sketch did compact


@pytest.mark.parametrize("name", ["data.csv", "data.csv.gz"])
def test_csv_source_gives_the_same_features_as_parquet(
        name: str, materializer: Materializer, store: ObjectStore, data_dir: Path, tmp_path: Path) -> None:
    table = transactions()
    parquet_run = materializer.run(feature_spec(str(write_parquet(table, data_dir / "data.parquet"))))
    csv_run = materializer.run(feature_spec(str(write_csv(table, data_dir / name))))

    assert parquet_run.code == 0 and csv_run.code == 0, csv_run.out + csv_run.err
    assert parquet_run.result and csv_run.result
    by_id = {v.id: v for v in store.list_versions(materializer.prefix)}
    from_parquet, from_csv = by_id[parquet_run.result["version"]], by_id[csv_run.result["version"]]
    assert from_csv.manifest["source"]["format"] == "csv"
    assert read_file(store, from_csv, FITTED_FILE, tmp_path).read_bytes() == \
        read_file(store, from_parquet, FITTED_FILE, tmp_path).read_bytes()
    csv_features = pq.read_table(read_file(store, from_csv, FEATURES_FILE, tmp_path))
    parquet_features = pq.read_table(read_file(store, from_parquet, FEATURES_FILE, tmp_path))
    assert csv_features.equals(parquet_features)


def test_s3_source_in_another_bucket_by_glob_and_by_prefix(
        materializer: Materializer, store: ObjectStore, source_store: ObjectStore, tmp_path: Path) -> None:
    table = transactions()
    folder = f"raw/{materializer.name}"
    parts = []
    for index, (start, length) in enumerate(((0, 500), (500, 700))):
        sink = pa.BufferOutputStream()
        pq.write_table(table.slice(start, length), sink)
        parts.append(sink.getvalue().to_pybytes())
        source_store.put_bytes(f"{folder}/2024/part-{index}.parquet", parts[-1])
    source_store.put_bytes(f"{folder}/2024/_SUCCESS", b"")  # Spark's marker: not data
    source_store.put_bytes(f"{folder}/notes.txt", b"not matched by the glob")

    by_glob = materializer.run(feature_spec(f"s3://{SOURCE_BUCKET}/{folder}/*/part-*.parquet"))
    prefix_spec = feature_spec(f"s3://{SOURCE_BUCKET}/{folder}/2024/")
    prefix_spec["source"]["format"] = "parquet"
    by_prefix = materializer.run(prefix_spec, work_dir=str(tmp_path))

    assert by_glob.code == 0, by_glob.out + by_glob.err
    assert by_prefix.code == 0, by_prefix.out + by_prefix.err
    assert by_glob.result and by_prefix.result
    versions = {v.id: v for v in store.list_versions(materializer.prefix)}
    files = versions[by_glob.result["version"]].manifest["source"]["files"]
    assert files == [{"uri": f"s3://{SOURCE_BUCKET}/{folder}/2024/part-{i}.parquet", "size": len(data),
                      "sha256": "sha256:" + hashlib.sha256(data).hexdigest()} for i, data in enumerate(parts)]
    assert versions[by_prefix.result["version"]].manifest["source"]["files"] == files
    assert versions[by_prefix.result["version"]].manifest["rows"] == table.num_rows
    assert list(tmp_path.iterdir()) == []  # the downloaded source and the output are cleaned up


def test_secret_ref_credentials_read_the_source(
        materializer: Materializer, source_store: ObjectStore, store_env: dict[str, str]) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(transactions(), sink)
    key = f"raw/{materializer.name}/data.parquet"
    source_store.put_bytes(key, sink.getvalue().to_pybytes())
    spec = feature_spec(f"s3://{SOURCE_BUCKET}/{key}")
    spec["source"]["secretRef"] = {"name": "team-data"}
    credentials = {
        "KUBELOOP_SOURCE_AWS_ACCESS_KEY_ID": store_env["AWS_ACCESS_KEY_ID"],
        "KUBELOOP_SOURCE_AWS_SECRET_ACCESS_KEY": store_env["AWS_SECRET_ACCESS_KEY"],
        "KUBELOOP_SOURCE_AWS_ENDPOINT_URL": store_env["KUBELOOP_S3_ENDPOINT"],
    }

    good = materializer.run(spec, extra=credentials)
    wrong = materializer.run(spec, extra={**credentials, "KUBELOOP_SOURCE_AWS_SECRET_ACCESS_KEY": "not-the-key"})
    absent = materializer.run(spec)

    assert good.code == 0, good.out + good.err
    assert wrong.code == 3 and wrong.result is not None
    assert wrong.result["reason"] == "SourceUnavailable"
    assert absent.code == 3 and absent.result is not None
    assert absent.result["reason"] == "SecretNotFound"
    assert absent.result["message"] == (
        f'spec.source.secretRef: Secret "team-data" was not found in namespace "{NAMESPACE}" or lacks the keys '
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (KUBELOOP_SOURCE_AWS_ACCESS_KEY_ID, "
        "KUBELOOP_SOURCE_AWS_SECRET_ACCESS_KEY not set in the pod)")


def test_same_data_same_version_and_changed_data_a_new_one(
        materializer: Materializer, store: ObjectStore, data_dir: Path) -> None:
    table = transactions()
    path = write_parquet(table, data_dir / "data.parquet")
    spec = feature_spec(str(path))

    first = materializer.run(spec)
    again = materializer.run(spec, generation=2)
    write_parquet(table.set_column(2, "amount", pc.multiply(table.column("amount"), 2.0)), path)
    changed = materializer.run(spec)

    assert (first.code, again.code, changed.code) == (0, 0, 0)
    assert first.result and again.result and changed.result
    assert again.result["version"] == first.result["version"]
    assert "already published" in again.result["message"]
    assert again.result["featureSet"]["generation"] == 2
    assert changed.result["version"] != first.result["version"]
    versions = store.list_versions(materializer.prefix)
    assert [v.id for v in versions] == [first.result["version"], changed.result["version"]]


def test_the_ttl_travels_in_the_manifest_to_the_trainers_join(
        materializer: Materializer, store: ObjectStore, data_dir: Path) -> None:
    spec = {**feature_spec(str(write_parquet(transactions(), data_dir / "data.parquet"))), "ttl": "7d"}
    run = materializer.run(spec)
    assert run.code == 0, run.out + run.err
    assert only_version(store, materializer).manifest["ttl"] == "7d"


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_read_size_does_not_change_the_version(
        fmt: str, materializer: Materializer, data_dir: Path) -> None:
    table = transactions(3000, seed=7)
    path = write_parquet(table, data_dir / "d.parquet") if fmt == "parquet" else write_csv(table, data_dir / "d.csv")
    spec = feature_spec(str(path))

    tiny = materializer.run(spec, batch_rows=7, csv_block_bytes=4096, block_rows=1000)
    whole = materializer.run(spec, batch_rows=1_000_000, csv_block_bytes=64 << 20, block_rows=1000)

    assert tiny.code == 0 and whole.code == 0, tiny.out + tiny.err
    assert tiny.result and whole.result
    assert tiny.result["version"] == whole.result["version"]


def test_progress_lines_and_summary_on_stdout(materializer: Materializer, data_dir: Path) -> None:
    path = write_parquet(transactions(), data_dir / "d.parquet")

    run = materializer.run(feature_spec(str(path)), progress_seconds=0.0)

    lines = run.out.splitlines()
    assert lines[0].startswith(f"materialize {NAMESPACE}/{materializer.name} (generation 1, run ")
    assert "pass 1 (contract, fit): started (1,200 rows)" in lines
    assert any(line.startswith("pass 1 (contract, fit): 1,200 rows of 1,200") and "100.0%" in line for line in lines)
    assert any(line.startswith("pass 2 (transform, write, profile): done, 1,200 rows in ") for line in lines)
    assert lines[-1].startswith("materialize: Succeeded (Materialized) in ")
    assert "published: 1,200 rows, 6 features, 4 files" in lines[-1]


# -- the data contract --------------------------------------------------------------------------


def _with(table: pa.Table, column: str, values: list[Any] | pa.Array) -> pa.Table:
    array = values if isinstance(values, pa.Array) else pa.array(values, table.schema.field(column).type)
    return table.set_column(table.schema.get_field_index(column), column, array)


def _replace(table: pa.Table, column: str, rows: dict[int, Any]) -> pa.Table:
    values = table.column(column).to_pylist()
    for row, value in rows.items():
        values[row] = value
    return _with(table, column, values)


BASE = transactions(100, seed=11)
CONTRACT_CASES = {
    "maxNullFraction": (
        _replace(BASE, "amount", {i: None for i in range(0, 100, 10)}),
        {"column": "amount", "rule": "maxNullFraction", "count": 10, "total": 100,
         "message": 'column "amount": 10 of 100 values (10%) are null, more than maxNullFraction 0.05'}),
    "min": (
        _replace(BASE, "amount", {1: -7.5, 2: -0.25, 3: -1.0}),
        {"column": "amount", "rule": "min", "count": 3, "total": 100,
         "message": 'column "amount": 3 of 100 values (3%) are below min 0 (smallest -7.5)'}),
    "max": (
        _replace(BASE, "age", {5: 200, 6: 131}),
        {"column": "age", "rule": "max", "count": 2, "total": 100,
         "message": 'column "age": 2 of 100 values (2%) are above max 130 (largest 200)'}),
    "allowedValues": (
        _replace(BASE, "country", {7: "XX", 8: "XX", 9: "fr", 10: "XX"}),
        {"column": "country", "rule": "allowedValues", "count": 4, "total": 100,
         "message": 'column "country": 4 of 100 values (4%) are not in allowedValues (e.g. "XX", "fr")'}),
    "type": (
        _with(BASE, "age", pa.array([str(v) for v in BASE.column("age").to_pylist()])),
        {"column": "age", "rule": "type", "count": 100, "total": 100,
         "message": 'column "age": 100 of 100 values (100%) are string, not integer'}),
    "uniqueKeys": (
        pa.concat_tables([BASE, BASE.slice(3, 2), BASE.slice(3, 1)]),
        {"column": "customer_id,event_time", "rule": "uniqueKeys", "count": 3, "total": 103,
         "message": 'key "customer_id", "event_time": 3 of 103 rows (2.91%) repeat the key of another row '
                    "(2 keys occur more than once, e.g. customer_id=3, event_time=2024-01-01T00:25:42.857142+00:00 "
                    "(3 rows); customer_id=4, event_time=2024-01-01T00:34:17.142857+00:00 (2 rows)); "
                    "uniqueKeys requires each key once"}),
}


@pytest.mark.parametrize("rule", sorted(CONTRACT_CASES))
def test_each_contract_rule_fails_with_its_message_and_publishes_nothing(
        rule: str, materializer: Materializer, data_dir: Path) -> None:
    table, expected = CONTRACT_CASES[rule]
    path = write_parquet(table, data_dir / "d.parquet")

    run = materializer.run(feature_spec(str(path)))

    assert run.code == 3, run.out + run.err
    assert run.result is not None
    assert run.result["outcome"] == "Failed"
    assert run.result["reason"] == "ContractViolated"
    assert run.result["version"] is None
    assert run.result["violations"] == [expected]
    assert run.result["message"].startswith(f"the data contract is violated: {expected['message']}")
    assert f"violation: {expected['message']}" in run.out
    assert materializer.keys() == []


def test_min_rows(materializer: Materializer, data_dir: Path) -> None:
    path = write_parquet(BASE, data_dir / "d.parquet")
    spec = feature_spec(str(path))
    spec["validation"]["minRows"] = 1000

    run = materializer.run(spec)

    assert run.code == 3 and run.result is not None
    assert run.result["violations"] == [{"column": None, "rule": "minRows", "count": 100, "total": 1000,
                                         "message": "the source has 100 rows, fewer than minRows 1,000"}]
    assert materializer.keys() == []


def test_type_errors_in_a_csv_column_are_counted(materializer: Materializer, data_dir: Path) -> None:
    path = write_csv(BASE, data_dir / "d.csv")
    text = path.read_text().splitlines()
    header = text[0].split(",")
    age = header.index('"age"')
    for row, bad in ((4, "abc"), (9, "1.5"), (10, "abc")):
        cells = text[row].split(",")
        cells[age] = bad
        text[row] = ",".join(cells)
    path.write_text("\n".join(text) + "\n")

    run = materializer.run(feature_spec(str(path)))

    assert run.code == 3 and run.result is not None
    assert run.result["violations"] == [{"column": "age", "rule": "type", "count": 3, "total": 100,
                                         "message": 'column "age": 3 of 100 values (3%) are not integer '
                                                    '(e.g. "abc", "1.5")'}]


def test_all_violations_are_reported_not_just_the_first(materializer: Materializer, data_dir: Path) -> None:
    table = _replace(BASE, "amount", {i: None for i in range(0, 100, 10)} | {1: -3.0})
    table = _replace(table, "country", {2: "XX"})
    table = _replace(table, "age", {3: 500})
    path = write_parquet(pa.concat_tables([table, table.slice(50, 1)]), data_dir / "d.parquet")
    spec = feature_spec(str(path))
    spec["validation"]["minRows"] = 200

    run = materializer.run(spec)

    assert run.code == 3 and run.result is not None
    # Row 50 has a null amount and is the one repeated: 11 nulls.
    assert [(v["column"], v["rule"], v["count"]) for v in run.result["violations"]] == [
        (None, "minRows", 101),
        ("amount", "min", 1),
        ("amount", "maxNullFraction", 11),
        ("country", "allowedValues", 1),
        ("age", "max", 1),
        ("customer_id,event_time", "uniqueKeys", 1),
    ]
    assert run.result["message"].count(";") >= 5
    assert materializer.keys() == []


def test_a_missing_column_is_named_with_its_use(materializer: Materializer, data_dir: Path) -> None:
    path = write_parquet(BASE.drop_columns(["country"]), data_dir / "d.parquet")

    run = materializer.run(feature_spec(str(path)))

    assert run.code == 3 and run.result is not None
    assert run.result["reason"] == "ContractViolated"
    assert run.result["violations"] == [{
        "column": "country", "rule": "present", "count": 1, "total": 1,
        "message": 'column "country" is missing from the source; it is the from of feature "country_index" and '
                   'the from of feature "country_hash" and a validation rule\'s column (columns found: '
                   "customer_id, event_time, amount, age, is_fraud)"}]
    assert materializer.keys() == []


# -- other failures -------------------------------------------------------------------------------


def test_unreachable_store_exits_1_for_a_retry(materializer: Materializer, data_dir: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = write_parquet(BASE, data_dir / "d.parquet")

    run = materializer.run(feature_spec(str(path)), extra={"KUBELOOP_S3_ENDPOINT": f"http://127.0.0.1:{port}"})

    assert run.code == 1
    assert "the object store is unavailable" in run.out
    assert "cannot write the run result" in run.err
    assert run.result is None


def test_a_source_that_matches_nothing_is_source_unavailable(materializer: Materializer, data_dir: Path) -> None:
    run = materializer.run(feature_spec(f"{data_dir}/*.parquet"))

    assert run.code == 3 and run.result is not None
    assert run.result["reason"] == "SourceUnavailable"
    assert run.result["message"] == f"source {data_dir}/*.parquet matches no file"


def test_an_unreadable_source_is_source_unavailable(materializer: Materializer, data_dir: Path) -> None:
    (data_dir / "d.parquet").write_bytes(b"not parquet at all")

    run = materializer.run(feature_spec(str(data_dir / "d.parquet")))

    assert run.code == 3 and run.result is not None
    assert run.result["reason"] == "SourceUnavailable"
    assert run.result["message"].startswith(f"cannot read {data_dir}/d.parquet as Parquet: ")


def test_an_invalid_spec_fails_permanently_with_a_run_result(materializer: Materializer, data_dir: Path) -> None:
    spec = feature_spec(str(data_dir / "d.parquet"), features=[])

    run = materializer.run(spec)

    assert run.code == 3 and run.result is not None
    assert run.result["reason"] == "MaterializationFailed"
    assert run.result["message"].startswith("invalid spec: spec.features: ")


def test_data_the_transforms_cannot_read_fails_without_publishing(
        materializer: Materializer, data_dir: Path) -> None:
    table = BASE.append_column("when", pa.array(["2024-01-01T00:00:00"] * 99 + ["yesterday"]))
    spec = feature_spec(str(write_parquet(table, data_dir / "d.parquet")))
    spec["features"].append({"name": "when_day", "from": "when", "transforms": [{"type": "datetime", "part": "day"}]})

    run = materializer.run(spec)

    assert run.code == 3 and run.result is not None
    assert run.result["reason"] == "MaterializationFailed"
    assert run.result["message"].startswith('feature "when_day", column "when": not an ISO 8601 timestamp')
    assert materializer.keys() == []


def test_a_csv_column_that_changes_type_after_the_inferred_start_is_explained(
        materializer: Materializer, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubeloop.featureset import sources

    monkeypatch.setattr(sources, "CSV_INFER_BYTES", 4096)
    rows = 2000
    table = transactions(rows).append_column("score", pa.array(["1"] * (rows - 1) + ["0.5"]))
    spec = feature_spec(str(write_csv(table, data_dir / "d.csv")))
    spec["labelColumns"] = ["is_fraud", "score"]
    # amount_z starts with a numbers-only step: its column is read as float64 whatever the start holds.
    spec["features"] = spec["features"][:1]
    spec["validation"] = None

    run = materializer.run(spec, csv_block_bytes=4096)

    assert run.code == 3 and run.result is not None
    assert run.result["reason"] == "MaterializationFailed"
    assert "CSV conversion error to int64: invalid value '0.5'" in run.result["message"]
    assert "declare the column's type in spec.validation.columns" in run.result["message"]


# -- memory ---------------------------------------------------------------------------------------

_MEASURE = textwrap.dedent("""
    import io, json, sys
    from kubeloop.featureset import materialize
    from kubeloop.store import ObjectStore, StoreConfig
    env = json.loads(sys.argv[1])
    # Small upload parts and hash buffers: what stays in memory is then bounded well below the
    # test's inputs, so growth between the two inputs would show.
    store = ObjectStore(StoreConfig.from_env(env).replace(part_size=5 << 20, parallel_uploads=1))
    options = materialize.Options(batch_rows=4096, block_rows=8192, spill_hashes=65536, work_dir=sys.argv[2])
    code = materialize.run(env, options=options, out=io.StringIO(), err=sys.stderr, store=store)
    # VmHWM, not ru_maxrss: Linux carries the parent's peak into a vforked child's ru_maxrss.
    peak = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"code": code, "peak": peak}))
""")


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_input(materializer: Materializer, tmp_path: Path) -> None:
    """Two inputs, one 12x the other: the larger one's peak RSS stays within allocator noise of
    the smaller one's, far below the growth of the input a load-everything pipeline would show."""
    rng = np.random.default_rng(5)
    columns = [f"x{i}" for i in range(6)]
    peaks, sizes = {}, {}
    for rows in (200_000, 2_400_000):
        table = pa.table({
            "id": pa.array(np.arange(rows), pa.int64()),
            **{c: pa.array(rng.standard_normal(rows)) for c in columns},
            "tag": pa.array(np.array(COUNTRIES)[rng.integers(0, 4, rows)]),
        })
        sizes[rows] = table.nbytes
        path = write_parquet(table, tmp_path / f"in-{rows}.parquet", row_group_size=65_536)
        del table
        spec = {
            "source": {"uri": str(path)},
            "entities": ["id"],
            "features": [{"name": f"{c}_z", "from": c, "transforms": [{"type": "standardize"}]} for c in columns]
            + [{"name": "tag_ix", "from": "tag", "transforms": [{"type": "vocabulary"}]}],
            "validation": {"columns": [{"column": "x0", "maxNullFraction": 0.1}]},
        }
        env = materializer.environment(spec)
        done = subprocess.run([sys.executable, "-c", _MEASURE, json.dumps(env), str(tmp_path)],
                              capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["code"] == 0
        peaks[rows] = report["peak"]
    input_growth = sizes[2_400_000] - sizes[200_000]
    assert input_growth > 130_000_000
    # The allocator's caches make the peak of one input vary by about 25 MB from run to run;
    # a pipeline that loads its input would add all of input_growth.
    assert peaks[2_400_000] - peaks[200_000] < 0.3 * input_growth, (peaks, sizes)


def test_the_module_is_the_pods_entrypoint(materializer: Materializer, data_dir: Path) -> None:
    path = write_parquet(transactions(), data_dir / "d.parquet")
    env = {**os.environ, **materializer.environment(feature_spec(str(path))),
           "PYTHONPATH": os.pathsep.join(sys.path)}

    done = subprocess.run([sys.executable, "-m", "kubeloop.featureset.materialize"], env=env,
                          capture_output=True, text=True)

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("materialize: Succeeded (Materialized)")
    assert materializer.store.latest_version(materializer.prefix) is not None


def test_options_from_the_environment() -> None:
    from kubeloop.featureset.materialize import JobError, Options

    assert Options.from_env({"KUBELOOP_BATCH_ROWS": "1000", "KUBELOOP_WORK_DIR": "/scratch"}) == \
        Options(batch_rows=1000, work_dir="/scratch")
    assert Options.from_env({}) == Options()
    with pytest.raises(JobError, match="KUBELOOP_BATCH_ROWS must be a number of rows"):
        Options.from_env({"KUBELOOP_BATCH_ROWS": "many"})


def test_without_the_featureset_variable_it_fails_on_stderr(store_env: dict[str, str]) -> None:
    import io

    from kubeloop.featureset.materialize import run

    out, err = io.StringIO(), io.StringIO()

    assert run(dict(store_env), out=out, err=err) == 3
    assert err.getvalue() == ("materialize: Failed: KUBELOOP_FEATURESET is not set: the controller passes the "
                              "FeatureSet as JSON there\n")
