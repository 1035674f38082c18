"""Benchmark: kubeloop's operator vs a no-op kopf "floor" operator, side by side.

For N resources applied at once (concurrent creates), each operator runs as its own
process against a fresh local API server (kubeloop's) in the same run:
  - floor:    bench/floor_operator.py (on create: one owned ConfigMap + a status patch)
  - kubeloop: `kubeloop operator` reconciling TrainingRuns (validate, status, phase gauge)
Reported: throughput (resources/s from the first create to the last status), apply→status
latency p50/p99 timed from each create response to the watch event carrying its status,
and the operator's peak RSS. Targets (issue 2): throughput >= 2/3 of the floor's, p99 <=
1.5x the floor's, RSS <= 200 MB. Results: docs/performance.md.

    python bench/bench_operator.py [--sizes 200 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import urllib3
import yaml

from kubeloop.local.supervisor import ManagedProcess, free_port, python_module

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_apiserver import CRD as THING_CRD  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "default"


def api(http: urllib3.PoolManager, method: str, url: str, body: Any = None) -> dict[str, Any]:
    response = http.request(method, url, body=None if body is None else json.dumps(body),
                            headers={"Content-Type": "application/json"})
    if response.status >= 300:
        raise RuntimeError(f"{method} {url} -> {response.status}: {response.data[:300]!r}")
    return json.loads(response.data)


def trainingrun_crd() -> dict[str, Any]:
    return yaml.safe_load((REPO / "crds" / "trainingruns.kubeloop.dev.yaml").read_text())


def trainingrun_template() -> dict[str, Any]:
    for doc in yaml.safe_load_all((REPO / "manifests" / "samples" / "trainingrun.yaml").read_text()):
        if doc and doc["kind"] == "TrainingRun":
            return doc
    raise RuntimeError("no TrainingRun sample in manifests/samples/trainingrun.yaml")


class StatusWatcher(threading.Thread):
    """Records when each object's status first shows up on a watch stream."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen: dict[str, float] = {}
        self.ready = threading.Event()
        self.stopped = False

    def run(self) -> None:
        http = urllib3.PoolManager()
        response = http.request("GET", self.url + "?watch=true&timeoutSeconds=600", preload_content=False,
                                timeout=urllib3.Timeout(connect=5, read=None))
        self.ready.set()
        buffer = b""
        for chunk in response.stream(65536):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            now = time.perf_counter()
            for line in lines:
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object", {})
                name = obj.get("metadata", {}).get("name")
                if name and (obj.get("status") or {}).get("phase") and name not in self.seen:
                    self.seen[name] = now
            if self.stopped:
                break
        response.release_conn()


def peak_rss_sampler(pid: int, stop: threading.Event, out: list[int]) -> None:
    process = psutil.Process(pid)
    peak = 0
    while not stop.is_set():
        try:
            rss = process.memory_info().rss + sum(c.memory_info().rss for c in process.children(recursive=True))
        except psutil.NoSuchProcess:
            break
        peak = max(peak, rss)
        time.sleep(0.1)
    out.append(peak)


def run_once(which: str, n: int, workdir: Path) -> dict[str, float]:
    api_port = free_port()
    kubeconfig = workdir / "kubeconfig"
    server = ManagedProcess("apiserver", python_module("kubeloop", "local", "apiserver", "--port", str(api_port),
                                                        "--kubeconfig", str(kubeconfig)),
                            log_path=workdir / "apiserver.log").start()
    base = f"http://127.0.0.1:{api_port}"
    operator: ManagedProcess | None = None
    http = urllib3.PoolManager(maxsize=32)
    try:
        server.wait_ready(base + "/version")
        health = free_port()
        if which == "floor":
            api(http, "POST", base + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", THING_CRD)
            collection = base + f"/apis/bench.kubeloop.dev/v1/namespaces/{NAMESPACE}/things"
            argv = [shutil.which("kopf") or str(Path(sys.executable).parent / "kopf"), "run", "--standalone",
                    "--all-namespaces", f"--liveness=http://127.0.0.1:{health}/healthz",
                    str(REPO / "bench" / "floor_operator.py")]

            def make(i: int) -> dict[str, Any]:
                return {"apiVersion": "bench.kubeloop.dev/v1", "kind": "Thing",
                        "metadata": {"name": f"obj-{i}", "namespace": NAMESPACE}, "spec": {"index": i}}
        else:
            api(http, "POST", base + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", trainingrun_crd())
            collection = base + f"/apis/kubeloop.dev/v1alpha1/namespaces/{NAMESPACE}/trainingruns"
            argv = python_module("kubeloop", "operator", "--kubeconfig", str(kubeconfig),
                                 "--metrics-address", "127.0.0.1", "--metrics-port", str(free_port()),
                                 "--health-address", "127.0.0.1", "--health-port", str(health))
            template = trainingrun_template()

            def make(i: int) -> dict[str, Any]:
                obj = copy.deepcopy(template)
                obj["metadata"] = {"name": f"obj-{i}", "namespace": NAMESPACE}
                return obj
        time.sleep(0.3)  # CRD established
        operator = ManagedProcess(which, argv, log_path=workdir / f"{which}.log",
                                  env={"KUBECONFIG": str(kubeconfig)}).start()
        operator.wait_ready(f"http://127.0.0.1:{health}/healthz", timeout=60)
        time.sleep(1.0)  # let the operator's watch stream open before the burst

        watcher = StatusWatcher(collection)
        watcher.start()
        watcher.ready.wait(10)
        stop_sampling, peak = threading.Event(), []
        sampler = threading.Thread(target=peak_rss_sampler, args=(operator.pid, stop_sampling, peak))
        sampler.start()

        created: dict[str, float] = {}

        def create(i: int) -> None:
            obj = make(i)
            api(http, "POST", collection, obj)
            created[obj["metadata"]["name"]] = time.perf_counter()

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(create, range(n)))
        deadline = time.perf_counter() + 300
        while len(watcher.seen) < n and time.perf_counter() < deadline:
            time.sleep(0.05)
        watcher.stopped = True
        stop_sampling.set()
        sampler.join()
        if len(watcher.seen) < n:
            raise RuntimeError(f"{which}: only {len(watcher.seen)}/{n} got a status; see {operator.log_path}")
        latencies = sorted(watcher.seen[name] - created[name] for name in created)
        finished = max(watcher.seen.values())
        return {
            "throughput": n / (finished - started),
            "p50": statistics.median(latencies),
            "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "rss_mb": peak[0] / 2**20 if peak else float("nan"),
        }
    finally:
        if operator is not None:
            operator.stop()
        server.stop()
        http.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):
            for n in args.sizes:
                for which in ("floor", "kubeloop"):
                    figures = run_once(which, n, Path(tmp) / f"{which}-{n}-{run}")
                    results.setdefault((which, n), []).append(figures)
                    print(f"run {run + 1} N={n:<5d} {which:9s} throughput={figures['throughput']:.0f}/s "
                          f"p50={figures['p50']:.2f}s p99={figures['p99']:.2f}s rss={figures['rss_mb']:.0f}MB",
                          flush=True)
    print(f"\nmedians over {args.repeat} runs")
    print(f"{'N':>5s} {'operator':9s} {'resources/s':>12s} {'p50 s':>7s} {'p99 s':>7s} {'RSS MB':>7s}")
    for n in args.sizes:
        med = {}
        for which in ("floor", "kubeloop"):
            rows = results[(which, n)]
            med[which] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            m = med[which]
            print(f"{n:>5d} {which:9s} {m['throughput']:>12.0f} {m['p50']:>7.2f} {m['p99']:>7.2f} {m['rss_mb']:>7.0f}")
        ratio_t = med["kubeloop"]["throughput"] / med["floor"]["throughput"]
        ratio_p99 = med["kubeloop"]["p99"] / med["floor"]["p99"]
        print(f"{n:>5d} kubeloop/floor: throughput x{ratio_t:.2f} (target >= 0.67), "
              f"p99 x{ratio_p99:.2f} (target <= 1.5), RSS {med['kubeloop']['rss_mb']:.0f} MB (target <= 200)")


if __name__ == "__main__":
    main()
