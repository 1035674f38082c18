"""Fixtures for tests against the embedded control plane: CRDs installed, operator running."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kubeloop.local.supervisor import ManagedProcess, free_port, python_module
from tests.conftest import KubectlCLI

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def wait_for(check: Callable[[], T], *, what: str, timeout: float = 60.0, interval: float = 0.1) -> T:
    """Poll `check` until it returns a truthy value. The timeout only stops a hang; it is
    generous on purpose and is not a performance assertion."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


@pytest.fixture(scope="session")
def crds_installed(apiserver: Any, kubectl_session: KubectlCLI) -> None:
    kubectl_session("apply", "-f", str(REPO / "crds"))
    for crd in sorted((REPO / "crds").glob("*.yaml")):
        name = crd.name.removesuffix(".yaml")
        kubectl_session("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


@pytest.fixture(scope="session")
def operator_process(apiserver: Any, crds_installed: None, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[dict[str, Any]]:
    """The real operator (`kubeloop operator`) as a separate process against the local API server."""
    logs = tmp_path_factory.mktemp("operator")
    metrics_port, health_port = free_port(), free_port()
    process = ManagedProcess(
        "operator",
        python_module("kubeloop", "operator", "--kubeconfig", str(apiserver.kubeconfig_path),
                      "--metrics-address", "127.0.0.1", "--metrics-port", str(metrics_port),
                      "--health-address", "127.0.0.1", "--health-port", str(health_port)),
        log_path=logs / "operator.log",
        env={"KUBELOOP_RESYNC_SECONDS": "300"},
    ).start()
    try:
        process.wait_ready(f"http://127.0.0.1:{health_port}/healthz", timeout=60)
        yield {"process": process, "metrics_url": f"http://127.0.0.1:{metrics_port}/metrics",
               "health_url": f"http://127.0.0.1:{health_port}/healthz"}
    finally:
        process.stop()
        print(f"operator log: {process.log_path}\n{process.log_tail(40)}")


@pytest.fixture()
def namespace(kubectl_session: KubectlCLI) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl_session.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kubectl_session("delete", "namespace", name, "--wait=false", check=False)
