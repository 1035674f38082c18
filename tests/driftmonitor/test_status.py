"""DriftMonitor status and retrain decisions (`driftmonitor.status`): one test per case, exact,
with the clock injected. Results are parsed from documents shaped as the check's contract says
(`results.parse_result`), ModelVersions and TrainingRuns are plain objects as the API holds them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubeloop.core.conditions import find_condition, timestamp
from kubeloop.core.reconcile import Observed
from kubeloop.driftmonitor import desired, results, status
from kubeloop.driftmonitor.api import DriftMonitorSpec, DriftMonitorStatus, Retrain
from tests.driftmonitor.controller_fixtures import result_document as check_result_document

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
UID = "monitor-uid"
OWNER = desired.Owner(name="fraud-monitor", namespace="ml", uid=UID, generation=2)
SPEC = DriftMonitorSpec.model_validate({"model": "fraud", "minSamples": 100,
                                        "retrain": {"consecutiveBreaches": 2, "cooldown": "6h", "maxPerDay": 2}})
TARGET_OK = (status.Decision("True", "Ready", "monitoring"),
             desired.Target(model="fraud", model_version="fraud-v1", feature_set="tx", feature_set_version="abc123",
                            training_run="train-1"))


def result_document(verdict: str = "drift", *, when: datetime = NOW - timedelta(minutes=5), share: float | None = 0.5,
                    sample_size: int = 1000, check_id: str | None = None) -> dict[str, Any]:
    return check_result_document("ml", "fraud-monitor", UID, verdict, when=when, share=share, sample_size=sample_size,
                                 min_samples=100, check_id=check_id, bucket="kubeloop")


def result(verdict: str = "drift", **options: Any) -> results.CheckResult:
    return results.parse_result(result_document(verdict, **options))


def observed(previous: Mapping[str, Any] | None = None, now: datetime = NOW) -> Observed:
    return Observed(name=OWNER.name, namespace=OWNER.namespace, uid=UID, generation=2, labels={},
                    status=dict(previous or {}), now=now)


def run(number: int, *, created: datetime, phase: str | None = None, check_id: str = "") -> dict[str, Any]:
    evidence = desired.Evidence(check_id=check_id, drift_share=0.5, drifted_features=("amount",),
                                model_version="fraud-v1", reason=f"retrain {number}")
    source = {"metadata": {"name": "train-1"}, "spec": {"target": "y"}}
    manifest = desired.desired_retrain_run(source, OWNER, number, evidence)
    manifest["metadata"]["creationTimestamp"] = timestamp(created)
    if phase is not None:
        manifest["status"] = {"phase": phase}
    return manifest


def model_version(name: str, *, model: str = "fraud", champion: bool | None = None, lineage: bool = True,
                  created: str = "2026-03-01T00:00:00Z") -> dict[str, Any]:
    mv: dict[str, Any] = {"metadata": {"name": name, "namespace": "ml", "creationTimestamp": created},
                          "spec": {"model": model, "trainingRunRef": {"name": f"{name}-run"}}, "status": {}}
    if champion is not None:
        mv["status"]["champion"] = champion
    if lineage:
        mv["status"]["lineage"] = {"trainingRun": f"{name}-run", "featureSet": "tx", "featureSetVersion": "abc123",
                                   "featureSetDigest": "sha256:" + "0" * 64}
    return mv


def compute(previous: Mapping[str, Any] | None = None, *, latest: results.CheckResult | None = None,
            runs: list[dict[str, Any]] | None = None, jobs: list[dict[str, Any]] | None = None,
            target: tuple[status.Decision, desired.Target | None] = TARGET_OK, store_error: str | None = None,
            spec: DriftMonitorSpec = SPEC, now: datetime = NOW) -> dict[str, Any]:
    seen = observed(previous, now)
    decision = status.retrain_decision(status.RetrainFacts(
        retrain=spec.retrain, result=latest, breaches=status.consecutive_breaches(latest, seen.status),
        runs=runs or [], now=now))
    new = status.compute_status(spec, seen, target=target, jobs=jobs or [], result=latest, store_error=store_error,
                                runs=runs or [], decision=decision)
    DriftMonitorStatus.model_validate(new)  # the CRD's shape
    return new


def condition(new: Mapping[str, Any], type_: str) -> tuple[str, str, str]:
    found = find_condition(new["conditions"], type_)
    assert found is not None, type_
    return found["status"], found["reason"], found["message"]


# -- what is monitored ------------------------------------------------------------------------


def test_model_version_ref_is_monitored_with_its_lineage():
    spec = DriftMonitorSpec.model_validate({"modelVersionRef": {"name": "fraud-v2"}})
    decision, target = status.resolve_target(spec, "ml", [model_version("fraud-v2")])
    assert decision.status == "True"
    assert target == desired.Target(model="fraud", model_version="fraud-v2", feature_set="tx",
                                    feature_set_version="abc123", feature_set_digest="sha256:" + "0" * 64,
                                    training_run="fraud-v2-run")


def test_a_missing_model_version_ref_says_what_to_do():
    spec = DriftMonitorSpec.model_validate({"modelVersionRef": {"name": "gone"}})
    decision, target = status.resolve_target(spec, "ml", [])
    assert target is None
    assert decision[:2] == ("False", "ModelVersionNotFound")
    assert '"gone"' in decision.message and "spec.modelVersionRef" in decision.message


def test_the_champion_of_the_model_is_monitored():
    versions = [model_version("fraud-v1", champion=False), model_version("fraud-v2", champion=True),
                model_version("other-v9", model="other", champion=True)]
    _, target = status.resolve_target(SPEC, "ml", versions)
    assert target is not None and target.model_version == "fraud-v2"


def test_two_champions_while_the_alias_moves_the_newest_wins():
    versions = [model_version("fraud-v1", champion=True, created="2026-03-01T00:00:00Z"),
                model_version("fraud-v2", champion=True, created="2026-03-01T06:00:00Z")]
    assert status.champion_of("fraud", versions) is versions[1]


def test_no_champion_says_what_to_do():
    decision, target = status.resolve_target(SPEC, "ml", [model_version("fraud-v1", champion=False)])
    assert target is None and decision[:2] == ("False", "NoChampion")
    assert '"fraud"' in decision.message and "spec.modelVersionRef" in decision.message


def test_a_version_without_lineage_cannot_be_checked_yet():
    decision, target = status.resolve_target(SPEC, "ml", [model_version("fraud-v1", champion=True, lineage=False)])
    assert target is None and decision[:2] == ("False", "ReferenceUnavailable")
    assert "status.lineage" in decision.message


def test_a_missing_model_leaves_the_monitor_pending_with_the_reason():
    target = status.resolve_target(SPEC, "ml", [])
    new = compute(target=target)
    assert new["phase"] == "Pending"
    assert condition(new, "Ready")[:2] == ("False", "NoChampion")
    assert new["model"] == "fraud" and "modelVersion" not in new


# -- checks ------------------------------------------------------------------------------------


def test_breaches_count_each_new_drift_once():
    latest = result("drift")
    assert status.consecutive_breaches(latest, {}) == 1
    counted = {"consecutiveBreaches": 1, "lastCheckTime": timestamp(latest.time)}
    assert status.consecutive_breaches(latest, counted) == 1  # the same check again
    later = result("drift", when=NOW)
    assert status.consecutive_breaches(later, counted) == 2


def test_a_check_time_with_microseconds_is_counted_once():
    document = result_document("drift")
    document["time"] = "2026-03-01T11:55:00.123456Z"  # as the check writes it
    latest = results.parse_result(document)
    new = compute(latest=latest)
    assert new["lastCheckTime"] == "2026-03-01T11:55:00Z" and new["consecutiveBreaches"] == 1
    assert not status.is_new_check(latest, new)
    assert compute(new, latest=latest)["consecutiveBreaches"] == 1


def test_no_drift_resets_and_insufficient_samples_keeps_the_streak():
    previous = {"consecutiveBreaches": 3, "lastCheckTime": timestamp(NOW - timedelta(hours=2))}
    assert status.consecutive_breaches(result("no-drift"), previous) == 0
    assert status.consecutive_breaches(result("insufficient-samples"), previous) == 3
    assert status.consecutive_breaches(None, previous) == 3


def test_drift_sets_the_check_fields_and_conditions():
    latest = result("drift", share=0.5)
    new = compute(latest=latest)
    assert new["phase"] == "Drifted"
    assert new["drifted"] is True and new["driftShare"] == 0.5 and new["sampleSize"] == 1000
    assert new["lastCheckTime"] == timestamp(latest.time)
    assert new["reportUri"].endswith(f"/checks/{latest.check_id}/report.html")
    assert new["features"][0] == {"name": "amount_log", "method": "ks", "statistic": 0.42, "pValue": 0.0001,
                                  "threshold": 0.05, "drifted": True, "nullFraction": 0.0}
    assert new["features"][1]["unseenCategories"] == 1
    assert new["consecutiveBreaches"] == 1
    assert condition(new, "Drifted")[:2] == ("True", "DriftDetected")
    assert "amount_log" in condition(new, "Drifted")[2]
    assert condition(new, "Ready")[:2] == ("True", "Ready")
    # One breach of the two required.
    assert condition(new, "Retraining") == ("False", "AwaitingConsecutiveBreaches",
                                            "1 of 2 consecutive checks found drift (spec.retrain.consecutiveBreaches)")
    assert new["modelVersion"] == "fraud-v1" and new["observedGeneration"] == 2


def test_no_drift_is_healthy():
    new = compute({"consecutiveBreaches": 1}, latest=result("no-drift", share=0.1))
    assert new["phase"] == "Healthy" and new["drifted"] is False and new["consecutiveBreaches"] == 0
    assert condition(new, "Drifted")[:2] == ("False", "NoDrift")
    assert condition(new, "Retraining")[:2] == ("False", "NoDrift")


def test_insufficient_samples_gives_no_verdict():
    previous = {"drifted": True, "driftShare": 0.7, "consecutiveBreaches": 1}
    new = compute(previous, latest=result("insufficient-samples", sample_size=12))
    assert new["phase"] == "InsufficientData"
    assert "drifted" not in new and "driftShare" not in new  # no verdict, not the old one
    assert new["sampleSize"] == 12 and new["features"] == []
    assert new["consecutiveBreaches"] == 1
    status_, reason, message = condition(new, "Drifted")
    assert (status_, reason) == ("Unknown", "InsufficientSamples")
    assert "12 predictions" in message and "minSamples (100)" in message
    assert condition(new, "Ready")[0] == "True"  # the check ran and wrote its result


def test_before_the_first_check_the_monitor_is_pending():
    new = compute()
    assert new["phase"] == "Pending"
    assert condition(new, "Ready")[:2] == ("Unknown", "AwaitingFirstCheck")
    assert condition(new, "Drifted")[:2] == ("Unknown", "AwaitingFirstCheck")


def job(name: str, created: datetime, *, failed: str | None = None) -> dict[str, Any]:
    job_status: dict[str, Any] = {}
    if failed is not None:
        job_status["conditions"] = [{"type": "Failed", "status": "True", "reason": failed, "message": "boom"}]
    return {"metadata": {"name": name, "creationTimestamp": timestamp(created)}, "status": job_status}


def test_a_failed_check_job_newer_than_the_result_fails_the_monitor():
    latest = result("no-drift", when=NOW - timedelta(hours=2))
    new = compute(latest=latest, jobs=[job("c-1", NOW - timedelta(hours=3)),
                                       job("c-2", NOW - timedelta(hours=1), failed="BackoffLimitExceeded")])
    assert new["phase"] == "Failed"
    status_, reason, message = condition(new, "Ready")
    assert (status_, reason) == ("False", "CheckFailed")
    assert "c-2" in message and "kubectl logs job/c-2" in message
    assert new["drifted"] is False  # the last result still stands


def test_exit_3_means_the_reference_is_unavailable():
    new = compute(jobs=[job("c-1", NOW - timedelta(hours=1), failed="PodFailurePolicy")])
    assert condition(new, "Ready")[:2] == ("False", "ReferenceUnavailable")


def test_an_old_failure_does_not_hide_a_newer_result():
    latest = result("no-drift", when=NOW - timedelta(minutes=5))
    new = compute(latest=latest, jobs=[job("c-1", NOW - timedelta(hours=1), failed="BackoffLimitExceeded")])
    assert new["phase"] == "Healthy"


def test_an_unreadable_store_keeps_the_last_check_and_says_why():
    previous = compute(latest=result("no-drift", share=0.1))
    new = compute(previous, store_error="cannot read the check results from the object store: no Secret")
    assert new["drifted"] is False and new["lastCheckTime"] == previous["lastCheckTime"]
    assert new["phase"] == "Healthy"
    assert condition(new, "Ready") == ("Unknown", "ObjectStoreUnavailable",
                                       "cannot read the check results from the object store: no Secret")
    assert condition(new, "Drifted")[:2] == ("False", "NoDrift")


# -- the retrain decision -----------------------------------------------------------------------


def facts(*, retrain: Retrain | None = SPEC.retrain, breaches: int = 2, runs: list[dict[str, Any]] | None = None,
          latest: results.CheckResult | None = None, now: datetime = NOW) -> status.RetrainFacts:
    return status.RetrainFacts(retrain=retrain, result=latest or result("drift"), breaches=breaches,
                               runs=runs or [], now=now)


def test_no_drift_no_decision():
    assert status.retrain_decision(facts(latest=result("no-drift"))) is None
    assert status.retrain_decision(facts(latest=result("insufficient-samples"))) is None


def test_disabled():
    decision = status.retrain_decision(facts(retrain=None))
    assert decision is not None and (decision.reason, decision.create) == ("RetrainDisabled", False)
    off = Retrain.model_validate({"onDrift": False})
    assert status.retrain_decision(facts(retrain=off)).reason == "RetrainDisabled"


def test_awaiting_consecutive_breaches():
    decision = status.retrain_decision(facts(breaches=1))
    assert decision == status.RetrainDecision(
        "AwaitingConsecutiveBreaches", "1 of 2 consecutive checks found drift (spec.retrain.consecutiveBreaches)")


def test_created_when_nothing_stands_in_the_way():
    latest = result("drift")
    decision = status.retrain_decision(facts(latest=latest))
    assert decision is not None and decision.create and decision.reason == "RetrainCreated"
    assert latest.check_id in decision.message and "amount_log" in decision.message


def test_in_progress_blocks_a_second_run():
    runs = [run(1, created=NOW - timedelta(hours=10), phase="Running")]
    decision = status.retrain_decision(facts(runs=runs))
    assert decision is not None and decision.reason == "RetrainInProgress" and not decision.create
    assert "fraud-monitor-retrain-1" in decision.message


def test_cooldown_blocks_a_retrain_after_a_recent_one():
    runs = [run(1, created=NOW - timedelta(hours=2), phase="Failed", check_id="older")]
    latest = result("drift", when=NOW - timedelta(minutes=1))
    decision = status.retrain_decision(facts(runs=runs, latest=latest))
    assert decision is not None and decision.reason == "RetrainCooldown" and not decision.create
    assert "2026-03-01T16:00:00Z" in decision.message  # created 10:00 + 6h


def test_cooldown_over_creates_again():
    runs = [run(1, created=NOW - timedelta(hours=7), phase="Succeeded", check_id="older")]
    decision = status.retrain_decision(facts(runs=runs, latest=result("drift", when=NOW - timedelta(minutes=1))))
    assert decision is not None and decision.create


def test_daily_limit():
    retrain = Retrain.model_validate({"cooldown": "1h", "maxPerDay": 2})
    runs = [run(1, created=NOW - timedelta(hours=20), phase="Failed"),
            run(2, created=NOW - timedelta(hours=3), phase="Failed")]
    decision = status.retrain_decision(facts(retrain=retrain, runs=runs,
                                             latest=result("drift", when=NOW - timedelta(minutes=1))))
    assert decision is not None and decision.reason == "RetrainDailyLimit"
    # A day later the older one no longer counts.
    later = NOW + timedelta(hours=5)
    decision = status.retrain_decision(facts(retrain=retrain, runs=runs, now=later,
                                             latest=result("drift", when=later - timedelta(minutes=1))))
    assert decision is not None and decision.create


def test_a_check_already_acted_on_shows_the_retrain_outcome():
    latest = result("drift", when=NOW - timedelta(hours=8))
    runs = [run(1, created=NOW - timedelta(hours=7), phase="Succeeded", check_id=latest.check_id)]
    decision = status.retrain_decision(facts(runs=runs, latest=latest))
    assert decision is not None and decision.reason == "RetrainSucceeded" and not decision.create
    # A check older than the last retrain is no new evidence either, whatever its id.
    older = result("drift", when=NOW - timedelta(hours=7, minutes=30), check_id="other")
    assert status.retrain_decision(facts(runs=runs, latest=older)).reason == "RetrainSucceeded"


def test_retrain_created_status():
    latest = result("drift")
    previous = {"consecutiveBreaches": 1, "lastCheckTime": timestamp(NOW - timedelta(hours=1))}
    created = run(1, created=NOW, check_id=latest.check_id)
    seen = observed(previous)
    decision = status.retrain_decision(status.RetrainFacts(
        retrain=SPEC.retrain, result=latest, breaches=status.consecutive_breaches(latest, seen.status), runs=[],
        now=NOW))
    assert decision is not None and decision.create
    new = status.compute_status(SPEC, seen, target=TARGET_OK, jobs=[], result=latest, store_error=None,
                                runs=[created], decision=decision)
    assert new["phase"] == "Retraining" and new["consecutiveBreaches"] == 2 and new["retrains"] == 1
    assert new["lastRetrain"] == {"trainingRun": "fraud-monitor-retrain-1", "time": timestamp(NOW),
                                  "reason": "retrain 1"}
    assert condition(new, "Retraining")[:2] == ("True", "RetrainCreated")


def test_the_outcome_of_the_last_retrain_is_reflected():
    latest = result("no-drift", share=0.0)
    succeeded = compute(latest=latest, runs=[run(1, created=NOW - timedelta(hours=3), phase="Succeeded")])
    assert condition(succeeded, "Retraining")[:2] == ("False", "RetrainSucceeded")
    assert succeeded["phase"] == "Healthy"
    failed = compute(latest=latest, runs=[run(1, created=NOW - timedelta(hours=3), phase="Failed")])
    status_, reason, message = condition(failed, "Retraining")
    assert (status_, reason) == ("False", "RetrainFailed") and "kubectl describe trainingrun" in message
    running = compute(latest=latest, runs=[run(1, created=NOW - timedelta(hours=3), phase="Running")])
    assert running["phase"] == "Retraining" and condition(running, "Retraining")[:2] == ("True", "RetrainInProgress")


def test_last_transition_time_is_kept_while_the_status_holds():
    first = compute(latest=result("drift"), now=NOW)
    again = compute(first, latest=result("drift"), now=NOW + timedelta(minutes=30))
    assert find_condition(first["conditions"], "Drifted") == find_condition(again["conditions"], "Drifted")


# -- events and re-reconciles -------------------------------------------------------------------


def test_drift_newly_detected_is_an_event_once():
    new = compute(latest=result("drift"))
    [event] = status.transition_events({}, new)
    assert (event.type, event.reason) == ("Warning", "DriftDetected")
    assert status.transition_events(new, compute(new, latest=result("drift"))) == []


def test_a_failed_retrain_is_an_event():
    latest = result("no-drift")
    before = compute(latest=latest, runs=[run(1, created=NOW - timedelta(hours=3), phase="Running")])
    after = compute(before, latest=latest, runs=[run(1, created=NOW - timedelta(hours=3), phase="Failed")])
    assert [e.reason for e in status.transition_events(before, after)] == ["RetrainFailed"]


def monitor(spec: dict[str, Any], *, version: str | None = None, ready: bool = True) -> dict[str, Any]:
    conds = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"spec": spec, "status": {"modelVersion": version, "conditions": conds} if version else
            {"conditions": conds}}


@pytest.mark.parametrize(("watched", "event", "deleted", "expected"), [
    # a new champion of the followed model
    (monitor({"model": "fraud"}, version="fraud-v1"), model_version("fraud-v2", champion=True), False, True),
    # the current champion, unchanged
    (monitor({"model": "fraud"}, version="fraud-v1"), model_version("fraud-v1", champion=True), False, False),
    # the monitored version lost the title, or was deleted
    (monitor({"model": "fraud"}, version="fraud-v1"), model_version("fraud-v1", champion=False), False, True),
    (monitor({"model": "fraud"}, version="fraud-v1"), model_version("fraud-v1", champion=True), True, True),
    # another model's versions
    (monitor({"model": "fraud"}, version="fraud-v1"), model_version("x-v1", model="x", champion=True), False, False),
    # a version that is not champion and not monitored
    (monitor({"model": "fraud"}, version="fraud-v1"), model_version("fraud-v7", champion=False), False, False),
    # a monitor waiting for its named version
    (monitor({"modelVersionRef": {"name": "fraud-v2"}}, ready=False), model_version("fraud-v2"), False, True),
    (monitor({"modelVersionRef": {"name": "fraud-v2"}}, version="fraud-v2"), model_version("fraud-v2"), False,
     False),
    (monitor({"modelVersionRef": {"name": "fraud-v2"}}, version="fraud-v2"), model_version("fraud-v2"), True, True),
])
def test_which_model_version_changes_reconcile_a_monitor(watched: dict[str, Any], event: dict[str, Any],
                                                         deleted: bool, expected: bool):
    assert status.affected_by_model_version(watched, event, deleted=deleted) is expected


# -- the result document ------------------------------------------------------------------------


def test_a_result_is_parsed_as_the_contract_says():
    parsed = result("drift", share=0.5)
    assert parsed.verdict == "drift" and parsed.drifted is True and parsed.drift_share == 0.5
    assert parsed.drifted_features == ("amount_log",) and parsed.monitor_uid == UID
    assert parsed.time == NOW - timedelta(minutes=5)


@pytest.mark.parametrize(("change", "message"), [
    ({"kind": "Other"}, "kind"),
    ({"schemaVersion": 2}, "schemaVersion 2 is not supported"),
    ({"verdict": "maybe"}, "verdict 'maybe'"),
    ({"time": "yesterday"}, "time 'yesterday'"),
    ({"sampleSize": -1}, "sampleSize -1"),
    ({"checkId": ""}, "checkId"),
    ({"drifted": "yes"}, "drifted 'yes'"),
    ({"features": [{"method": "ks"}]}, r"features\[0\] has no name"),
])
def test_a_result_that_breaks_the_contract_is_refused_naming_the_field(change: dict[str, Any], message: str):
    with pytest.raises(results.InvalidResult, match=message):
        results.parse_result({**result_document(), **change})


def test_a_verdictless_result_carries_no_drift_figures():
    document = {**result_document("insufficient-samples"), "drifted": True, "driftShare": 0.9}
    parsed = results.parse_result(document)
    assert parsed.drifted is None and parsed.drift_share is None and not parsed.has_verdict
