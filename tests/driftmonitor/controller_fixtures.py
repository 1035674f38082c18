"""Fixtures of the DriftMonitor controller tests: the real operator code, with only the
DriftMonitor handlers registered, as a separate process against the local API server, and a
real S3 server (SeaweedFS) holding the check results.

Why only the DriftMonitor handlers: these tests play the roles of the other controllers. They
write a ModelVersion's status (champion, lineage) through the /status subresource and the
retrain TrainingRun's phase, as the ModelVersion and TrainingRun controllers would; with those
controllers running, they would overwrite what the test wrote (the ModelVersion controller
recomputes champion and lineage from the registry and the run record) and start real training.
The check itself is played by writing `result.json`, `report.html` and `latest.json` to the
store exactly as the check's contract says (the check has its own tests).

Run as `python -m tests.driftmonitor.controller_fixtures --kubeconfig ... --metrics-port ...
--health-port ... --resync-seconds ...`: the same kopf set-up as `kubeloop operator` (manager's
kopf settings, login, Runtime), plus the periodic resync of DriftMonitors alone.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf
import pytest

from kubeloop import API_VERSION
from kubeloop.core.kube import KubeClient
from kubeloop.core.reconcile import Reconcilable, Runtime, resync_all
from kubeloop.core.settings import Settings
from kubeloop.local.apiserver import RunningAPIServer
from kubeloop.local.s3 import LocalS3
from kubeloop.local.supervisor import ManagedProcess, free_port, python_module
from kubeloop.store import ObjectStore, StoreConfig
from tests.conftest import KubectlCLI

REPO = Path(__file__).resolve().parents[2]
BUCKET = "kubeloop-drift-controller"
SECRET = "kubeloop-s3"
RESYNC_SECONDS = "0.5"  # so that a result written to the store is read soon (the resync's job)


# -- the operator process -------------------------------------------------------------------------


def _run_operator(argv: list[str] | None = None) -> None:
    from kubeloop import manager
    from kubeloop.core.metrics import OPERATOR_METRICS
    from kubeloop.driftmonitor import handlers

    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--health-port", type=int, required=True)
    parser.add_argument("--resync-seconds", type=float, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    operator_settings = dataclasses.replace(Settings.from_env(os.environ), kubeconfig=args.kubeconfig,
                                   metrics_address="127.0.0.1", metrics_port=args.metrics_port,
                                   health_address="127.0.0.1", health_port=args.health_port)
    os.environ["KUBECONFIG"] = args.kubeconfig
    OPERATOR_METRICS.serve(operator_settings.metrics_address, operator_settings.metrics_port)
    registry = kopf.OperatorRegistry()
    handlers.register(registry)

    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)

    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        manager.configure_kopf(settings, operator_settings)

    kopf.on.login(registry=registry)(login)
    kopf.on.startup(registry=registry)(configure)
    client = KubeClient.connect(operator_settings.kubeconfig, field_manager=operator_settings.field_manager)
    Runtime.install(Runtime(client, operator_settings))
    stop = threading.Event()

    def resync() -> None:
        items = [Reconcilable(handlers.RESOURCE, handlers.reconcile)]
        while not stop.wait(args.resync_seconds):
            try:
                resync_all(client, items)
            except Exception as error:  # the next pass retries, as the operator's resync does
                print(f"resync failed: {error!r}", flush=True)

    threading.Thread(target=resync, daemon=True).start()
    asyncio.run(kopf.operator(registry=registry, clusterwide=True, standalone=True,
                              liveness_endpoint=f"http://127.0.0.1:{args.health_port}/healthz"))
    stop.set()


def result_document(namespace: str, monitor: str, uid: str, verdict: str = "drift", *, when: datetime,
                    share: float | None = 0.5, sample_size: int = 2000, min_samples: int = 1000,
                    check_id: str | None = None, bucket: str = BUCKET) -> dict[str, Any]:
    """A drift check result as the check's contract (contracts.md) shapes it: two features,
    amount_log (ks; drifted when the verdict is drift) and merchant (chi2; not drifted)."""
    when = when.replace(microsecond=0)
    check = check_id or when.strftime("%Y%m%dT%H%M%SZ")
    has_verdict = verdict != "insufficient-samples"
    until = when.isoformat().replace("+00:00", "Z")
    return {
        "schemaVersion": 1, "kind": "kubeloop.dev/DriftCheckResult", "checkId": check,
        "monitor": {"name": monitor, "namespace": namespace, "uid": uid}, "model": "fraud",
        "modelVersion": "fraud-v1", "featureSet": {"name": "transactions", "version": "0a1b2c3d4e5f"},
        "time": until, "window": {"since": "2026-01-01T00:00:00Z", "until": until},
        "sampleSize": sample_size, "minSamples": min_samples, "verdict": verdict,
        "drifted": (verdict == "drift") if has_verdict else None,
        "driftShare": share if has_verdict else None,
        "driftedFeatures": ["amount_log"] if verdict == "drift" else [],
        "features": [
            {"name": "amount_log", "method": "ks", "statistic": 0.42, "pValue": 0.0001, "threshold": 0.05,
             "drifted": verdict == "drift", "nullFraction": 0.0, "unseenCategories": None},
            {"name": "merchant", "method": "chi2", "statistic": 3.5, "pValue": 0.31, "threshold": 0.05,
             "drifted": False, "nullFraction": 0.01, "unseenCategories": 1},
        ] if has_verdict else [],
        "reportUri": f"s3://{bucket}/drift/{namespace}/{monitor}/checks/{check}/report.html",
        "reference": "profile", "correction": "fdr",
    }


# -- fixtures -------------------------------------------------------------------------------------


@dataclasses.dataclass
class DriftCluster:
    """The local API server with the DriftMonitor controller, the store, and helpers."""

    kubectl: KubectlCLI
    client: KubeClient
    store: ObjectStore
    s3: LocalS3
    kubeconfig: Path
    metrics_url: str
    operator: ManagedProcess

    # -- objects --

    def namespace(self, *, with_secret: bool = True) -> str:
        name = f"dm-{uuid.uuid4().hex[:8]}"
        self.kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        if with_secret:
            self.kubectl.apply(self.s3.secret_manifest(SECRET, name))
        return name

    def apply(self, kind: str, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.kubectl.apply({"apiVersion": API_VERSION, "kind": kind,
                            "metadata": {"name": name, "namespace": namespace}, "spec": spec})

    def set_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Write status through the /status subresource, as the kind's controller does."""
        self.client.patch_status(API_VERSION, kind, namespace, name, status)

    def model_version(self, namespace: str, name: str, *, model: str = "fraud", run: str = "train-1",
                      champion: bool | None = None, lineage: bool = True) -> None:
        self.apply("ModelVersion", namespace, name, {"model": model, "trainingRunRef": {"name": run}})
        status: dict[str, Any] = {"phase": "Serving" if champion else "Registered"}
        if champion is not None:
            status["champion"] = champion
        if lineage:
            status["lineage"] = {"trainingRun": run, "featureSet": "transactions", "featureSetVersion": "0a1b2c3d4e5f",
                                 "featureSetDigest": "sha256:" + "ab" * 32}
        self.set_status("ModelVersion", namespace, name, status)

    def source_run(self, namespace: str, name: str = "train-1") -> None:
        self.apply("TrainingRun", namespace, name, {
            "featureSetRef": {"name": "transactions"}, "featureSetVersion": "0a1b2c3d4e5f", "target": "is_fraud",
            "model": {"task": "classification"}, "hyperparameters": {"epochs": 2}, "suspend": True,
            "register": {"model": "fraud"}})

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.client.get(API_VERSION, kind, namespace, name)

    def status(self, namespace: str, name: str) -> dict[str, Any]:
        return dict((self.get("DriftMonitor", namespace, name) or {}).get("status") or {})

    def condition(self, namespace: str, name: str, type_: str) -> dict[str, Any]:
        return next((c for c in self.status(namespace, name).get("conditions") or [] if c["type"] == type_), {})

    def retrain_runs(self, namespace: str, monitor: str) -> list[dict[str, Any]]:
        return self.client.list(API_VERSION, "TrainingRun", namespace,
                                label_selector=f"kubeloop.dev/driftmonitor={monitor}")

    # -- the check's part --

    def write_result(self, namespace: str, monitor: str, verdict: str, *, uid: str, when: datetime | None = None,
                     share: float | None = 0.5, sample_size: int = 2000) -> dict[str, Any]:
        """What one check writes (result.json, report.html, then latest.json), as its contract says."""
        result = result_document(namespace, monitor, uid, verdict, when=when or datetime.now(UTC), share=share,
                                 sample_size=sample_size)
        prefix, check_id = f"drift/{namespace}/{monitor}", result["checkId"]
        self.store.put_json(f"{prefix}/checks/{check_id}/result.json", result)
        self.store.put_bytes(f"{prefix}/checks/{check_id}/report.html",
                             f"<html><body>report {check_id}</body></html>".encode(), content_type="text/html")
        self.store.put_json(f"{prefix}/latest.json", result)
        return result

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(self.metrics_url, timeout=30) as response:
            return str(response.read().decode())


@pytest.fixture(scope="session")
def drift_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DriftCluster]:
    # An API server of its own: the session's `apiserver` may also serve a full operator (the
    # integration tests'), whose controllers would fight the roles these tests play.
    root = tmp_path_factory.mktemp("drift-apiserver")
    with RunningAPIServer(kubeconfig_path=root / "kubeconfig") as apiserver, \
            LocalS3(tmp_path_factory.mktemp("drift-s3")) as s3:
        kubectl = KubectlCLI(Path(apiserver.kubeconfig_path), tmp_path_factory.mktemp("drift-kubecache"))
        kubectl("apply", "-f", str(REPO / "crds"))
        for crd in sorted((REPO / "crds").glob("*.yaml")):
            kubectl("wait", "--for=condition=Established", f"crd/{crd.name.removesuffix('.yaml')}",
                            "--timeout=60s")
        s3.ensure_bucket(BUCKET)
        store = ObjectStore(StoreConfig.from_env(s3.store_env(BUCKET)))
        metrics_port, health_port = free_port(), free_port()
        logs = tmp_path_factory.mktemp("drift-operator")
        process = ManagedProcess(
            "drift-operator",
            python_module("tests.driftmonitor.controller_fixtures", "--kubeconfig", str(apiserver.kubeconfig_path),
                          "--metrics-port", str(metrics_port), "--health-port", str(health_port),
                          "--resync-seconds", RESYNC_SECONDS),
            log_path=logs / "operator.log",
            env={"KUBELOOP_S3_BUCKET": BUCKET, "KUBELOOP_S3_SECRET": SECRET,
                 "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "operator")])},
            cwd=str(REPO),
        ).start()
        client = KubeClient.connect(str(apiserver.kubeconfig_path))
        try:
            process.wait_ready(f"http://127.0.0.1:{health_port}/healthz", timeout=60)
            yield DriftCluster(kubectl=kubectl, client=client, store=store, s3=s3,
                               kubeconfig=Path(apiserver.kubeconfig_path),
                               metrics_url=f"http://127.0.0.1:{metrics_port}/metrics", operator=process)
        finally:
            client.close()
            process.stop()
            print(f"drift operator log: {process.log_path}\n{process.log_tail(60)}")


if __name__ == "__main__":
    _run_operator()
