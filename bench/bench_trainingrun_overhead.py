"""Benchmark: the operator's overhead from `kubectl apply` of a TrainingRun to its first training step.

On the embedded cluster (`LocalEnvironment`: API server, S3, local node, operator), with the sample
FeatureSet materialized once, each run applies a fresh 1-worker TrainingRun and reads the trainer's
`trainer: first training step` log line (`kubectl logs --timestamps`). Reported per run and as
medians: apply -> Job created, apply -> pod Running, apply -> first training step. The part that
is the operator's own is apply -> Job created; the rest is pod start-up (a Python process importing
torch here, an image pull and container start on a real cluster) and data loading.

    python bench/bench_trainingrun_overhead.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

from kubeloop.local.environment import LocalEnvironment

REPO = Path(__file__).resolve().parents[1]


def kubectl(env: LocalEnvironment, *args: str, input: str | None = None) -> str:
    binary = Path(sys.executable).parent / "kubectl"
    return subprocess.run([str(binary), "--kubeconfig", str(env.kubeconfig), *args], input=input, text=True,
                          capture_output=True, check=True, timeout=120,
                          env={"KUBECACHEDIR": str(env.state_dir / "kubecache"), "PATH": "/usr/bin:/bin"}).stdout


def sample(kind: str) -> dict:
    path = REPO / "manifests" / "samples" / f"{kind.lower()}.yaml"
    return next(doc for doc in yaml.safe_load_all(path.read_text()) if doc and doc["kind"] == kind)


def wait(check, what: str, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.time()
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def one_run(env: LocalEnvironment, index: int) -> dict[str, float]:
    tr = copy.deepcopy(sample("TrainingRun"))
    name = f"overhead-{index}"
    tr["metadata"] = {"name": name, "namespace": "default"}
    tr["spec"].update(workers=1, register=None)
    tr["spec"]["hyperparameters"]["epochs"] = 1
    del tr["spec"]["register"]
    applied = time.time()
    kubectl(env, "apply", "-f", "-", input=json.dumps(tr))
    job = f"{name}-a1"
    created = wait(lambda: subprocess.run([str(Path(sys.executable).parent / "kubectl"), "--kubeconfig",
                                           str(env.kubeconfig), "get", "job", job], capture_output=True,
                                          env={"KUBECACHEDIR": str(env.state_dir / "kubecache")}).returncode == 0,
                   "the Job")
    running = wait(lambda: "Running" in kubectl(env, "get", "pods", "-l", f"job-name={job}",
                                                "-o", "jsonpath={.items[*].status.phase}"), "the pod")

    def first_step() -> str | None:
        try:
            logs = kubectl(env, "logs", f"job/{job}", "--timestamps")
        except subprocess.CalledProcessError:
            return None
        return next((line.split(" ", 1)[0] for line in logs.splitlines() if "first training step" in line), None)

    wait(lambda: first_step() is not None, "the first training step")
    step = datetime.fromisoformat(first_step().replace("Z", "+00:00")).timestamp()
    wait(lambda: kubectl(env, "get", "tr", name, "-o", "jsonpath={.status.phase}") in {"Succeeded", "Failed"},
         "the run to finish")
    return {"job_created": created - applied, "pod_running": running - applied, "first_step": step - applied}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = LocalEnvironment(state_dir=Path(tmp) / "env", progress=lambda message: None, with_prometheus=False)
        env.start()
        try:
            env._seed_sample_data()
            kubectl(env, "apply", "-f", "-", input=json.dumps(sample("FeatureSet")))
            wait(lambda: kubectl(env, "get", "fs", "transactions", "-o", "jsonpath={.status.phase}") == "Ready",
                 "the FeatureSet")
            rows = []
            for index in range(args.repeat):
                row = one_run(env, index)
                rows.append(row)
                print(f"run {index + 1}: " + "  ".join(f"{k}={v:.2f}s" for k, v in row.items()), flush=True)
        finally:
            env.stop()
    print(f"\nmedians over {args.repeat} runs (1 worker):")
    for key, label in (("job_created", "apply -> Job created (operator)"),
                       ("pod_running", "apply -> pod Running"),
                       ("first_step", "apply -> first training step")):
        print(f"  {label:34s} {statistics.median(r[key] for r in rows):6.2f} s")


if __name__ == "__main__":
    main()
