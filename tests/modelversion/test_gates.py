"""Evaluation gates (modelversion/gates.py): absolute and champion-relative bounds, exact."""

from __future__ import annotations

import pytest

from kubeloop.modelversion.api import Gate, Reason
from kubeloop.modelversion.gates import evaluate_gate, evaluate_gates


def gate(**fields: object) -> Gate:
    return Gate.model_validate({"metric": "auc", **fields})


def test_absolute_bounds_pass_and_fail_with_the_threshold_in_the_message():
    passed = evaluate_gate(gate(min=0.8), {"auc": 0.85}, None, None)
    assert passed == {"metric": "auc", "value": 0.85, "championValue": None, "min": 0.8, "max": None,
                      "passed": True, "message": "auc 0.85 >= 0.8"}
    failed = evaluate_gate(gate(min=0.9), {"auc": 0.85}, None, None)
    assert not failed["passed"] and failed["message"] == "auc 0.85 < 0.9"
    too_high = evaluate_gate(Gate(metric="loss", max=0.3), {"loss": 0.31}, None, None)
    assert not too_high["passed"] and too_high["message"] == "loss 0.31 > 0.3"


def test_the_bound_itself_passes():
    assert evaluate_gate(gate(min=0.85, max=0.85), {"auc": 0.85}, None, None)["passed"]


def test_champion_relative_bounds_resolve_to_absolute_thresholds():
    result = evaluate_gate(gate(min_delta_vs_champion=-0.01), {"auc": 0.80}, "fraud-v1", {"auc": 0.82})
    assert result["min"] == pytest.approx(0.81) and result["championValue"] == 0.82
    assert not result["passed"] and "champion fraud-v1: 0.82" in result["message"]
    ok = evaluate_gate(gate(min_delta_vs_champion=0.0), {"auc": 0.83}, "fraud-v1", {"auc": 0.82})
    assert ok["passed"] and ok["min"] == 0.82


def test_the_stricter_of_absolute_and_relative_bounds_applies():
    result = evaluate_gate(gate(min=0.9, min_delta_vs_champion=0.0), {"auc": 0.88}, "v1", {"auc": 0.8})
    assert result["min"] == 0.9 and not result["passed"]
    loss = evaluate_gate(Gate(metric="rmse", max=10.0, max_delta_vs_champion=0.0), {"rmse": 4.0}, "v1", {"rmse": 3.0})
    assert loss["max"] == 3.0 and not loss["passed"]


def test_relative_bounds_pass_without_a_champion_and_say_so():
    result = evaluate_gate(gate(min_delta_vs_champion=0.0), {"auc": 0.5}, None, None)
    assert result["passed"] and "no champion yet" in result["message"]
    missing = evaluate_gate(gate(min_delta_vs_champion=0.0), {"auc": 0.5}, "v1", {"loss": 0.2})
    assert missing["passed"] and 'champion "v1" has no auc' in missing["message"]


def test_a_metric_the_run_did_not_report_fails_naming_what_it_did_report():
    result = evaluate_gate(gate(min=0.5), {"accuracy": 0.9, "loss": 0.1}, None, None)
    assert not result["passed"]
    assert result["message"] == "the TrainingRun reported no metric 'auc' (it reported: accuracy, loss)"
    verdict = evaluate_gates([gate(min=0.5)], {"accuracy": 0.9}, None, None)
    assert verdict.reason == Reason.METRIC_MISSING and not verdict.passed


def test_verdict_lists_every_failure_and_keeps_spec_order():
    verdict = evaluate_gates([gate(min=0.9), Gate(metric="loss", max=0.1), Gate(metric="accuracy", min=0.5)],
                             {"auc": 0.85, "loss": 0.2, "accuracy": 0.7}, None, None)
    assert [r["metric"] for r in verdict.results] == ["auc", "loss", "accuracy"]
    assert not verdict.passed and verdict.reason == Reason.GATES_FAILED
    assert verdict.message == "auc 0.85 < 0.9; loss 0.2 > 0.1: nothing is deployed"


def test_no_gates_pass():
    verdict = evaluate_gates([], {"auc": 0.1}, None, None)
    assert verdict.passed and verdict.results == []
