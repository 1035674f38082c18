"""The rollout decisions and the status of a ModelVersion (modelversion/status.py): pure, with an
injected clock, against KServe statuses as the InferenceService controller writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubeloop.core.reconcile import Observed
from kubeloop.modelversion import status
from kubeloop.modelversion.api import ModelVersionSpec, Reason
from kubeloop.modelversion.gates import GateVerdict
from kubeloop.modelversion.status import CanaryHealth, ServingFacts, Traffic, decide_serving

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
STAGED = ModelVersionSpec.model_validate({
    "model": "fraud", "trainingRunRef": {"name": "r2"},
    "serving": {"rollout": {"steps": [10, 50, 100], "interval": "1m", "maxErrorRate": 0.05}}})
DIRECT = ModelVersionSpec.model_validate({"model": "fraud", "trainingRunRef": {"name": "r1"}})


def isvc(*, deployed: str, traffic: list[dict[str, Any]], ready: bool = True, canary: int | None = None,
         rolled_out: str | None = None, failed: str | None = None, generation: int = 2,
         observed: int = 2) -> dict[str, Any]:
    latest = max((t["revisionName"] for t in traffic), default="fraud-predictor-00001")
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if failed:
        conditions.append({"type": "PredictorReady", "status": "False", "reason": "RevisionFailed", "message": failed})
        latest = "fraud-predictor-00009"
    predictor: dict[str, Any] = {"containers": []}
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    return {"metadata": {"generation": generation, "annotations": {"kubeloop.dev/model-version": deployed}},
            "spec": {"predictor": predictor},
            "status": {"observedGeneration": observed, "url": "http://fraud.risk.example.com", "conditions": conditions,
                       "components": {"predictor": {
                           "latestCreatedRevision": latest, "latestReadyRevision": latest if not failed else None,
                           "latestRolledoutRevision": rolled_out, "traffic": traffic}}}}


def traffic(isvc_doc: dict[str, Any] | None, deployed: str | None) -> Traffic:
    return status.traffic_of(isvc_doc, deployed, managed=True)


def facts(me: str, champion: str | None, isvc_doc: dict[str, Any] | None, *, previous: dict[str, Any] | None = None,
          deployed_phase: str | None = None, health: CanaryHealth | None = None) -> ServingFacts:
    deployed = (isvc_doc or {}).get("metadata", {}).get("annotations", {}).get("kubeloop.dev/model-version")
    return ServingFacts(me=me, champion=champion, champion_live=champion is not None, deployed_phase=deployed_phase,
                        traffic=traffic(isvc_doc, deployed), previous=previous or {}, health=health)


LATEST_100 = [{"revisionName": "fraud-predictor-00001", "percent": 100, "latestRevision": True}]


def canary_split(percent: int) -> list[dict[str, Any]]:
    return [{"revisionName": "fraud-predictor-00002", "percent": percent, "latestRevision": True},
            {"revisionName": "fraud-predictor-00001", "percent": 100 - percent, "latestRevision": False,
             "tag": "prev"}]


# -- the first version of a model -----------------------------------------------------------------


def test_first_version_deploys_with_all_traffic_then_promotes():
    start = decide_serving(DIRECT, facts("v1", None, None), NOW)
    assert start.apply and start.canary_percent is None and start.phase == "Deploying" and not start.promote
    served = isvc(deployed="v1", traffic=LATEST_100, rolled_out="fraud-predictor-00001")
    done = decide_serving(DIRECT, facts("v1", None, served), NOW)
    assert done.promote and done.phase == "Serving" and done.traffic_percent == 100
    assert done.rolled_out.reason == Reason.PROMOTED


def test_status_of_stale_inference_service_waits_for_kserve_to_observe_the_change():
    stale = isvc(deployed="v1", traffic=LATEST_100, rolled_out="fraud-predictor-00001", generation=3, observed=2)
    decision = decide_serving(DIRECT, facts("v1", None, stale), NOW)
    assert not decision.promote and decision.phase == "Deploying"


# -- a staged rollout ----------------------------------------------------------------------------------


def test_canary_step_is_held_for_its_interval_then_judged():
    step = isvc(deployed="v2", traffic=canary_split(10), canary=10, rolled_out="fraud-predictor-00001")
    first = decide_serving(STAGED, facts("v2", "v1", step), NOW)
    assert first.phase == "Canary" and first.canary_percent == 10 and first.traffic_percent == 10
    assert first.rollout == {"step": 0, "stepStartTime": NOW.isoformat(), "previousChampion": "v1"}
    held = decide_serving(STAGED, facts("v2", "v1", step, previous={"rollout": first.rollout}),
                          NOW + timedelta(seconds=30))
    assert not held.needs_health and held.canary_percent == 10
    due = decide_serving(STAGED, facts("v2", "v1", step, previous={"rollout": first.rollout}),
                         NOW + timedelta(minutes=1))
    assert due.needs_health
    passed = decide_serving(STAGED, facts("v2", "v1", step, previous={"rollout": first.rollout},
                                          health=CanaryHealth(requests=200, error_rate=0.01)),
                            NOW + timedelta(minutes=1))
    assert passed.canary_percent == 50 and passed.rollout == {"step": 1, "stepStartTime": None,
                                                              "previousChampion": "v1"}
    assert "step 1/3 passed (200 requests, error rate 1.00%)" in passed.rolled_out.message


def test_failed_step_rolls_back_to_the_champion():
    step = isvc(deployed="v2", traffic=canary_split(50), canary=50, rolled_out="fraud-predictor-00001")
    previous = {"rollout": {"step": 1, "stepStartTime": NOW.isoformat(), "previousChampion": "v1"}}
    decision = decide_serving(STAGED, facts("v2", "v1", step, previous=previous,
                                            health=CanaryHealth(requests=100, error_rate=0.2)),
                              NOW + timedelta(minutes=2))
    assert decision.phase == "RolledBack" and decision.canary_percent == 0 and decision.apply
    assert decision.rolled_out.reason == Reason.ROLLED_BACK
    assert "error rate 20.00% > maxErrorRate 5.00%" in decision.serving.message
    assert decision.event is not None and decision.event[0] == "Warning"


def test_unavailable_figures_do_not_fail_a_step_but_are_reported():
    step = isvc(deployed="v2", traffic=canary_split(10), canary=10, rolled_out="fraud-predictor-00001")
    previous = {"rollout": {"step": 0, "stepStartTime": NOW.isoformat()}}
    decision = decide_serving(STAGED, facts("v2", "v1", step, previous=previous,
                                            health=CanaryHealth(unavailable="no Prometheus is configured")),
                              NOW + timedelta(minutes=5))
    assert decision.canary_percent == 50
    assert "failure conditions not evaluated: no Prometheus is configured" in decision.rolled_out.message


def test_last_step_sends_all_traffic_then_promotes():
    previous = {"rollout": {"step": 2, "stepStartTime": None, "previousChampion": "v1"}}
    moving = isvc(deployed="v2", traffic=canary_split(50), canary=50, rolled_out="fraud-predictor-00001")
    decision = decide_serving(STAGED, facts("v2", "v1", moving, previous=previous), NOW)
    assert decision.canary_percent is None and not decision.promote
    promoted_isvc = isvc(deployed="v2", traffic=[{"revisionName": "fraud-predictor-00002", "percent": 100,
                                                  "latestRevision": True}], rolled_out="fraud-predictor-00002")
    done = decide_serving(STAGED, facts("v2", "v1", promoted_isvc, previous=previous), NOW)
    assert done.promote and done.phase == "Serving" and '"v1" retires' in done.rolled_out.message


def test_a_revision_that_cannot_start_rolls_back():
    failing = isvc(deployed="v2", traffic=canary_split(0)[1:], canary=10, rolled_out="fraud-predictor-00001",
                   failed="Revision fraud-predictor-00009 failed: ExitCode3")
    decision = decide_serving(STAGED, facts("v2", "v1", failing), NOW)
    assert decision.phase == "RolledBack" and "ExitCode3" in decision.serving.message


def test_one_rollout_per_model_at_a_time():
    other = isvc(deployed="v3", traffic=canary_split(10), canary=10)
    decision = decide_serving(STAGED, facts("v4", "v1", other, deployed_phase="Canary"), NOW)
    assert not decision.apply and decision.phase == "Deploying"
    assert 'waiting for the rollout of "v3"' in decision.serving.message


def test_without_a_live_champion_a_staged_spec_deploys_directly():
    decision = decide_serving(STAGED, facts("v2", None, None), NOW)
    assert decision.canary_percent is None


# -- the champion and the retired -------------------------------------------------------------------


def test_champion_leaves_the_inference_service_to_a_rolling_candidate():
    step = isvc(deployed="v2", traffic=canary_split(10), canary=10, rolled_out="fraud-predictor-00001")
    decision = decide_serving(STAGED, facts("v1", "v1", step, deployed_phase="Canary"), NOW)
    assert not decision.apply and decision.phase == "Serving" and decision.traffic_percent == 90


def test_champion_takes_the_inference_service_back_after_a_rollback():
    rolled_back = isvc(deployed="v2", traffic=canary_split(0)[1:], canary=0, rolled_out="fraud-predictor-00001")
    decision = decide_serving(STAGED, facts("v1", "v1", rolled_back, deployed_phase="RolledBack"), NOW)
    assert decision.apply and decision.canary_percent is None and decision.take_ownership


def test_former_champion_retires():
    decision = decide_serving(STAGED, facts("v1", "v2", None, previous={"champion": True, "phase": "Serving"}), NOW)
    assert decision.phase == "Retired" and decision.traffic_percent == 0 and not decision.apply


def test_rolled_back_is_final_for_the_generation():
    previous = {"phase": "RolledBack", "conditions": [
        {"type": "RolledOut", "status": "False", "reason": "RolledBack", "message": "step 1 failed"}]}
    decision = decide_serving(STAGED, facts("v2", "v1", None, previous=previous), NOW)
    assert decision.phase == "RolledBack" and not decision.apply
    assert decision.rolled_out.message == "step 1 failed"


def test_someone_elses_inference_service_is_not_taken_over():
    foreign = status.traffic_of(isvc(deployed="x", traffic=LATEST_100), None, managed=False)
    decision = decide_serving(DIRECT, ServingFacts("v1", None, False, None, foreign, {}), NOW)
    assert not decision.apply and "not managed by kubeloop" in decision.serving.message


# -- compute_status ----------------------------------------------------------------------------------


def observed(previous: dict[str, Any] | None = None) -> Observed:
    return Observed(name="v2", namespace="risk", uid="u", generation=1, labels={}, status=previous or {}, now=NOW)


def registration() -> status.Registration:
    return status.Registration("s3://kubeloop/x/versions/aaaaaaaaaaaa.json", "sha256:" + "a" * 64, {"auc": 0.9},
                               {"trainingRun": "r2", "featureSet": "tx", "featureSetVersion": "abc", "seed": 7})


def test_gates_failed_stops_before_serving():
    verdict = GateVerdict([{"metric": "auc", "passed": False}], False, Reason.GATES_FAILED, "auc 0.5 < 0.8")
    result = status.compute_status(status.StatusInputs(
        STAGED, observed(), registration=registration(),
        verification=status.Decision("True", Reason.ARTIFACT_VERIFIED, "ok"), gates=verdict))
    assert result["phase"] == "GatesFailed"
    ready = next(c for c in result["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == Reason.GATES_FAILED
    assert result["lineage"]["featureSetVersion"] == "abc" and result["metrics"] == {"auc": 0.9}


def test_a_refused_artifact_fails_the_version():
    result = status.compute_status(status.StatusInputs(
        STAGED, observed(), registration=registration(),
        verification=status.Decision("False", Reason.ARTIFACT_DIGEST_MISMATCH, "model.pt was modified")))
    assert result["phase"] == "Failed"
    ready = next(c for c in result["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == Reason.ARTIFACT_DIGEST_MISMATCH and "model.pt" in ready["message"]


def test_waiting_for_the_training_run():
    source = status.registration_source("r2", "risk", {"status": {"phase": "Running"}}, None, None)
    assert isinstance(source, tuple)
    result = status.compute_status(status.StatusInputs(STAGED, observed(), waiting=source))
    assert result["phase"] == "Pending"
    missing = status.registration_source("r9", "risk", None, None, None)
    assert isinstance(missing, tuple) and missing[1].reason == Reason.TRAINING_RUN_NOT_FOUND
    assert 'TrainingRun "r9" does not exist in namespace "risk"' in missing[1].message


def test_registration_reads_lineage_from_the_run_record():
    record = {"artifact": {"uri": "s3://b/p/versions/abcabcabcabc.json", "digest": "sha256:" + "b" * 64,
                           "files": {"model.pt": "sha256:" + "c" * 64}},
              "metrics": {"auc": 0.91, "loss": 0.2, "note": "x"},
              "featureSet": {"name": "tx", "version": "v9", "digest": "sha256:" + "d" * 64},
              "data": {"digest": "sha256:" + "e" * 64}, "environment": {"image": "trainer:1", "gitSha": "abc123"},
              "reproducibility": {"seed": 42}}
    source = status.registration_source("r2", "risk", {"status": {"phase": "Succeeded"}}, record, None)
    assert isinstance(source, status.Registration)
    assert source.metrics == {"auc": 0.91, "loss": 0.2}
    assert source.lineage == {"trainingRun": "r2", "featureSet": "tx", "featureSetVersion": "v9",
                              "featureSetDigest": "sha256:" + "d" * 64, "dataDigest": "sha256:" + "e" * 64,
                              "image": "trainer:1", "gitSha": "abc123", "seed": 42}
