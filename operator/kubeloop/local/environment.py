"""`kubeloop up` / `kubeloop down`: the embedded control plane as one local environment.

Starts, on loopback only and each as its own process: the local API server, an S3 store
(SeaweedFS), the local node (kubelet + Job/CronJob/KServe controllers) and the operator;
installs kubeloop's CRDs and KServe's InferenceService CRD, stores the S3 credentials as a
Secret, writes a kubeconfig, and runs until interrupted. Prometheus is started too when its
binary is installed. The state directory records what runs (pids, ports) so that
`kubeloop down` can stop an environment started elsewhere and a second `up` refuses to start
twice.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubeloop.local.prometheus import PROMETHEUS_MISSING, LocalPrometheus, prometheus_binary
from kubeloop.local.s3 import LocalS3
from kubeloop.local.supervisor import ManagedProcess, StartupError, free_port, python_module

DEFAULT_STATE_DIR = Path(os.environ.get("KUBELOOP_HOME", Path.home() / ".kubeloop")) / "local"
REPO_SAMPLES = Path(__file__).resolve().parents[3] / "manifests" / "samples"
BUCKET = "kubeloop"
S3_SECRET = "kubeloop-s3"
NODE_NAME = "kubeloop-local"
SAMPLE_BUCKET = "kubeloop-data"
SAMPLE_SECRET = "kubeloop-data-credentials"

Progress = Callable[[str], None]


def _print_progress(message: str) -> None:
    print(message, flush=True)


class EnvironmentError_(RuntimeError):  # noqa: N801 - avoid shadowing the builtin EnvironmentError
    """The local environment cannot start or stop; the message says what to do."""


@dataclass
class LocalEnvironment:
    state_dir: Path = DEFAULT_STATE_DIR
    progress: Progress = _print_progress
    with_prometheus: bool = True
    processes: list[ManagedProcess] = field(default_factory=list)
    s3: LocalS3 | None = None
    prometheus: LocalPrometheus | None = None
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
            # S3 starts while the API server does: the two are independent and each takes ~0.5 s.
            s3_thread = _Background(self._start_s3)
            self._start_apiserver()
            self._install_crds()
            s3_thread.join()
            self._store_s3_secret("default")
            # Prometheus first: the node writes scrape targets into its folder and the operator
            # queries it for rollout checks.
            self._start_prometheus()
            self._start_node()
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

    def _start_s3(self) -> None:
        t0 = time.monotonic()
        self.s3 = LocalS3(self.state_dir / "s3").start()
        self.s3.ensure_bucket(BUCKET)
        self.progress(f"  ✓ S3 (SeaweedFS)   {self.s3.endpoint}  bucket {BUCKET}  ({time.monotonic() - t0:.1f}s)")

    def _store_s3_secret(self, namespace: str) -> None:
        from kubeloop.core.kube import KubeClient

        assert self.s3 is not None
        client = KubeClient.connect(str(self.kubeconfig), field_manager="kubeloop-up")
        try:
            client.apply(self.s3.secret_manifest(S3_SECRET, namespace))
        finally:
            client.close()

    def _start_node(self) -> None:
        from kubeloop.core.kube import KubeClient

        t0 = time.monotonic()
        process = ManagedProcess(
            "node",
            python_module("kubeloop", "local", "node", "--kubeconfig", str(self.kubeconfig),
                          "--state-dir", str(self.state_dir / "node"), "--node-name", NODE_NAME,
                          *(["--prometheus-targets-dir", str(self.prometheus.targets_dir)] if self.prometheus
                            else [])),
            log_path=self.state_dir / "logs" / "node.log",
            env=self._workload_env()).start()
        self.processes.append(process)
        client = KubeClient.connect(str(self.kubeconfig))
        try:
            wait_node_ready(client, NODE_NAME, process)
        finally:
            client.close()
        self.progress(f"  ✓ local node       {NODE_NAME}: runs Jobs, CronJobs, InferenceServices"
                      f"  ({time.monotonic() - t0:.1f}s)")

    def _workload_env(self) -> dict[str, str]:
        """Where kubeloop's processes find the object store (the operator, and pods via the node)."""
        assert self.s3 is not None
        return {"KUBELOOP_S3_ENDPOINT": self.s3.endpoint, "KUBELOOP_S3_BUCKET": BUCKET,
                "KUBELOOP_S3_SECRET": S3_SECRET, "KUBELOOP_S3_REGION": self.s3.region}

    def _start_prometheus(self) -> None:
        if not self.with_prometheus:
            return
        if prometheus_binary() is None:
            self.progress(f"  - Prometheus       skipped: {PROMETHEUS_MISSING}")
            return
        t0 = time.monotonic()
        self.prometheus = LocalPrometheus(
            self.state_dir / "prometheus",
            targets={"kubeloop-operator": [f"127.0.0.1:{self.metrics_port}"]}).start()
        self.progress(f"  ✓ Prometheus       {self.prometheus.url}  ({time.monotonic() - t0:.1f}s)")

    def _install_crds(self) -> None:
        from kubeloop.core.kube import KubeClient
        from kubeloop.crdgen import custom_resource_definition, resources
        from kubeloop.local.node.inferenceservices import inferenceservice_crd

        t0 = time.monotonic()
        client = KubeClient.connect(str(self.kubeconfig), field_manager="kubeloop-up")
        try:
            crds = [custom_resource_definition(resource) for resource in resources()] + [inferenceservice_crd()]
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
            log_path=self.state_dir / "logs" / "operator.log",
            env={**self._workload_env(),
                 **({"KUBELOOP_PROMETHEUS_URL": self.prometheus.url} if self.prometheus else {})}).start()
        self.processes.append(process)
        process.wait_ready(f"http://127.0.0.1:{self.health_port}/healthz", timeout=60)
        self.progress(f"  ✓ operator         metrics http://127.0.0.1:{self.metrics_port}/metrics"
                      f"  ({time.monotonic() - t0:.1f}s)")

    def _apply_samples(self) -> None:
        from kubeloop.core.kube import KubeClient

        if not REPO_SAMPLES.is_dir():
            self.progress("  ! samples not found (they ship with the source tree): skipped")
            return
        self._seed_sample_data()
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

    def _seed_sample_data(self) -> None:
        """The data the sample FeatureSet reads: generated transactions in s3://kubeloop-data/,
        and the Secret (kubeloop-data-credentials) its spec.source.secretRef names."""
        from kubeloop.local.sampledata import parquet_bytes, transactions

        assert self.s3 is not None
        self.s3.ensure_bucket(SAMPLE_BUCKET)
        data = parquet_bytes(transactions(20_000))
        self.s3.client().put_object(SAMPLE_BUCKET, "transactions/part-0.parquet", io.BytesIO(data), len(data))
        from kubeloop.core.kube import KubeClient

        client = KubeClient.connect(str(self.kubeconfig), field_manager="kubeloop-up")
        try:
            client.apply(self.s3.secret_manifest(SAMPLE_SECRET, "default"))
        finally:
            client.close()
        self.progress(f"  ✓ sample data      s3://{SAMPLE_BUCKET}/transactions/part-0.parquet (20,000 transactions)")

    def _write_run_file(self) -> None:
        pids = {p.name: p.pid for p in self.processes}
        if self.s3 is not None:
            pids["s3"] = self.s3.pid
        if self.prometheus is not None:
            pids["prometheus"] = self.prometheus.pid
        self.run_file.write_text(json.dumps({
            "pids": pids,
            "apiserver": f"http://127.0.0.1:{self.api_port}",
            "metrics": f"http://127.0.0.1:{self.metrics_port}/metrics",
            "s3": self.s3.endpoint if self.s3 else None,
            "prometheus": self.prometheus.url if self.prometheus else None,
            "kubeconfig": str(self.kubeconfig),
            "supervisor": os.getpid(),
        }, indent=2))

    def summary(self) -> str:
        return "\n".join([
            "Use it from another shell:",
            f"  export KUBECONFIG={self.kubeconfig}",
            "  kubectl get kubeloop -A            # every kubeloop resource",
            "  kubectl get pods,jobs,cronjobs,isvc -A   # what the operator runs on the local node",
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
        # The operator first (it would react to the others going away), the API server last.
        for process in reversed(self.processes):
            process.stop(grace=30 if process.name == "node" else 10)
        self.processes.clear()
        for service in (self.prometheus, self.s3):
            if service is not None:
                service.stop()
        self.prometheus = self.s3 = None
        with contextlib.suppress(FileNotFoundError):
            self.run_file.unlink()


class _Background(threading.Thread):
    """Run `target` in a thread; `join()` re-raises its exception in the caller."""

    def __init__(self, target: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self._target_fn = target
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as exc:  # handed to the joining thread
            self._error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self._error is not None:
            raise self._error


def wait_node_ready(client: Any, name: str, process: ManagedProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise StartupError(f"the local node exited; last log lines:\n{process.log_tail()}")
        node = client.get("v1", "Node", None, name)
        conditions = ((node or {}).get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            return
        time.sleep(0.05)
    raise StartupError(f"the local node did not become Ready within {timeout:.0f}s; see {process.log_path}")


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
