"""Fixtures for tests of the local node: a real node process against the session API server.

- `node`: one `kubeloop.local.node.main` process per session (kubelet, Job, CronJob and
  InferenceService controllers), against the session `apiserver`, with its state directory
  in a temporary folder. It is ready when its Node object reports `Ready=True`.
- `namespace`: a fresh namespace per test, deleted afterwards (its pods are then stopped).
- `api`: a small synchronous JSON client of the session API server, cheaper than a kubectl
  process for polling.
- `wait_for(check, what=...)`: poll until `check()` is truthy; the timeout only stops a hang.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kubeloop.local.supervisor import ManagedProcess, python_module

T = TypeVar("T")
NODE_NAME = "kubeloop-local"
HANG_GUARD = 60.0  # seconds: only stops a test that would hang; never a performance limit

# Requests to 127.0.0.1 never go through an HTTP(S)_PROXY from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_for(check: Callable[[], T], *, what: str, timeout: float = HANG_GUARD, interval: float = 0.1) -> T:
    """Poll `check` until it returns a truthy value and return that value.

    The timeout only stops a hang: it is generous on purpose and is not a performance assertion.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


@dataclass(frozen=True)
class KubeAPI:
    """Synchronous JSON requests to the local API server (what tests poll with)."""

    url: str

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": content_type, "Accept": "application/json"})
        with _DIRECT.open(request, timeout=30) as response:
            text = response.read().decode()
        return dict(json.loads(text)) if text else {}

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at `path`, or None when it does not exist."""
        try:
            return self.request("GET", path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def items(self, path: str, label_selector: str = "") -> list[dict[str, Any]]:
        query = f"?labelSelector={urllib.request.quote(label_selector)}" if label_selector else ""
        return list(self.request("GET", f"{path}{query}").get("items", []))

    def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, obj)

    def patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", path, patch, content_type="application/merge-patch+json")

    def delete(self, path: str, propagation: str = "Background") -> None:
        try:
            self.request("DELETE", path, {"propagationPolicy": propagation})
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise


@pytest.fixture(scope="session")
def api(apiserver: Any) -> KubeAPI:
    return KubeAPI(apiserver.url)


def node_ready(api: KubeAPI, name: str = NODE_NAME) -> bool:
    node = api.get(f"/api/v1/nodes/{name}")
    conditions = (node or {}).get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def start_node_process(kubeconfig: Path, state_dir: Path, *extra_args: str) -> ManagedProcess:
    """`python -m kubeloop.local.node.main --kubeconfig K --state-dir D ...` as a managed process."""
    return ManagedProcess(
        "node",
        python_module("kubeloop.local.node.main", "--kubeconfig", str(kubeconfig),
                      "--state-dir", str(state_dir), *extra_args),
        log_path=state_dir.parent / "node.log",
    ).start()


@dataclass(frozen=True)
class RunningNode:
    """The session's node process and where it keeps its state."""

    process: ManagedProcess
    state_dir: Path
    name: str = NODE_NAME


@pytest.fixture(scope="session")
def node(apiserver: Any, api: KubeAPI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """The local node as a real process against the session API server (ready: Node is Ready)."""
    root = tmp_path_factory.mktemp("node")
    process = start_node_process(Path(apiserver.kubeconfig_path), root / "state")
    try:
        def ready() -> bool:
            if not process.alive():
                raise AssertionError(f"the node process exited; last log lines:\n{process.log_tail()}")
            return node_ready(api)

        wait_for(ready, what="the local node to register a Ready Node", interval=0.05)
        yield RunningNode(process=process, state_dir=root / "state")
    finally:
        process.stop(grace=30)
        print(f"node log: {process.log_path}\n{process.log_tail(60)}")


@pytest.fixture()
def namespace(node: RunningNode, api: KubeAPI) -> Iterator[str]:
    """A fresh namespace for one test; deleting it afterwards stops whatever ran in it."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    api.delete(f"/api/v1/namespaces/{name}")


# Manifests and checks shared by the node's tests.

IMAGE = "ghcr.io/kubeloop/jobs:test"  # one of kubeloop's own images: runs as a local process


def container(command: list[str], name: str = "main", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, "command": command, **extra}


def pod_manifest(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": list(containers), **spec}}


def job_manifest(name: str, *containers: dict[str, Any], pod_spec: dict[str, Any] | None = None,
                 **spec: Any) -> dict[str, Any]:
    template = {"spec": {"restartPolicy": "Never", "containers": list(containers), **(pod_spec or {})}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": template, **spec}}


def jobs_path(namespace: str, name: str = "") -> str:
    return f"/apis/batch/v1/namespaces/{namespace}/jobs" + (f"/{name}" if name else "")


def pods_path(namespace: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/pods" + (f"/{name}" if name else "")


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    """The condition of type `kind` in `obj.status.conditions`, if any."""
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c["type"] == kind), None)


def finished_job(api: KubeAPI, namespace: str, name: str) -> dict[str, Any]:
    """Wait until the Job is Complete or Failed; return it."""
    def finished() -> dict[str, Any] | None:
        job = api.get(jobs_path(namespace, name))
        done = any((condition(job, kind) or {}).get("status") == "True" for kind in ("Complete", "Failed"))
        return job if done else None

    return wait_for(finished, what=f"job {namespace}/{name} to finish")


def job_pods(api: KubeAPI, namespace: str, name: str) -> list[dict[str, Any]]:
    return api.items(pods_path(namespace), f"batch.kubernetes.io/job-name={name}")


def pod_in_phase(api: KubeAPI, namespace: str, name: str, *phases: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        pod = api.get(pods_path(namespace, name))
        return pod if pod and (pod.get("status") or {}).get("phase") in phases else None

    return wait_for(reached, what=f"pod {namespace}/{name} to be {' or '.join(phases)}")


def processes_with_env(name: str, value: str) -> list[Any]:
    """Processes of this user whose environment has NAME=value (how a pod's processes are found)."""
    import psutil

    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(name) == value:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
