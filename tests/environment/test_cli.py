"""The `kubeloop` command's own subcommands (beyond `up`)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from tests.conftest import KubectlCLI

CRONJOB = {
    "apiVersion": "batch/v1", "kind": "CronJob",
    "metadata": {"name": "nightly", "namespace": "default"},
    "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "ghcr.io/kubeloop/jobs:test", "command": ["python", "-c", "1"]}],
    }}}}},
}


def kubeloop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubeloop", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_the_commands():
    result = kubeloop("--help")
    assert result.returncode == 0
    for command in ("operator", "up", "down", "local"):
        assert command in result.stdout


def test_run_cronjob_creates_a_manual_job_owned_by_the_cronjob(apiserver: Any, kubectl: KubectlCLI):
    kubectl.apply(CRONJOB)
    result = kubeloop("local", "run-cronjob", "nightly", "--job-name", "nightly-now",
                      "--kubeconfig", str(apiserver.kubeconfig_path))
    assert result.returncode == 0, result.stderr
    assert "job.batch/nightly-now created" in result.stdout
    job = kubectl.json("get", "job", "nightly-now")
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("CronJob", "nightly", True)


def test_run_cronjob_names_a_missing_cronjob(apiserver: Any):
    result = kubeloop("local", "run-cronjob", "nope", "--kubeconfig", str(apiserver.kubeconfig_path))
    assert result.returncode == 1
    assert 'cronjobs.batch "nope" not found' in result.stderr
