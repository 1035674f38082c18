"""The opt-in kind suite: a real cluster from kind-config.yaml, kubeloop's images loaded into it
and manifests/overlays/kind installed. Run with `make e2e-kind` (pytest -m kind).

Without Docker (a reachable daemon) or kind, every test here is skipped with the reason; the
normal suite never collects these tests (pyproject: addopts = -m 'not kind').
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import KubectlCLI

REPO = Path(__file__).resolve().parents[2]


def missing_tools() -> str | None:
    """Why the suite cannot run here, or None."""
    if shutil.which("docker") is None:
        return "Docker is not installed (the kind suite needs Docker and kind)"
    probe = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                           timeout=60)
    if probe.returncode != 0:
        return f"the Docker daemon is not reachable (the kind suite needs Docker and kind): {probe.stderr.strip()}"
    if shutil.which("kind") is None:
        return "kind is not installed (the kind suite needs Docker and kind)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if Path(str(item.fspath)).is_relative_to(Path(__file__).parent)]
    if not ours:
        return
    reason = missing_tools()
    for item in ours:
        item.add_marker(pytest.mark.kind)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


def run(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """Run a command; a failure raises with its output. The timeout only stops a hang."""
    result = subprocess.run(list(args), cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def kind_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubectlCLI]:
    """A fresh kind cluster with kubeloop installed; deleted afterwards unless KUBELOOP_KEEP_KIND=1."""
    name = f"kubeloop-e2e-{uuid.uuid4().hex[:6]}"
    root = tmp_path_factory.mktemp("kind")
    kubeconfig = root / "kubeconfig"
    run("make", "images")
    run("kind", "create", "cluster", "--name", name, "--config", str(REPO / "kind-config.yaml"),
        "--kubeconfig", str(kubeconfig), "--wait", "300s")
    try:
        tag = run("sed", "-n", 's/^version = "\\(.*\\)"/\\1/p', "pyproject.toml").stdout.strip()
        for image in ("operator", "trainer", "server", "jobs"):
            run("kind", "load", "docker-image", f"ghcr.io/kubeloop/{image}:{tag}", "--name", name)
        kubectl = KubectlCLI(kubeconfig, root / "kubecache")
        kubectl("apply", "--server-side", "-k", str(REPO / "manifests" / "overlays" / "kind"), timeout=300)
        for crd in ("featuresets", "trainingruns", "modelversions", "driftmonitors"):
            kubectl("wait", "--for=condition=Established", f"crd/{crd}.kubeloop.dev", "--timeout=120s")
        kubectl("-n", "kubeloop-system", "rollout", "status", "deployment/kubeloop-s3", "--timeout=300s",
                timeout=360)
        kubectl("-n", "kubeloop-system", "rollout", "status", "deployment/kubeloop-operator", "--timeout=300s",
                timeout=360)
        yield kubectl
    finally:
        if os.environ.get("KUBELOOP_KEEP_KIND") != "1":
            subprocess.run(["kind", "delete", "cluster", "--name", name], capture_output=True, timeout=600)
