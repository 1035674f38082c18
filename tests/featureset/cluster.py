"""Helpers of the FeatureSet end-to-end tests: the embedded cluster (`LocalEnvironment`: API
server, S3, local node and operator as separate processes), raw data in its S3, and waiting for
a FeatureSet's status through the real kubectl."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kubeloop.local.environment import LocalEnvironment
from tests.conftest import KubectlCLI

T = TypeVar("T")
HANG_GUARD = 120.0  # seconds: only stops a test that would hang; never a performance limit
DATA_BUCKET = "raw"
NAMESPACE = "default"  # where `kubeloop up` stores the object store Secret


def wait_for(check: Callable[[], T], *, what: str, timeout: float = HANG_GUARD, interval: float = 0.2) -> T:
    """Poll `check` until it returns a truthy value and return that value (the timeout only
    stops a hang)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


@dataclass
class Cluster:
    """A running local environment and what the tests do with it."""

    environment: LocalEnvironment
    kubectl: KubectlCLI

    def upload(self, key: str, data: bytes) -> str:
        """Put `data` at `s3://raw/<key>` (replacing what was there); the URI."""
        assert self.environment.s3 is not None
        client = self.environment.s3.client()
        client.put_object(DATA_BUCKET, key, io.BytesIO(data), len(data))
        return f"s3://{DATA_BUCKET}/{key}"

    def featureset(self, name: str) -> dict[str, Any]:
        return self.kubectl.json("get", "featureset", name, "-n", NAMESPACE)

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.featureset(name).get("status") or {})

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        return next((c for c in self.status(name).get("conditions") or [] if c["type"] == type_), {})

    def kubeloop(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The `kubeloop` CLI against this cluster."""
        result = subprocess.run([sys.executable, "-m", "kubeloop", *args, "--kubeconfig",
                                 str(self.environment.kubeconfig)],
                                capture_output=True, text=True, timeout=HANG_GUARD)
        assert result.returncode == 0, result.stderr
        return result

    def logs(self) -> str:
        """The last lines of every process's log, for a failing test's report."""
        parts = [f"--- {p.name} ---\n{p.log_tail(40)}" for p in self.environment.processes]
        return "\n".join(parts)


@contextmanager
def running_cluster(state_dir: Path, cache_dir: Path) -> Iterator[Cluster]:
    environment = LocalEnvironment(state_dir=state_dir, progress=print, with_prometheus=False)
    environment.start()
    try:
        assert environment.s3 is not None
        environment.s3.ensure_bucket(DATA_BUCKET)
        cluster = Cluster(environment, KubectlCLI(environment.kubeconfig, cache_dir))
        yield cluster
        print(cluster.logs())
    finally:
        environment.stop()


def csv_rows(rows: int, *, null_amount_every: int = 0) -> bytes:
    """Card transactions as CSV; every `null_amount_every`-th amount is empty (null)."""
    lines = ["card_id,event_time,amount,merchant_category,is_fraud"]
    categories = ("grocery", "travel", "fuel", "online")
    for i in range(rows):
        null = null_amount_every and i % null_amount_every == 0
        amount = "" if null else f"{(i * 37) % 500 + 0.5:.2f}"
        lines.append(f"{1000 + i},2026-02-{1 + i % 28:02d}T{i % 24:02d}:00:00Z,{amount},"
                     f"{categories[i % len(categories)]},{int(i % 17 == 0)}")
    return ("\n".join(lines) + "\n").encode()


def featureset_manifest(name: str, uri: str, *, schedule: str | None = None,
                        max_null_fraction: float = 0.05, min_rows: int = 100,
                        extra_features: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": {"uri": uri, "timestampColumn": "event_time"},
        "entities": ["card_id"],
        "labelColumns": ["is_fraud"],
        "features": [
            {"name": "amount_log", "from": "amount",
             "transforms": [{"type": "fillNull", "strategy": "median"}, {"type": "log1p"},
                            {"type": "standardize"}]},
            {"name": "merchant", "from": "merchant_category",
             "transforms": [{"type": "vocabulary", "maxSize": 16}]},
            *extra_features,
        ],
        "validation": {"minRows": min_rows, "columns": [
            {"column": "amount", "type": "float", "min": 0, "maxNullFraction": max_null_fraction}]},
        "resources": {"cpu": "500m", "memory": "1Gi"},
    }
    if schedule is not None:
        spec["schedule"] = schedule
    return {"apiVersion": "kubeloop.dev/v1alpha1", "kind": "FeatureSet",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}
