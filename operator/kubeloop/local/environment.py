"""`kubeloop up` / `kubeloop down`: the embedded control plane as one local environment.

Starts, on loopback only, the local API server and the operator as separate processes,
installs kubeloop's CRDs, writes a kubeconfig, and runs until interrupted. The state
directory records what runs (pids, ports) so that `kubeloop down` can stop an environment
started elsewhere and a second `up` refuses to start twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubeloop.local.supervisor import ManagedProcess, StartupError, free_port, python_module

DEFAULT_STATE_DIR = Path(os.environ.get("KUBELOOP_HOME", Path.home() / ".kubeloop")) / "local"
REPO_SAMPLES = Path(__file__).resolve().parents[3] / "manifests" / "samples"

Progress = Callable[[str], None]


def _print_progress(message: str) -> None:
    print(message, flush=True)


class EnvironmentError_(RuntimeError):  # noqa: N801 - avoid shadowing the builtin EnvironmentError
    """The local environment cannot start or stop; the message says what to do."""


@dataclass
class LocalEnvironment:
    state_dir: Path = DEFAULT_STATE_DIR
    progress: Progress = _print_progress
    processes: list[ManagedProcess] = field(default_factory=list)
    api_port: int = 0
    metrics_port: int = 0
    health_port: int = 0

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def run_file(self) -> Path:
        return self.state_dir / "run.json"

    # -- start -------------------------------------------------------------------------------

    def start(self, *, with_samples: bool = False) -> None:
        refuse_if_running(self.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        self.api_port, self.metrics_port, self.health_port = free_port(), free_port(), free_port()
        started = time.monotonic()
        try:
            self._start_apiserver()
            self._install_crds()
            self._start_operator()
            self._write_run_file()
            if with_samples:
                self._apply_samples()
        except BaseException:
            self.stop()
            raise
        self.progress(f"kubeloop is up in {time.monotonic() - started:.1f}s.\n")
        self.progress(self.summary())

    def _start_apiserver(self) -> None:
        t0 = time.monotonic()
        process = ManagedProcess(
            "apiserver",
            python_module("kubeloop", "local", "apiserver", "--port", str(self.api_port),
                          "--kubeconfig", str(self.kubeconfig)),
            log_path=self.state_dir / "logs" / "apiserver.log").start()
        self.processes.append(process)
        process.wait_ready(f"http://127.0.0.1:{self.api_port}/version", timeout=30)
        self.progress(f"  ✓ API server       http://127.0.0.1:{self.api_port}  ({time.monotonic() - t0:.1f}s)")

    def _install_crds(self) -> None:
        from kubeloop.core.kube import KubeClient
        from kubeloop.crdgen import custom_resource_definition, resources

        t0 = time.monotonic()
        client = KubeClient.connect(str(self.kubeconfig), field_manager="kubeloop-up")
        try:
            crds = [custom_resource_definition(resource) for resource in resources()]
            for crd in crds:
                client.apply(crd)
            for crd in crds:
                wait_established(client, crd["metadata"]["name"])
        finally:
            client.close()
        kinds = ", ".join(crd["spec"]["names"]["kind"] for crd in crds)
        self.progress(f"  ✓ CRDs installed   {kinds}  ({time.monotonic() - t0:.1f}s)")

    def _start_operator(self) -> None:
        t0 = time.monotonic()
        process = ManagedProcess(
            "operator",
            python_module("kubeloop", "operator", "--kubeconfig", str(self.kubeconfig),
                          "--metrics-address", "127.0.0.1", "--metrics-port", str(self.metrics_port),
                          "--health-address", "127.0.0.1", "--health-port", str(self.health_port)),
            log_path=self.state_dir / "logs" / "operator.log").start()
        self.processes.append(process)
        process.wait_ready(f"http://127.0.0.1:{self.health_port}/healthz", timeout=60)
        self.progress(f"  ✓ operator         metrics http://127.0.0.1:{self.metrics_port}/metrics"
                      f"  ({time.monotonic() - t0:.1f}s)")

    def _apply_samples(self) -> None:
        from kubeloop.core.kube import KubeClient

        if not REPO_SAMPLES.is_dir():
            self.progress("  ! samples not found (they ship with the source tree): skipped")
            return
        client = KubeClient.connect(str(self.kubeconfig), field_manager="kubeloop-up")
        try:
            names = []
            for path in sorted(REPO_SAMPLES.glob("*.yaml")):
                for doc in yaml.safe_load_all(path.read_text()):
                    if doc:
                        doc.setdefault("metadata", {}).setdefault("namespace", "default")
                        client.apply(doc)
                        names.append(f"{doc['kind']}/{doc['metadata']['name']}")
        finally:
            client.close()
        self.progress(f"  ✓ samples applied  {', '.join(names)}")

    def _write_run_file(self) -> None:
        self.run_file.write_text(json.dumps({
            "pids": {p.name: p.pid for p in self.processes},
            "apiserver": f"http://127.0.0.1:{self.api_port}",
            "metrics": f"http://127.0.0.1:{self.metrics_port}/metrics",
            "kubeconfig": str(self.kubeconfig),
            "supervisor": os.getpid(),
        }, indent=2))

    def summary(self) -> str:
        return "\n".join([
            "Use it from another shell:",
            f"  export KUBECONFIG={self.kubeconfig}",
            "  kubectl get kubeloop -A            # every kubeloop resource",
            "  kubectl get tr -o wide             # TrainingRuns with their columns",
            "  kubectl explain trainingrun.spec   # the API, documented",
            f"Logs: {self.state_dir / 'logs'}",
            "Press Ctrl-C to stop everything.",
        ])

    # -- run and stop ------------------------------------------------------------------------

    def wait(self) -> int:
        """Block until a signal or until a piece dies (then say which, with its log)."""
        stop = {"now": False}

        def request_stop(signum: int, frame: Any) -> None:
            stop["now"] = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        while not stop["now"]:
            for process in self.processes:
                if not process.alive():
                    self.progress(f"\n{process.name} stopped unexpectedly; last log lines:\n{process.log_tail()}")
                    return 1
            time.sleep(0.2)
        return 0

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        with contextlib.suppress(FileNotFoundError):
            self.run_file.unlink()


def wait_established(client: Any, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crd = client.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conditions = (crd.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            return
        time.sleep(0.05)
    raise StartupError(f"CRD {name} was not Established within {timeout:.0f}s")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_run_file(state_dir: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((state_dir / "run.json").read_text()))
    except (FileNotFoundError, ValueError):
        return None


def refuse_if_running(state_dir: Path) -> None:
    run = read_run_file(state_dir)
    if run and any(_pid_alive(pid) for pid in run.get("pids", {}).values()):
        raise EnvironmentError_(
            f"a local kubeloop is already running (state in {state_dir}); "
            "use it (export KUBECONFIG=" + str(run.get("kubeconfig")) + ") or stop it with `kubeloop down`")


def down(state_dir: Path = DEFAULT_STATE_DIR, progress: Progress = _print_progress) -> int:
    """Stop an environment started by `kubeloop up` (from any shell)."""
    run = read_run_file(state_dir)
    if not run:
        progress(f"nothing is running (no {state_dir / 'run.json'})")
        return 0
    pids = [run.get("supervisor"), *run.get("pids", {}).values()]
    for pid in pids:
        if pid and _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM) if pid != run.get("supervisor") else os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(pid and _pid_alive(pid) for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        if pid and _pid_alive(pid) and pid != run.get("supervisor"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        (state_dir / "run.json").unlink()
    progress("kubeloop local environment stopped")
    return 0


def up(state_dir: Path = DEFAULT_STATE_DIR, *, with_samples: bool = False) -> int:
    environment = LocalEnvironment(state_dir=state_dir)
    try:
        _print_progress("Starting kubeloop locally (127.0.0.1 only) ...")
        environment.start(with_samples=with_samples)
    except (EnvironmentError_, StartupError) as exc:
        print(f"kubeloop up: {exc}", file=sys.stderr)
        return 1
    try:
        return environment.wait()
    finally:
        _print_progress("Stopping ...")
        environment.stop()
        _print_progress("Stopped; nothing left running.")
