"""Benchmark: the local API server alone, side by side with stock kmock 0.8.

Measures, for each server in the same run (each a fresh process on 127.0.0.1):
  - sequential creates/s of N custom objects (keep-alive HTTP, one request at a time),
  - sequential status patches/s (merge patch on /status) of those N objects,
  - list latency (median of repeated GETs of the whole collection with N objects held).
Target (issue 2): >= 1,500 creates/s for kubeloop's server. Results: docs/performance.md.

    python bench/bench_apiserver.py [--objects 1000] [--repeat 3] [--skip-stock]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import urllib3

from kubeloop.local.supervisor import ManagedProcess, free_port, python_module

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "things.bench.kubeloop.dev"},
    "spec": {
        "group": "bench.kubeloop.dev",
        "scope": "Namespaced",
        "names": {"plural": "things", "singular": "thing", "kind": "Thing", "listKind": "ThingList"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            }}},
        }],
    },
}
THINGS = "/apis/bench.kubeloop.dev/v1/namespaces/default/things"

# Stock kmock 0.8, as LOCAL_CONTROL_PLANE.md measured it: the baseline to beat.
STOCK_KMOCK = textwrap.dedent("""
    import asyncio, sys
    import kmock
    async def main(port):
        async with kmock.KubernetesEmulator() as k, kmock.Server(k, host='127.0.0.1', port=port):
            k.resources.load_bundled()
            k.resources['bench.kubeloop.dev/v1/things'] = kmock.ResourceInfo(
                kind='Thing', singular='thing', namespaced=True, verbs={'list','watch','get','create','patch'},
                subresources={'status'})
            k.fallback['get /version'] << {'major': '1', 'minor': '26'}
            await asyncio.Event().wait()
    asyncio.run(main(int(sys.argv[1])))
""")


def start_server(kind: str, workdir: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    if kind == "kubeloop":
        argv = python_module("kubeloop", "local", "apiserver", "--port", str(port),
                             "--kubeconfig", str(workdir / "kubeconfig"))
    else:
        script = workdir / "stock_kmock.py"
        script.write_text(STOCK_KMOCK)
        argv = [sys.executable, str(script), str(port)]
    process = ManagedProcess(kind, argv, log_path=workdir / f"{kind}.log").start()
    process.wait_ready(f"http://127.0.0.1:{port}/version", timeout=30)
    return process, f"http://127.0.0.1:{port}"


def request(http: urllib3.PoolManager, method: str, url: str, body: object = None,
            content_type: str = "application/json") -> dict:
    response = http.request(method, url, body=None if body is None else json.dumps(body),
                            headers={"Content-Type": content_type, "Accept": "application/json"})
    if response.status >= 300:
        raise RuntimeError(f"{method} {url} -> {response.status}: {response.data[:300]!r}")
    return json.loads(response.data) if response.data else {}


def measure(kind: str, objects: int, list_repeats: int, workdir: Path) -> dict[str, float]:
    process, base = start_server(kind, workdir)
    http = urllib3.PoolManager(maxsize=1)
    try:
        if kind == "kubeloop":
            request(http, "POST", base + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD)
            time.sleep(0.2)
        t0 = time.perf_counter()
        for i in range(objects):
            request(http, "POST", base + THINGS, {
                "apiVersion": "bench.kubeloop.dev/v1", "kind": "Thing",
                "metadata": {"name": f"thing-{i}", "namespace": "default", "labels": {"bench": "yes"}},
                "spec": {"index": i}})
        create_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(objects):
            request(http, "PATCH", f"{base}{THINGS}/thing-{i}/status", {"status": {"phase": "Done"}},
                    content_type="application/merge-patch+json")
        patch_s = time.perf_counter() - t0
        latencies = []
        for _ in range(list_repeats):
            t0 = time.perf_counter()
            listed = request(http, "GET", base + THINGS)
            latencies.append(time.perf_counter() - t0)
        assert len(listed["items"]) == objects, len(listed["items"])
        return {"creates_per_s": objects / create_s, "status_patches_per_s": objects / patch_s,
                "list_ms_p50": statistics.median(latencies) * 1000}
    finally:
        http.clear()
        process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per server; medians are reported")
    parser.add_argument("--list-repeats", type=int, default=20)
    parser.add_argument("--stock-objects", type=int, default=1000,
                        help="objects for stock kmock (it slows down quadratically)")
    parser.add_argument("--skip-stock", action="store_true")
    args = parser.parse_args()

    servers = [("kubeloop", args.objects)] + ([] if args.skip_stock else [("stock-kmock-0.8", args.stock_objects)])
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in servers}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):
            for name, count in servers:  # interleaved, so machine noise hits both alike
                figures = measure("kubeloop" if name == "kubeloop" else "stock", count, args.list_repeats,
                                  Path(tmp))
                results[name].append(figures)
                print(f"run {run + 1} {name:16s} " + "  ".join(f"{k}={v:,.1f}" for k, v in figures.items()),
                      flush=True)
    print(f"\nmedians over {args.repeat} runs ({args.objects} objects; list of all objects held)")
    print(f"{'server':18s} {'creates/s':>10s} {'status patches/s':>17s} {'list p50 ms':>12s}")
    medians = {}
    for name, rows in results.items():
        medians[name] = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        m = medians[name]
        print(f"{name:18s} {m['creates_per_s']:>10,.0f} {m['status_patches_per_s']:>17,.0f} {m['list_ms_p50']:>12.1f}")
    if "stock-kmock-0.8" in medians:
        ours, stock = medians["kubeloop"], medians["stock-kmock-0.8"]
        print(f"ratio kubeloop/stock: creates x{ours['creates_per_s'] / stock['creates_per_s']:.1f}, "
              f"status patches x{ours['status_patches_per_s'] / stock['status_patches_per_s']:.1f}, "
              f"list latency x{stock['list_ms_p50'] / ours['list_ms_p50']:.1f} faster")
    target = 1500
    verdict = "meets" if medians["kubeloop"]["creates_per_s"] >= target else "MISSES"
    print(f"target >= {target} creates/s: {verdict}")


if __name__ == "__main__":
    main()
