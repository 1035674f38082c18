"""Container logs through the API server's pods/log, proxied to the node's kubelet, read with real kubectl."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import KubectlCLI
from tests.node.conftest import (
    KubeAPI,
    container,
    finished_job,
    job_manifest,
    jobs_path,
    pod_in_phase,
    pod_manifest,
    pods_path,
    wait_for,
)

pytestmark = pytest.mark.integration
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def test_kubectl_logs_of_a_job_and_its_options(api: KubeAPI, kubectl: KubectlCLI, namespace: str) -> None:
    script = "echo one; echo two; echo three; printf 'no newline'"
    api.create(jobs_path(namespace), job_manifest("talker", container(["sh", "-c", script])))
    api.create(pods_path(namespace), pod_manifest("complainer", container(["sh", "-c", "echo oops >&2"])))
    finished_job(api, namespace, "talker")

    assert kubectl("logs", "-n", namespace, "job/talker").stdout == "one\ntwo\nthree\nno newline"
    assert kubectl("logs", "-n", namespace, "job/talker", "--tail=2").stdout == "three\nno newline"
    assert kubectl("logs", "-n", namespace, "job/talker", "--limit-bytes=6").stdout == "one\ntw"
    stamped = kubectl("logs", "-n", namespace, "job/talker", "--timestamps").stdout.splitlines()
    moments = [datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00")[:26] + "+00:00")
               for line in stamped]
    assert [line.split(" ", 1)[1] for line in stamped] == ["one", "two", "three", "no newline"]
    assert moments == sorted(moments) and datetime.now(UTC) - moments[0] < timedelta(minutes=5)
    assert kubectl("logs", "-n", namespace, "job/talker", "--since=1h").stdout.startswith("one\n")
    pod_in_phase(api, namespace, "complainer", "Succeeded")
    assert kubectl("logs", "-n", namespace, "pod/complainer").stdout == "oops\n"  # stderr is logged too


def test_kubectl_logs_follow_streams_until_the_container_ends(api: KubeAPI, kubectl: KubectlCLI, namespace: str,
                                                              tmp_path: Path) -> None:
    go_on = tmp_path / "go-on"  # the container prints its second half only once this file exists
    script = f"echo first; while [ ! -e {go_on} ]; do sleep 0.05; done; echo second; echo third"
    api.create(pods_path(namespace), pod_manifest("streamer", container(["sh", "-c", script])))
    wait_for(lambda: kubectl("logs", "-n", namespace, "pod/streamer", check=False).stdout == "first\n",
             what="the first line")
    running = pod_in_phase(api, namespace, "streamer", "Running")
    assert {c["type"]: c["status"] for c in running["status"]["conditions"]} == {
        "PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True", "ContainersReady": "True",
        "PodScheduled": "True"}
    assert "running" in running["status"]["containerStatuses"][0]["state"]

    follower = subprocess.Popen([*kubectl.argv, "logs", "-f", "-n", namespace, "pod/streamer"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kubectl.env)
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "first\n"  # kubectl is following while the container waits
        go_on.touch()
        rest, errors = follower.communicate(timeout=60)
    finally:
        follower.kill()
    assert (rest, errors, follower.returncode) == ("second\nthird\n", "", 0)
    assert pod_in_phase(api, namespace, "streamer", "Succeeded")


def test_logs_of_a_container_that_has_not_started_are_refused_as_kube_does(api: KubeAPI, kubectl: KubectlCLI,
                                                                            namespace: str) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "token"}}}]
    api.create(pods_path(namespace), pod_manifest("blocked", container(["true"], env=env)))

    def refusal() -> str:
        answer = kubectl("logs", "-n", namespace, "pod/blocked", check=False)
        return answer.stderr if answer.returncode != 0 and "CreateContainerConfigError" in answer.stderr else ""

    message = wait_for(refusal, what="kubectl logs to be refused")
    assert message.strip() == ('Error from server (BadRequest): container "main" in pod "blocked" is waiting to '
                               'start: CreateContainerConfigError')
    previous = kubectl("logs", "-n", namespace, "pod/blocked", "--previous", check=False)
    assert 'previous terminated container "main" in pod "blocked" not found' in previous.stderr


def test_the_container_must_be_named_when_a_pod_has_several(api: KubeAPI, namespace: str) -> None:
    api.create(pods_path(namespace), pod_manifest("pair", container(["echo", "a"], name="a"),
                                                  container(["echo", "b"], name="b")))
    pod_in_phase(api, namespace, "pair", "Succeeded")

    with _DIRECT.open(f"{api.url}{pods_path(namespace, 'pair')}/log?container=b", timeout=30) as answer:
        assert (answer.read(), answer.headers["Content-Type"]) == (b"b\n", "text/plain")
    for query, message in [("", "a container name must be specified for pod pair, choose one of: [a b]"),
                           ("?container=c", "container c is not valid for pod pair")]:
        with pytest.raises(urllib.error.HTTPError) as refused:
            api.request("GET", pods_path(namespace, "pair") + "/log" + query)
        assert refused.value.code == 400
        assert json.loads(refused.value.read())["message"] == message
