"""Benchmark: kubeloop's model server against a bare KServe model serving the same network.

Setup: a local S3 server (SeaweedFS, loopback); a FeatureSet version of --rows rows with a typical
mix of transforms (numbers standardized, clipped, log1p'd and filled, a categorical column
one-hot encoded, one hashed); a binary classifier trained on it by the real trainer
(`python -m kubeloop.trainingrun.train`, an mlp). Then three server processes on 127.0.0.1:

- kubeloop: `python -m kubeloop.modelversion.serve` (raw source columns in, the FeatureSet
  transforms, the model, metrics, the prediction log to S3);
- kubeloop-nolog: the same with KUBELOOP_PREDICTION_LOG=false;
- bare: a plain `kserve.Model` that loads the same model.pt and answers v1 predictions from
  already-transformed float inputs (no transforms, no logging, no kubeloop metrics), served by
  the same KServe ModelServer settings (one worker, gRPC off, loopback) and the same logging
  (kubeloop's `configure_logging`: no log line per request in either server).

kubeloop's server computes requests of up to `transforms.ROWS_MAX` rows with the row kernels and
larger ones with the column kernels (`--batch` sets the rows per request). After the servers, the
bench times each step of a request in this process, and the two kernel forms by request size.

Each sends --batch-row v1 requests over keep-alive HTTP: --requests after --warmup, sequentially
from one client (latency p50/p99, throughput) and from --clients concurrent client processes
(throughput, p50/p99). Servers are measured in turns, the order rotating each repetition; every
figure is the median over --repeat repetitions. The bench checks that kubeloop and bare answer the
same row with the same prediction, bit for bit. torch uses one thread in every server
(OMP_NUM_THREADS=1), as it would in a one-CPU predictor pod.

    python bench/bench_serving.py [--rows 5000] [--requests 2000] [--warmup 200] [--repeat 3] [--clients 4] [--batch 1]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))

from kubeloop.featureset.api import Feature  # noqa: E402
from kubeloop.featureset.transforms import ROWS_MAX, FittedFeatures, apply_batch, fit_pipeline  # noqa: E402

BUCKET = "kubeloop-bench"
NAMESPACE = "bench"
MODEL = "bench"

FEATURES = [
    {"name": "amount_std", "from": "amount", "transforms": [{"type": "fillNull", "strategy": "mean"},
                                                            {"type": "standardize"}]},
    {"name": "amount_log", "from": "amount", "transforms": [{"type": "log1p"}]},
    {"name": "age_std", "from": "age", "transforms": [{"type": "standardize"}]},
    {"name": "visits_clip", "from": "visits", "transforms": [{"type": "clip", "min": 0, "max": 50}]},
    {"name": "tenure_minmax", "from": "tenure", "transforms": [{"type": "minMax"}]},
    {"name": "country_onehot", "from": "country", "transforms": [{"type": "vocabulary", "output": "oneHot"}]},
    {"name": "device_hash", "from": "device", "transforms": [{"type": "hash", "numBuckets": 16}]},
]


def raw_table(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 50.0, rows)
    age = rng.normal(40, 12, rows)
    visits = rng.poisson(8, rows)
    tenure = rng.uniform(0, 3650, rows)
    country = rng.choice(["de", "fr", "us", "jp", "br", "in"], rows)
    device = rng.choice([f"d{i}" for i in range(40)], rows)
    score = 0.02 * (amount - 100) - 0.05 * (age - 40) + (country == "us") + 0.05 * visits + rng.normal(0, 0.5, rows)
    return pa.table({"customer": pa.array(rng.integers(0, rows // 5 + 1, rows)), "ts": pa.array(np.arange(rows)),
                     "amount": pa.array(amount, mask=rng.random(rows) < 0.02), "age": age, "visits": visits,
                     "tenure": tenure, "country": country, "device": device, "label": pa.array(score > 0.8)})


def publish(store: Any, folder: Path, raw: pa.Table) -> tuple[dict[str, Any], FittedFeatures]:
    specs = [Feature.model_validate(f) for f in FEATURES]
    fitted = fit_pipeline(specs, [raw])
    features = apply_batch(fitted, raw)
    table = pa.Table.from_arrays([raw.column("customer"), raw.column("ts"), raw.column("label"), *features.columns],
                                 names=["customer", "ts", "label", *features.column_names])
    pq.write_table(table, folder / "features.parquet")
    version = store.publish_version(
        f"featuresets/{NAMESPACE}/bench", {"features.parquet": folder / "features.parquet",
                                           "fitted.json": fitted.to_json().encode()},
        {"rows": raw.num_rows, "features": [s.name for s in specs], "entities": ["customer"], "timestampColumn": "ts",
         "labelColumns": ["label"]})
    return {"name": "bench", "version": version.id, "digest": version.digest}, fitted


def train(store_env: dict[str, str], store: Any, reference: dict[str, Any], scratch: Path) -> dict[str, Any]:
    name = f"bench-{uuid.uuid4().hex[:6]}"
    spec = {"featureSetRef": {"name": "bench"}, "target": "label", "model": {"family": "mlp", "task": "classification"},
            "hyperparameters": {"epochs": 2, "batchSize": 256, "learningRate": 0.005, "hiddenLayers": [64, 32]},
            "seed": 7, "deterministic": True}
    env = child_env(store_env)
    env.update({"KUBELOOP_TRAININGRUN": json.dumps({"name": name, "namespace": NAMESPACE, "uid": name,
                                                     "generation": 1, "attempt": 1, "spec": spec,
                                                     "featureSet": reference}),
                "KUBELOOP_SCRATCH": str(scratch)})
    done = subprocess.run([sys.executable, "-m", "kubeloop.trainingrun.train"], env=env, capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"trainer failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    record: dict[str, Any] = store.get_json(f"trainingruns/{NAMESPACE}/{name}/record.json")
    return record


def child_env(store_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBELOOP_", "AWS_", "S3_"))}
    env.update(store_env)
    env.update({"PYTHONPATH": str(REPO / "operator"), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
    return env


# -- the bare baseline: a KServe model on transformed inputs -----------------------------------------


def bare_server(folder: str, port: int) -> None:
    """`--bare-server FOLDER PORT`: serve model.pt/model.json from FOLDER as a plain kserve.Model."""
    import torch
    from kserve import Model

    from kubeloop.modelversion.serve import BoundModelServer, configure_logging
    from kubeloop.trainingrun.api import Hyperparameters
    from kubeloop.trainingrun.models import build_model, objective_for

    spec = json.loads((Path(folder) / "model.json").read_text())
    objective = objective_for(spec["task"], len(spec["classes"]) if spec["classes"] else None)
    module = build_model(spec["family"], inputs=spec["inputWidth"], outputs=objective.outputs,
                         hyperparameters=Hyperparameters.model_validate(spec["hyperparameters"]))
    module.load_state_dict(torch.load(Path(folder) / "model.pt", weights_only=True))
    module.eval()

    class Bare(Model):
        def load(self) -> bool:
            self.ready = True
            return True

        def predict(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
            with torch.inference_mode():
                x = torch.tensor(payload["instances"], dtype=torch.float32)
                return {"predictions": objective.scores(module(x)).numpy().astype(np.float64).tolist()}

    configure_logging()  # the same logging as kubeloop's server: no line per request in either
    model = Bare(MODEL)
    model.load()
    BoundModelServer(bind_address="127.0.0.1", announce=f"bare ready on 127.0.0.1:{port}", http_port=port,
                     enable_grpc=False, workers=1, enable_docs_url=False,
                     enable_latency_logging=False).start([model])


# -- servers and clients ----------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int) -> None:
        self.name, self.port = name, port
        self.process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 180
        while not any(" ready on " in line for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not start:\n{''.join(self.lines)}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


def one(port: int, path: str, body: bytes) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", port)
    connection.request("POST", path, body, {"content-type": "application/json"})
    response = connection.getresponse()
    data = json.loads(response.read())
    if response.status != 200:
        raise SystemExit(f"HTTP {response.status} from port {port}: {data}")
    return data


def client(port: int, path: str, bodies: list[bytes], warmup: int, count: int) -> list[float]:
    """Latencies (seconds) of `count` requests after `warmup`, on one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"content-type": "application/json"}
    latencies = []
    for index in range(warmup + count):
        body = bodies[index % len(bodies)]
        started = time.perf_counter()
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"HTTP {response.status} from port {port}")
        if index >= warmup:
            latencies.append(time.perf_counter() - started)
    connection.close()
    return latencies


def _client_job(job: tuple[int, str, list[bytes], int, int]) -> list[float]:
    return client(*job)


def cpu_seconds(pid: int) -> float:
    """CPU time a server process used so far, all its threads (the log writer's included)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def measure(server: Server, path: str, bodies: list[bytes], args: argparse.Namespace,
            pool: Any) -> dict[str, float]:
    port = server.port
    client(port, path, bodies, args.warmup, 0)
    before = cpu_seconds(server.process.pid)
    sequential = client(port, path, bodies, 0, args.requests)
    # CPU per request barely depends on what else the machine runs, unlike latency: on a shared
    # machine it is the steadier measure of what a server does per request.
    cpu_us = 1e6 * (cpu_seconds(server.process.pid) - before) / args.requests
    per_client = args.requests // args.clients
    started = time.perf_counter()
    results = pool.map(_client_job, [(port, path, bodies[i::args.clients] or bodies, args.warmup // args.clients,
                                      per_client) for i in range(args.clients)])
    wall = time.perf_counter() - started
    concurrent = [x for r in results for x in r]
    return {
        "p50_ms": 1000 * float(np.percentile(sequential, 50)), "p99_ms": 1000 * float(np.percentile(sequential, 99)),
        "rps": len(sequential) / sum(sequential), "cpu_us": cpu_us,
        "c_p50_ms": 1000 * float(np.percentile(concurrent, 50)), "c_p99_ms": 1000 * float(np.percentile(concurrent, 99)),
        # Includes each client's warm-up requests too: a lower bound, the same for every server.
        "c_rps": (per_client + args.warmup // args.clients) * args.clients / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1, help="rows per request (default 1: single-row requests)")
    parser.add_argument("--bare-server", nargs=2, metavar=("FOLDER", "PORT"))
    args = parser.parse_args()
    if args.bare_server:
        bare_server(args.bare_server[0], int(args.bare_server[1]))
        return

    from kubeloop.local.s3 import LocalS3
    from kubeloop.store import ObjectStore, StoreConfig
    from kubeloop.trainingrun.models import input_matrix

    with tempfile.TemporaryDirectory() as tmp, LocalS3(Path(tmp) / "s3") as s3:
        s3.ensure_bucket(BUCKET)
        store_env = s3.store_env(BUCKET)
        store = ObjectStore(StoreConfig.from_env(store_env))
        raw = raw_table(args.rows, 11)
        reference, fitted = publish(store, Path(tmp), raw)
        record = train(store_env, store, reference, Path(tmp) / "scratch")
        artifact = record["artifact"]
        prefix, version_id = artifact["uri"].split(f"s3://{BUCKET}/", 1)[1].rsplit("/versions/", 1)
        version = store.read_manifest(prefix, version_id.removesuffix(".json"))
        model_dir = Path(tmp) / "model"
        for name in ("model.pt", "model.json"):
            store.download(version, name, model_dir / name)
        inputs = [item["name"] for item in json.loads((model_dir / "model.json").read_text())["inputs"]]

        # Request bodies: 64 distinct requests of `--batch` raw rows each, and the same rows already
        # transformed for the bare model.
        sample = raw.slice(0, 64 * args.batch)
        source_names = ["amount", "age", "visits", "tenure", "country", "device"]
        rows = sample.select(source_names).to_pylist()
        vectors = input_matrix(apply_batch(fitted, sample), inputs)[0].tolist()
        raw_bodies = [json.dumps({"instances": rows[i:i + args.batch]}).encode()
                      for i in range(0, len(rows), args.batch)]
        bare_bodies = [json.dumps({"instances": vectors[i:i + args.batch]}).encode()
                       for i in range(0, len(vectors), args.batch)]
        rows = rows[:64]

        ports = {name: free_port() for name in ("kubeloop", "kubeloop-nolog", "bare")}
        server_env = child_env(store_env)
        server_env.update({"KUBELOOP_MODEL": MODEL, "KUBELOOP_MODEL_VERSION": "bench-v1", "KUBELOOP_NAMESPACE": NAMESPACE,
                           "KUBELOOP_ARTIFACT_URI": artifact["uri"], "KUBELOOP_ARTIFACT_DIGEST": artifact["digest"],
                           "KUBELOOP_BIND_ADDRESS": "127.0.0.1"})
        serve = [sys.executable, "-m", "kubeloop.modelversion.serve"]
        servers = {
            "kubeloop": Server("kubeloop", serve, dict(server_env, PORT=str(ports["kubeloop"])), ports["kubeloop"]),
            "kubeloop-nolog": Server("kubeloop-nolog", serve, dict(server_env, PORT=str(ports["kubeloop-nolog"]),
                                                                   KUBELOOP_PREDICTION_LOG="false"),
                                     ports["kubeloop-nolog"]),
            "bare": Server("bare", [sys.executable, __file__, "--bare-server", str(model_dir), str(ports["bare"])],
                           child_env({}), ports["bare"]),
        }
        try:
            for server in servers.values():
                server.wait_ready()
            path = f"/v1/models/{MODEL}:predict"
            for raw_body, bare_body in zip(raw_bodies[:8], bare_bodies[:8], strict=True):
                ours, theirs = one(ports["kubeloop"], path, raw_body), one(ports["bare"], path, bare_body)
                if ours != theirs:
                    raise SystemExit(f"kubeloop and bare disagree: {ours} != {theirs}")
            bodies = {"kubeloop": raw_bodies, "kubeloop-nolog": raw_bodies, "bare": bare_bodies}
            results: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
            names = list(servers)
            with multiprocessing.get_context("spawn").Pool(args.clients) as pool:
                for repetition in range(args.repeat):
                    order = names[repetition % len(names):] + names[:repetition % len(names)]
                    for name in order:
                        results[name].append(measure(servers[name], path, bodies[name], args, pool))
                        print(f"  rep {repetition + 1} {name}: {results[name][-1]}", file=sys.stderr, flush=True)
        finally:
            for server in servers.values():
                server.stop()
        import torch

        torch.set_num_threads(1)  # as in the servers
        costs, sizes = stage_costs(fitted, inputs, model_dir, rows)
        report(results, args)
        print("\nCPU per single-row request of each step (in the bench process, CPU time):\n")
        print("| step | CPU us |\n| --- | ---: |")
        for name, cost in costs.items():
            print(f"| {name} | {cost:.0f} |")
        print(f"\nTransforms per request by rows per request (CPU us; the server takes the row kernels up to "
              f"{ROWS_MAX} rows):\n")
        print("| rows | row kernels (apply_rows) | column kernels (table + apply_batch) | row / column |")
        print("| ---: | ---: | ---: | ---: |")
        for size, (rowwise, columns) in sizes.items():
            print(f"| {size} | {rowwise:.0f} | {columns:.0f} | {rowwise / columns:.2f} |")


def stage_costs(fitted: FittedFeatures, inputs: list[str], model_dir: Path, rows: list[dict[str, Any]],
                count: int = 3000) -> tuple[dict[str, float], dict[int, tuple[float, float]]]:
    """Microseconds per single-row request of each step of kubeloop's predict, in this process;
    and per request size, the transforms by the row kernels vs the column kernels."""
    import torch
    from prometheus_client import CollectorRegistry

    from kubeloop.featureset.transforms import apply_rows
    from kubeloop.modelversion.serve import (
        KubeloopModel,
        ServerMetrics,
        instances_table,
        served_model,
        v1_table,
    )
    from kubeloop.trainingrun.models import input_matrix, input_rows

    spec = json.loads((model_dir / "model.json").read_text())
    served = served_model(None, spec, {"fitted": fitted.to_dict()},  # type: ignore[arg-type]
                          torch.load(model_dir / "model.pt", weights_only=True))
    bodies = [{"instances": [row]} for row in rows]
    tables = [v1_table(body, served.fitted) for body in bodies]
    features = [apply_batch(served.fitted, table) for table in tables]
    matrices = [torch.from_numpy(input_matrix(f, inputs)[0]) for f in features]
    computed = [apply_rows(served.fitted, body["instances"]) for body in bodies]
    assert all(c is not None for c in computed), "the row kernels did not take the bench's rows"
    feature_rows = [c[1] for c in computed if c is not None]

    def model(x: Any) -> Any:
        with torch.inference_mode():
            return served.objective.scores(served.module(x)).numpy()

    metrics = ServerMetrics(MODEL, "bench-v1", served.objective.kind, registry=CollectorRegistry())
    predictor = KubeloopModel(MODEL, served, model_version="bench-v1", metrics=metrics, writer=None)

    steps: dict[str, tuple[Any, list[Any]]] = {
        "column path: request -> Arrow table (v1_table)": (lambda b: v1_table(b, served.fitted), bodies),
        "column path: transforms (apply_batch)": (lambda t: apply_batch(served.fitted, t), tables),
        "column path: input matrix (input_matrix)": (lambda f: input_matrix(f, inputs), features),
        "row path: transforms (apply_rows)": (lambda b: apply_rows(served.fitted, b["instances"]), bodies),
        "row path: input rows (input_rows, torch.tensor)": (
            lambda f: torch.tensor(input_rows(f, served.input_widths), dtype=torch.float32), feature_rows),
        "model + scores (the bare server's work)": (model, matrices),
        "all of KubeloopModel.predict (no log; row path, metrics, response)": (predictor.predict, bodies),
    }
    costs = {name: cpu_us(step, items, count) for name, (step, items) in steps.items()}
    sizes = {}
    for size in (1, 4, 16, 32, 64, 128):
        batches = [[rows[(start + i) % len(rows)] for i in range(size)] for start in range(8)]
        rowwise = cpu_us(lambda b: apply_rows(served.fitted, b), batches, max(50, count // size))
        columns = cpu_us(lambda b: apply_batch(served.fitted, instances_table(b, served.fitted)), batches,
                         max(50, count // size))
        sizes[size] = (rowwise, columns)
    return costs, sizes


def cpu_us(step: Any, items: list[Any], count: int) -> float:
    """CPU microseconds per call of `step` over `items` (after a warm-up)."""
    for index in range(min(300, count)):
        step(items[index % len(items)])
    started = time.process_time()
    for index in range(count):
        step(items[index % len(items)])
    return 1e6 * (time.process_time() - started) / count


def report(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    medians = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for name, runs in results.items()}
    print(f"\n{args.batch}-row v1 requests, {args.requests} per measurement after {args.warmup} warm-up, medians of "
          f"{args.repeat}; {os.cpu_count()} CPUs\n")
    print(f"| server | p50 ms | p99 ms | req/s | server CPU us/req | {args.clients} clients p50 ms | p99 ms | req/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, m in medians.items():
        print(f"| {name} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} | {m['rps']:.0f} | {m['cpu_us']:.0f} | "
              f"{m['c_p50_ms']:.3f} | {m['c_p99_ms']:.3f} | {m['c_rps']:.0f} |")
    ours, nolog, bare = medians["kubeloop"], medians["kubeloop-nolog"], medians["bare"]
    print(f"\nkubeloop / bare: p50 {ours['p50_ms'] / bare['p50_ms']:.3f}x (overhead "
          f"{100 * (ours['p50_ms'] / bare['p50_ms'] - 1):+.1f}%), p99 {ours['p99_ms'] / bare['p99_ms']:.3f}x, "
          f"throughput {ours['rps'] / bare['rps']:.3f}x, {args.clients}-client throughput "
          f"{ours['c_rps'] / bare['c_rps']:.3f}x, server CPU per request {ours['cpu_us'] / bare['cpu_us']:.3f}x "
          f"({ours['cpu_us'] - bare['cpu_us']:+.0f} us)")
    print(f"prediction log cost per request: CPU {ours['cpu_us'] - nolog['cpu_us']:+.0f} us, "
          f"p50 {1000 * (ours['p50_ms'] - nolog['p50_ms']):+.1f} us "
          f"({100 * (ours['p50_ms'] / nolog['p50_ms'] - 1):+.1f}%), throughput "
          f"{100 * (ours['rps'] / nolog['rps'] - 1):+.1f}%")


if __name__ == "__main__":
    main()
