"""Evaluation gates: pure decisions on a version's metrics, and the champion's.

A gate names one of the TrainingRun's final metrics and bounds it absolutely (`min`, `max`) or
relative to the model's current champion (`minDeltaVsChampion`: value - champion >= delta;
`maxDeltaVsChampion`: value - champion <= delta). Relative bounds are resolved to absolute ones
so that the status shows the exact threshold each value was held to. A relative bound passes
when the model has no champion yet (the first version has nothing to be compared with) or the
champion never reported the metric; the gate's message says so, so the pass is never silent.

The gates of a version are evaluated once per spec generation, against the champion of that
moment, and frozen in status: once the version is champion itself, comparing it with itself
would be meaningless (status.py keeps the frozen result).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubeloop.modelversion.api import Gate, Reason


@dataclass(frozen=True)
class GateVerdict:
    """The gates' overall result: the per-gate status entries, and the condition to report."""

    results: list[dict[str, Any]]
    passed: bool
    reason: str
    message: str


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _bound(*candidates: float | None, pick: Any) -> float | None:
    present = [c for c in candidates if c is not None]
    return pick(present) if present else None


def evaluate_gate(gate: Gate, metrics: Mapping[str, Any], champion: str | None,
                  champion_metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    """One gate's status entry (camelCase, as GateResult): value, effective bounds, passed, message."""
    metric = str(gate.metric)
    value = _number(metrics.get(metric))
    relative = gate.min_delta_vs_champion is not None or gate.max_delta_vs_champion is not None
    champion_value = _number((champion_metrics or {}).get(metric)) if champion else None
    notes = []
    low, high = gate.min, gate.max
    if relative and champion_value is not None:
        low = _bound(low, None if gate.min_delta_vs_champion is None else champion_value + gate.min_delta_vs_champion,
                     pick=max)
        high = _bound(high, None if gate.max_delta_vs_champion is None else champion_value + gate.max_delta_vs_champion,
                      pick=min)
    elif relative and champion is None:
        notes.append("no champion yet: the comparison with it passes")
    elif relative:
        notes.append(f'champion "{champion}" has no {metric}: the comparison with it passes')
    entry: dict[str, Any] = {"metric": metric, "value": value, "championValue": champion_value,
                             "min": low, "max": high}
    if value is None:
        offered = ", ".join(sorted(metrics)) or "none"
        return {**entry, "passed": False,
                "message": f"the TrainingRun reported no metric {metric!r} (it reported: {offered})"}
    failures = []
    if low is not None and value < low:
        failures.append(f"{metric} {value:.6g} < {low:.6g}")
    if high is not None and value > high:
        failures.append(f"{metric} {value:.6g} > {high:.6g}")
    if failures:
        against = f" (champion {champion}: {champion_value:.6g})" if champion_value is not None else ""
        return {**entry, "passed": False, "message": "; ".join(failures) + against}
    bounds = " and ".join(part for part in (
        f">= {low:.6g}" if low is not None else "", f"<= {high:.6g}" if high is not None else "") if part)
    text = f"{metric} {value:.6g} {bounds}".strip() if bounds else f"{metric} {value:.6g}"
    return {**entry, "passed": True, "message": "; ".join([text, *notes])}


def evaluate_gates(gates: Sequence[Gate], metrics: Mapping[str, Any], champion: str | None,
                   champion_metrics: Mapping[str, Any] | None) -> GateVerdict:
    """Every gate, in spec order, and the verdict: all must pass (no gates: passes)."""
    results = [evaluate_gate(gate, metrics, champion, champion_metrics) for gate in gates]
    failed = [r for r in results if not r["passed"]]
    if not failed:
        what = f"{len(results)} gate(s) passed" if results else "no gates: registered without evaluation"
        return GateVerdict(results, True, Reason.GATES_PASSED, what)
    missing = [r for r in failed if r["value"] is None]
    reason = Reason.METRIC_MISSING if missing and len(missing) == len(failed) else Reason.GATES_FAILED
    message = "; ".join(r["message"] for r in failed) + ": nothing is deployed"
    return GateVerdict(results, False, reason, message)
