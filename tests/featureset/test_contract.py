"""The data contract's pieces: parsing declared CSV types, the per-column counts, and the exact
uniqueness check with its disk spill."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from kubeloop.featureset import contract
from kubeloop.featureset.api import ColumnRule, Validation
from kubeloop.featureset.contract import ColumnCheck, ContractChecker, KeyUniqueness, parse_declared


@pytest.mark.parametrize(("column_type", "texts", "values", "bad"), [
    ("integer", ["1", " +2 ", "-3", "1.5", "abc", None, "9223372036854775807", "9223372036854775808"],
     [1, 2, -3, None, None, None, 2**63 - 1, None], [0, 0, 0, 1, 1, 0, 0, 1]),
    ("float", ["1.5", ".5", "1e3", "inf", "NaN", "x", None, " 2 "],
     [1.5, 0.5, 1000.0, float("inf"), None, None, None, 2.0], [0, 0, 0, 0, 0, 1, 0, 0]),
    ("boolean", ["true", "FALSE", "1", "0", "yes", None], [True, False, True, False, None, None], [0, 0, 0, 0, 1, 0]),
    ("string", ["a", "", None], ["a", "", None], [0, 0, 0]),
])
def test_parse_declared(column_type: Any, texts: list[str | None], values: list[Any], bad: list[int]) -> None:
    typed, mask = parse_declared(pa.array(texts, pa.large_string()), column_type)

    result = typed.to_pylist()
    if column_type == "float":
        result = [None if v is not None and v != v else v for v in result]  # NaN is null downstream
    assert result == values
    assert mask.astype(int).tolist() == bad


def test_parse_declared_timestamps_counts_impossible_dates() -> None:
    typed, mask = parse_declared(
        pa.array(["2024-01-02", "2024-01-02T03:04:05Z", "2024-13-01", "soon", None], pa.large_string()), "timestamp")

    assert mask.tolist() == [False, False, True, True, False]
    assert str(typed.type) == "timestamp[us, tz=UTC]"
    assert typed[0].as_py().isoformat() == "2024-01-02T00:00:00+00:00"
    assert typed[2].as_py() is None


def test_column_check_counts_nan_as_null_and_infinities_as_values() -> None:
    check = ColumnCheck(ColumnRule(column="x", min=0, max=10, max_null_fraction=0.2))

    check.update(pa.array([1.0, float("nan"), None, float("inf"), -float("inf"), 5.0]))
    check.update(pa.array([2.0, 3.0]))

    assert (check.rows, check.nulls, check.below, check.above) == (8, 2, 1, 1)
    assert [v.rule for v in check.violations()] == ["min", "max", "maxNullFraction"]
    assert check.violations()[0].message == 'column "x": 1 of 8 values (12.5%) are below min 0 (smallest -inf)'


def test_column_check_integer_rule_on_floats_counts_the_non_integral_ones() -> None:
    check = ColumnCheck(ColumnRule(column="n", type="integer"))

    check.update(pa.array([1.0, 2.5, None, 4.0, float("inf")]))

    (violation,) = check.violations()
    assert violation.count == 2
    assert violation.message == 'column "n": 2 of 5 values (40%) are not integer (e.g. 2.5, inf)'


def test_column_check_allowed_values_compare_as_written() -> None:
    strings = ColumnCheck(ColumnRule(column="s", allowed_values=["1", "a"]))
    integers = ColumnCheck(ColumnRule(column="i", allowed_values=[1, "a"]))
    booleans = ColumnCheck(ColumnRule(column="b", allowed_values=["true"]))

    strings.update(pa.array(["1", "a", "2", None]))
    integers.update(pa.array([1, 2, None, 1]))
    booleans.update(pa.array([True, False, None]))

    assert [(v.count, v.message) for v in strings.violations()] == [
        (1, 'column "s": 1 of 4 values (25%) are not in allowedValues (e.g. "2")')]
    assert [v.count for v in integers.violations()] == [1]
    assert [v.count for v in booleans.violations()] == [1]


def _key_rows(rows: int, duplicates: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = rng.permutation(rows).astype(np.int64)
    names = np.array([f"n{i % 13}" for i in range(rows)], dtype=object)
    names[rng.integers(0, rows, 20)] = None
    repeat = rng.integers(0, rows, duplicates)
    return pa.table({"id": np.concatenate((ids, ids[repeat])), "name": pa.array(list(names) + list(names[repeat]))})


def _reference(table: pa.Table) -> int:
    counts = collections.Counter(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))
    return sum(n - 1 for n in counts.values())


def _uniqueness(table: pa.Table, tmp_path: Path, spill: int, block: int) -> tuple[int, int, list[tuple[Any, ...]]]:
    check = KeyUniqueness(["id", "name"], tmp_path, spill_hashes=spill)
    chunks = [table.slice(i, block) for i in range(0, table.num_rows, block)]
    for chunk in chunks:
        check.update(chunk)
    return check.finish(lambda: iter(chunks))


def test_uniqueness_is_exact_in_memory_and_when_spilled(tmp_path: Path) -> None:
    table = _key_rows(30_000, 250, seed=1)
    expected = _reference(table)

    in_memory = _uniqueness(table, tmp_path, spill=1 << 22, block=4096)
    spilled = _uniqueness(table, tmp_path, spill=1024, block=1000)

    assert in_memory[0] == spilled[0] == expected > 0
    assert in_memory[:2] == spilled[:2]
    assert list(tmp_path.iterdir()) == []  # spill files removed


def test_uniqueness_stays_exact_when_hashes_collide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 12-bit hash makes nearly every row a candidate: the answer must still be exact, via the
    re-read of the keys (spilled to disk too, since candidates exceed the budget) and the
    recursive split of the hash files down to single hash values."""
    real = contract.key_hashes
    monkeypatch.setattr(contract, "key_hashes", lambda table, columns: real(table, columns) & np.uint64(0xFFF))
    unique = _key_rows(8_000, 0, seed=2)
    duplicated = _key_rows(8_000, 40, seed=3)

    assert _uniqueness(unique, tmp_path, spill=1024, block=3000)[0] == 0
    extra, keys, examples = _uniqueness(duplicated, tmp_path, spill=1024, block=3000)
    assert extra == _reference(duplicated) > 0
    assert 0 < keys <= extra
    assert all(example[-1] >= 2 for example in examples)
    assert list(tmp_path.iterdir()) == []


def test_checker_reports_in_spec_order_and_reset_starts_over(tmp_path: Path) -> None:
    validation = Validation(min_rows=10, columns=[ColumnRule(column="b", max_null_fraction=0.0),
                                                  ColumnRule(column="a", max=1)])
    checker = ContractChecker(validation, ["k"], tmp_path)
    table = pa.table({"k": [1, 1, 2], "a": [0, 5, 1], "b": [None, 1.0, 2.0]})

    checker.update(table)
    checker.reset()
    checker.update(table)
    found = checker.finish(lambda: iter([table]))

    assert [(v.column, v.rule, v.count, v.total) for v in found] == [
        (None, "minRows", 3, 10), ("b", "maxNullFraction", 1, 3), ("a", "max", 1, 3), ("k", "uniqueKeys", 1, 3)]
    assert found[-1].message == ('key "k": 1 of 3 rows (33.3%) repeat the key of another row (1 keys occur more '
                                 "than once, e.g. k=1 (2 rows)); uniqueKeys requires each key once")


def test_no_validation_checks_nothing(tmp_path: Path) -> None:
    checker = ContractChecker(None, ["k"], tmp_path)
    checker.update(pa.table({"k": [1, 1]}))

    assert checker.finish(lambda: iter([])) == []
    assert checker.rows == 2
