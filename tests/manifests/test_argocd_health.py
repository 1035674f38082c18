"""Argo CD's health of kubeloop's kinds: manifests/argocd/health.lua run by a real Lua 5.1
interpreter (lupa; Argo CD's gopher-lua implements Lua 5.1) against statuses of every phase,
the way Argo CD runs it: the live object as the global `obj`, a {status, message} table back."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from lupa import lua51

from kubeloop.driftmonitor.api import DriftMonitorPhase
from kubeloop.featureset.api import FeatureSetPhase
from kubeloop.modelversion.api import ModelVersionPhase
from kubeloop.trainingrun.api import TrainingRunPhase
from tests.manifests.rendering import MANIFESTS, find, render

SCRIPT = (MANIFESTS / "argocd" / "health.lua").read_text()
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

EXPECTED: dict[str, dict[str, str]] = {
    "FeatureSet": {"Pending": "Progressing", "Materializing": "Progressing", "Ready": "Healthy",
                   "Failed": "Degraded"},
    "TrainingRun": {"Pending": "Progressing", "Running": "Progressing", "Succeeded": "Healthy",
                    "Failed": "Degraded", "Suspended": "Suspended"},
    "ModelVersion": {"Pending": "Progressing", "Registered": "Healthy", "Deploying": "Progressing",
                     "Canary": "Progressing", "Serving": "Healthy", "GatesFailed": "Degraded",
                     "RolledBack": "Degraded", "Retired": "Healthy", "Failed": "Degraded"},
    "DriftMonitor": {"Pending": "Progressing", "Healthy": "Healthy", "InsufficientData": "Healthy",
                     "Drifted": "Degraded", "Retraining": "Progressing", "Failed": "Degraded"},
}
PHASES = {"FeatureSet": FeatureSetPhase, "TrainingRun": TrainingRunPhase, "ModelVersion": ModelVersionPhase,
          "DriftMonitor": DriftMonitorPhase}


def lua_value(runtime: Any, value: Any) -> Any:
    """A Python value as Lua sees a Kubernetes object in Argo CD (tables for maps and lists)."""
    if isinstance(value, dict):
        return runtime.table_from({key: lua_value(runtime, item) for key, item in value.items()})
    if isinstance(value, list):
        return runtime.table_from([lua_value(runtime, item) for item in value])
    return value


def health(obj: dict[str, Any]) -> dict[str, str]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = lua_value(runtime, obj)
    result = runtime.execute(SCRIPT)
    return {"status": result["status"], "message": result["message"]}


def resource(kind: str, phase: str | None, *, generation: int = 2, observed: int | None = 2,
             conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": conditions or []}
    if phase is not None:
        status["phase"] = phase
    if observed is not None:
        status["observedGeneration"] = observed
    return {"apiVersion": "kubeloop.dev/v1alpha1", "kind": kind,
            "metadata": {"name": "x", "namespace": "ml", "generation": generation}, "status": status}


def test_the_script_knows_every_phase_of_every_kind() -> None:
    # A phase added to an api.py without a health verdict would show as Unknown in Argo CD.
    for kind, phases in PHASES.items():
        assert set(EXPECTED[kind]) == set(get_args(phases)), kind


@pytest.mark.parametrize(("kind", "phase"), [(k, p) for k, phases in EXPECTED.items() for p in phases])
def test_each_phase_maps_to_its_health(kind: str, phase: str) -> None:
    ready = {"type": "Ready", "status": "True", "reason": "Ready", "message": "all conditions are satisfied"}
    result = health(resource(kind, phase, conditions=[ready]))
    assert result["status"] == EXPECTED[kind][phase]
    assert result["status"] in ARGO_STATUSES
    assert result["message"] == f"{kind} is {phase}: all conditions are satisfied"


def test_a_new_object_is_progressing_until_the_operator_writes_status() -> None:
    obj = resource("TrainingRun", None)
    del obj["status"]
    assert health(obj) == {"status": "Progressing", "message": "Waiting for the kubeloop operator"}


def test_a_changed_spec_is_progressing_until_observed() -> None:
    result = health(resource("FeatureSet", "Ready", generation=3, observed=2))
    assert result == {"status": "Progressing",
                      "message": "Waiting for the kubeloop operator to observe generation 3"}
    assert health(resource("FeatureSet", "Ready", generation=3, observed=None))["status"] == "Progressing"


def test_an_invalid_spec_is_degraded_with_the_field_named() -> None:
    accepted = {"type": "Accepted", "status": "False", "reason": "InvalidSpec",
                "message": 'spec.schedule: invalid cron expression "x"'}
    result = health(resource("FeatureSet", "Failed", conditions=[accepted]))
    assert result == {"status": "Degraded", "message": 'spec.schedule: invalid cron expression "x"'}


def test_the_failure_reason_reaches_the_message() -> None:
    ready = {"type": "Ready", "status": "False", "reason": "GatesFailed", "message": "auc 0.81 < 0.85"}
    result = health(resource("ModelVersion", "GatesFailed", conditions=[ready]))
    assert result == {"status": "Degraded", "message": "ModelVersion is GatesFailed: auc 0.81 < 0.85"}


def test_status_without_a_phase_or_conditions() -> None:
    obj = resource("DriftMonitor", None)
    del obj["status"]["conditions"]
    assert health(obj)["status"] == "Progressing"
    unknown = health(resource("DriftMonitor", "Sleeping"))
    assert unknown["status"] == "Unknown" and "Sleeping" in unknown["message"]


def test_argocd_cm_registers_the_script_for_each_kind() -> None:
    cm = find(render(MANIFESTS / "argocd"), "ConfigMap", "argocd-cm")
    assert cm["metadata"]["namespace"] == "argocd"
    assert cm["data"] == {f"resource.customizations.health.kubeloop.dev_{kind}": SCRIPT for kind in EXPECTED}
