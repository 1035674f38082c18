"""Which files a source URI names, and reading them as fixed blocks whatever the read size."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from kubeloop.featureset.api import Feature
from kubeloop.featureset.sources import (
    SourceError,
    SourceReader,
    glob_regex,
    local_files,
    numeric_only_columns,
    s3_objects,
)
from kubeloop.store import ObjectStore
from tests.featureset.conftest import SOURCE_BUCKET


@pytest.mark.parametrize(("pattern", "key", "matches"), [
    ("raw/*.parquet", "raw/a.parquet", True),
    ("raw/*.parquet", "raw/2024/a.parquet", False),
    ("raw/**/*.parquet", "raw/a.parquet", True),
    ("raw/**/*.parquet", "raw/2024/01/a.parquet", True),
    ("raw/part-?.csv", "raw/part-1.csv", True),
    ("raw/part-?.csv", "raw/part-10.csv", False),
    ("raw/[ab].csv", "raw/b.csv", True),
    ("raw/[!ab].csv", "raw/b.csv", False),
    ("raw/a+b(1).csv", "raw/a+b(1).csv", True),
])
def test_glob_regex(pattern: str, key: str, matches: bool) -> None:
    assert bool(glob_regex(pattern).match(key)) is matches


def test_local_files_by_glob_directory_and_path(tmp_path: Path) -> None:
    for name in ("b.parquet", "a.parquet", "_SUCCESS", ".a.parquet.crc", "sub/c.parquet", "_tmp/d.parquet"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")

    assert [f.uri for f in local_files(f"{tmp_path}/*.parquet")] == [f"{tmp_path}/a.parquet", f"{tmp_path}/b.parquet"]
    assert [f.uri for f in local_files(f"file://{tmp_path}/")] == [
        f"{tmp_path}/a.parquet", f"{tmp_path}/b.parquet", f"{tmp_path}/sub/c.parquet"]
    assert [f.size for f in local_files(str(tmp_path / "a.parquet"))] == [1]
    with pytest.raises(SourceError, match="matches no file"):
        local_files(f"{tmp_path}/*.csv")


def test_s3_objects_by_glob_prefix_and_key(source_store: ObjectStore, tmp_path: Path) -> None:
    folder = f"sources-{tmp_path.name}"
    for key in ("x/1.csv", "x/2.csv", "x/_SUCCESS", "x/deep/3.csv", "y.csv"):
        source_store.put_bytes(f"{folder}/{key}", b"a\n1\n")

    def keys(uri: str) -> list[str]:
        return [info.key[len(folder) + 1:] for info in s3_objects(source_store, uri)]

    assert keys(f"s3://{SOURCE_BUCKET}/{folder}/x/*.csv") == ["x/1.csv", "x/2.csv"]
    assert keys(f"s3://{SOURCE_BUCKET}/{folder}/x/") == ["x/1.csv", "x/2.csv", "x/deep/3.csv"]
    assert keys(f"s3://{SOURCE_BUCKET}/{folder}/x") == ["x/1.csv", "x/2.csv", "x/deep/3.csv"]
    assert keys(f"s3://{SOURCE_BUCKET}/{folder}/y.csv") == ["y.csv"]
    with pytest.raises(SourceError, match="matches no object"):
        s3_objects(source_store, f"s3://{SOURCE_BUCKET}/{folder}/z/*.csv")


def test_numeric_only_columns() -> None:
    def feature(name: str, source: str, *steps: dict) -> Feature:
        return Feature.model_validate({"name": name, "from": source, "transforms": list(steps)})

    features = [
        feature("a", "x", {"type": "log1p"}),
        feature("b", "x", {"type": "fillNull", "strategy": "mean"}),
        feature("c", "y", {"type": "standardize"}),
        feature("d", "y"),
        feature("e", "z", {"type": "fillNull", "strategy": "median"}),
    ]

    assert numeric_only_columns(features) == {"x"}


def test_blocks_have_the_same_boundaries_for_any_read_size(tmp_path: Path) -> None:
    table = pa.table({"a": list(range(1000)), "b": [f"s{i}" for i in range(1000)]})
    pq.write_table(table.slice(0, 333), tmp_path / "0.parquet", row_group_size=100)
    pq.write_table(table.slice(333), tmp_path / "1.parquet", row_group_size=250)
    files = local_files(f"{tmp_path}/*.parquet")

    def block_sizes(batch_rows: int) -> list[int]:
        reader = SourceReader(files, "parquet", ["a", "b"], batch_rows=batch_rows, block_rows=128)
        return [block.num_rows for block in reader.blocks()]

    assert block_sizes(1) == block_sizes(77) == block_sizes(10_000) == [128] * 7 + [104]
    reader = SourceReader(files, "parquet", ["a", "b"], batch_rows=77, block_rows=128)
    assert pa.concat_tables(block.table for block in reader.blocks()).equals(table)


def test_csv_types_come_from_the_first_file_and_declared_columns_are_parsed(tmp_path: Path) -> None:
    pcsv.write_csv(pa.table({"n": [1, 2], "t": ["2024-01-01T00:00:00", "2024-01-02 12:00"], "d": ["3", "x"]}),
                   tmp_path / "0.csv")
    pcsv.write_csv(pa.table({"n": [3, None], "t": ["2024-01-03", None], "d": ["4", None]}), tmp_path / "1.csv")
    reader = SourceReader(local_files(f"{tmp_path}/*.csv"), "csv", ["n", "t", "d"], declared={"d": "integer"})

    blocks = list(reader.blocks())

    assert [str(field.type) for field in reader.schema] == ["int64", "timestamp[us, tz=UTC]", "int64"]
    (block,) = blocks
    assert block.table.column("n").to_pylist() == [1, 2, 3, None]
    assert block.table.column("d").to_pylist() == [3, None, 4, None]
    assert block.unparsed["d"][1].tolist() == [False, True, False, False]
    assert [t.isoformat() if t else None for t in block.table.column("t").to_pylist()] == [
        "2024-01-01T00:00:00+00:00", "2024-01-02T12:00:00+00:00", "2024-01-03T00:00:00+00:00", None]
    assert reader.parsed_columns == {"d"}


def test_parquet_files_of_other_widths_are_cast_to_the_first(tmp_path: Path) -> None:
    pq.write_table(pa.table({"n": pa.array([1], pa.int64())}), tmp_path / "0.parquet")
    pq.write_table(pa.table({"n": pa.array([2], pa.int32())}), tmp_path / "1.parquet")
    pq.write_table(pa.table({"n": pa.array(["x"])}), tmp_path / "2.parquet")
    files = local_files(f"{tmp_path}/*.parquet")

    assert list(SourceReader(files[:2], "parquet", ["n"]).blocks())[0].table.column("n").to_pylist() == [1, 2]
    with pytest.raises(SourceError, match='column "n" is string in .*2.parquet but int64 in .*0.parquet'):
        list(SourceReader(files, "parquet", ["n"]).blocks())


def test_missing_columns_are_listed_per_file(tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": [1], "b": [2]}), tmp_path / "0.parquet")
    pq.write_table(pa.table({"a": [1]}), tmp_path / "1.parquet")

    reader = SourceReader(local_files(f"{tmp_path}/*.parquet"), "parquet", ["a", "b", "c"])

    assert reader.missing == {"b": [f"{tmp_path}/1.parquet"],
                              "c": [f"{tmp_path}/0.parquet", f"{tmp_path}/1.parquet"]}


def test_a_local_file_that_changes_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a\n1\n")
    (file,) = local_files(str(path))

    assert not file.changed()
    path.write_text("a\n1\n2\n")
    assert file.changed()
