"""FeatureSet status decisions (`featureset.status`): one test per case, exact, with the clock
injected. Jobs are built with a small fluent builder; versions are real `store.Version` values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubeloop.core.reconcile import Observed
from kubeloop.featureset import status
from kubeloop.featureset.api import FeatureSetSpec, FeatureSetStatus
from kubeloop.store import FileEntry, Version

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=1)
PREFIX = "featuresets/ml/transactions"
BUCKET = "kubeloop"
SPEC = FeatureSetSpec.model_validate({
    "source": {"uri": "s3://raw/tx/*.csv"}, "entities": ["card_id"],
    "features": [{"name": "amount_log", "from": "amount", "transforms": [{"type": "log1p"}]}],
    "schedule": "0 2 * * *",
})
CONTRACT_MESSAGE = 'column "amount": maxNullFraction 0.01 exceeded: 312 of 1000 values are null (0.312)'


@dataclass
class JobBuilder:
    """A batch/v1 Job as the Job controller reports it, built step by step."""

    name: str
    created: str = "2026-03-01T11:00:00Z"
    status_: dict[str, Any] = field(default_factory=dict)

    def created_at(self, when: str) -> JobBuilder:
        self.created = when
        return self

    def running(self) -> JobBuilder:
        self.status_.update(active=1, startTime=self.created)
        return self

    def complete(self) -> JobBuilder:
        self.status_.update(active=0, succeeded=1, startTime=self.created,
                            conditions=[{"type": "Complete", "status": "True"}])
        return self

    def failed(self, reason: str = "BackoffLimitExceeded",
               message: str = "Job has reached the specified backoff limit") -> JobBuilder:
        self.status_.update(active=0, failed=3, startTime=self.created,
                            conditions=[{"type": "Failed", "status": "True", "reason": reason, "message": message}])
        return self

    def build(self) -> dict[str, Any]:
        return {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": self.name, "namespace": "ml", "creationTimestamp": self.created},
                "status": dict(self.status_)}


def job(name: str = "transactions-g1-0b5c1") -> JobBuilder:
    return JobBuilder(name)


def version(id_: str, *, rows: int = 1000, created: datetime = EARLIER, run_id: str = "transactions-g1-0b5c1",
            schema: Any = None, profile: bool = True) -> Version:
    files = {"features.parquet": FileEntry("features.parquet", f"{PREFIX}/blobs/sha256/{'a' * 64}",
                                           f"sha256:{'a' * 64}", 10)}
    if profile:
        files["profile.json"] = FileEntry("profile.json", f"{PREFIX}/blobs/sha256/{'b' * 64}", f"sha256:{'b' * 64}", 5)
    manifest: dict[str, Any] = {"rows": rows, "runId": run_id, "generation": 1}
    if schema is not None:
        manifest["schema"] = schema
    return Version(prefix=PREFIX, id=id_, digest=f"sha256:{id_}{'0' * (64 - len(id_))}", created=created,
                   files=files, manifest=manifest)


def run(run_id: str = "transactions-g1-0b5c1", *, outcome: str = "Succeeded", reason: str = "Materialized",
        message: str | None = None, version_id: str | None = "aaaaaaaaaaaa", rows: int | None = 1000) -> dict[str, Any]:
    """A run result as `results.RunResult.to_dict` writes it."""
    if message is None:
        message = f"version {version_id} published: 1,000 rows, 1 features, 5 files" if outcome == "Succeeded" else ""
    return {"kind": "FeatureSetRunResult", "schemaVersion": 1, "runId": run_id, "startedAt": "2026-03-01T11:00:01Z", "finishedAt": "2026-03-01T11:00:09Z",
            "outcome": outcome, "reason": reason, "message": message, "version": version_id, "rows": rows,
            "violations": []}


def observed(previous: dict[str, Any] | None = None, generation: int = 1) -> Observed:
    return Observed(name="transactions", namespace="ml", uid="0b5c1a7e", generation=generation, labels={},
                    status=previous or {}, now=NOW)


def compute(*, jobs: list[dict[str, Any]] = (), versions: list[Version] | None = (),  # type: ignore[assignment]
            runs: list[dict[str, Any]] = (), store_error: str | None = None,  # type: ignore[assignment]
            previous: dict[str, Any] | None = None, now: datetime = NOW) -> dict[str, Any]:
    return status.compute_status(SPEC, observed(previous), jobs=list(jobs),
                                 versions=None if versions is None else list(versions), runs=list(runs),
                                 store_error=store_error, now=now, bucket=BUCKET, prefix=PREFIX)


def cond(result: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in result["conditions"] if c["type"] == type_)


# -- Materialized: one decision per case --------------------------------------------------------

SUCCESS_MESSAGE = "version aaaaaaaaaaaa published: 1,000 rows, 1 features, 5 files"


def test_successful_run_result_is_materialized():
    decision = status.materialized([job().complete().build()], [version("aaaaaaaaaaaa")], [run()], None)
    assert decision == status.Decision("True", "Materialized", f"{SUCCESS_MESSAGE} (run transactions-g1-0b5c1)")


def test_contract_violation_names_column_rule_and_count():
    record = run(outcome="Failed", reason="ContractViolated", message=CONTRACT_MESSAGE, version_id=None, rows=None)
    decision = status.materialized([job().failed("PodFailurePolicy").build()], [], [record], None)
    assert decision.status == "False"
    assert decision.reason == "ContractViolated"
    assert decision.message == f"{CONTRACT_MESSAGE} (run transactions-g1-0b5c1)"


@pytest.mark.parametrize("reason", ["SourceUnavailable", "SecretNotFound", "MaterializationFailed"])
def test_failure_reasons_of_the_materializer_are_kept(reason: str):
    record = run(outcome="Failed", reason=reason, message="no object matches s3://raw/tx/*.csv")
    decision = status.materialized([job().failed().build()], [], [record], None)
    assert (decision.status, decision.reason) == ("False", reason)
    assert decision.message.startswith("no object matches s3://raw/tx/*.csv")


def test_unknown_failure_reason_becomes_materialization_failed():
    record = run(outcome="Failed", reason="Exploded", message="")
    decision = status.materialized([job().failed().build()], [], [record], None)
    assert decision == status.Decision("False", "MaterializationFailed",
                                       "the materializer reported Exploded (run transactions-g1-0b5c1)")


def test_failed_job_without_a_result_reports_the_jobs_reason():
    failed = job().failed("DeadlineExceeded", "Job was active longer than specified deadline").build()
    decision = status.materialized([failed], [], [], None)
    assert decision.status == "False" and decision.reason == "MaterializationFailed"
    assert "DeadlineExceeded: Job was active longer than specified deadline" in decision.message
    assert "kubectl logs job/transactions-g1-0b5c1" in decision.message


def test_result_of_an_older_run_does_not_decide_for_a_finished_newer_job():
    newer = job("transactions-materialize-29500000").created_at("2026-03-01T11:30:00Z").failed().build()
    decision = status.materialized([job().complete().build(), newer], [], [run("transactions-g1-0b5c1")], None)
    assert decision.status == "False"
    assert "transactions-materialize-29500000" in decision.message


def test_the_newest_jobs_result_decides_even_if_another_was_written_later():
    newest = job("transactions-materialize-29500000").created_at("2026-03-01T11:30:00Z").complete().build()
    runs = [run("transactions-materialize-29500000"),
            run("transactions-g1-0b5c1", outcome="Failed", reason="ContractViolated", message=CONTRACT_MESSAGE)]
    decision = status.materialized([job().failed().build(), newest], [], runs, None)
    assert decision.status == "True" and "transactions-materialize-29500000" in decision.message


def test_running_job_is_materializing_whatever_earlier_runs_said():
    decision = status.materialized([job().running().build()], [version("aaaaaaaaaaaa")],
                                   [run("older", outcome="Failed", reason="ContractViolated")], None)
    assert decision == status.Decision("Unknown", "Materializing", "Job transactions-g1-0b5c1 is materializing")


def test_job_without_pods_is_pending():
    decision = status.materialized([job().build()], [], [], None)
    assert decision == status.Decision("Unknown", "Pending", "waiting for Job transactions-g1-0b5c1 to start")


def test_completed_job_without_a_result_failed():
    decision = status.materialized([job().complete().build()], [version("aaaaaaaaaaaa")], [], None)
    assert decision.status == "False" and decision.reason == "MaterializationFailed"
    assert "completed but wrote no run result" in decision.message


def test_without_jobs_the_newest_result_decides():
    record = run("gone", outcome="Failed", reason="ContractViolated", message=CONTRACT_MESSAGE)
    assert status.materialized([], [version("aaaaaaaaaaaa")], [run(), record], None).reason == "ContractViolated"


def test_without_jobs_or_results_a_version_means_materialized():
    decision = status.materialized([], [version("aaaaaaaaaaaa")], [], None)
    assert decision == status.Decision("True", "Materialized", "version aaaaaaaaaaaa is the newest")


def test_nothing_yet_is_pending_and_names_the_schedule():
    decision = status.materialized([], [], [], None, "0 2 * * *")
    assert decision == status.Decision(
        "Unknown", "Pending", 'no materialization has run yet; the schedule "0 2 * * *" runs the next one')


def test_store_error_makes_the_outcome_unknown_and_says_why():
    error = 'cannot read the object store: Secret "kubeloop-s3" ... does not exist in namespace "ml"'
    decision = status.materialized([job().running().build()], [], [], error)
    assert decision.status == "Unknown" and decision.reason == status.OBJECT_STORE_UNAVAILABLE
    assert decision.message == f"{error}; Job transactions-g1-0b5c1 is not finished"


def test_store_error_does_not_hide_a_failed_job():
    decision = status.materialized([job().failed().build()], [], [], "cannot read the object store: down")
    assert decision.reason == "MaterializationFailed"


def test_newest_job_is_the_latest_created():
    first = job("a").created_at("2026-03-01T10:00:00Z").complete().build()
    second = job("b").created_at("2026-03-01T11:00:00Z").running().build()
    assert status.newest_job([second, first]) is second
    assert status.newest_job([]) is None
    assert status.running_job([first, second]) is second
    assert status.running_job([first]) is None


# -- Ready and phase --------------------------------------------------------------------------


def test_ready_with_a_version_stays_true_when_the_newest_run_failed():
    failed = status.Decision("False", "ContractViolated", CONTRACT_MESSAGE)
    decision = status.readiness("aaaaaaaaaaaa", 1000, failed)
    assert decision.status == "True" and decision.reason == "VersionAvailable"
    assert decision.message == ("version aaaaaaaaaaaa (1000 rows) is available; the newest materialization failed "
                                "(ContractViolated), see the Materialized condition")


def test_ready_is_false_with_the_failure_when_no_version_exists():
    failed = status.Decision("False", "SourceUnavailable", "no object matches s3://raw/tx/*.csv")
    assert status.readiness(None, None, failed) == failed


def test_ready_is_unknown_while_waiting_for_the_first_version():
    waiting = status.Decision("Unknown", "Materializing", "Job x is materializing")
    assert status.readiness(None, None, waiting) == status.Decision(
        "Unknown", "AwaitingFirstVersion", "Job x is materializing")


@pytest.mark.parametrize(("jobs", "latest", "outcome", "phase"), [
    ([job().running().build()], "aaaaaaaaaaaa", "True", "Materializing"),
    ([job().running().build()], None, "Unknown", "Materializing"),
    ([job().build()], None, "Unknown", "Pending"),
    ([job().complete().build()], "aaaaaaaaaaaa", "True", "Ready"),
    ([job().failed().build()], "aaaaaaaaaaaa", "False", "Ready"),
    ([job().failed().build()], None, "False", "Failed"),
    ([], None, "Unknown", "Pending"),
])
def test_phase(jobs: list[dict[str, Any]], latest: str | None, outcome: str, phase: str):
    assert status.phase_of(jobs, latest, status.Decision(outcome, "x", "y")) == phase  # type: ignore[arg-type]


# -- the whole status --------------------------------------------------------------------------


def test_first_version_published():
    schema = [{"name": "card_id", "dtype": "int64", "role": "entity"},
              {"name": "amount_log", "dtype": "double", "role": "feature"}]
    result = compute(jobs=[job().complete().build()], versions=[version("aaaaaaaaaaaa", schema=schema)],
                     runs=[run()])
    assert result["phase"] == "Ready"
    assert result["latestVersion"] == "aaaaaaaaaaaa"
    assert result["rows"] == 1000
    assert result["lastMaterializedTime"] == "2026-03-01T11:00:00Z"
    assert result["schema"] == schema
    assert result["profileUri"] == f"s3://kubeloop/{PREFIX}/blobs/sha256/{'b' * 64}"
    assert result["versions"] == [{
        "id": "aaaaaaaaaaaa", "digest": f"sha256:aaaaaaaaaaaa{'0' * 52}",
        "uri": f"s3://kubeloop/{PREFIX}/versions/aaaaaaaaaaaa.json",
        "createdTime": "2026-03-01T11:00:00Z", "rows": 1000}]
    assert result["observedGeneration"] == 1
    assert [c["type"] for c in result["conditions"]] == ["Accepted", "Materialized", "Ready"]
    assert cond(result, "Ready")["status"] == "True"
    assert all(c["observedGeneration"] == 1 and c["lastTransitionTime"] == "2026-03-01T12:00:00Z"
               for c in result["conditions"])
    FeatureSetStatus.model_validate(result)  # the shape of the CRD's status


def test_failed_newer_run_keeps_the_previous_latest_version_and_ready():
    good = compute(jobs=[job().complete().build()], versions=[version("aaaaaaaaaaaa")], runs=[run()])
    newer = job("transactions-materialize-29500000").created_at("2026-03-01T11:30:00Z").failed("PodFailurePolicy")
    record = run("transactions-materialize-29500000", outcome="Failed", reason="ContractViolated",
                 message=CONTRACT_MESSAGE, version_id=None, rows=None)
    later = NOW + timedelta(minutes=30)
    result = status.compute_status(SPEC, observed(good), jobs=[job().complete().build(), newer.build()],
                                   versions=[version("aaaaaaaaaaaa")], runs=[run(), record], store_error=None,
                                   now=later, bucket=BUCKET, prefix=PREFIX)
    assert result["latestVersion"] == "aaaaaaaaaaaa"
    assert result["phase"] == "Ready"
    materialized, ready = cond(result, "Materialized"), cond(result, "Ready")
    assert materialized["status"] == "False" and materialized["reason"] == "ContractViolated"
    assert CONTRACT_MESSAGE in materialized["message"]
    assert materialized["lastTransitionTime"] == "2026-03-01T12:30:00Z"  # flipped
    assert ready["status"] == "True"
    assert ready["lastTransitionTime"] == "2026-03-01T12:00:00Z"  # did not flip


def test_versions_are_listed_newest_first_and_capped():
    versions = [version(f"{i:012x}", rows=i, created=EARLIER + timedelta(minutes=i))
                for i in range(status.MAX_VERSIONS_IN_STATUS + 5)]
    result = compute(jobs=[], versions=versions)
    ids = [v["id"] for v in result["versions"]]
    assert len(ids) == status.MAX_VERSIONS_IN_STATUS
    assert ids[0] == versions[-1].id == result["latestVersion"]
    assert ids == [v.id for v in reversed(versions)][:status.MAX_VERSIONS_IN_STATUS]
    assert result["rows"] == status.MAX_VERSIONS_IN_STATUS + 4


def test_unreadable_store_keeps_the_previous_versions():
    good = compute(jobs=[job().complete().build()], versions=[version("aaaaaaaaaaaa")], runs=[run()])
    result = status.compute_status(SPEC, observed(good), jobs=[job().complete().build()], versions=None,
                                   runs=[], store_error="cannot read the object store: unreachable",
                                   now=NOW, bucket=BUCKET, prefix=PREFIX)
    kept = [key for key in status.VERSION_FIELDS if key in good]
    assert kept == ["latestVersion", "versions", "rows", "profileUri", "lastMaterializedTime"]
    assert {key: result[key] for key in kept} == {key: good[key] for key in kept}
    assert result["phase"] == "Ready"
    assert cond(result, "Materialized")["reason"] == status.OBJECT_STORE_UNAVAILABLE
    assert cond(result, "Ready")["status"] == "True"


def test_store_not_configured_and_no_version_is_pending():
    result = compute(jobs=[job().build()], versions=None, store_error='cannot read the object store: Secret "x"')
    assert result["phase"] == "Pending"
    assert cond(result, "Ready")["status"] == "Unknown"
    assert cond(result, "Ready")["reason"] == "AwaitingFirstVersion"
    assert "latestVersion" not in result


def test_computing_twice_changes_nothing():
    first = compute(jobs=[job().complete().build()], versions=[version("aaaaaaaaaaaa")], runs=[run()])
    again = status.compute_status(SPEC, observed(first), jobs=[job().complete().build()],
                                  versions=[version("aaaaaaaaaaaa")], runs=[run()], store_error=None,
                                  now=NOW + timedelta(hours=5), bucket=BUCKET, prefix=PREFIX)
    assert again == first


def test_invalid_spec_status_is_replaced_once_the_spec_is_valid():
    previous = {"phase": "Failed", "conditions": [
        {"type": "Accepted", "status": "False", "reason": "InvalidSpec", "message": "spec.schedule: bad",
         "lastTransitionTime": "2026-03-01T10:00:00Z"},
        {"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": "spec.schedule: bad",
         "lastTransitionTime": "2026-03-01T10:00:00Z"}]}
    result = compute(jobs=[job().build()], previous=previous)
    assert cond(result, "Accepted")["status"] == "True"
    assert cond(result, "Ready")["reason"] != "InvalidSpec"
    assert result["phase"] == "Pending"


@pytest.mark.parametrize(("schema", "expected"), [
    ([{"name": "x", "dtype": "double", "role": "feature", "extra": 1}], [{"name": "x", "dtype": "double", "role": "feature"}]),
    ([{"dtype": "double"}, "x"], []),
    ("garbage", []),
    (None, []),
])
def test_schema_of_manifest(schema: Any, expected: list[dict[str, str]]):
    assert status.schema_of({"schema": schema}) == expected


# -- events -------------------------------------------------------------------------------------


def test_events_for_a_new_version_and_a_failed_run():
    first = compute(jobs=[job().complete().build()], versions=[version("aaaaaaaaaaaa")], runs=[run()])
    assert status.transition_events({}, first) == [
        status.Event("Normal", "Materialized", "published version aaaaaaaaaaaa with 1000 rows")]
    assert status.transition_events(first, first) == []
    record = run("transactions-materialize-29500000", outcome="Failed", reason="ContractViolated",
                 message=CONTRACT_MESSAGE)
    newer = job("transactions-materialize-29500000").created_at("2026-03-01T11:30:00Z").failed().build()
    failed = compute(jobs=[newer], versions=[version("aaaaaaaaaaaa")], runs=[run(), record], previous=first)
    [event] = status.transition_events(first, failed)
    assert event.type == "Warning" and event.reason == "ContractViolated" and CONTRACT_MESSAGE in event.message
    assert status.transition_events(failed, failed) == []


def test_latest_version_is_the_one_the_newest_successful_run_published():
    older = version("aaaaaaaaaaaa", rows=1000, created=EARLIER)
    newer = version("bbbbbbbbbbbb", rows=2000, created=EARLIER + timedelta(minutes=10))
    # The data went back to what made the older version: publishing it again is a no-op that
    # keeps its first creation time, and it is what the FeatureSet holds now.
    reverted = job("transactions-materialize-29500000").created_at("2026-03-01T11:30:00Z").complete().build()
    runs = [run("transactions-materialize-29500000", version_id="aaaaaaaaaaaa")]
    result = compute(jobs=[reverted], versions=[older, newer], runs=runs)
    assert (result["latestVersion"], result["rows"]) == ("aaaaaaaaaaaa", 1000)
    assert [v["id"] for v in result["versions"]] == ["bbbbbbbbbbbb", "aaaaaaaaaaaa"]  # by creation
    # A failed run after it changes nothing; without run results, the newest created wins.
    failed = run("later", outcome="Failed", reason="ContractViolated", message=CONTRACT_MESSAGE)
    assert compute(jobs=[], versions=[older, newer], runs=[*runs, failed])["latestVersion"] == "aaaaaaaaaaaa"
    assert compute(jobs=[], versions=[older, newer], runs=[])["latestVersion"] == "bbbbbbbbbbbb"
    # A run result naming a version that is not listed (deleted) does not hide the others.
    gone = [run("x", version_id="cccccccccccc")]
    assert compute(jobs=[], versions=[older, newer], runs=gone)["latestVersion"] == "bbbbbbbbbbbb"


def test_version_without_profile_has_no_profile_uri():
    result = compute(jobs=[], versions=[version("aaaaaaaaaaaa", profile=False)])
    assert "profileUri" not in result and result["latestVersion"] == "aaaaaaaaaaaa"
