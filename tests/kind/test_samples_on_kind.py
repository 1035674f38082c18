"""The sample flow on a real cluster: sample data in the in-cluster object store, the four
samples applied, and their status followed with kubectl until the FeatureSet is Ready, the
TrainingRun has Succeeded with a published artifact, and the operator has written the
ModelVersion's and DriftMonitor's status."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from kubeloop.core.settings import Images
from tests.conftest import KubectlCLI
from tests.integration import conftest as integration
from tests.kind.conftest import REPO

pytestmark = pytest.mark.kind

NAMESPACE = "kubeloop-demo"
HANG_GUARD = 1800.0  # seconds: only stops a hung run (image pulls, training); not a performance limit
T = TypeVar("T")

# Writes the generated sample transactions to s3://kubeloop-data/transactions/ from inside the
# cluster, with the jobs image and the demo namespace's store Secret.
SEED_JOB: dict[str, Any] = {
    "apiVersion": "batch/v1", "kind": "Job",
    "metadata": {"name": "seed-sample-data", "namespace": NAMESPACE},
    "spec": {"backoffLimit": 3, "template": {"spec": {
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
        "containers": [{
            "name": "seed", "image": Images().jobs,
            "envFrom": [{"secretRef": {"name": "kubeloop-data-credentials"}}],
            "args": ["-c", (
                "import io, os\n"
                "from minio import Minio\n"
                "from urllib.parse import urlparse\n"
                "from kubeloop.local.sampledata import parquet_bytes, transactions\n"
                "url = urlparse(os.environ['S3_ENDPOINT'])\n"
                "client = Minio(url.netloc, os.environ['accessKey'], os.environ['secretKey'], secure=False)\n"
                "for bucket in ('kubeloop', 'kubeloop-data'):\n"
                "    client.bucket_exists(bucket) or client.make_bucket(bucket)\n"
                "data = parquet_bytes(transactions(20_000))\n"
                "client.put_object('kubeloop-data', 'transactions/part-0.parquet', io.BytesIO(data), len(data))\n")],
        }]}}},
}


def wait_for(check: Callable[[], T], *, what: str) -> T:
    return integration.wait_for(check, what=what, timeout=HANG_GUARD, interval=5)


def status(kubectl: KubectlCLI, kind: str, name: str) -> dict[str, Any]:
    result = kubectl("get", kind, name, "-n", NAMESPACE, "-o", "json", check=False)
    return dict(json.loads(result.stdout).get("status") or {}) if result.returncode == 0 else {}


def test_the_samples_run_through_the_loop(kind_cluster: KubectlCLI) -> None:
    kubectl = kind_cluster
    kubectl.apply(SEED_JOB)
    kubectl("wait", "-n", NAMESPACE, "--for=condition=Complete", "job/seed-sample-data", "--timeout=900s",
            timeout=960)
    kubectl("apply", "-n", NAMESPACE, "-k", str(REPO / "manifests" / "samples"))

    wait_for(lambda: status(kubectl, "featureset", "transactions").get("phase") == "Ready",
             what="the sample FeatureSet to be Ready")
    kubectl("wait", "-n", NAMESPACE, "--for=condition=Ready", "featureset/transactions", "--timeout=60s")
    wait_for(lambda: status(kubectl, "trainingrun", "fraud-detector-1").get("phase") in ("Succeeded", "Failed"),
             what="the sample TrainingRun to finish")
    run = status(kubectl, "trainingrun", "fraud-detector-1")
    assert run["phase"] == "Succeeded", json.dumps(run, indent=2)
    assert run["artifact"]["digest"].startswith("sha256:")
    for kind, name in (("modelversion", "fraud-detector-1"), ("driftmonitor", "fraud-detector-drift")):
        wait_for(lambda k=kind, n=name: status(kubectl, k, n).get("observedGeneration"),  # type: ignore[misc]
                 what=f"the operator to write the {kind}'s status")
    listed = kubectl("get", "kubeloop", "-n", NAMESPACE).stdout
    for name in ("transactions", "fraud-detector-1", "fraud-detector-drift"):
        assert name in listed
