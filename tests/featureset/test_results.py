"""Run results: the materializer's report to the controller, and the reader the operator uses."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from kubeloop.featureset.api import Reason
from kubeloop.featureset.results import (
    RunResult,
    Violation,
    latest_run,
    read_runs,
    run_result_key,
    spec_digest,
    write_run,
)
from kubeloop.store import ObjectStore

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def result(name: str, run_id: str, finished: datetime, reason: Reason = Reason.MATERIALIZED, **fields) -> RunResult:
    code = 0 if reason == Reason.MATERIALIZED else 3
    return RunResult(run_id=run_id, namespace="ml", name=name, started_at=finished - timedelta(minutes=1),
                     finished_at=finished, reason=reason, message="m", exit_code=code, **fields)


def test_the_document_has_the_contract_fields() -> None:
    violation = Violation("amount", "maxNullFraction", 3, 10, "column ...")
    document = result("fs", "fs-g1-abcde", T0, Reason.CONTRACT_VIOLATED, violations=(violation,), rows=10,
                      generation=4, uid="u", spec_digest="sha256:00").to_dict()

    assert document == {
        "kind": "FeatureSetRunResult", "schemaVersion": 1, "runId": "fs-g1-abcde", "pod": None,
        "featureSet": {"namespace": "ml", "name": "fs", "uid": "u", "generation": 4}, "specDigest": "sha256:00",
        "startedAt": "2026-01-02T03:03:05.000000Z", "finishedAt": "2026-01-02T03:04:05.000000Z",
        "outcome": "Failed", "reason": "ContractViolated", "message": "m", "exitCode": 3, "version": None,
        "versionDigest": None, "rows": 10,
        "violations": [{"column": "amount", "rule": "maxNullFraction", "count": 3, "total": 10,
                        "message": "column ..."}],
    }
    assert Violation.from_dict(document["violations"][0]) == violation


def test_reason_and_exit_code_must_agree() -> None:
    with pytest.raises(ValueError):
        RunResult(run_id="r", namespace="ml", name="fs", started_at=T0, finished_at=T0, reason=Reason.MATERIALIZED,
                  message="", exit_code=3)
    with pytest.raises(ValueError):
        RunResult(run_id="r", namespace="ml", name="fs", started_at=T0, finished_at=T0, reason=Reason.READY,
                  message="", exit_code=3)


def test_keys_and_digest() -> None:
    assert run_result_key("ml", "fs", "fs-28391") == "featuresets/ml/fs/runs/fs-28391.json"
    with pytest.raises(ValueError):
        run_result_key("ml", "fs", "../escape")
    assert spec_digest({"b": 1, "a": [1, 2]}) == spec_digest({"a": [1, 2], "b": 1})
    assert spec_digest({"a": 1}).startswith("sha256:") and spec_digest({"a": 1}) != spec_digest({"a": 2})


def test_read_runs_orders_by_finish_time_and_skips_junk(store: ObjectStore) -> None:
    name = f"runs-{uuid.uuid4().hex[:6]}"
    write_run(store, result(name, "b-second", T0 + timedelta(hours=1)))
    write_run(store, result(name, "a-third", T0 + timedelta(hours=2), Reason.SOURCE_UNAVAILABLE))
    write_run(store, result(name, "c-first", T0))
    store.put_bytes(f"featuresets/ml/{name}/runs/broken.json", b"{not json")
    store.put_json(f"featuresets/ml/{name}/runs/other.json", {"kind": "Something"})

    runs = read_runs(store, "ml", name)

    assert [run["runId"] for run in runs] == ["c-first", "b-second", "a-third"]
    newest = latest_run(store, "ml", name)
    assert newest is not None and newest["runId"] == "a-third" and newest["outcome"] == "Failed"
    limited = read_runs(store, "ml", name, limit=2)
    assert len(limited) == 2 and limited == sorted(limited, key=lambda run: run["finishedAt"])
    assert latest_run(store, "ml", f"never-{name}") is None


def test_a_retried_attempt_replaces_its_run_result(store: ObjectStore) -> None:
    name = f"retry-{uuid.uuid4().hex[:6]}"
    write_run(store, result(name, "job-1", T0, Reason.MATERIALIZATION_FAILED))
    write_run(store, result(name, "job-1", T0 + timedelta(minutes=5)))

    runs = read_runs(store, "ml", name)

    assert len(runs) == 1 and runs[0]["outcome"] == "Succeeded"


def test_results_module_imports_no_data_libraries() -> None:
    """The operator imports results.py: it must not pull pyarrow, numpy or pandas in."""
    code = ("import sys, kubeloop.featureset.results; "
            "print(sorted(m for m in ('pyarrow', 'numpy', 'pandas') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
