"""`kubeloop demo`: the whole loop on the embedded cluster, in a few minutes, narrated.

    FeatureSet materialized → TrainingRun (2 workers, DDP) → ModelVersion gated and served →
    live traffic → traffic shifts → DriftMonitor flags it → automatic retrain → the new version is
    gated and rolled out in steps → champion.

Everything is real: card transactions generated into the local S3 (`sampledata.transactions`), the
operator reconciling the four kinds, the local node running the materializer, the trainer, the
KServe server and the drift check as processes, Prometheus judging the canary steps. The demo only
does what a user would do: apply YAML, send HTTP requests, start the monitor's CronJob once
(`kubectl create job --from=cronjob/...`), and read status. It leaves the environment running for
exploration (`--exit` stops it at the end) and prints the kubectl commands to look around.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from kubeloop import API_VERSION
from kubeloop.core.kube import KubeClient
from kubeloop.local.environment import (
    BUCKET,
    DEFAULT_STATE_DIR,
    SAMPLE_BUCKET,
    SAMPLE_SECRET,
    EnvironmentError_,
    LocalEnvironment,
)
from kubeloop.local.sampledata import parquet_bytes, transactions
from kubeloop.local.supervisor import StartupError
from kubeloop.modelversion.predictionlog import prediction_log_prefix, read_prediction_log
from kubeloop.store import ObjectStore, StoreConfig

NAMESPACE = "default"
MODEL = "fraud-detector"
FEATURE_SET = "transactions"
FIRST_RUN = "fraud-detector-1"
MONITOR = "fraud-detector-drift"
SOURCE_COLUMNS = ("amount", "merchant_category", "event_time", "distance_from_home_km", "merchant_country",
                  "card_age_days")
HANG = 600.0  # seconds: stops a demo that would wait forever; never reached when things work


class DemoFailed(RuntimeError):
    """A step did not reach its expected state; the message says which and what the status says."""


@dataclass(frozen=True)
class DemoOptions:
    state_dir: Path = DEFAULT_STATE_DIR
    rows: int = 20_000  # training transactions
    epochs: int = 6
    live_rows: int = 1_500  # requests per traffic phase
    step_interval: str = "5s"  # each canary step of the retrained version's rollout
    keep_running: bool = True


def feature_set_spec() -> dict[str, Any]:
    return {
        "source": {"uri": f"s3://{SAMPLE_BUCKET}/transactions/*.parquet", "format": "parquet",
                   "timestampColumn": "event_time", "secretRef": {"name": SAMPLE_SECRET}},
        "entities": ["card_id"], "labelColumns": ["is_fraud"],
        "features": [
            {"name": "amount_log", "from": "amount", "transforms": [
                {"type": "fillNull", "strategy": "median"}, {"type": "clip", "min": 0, "max": 50000},
                {"type": "log1p"}, {"type": "standardize"}]},
            {"name": "merchant_category", "from": "merchant_category",
             "transforms": [{"type": "vocabulary", "maxSize": 64, "oovBuckets": 1, "output": "oneHot"}]},
            {"name": "hour_of_day", "from": "event_time", "transforms": [{"type": "datetime", "part": "hour"}]},
            {"name": "distance_from_home_km", "from": "distance_from_home_km", "transforms": [
                {"type": "fillNull", "strategy": "constant", "value": 0},
                {"type": "bucketize", "boundaries": [1, 10, 50, 200, 1000]}]},
            {"name": "merchant_country", "from": "merchant_country", "transforms": [
                {"type": "fillNull", "strategy": "constant", "stringValue": "unknown"},
                {"type": "hash", "numBuckets": 32}]},
            {"name": "card_age_days", "from": "card_age_days", "transforms": [{"type": "minMax"}],
             "dtype": "float32"},
        ],
        # Nightly, as a team would run it; the demo also starts it once when new data lands.
        "schedule": "0 2 * * *",
        "validation": {"minRows": 1000, "columns": [
            {"column": "amount", "type": "float", "min": 0, "maxNullFraction": 0.01},
            {"column": "is_fraud", "allowedValues": [0, 1], "maxNullFraction": 0.0}]},
    }


def training_run_spec(options: DemoOptions) -> dict[str, Any]:
    return {
        "featureSetRef": {"name": FEATURE_SET}, "target": "is_fraud",
        "model": {"family": "mlp", "task": "classification"},
        "hyperparameters": {"epochs": options.epochs, "batchSize": 128, "learningRate": 0.01,
                            "hiddenLayers": [32, 16], "optimizer": "adamw"},
        "seed": 42, "deterministic": True, "workers": 2,
        "resources": {"cpu": "1", "memory": "1Gi"},
        "register": {
            "model": MODEL, "aliases": ["staging"],
            "gates": [{"metric": "auc", "min": 0.6}, {"metric": "auc", "minDeltaVsChampion": -0.05}],
            "serving": {"resources": {"cpu": "1", "memory": "1Gi"},
                        "rollout": {"steps": [50, 100], "interval": options.step_interval, "maxErrorRate": 0.02}},
        },
    }


def drift_monitor_spec() -> dict[str, Any]:
    return {"model": MODEL, "schedule": "0 */6 * * *", "window": "1h", "minSamples": 500, "driftShare": 0.3,
            "retrain": {"onDrift": True, "consecutiveBreaches": 1, "cooldown": "1h", "maxPerDay": 3}}


class Demo:
    def __init__(self, options: DemoOptions, out: Callable[[str], None]) -> None:
        self.options, self.out = options, out
        self.environment = LocalEnvironment(state_dir=options.state_dir, progress=self.environment_progress)
        self.client: KubeClient | None = None
        self.started = time.monotonic()

    # -- narration -------------------------------------------------------------------------------

    def environment_progress(self, message: str) -> None:
        # The environment's own "use it from another shell" advice comes at the end, with the demo's.
        if "Use it from another shell" not in message:
            self.out(f"    {message}")

    def step(self, number: int, text: str) -> None:
        self.out(f"\n[{number}/8] {text}  (t+{time.monotonic() - self.started:.0f}s)")

    def wait(self, what: str, check: Callable[[], Any], *, describe: Callable[[], str] | None = None) -> Any:
        """Poll `check` until it returns a truthy value, printing each new state `describe` gives."""
        deadline, last = time.monotonic() + HANG, None
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            state = describe() if describe else None
            if state and state != last:
                self.out(f"      … {state}")
                last = state
            time.sleep(0.5)
        raise DemoFailed(f"gave up waiting for {what}; last state: {last}")

    # -- the API ---------------------------------------------------------------------------------

    @property
    def api(self) -> KubeClient:
        assert self.client is not None
        return self.client

    def apply(self, kind: str, name: str, spec: Mapping[str, Any]) -> None:
        self.api.apply({"apiVersion": API_VERSION, "kind": kind,
                        "metadata": {"name": name, "namespace": NAMESPACE}, "spec": dict(spec)})

    def status(self, kind: str, name: str) -> dict[str, Any]:
        found = self.api.get(API_VERSION, kind, NAMESPACE, name)
        return dict((found or {}).get("status") or {})

    def phase(self, kind: str, name: str) -> str:
        current = self.status(kind, name)
        ready: dict[str, Any] = next((c for c in current.get("conditions") or [] if c.get("type") == "Ready"), {})
        return f"{kind} {name}: {current.get('phase') or 'Pending'} — {ready.get('message') or 'waiting'}"

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> None:
        self.step(1, "Starting the embedded cluster: API server, S3, Prometheus, local node, operator")
        self.environment.start()
        self.client = KubeClient.connect(str(self.environment.kubeconfig), field_manager="kubeloop-demo")
        self.seed_data()

        self.step(2, f"FeatureSet {FEATURE_SET}: materializing features, fitted transforms and a reference profile")
        self.apply("FeatureSet", FEATURE_SET, feature_set_spec())
        fs = self.wait("the FeatureSet version", lambda: self.status("FeatureSet", FEATURE_SET).get("latestVersion")
                       and self.status("FeatureSet", FEATURE_SET),
                       describe=lambda: self.phase("FeatureSet", FEATURE_SET))
        self.out(f"    ✓ version {fs['latestVersion']} ({version_rows(fs)} rows), "
                 f"profile {fs.get('profileUri', '-')}")

        self.step(3, f"TrainingRun {FIRST_RUN}: 2 workers (torch DDP, gloo), deterministic, registers {MODEL}")
        self.apply("TrainingRun", FIRST_RUN, training_run_spec(self.options))
        run = self.wait("the TrainingRun", lambda: self.finished("TrainingRun", FIRST_RUN),
                        describe=lambda: self.training_progress(FIRST_RUN))
        self.out(f"    ✓ {run['phase']}: " + ", ".join(f"{k}={v:.3f}" for k, v in sorted(run.get("metrics", {}).items())
                                                       if k in ("auc", "accuracy", "loss")))

        self.step(4, f"ModelVersion {FIRST_RUN}: artifact verified, gates, KServe InferenceService {MODEL}")
        served = self.wait("the model to serve", lambda: self.serving(FIRST_RUN),
                           describe=lambda: self.phase("ModelVersion", FIRST_RUN))
        url = str(served["inferenceService"]["url"]).rstrip("/")
        self.out(f"    ✓ serving at {url}  (champion; gates: "
                 + "; ".join(g.get("message", "") for g in served.get("gates") or []) + ")")

        self.step(5, "Live traffic like the training data; the DriftMonitor's first check")
        self.apply("DriftMonitor", MONITOR, drift_monitor_spec())
        live = transactions(self.options.live_rows, seed=1001)
        answered = self.send(url, live)
        self.out(f"    ✓ {answered} predictions answered; every request logged to the prediction log")
        calm = self.check(FIRST_RUN, answered)
        self.out(f"    ✓ check: drifted={calm.get('drifted')} drift share {calm.get('driftShare', 0):.2f} "
                 f"over {calm.get('sampleSize')} predictions")

        self.step(6, "The world changes: larger amounts, other merchants, farther from home")
        shifted = transactions(self.options.live_rows * 2, seed=2002, shift=0.9)
        answered += self.send(url, shifted)
        self.land_new_data(fs["latestVersion"])
        breach = self.check(FIRST_RUN, answered)
        drifted = [f["name"] for f in breach.get("features") or [] if f.get("drifted")]
        self.out(f"    ✓ check: drifted={breach.get('drifted')} share {breach.get('driftShare', 0):.2f}; "
                 f"drifted features: {', '.join(drifted) or 'none'}")
        self.out(f"      report: {breach.get('reportUri')}  (kubeloop drift report {MONITOR})")
        if not breach.get("drifted"):
            raise DemoFailed("the shifted traffic was not flagged as drift: " + json.dumps(breach.get("features")))

        self.step(7, "Automatic retrain: a copy of the champion's run, on the newest FeatureSet version")
        retrain = self.wait("the retraining TrainingRun",
                            lambda: (self.status("DriftMonitor", MONITOR).get("lastRetrain") or {}).get("trainingRun"),
                            describe=lambda: self.phase("DriftMonitor", MONITOR))
        self.out(f"    ✓ TrainingRun {retrain} created by the monitor")
        run = self.wait("the retraining", lambda: self.finished("TrainingRun", retrain),
                        describe=lambda: self.training_progress(retrain))
        self.out(f"    ✓ {run['phase']}: auc={run.get('metrics', {}).get('auc', float('nan')):.3f}")

        self.step(8, f"ModelVersion {retrain}: gated against the champion, rolled out 50% → 100%")
        stop = threading.Event()
        traffic = threading.Thread(target=self.keep_sending, args=(url, shifted, stop), daemon=True)
        traffic.start()
        try:
            promoted = self.wait("the rollout", lambda: self.serving(retrain),
                                 describe=lambda: self.phase("ModelVersion", retrain))
        finally:
            stop.set()
            traffic.join(timeout=10)
        # The old champion retires on its own next pass (the InferenceService's change, or its poll).
        self.wait(f"{FIRST_RUN} to retire", lambda: self.status("ModelVersion", FIRST_RUN).get("phase") == "Retired",
                  describe=lambda: self.phase("ModelVersion", FIRST_RUN))
        self.out(f"    ✓ {retrain} is champion, serving 100% at {promoted['inferenceService']['url']}; "
                 f"{FIRST_RUN} is Retired")
        self.out(f"\nThe loop closed by itself in {time.monotonic() - self.started:.0f}s.")

    # -- helpers ---------------------------------------------------------------------------------

    def seed_data(self) -> None:
        assert self.environment.s3 is not None
        self.environment.s3.ensure_bucket(SAMPLE_BUCKET)
        data = parquet_bytes(transactions(self.options.rows, seed=7))
        self.environment.s3.client().put_object(SAMPLE_BUCKET, "transactions/part-0.parquet", io.BytesIO(data),
                                                len(data))
        self.api.apply(self.environment.s3.secret_manifest(SAMPLE_SECRET, NAMESPACE))
        self.out(f"    ✓ {self.options.rows:,} generated card transactions in s3://{SAMPLE_BUCKET}/transactions/")

    def land_new_data(self, previous: str) -> None:
        """Labelled transactions of the changed world arrive in the source bucket; the FeatureSet's
        nightly materialization (started now) makes a new version for the retrain to use."""
        assert self.environment.s3 is not None
        data = parquet_bytes(transactions(self.options.rows // 2, seed=3003, shift=0.9))
        self.environment.s3.client().put_object(SAMPLE_BUCKET, "transactions/part-1.parquet", io.BytesIO(data),
                                                len(data))
        start_cronjob(self.environment.kubeconfig, self.cronjob_of("FeatureSet", FEATURE_SET))
        fs = self.wait("the new FeatureSet version",
                       lambda: self.status("FeatureSet", FEATURE_SET).get("latestVersion") not in (None, previous)
                       and self.status("FeatureSet", FEATURE_SET), describe=lambda: self.phase("FeatureSet", FEATURE_SET))
        rows = version_rows(fs)
        self.out(f"    ✓ {self.options.rows // 2:,} new labelled transactions landed; FeatureSet version "
                 f"{fs['latestVersion']} ({rows} rows)")

    def finished(self, kind: str, name: str) -> dict[str, Any] | None:
        current = self.status(kind, name)
        if current.get("phase") == "Failed":
            raise DemoFailed(f"{kind} {name} failed: {self.phase(kind, name)}")
        return current if current.get("phase") == "Succeeded" else None

    def serving(self, name: str) -> dict[str, Any] | None:
        current = self.status("ModelVersion", name)
        if current.get("phase") in ("Failed", "GatesFailed", "RolledBack"):
            raise DemoFailed(self.phase("ModelVersion", name))
        ready = (current.get("inferenceService") or {}).get("ready")
        return current if current.get("phase") == "Serving" and current.get("champion") and ready else None

    def training_progress(self, name: str) -> str:
        current = self.status("TrainingRun", name)
        progress = current.get("progress") or {}
        if progress.get("epoch"):
            return (f"TrainingRun {name}: epoch {progress.get('epoch')}/{progress.get('epochs')} "
                    f"({progress.get('percent')}%)")
        return self.phase("TrainingRun", name)

    def send(self, url: str, rows: pa.Table, batch: int = 50) -> int:
        answered = 0
        records = rows.select(list(SOURCE_COLUMNS)).to_pylist()
        for start in range(0, len(records), batch):
            instances = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
                         for r in records[start:start + batch]]
            request = urllib.request.Request(f"{url}/v1/models/{MODEL}:predict", method="POST",
                                             data=json.dumps({"instances": instances}).encode(),
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answered += len(json.load(response)["predictions"])
            except urllib.error.HTTPError as error:
                raise DemoFailed(f"the model answered {error.code}: {error.read().decode(errors='replace')}") from None
        return answered

    def keep_sending(self, url: str, rows: pa.Table, stop: threading.Event) -> None:
        """Traffic during the rollout, so that each canary step is judged on real requests."""
        while not stop.is_set():
            # The rollout's status says what is wrong; traffic is only its input.
            with contextlib.suppress(DemoFailed, OSError):
                self.send(url, rows.slice(0, 200))
            stop.wait(0.5)

    @functools.cached_property
    def store(self) -> ObjectStore:
        """The environment's object store, with the credentials `kubeloop up` put in the Secret."""
        assert self.environment.s3 is not None
        return ObjectStore(StoreConfig.from_env(self.environment.s3.store_env(BUCKET)))

    def logged(self, version: str) -> int:
        now = datetime.now(UTC)
        return read_prediction_log(self.store, prediction_log_prefix(NAMESPACE, MODEL, version),
                                   since=now - timedelta(hours=1), until=now + timedelta(minutes=5)).num_rows

    def cronjob_of(self, kind: str, name: str) -> str:
        """The name of the CronJob the operator made for `kind` `name` (waiting for it if need be)."""
        selector = f"kubeloop.dev/{kind.lower()}={name}"
        found = self.wait(f"the CronJob of {kind} {name}",
                          lambda: self.api.list("batch/v1", "CronJob", NAMESPACE, label_selector=selector),
                          describe=lambda: self.phase(kind, name))
        return str(found[0]["metadata"]["name"])

    def check(self, version: str, answered: int) -> dict[str, Any]:
        """Wait for the prediction log to hold every answered request, run the check, wait for it."""
        self.wait("the prediction log", lambda: self.logged(version) >= answered,
                  describe=lambda: f"prediction log: {self.logged(version)}/{answered} rows flushed")
        before = self.status("DriftMonitor", MONITOR).get("lastCheckTime")
        start_cronjob(self.environment.kubeconfig, self.cronjob_of("DriftMonitor", MONITOR))
        return dict(self.wait("the drift check", lambda: (s := self.status("DriftMonitor", MONITOR)).get(
            "lastCheckTime") not in (None, before) and s, describe=lambda: self.phase("DriftMonitor", MONITOR)))

    def explore(self) -> str:
        kubeconfig = self.environment.kubeconfig
        return "\n".join([
            "", "Look around (another shell):",
            f"  export KUBECONFIG={kubeconfig}",
            "  kubectl get kubeloop                      # the four kinds, with their columns",
            "  kubectl get mv -o wide                    # versions: phase, traffic, champion, URL",
            f"  kubectl describe dm {MONITOR}   # per-feature drift, breaches, the retrain",
            "  kubectl get isvc,pods,jobs,cronjobs       # what the operator runs",
            f"  kubeloop models show {MODEL}          # registry: lineage, aliases, history",
            "  kubeloop runs list                        # experiment tracking",
            f"  kubeloop drift report {MONITOR} --open",
        ])


def version_rows(featureset_status: Mapping[str, Any]) -> Any:
    """The row count of the FeatureSet's latest version, as its status lists it."""
    latest = featureset_status.get("latestVersion")
    return next((v.get("rows") for v in featureset_status.get("versions") or [] if v.get("id") == latest), "?")


def start_cronjob(kubeconfig: Path, name: str) -> None:
    """What `kubectl create job --from=cronjob/NAME` does."""
    from kubeloop.local.node.client import NodeClient
    from kubeloop.local.node.cronjobs import create_job_from_cronjob

    async def create() -> None:
        async with NodeClient.from_kubeconfig(kubeconfig) as client:
            await create_job_from_cronjob(client, NAMESPACE, name, None)

    asyncio.run(create())


def demo(options: DemoOptions, out: Callable[[str], None] = lambda m: print(m, flush=True)) -> int:
    """Run the demo; 0 when the loop closed. Leaves the environment running unless told otherwise."""
    runner = Demo(options, out)
    try:
        out("kubeloop demo: the whole MLOps loop on an embedded cluster (127.0.0.1 only)")
        runner.run()
        out(runner.explore())
    except (EnvironmentError_, StartupError, DemoFailed) as exc:
        print(f"kubeloop demo: {exc}", file=sys.stderr)
        print(f"  logs: {options.state_dir / 'logs'}", file=sys.stderr)
        runner.environment.stop()
        return 1
    except BaseException:
        runner.environment.stop()
        raise
    if not options.keep_running:
        runner.environment.stop()
        out("Stopped; nothing left running.")
        return 0
    out("\nThe environment keeps running; Ctrl-C stops it.")
    try:
        return runner.environment.wait()
    finally:
        runner.environment.stop()
        out("Stopped; nothing left running.")
