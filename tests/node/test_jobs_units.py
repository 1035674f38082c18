"""The Job controller's pure parts: indexes, failure policy, back-off, conditions, the pods it builds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubeloop.local.node import jobstate as js
from kubeloop.local.node.jobs import desired_pod, finish_time_of
from kubeloop.local.node.localnet import RENDEZVOUS_PORT_ANNOTATION

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("indexes", "text"), [
    ([], ""), ([0], "0"), ([0, 1], "0,1"), ([0, 1, 2], "0-2"), ([5, 0, 1, 2, 7, 8, 9, 3], "0-3,5,7-9"),
])
def test_indexes_are_written_as_kube_writes_them(indexes: list[int], text: str) -> None:
    assert js.format_indexes(indexes) == text
    assert js.parse_indexes(text, 100) == set(indexes)


def test_parsed_indexes_stay_below_completions() -> None:
    assert js.parse_indexes("0-3,9", 3) == {0, 1, 2}


def failed_pod(exit_code: int, name: str = "main", conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns"}, "status": {
        "phase": "Failed", "conditions": conditions or [],
        "containerStatuses": [{"name": "sidecar", "state": {"terminated": {"exitCode": 0}}},
                              {"name": name, "state": {"terminated": {"exitCode": exit_code}}}]}}


def test_pod_failure_policy_rules_match_in_order() -> None:
    policy = {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
        {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1]}},
    ]}
    fail_job = js.match_pod_failure_policy(policy, failed_pod(42))
    assert (fail_job.action, fail_job.counts) == ("FailJob", True)
    assert fail_job.fail_job_message == "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
    assert js.match_pod_failure_policy(policy, failed_pod(42, name="other")).action == "Count"
    assert js.match_pod_failure_policy(policy, failed_pod(1)) == js.PolicyMatch(None, True)  # exit 0 never matches
    disrupted = failed_pod(1, conditions=[{"type": "DisruptionTarget", "status": "True"}])
    assert js.match_pod_failure_policy(policy, disrupted) == js.PolicyMatch("Ignore", False)
    assert js.match_pod_failure_policy(None, failed_pod(3)) == js.PolicyMatch(None, True)


def finished(phase: str, at: datetime) -> dict[str, Any]:
    return {"metadata": {}, "status": {"phase": phase, "containerStatuses": [
        {"state": {"terminated": {"finishedAt": at.strftime("%Y-%m-%dT%H:%M:%SZ")}}}]}}


def test_backoff_doubles_per_failure_since_the_last_success() -> None:
    record = js.next_backoff_record(js.BackoffRecord(), [], [finished("Failed", T0)], T0)
    assert record == js.BackoffRecord(1, T0)
    assert record.remaining(T0 + timedelta(seconds=4), 10) == 6
    record = js.next_backoff_record(record, [], [finished("Failed", T0 + timedelta(seconds=20))], T0)
    assert record.failures_after_last_success == 2
    assert record.remaining(T0 + timedelta(seconds=25), 10) == 15  # 20 s after the second failure
    assert js.BackoffRecord(30, T0).remaining(T0, 10) == js.MAX_POD_FAILURE_BACKOFF_SECONDS
    success_then_failure = js.next_backoff_record(record, [finished("Succeeded", T0 + timedelta(seconds=30))],
                                                  [finished("Failed", T0 + timedelta(seconds=40))], T0)
    assert success_then_failure == js.BackoffRecord(1, T0 + timedelta(seconds=40))
    assert js.next_backoff_record(record, [finished("Succeeded", T0)], [], T0).remaining(T0, 10) == 0


def test_conditions_keep_their_time_unless_they_change() -> None:
    conditions, changed = js.ensure_condition([], "Suspended", "False", "JobResumed", "Job resumed", "t1")
    assert (conditions, changed) == ([], False)  # a False condition is never added new
    conditions, changed = js.ensure_condition([], "Suspended", "True", "JobSuspended", "Job suspended", "t1")
    again, changed_again = js.ensure_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended", "t2")
    assert changed and not changed_again and again[0]["lastTransitionTime"] == "t1"


def test_pod_name_prefixes_are_trimmed_as_kube_trims_them() -> None:
    assert js.pod_name_prefix("train", None) == "train-"
    assert js.pod_name_prefix("train", 3) == "train-3-"
    long = "x" * 70
    assert js.pod_name_prefix(long, None) == "x" * 58
    assert js.pod_name_prefix(long, 12) == "x" * 54 + "-12-"


JOB: dict[str, Any] = {
    "metadata": {"name": "train", "namespace": "ns", "uid": "u-1", "annotations": {RENDEZVOUS_PORT_ANNOTATION: "4242"}},
    "spec": {"completionMode": "Indexed", "completions": 2, "backoffLimitPerIndex": 1, "template": {
        "metadata": {"labels": {"job-name": "train"}, "annotations": {"note": "x"}},
        "spec": {"restartPolicy": "Never", "subdomain": "workers",
                 "initContainers": [{"name": "init", "image": "i"}],
                 "containers": [{"name": "main", "image": "i", "env": [{"name": "A", "value": "1"}]}]}}},
}


def test_the_pods_of_an_indexed_job() -> None:
    pod = desired_pod(JOB, 1, index_failures=1)

    meta = pod["metadata"]
    assert meta["generateName"] == "train-1-"
    assert meta["labels"] == {"job-name": "train", "batch.kubernetes.io/job-completion-index": "1"}
    assert meta["annotations"] == {"note": "x", "batch.kubernetes.io/job-completion-index": "1",
                                   "batch.kubernetes.io/job-index-failure-count": "1",
                                   RENDEZVOUS_PORT_ANNOTATION: "4242"}
    assert meta["finalizers"] == ["batch.kubernetes.io/job-tracking"]
    assert meta["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": "train", "uid": "u-1",
                                        "controller": True, "blockOwnerDeletion": True}]
    assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == ("train-1", "workers")
    index_env = {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
        "apiVersion": "v1", "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}
    assert pod["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}, index_env]
    assert pod["spec"]["initContainers"][0]["env"] == [index_env]
    assert "env" not in JOB["spec"]["template"]["spec"]["initContainers"][0]  # the template is not changed


def test_the_pods_of_a_non_indexed_job() -> None:
    job = {**JOB, "metadata": {"name": "plain", "namespace": "ns", "uid": "u-2"},
           "spec": {**JOB["spec"], "completionMode": "NonIndexed"}}
    pod = desired_pod(job, None)
    assert pod["metadata"]["generateName"] == "plain-"
    assert "hostname" not in pod["spec"] and "batch.kubernetes.io/job-completion-index" not in pod["metadata"]["labels"]


def test_a_finished_jobs_finish_time() -> None:
    job = {"status": {"conditions": [{"type": "FailureTarget", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                                     {"type": "Failed", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"}]}}
    assert finish_time_of(job) == T0 + timedelta(seconds=5)
    assert finish_time_of({"status": {}}) is None
