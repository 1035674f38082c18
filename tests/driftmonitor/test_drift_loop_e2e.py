"""The closed loop end to end on the embedded cluster, as a user runs it: a served model receives
traffic like its training data → a check finds no drift; then shifted traffic → the next check
flags the shifted features only → exactly one retraining TrainingRun appears (owned by the
monitor, labelled with the evidence) → it registers a ModelVersion that passes its gates and
becomes champion; the monitor follows the new champion; within the cooldown a second breach does
not retrain. The report HTML exists and names the drifted features.

Checks are started the way `kubectl create job --from=cronjob/...` would (the CronJob's schedule
is yearly): `kubeloop local run-cronjob`. Timeouts in `wait_for` only stop a hang.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubeloop.modelversion.predictionlog import prediction_log_prefix, read_prediction_log
from tests.integration.conftest import wait_for
from tests.modelversion.test_modelversion_e2e import HANG, Cluster, post, raw_instances
from tests.modelversion.test_modelversion_e2e import cluster as cluster  # noqa: F401 - the module's fixture
from tests.trainingrun.conftest import NAMESPACE, raw_rows
from tests.trainingrun.test_trainingrun_e2e import create_feature_set, unique

MODEL = "churn"


def shifted(rows: pa.Table) -> pa.Table:
    """Amounts five times larger, every customer in one country; ages unchanged."""
    return rows.set_column(rows.schema.get_field_index("amount"), "amount",
                           pc.multiply(rows.column("amount"), 5.0)) \
        .set_column(rows.schema.get_field_index("country"), "country", pa.array(["jp"] * rows.num_rows))


def send(url: str, rows: pa.Table, batch: int = 100) -> int:
    sent = 0
    for start in range(0, rows.num_rows, batch):
        code, body = post(f"{url}/v1/models/{MODEL}:predict", {"instances": raw_instances(rows.slice(start, batch))})
        assert code == 200, body
        sent += min(batch, rows.num_rows - start)
    return sent


def logged_rows(cluster: Cluster, version: str) -> int:
    table = read_prediction_log(cluster.store, prediction_log_prefix(NAMESPACE, MODEL, version),
                                since=datetime(2000, 1, 1, tzinfo=UTC), until=datetime.now(UTC) + timedelta(days=1))
    return table.num_rows


def run_check(cluster: Cluster, monitor: str) -> dict[str, Any]:
    """Start the monitor's check now and wait for the status to show its result."""
    before = cluster.status("driftmonitor", monitor).get("lastCheckTime")
    cronjob = cluster.kubectl.json("get", "cronjobs", "-n", NAMESPACE, "-l", f"kubeloop.dev/driftmonitor={monitor}")
    name = cronjob["items"][0]["metadata"]["name"]
    subprocess.run([sys.executable, "-m", "kubeloop", "local", "run-cronjob", name, "-n", NAMESPACE,
                    "--kubeconfig", str(cluster.environment.kubeconfig)], check=True, capture_output=True, text=True)
    return wait_for(lambda: (s := cluster.status("driftmonitor", monitor)).get("lastCheckTime") not in (None, before)
                    and s, what=f"a check of {monitor}", timeout=HANG)


def champions(cluster: Cluster) -> list[str]:
    listed = cluster.kubectl.json("get", "modelversions", "-n", NAMESPACE)
    return [mv["metadata"]["name"] for mv in listed["items"]
            if mv["spec"]["model"] == MODEL and (mv.get("status") or {}).get("champion")]


def test_drift_triggers_exactly_one_retrain_that_becomes_champion(cluster: Cluster, tmp_path: Path):  # noqa: F811
    feature_set = unique("accounts")
    create_feature_set(cluster, feature_set, tmp_path)  # type: ignore[arg-type]
    first = unique("churn-a")
    cluster.train(feature_set, first, register={"model": MODEL, "gates": [{"metric": "auc", "min": 0.5}]})
    served = wait_for(lambda: cluster.phase_in(first, "Serving", "Failed", "GatesFailed"), what="the model to serve",
                      timeout=HANG)
    assert served["phase"] == "Serving", json.dumps(served, indent=2)
    url = served["inferenceService"]["url"].rstrip("/")

    monitor = unique("churn-drift")
    cluster.apply("DriftMonitor", monitor, {
        "model": MODEL, "schedule": "0 0 1 1 *", "window": "1h", "minSamples": 300, "driftShare": 0.3,
        "retrain": {"onDrift": True, "cooldown": "1h", "maxPerDay": 5}})
    wait_for(lambda: cluster.status("driftmonitor", monitor).get("modelVersion") == first,
             what="the monitor to follow the champion", timeout=60)

    # Traffic like the training data: no drift.
    rows = raw_rows(rows=4000, seed=11)
    sent = send(url, rows.slice(0, 600))
    wait_for(lambda: logged_rows(cluster, first) >= sent, what="the prediction log", timeout=60)
    calm = run_check(cluster, monitor)
    assert calm["drifted"] is False and calm["phase"] == "Healthy", json.dumps(calm, indent=2)
    assert calm["sampleSize"] >= 600 and not calm.get("lastRetrain")

    # Shifted traffic: amount and country drift, age does not.
    sent += send(url, shifted(rows.slice(600, 1800)))
    wait_for(lambda: logged_rows(cluster, first) >= sent, what="the prediction log", timeout=60)
    breach = run_check(cluster, monitor)
    assert breach["drifted"] is True, json.dumps(breach, indent=2)
    drifted = {f["name"] for f in breach["features"] if f["drifted"]}
    assert {"amount", "country"} <= drifted and "age" not in drifted, breach["features"]
    assert breach["reportUri"].endswith("report.html")
    report = cluster.store.get_bytes(breach["reportUri"].removeprefix(f"s3://{cluster.store.bucket}/")).decode()
    assert "amount" in report and "country" in report

    retrains = wait_for(lambda: _retrain_runs(cluster, monitor), what="the retraining TrainingRun", timeout=60)
    assert len(retrains) == 1
    retrain = retrains[0]
    assert retrain["metadata"]["ownerReferences"][0]["name"] == monitor
    assert retrain["metadata"]["labels"]["kubeloop.dev/trigger"] == "drift"
    assert "amount" in retrain["metadata"]["annotations"]["kubeloop.dev/drifted-features"]
    assert "featureSetVersion" not in retrain["spec"]
    assert retrain["spec"]["register"]["model"] == MODEL
    status = cluster.status("driftmonitor", monitor)
    assert status["lastRetrain"]["trainingRun"] == retrain["metadata"]["name"] and status["retrains"] == 1

    # The retrained model registers, passes its gates and becomes champion; the monitor follows it.
    new = retrain["metadata"]["name"]
    promoted = wait_for(lambda: cluster.phase_in(new, "Serving", "GatesFailed", "Failed"), what="the retrained model",
                        timeout=HANG)
    assert promoted["phase"] == "Serving" and promoted["champion"] is True, json.dumps(promoted, indent=2)
    wait_for(lambda: champions(cluster) == [new], what="the new version to be the only champion", timeout=60)
    assert cluster.status("modelversion", first)["phase"] == "Retired"
    wait_for(lambda: cluster.status("driftmonitor", monitor).get("modelVersion") == new,
             what="the monitor to follow the new champion", timeout=60)

    # A second breach within the cooldown does not retrain.
    sent_new = send(url, shifted(rows.slice(1800, 2600)))
    wait_for(lambda: logged_rows(cluster, new) >= sent_new, what="the new version's prediction log", timeout=60)
    second = run_check(cluster, monitor)
    assert second["drifted"] is True
    retrain_condition = next(c for c in second["conditions"] if c["type"] == "Retraining")
    assert retrain_condition["reason"] in ("RetrainCooldown", "RetrainSucceeded"), retrain_condition
    assert len(_retrain_runs(cluster, monitor)) == 1
    assert np.isfinite(second["driftShare"])
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.environment.metrics_port}/metrics") as response:
        metrics = response.read().decode()
    assert f'monitor="{monitor}"' in metrics and "kubeloop_drift_share" in metrics
    assert "kubeloop_retrains_total" in metrics


def _retrain_runs(cluster: Cluster, monitor: str) -> list[dict[str, Any]]:
    listed = cluster.kubectl.json("get", "trainingruns", "-n", NAMESPACE, "-l", "kubeloop.dev/trigger=drift")
    return [run for run in listed["items"]
            if any(ref.get("name") == monitor for ref in run["metadata"].get("ownerReferences") or [])]
