"""Jobs run for real by the local node: its Job controller creates pods, its kubelet runs them."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KubectlCLI
from tests.node.conftest import (
    KubeAPI,
    condition,
    container,
    finished_job,
    job_manifest,
    job_pods,
    jobs_path,
    pods_path,
    processes_with_env,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_indexed_job_runs_each_index_once_and_completes(api: KubeAPI, kubectl: KubectlCLI, namespace: str) -> None:
    script = 'echo "index=$JOB_COMPLETION_INDEX hostname=$HOSTNAME"'
    api.create(jobs_path(namespace), job_manifest(
        "idx", container(["sh", "-c", script]), completions=3, parallelism=3, completionMode="Indexed",
        pod_spec={"subdomain": "workers"}))

    job = finished_job(api, namespace, "idx")

    assert condition(job, "Complete")["status"] == "True"
    assert condition(job, "SuccessCriteriaMet")["reason"] == "CompletionsReached"
    status = job["status"]
    assert (status["completedIndexes"], status["succeeded"], status["failed"], status["active"]) == ("0-2", 3, 0, 0)
    assert status["completionTime"] >= status["startTime"]
    pods = sorted(job_pods(api, namespace, "idx"), key=lambda p: p["metadata"]["name"])
    assert len(pods) == 3
    uid = job["metadata"]["uid"]
    for index, pod in enumerate(pods):
        meta = pod["metadata"]
        assert meta["name"].startswith(f"idx-{index}-") and len(meta["name"]) == len(f"idx-{index}-") + 5
        assert meta["annotations"]["batch.kubernetes.io/job-completion-index"] == str(index)
        assert meta["labels"]["batch.kubernetes.io/job-completion-index"] == str(index)
        assert {meta["labels"][key] for key in ("controller-uid", "batch.kubernetes.io/controller-uid")} == {uid}
        assert meta["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": "idx", "uid": uid,
                                            "controller": True, "blockOwnerDeletion": True}]
        assert not meta.get("finalizers")  # counted, so the tracking finalizer was released
        assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == (f"idx-{index}", "workers")
        assert pod["status"]["phase"] == "Succeeded"
        log = kubectl("logs", "-n", namespace, f"pod/{meta['name']}").stdout
        assert log == f"index={index} hostname=idx-{index}\n"


def test_job_gets_the_api_servers_defaults(api: KubeAPI, kubectl: KubectlCLI, namespace: str) -> None:
    manifest = job_manifest("defaults", container(["true"]))
    manifest["spec"]["template"]["spec"].pop("restartPolicy")
    refused = kubectl.apply(manifest, "-n", namespace, check=False)
    assert refused.returncode != 0
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Always"' in refused.stderr

    created = api.create(jobs_path(namespace), job_manifest("defaults", container(["true"])))

    spec = created["spec"]
    uid = created["metadata"]["uid"]
    assert {key: spec[key] for key in ("backoffLimit", "completions", "parallelism", "completionMode", "suspend",
                                       "manualSelector", "podReplacementPolicy")} == {
        "backoffLimit": 6, "completions": 1, "parallelism": 1, "completionMode": "NonIndexed", "suspend": False,
        "manualSelector": False, "podReplacementPolicy": "TerminatingOrFailed"}
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert spec["template"]["metadata"]["labels"] == {
        "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
        "batch.kubernetes.io/job-name": "defaults", "job-name": "defaults"}
    assert created["metadata"]["labels"] == spec["template"]["metadata"]["labels"]
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    assert spec["template"]["spec"]["dnsPolicy"] == "ClusterFirst"
    assert finished_job(api, namespace, "defaults")["status"]["succeeded"] == 1


def test_failing_job_exhausts_its_backoff_limit(api: KubeAPI, namespace: str) -> None:
    api.create(jobs_path(namespace), job_manifest("fails", container(["sh", "-c", "exit 3"]), backoffLimit=1))

    job = finished_job(api, namespace, "fails")

    failed = condition(job, "Failed")
    assert (failed["status"], failed["reason"], failed["message"]) == (
        "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    assert condition(job, "FailureTarget")["reason"] == "BackoffLimitExceeded"
    assert condition(job, "Complete") is None
    assert (job["status"]["failed"], job["status"]["succeeded"], job["status"]["active"]) == (2, 0, 0)
    pods = job_pods(api, namespace, "fails")
    assert len(pods) == 2
    for pod in pods:
        assert pod["status"]["phase"] == "Failed"
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")


def test_pod_failure_policy_fails_the_job_on_a_matching_exit_code(api: KubeAPI, namespace: str) -> None:
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    api.create(jobs_path(namespace), job_manifest("policy", container(["sh", "-c", "exit 42"]),
                                                  podFailurePolicy=policy))

    job = finished_job(api, namespace, "policy")

    pod = job_pods(api, namespace, "policy")[0]["metadata"]["name"]
    failed = condition(job, "Failed")
    assert (failed["reason"], failed["message"]) == (
        "PodFailurePolicy",
        f"Container main for pod {namespace}/{pod} failed with exit code 42 matching FailJob rule at index 0")
    assert job["status"]["failed"] == 1


def test_exceeding_the_active_deadline_fails_the_job_and_stops_its_pod(api: KubeAPI, namespace: str) -> None:
    marker = uuid.uuid4().hex
    api.create(jobs_path(namespace), job_manifest(
        "slow", container(["sleep", "300"], env=[{"name": "MARKER", "value": marker}]), activeDeadlineSeconds=1))
    wait_for(lambda: processes_with_env("MARKER", marker), what="the pod's process to run")

    job = finished_job(api, namespace, "slow")

    failed = condition(job, "Failed")
    assert (failed["reason"], failed["message"]) == ("DeadlineExceeded", "Job was active longer than specified deadline")
    assert (job["status"]["failed"], job["status"]["active"], job["status"]["terminating"]) == (1, 0, 0)
    assert job_pods(api, namespace, "slow") == []  # deleted by the controller, as kube does
    assert processes_with_env("MARKER", marker) == []  # Failed waits until the pod has stopped


def test_suspend_stops_the_pods_and_resume_starts_again(api: KubeAPI, namespace: str, tmp_path: Path) -> None:
    flag = tmp_path / "second-run"  # the first run waits; the run after the resume succeeds at once
    marker = uuid.uuid4().hex
    script = f'if [ -e {flag} ]; then exit 0; fi; touch {flag}; exec sleep 300'
    api.create(jobs_path(namespace), job_manifest("pausable", container(
        ["sh", "-c", script], env=[{"name": "MARKER", "value": marker}])))
    wait_for(lambda: flag.exists() and processes_with_env("MARKER", marker), what="the first run")

    api.patch(jobs_path(namespace, "pausable"), {"spec": {"suspend": True}})

    def suspended() -> dict[str, Any] | None:
        job = api.get(jobs_path(namespace, "pausable"))
        ok = (condition(job, "Suspended") or {}).get("status") == "True" and job["status"].get("active") == 0
        return job if ok and not job_pods(api, namespace, "pausable") else None

    job = wait_for(suspended, what="the job to be suspended with no pod")
    assert condition(job, "Suspended")["reason"] == "JobSuspended"
    assert job["status"]["failed"] == 0  # pods removed by a suspension are not failures
    wait_for(lambda: not processes_with_env("MARKER", marker), what="the suspended pod's process to stop")

    api.patch(jobs_path(namespace, "pausable"), {"spec": {"suspend": False}})
    job = finished_job(api, namespace, "pausable")

    assert condition(job, "Complete")["status"] == "True"
    resumed = condition(job, "Suspended")
    assert (resumed["status"], resumed["reason"], resumed["message"]) == ("False", "JobResumed", "Job resumed")
    assert (job["status"]["succeeded"], job["status"]["failed"]) == (1, 0)


def test_a_job_created_suspended_has_no_pods_and_no_start_time(api: KubeAPI, namespace: str) -> None:
    api.create(jobs_path(namespace), job_manifest("queued", container(["true"]), suspend=True))

    job = wait_for(lambda: condition(api.get(jobs_path(namespace, "queued")), "Suspended") and
                   api.get(jobs_path(namespace, "queued")), what="the Suspended condition")

    assert "startTime" not in job["status"] and job_pods(api, namespace, "queued") == []
    api.patch(jobs_path(namespace, "queued"), {"spec": {"suspend": False}})
    job = finished_job(api, namespace, "queued")
    assert job["status"]["startTime"] >= condition(job, "Suspended")["lastTransitionTime"]


def test_ttl_after_finished_deletes_the_job_and_its_pods(api: KubeAPI, namespace: str) -> None:
    api.create(jobs_path(namespace), job_manifest("shortlived", container(["true"]), ttlSecondsAfterFinished=1))
    finished_job(api, namespace, "shortlived")

    wait_for(lambda: api.get(jobs_path(namespace, "shortlived")) is None, what="the TTL to delete the job")
    wait_for(lambda: api.items(pods_path(namespace)) == [], what="the job's pods to be deleted with it")


def test_pods_of_one_job_rendezvous_on_loopback_at_the_jobs_own_port(api: KubeAPI, kubectl: KubectlCLI,
                                                                     namespace: str) -> None:
    api.create(f"/api/v1/namespaces/{namespace}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "workers"},
        "spec": {"clusterIP": "None", "selector": {"job-name": "ddp"}, "ports": [{"port": 29500}]}})
    # Rank 0 listens at MASTER_ADDR:MASTER_PORT, rank 1 connects to it: a real rendezvous.
    program = """
import os, socket, sys, time
addr, port, rank = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), os.environ["JOB_COMPLETION_INDEX"]
print(f"rank={rank} master={addr}:{port} url={os.environ['STORE_URL']}", flush=True)
if rank == "0":
    server = socket.create_server((addr, port))
    connection, _ = server.accept()
    print("rank 0 received", connection.recv(100).decode(), flush=True)
else:
    for _ in range(600):
        try:
            socket.create_connection((addr, port), timeout=1).sendall(b"hello from rank 1")
            break
        except OSError:
            time.sleep(0.05)
    else:
        sys.exit(1)
"""
    env = [{"name": "MASTER_ADDR", "value": "ddp-0.workers"}, {"name": "MASTER_PORT", "value": "29500"},
           {"name": "STORE_URL", "value": f"http://ddp-0.workers.{namespace}.svc.cluster.local:29500/store"}]
    api.create(jobs_path(namespace), job_manifest(
        "ddp", container(["python", "-c", program], env=env), completions=2, parallelism=2,
        completionMode="Indexed", pod_spec={"subdomain": "workers"}))

    job = finished_job(api, namespace, "ddp")

    assert condition(job, "Complete")["status"] == "True"
    port = job["metadata"]["annotations"]["local.kubeloop.dev/rendezvous-port"]
    assert port != "29500"
    logs = {}
    for pod in job_pods(api, namespace, "ddp"):
        assert pod["metadata"]["annotations"]["local.kubeloop.dev/rendezvous-port"] == port
        index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        logs[index] = kubectl("logs", "-n", namespace, f"pod/{pod['metadata']['name']}").stdout
    url = "http://127.0.0.1:29500/store"  # the Service's name became loopback; its port is not translated
    assert logs["0"] == f"rank=0 master=127.0.0.1:{port} url={url}\nrank 0 received hello from rank 1\n"
    assert logs["1"] == f"rank=1 master=127.0.0.1:{port} url={url}\n"


def test_deleting_a_running_job_stops_every_process(api: KubeAPI, kubectl: KubectlCLI, namespace: str) -> None:
    marker = uuid.uuid4().hex
    # sh stays the parent of sleep: the whole process group must go, not only the main process.
    api.create(jobs_path(namespace), job_manifest("doomed", container(
        ["sh", "-c", "sleep 300; echo never"], env=[{"name": "MARKER", "value": marker}]), parallelism=2,
        completions=2))
    wait_for(lambda: len(processes_with_env("MARKER", marker)) == 4, what="two pods with sh and sleep each")

    kubectl("delete", "-n", namespace, "job/doomed")

    wait_for(lambda: job_pods(api, namespace, "doomed") == [], what="the job's pods to be deleted")
    wait_for(lambda: processes_with_env("MARKER", marker) == [], what="every process of the job to stop")


def test_backoff_limit_per_index_fails_only_that_index(api: KubeAPI, namespace: str) -> None:
    script = 'if [ "$JOB_COMPLETION_INDEX" = 1 ]; then exit 1; fi'
    api.create(jobs_path(namespace), job_manifest(
        "per-index", container(["sh", "-c", script]), completions=3, parallelism=3, completionMode="Indexed",
        backoffLimitPerIndex=1))

    job = finished_job(api, namespace, "per-index")

    assert job["spec"]["backoffLimit"] == 2**31 - 1  # the API server's default with a per-index limit
    failed = condition(job, "Failed")
    assert (failed["reason"], failed["message"]) == ("FailedIndexes", "Job has failed indexes")
    status = job["status"]
    assert (status["completedIndexes"], status["failedIndexes"], status["succeeded"], status["failed"]) == (
        "0,2", "1", 2, 2)
    retried = [p for p in job_pods(api, namespace, "per-index")
               if p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "1"]
    assert sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"] for p in retried) == [
        "0", "1"]
