"""Benchmark: a FeatureSet materialization (`python -m kubeloop.featureset.materialize`) against
a plain pandas pipeline doing the same transforms, side by side in the same run.

The data (deterministic from --seed; defaults are issue 4's size): --rows (5M) rows of card
transactions written as one Parquet file (zstd, pyarrow's default 1Mi-row row groups):
`customer_id` int64 (rows/10 customers), `event_time` timestamp[us, UTC] over 2024 (unique per
customer), `is_fraud` bool label, numbers `amount` (log-normal, 1% null), `balance` (normal),
`age` int64, `distance` (exponential), `n_tx` int64 (Poisson), `score` (uniform), `velocity`
(5% null), and strings `country` (30 values), `merchant` (5,000), `device` (5), `channel` (4).

20 features: fillNull(mean)+log1p+standardize, clip, standardize x4, minMax, bucketize with
boundaries and with fitted quantiles (x2), log1p, vocabulary x3 (one capped at 1,000), hash x2,
datetime hour / dayOfWeek / month, fillNull(constant)+standardize. The contract: amount >= 0 and
at most 5% null, age in [0, 120], country in its 30 values, minRows, and entity + timestamp unique.

Each measurement is a fresh subprocess:
  - kubeloop: `materialize.run()` with the pod's environment against a LocalS3 (SeaweedFS) started
    once by the parent: both passes, contract, fit, transform, Parquet, reference profile, source
    digests, upload and publication of the version (a new FeatureSet name each time, so nothing is
    deduplicated), and the run result.
  - pandas: `read_parquet` of the needed columns, fit (means, stds, min/max, quantiles,
    value_counts), transform (the same 20 features), `to_parquet` (zstd) to a local file. No
    contract, no profile, no digests, no upload: it does strictly less work.
Peak RSS is the child's VmHWM (interpreter and imports included); "work RSS" is the peak minus the
RSS after imports; "cpu" is the child's user + system time (all threads). Engines alternate which
goes first; medians and bests over --repeat runs (on a shared machine the best is the steadier). Before
timing, one kubeloop run's features are compared with pandas' for the features whose semantics
are the same in both (numeric steps and datetime parts).
Targets (issue 4): peak RSS below 2x the input's Arrow size; faster than pandas (the issue's 3x
is stated for the point-in-time join).

    python bench/bench_materialize.py [--rows 5000000] [--repeat 3] [--batch-rows 65536]
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

START_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
YEAR_US = 366 * 86_400 * 1_000_000
COUNTRIES = [f"C{i:02d}" for i in range(30)]
DEVICES = ["ios", "android", "web", "pos", "atm"]
CHANNELS = ["online", "instore", "phone", "mail"]
AGE_EDGES = [18.0, 25.0, 35.0, 50.0, 65.0]
BUCKET = "kubeloop-bench"


def make_data(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    customers = max(1, rows // 10)
    customer = rng.integers(0, customers, rows).astype(np.int64) + 1_000_000
    times = START_US + rng.integers(0, YEAR_US, rows)
    # entity + timestamp unique (the contract): nudge the rare clashes.
    while True:
        order = np.lexsort((times, customer))
        clash = (customer[order][1:] == customer[order][:-1]) & (times[order][1:] == times[order][:-1])
        if not clash.any():
            break
        times[order[1:][clash]] += 1
    amount = rng.lognormal(3.5, 1.2, rows)
    amount_mask = rng.random(rows) < 0.01
    velocity = rng.gamma(2.0, 3.0, rows)
    velocity_mask = rng.random(rows) < 0.05
    return pa.table({
        "customer_id": customer,
        "event_time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "is_fraud": rng.random(rows) < 0.02,
        "amount": pa.array(amount, mask=amount_mask),
        "balance": rng.normal(2_500.0, 1_200.0, rows),
        "age": rng.integers(18, 95, rows).astype(np.int64),
        "distance": rng.exponential(12.0, rows),
        "n_tx": rng.poisson(4.0, rows).astype(np.int64),
        "score": rng.random(rows),
        "velocity": pa.array(velocity, mask=velocity_mask),
        "country": pa.array(np.array(COUNTRIES)[rng.zipf(1.6, rows) % len(COUNTRIES)]),
        "merchant": pa.array(np.char.add("m", (rng.zipf(1.3, rows) % 5_000).astype(str))),
        "device": pa.array(np.array(DEVICES)[rng.integers(0, len(DEVICES), rows)]),
        "channel": pa.array(np.array(CHANNELS)[rng.integers(0, len(CHANNELS), rows)]),
    })


def spec(uri: str) -> dict[str, Any]:
    def feature(name: str, source: str, *steps: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "from": source, "transforms": list(steps)}

    return {
        "source": {"uri": uri, "format": "parquet", "timestampColumn": "event_time"},
        "entities": ["customer_id"],
        "labelColumns": ["is_fraud"],
        "features": [
            feature("amount_log_z", "amount", {"type": "fillNull", "strategy": "mean"}, {"type": "log1p"},
                    {"type": "standardize"}),
            feature("amount_clip", "amount", {"type": "clip", "min": 0, "max": 1000}),
            feature("balance_z", "balance", {"type": "standardize"}),
            feature("balance_mm", "balance", {"type": "minMax"}),
            feature("age_bucket", "age", {"type": "bucketize", "boundaries": AGE_EDGES}),
            feature("age_q", "age", {"type": "bucketize", "numBuckets": 10}),
            feature("distance_log", "distance", {"type": "log1p"}),
            feature("distance_q", "distance", {"type": "bucketize", "numBuckets": 20}),
            feature("n_tx_z", "n_tx", {"type": "standardize"}),
            feature("score_clip", "score", {"type": "clip", "min": 0.1, "max": 0.9}),
            feature("score_z", "score", {"type": "standardize"}),
            feature("country_ix", "country", {"type": "vocabulary"}),
            feature("merchant_ix", "merchant", {"type": "vocabulary", "maxSize": 1000}),
            feature("merchant_hash", "merchant", {"type": "hash", "numBuckets": 1024}),
            feature("device_ix", "device", {"type": "vocabulary"}),
            feature("channel_hash", "channel", {"type": "hash", "numBuckets": 16}),
            feature("hour", "event_time", {"type": "datetime", "part": "hour"}),
            feature("day_of_week", "event_time", {"type": "datetime", "part": "dayOfWeek"}),
            feature("month", "event_time", {"type": "datetime", "part": "month"}),
            feature("velocity_z", "velocity", {"type": "fillNull", "strategy": "constant", "value": 0},
                    {"type": "standardize"}),
        ],
        "validation": {
            "minRows": 1000,
            "uniqueKeys": True,
            "columns": [
                {"column": "amount", "min": 0, "maxNullFraction": 0.05},
                {"column": "age", "type": "integer", "min": 0, "max": 120},
                {"column": "country", "allowedValues": COUNTRIES},
            ],
        },
    }


NEEDED = ["customer_id", "event_time", "is_fraud", "amount", "balance", "age", "distance", "n_tx", "score",
          "velocity", "country", "merchant", "device", "channel"]
COMPARABLE = ["amount_log_z", "amount_clip", "balance_z", "balance_mm", "age_bucket", "distance_log", "n_tx_z",
              "score_clip", "score_z", "hour", "day_of_week", "month", "velocity_z"]


# -- the pandas baseline ------------------------------------------------------------------------


def pandas_pipeline(source: Path, destination: Path) -> int:
    import pandas as pd

    df = pd.read_parquet(source, columns=NEEDED)

    def standardize(x: pd.Series) -> pd.Series:
        mean, std = x.mean(), x.std(ddof=0)
        return (x - mean) / (std if std > 0 else 1.0)

    def quantile_buckets(x: pd.Series, buckets: int) -> np.ndarray:
        edges = np.unique(np.quantile(x.dropna().to_numpy(), np.arange(1, buckets) / buckets))
        return np.searchsorted(edges, x.to_numpy(), side="right")

    def vocabulary(x: pd.Series, limit: int | None = None) -> pd.Series:
        counts = x.value_counts()
        keep = counts.index[:limit] if limit else counts.index
        return x.map(pd.Series(np.arange(len(keep)), index=keep)).fillna(len(keep)).astype("int64")

    def hashed(x: pd.Series, buckets: int) -> np.ndarray:
        return (pd.util.hash_array(x.to_numpy()) % np.uint64(buckets)).astype(np.int64)

    out = pd.DataFrame({"customer_id": df["customer_id"], "event_time": df["event_time"], "is_fraud": df["is_fraud"]})
    amount = df["amount"]
    out["amount_log_z"] = standardize(np.log1p(amount.fillna(amount.mean())))
    out["amount_clip"] = amount.clip(0, 1000)
    out["balance_z"] = standardize(df["balance"])
    low, high = df["balance"].min(), df["balance"].max()
    out["balance_mm"] = (df["balance"] - low) / (high - low)
    out["age_bucket"] = np.searchsorted(AGE_EDGES, df["age"].to_numpy(), side="right")
    out["age_q"] = quantile_buckets(df["age"], 10)
    out["distance_log"] = np.log1p(df["distance"])
    out["distance_q"] = quantile_buckets(df["distance"], 20)
    out["n_tx_z"] = standardize(df["n_tx"].astype("float64"))
    out["score_clip"] = df["score"].clip(0.1, 0.9)
    out["score_z"] = standardize(df["score"])
    out["country_ix"] = vocabulary(df["country"])
    out["merchant_ix"] = vocabulary(df["merchant"], 1000)
    out["merchant_hash"] = hashed(df["merchant"], 1024)
    out["device_ix"] = vocabulary(df["device"])
    out["channel_hash"] = hashed(df["channel"], 16)
    times = df["event_time"].dt
    out["hour"] = times.hour.astype("int64")
    out["day_of_week"] = times.dayofweek.astype("int64")
    out["month"] = times.month.astype("int64")
    out["velocity_z"] = standardize(df["velocity"].fillna(0.0))
    out.to_parquet(destination, compression="zstd", index=False)
    return len(out)


# -- children -----------------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def peak_rss_bytes() -> int:
    """VmHWM: this process's own peak. Not ru_maxrss, which Linux carries over from the parent
    into a vforked child (the parent that generated the data would be counted)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


class _TimedLines(io.TextIOBase):
    """stdout of a materialization with the time each line arrived."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            self.lines.append((time.perf_counter(), line))
        return len(text)


def kubeloop_environment(s3: dict[str, str], name: str, uri: str) -> dict[str, str]:
    env = dict(s3)
    env.update(KUBELOOP_S3_BUCKET=BUCKET, KUBELOOP_RUN_ID=f"{name}-run", HOSTNAME=f"{name}-pod",
               KUBELOOP_FEATURESET=json.dumps({"namespace": "bench", "name": name, "uid": "bench", "generation": 1,
                                               "spec": spec(uri)}))
    return env


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_kubeloop(data: Path, s3: dict[str, str], name: str, batch_rows: int) -> None:
    from kubeloop.featureset import materialize

    pa.array([0])
    gc.collect()
    loaded = rss_bytes()
    lines = _TimedLines()
    options = materialize.Options(batch_rows=batch_rows, work_dir=str(data.parent))
    cpu = cpu_seconds()
    start = time.perf_counter()
    code = materialize.run(kubeloop_environment(s3, name, str(data)), options=options, out=lines, err=sys.stderr)
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu
    peak = peak_rss_bytes()
    phases: dict[str, float] = {}
    for _, line in lines.lines:
        if match := re.match(r"(pass [^:]*): done, .* in ([0-9.]+) s", line):
            phases[match.group(1)] = float(match.group(2))
    publish = next((t for t, line in lines.lines if line.startswith("publish:")), None)
    if publish is not None:
        phases["publish + run result"] = start + seconds - publish
    compute = sum(v for k, v in phases.items() if k.startswith("pass"))
    print(json.dumps({"seconds": seconds, "cpu": cpu, "compute": compute, "peak_rss": peak, "loaded_rss": loaded,
                      "code": code, "phases": phases,
                      "summary": lines.lines[-1][1] if lines.lines else ""}))


def child_pandas(data: Path) -> None:
    import pandas  # noqa: F401

    pa.array([0])
    gc.collect()
    loaded = rss_bytes()
    cpu = cpu_seconds()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=data.parent) as out:
        rows = pandas_pipeline(data, Path(out) / "features.parquet")
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu
    peak = peak_rss_bytes()
    print(json.dumps({"seconds": seconds, "cpu": cpu, "compute": seconds, "peak_rss": peak, "loaded_rss": loaded,
                      "rows": rows}))


def child_verify(data: Path, s3: dict[str, str], name: str) -> None:
    """kubeloop's published features against pandas' for the features both define alike."""
    import pandas as pd

    from kubeloop.store import ObjectStore

    store = ObjectStore.from_env({**s3, "KUBELOOP_S3_BUCKET": BUCKET})
    version = store.latest_version(f"featuresets/bench/{name}")
    assert version is not None
    with tempfile.TemporaryDirectory(dir=data.parent) as out:
        ours = pq.read_table(store.download(version, "features.parquet", Path(out) / "f.parquet")).to_pandas()
        pandas_pipeline(data, Path(out) / "p.parquet")
        theirs = pd.read_parquet(Path(out) / "p.parquet")
    report: dict[str, Any] = {"rows": [len(ours), len(theirs)]}
    for column in COMPARABLE:
        a, b = ours[column].to_numpy(dtype=np.float64), theirs[column].to_numpy(dtype=np.float64)
        report[column] = bool(np.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True))
    print(json.dumps(report))


def run_child(*arguments: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"child {arguments[:2]} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the report ---------------------------------------------------------------------------------


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-rows", type=int, default=65_536)
    parser.add_argument("--child", choices=["kubeloop", "pandas", "verify"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--s3", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "kubeloop":
        return child_kubeloop(args.data, json.loads(args.s3), args.name, args.batch_rows)
    if args.child == "pandas":
        return child_pandas(args.data)
    if args.child == "verify":
        return child_verify(args.data, json.loads(args.s3), args.name)

    from kubeloop.local.s3 import LocalS3

    with tempfile.TemporaryDirectory(prefix="bench-materialize-") as tmp, LocalS3(Path(tmp) / "s3") as s3:
        s3.ensure_bucket(BUCKET)
        s3_env = {k: str(v) for k, v in s3.secret_manifest("s3", "bench")["stringData"].items()}
        data = Path(tmp) / "transactions.parquet"
        started = time.perf_counter()
        table = make_data(args.rows, args.seed)
        input_bytes = table.nbytes
        pq.write_table(table, data, compression="zstd")
        print(f"input: {table.num_rows:,} rows x {table.num_columns} columns, Arrow size {mb(input_bytes)}, "
              f"Parquet {mb(data.stat().st_size)} (generated in {time.perf_counter() - started:.1f} s); "
              f"20 features; batch {args.batch_rows:,} rows", flush=True)
        del table
        gc.collect()

        first = run_child("--child", "kubeloop", "--data", str(data), "--s3", json.dumps(s3_env), "--name", "verify",
                          "--batch-rows", str(args.batch_rows))
        verdict = run_child("--child", "verify", "--data", str(data), "--s3", json.dumps(s3_env), "--name", "verify")
        same = all(verdict[c] for c in COMPARABLE)
        print(f"kubeloop run: {first['summary']}")
        print(f"features equal to pandas' (numeric steps, datetime parts): {same} "
              f"{ {c: verdict[c] for c in COMPARABLE if not verdict[c]} or ''}", flush=True)

        runs: dict[str, list[dict[str, Any]]] = {"kubeloop": [], "pandas": []}
        for rep in range(args.repeat):
            order = ["kubeloop", "pandas"] if rep % 2 == 0 else ["pandas", "kubeloop"]
            for engine in order:
                extra = ["--s3", json.dumps(s3_env), "--name", f"run{rep}", "--batch-rows", str(args.batch_rows)] \
                    if engine == "kubeloop" else []
                figures = run_child("--child", engine, "--data", str(data), *extra)
                if engine == "kubeloop" and figures["code"] != 0:
                    raise SystemExit(f"materialization failed: {figures['summary']}")
                runs[engine].append(figures)
                phases = "  ".join(f"{k} {v:.1f}s" for k, v in figures.get("phases", {}).items())
                print(f"run {rep + 1} {engine:8s} {figures['seconds']:7.2f} s (cpu {figures['cpu']:6.2f} s)  "
                      f"peak RSS {mb(figures['peak_rss'])}  work RSS {mb(figures['peak_rss'] - figures['loaded_rss'])}"
                      f"  {phases}", flush=True)

    keys = ("seconds", "cpu", "compute", "peak_rss", "loaded_rss")
    med = {e: {k: statistics.median(r[k] for r in runs[e]) for k in keys} for e in runs}
    print()
    print(f"{'engine':9s} {'time (median)':>14s} {'min..max':>16s} {'cpu':>9s} {'peak RSS':>10s} {'x input':>8s} "
          f"{'work RSS':>10s}")
    for e in runs:
        times = [r["seconds"] for r in runs[e]]
        peak = med[e]["peak_rss"]
        print(f"{e:9s} {med[e]['seconds']:12.2f} s {min(times):7.2f}..{max(times):6.2f} s {med[e]['cpu']:7.2f} s "
              f"{mb(peak):>10s} {peak / input_bytes:7.2f}x {mb(peak - med[e]['loaded_rss']):>10s}")
    phase_names = list(runs["kubeloop"][0]["phases"])
    print("kubeloop phases (median): " + ", ".join(
        f"{p} {statistics.median(r['phases'].get(p, 0.0) for r in runs['kubeloop']):.1f} s" for p in phase_names))
    speed = med["pandas"]["seconds"] / med["kubeloop"]["seconds"]
    compute = med["pandas"]["seconds"] / med["kubeloop"]["compute"]
    best = {e: {k: min(r[k] for r in runs[e]) for k in ("seconds", "compute")} for e in runs}
    print(f"best of {args.repeat}: kubeloop {best['kubeloop']['seconds']:.2f} s end to end "
          f"({best['kubeloop']['compute']:.2f} s in its passes), pandas {best['pandas']['seconds']:.2f} s: "
          f"{best['pandas']['seconds'] / best['kubeloop']['seconds']:.2f}x end to end, "
          f"{best['pandas']['seconds'] / best['kubeloop']['compute']:.2f}x passes only")
    print(f"kubeloop vs pandas (medians): {speed:.2f}x the speed ({'faster' if speed > 1 else 'slower'}) end to "
          f"end, {compute:.2f}x counting only kubeloop's passes (no upload, publication or run result); "
          f"peak RSS {med['kubeloop']['peak_rss'] / med['pandas']['peak_rss']:.2f}x pandas'; "
          f"peak RSS / input Arrow size: kubeloop {med['kubeloop']['peak_rss'] / input_bytes:.2f}x "
          f"(target < 2x), pandas {med['pandas']['peak_rss'] / input_bytes:.2f}x")


if __name__ == "__main__":
    main()
