"""The TrainingRun's status decisions (`trainingrun.status`): each small function, then the whole
status for the situations a run goes through. Pure: no cluster, no store, exact clock."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from kubeloop.core.conditions import find_condition
from kubeloop.core.reconcile import Observed
from kubeloop.core.settings import Settings
from kubeloop.trainingrun import desired, status
from kubeloop.trainingrun.api import Reason, TrainingRunSpec, TrainingRunStatus

NOW = datetime(2026, 11, 27, 3, 0, 0, tzinfo=UTC)
UID = "uid-1"
DIGEST = "sha256:" + "ab" * 32
DATA_DIGEST = "sha256:" + "cd" * 32
SPEC: dict[str, Any] = {
    "featureSetRef": {"name": "customers"},
    "target": "is_fraud",
    "model": {"family": "mlp", "task": "classification"},
    "hyperparameters": {"epochs": 4},
    "workers": 2,
    "maxRestarts": 2,
}
VERSION = desired.FeatureSetVersion("customers", "0123456789ab", DIGEST)


def spec_of(**changes: Any) -> TrainingRunSpec:
    return TrainingRunSpec.model_validate({**SPEC, **changes})


def observed(previous: dict[str, Any] | None = None, generation: int = 1, now: datetime = NOW) -> Observed:
    return Observed(name="run", namespace="ml", uid=UID, generation=generation, labels={},
                    status=previous or {}, now=now)


def featureset(latest: str | None = "0123456789ab", versions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    entries = versions if versions is not None else ([{"id": latest, "digest": DIGEST}] if latest else [])
    return {"metadata": {"name": "customers"}, "status": {"latestVersion": latest, "versions": entries}}


def job(attempt: int = 1, *, spec: TrainingRunSpec | None = None, conditions: list[dict[str, Any]] | None = None,
        **job_status: Any) -> dict[str, Any]:
    built = desired.desired_job(spec or spec_of(), desired.Owner("run", "ml", UID, 1), attempt, VERSION, Settings())
    built["metadata"]["creationTimestamp"] = "2026-11-27T02:00:00Z"
    built["status"] = {"startTime": f"2026-11-27T02:0{attempt}:00Z", **job_status}
    if conditions:
        built["status"]["conditions"] = conditions
    return built


def failed(reason: str, message: str = "", at: str = "2026-11-27T02:30:00Z") -> list[dict[str, Any]]:
    return [{"type": "Failed", "status": "True", "reason": reason, "message": message, "lastTransitionTime": at}]


COMPLETE = [{"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "",
             "lastTransitionTime": "2026-11-27T02:40:00Z"}]


def record() -> dict[str, Any]:
    """A run record shaped as train.py writes it."""
    return {
        "kind": "TrainingRunRecord", "outcome": "Succeeded",
        "run": {"name": "run", "namespace": "ml", "uid": UID, "attempt": 1},
        "metrics": {"loss": 0.31, "accuracy": 0.9, "auc": 0.93, "f1": 0.71, "trainLoss": 0.3},
        "keyMetric": {"name": "auc", "value": 0.93},
        "featureSet": {"name": "customers", "version": "0123456789ab", "digest": DIGEST},
        "environment": {"python": "3.12.3", "torch": "2.5.1", "numpy": "2.1.0", "image": None},
        "reproducibility": {"seed": 42, "deterministic": True, "worldSize": 2, "backend": "gloo", "deviceType": "cpu",
                            "image": None, "gitSha": None, "pythonVersion": "3.12.3", "torchVersion": "2.5.1",
                            "numpyVersion": "2.1.0", "featureSetDigest": DIGEST, "dataDigest": DATA_DIGEST},
        "artifact": {"uri": "s3://kubeloop/trainingruns/ml/run/artifact/versions/abc.json", "digest": DIGEST,
                     "shortDigest": DIGEST[7:19]},
    }


# -- the FeatureSet ---------------------------------------------------------------------------


def test_a_missing_featureset_is_waited_for_with_a_condition():
    decision, version = status.feature_set_resolution("customers", None, None)
    assert (decision.status, decision.reason, version) == ("False", Reason.FEATURE_SET_NOT_FOUND, None)
    assert '"customers"' in decision.message


def test_a_featureset_without_a_version_is_not_ready():
    decision, version = status.feature_set_resolution("customers", None, featureset(latest=None))
    assert (decision.status, decision.reason, version) == ("False", Reason.FEATURE_SET_NOT_READY, None)


def test_the_latest_version_is_trained_on_by_default():
    decision, version = status.feature_set_resolution("customers", None, featureset())
    assert decision.status == "True"
    assert version == VERSION


def test_a_pinned_version_must_be_published():
    listed = [{"id": "0123456789ab", "digest": DIGEST}, {"id": "ffffffffffff", "digest": DATA_DIGEST}]
    decision, version = status.feature_set_resolution("customers", "ffffffffffff", featureset(versions=listed))
    assert version == desired.FeatureSetVersion("customers", "ffffffffffff", DATA_DIGEST)
    decision, version = status.feature_set_resolution("customers", "eeeeeeeeeeee", featureset())
    assert (decision.reason, version) == (Reason.FEATURE_SET_NOT_READY, None)
    assert "eeeeeeeeeeee" in decision.message


# -- immutability -----------------------------------------------------------------------------


def test_the_spec_is_accepted_before_the_first_job_and_while_unchanged():
    assert status.spec_change(None, spec_of().to_dict(), "").status == "True"
    assert status.spec_change(spec_of().to_dict(), spec_of().to_dict(), "run-a1").status == "True"


def test_suspend_may_change():
    assert status.spec_change(spec_of().to_dict(), spec_of(suspend=True).to_dict(), "run-a1").status == "True"


def test_a_spec_change_is_refused_naming_what_changed_and_what_to_do():
    decision = status.spec_change(spec_of().to_dict(), spec_of(workers=4, seed=7).to_dict(), "run-a1")
    assert (decision.status, decision.reason) == ("False", Reason.SPEC_IMMUTABLE)
    assert "spec.seed, spec.workers changed after Job run-a1" in decision.message
    assert "create a new TrainingRun" in decision.message


# -- the attempt ------------------------------------------------------------------------------


@pytest.mark.parametrize(("the_job", "failure", "expected"), [
    (job(conditions=COMPLETE), None, ("succeeded", Reason.SUCCEEDED)),
    (job(conditions=failed("PodFailurePolicy")), {"reason": "TrainingFailed", "message": "no column x"},
     ("permanent", "TrainingFailed")),
    (job(conditions=failed("PodFailurePolicy")), {"reason": "not a reason!", "message": "m"},
     ("permanent", Reason.TRAINING_FAILED)),
    (job(conditions=failed("PodFailurePolicy")), None, ("permanent", Reason.TRAINING_FAILED)),
    (job(conditions=failed("DeadlineExceeded")), None, ("permanent", Reason.DEADLINE_EXCEEDED)),
    (job(conditions=failed("BackoffLimitExceeded", "Job has reached the specified backoff limit")), None,
     ("transient", Reason.BACKOFF_LIMIT_EXCEEDED)),
    (job(active=2, ready=2), None, ("running", Reason.RUNNING)),
    (job(active=2, ready=0), None, ("starting", Reason.JOB_CREATED)),
])
def test_attempt_state(the_job: dict[str, Any], failure: dict[str, Any] | None, expected: tuple[str, str]):
    state = status.attempt_state(the_job, spec_of(), failure)
    assert (state.phase, state.reason) == expected


def test_the_trainers_message_is_shown_for_a_permanent_failure():
    state = status.attempt_state(job(conditions=failed("PodFailurePolicy")), spec_of(),
                                 {"reason": "TrainingFailed", "message": 'target column "x" does not exist'})
    assert state.message == 'target column "x" does not exist'


def test_a_suspended_or_queued_job():
    suspended = [{"type": "Suspended", "status": "True", "reason": "JobSuspended", "message": ""}]
    assert status.attempt_state(job(conditions=suspended), spec_of(suspend=True), None).phase == "suspended"
    queued = status.attempt_state(job(conditions=suspended), spec_of(queueName="team-a"), None)
    assert (queued.phase, queued.reason) == ("queued", Reason.QUEUED)
    assert "team-a" in queued.message


@pytest.mark.parametrize(("phase", "attempts", "max_restarts", "restart"), [
    ("transient", 1, 2, True), ("transient", 2, 2, True), ("transient", 3, 2, False),
    ("transient", 1, 0, False), ("permanent", 1, 2, False), ("succeeded", 1, 2, False),
])
def test_should_restart(phase: str, attempts: int, max_restarts: int, restart: bool):
    state = status.AttemptState(phase, "R", "m")  # type: ignore[arg-type]
    assert status.should_restart(state, attempts, max_restarts) is restart


def test_outcome_of_success_needs_the_run_record():
    done = status.AttemptState("succeeded", Reason.SUCCEEDED, "Job run-a1 completed")
    assert status.outcome(done, 1, 2, record=record(), store_error=None).phase == "Succeeded"
    unknown = status.outcome(done, 1, 2, record=None, store_error="cannot read the object store: down")
    assert (unknown.phase, unknown.succeeded.status, unknown.succeeded.reason) == (
        "Running", "Unknown", status.OBJECT_STORE_UNAVAILABLE)
    missing = status.outcome(done, 1, 2, record=None, store_error=None)
    assert (missing.phase, missing.succeeded.reason) == ("Failed", Reason.TRAINING_FAILED)


def test_transient_failures_without_attempts_left():
    crashed = status.AttemptState("transient", Reason.BACKOFF_LIMIT_EXCEEDED, "Job run-a3 failed")
    final = status.outcome(crashed, 3, 2, record=None, store_error=None)
    assert (final.phase, final.succeeded.reason) == ("Failed", Reason.MAX_RESTARTS_EXCEEDED)
    assert "all 3 attempts failed" in final.succeeded.message
    once = status.outcome(crashed, 1, 0, record=None, store_error=None)
    assert (once.phase, once.succeeded.reason) == ("Failed", Reason.BACKOFF_LIMIT_EXCEEDED)


def test_a_resumed_attempt_is_restarting():
    running = status.AttemptState("running", Reason.RUNNING, "2 of 2 workers of Job run-a2 are running")
    result = status.outcome(running, 2, 2, record=None, store_error=None)
    assert (result.phase, result.running.status, result.running.reason) == ("Running", "True", Reason.RESTARTING)
    assert "attempt 2 of 3" in result.running.message


# -- what the trainer wrote -------------------------------------------------------------------


def test_progress_with_an_eta():
    progress = status.progress_of({"attempt": 1, "epoch": 2, "epochs": 4, "percent": 50, "etaSeconds": 30.5,
                                   "updated": "2026-11-27T02:10:00.123456Z", "metrics": {"auc": 0.8}})
    assert progress == {"epoch": 2, "epochs": 4, "percent": 50, "estimatedCompletionTime": "2026-11-27T02:10:30Z"}
    assert status.progress_of({"percent": 250})["percent"] == 100  # type: ignore[index]
    assert status.progress_of({"epoch": 4, "epochs": 4, "percent": 90}, done=True)["percent"] == 100  # type: ignore[index]
    assert status.progress_of(None) is None
    assert status.progress_of({"etaSeconds": None, "updated": None}) is None


def test_metrics_and_the_key_metric():
    assert status.final_metrics(record())["auc"] == 0.93
    assert status.final_metrics({"metrics": {"final": {"rmse": 1.5}}}) == {"rmse": 1.5}
    assert status.numeric_metrics({"a": 1, "b": True, "c": float("nan"), "d": "x"}) == {"a": 1.0}
    assert status.key_metric("classification", {"accuracy": 0.7}) == {"name": "accuracy", "value": 0.7}
    assert status.key_metric("classification", {"val_auc": 0.8, "accuracy": 0.7}) == {"name": "auc", "value": 0.8}
    assert status.key_metric("regression", {"rmse": 2.0, "mae": 1.0}) == {"name": "rmse", "value": 2.0}
    assert status.key_metric("regression", {"loss": 2.0}) is None
    assert status.recorded_key_metric(record()) == {"name": "auc", "value": 0.93}


def test_the_artifact_keeps_only_a_well_formed_digest():
    assert status.artifact_of(record()) == {"uri": record()["artifact"]["uri"], "digest": DIGEST,
                                            "shortDigest": "abababababab"}
    assert status.artifact_of({"artifact": {"uri": "s3://x", "digest": "md5:1"}}) == {"uri": "s3://x"}
    assert status.artifact_of({}) is None


def test_reproducibility_from_the_record_validates_against_the_status_schema():
    found = status.reproducibility_of(record(), spec_of(), VERSION)
    assert found == {"seed": 42, "deterministic": True, "worldSize": 2, "backend": "gloo", "deviceType": "cpu",
                     "pythonVersion": "3.12.3", "torchVersion": "2.5.1", "numpyVersion": "2.1.0",
                     "featureSetDigest": DIGEST, "dataDigest": DATA_DIGEST}
    TrainingRunStatus.model_validate({"reproducibility": found})


def test_reproducibility_falls_back_to_what_the_operator_knows():
    found = status.reproducibility_of({"environment": {"backend": "mpi", "torch": "2.5.1"}}, spec_of(seed=7), VERSION)
    assert found == {"seed": 7, "deterministic": False, "worldSize": 2, "torchVersion": "2.5.1",
                     "featureSetDigest": DIGEST}


def test_registration_condition():
    assert status.registration_condition(None, False).status == "Unknown"
    ok = status.registration_condition(status.Registration("run", True, "created"), True)
    assert (ok.status, ok.reason) == ("True", Reason.REGISTERED)
    bad = status.registration_condition(status.Registration("run", False, "taken"), True)
    assert (bad.status, bad.reason) == ("False", Reason.REGISTRATION_FAILED)


# -- the whole status -------------------------------------------------------------------------


def compute(spec: TrainingRunSpec, jobs: list[dict[str, Any]], *, previous: dict[str, Any] | None = None,
            attempts: int | None = None, store: status.StoreFacts | None = None,
            resolution: tuple[status.Decision, desired.FeatureSetVersion | None] | None = None,
            registration: status.Registration | None = None, trained: TrainingRunSpec | None = None,
            generation: int = 1) -> dict[str, Any]:
    current = status.current_job(jobs)
    result = status.compute_status(
        spec, observed(previous, generation), trained=trained,
        recorded=desired.recorded_run(current) if current else None,
        resolution=resolution or (status.Decision("Unknown", "Pending", ""), None), jobs=jobs,
        attempts=attempts if attempts is not None else len(jobs), store=store or status.StoreFacts(),
        registration=registration, run_record_uri="s3://kubeloop/trainingruns/ml/run/record.json")
    TrainingRunStatus.model_validate(result)  # what the CRD schema accepts
    return result


def condition(result: dict[str, Any], type_: str) -> tuple[str, str]:
    found = find_condition(result["conditions"], type_) or {}
    return found.get("status", ""), found.get("reason", "")


def test_waiting_for_the_featureset():
    result = compute(spec_of(), [], resolution=status.feature_set_resolution("customers", None, None))
    assert result["phase"] == "Pending"
    assert result["attempts"] == 0
    assert condition(result, "FeatureSetReady") == ("False", Reason.FEATURE_SET_NOT_FOUND)
    assert condition(result, "Ready") == ("False", Reason.FEATURE_SET_NOT_FOUND)


def test_running_with_progress():
    progress = {"attempt": 1, "epoch": 1, "epochs": 4, "percent": 25, "etaSeconds": 9,
                "updated": "2026-11-27T02:59:00Z", "metrics": {"loss": 0.5, "auc": 0.7}}
    result = compute(spec_of(), [job(active=2, ready=2)], store=status.StoreFacts(progress=progress))
    assert result["phase"] == "Running"
    assert result["progress"]["percent"] == 25
    assert result["keyMetric"] == {"name": "auc", "value": 0.7}
    assert result["featureSetVersion"] == VERSION.version
    assert result["startTime"] == "2026-11-27T02:01:00Z"
    assert result["jobName"] == "run-a1"
    assert condition(result, "Running") == ("True", Reason.RUNNING)
    assert condition(result, "Ready") == ("Unknown", Reason.RUNNING)
    assert "completionTime" not in result


def test_succeeded_with_metrics_artifact_and_reproducibility():
    result = compute(spec_of(), [job(conditions=COMPLETE, completionTime="2026-11-27T02:40:00Z")],
                     store=status.StoreFacts(record=record(), progress={"epoch": 4, "epochs": 4, "percent": 100}))
    assert result["phase"] == "Succeeded"
    assert result["metrics"]["auc"] == 0.93
    assert result["keyMetric"] == {"name": "auc", "value": 0.93}
    assert result["artifact"]["digest"] == DIGEST
    assert result["reproducibility"]["dataDigest"] == DATA_DIGEST
    assert result["completionTime"] == "2026-11-27T02:40:00Z"
    assert result["runRecordUri"] == "s3://kubeloop/trainingruns/ml/run/record.json"
    assert condition(result, "Succeeded") == ("True", Reason.SUCCEEDED)
    assert condition(result, "Ready") == ("True", "Ready")


def test_registration_is_part_of_ready():
    spec = spec_of(register={"model": "fraud"})
    done = [job(spec=spec, conditions=COMPLETE)]
    waiting = compute(spec, done, store=status.StoreFacts(record=record()))
    assert condition(waiting, "Registered") == ("Unknown", Reason.PENDING)
    registered = compute(spec, done, store=status.StoreFacts(record=record()),
                         registration=status.Registration("run", True, 'ModelVersion "run" created'))
    assert condition(registered, "Registered") == ("True", Reason.REGISTERED)
    assert condition(registered, "Ready") == ("True", "Ready")
    assert registered["modelVersionRef"] == {"name": "run"}


def test_a_permanent_failure_of_the_trainer():
    failure = {"reason": "TrainingFailed", "message": 'target "nope" is not a column', "attempt": 1}
    result = compute(spec_of(), [job(conditions=failed("PodFailurePolicy"))], store=status.StoreFacts(failure=failure))
    assert result["phase"] == "Failed"
    assert condition(result, "Succeeded") == ("False", "TrainingFailed")
    assert condition(result, "Ready") == ("False", "TrainingFailed")
    assert "nope" in (find_condition(result["conditions"], "Ready") or {})["message"]
    assert result["completionTime"] == "2026-11-27T02:30:00Z"


def test_the_restarted_attempt_is_the_current_one():
    jobs = [job(1, conditions=failed("BackoffLimitExceeded")), job(2, active=2, ready=2)]
    result = compute(spec_of(), jobs, attempts=2)
    assert (result["phase"], result["attempts"], result["jobName"]) == ("Running", 2, "run-a2")
    assert condition(result, "Running") == ("True", Reason.RESTARTING)
    assert result["startTime"] == "2026-11-27T02:01:00Z"


def test_a_refused_spec_change_leaves_the_run_going():
    running = [job(active=2, ready=2)]
    result = compute(spec_of(workers=3), running, trained=spec_of(), generation=2)
    assert result["phase"] == "Running"
    assert condition(result, "Accepted") == ("False", Reason.SPEC_IMMUTABLE)
    assert condition(result, "Ready") == ("Unknown", Reason.RUNNING)
    assert result["observedGeneration"] == 2


def test_the_outcome_stands_after_the_jobs_are_deleted():
    done = compute(spec_of(), [job(conditions=COMPLETE)], store=status.StoreFacts(record=record()))
    later = compute(spec_of(), [], previous=copy.deepcopy(done), attempts=1)
    assert later == done


def test_recomputing_keeps_transition_times():
    first = compute(spec_of(), [job(active=2, ready=2)])
    again = status.compute_status(
        spec_of(), observed(first, now=datetime(2026, 11, 27, 4, 0, tzinfo=UTC)), recorded=desired.recorded_run(
            job()), resolution=(status.Decision("Unknown", "Pending", ""), None), jobs=[job(active=2, ready=2)],
        attempts=1, store=status.StoreFacts(), registration=None, run_record_uri="s3://x")
    assert again == first


def test_an_unreadable_store_is_said_in_the_running_condition_and_progress_is_kept():
    previous = compute(spec_of(), [job(active=2, ready=2)],
                       store=status.StoreFacts(progress={"epoch": 1, "epochs": 4, "percent": 25}))
    result = compute(spec_of(), [job(active=2, ready=2)], previous=previous,
                     store=status.StoreFacts(error="cannot read the object store: connection refused"))
    assert result["progress"] == previous["progress"]
    running = find_condition(result["conditions"], "Running") or {}
    assert running["status"] == "True"
    assert running["message"].endswith("cannot read the object store: connection refused")


def test_transition_events_tell_a_restart_success_registration_and_failure():
    running = compute(spec_of(), [job(active=2, ready=2)])
    assert status.transition_events({}, running) == []
    restarted = compute(spec_of(), [job(1, conditions=failed("BackoffLimitExceeded")), job(2, active=2, ready=2)],
                        attempts=2, previous=running)
    [event] = status.transition_events(running, restarted)
    assert (event.type, event.reason) == ("Warning", Reason.RESTARTING)
    assert event.message.startswith("attempt 2 started after attempt 1 failed")
    assert status.transition_events(restarted, restarted) == []  # the next pass has nothing new to say
    spec = spec_of(register={"model": "fraud"})
    succeeded = compute(spec, [job(spec=spec, conditions=COMPLETE)], store=status.StoreFacts(record=record()),
                        registration=status.Registration("run", True, 'ModelVersion "run" created'))
    events = status.transition_events(running, succeeded)
    assert [(e.type, e.reason) for e in events] == [("Normal", Reason.SUCCEEDED), ("Normal", Reason.REGISTERED)]
    assert "auc 0.93" in events[0].message and 'ModelVersion "run"' in events[1].message
    assert status.transition_events(succeeded, succeeded) == []
    failure = {"reason": "TrainingFailed", "message": 'target "nope" is not a column', "attempt": 1}
    failed_run = compute(spec_of(), [job(conditions=failed("PodFailurePolicy"))],
                         store=status.StoreFacts(failure=failure))
    [event] = status.transition_events(running, failed_run)
    assert (event.type, event.reason) == ("Warning", "TrainingFailed") and "nope" in event.message
