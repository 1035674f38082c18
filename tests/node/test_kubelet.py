"""Pods run for real by the local node's kubelet: env, volumes, images, scheduling, probes, stopping."""

from __future__ import annotations

import base64
import os
import signal
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from kubeloop.local.supervisor import free_port
from tests.conftest import KubectlCLI
from tests.node.conftest import (
    IMAGE,
    NODE_NAME,
    KubeAPI,
    RunningNode,
    condition,
    container,
    node_ready,
    pod_in_phase,
    pod_manifest,
    pods_path,
    processes_with_env,
    start_node_process,
    wait_for,
)

pytestmark = pytest.mark.integration
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log_of(kubectl: KubectlCLI, namespace: str, pod: str, *args: str) -> str:
    return kubectl("logs", "-n", namespace, f"pod/{pod}", *args).stdout


def container_state(pod: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return dict(pod["status"]["containerStatuses"][index]["state"])


def test_the_node_registers_with_this_machines_capacity_and_no_gpu(api: KubeAPI, node: RunningNode) -> None:
    found = api.get(f"/api/v1/nodes/{NODE_NAME}")

    assert found is not None
    status = found["status"]
    assert condition(found, "Ready")["status"] == "True" and condition(found, "Ready")["reason"] == "KubeletReady"
    assert status["capacity"]["cpu"] == str(os.cpu_count())
    assert status["capacity"]["memory"].endswith("Ki") and status["capacity"]["pods"] == "110"
    assert status["allocatable"] == status["capacity"] and "nvidia.com/gpu" not in status["capacity"]
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    port = status["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    with _DIRECT.open(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
        assert answer.read() == b"ok"
    assert found["metadata"]["labels"]["kubernetes.io/hostname"] == NODE_NAME


def test_env_comes_from_secrets_config_maps_and_the_downward_api(api: KubeAPI, kubectl: KubectlCLI,
                                                                 namespace: str) -> None:
    api.create(f"/api/v1/namespaces/{namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
        "data": {"password": base64.b64encode(b"s3cret").decode(), "user": base64.b64encode(b"ada").decode()}})
    api.create(f"/api/v1/namespaces/{namespace}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "fast"}})
    env = [
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "ABSENT", "valueFrom": {"secretKeyRef": {"name": "nowhere", "key": "x", "optional": True}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
    ]
    names = "PASSWORD MODE ABSENT POD NS TEAM IP NODE MEM_MI CPU prefix_user"
    script = f'for v in {names}; do eval "echo $v=\\${{$v-unset}}"; done'
    pod = pod_manifest("envs", container(["sh", "-c", script], env=env,
                                         envFrom=[{"secretRef": {"name": "creds"}, "prefix": "prefix_"}],
                                         resources={"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}))
    pod["metadata"]["labels"] = {"team": "ml"}
    api.create(pods_path(namespace), pod)

    pod_in_phase(api, namespace, "envs", "Succeeded")

    assert log_of(kubectl, namespace, "envs").splitlines() == [
        "PASSWORD=s3cret", "MODE=fast", "ABSENT=unset", "POD=envs", f"NS={namespace}", "TEAM=ml", "IP=127.0.0.1",
        f"NODE={NODE_NAME}", "MEM_MI=64", "CPU=250", "prefix_user=ada"]


def test_command_and_args_expand_variables_in_order(api: KubeAPI, kubectl: KubectlCLI, namespace: str) -> None:
    env = [{"name": "GREETING", "value": "hello"}, {"name": "WHOM", "value": "$(GREETING) world"},
           {"name": "EARLY", "value": "$(LATE)"}, {"name": "LATE", "value": "late"}]
    args = ["%s\n", "$(WHOM)", "$$(GREETING)", "$(MISSING)", "x$(GREETING)y", "$(EARLY)", "$$$$", "$(unclosed"]
    api.create(pods_path(namespace), pod_manifest("expand", container(["printf"], args=args, env=env)))

    pod_in_phase(api, namespace, "expand", "Succeeded")

    assert log_of(kubectl, namespace, "expand").splitlines() == [
        "hello world", "$(GREETING)", "$(MISSING)", "xhelloy", "$(LATE)", "$$", "$(unclosed"]


def test_a_missing_secret_keeps_the_container_waiting_until_it_exists(api: KubeAPI, namespace: str) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}}]
    api.create(pods_path(namespace), pod_manifest("patient", container(["true"], env=env)))

    def config_error() -> dict[str, Any] | None:
        pod = api.get(pods_path(namespace, "patient"))
        waiting = (container_state(pod) if pod and pod["status"].get("containerStatuses") else {}).get("waiting")
        return waiting if waiting and waiting["reason"] == "CreateContainerConfigError" else None

    waiting = wait_for(config_error, what="CreateContainerConfigError")
    assert waiting["message"] == 'secret "later" not found'
    assert api.get(pods_path(namespace, "patient"))["status"]["phase"] == "Pending"

    api.create(f"/api/v1/namespaces/{namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "later"}, "data": {"other": "eA=="}})
    wait_for(lambda: (config_error() or {}).get("message") == "couldn't find key token in Secret "
                                                                 f"{namespace}/later", what="the missing key")
    api.patch(f"/api/v1/namespaces/{namespace}/secrets/later", {"data": {"token": "eA=="}})
    pod_in_phase(api, namespace, "patient", "Succeeded")


def test_an_image_without_a_local_entrypoint_fails_the_pod_loudly(api: KubeAPI, namespace: str) -> None:
    api.create(pods_path(namespace), pod_manifest("foreign", {"name": "main", "image": "nginx:1.27"}))

    pod = pod_in_phase(api, namespace, "foreign", "Failed")

    terminated = container_state(pod)["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("ImageNotRunnableLocally", 128)
    assert '"nginx:1.27"' in terminated["message"] and "--image nginx=COMMAND" in terminated["message"]
    assert pod["status"]["reason"] == "ImageNotRunnableLocally"


def test_a_gpu_pod_stays_pending_as_unschedulable(api: KubeAPI, kubectl: KubectlCLI, namespace: str) -> None:
    gpu = container(["true"], resources={"limits": {"nvidia.com/gpu": "1"}})
    api.create(pods_path(namespace), pod_manifest("gpu", gpu))

    def scheduled_condition() -> dict[str, Any] | None:
        return condition(api.get(pods_path(namespace, "gpu")), "PodScheduled")

    scheduled = wait_for(scheduled_condition, what="the scheduler's verdict")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
    assert scheduled["message"].startswith("0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")
    pod = api.get(pods_path(namespace, "gpu"))
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    assert log_of(kubectl, namespace, "gpu") == ""  # kube-apiserver answers nothing for an unscheduled pod


def test_empty_dir_volumes_are_shared_directories_found_by_path_or_env(api: KubeAPI, kubectl: KubectlCLI,
                                                                       namespace: str, node: RunningNode) -> None:
    init = container(["sh", "-c", "echo from-init > /data/handoff.txt"], name="prepare",
                     volumeMounts=[{"name": "scratch", "mountPath": "/data"}])
    main = container(["sh", "-c", 'cat /work/handoff.txt; cat "$KUBELOOP_VOLUME_SCRATCH/handoff.txt"; pwd'],
                     volumeMounts=[{"name": "scratch", "mountPath": "/work"}], workingDir="/work")
    api.create(pods_path(namespace), pod_manifest("shared", main, initContainers=[init],
                                                  volumes=[{"name": "scratch", "emptyDir": {}}]))

    pod = pod_in_phase(api, namespace, "shared", "Succeeded")

    directory = node.state_dir / "pods" / pod["metadata"]["uid"] / "volumes" / "scratch"
    assert log_of(kubectl, namespace, "shared", "-c", "main").splitlines() == ["from-init", "from-init",
                                                                               str(directory)]
    assert (directory / "handoff.txt").read_text() == "from-init\n"
    assert not Path("/data/handoff.txt").exists()
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    conditions = {c["type"]: (c["status"], c.get("reason")) for c in pod["status"]["conditions"]}
    assert conditions == {"PodReadyToStartContainers": ("False", None), "Initialized": ("True", None),
                          "Ready": ("False", "PodCompleted"), "ContainersReady": ("False", "PodCompleted"),
                          "PodScheduled": ("True", None)}
    status = pod["status"]
    assert (status["podIP"], status["podIPs"], status["hostIP"]) == ("127.0.0.1", [{"ip": "127.0.0.1"}], "127.0.0.1")
    assert status["startTime"] <= status["containerStatuses"][0]["state"]["terminated"]["startedAt"]
    main_status = status["containerStatuses"][0]
    assert {key: main_status[key] for key in ("name", "image", "ready", "restartCount")} == {
        "name": "main", "image": IMAGE, "ready": False, "restartCount": 0}
    assert main_status["containerID"].startswith("kubeloop://")
    terminated = main_status["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert terminated["startedAt"] <= terminated["finishedAt"]


def test_a_volume_the_node_cannot_emulate_fails_the_pod(api: KubeAPI, namespace: str) -> None:
    api.create(pods_path(namespace), pod_manifest(
        "hostpath", container(["true"], volumeMounts=[{"name": "host", "mountPath": "/host"}]),
        volumes=[{"name": "host", "hostPath": {"path": "/var/lib"}}]))

    pod = pod_in_phase(api, namespace, "hostpath", "Failed")

    assert pod["status"]["reason"] == "VolumeNotSupportedLocally"
    assert 'volume "host" is of type hostPath' in pod["status"]["message"]


def test_readiness_and_liveness_probes(api: KubeAPI, namespace: str) -> None:
    server = container(
        ["python", "-c", "import http.server as h; h.HTTPServer(('127.0.0.1', int(__import__('os').environ"
                         "['PORT'])), h.SimpleHTTPRequestHandler).serve_forever()"],
        env=[{"name": "PORT", "value": str(free_port())}], name="server")
    server["readinessProbe"] = {"httpGet": {"path": "/", "port": int(server["env"][0]["value"])}, "periodSeconds": 1}
    server["livenessProbe"] = {"tcpSocket": {"port": int(server["env"][0]["value"])}, "periodSeconds": 1}
    crashing = container(["sleep", "300"], name="unhealthy",
                         livenessProbe={"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1},
                         readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1})
    api.create(pods_path(namespace), pod_manifest("probed", server, crashing, restartPolicy="Always",
                                                  terminationGracePeriodSeconds=1))

    def ready_server_and_restarted_sleeper() -> dict[str, Any] | None:
        pod = api.get(pods_path(namespace, "probed"))
        statuses = {s["name"]: s for s in (pod or {}).get("status", {}).get("containerStatuses") or []}
        if statuses.get("server", {}).get("ready") and statuses.get("unhealthy", {}).get("restartCount", 0) >= 1:
            return pod
        return None

    pod = wait_for(ready_server_and_restarted_sleeper, what="readiness of one container, restarts of the other")

    statuses = {s["name"]: s for s in pod["status"]["containerStatuses"]}
    assert statuses["server"]["restartCount"] == 0 and "running" in statuses["server"]["state"]
    assert statuses["unhealthy"]["lastState"]["terminated"]["exitCode"] in (137, 143)
    assert pod["status"]["phase"] == "Running"


def test_on_failure_restarts_the_container_in_place(api: KubeAPI, kubectl: KubectlCLI, namespace: str,
                                                    tmp_path: Path) -> None:
    flag = tmp_path / "ran-once"
    script = f'if [ -e {flag} ]; then echo second; exit 0; fi; touch {flag}; echo first; exit 1'
    api.create(pods_path(namespace), pod_manifest("retry", container(["sh", "-c", script]),
                                                  restartPolicy="OnFailure"))

    pod = pod_in_phase(api, namespace, "retry", "Succeeded")

    status = pod["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1 and status["state"]["terminated"]["exitCode"] == 0
    assert log_of(kubectl, namespace, "retry") == "second\n"
    assert log_of(kubectl, namespace, "retry", "--previous") == "first\n"


def test_deleting_a_pod_sends_sigterm_then_sigkill_after_the_grace_period(api: KubeAPI, namespace: str,
                                                                          tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    polite = f"trap 'echo bye > {tmp_path}/polite; exit 0' TERM; sleep 300 & wait"
    stubborn = "trap '' TERM; sleep 300 & wait; sleep 300"
    env = [{"name": "MARKER", "value": marker}]
    api.create(pods_path(namespace), pod_manifest(
        "stoppable", container(["sh", "-c", polite], name="polite", env=env),
        container(["sh", "-c", stubborn], name="stubborn", env=env), terminationGracePeriodSeconds=1))
    wait_for(lambda: len(processes_with_env("MARKER", marker)) == 4, what="both containers to run")

    api.delete(pods_path(namespace, "stoppable"))

    wait_for(lambda: processes_with_env("MARKER", marker) == [], what="every process of the pod to stop")
    assert (tmp_path / "polite").read_text() == "bye\n"


def test_a_stopped_node_leaves_no_process_and_a_restarted_one_cleans_up(
        apiserver: Any, api: KubeAPI, namespace: str, tmp_path: Path) -> None:
    """A second node (kubelet only): SIGTERM stops its pods; after a SIGKILL, its next start kills leftovers."""
    marker = uuid.uuid4().hex
    env = [{"name": "MARKER", "value": marker}]

    def start() -> Any:
        process = start_node_process(Path(apiserver.kubeconfig_path), tmp_path / "state", "--node-name", "second",
                                     "--controllers", "kubelet")
        wait_for(lambda: node_ready(api, "second"), what="the second node")
        return process

    def run_pod(name: str) -> None:
        api.create(pods_path(namespace), pod_manifest(name, container(["sh", "-c", "sleep 300; true"], env=env),
                                                      nodeName="second"))
        wait_for(lambda: len(processes_with_env("MARKER", marker)) == 2, what=f"{name} to run")

    process = start()
    try:
        run_pod("graceful")
        process.stop()
        assert processes_with_env("MARKER", marker) == []
        stopped = api.get(pods_path(namespace, "graceful"))
        assert (stopped["status"]["phase"], stopped["status"]["reason"]) == ("Failed", "Terminated")
        assert condition(api.get("/api/v1/nodes/second"), "Ready")["status"] == "False"

        process = start()
        run_pod("killed")
        os.kill(process.pid, signal.SIGKILL)
        wait_for(lambda: len(processes_with_env("MARKER", marker)) == 1, what="sh to die with its node")
        process.stop()
        process = start()  # finds the orphaned sleep of its previous run
        wait_for(lambda: processes_with_env("MARKER", marker) == [], what="the leftover to be killed")
    finally:
        process.stop()
        api.delete("/api/v1/nodes/second")
