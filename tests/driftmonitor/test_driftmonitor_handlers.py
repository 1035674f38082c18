"""The DriftMonitor controller end to end: the real operator code (DriftMonitor handlers only,
see controller_fixtures.py for why) against the local API server, with check results written to
a real S3 server exactly as the check's contract says.

Timeouts in `wait_for` only stop a hang; they are not performance assertions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.driftmonitor.controller_fixtures import DriftCluster, drift_cluster  # noqa: F401 - the fixture
from tests.integration.conftest import wait_for

HANG_GUARD = 120.0


def monitor_uid(cluster: DriftCluster, namespace: str, name: str) -> str:
    found = wait_for(lambda: cluster.get("DriftMonitor", namespace, name), what=f"DriftMonitor {name}")
    return str(found["metadata"]["uid"])


def cronjob(cluster: DriftCluster, namespace: str, monitor: str) -> dict[str, Any] | None:
    return cluster.client.get("batch/v1", "CronJob", namespace, f"{monitor}-drift-check")


def check_env(cron: dict[str, Any]) -> dict[str, Any]:
    [container] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return {entry["name"]: entry for entry in container["env"]}


def reason_is(cluster: DriftCluster, namespace: str, name: str, type_: str, reason: str) -> dict[str, Any] | None:
    found = cluster.condition(namespace, name, type_)
    return found if found.get("reason") == reason else None


def event_reasons(cluster: DriftCluster, namespace: str, name: str) -> set[str]:
    return {str(event.get("reason")) for event in cluster.client.list("v1", "Event", namespace)
            if (event.get("involvedObject") or {}).get("name") == name}


def checked(cluster: DriftCluster, namespace: str, name: str, result: dict[str, Any]) -> dict[str, Any] | None:
    """The monitor's status once it has counted `result`."""
    current = cluster.status(namespace, name)
    return current if current.get("lastCheckTime") == result["time"] else None


def test_cronjob_is_applied_with_the_check_environment_and_follows_the_spec(drift_cluster: DriftCluster):  # noqa: F811
    cluster, ns = drift_cluster, drift_cluster.namespace()
    cluster.model_version(ns, "fraud-v1")
    cluster.apply("DriftMonitor", ns, "watch", {"modelVersionRef": {"name": "fraud-v1"}, "schedule": "0 3 * * *",
                                                "minSamples": 50})
    uid = monitor_uid(cluster, ns, "watch")
    cron = wait_for(lambda: cronjob(cluster, ns, "watch"), what="the check's CronJob", timeout=HANG_GUARD)
    assert cron["spec"]["schedule"] == "0 3 * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["metadata"]["ownerReferences"][0]["uid"] == uid
    env = check_env(cron)
    document = json.loads(env["KUBELOOP_DRIFTMONITOR"]["value"])
    assert document["uid"] == uid and document["modelVersion"] == "fraud-v1" and document["model"] == "fraud"
    assert document["featureSet"] == {"name": "transactions", "version": "0a1b2c3d4e5f",
                                      "digest": "sha256:" + "ab" * 32}
    assert document["spec"]["minSamples"] == 50
    assert env["KUBELOOP_S3_BUCKET"]["value"] == "kubeloop-drift-controller"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "kubeloop-s3", "key": "accessKey"}
    ready = wait_for(lambda: reason_is(cluster, ns, "watch", "Ready", "AwaitingFirstCheck"), what="Ready")
    assert ready["status"] == "Unknown"
    assert cluster.status(ns, "watch")["phase"] == "Pending"

    # A spec change updates the same CronJob: nothing to delete.
    cluster.apply("DriftMonitor", ns, "watch", {"modelVersionRef": {"name": "fraud-v1"}, "schedule": "*/10 * * * *",
                                                "minSamples": 50})
    updated = wait_for(lambda: (c := cronjob(cluster, ns, "watch")) and c["spec"]["schedule"] == "*/10 * * * *" and c,
                       what="the new schedule", timeout=HANG_GUARD)
    assert updated["metadata"]["uid"] == cron["metadata"]["uid"]
    assert json.loads(check_env(updated)["KUBELOOP_DRIFTMONITOR"]["value"])["spec"]["schedule"] == "*/10 * * * *"


def test_drift_creates_exactly_one_retrain_then_in_progress_then_cooldown(drift_cluster: DriftCluster):  # noqa: F811
    cluster, ns = drift_cluster, drift_cluster.namespace()
    cluster.source_run(ns, "train-1")
    cluster.model_version(ns, "fraud-v1", run="train-1", champion=True)
    cluster.apply("DriftMonitor", ns, "loop", {"model": "fraud", "retrain": {"cooldown": "6h", "maxPerDay": 3}})
    uid = monitor_uid(cluster, ns, "loop")
    wait_for(lambda: cronjob(cluster, ns, "loop"), what="the CronJob", timeout=HANG_GUARD)

    first = cluster.write_result(ns, "loop", "drift", uid=uid, share=0.5, when=datetime.now(UTC) - timedelta(minutes=1))
    created = wait_for(lambda: cluster.retrain_runs(ns, "loop"), what="the retrain TrainingRun", timeout=HANG_GUARD)
    wait_for(lambda: checked(cluster, ns, "loop", first), what="the first check counted", timeout=HANG_GUARD)
    [run] = created
    meta = run["metadata"]
    assert meta["name"] == "loop-retrain-1"
    assert meta["ownerReferences"] == [{"apiVersion": "kubeloop.dev/v1alpha1", "kind": "DriftMonitor", "name": "loop",
                                        "uid": uid, "controller": True, "blockOwnerDeletion": True}]
    assert meta["labels"]["kubeloop.dev/trigger"] == "drift" and meta["labels"]["kubeloop.dev/driftmonitor"] == "loop"
    assert meta["annotations"]["kubeloop.dev/drift-check-id"] == first["checkId"]
    assert meta["annotations"]["kubeloop.dev/drifted-features"] == "amount_log"
    assert meta["annotations"]["kubeloop.dev/model-version"] == "fraud-v1"
    assert meta["annotations"]["kubeloop.dev/retrain-source"] == "train-1"
    # Unpinned and not suspended (the API server defaults suspend to false); register kept.
    assert "featureSetVersion" not in run["spec"] and run["spec"].get("suspend") is False
    assert run["spec"]["register"]["model"] == "fraud" and run["spec"]["hyperparameters"] == {"epochs": 2}

    current = wait_for(lambda: (s := cluster.status(ns, "loop")).get("retrains") == 1 and s, what="retrains 1")
    assert current["drifted"] is True and current["consecutiveBreaches"] == 1
    assert current["lastRetrain"]["trainingRun"] == "loop-retrain-1"
    assert first["checkId"] in current["lastRetrain"]["reason"]
    assert current["phase"] == "Retraining"
    assert cluster.condition(ns, "loop", "Retraining")["status"] == "True"

    # Events tell the story in `kubectl describe`.
    reasons = wait_for(lambda: {"DriftDetected", "RetrainCreated"} <= (found := event_reasons(cluster, ns, "loop"))
                       and found, what="the events", timeout=HANG_GUARD)
    assert "RetrainFailed" not in reasons

    # A second breach while the run is in flight: no second run.
    second = cluster.write_result(ns, "loop", "drift", uid=uid, share=0.75)
    wait_for(lambda: checked(cluster, ns, "loop", second), what="the second check counted", timeout=HANG_GUARD)
    wait_for(lambda: reason_is(cluster, ns, "loop", "Retraining", "RetrainInProgress"), what="RetrainInProgress")
    assert cluster.status(ns, "loop")["consecutiveBreaches"] == 2
    assert len(cluster.retrain_runs(ns, "loop")) == 1

    # The run finished (failed); a third breach within the cooldown: still no second run.
    cluster.set_status("TrainingRun", ns, "loop-retrain-1", {"phase": "Failed"})
    third = cluster.write_result(ns, "loop", "drift", uid=uid, share=0.75,
                                 when=datetime.now(UTC) + timedelta(seconds=2))
    wait_for(lambda: checked(cluster, ns, "loop", third), what="the third check counted", timeout=HANG_GUARD)
    cooldown = wait_for(lambda: reason_is(cluster, ns, "loop", "Retraining", "RetrainCooldown"), what="cooldown")
    assert cooldown["status"] == "False" and "6h" in cooldown["message"]
    assert [r["metadata"]["name"] for r in cluster.retrain_runs(ns, "loop")] == ["loop-retrain-1"]
    assert cluster.status(ns, "loop")["retrains"] == 1

    metrics = cluster.metrics()
    assert f'kubeloop_retrains_total{{monitor="loop",namespace="{ns}"}} 1.0' in metrics
    assert f'kubeloop_drift_checks_total{{monitor="loop",namespace="{ns}",verdict="drift"}} 3.0' in metrics
    assert f'kubeloop_drift_share{{monitor="loop",namespace="{ns}"}} 0.75' in metrics
    assert f'kubeloop_drift_detected{{monitor="loop",namespace="{ns}"}} 1.0' in metrics
    assert (f'kubeloop_drift_feature_statistic{{feature="amount_log",method="ks",monitor="loop",namespace="{ns}"}} '
            "0.42") in metrics

    # A deleted monitor's series disappear.
    cluster.kubectl("delete", "driftmonitor", "loop", "-n", ns)
    wait_for(lambda: f'monitor="loop",namespace="{ns}"' not in cluster.metrics(), what="series removed",
             timeout=HANG_GUARD)


def test_no_drift_and_insufficient_samples(drift_cluster: DriftCluster):  # noqa: F811
    cluster, ns = drift_cluster, drift_cluster.namespace()
    cluster.model_version(ns, "fraud-v1")
    cluster.apply("DriftMonitor", ns, "calm", {"modelVersionRef": {"name": "fraud-v1"}, "retrain": {}})
    uid = monitor_uid(cluster, ns, "calm")
    wait_for(lambda: cronjob(cluster, ns, "calm"), what="the CronJob", timeout=HANG_GUARD)

    calm = cluster.write_result(ns, "calm", "no-drift", uid=uid, share=0.0, when=datetime.now(UTC) - timedelta(hours=1))
    current = wait_for(lambda: checked(cluster, ns, "calm", calm), what="no-drift counted", timeout=HANG_GUARD)
    assert current["drifted"] is False and current["driftShare"] == 0.0 and current["phase"] == "Healthy"
    assert current["sampleSize"] == 2000 and current["reportUri"] == calm["reportUri"]
    assert [f["name"] for f in current["features"]] == ["amount_log", "merchant"]
    assert cluster.condition(ns, "calm", "Drifted")["reason"] == "NoDrift"
    assert cluster.condition(ns, "calm", "Ready")["status"] == "True"

    few = cluster.write_result(ns, "calm", "insufficient-samples", uid=uid, sample_size=12)
    current = wait_for(lambda: checked(cluster, ns, "calm", few), what="insufficient counted", timeout=HANG_GUARD)
    assert current["phase"] == "InsufficientData"
    assert "drifted" not in current and "driftShare" not in current
    assert current["sampleSize"] == 12 and current["consecutiveBreaches"] == 0
    drifted = cluster.condition(ns, "calm", "Drifted")
    assert (drifted["status"], drifted["reason"]) == ("Unknown", "InsufficientSamples")
    assert "12 predictions" in drifted["message"]
    assert cluster.retrain_runs(ns, "calm") == []


def test_a_missing_model_is_a_clear_condition_until_it_appears(drift_cluster: DriftCluster):  # noqa: F811
    cluster, ns = drift_cluster, drift_cluster.namespace()
    cluster.apply("DriftMonitor", ns, "follow", {"model": "fraud"})
    cluster.apply("DriftMonitor", ns, "named", {"modelVersionRef": {"name": "fraud-v9"}})
    no_champion = wait_for(lambda: reason_is(cluster, ns, "follow", "Ready", "NoChampion"), what="NoChampion")
    assert no_champion["status"] == "False" and '"fraud"' in no_champion["message"]
    not_found = wait_for(lambda: reason_is(cluster, ns, "named", "Ready", "ModelVersionNotFound"), what="not found")
    assert '"fraud-v9"' in not_found["message"] and "spec.modelVersionRef" in not_found["message"]
    assert cluster.status(ns, "follow")["phase"] == "Pending"  # waiting for its model, as Ready says
    assert cronjob(cluster, ns, "follow") is None and cronjob(cluster, ns, "named") is None

    # A version that is not champion does not count; a champion does, and the monitor follows it.
    cluster.model_version(ns, "fraud-v1", champion=False)
    cluster.model_version(ns, "fraud-v9", champion=True)
    cron = wait_for(lambda: cronjob(cluster, ns, "follow"), what="the CronJob of the champion", timeout=HANG_GUARD)
    assert json.loads(check_env(cron)["KUBELOOP_DRIFTMONITOR"]["value"])["modelVersion"] == "fraud-v9"
    wait_for(lambda: cronjob(cluster, ns, "named"), what="the CronJob of the named version", timeout=HANG_GUARD)
    # The CronJob is applied before the pass writes status: wait for the status too.
    wait_for(lambda: cluster.status(ns, "follow").get("modelVersion") == "fraud-v9",
             what="status.modelVersion of the champion", timeout=HANG_GUARD)

    # The champion moves: the CronJob follows.
    cluster.set_status("ModelVersion", ns, "fraud-v9", {"champion": False})
    cluster.set_status("ModelVersion", ns, "fraud-v1", {"champion": True})
    wait_for(lambda: (c := cronjob(cluster, ns, "follow")) is not None
             and json.loads(check_env(c)["KUBELOOP_DRIFTMONITOR"]["value"])["modelVersion"] == "fraud-v1",
             what="the CronJob of the new champion", timeout=HANG_GUARD)


def test_a_missing_store_secret_is_a_condition(drift_cluster: DriftCluster):  # noqa: F811
    cluster, ns = drift_cluster, drift_cluster.namespace(with_secret=False)
    cluster.model_version(ns, "fraud-v1")
    cluster.apply("DriftMonitor", ns, "nostore", {"modelVersionRef": {"name": "fraud-v1"}})
    ready = wait_for(lambda: reason_is(cluster, ns, "nostore", "Ready", "ObjectStoreUnavailable"), what="store")
    assert ready["status"] == "Unknown"
    assert '"kubeloop-s3"' in ready["message"] and f'"{ns}"' in ready["message"]
    assert cronjob(cluster, ns, "nostore") is not None  # the check is still scheduled
