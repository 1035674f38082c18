"""Benchmark: trainer throughput (training samples per second, all ranks together) with 1 vs 2 CPU
workers on the same data, and (--gpu) one GPU with nccl and bf16 autocast.

Setup: a local S3 server (SeaweedFS, loopback), one FeatureSet version published with the store
API (--rows rows, --features float64 features standardized by the FeatureSet transforms, an
entity and a timestamp column, a binary label learnable from the features). Each measurement is a
real trainer run (`python -m kubeloop.trainingrun.train`), one process per rank, gloo over
127.0.0.1, exactly as the local cluster runs an Indexed Job's pods; the threads of the machine are
shared out (OMP_NUM_THREADS = cores // workers). Throughput of a run is the median over its epochs
(after the first, which warms up) of `samplesPerSecond` from the run record; the figure reported
is the median over --repeat runs, worker counts alternating which goes first.
Every run is deterministic with the same seed: repeated runs of one worker count must give one
artifact digest, which the benchmark checks.

    python bench/bench_training.py [--rows 50000] [--features 32] [--epochs 4] [--batch-size 256]
                                   [--repeat 3] [--workers 1 2] [--threads N] [--hidden 64 32] [--gpu]

--gpu: checks torch.cuda; without a GPU it prints why and exits 0. With one, it runs the trainer
on one GPU with nccl (KUBELOOP_TRAIN_FORCE_DDP=1: a process group and DDP even for one rank) and
bf16 autocast, next to one CPU worker on the same data.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))

from kubeloop.featureset.api import Feature  # noqa: E402
from kubeloop.featureset.transforms import apply_batch, fit_pipeline  # noqa: E402
from kubeloop.local.s3 import LocalS3  # noqa: E402
from kubeloop.store import ObjectStore, StoreConfig  # noqa: E402

BUCKET = "kubeloop-bench"
NAMESPACE = "bench"


def publish_data(store: ObjectStore, folder: Path, rows: int, features: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    raw = {f"x{i:02d}": rng.normal(size=rows) for i in range(features)}
    weights = rng.normal(size=features)
    logit = sum(w * raw[f"x{i:02d}"] for i, w in enumerate(weights)) + rng.normal(scale=0.5, size=rows)
    table = pa.table({"entity": pa.array(rng.integers(0, rows // 10 + 1, rows)),
                      "ts": pa.array(np.arange(rows), pa.int64()), **raw, "label": pa.array(logit > 0)})
    specs = [Feature.model_validate({"name": f"f{i:02d}", "from": f"x{i:02d}", "transforms": [{"type": "standardize"}]})
             for i in range(features)]
    fitted = fit_pipeline(specs, [table])
    computed = apply_batch(fitted, table)
    out = pa.Table.from_arrays([table.column("entity"), table.column("ts"), table.column("label"), *computed.columns],
                               names=["entity", "ts", "label", *computed.column_names])
    path = folder / "features.parquet"
    pq.write_table(out, path)
    version = store.publish_version(
        f"featuresets/{NAMESPACE}/bench", {"features.parquet": path, "fitted.json": fitted.to_json().encode()},
        {"rows": rows, "features": [s.name for s in specs], "entities": ["entity"], "timestampColumn": "ts",
         "labelColumns": ["label"]})
    return {"name": "bench", "version": version.id, "digest": version.digest}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_trainer(store_env: dict[str, str], store: ObjectStore, reference: dict[str, Any], args: argparse.Namespace,
                workers: int, scratch: Path, *, gpu: bool = False) -> dict[str, Any]:
    name = f"bench-{workers}{'g' if gpu else ''}-{uuid.uuid4().hex[:6]}"
    spec = {"featureSetRef": {"name": "bench"}, "target": "label", "model": {"family": "mlp", "task": "classification"},
            "hyperparameters": {"epochs": args.epochs, "batchSize": args.batch_size, "learningRate": 0.005,
                                "hiddenLayers": args.hidden},
            "seed": 7, "deterministic": True, "workers": workers}
    if gpu:
        spec["resources"] = {"gpus": 1}
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KUBELOOP_", "AWS_", "S3_"))}
    base.update(store_env)
    base.update({"KUBELOOP_TRAININGRUN": json.dumps({"name": name, "namespace": NAMESPACE, "uid": name,
                                                      "generation": 1, "attempt": 1, "spec": spec,
                                                      "featureSet": reference}),
                 "KUBELOOP_SCRATCH": str(scratch), "PYTHONPATH": str(REPO / "operator"),
                 "OMP_NUM_THREADS": str(args.threads or max(1, (os.cpu_count() or 1) // workers))})
    if gpu:
        base["KUBELOOP_TRAIN_FORCE_DDP"] = "1"
    else:
        base["CUDA_VISIBLE_DEVICES"] = ""
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-m", "kubeloop.trainingrun.train"], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True,
                                  env=dict(base, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                                           WORLD_SIZE=str(workers), RANK=str(rank), NODE_RANK=str(rank),
                                           NNODES=str(workers), NPROC_PER_NODE="1", LOCAL_RANK="0"))
                 for rank in range(workers)]
    outputs = [p.communicate()[0] for p in processes]
    wall = time.perf_counter() - started
    if any(p.returncode for p in processes):
        raise SystemExit(f"trainer failed ({[p.returncode for p in processes]}):\n" + "\n".join(outputs))
    record = store.get_json(f"trainingruns/{NAMESPACE}/{name}/record.json")
    rates = [e["samplesPerSecond"] for e in record["epochs"][1:] or record["epochs"]]
    return {"samplesPerSecond": statistics.median(rates), "wallSeconds": wall,
            "trainSeconds": record["timings"]["trainSeconds"], "digest": record["artifact"]["digest"],
            "auc": record["metrics"].get("auc"), "device": record["environment"]["deviceType"],
            "backend": record["environment"]["backend"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 32], help="mlp hidden layer widths")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads per rank (default: cores // workers)")
    parser.add_argument("--gpu", action="store_true")
    args = parser.parse_args()
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            print("bench_training --gpu: no CUDA device visible to torch "
                  f"(torch {torch.__version__}, cuda {torch.version.cuda}): skipping the GPU measurement")
            return
    with tempfile.TemporaryDirectory() as tmp, LocalS3(Path(tmp) / "s3") as s3:
        s3.ensure_bucket(BUCKET)
        store_env = s3.store_env(BUCKET)
        store = ObjectStore(StoreConfig.from_env(store_env))
        reference = publish_data(store, Path(tmp), args.rows, args.features, args.seed)
        print(f"data: {args.rows} rows x {args.features} features, mlp {args.hidden}, {args.epochs} epochs, batch "
              f"{args.batch_size} per rank, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        configurations = [("cpu", w) for w in args.workers] + ([("gpu", 1)] if args.gpu else [])
        results: dict[tuple[str, int], list[dict[str, Any]]] = {c: [] for c in configurations}
        for repeat in range(args.repeat):
            order = configurations if repeat % 2 == 0 else list(reversed(configurations))
            for kind, workers in order:
                result = run_trainer(store_env, store, reference, args, workers, Path(tmp) / "scratch",
                                     gpu=kind == "gpu")
                results[(kind, workers)].append(result)
                print(f"  {kind} x{workers} run {repeat + 1}: {result['samplesPerSecond']:,.0f} samples/s, "
                      f"wall {result['wallSeconds']:.2f} s, auc {result['auc']:.4f}", flush=True)
        print()
        print(f"{'config':<10} {'samples/s (median)':>20} {'wall s (median)':>16} {'train s':>9}  digests")
        base = None
        for (kind, workers), runs in results.items():
            rate = statistics.median(r["samplesPerSecond"] for r in runs)
            base = base or rate
            digests = {r["digest"] for r in runs}
            print(f"{kind} x{workers:<5} {rate:>20,.0f} {statistics.median(r['wallSeconds'] for r in runs):>16.2f} "
                  f"{statistics.median(r['trainSeconds'] for r in runs):>9.2f}  "
                  f"{'identical' if len(digests) == 1 else 'DIFFER'} ({runs[0]['backend']}, "
                  f"{runs[0]['device']}; x{rate / base:.2f} vs first)")
            if len(digests) != 1:
                raise SystemExit(f"deterministic runs of {kind} x{workers} gave different digests: {digests}")


if __name__ == "__main__":
    main()
