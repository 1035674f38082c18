"""FeatureSet end to end on the embedded cluster: real API server, real S3 (SeaweedFS), the local
node running the real materializer in its Jobs, the real operator, and the real kubectl.

    raw CSV in S3 -> kubectl apply FeatureSet -> CronJob + one-off Job -> a version in S3
    -> `kubectl get fs` shows it; corrupted data -> the next run fails the data contract,
    the condition names column, rule and count, and the previous version stays the latest.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.featureset.cluster import (
    NAMESPACE,
    Cluster,
    csv_rows,
    featureset_manifest,
    running_cluster,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 400


def schedule_far_from_now() -> str:
    """A daily schedule twelve hours away: the CronJob exists, but no scheduled run starts
    during the test (the runs under test are the one-off Job and `run-cronjob`)."""
    return f"0 {(datetime.now(UTC).hour + 12) % 24} * * *"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("featureset-env"),
                         tmp_path_factory.mktemp("featureset-kubecache")) as running:
        yield running


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def children(cluster: Cluster, kind: str, name: str) -> list[dict[str, Any]]:
    """The `kind` objects (jobs, cronjobs) labelled as the FeatureSet's."""
    listing = cluster.kubectl.json("get", kind, "-n", NAMESPACE, "-l", f"kubeloop.dev/featureset={name}")
    return list(listing["items"])


def jobs_of(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    return children(cluster, "jobs", name)


def finished(job: dict[str, Any]) -> str | None:
    """"Complete" or "Failed" once the Job is done, else None."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
            return str(condition["type"])
    return None


def test_materializes_on_apply_and_keeps_the_last_good_version_when_the_contract_breaks(cluster: Cluster):
    name = unique("transactions")
    key = f"{name}/transactions.csv"
    uri = cluster.upload(key, csv_rows(ROWS, null_amount_every=50))  # 2% nulls: within the 5% limit
    schedule = schedule_far_from_now()
    cluster.kubectl.apply(featureset_manifest(name, uri.rsplit("/", 1)[0] + "/*.csv", schedule=schedule))

    # The CronJob materializes on the schedule ...
    [cronjob] = wait_for(lambda: children(cluster, "cronjobs", name), what="the CronJob")
    assert cronjob["spec"]["schedule"] == schedule
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"

    # ... and the spec's first generation materializes once, now, for real.
    status = wait_for(lambda: (s := cluster.status(name)).get("latestVersion") and s.get("phase") == "Ready" and s,
                      what="the first version")
    first_version = status["latestVersion"]
    assert status["rows"] == ROWS
    assert status["versions"][0]["id"] == first_version and status["versions"][0]["rows"] == ROWS
    assert status["profileUri"].startswith("s3://kubeloop/featuresets/default/")
    assert {"card_id", "amount_log", "merchant"} <= {column["name"] for column in status["schema"]}
    materialized = cluster.condition(name, "Materialized")
    assert materialized["status"] == "True" and materialized["reason"] == "Materialized"
    assert cluster.condition(name, "Ready")["status"] == "True"

    table = cluster.kubectl("get", "fs", name, "-n", NAMESPACE).stdout.splitlines()
    header, row = table[0].split(), table[1].split()
    assert header[:4] == ["NAME", "PHASE", "VERSION", "ROWS"]
    assert row[:4] == [name, "Ready", first_version, str(ROWS)]

    [one_off] = jobs_of(cluster, name)
    assert finished(one_off) == "Complete"
    logs = cluster.kubectl("logs", f"job/{one_off['metadata']['name']}", "-n", NAMESPACE).stdout
    assert f"materialize {NAMESPACE}/{name}" in logs
    assert "pass 1" in logs and "materialize: Succeeded" in logs

    # Corrupt the data: a third of the amounts are null, the contract allows 5%.
    cluster.upload(key, csv_rows(ROWS, null_amount_every=3))
    created = cluster.kubeloop("local", "run-cronjob", cronjob["metadata"]["name"], "-n", NAMESPACE).stdout
    run_job = created.split()[0].removeprefix("job.batch/")

    failure = wait_for(lambda: (c := cluster.condition(name, "Materialized")).get("status") == "False" and c,
                       what="the failed materialization in the Materialized condition")
    assert failure["reason"] == "ContractViolated"
    message = failure["message"]  # the materializer's: column, rule and count
    assert f'column "amount": {len(range(0, ROWS, 3))} of {ROWS} values' in message
    assert "are null, more than maxNullFraction 0.05" in message
    assert run_job in message
    status = cluster.status(name)
    assert status["latestVersion"] == first_version
    assert status["phase"] == "Ready"
    ready = cluster.condition(name, "Ready")
    assert ready["status"] == "True" and "ContractViolated" in ready["message"]
    assert finished(next(j for j in jobs_of(cluster, name) if j["metadata"]["name"] == run_job)) == "Failed"

    events = cluster.kubectl("get", "events", "-n", NAMESPACE, "--field-selector",
                             f"involvedObject.name={name}").stdout
    assert "ContractViolated" in events and "Materialized" in events


def test_a_source_that_does_not_exist_is_source_unavailable(cluster: Cluster):
    name = unique("missing")
    cluster.kubectl.apply(featureset_manifest(name, f"s3://raw/{name}/nothing-here/*.csv"))
    failure = wait_for(lambda: (c := cluster.condition(name, "Materialized")).get("status") == "False" and c,
                       what="the failed materialization")
    assert failure["reason"] == "SourceUnavailable", failure
    assert f"s3://raw/{name}/nothing-here/*.csv" in failure["message"]
    status = cluster.status(name)
    assert status["phase"] == "Failed"
    assert "latestVersion" not in status
    ready = cluster.condition(name, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "SourceUnavailable"
    # No schedule: no CronJob; the one Job failed at once (exit code 3), not after retries.
    assert children(cluster, "cronjobs", name) == []
    [job] = jobs_of(cluster, name)
    assert finished(job) == "Failed"
    assert job["status"].get("failed") == 1


def test_a_spec_change_materializes_once_more_and_removing_the_schedule_deletes_the_cronjob(cluster: Cluster):
    name = unique("respec")
    uri = cluster.upload(f"{name}/part-0.csv", csv_rows(ROWS))
    manifest = featureset_manifest(name, uri, schedule=schedule_far_from_now())
    cluster.kubectl.apply(manifest)
    first = wait_for(lambda: cluster.status(name).get("latestVersion"), what="the first version")
    wait_for(lambda: children(cluster, "cronjobs", name), what="the CronJob")

    changed = featureset_manifest(name, uri, extra_features=[
        {"name": "amount_clipped", "from": "amount", "transforms": [{"type": "clip", "min": 0, "max": 100}]}])
    cluster.kubectl.apply(changed)  # a new feature, and no schedule any more
    status = wait_for(lambda: (s := cluster.status(name)).get("observedGeneration") == 2
                      and s.get("latestVersion") not in (None, first) and s.get("phase") == "Ready" and s,
                      what="the second generation's version")
    assert "amount_clipped" in {column["name"] for column in status["schema"]}
    assert [v["id"] for v in status["versions"]][:2] == [status["latestVersion"], first]
    generations = sorted(job["metadata"]["annotations"]["kubeloop.dev/generation"] for job in jobs_of(cluster, name))
    assert generations == ["1", "2"]
    wait_for(lambda: not children(cluster, "cronjobs", name), what="the CronJob to be deleted")
