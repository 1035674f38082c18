"""Benchmark: how long `kubeloop up` takes until the environment is usable.

Each run starts `kubeloop up` in a fresh state directory (as a first-time user would, minus
installs), waits until it prints that it is up, checks that real kubectl answers, and stops it
with SIGINT. Reported: median and spread of (a) process start -> "kubeloop is up" and (b) the
per-piece times it prints. Target (issue 3): ready in <= 5 s. Results: docs/performance.md.

    python bench/bench_up.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PIECE = re.compile(r"✓ (?P<name>.+?)\s{2,}.*\((?P<seconds>[0-9.]+)s\)")


def one_run(state: Path) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    up = subprocess.Popen([sys.executable, "-m", "kubeloop", "up", "--state-dir", str(state)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    pieces: dict[str, float] = {}
    assert up.stdout is not None
    try:
        for line in up.stdout:
            match = PIECE.search(line)
            if match:
                pieces[match["name"].strip()] = float(match["seconds"])
            if "kubeloop is up" in line:
                ready = time.perf_counter() - started
                break
        else:
            raise RuntimeError(f"kubeloop up exited early ({up.wait()})")
        kubectl = Path(sys.executable).parent / "kubectl"
        subprocess.run([str(kubectl), "--kubeconfig", str(state / "kubeconfig"), "get", "nodes"], check=True,
                       capture_output=True, env={**os.environ, "KUBECACHEDIR": str(state / "kubecache")})
        return ready, pieces
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    totals: list[float] = []
    per_piece: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):
            total, pieces = one_run(Path(tmp) / f"run{run}")
            totals.append(total)
            for name, seconds in pieces.items():
                per_piece.setdefault(name, []).append(seconds)
            print(f"run {run + 1}: ready in {total:.2f}s  " + "  ".join(f"{k}={v:.2f}s" for k, v in pieces.items()),
                  flush=True)
    print(f"\nkubeloop up, {args.repeat} runs: median {statistics.median(totals):.2f}s "
          f"(min {min(totals):.2f}s, max {max(totals):.2f}s); target <= 5 s: "
          f"{'meets' if statistics.median(totals) <= 5 else 'MISSES'}")
    for name, values in per_piece.items():
        print(f"  {name:18s} median {statistics.median(values):.2f}s")


if __name__ == "__main__":
    main()
