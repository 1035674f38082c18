"""`kubeloop up` as a user runs it: a foreground process, used from another shell, stopped
with Ctrl-C, leaving nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import KubectlCLI

pytestmark = pytest.mark.integration


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def read_until(process: subprocess.Popen[str], marker: str, *, timeout: float = 120) -> str:
    """Read `process`'s output until a line contains `marker` (the timeout only stops a hang)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} not printed; output so far:\n{''.join(seen)}")


def test_up_serves_kubectl_and_ctrl_c_leaves_nothing_running(tmp_path: Path):
    state = tmp_path / "state"
    up = subprocess.Popen(
        [sys.executable, "-m", "kubeloop", "up", "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        output = read_until(up, "Press Ctrl-C")
        assert f"export KUBECONFIG={state / 'kubeconfig'}" in output
        run = json.loads((state / "run.json").read_text())
        descendants = psutil.Process(up.pid).children(recursive=True)
        assert {p.pid for p in descendants} >= set(run["pids"].values())
        ports = [int(run["apiserver"].rsplit(":", 1)[1]), int(run["metrics"].split(":")[2].split("/")[0])]
        assert all(port_open(port) for port in ports)

        kubectl = KubectlCLI(state / "kubeconfig", tmp_path / "kubecache")
        assert "No resources found" in kubectl("get", "pods,jobs").stderr
        crds = kubectl("get", "crd", "-o", "name").stdout
        for plural in ("featuresets", "trainingruns", "modelversions", "driftmonitors"):
            assert f"{plural}.kubeloop.dev" in crds

        # A second `up` on the same state refuses instead of starting twice.
        second = subprocess.run([sys.executable, "-m", "kubeloop", "up", "--state-dir", str(state)],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "already running" in second.stderr

        up.send_signal(signal.SIGINT)
        rest = up.communicate(timeout=60)[0]
        assert up.returncode == 0, rest
        assert "nothing left running" in rest
        gone, alive = psutil.wait_procs(descendants, timeout=10)
        assert not alive, [p.cmdline() for p in alive]
        assert not any(port_open(port) for port in ports)
        assert not (state / "run.json").exists()
    finally:
        if up.poll() is None:
            up.kill()


def test_down_stops_an_environment_started_elsewhere(tmp_path: Path):
    state = tmp_path / "state"
    up = subprocess.Popen(
        [sys.executable, "-m", "kubeloop", "up", "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        read_until(up, "Press Ctrl-C")
        run = json.loads((state / "run.json").read_text())
        pieces = [psutil.Process(pid) for pid in run["pids"].values()]
        down = subprocess.run([sys.executable, "-m", "kubeloop", "down", "--state-dir", str(state)],
                              capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stderr
        assert "stopped" in down.stdout
        up.wait(timeout=60)
        _, alive = psutil.wait_procs(pieces, timeout=10)
        assert not alive, [p.cmdline() for p in alive]
        again = subprocess.run([sys.executable, "-m", "kubeloop", "down", "--state-dir", str(state)],
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "nothing is running" in again.stdout
    finally:
        if up.poll() is None:
            up.kill()


def test_make_run_path_samples_materialize_and_train(tmp_path: Path):
    """What `make run` shows a newcomer: the samples' FeatureSet materializes the generated data
    and the sample TrainingRun trains on it with 2 workers and registers its ModelVersion."""
    state = tmp_path / "state"
    up = subprocess.Popen(
        [sys.executable, "-m", "kubeloop", "up", "--state-dir", str(state), "--with-samples"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        output = read_until(up, "Press Ctrl-C")
        assert "sample data" in output and "samples applied" in output
        kubectl = KubectlCLI(state / "kubeconfig", tmp_path / "kubecache")

        def phase(kind: str, name: str) -> str:
            return kubectl("get", kind, name, "-o", "jsonpath={.status.phase}").stdout

        deadline = time.monotonic() + 600  # only against a hang
        while phase("tr", "fraud-detector-1") not in {"Succeeded", "Failed"} and time.monotonic() < deadline:
            time.sleep(1)
        assert phase("fs", "transactions") == "Ready"
        assert kubectl("get", "fs", "transactions", "-o", "jsonpath={.status.rows}").stdout == "20000"
        assert phase("tr", "fraud-detector-1") == "Succeeded", kubectl("describe", "tr", "fraud-detector-1").stdout
        digest = kubectl("get", "tr", "fraud-detector-1", "-o", "jsonpath={.status.artifact.digest}").stdout
        assert digest.startswith("sha256:")
        assert "fraud-detector-1" in kubectl("get", "mv", "-o", "name").stdout
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=60)
        finally:
            if up.poll() is None:
                up.kill()
