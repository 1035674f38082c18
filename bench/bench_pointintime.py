"""Benchmark: kubeloop's point-in-time join vs pandas `merge_asof`, side by side.

The data (deterministic from --seed; defaults are issue 4's sizes):
  - features: 5M rows = 200k entities x 25 rows; `entity_id` int64 (random 10-digit ids),
    `feature_time` timestamp[us, UTC] uniform over 2024, 20 float64 columns f00..f19
    (standard normal); rows shuffled (neither time- nor entity-sorted); entity+timestamp
    unique, as the FeatureSet contract requires by default.
  - labels: 1M rows; `entity_id` drawn from 220k ids (1 in 11 unknown to the features),
    `event_time` uniform over 2024 plus January 2025, `label` bool.
  - ttl: 30d (about three quarters of the labels find a fresh enough feature row).
Both tables are written once as uncompressed Arrow IPC files; every measurement is a fresh
subprocess that reads them fully into memory (not memory-mapped) and then times ONE call:
  - kubeloop: `point_in_time_join(labels, features, ...)`: Arrow tables in, Arrow table out.
  - pandas:   Arrow -> pandas (`to_pandas`) for both tables, the sorting `merge_asof` needs
              (both sides stably by timestamp; a row number kept on the labels), `merge_asof(
              by=entity, direction="backward", tolerance=ttl)`, restoring the label order, and
              pandas -> Arrow (`Table.from_pandas`): the same input and output as kubeloop's.
  - acero (only with --acero; about 25 s and 6 GB): pyarrow's `Table.join_asof`, with the
    sorts it needs and the label order restored.
Peak RSS is the child's `ru_maxrss` (so it includes the interpreter and the loaded input);
"join RSS" is that peak minus the RSS right after loading. Engines alternate which goes first
in each repetition; medians are reported. Before timing, one subprocess runs every engine on
the same data and checks that the results are identical (row order, nulls, values).
Targets (issue 4): kubeloop >= 3x faster than pandas, peak RSS < 2x the input's Arrow size.

    python bench/bench_pointintime.py [--repeat 3] [--labels 1000000] [--entities 200000]
                                      [--rows-per-entity 25] [--columns 20] [--dtype float64]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ENTITY, LABEL_TIME, FEATURE_TIME = "entity_id", "event_time", "feature_time"
START_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
DAY_US = 86_400 * 1_000_000


def make_data(args: argparse.Namespace) -> tuple[pa.Table, pa.Table]:
    """(labels, features) as described in the module docstring."""
    rng = np.random.default_rng(args.seed)
    known, unknown = args.entities, args.entities // 10
    ids = np.unique(rng.integers(1_000_000_000, 10_000_000_000, 2 * (known + unknown)))
    rng.shuffle(ids)
    ids = ids[: known + unknown]
    rows = known * args.rows_per_entity
    entity = np.repeat(ids[:known], args.rows_per_entity)
    times = START_US + rng.integers(0, 366 * DAY_US, rows)
    shuffle = rng.permutation(rows)
    entity, times = entity[shuffle], times[shuffle]
    # The FeatureSet contract: entity + timestamp unique (a clash is ~1e-6 likely; nudge it).
    while True:
        order = np.lexsort((times, entity))
        clash = (entity[order][1:] == entity[order][:-1]) & (times[order][1:] == times[order][:-1])
        if not clash.any():
            break
        times[order[1:][clash]] += 1
    columns: dict[str, pa.Array] = {
        ENTITY: pa.array(entity),
        FEATURE_TIME: pa.array(times, pa.timestamp("us", tz="UTC")),
    }
    for i in range(args.columns):
        columns[f"f{i:02d}"] = pa.array(rng.standard_normal(rows).astype(args.dtype))
    features = pa.table(columns)
    labels = pa.table({
        ENTITY: pa.array(ids[rng.integers(0, ids.size, args.labels)]),
        LABEL_TIME: pa.array(START_US + rng.integers(0, 397 * DAY_US, args.labels), pa.timestamp("us", tz="UTC")),
        "label": pa.array(rng.random(args.labels) < 0.1),
    })
    return labels, features


# -- the engines: Arrow tables in, Arrow table out (labels' columns, then the features') --------


def join_kubeloop(labels: pa.Table, features: pa.Table, ttl: str) -> pa.Table:
    from kubeloop.featureset.pointintime import point_in_time_join

    return point_in_time_join(
        labels, features, entities=[ENTITY], label_timestamp=LABEL_TIME, feature_timestamp=FEATURE_TIME, ttl=ttl
    )


def join_pandas(labels: pa.Table, features: pa.Table, ttl: str) -> pa.Table:
    import pandas as pd

    from kubeloop.core.apimodel import parse_duration

    left, right = labels.to_pandas(), features.to_pandas()
    left["__row"] = np.arange(len(left))
    # merge_asof needs both sides sorted by the "on" key; stable, so ties keep table order.
    left = left.sort_values(LABEL_TIME, kind="stable")
    right = right.sort_values(FEATURE_TIME, kind="stable")
    merged = pd.merge_asof(
        left, right, left_on=LABEL_TIME, right_on=FEATURE_TIME, by=ENTITY,
        tolerance=pd.Timedelta(parse_duration(ttl)), direction="backward", allow_exact_matches=True,
    )
    merged = merged.sort_values("__row").drop(columns=["__row", FEATURE_TIME])
    return pa.Table.from_pandas(merged, preserve_index=False)


def join_acero(labels: pa.Table, features: pa.Table, ttl: str) -> pa.Table:
    from kubeloop.core.apimodel import parse_duration

    ttl_us = parse_duration(ttl) // timedelta(microseconds=1)
    left = labels.append_column("__row", pa.array(np.arange(labels.num_rows)))
    left = left.append_column("__t", left[LABEL_TIME].cast(pa.int64())).sort_by("__t")
    right = features.append_column("__t", features[FEATURE_TIME].cast(pa.int64())).drop_columns([FEATURE_TIME])
    right = right.sort_by("__t")
    joined = left.join_asof(right, on="__t", by=ENTITY, tolerance=-ttl_us)
    joined = joined.take(pc.sort_indices(joined["__row"])).drop_columns(["__row", "__t"])
    return joined


ENGINES = {"kubeloop": join_kubeloop, "pandas": join_pandas, "acero": join_acero}


# -- children -----------------------------------------------------------------------------------


def load(directory: Path) -> tuple[pa.Table, pa.Table]:
    """Read both tables fully into memory (an OSFile, not a memory map, so the input counts
    in the RSS like data read from an object store would)."""
    tables = []
    for name in ("labels", "features"):
        with pa.OSFile(str(directory / f"{name}.arrow")) as source:
            tables.append(pa.ipc.open_file(source).read_all())
    return tables[0], tables[1]


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def child_measure(engine: str, directory: Path, ttl: str) -> None:
    import kubeloop.featureset.pointintime  # noqa: F401

    labels, features = load(directory)
    # Both children start the clock with the same modules loaded: pyarrow imports pandas
    # (when installed) on its first array construction, a one-off of any process using
    # pyarrow, not a cost of the join.
    pa.array([0])
    if engine == "pandas":
        import pandas  # noqa: F401
    gc.collect()
    loaded = rss_bytes()
    start = time.perf_counter()
    result = ENGINES[engine](labels, features, ttl)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak_rss": peak, "loaded_rss": loaded, "rows": result.num_rows}))


def child_verify(engines: list[str], directory: Path, ttl: str) -> None:
    labels, features = load(directory)
    expected = ENGINES["kubeloop"](labels, features, ttl)
    report: dict[str, Any] = {
        "rows": expected.num_rows,
        "matched": expected.num_rows - expected["f00"].null_count if "f00" in expected.column_names else None,
    }
    for engine in engines:
        if engine == "kubeloop":
            continue
        other = ENGINES[engine](labels, features, ttl)
        other = other.select(expected.column_names).replace_schema_metadata(None)
        report[engine] = other.cast(expected.schema).equals(expected)
    print(json.dumps(report))


def run_child(*arguments: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, *arguments], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the report -----------------------------------------------------------------------------


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--rows-per-entity", type=int, default=25)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--ttl", default="30d")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--acero", action="store_true", help="also run pyarrow's join_asof (slow, memory-hungry)")
    parser.add_argument("--child", choices=sorted(ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--verify", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    engines = ["kubeloop", "pandas", *(["acero"] if args.acero else [])]
    if args.child:
        return child_measure(args.child, args.data, args.ttl)
    if args.verify:
        return child_verify(engines, args.data, args.ttl)

    with tempfile.TemporaryDirectory(prefix="bench-pit-") as tmp:
        directory = Path(tmp)
        labels, features = make_data(args)
        input_bytes = labels.nbytes + features.nbytes
        for name, table in (("labels", labels), ("features", features)):
            with pa.OSFile(str(directory / f"{name}.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
                w.write_table(table)
        print(f"labels {labels.num_rows:,} rows ({mb(labels.nbytes)}), features {features.num_rows:,} rows "
              f"x {args.columns} {args.dtype} ({mb(features.nbytes)}), {args.entities:,} entities, "
              f"ttl {args.ttl}; input Arrow size {mb(input_bytes)}")
        del labels, features

        verdict = run_child("--verify", "--data", str(directory), "--ttl", args.ttl, *(["--acero"] if args.acero else []))
        same = all(verdict[e] for e in engines if e != "kubeloop")
        print(f"results identical: {same} {({e: verdict[e] for e in engines if e != 'kubeloop'})}; "
              f"{verdict['matched']:,} of {verdict['rows']:,} label rows matched")
        if not same:
            raise SystemExit("the engines disagree on the benchmark data")

        runs: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
        for rep in range(args.repeat):
            order = engines if rep % 2 == 0 else engines[::-1]
            for engine in order:
                figures = run_child("--child", engine, "--data", str(directory), "--ttl", args.ttl)
                runs[engine].append(figures)
                print(f"run {rep + 1} {engine:9s} {figures['seconds']:7.3f} s  peak RSS {mb(figures['peak_rss'])}  "
                      f"join RSS {mb(figures['peak_rss'] - figures['loaded_rss'])}", flush=True)

    med = {
        e: {k: statistics.median(r[k] for r in runs[e]) for k in ("seconds", "peak_rss", "loaded_rss")}
        for e in engines
    }
    print()
    print(f"{'engine':10s} {'time (median)':>14s} {'min..max':>16s} {'peak RSS':>10s} {'x input':>8s} "
          f"{'join RSS':>10s}")
    for e in engines:
        times = [r["seconds"] for r in runs[e]]
        peak = med[e]["peak_rss"]
        print(f"{e:10s} {med[e]['seconds']:12.3f} s {min(times):7.3f}..{max(times):6.3f} s "
              f"{mb(peak):>10s} {peak / input_bytes:7.2f}x {mb(peak - med[e]['loaded_rss']):>10s}")
    k = med["kubeloop"]
    print()
    for e in engines[1:]:
        print(f"kubeloop vs {e}: {med[e]['seconds'] / k['seconds']:.2f}x faster, "
              f"{med[e]['peak_rss'] / k['peak_rss']:.2f}x less peak RSS")
    print(f"targets: >= 3x faster than pandas: {med['pandas']['seconds'] / k['seconds'] >= 3}; "
          f"peak RSS < 2x input ({mb(2 * input_bytes)}): {k['peak_rss'] < 2 * input_bytes}")


if __name__ == "__main__":
    main()
