"""Drift detection benchmark: kubeloop's engine (driftmonitor/stats.py) against Evidently's
DataDriftPreset and alibi-detect's TabularDrift on the same data, in one run.

    .venv/bin/python bench/bench_drift.py                       # 1M x 1M rows, 40 numerical + 10 categorical
    .venv/bin/python bench/bench_drift.py --rows 100000 --quality-repeats 5

Each engine runs in a process of its own (so peak RSS is its own), on the same files written once
(numerical columns as .npy, categorical ones as Parquet). The baselines need their own virtual
environments, which the bench creates on first use: bench/.venv-evidently (Evidently 0.7 needs
pandas < 3) and bench/.venv-alibi (alibi-detect needs numpy < 2). Neither is a kubeloop dependency.

Two parts:

1. Speed and agreement at --rows: wall time of the drift computation (data already loaded), peak
   RSS against the input arrays' size, and per-feature decisions compared where the methods agree:
   kubeloop auto vs Evidently's numerical features (both normed Wasserstein above 1,000 rows),
   kubeloop jensenshannon vs Evidently's categorical ones (Jensen-Shannon), kubeloop ks/chi2
   without correction vs alibi-detect's per-feature decisions (KS and chi-square; alibi-detect
   applies its Bonferroni correction to the batch-level verdict only).
2. Detection quality on synthetic data with known shifts, at 1k, 10k and 100k rows (repeated
   with --quality-repeats seeds) plus the speed run's data: shifted features missed and unshifted
   features flagged, by kubeloop auto and by Evidently's defaults.

The data (see `make_data`): 40 numerical features of five families, 8 of them shifted (mean
shifts of 0.15 to 0.3 sd, variance and scale changes, a 20% contamination, a rate change); 10
categorical features of 4 to 8 categories, 3 of them shifted (a new category with 10% of the rows,
a large frequency shift, and a small one: one category from 30% to 36%).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
EVIDENTLY_VENV = BENCH / ".venv-evidently"
ALIBI_VENV = BENCH / ".venv-alibi"
EVIDENTLY_REQUIREMENTS = BENCH / "requirements-evidently.txt"
ALIBI_REQUIREMENTS = BENCH / "requirements-alibi.txt"

NUMERICAL = 40
CATEGORICAL = 10
SHIFTED_NUMERICAL = {0: "mean +0.25 sd", 5: "mean +0.15 sd", 10: "spread x1.5", 15: "spread x0.6", 20: "values x1.3",
                     25: "20% of rows +2 sd", 30: "mean +0.2 sd", 35: "mean -0.2 sd and spread x1.2"}
SHIFTED_CATEGORICAL = {0: "new category (10%)", 3: "large frequency shift", 6: "small frequency shift (30% -> 36%)"}


def numerical_name(i: int) -> str:
    return f"n{i:02d}"


def categorical_name(i: int) -> str:
    return f"c{i:02d}"


def shifted_features() -> set[str]:
    return {numerical_name(i) for i in SHIFTED_NUMERICAL} | {categorical_name(i) for i in SHIFTED_CATEGORICAL}


# -- data ---------------------------------------------------------------------------------------------


def _numerical(rng: np.random.Generator, i: int, n: int, shifted: bool) -> np.ndarray:
    """Feature i: one of five families; shifted ones are changed in units of the family's sd."""
    family = i % 5
    if family == 0:
        values = rng.normal(0.0, 1.0, n)
    elif family == 1:
        values = rng.normal(10.0, 3.0, n)
    elif family == 2:
        values = rng.lognormal(0.0, 0.5, n)
    elif family == 3:
        values = rng.uniform(0.0, 10.0, n)
    else:
        values = rng.exponential(1.0, n)
    if not shifted or i not in SHIFTED_NUMERICAL:
        return values
    mean, sd = float(values.mean()), float(values.std())
    if i in (0, 5, 30):
        return values + {0: 0.25, 5: 0.15, 30: 0.2}[i] * sd
    if i in (10, 15):
        return mean + (values - mean) * (1.5 if i == 10 else 0.6)
    if i == 20:
        return values * 1.3
    if i == 25:
        values[rng.random(n) < 0.2] += 2.0 * sd
        return values
    return mean - 0.2 * sd + (values - mean) * 1.2  # 35


def _categorical(rng: np.random.Generator, i: int, n: int, shifted: bool) -> np.ndarray:
    k = 4 + i % 5
    labels = np.array([f"{chr(97 + i)}{j}" for j in range(k + 1)])
    p = np.linspace(2.0, 1.0, k)
    p /= p.sum()
    if shifted and i == 0:
        p = np.append(p * 0.9, 0.1)
        return rng.choice(labels, n, p=p)
    if shifted and i == 3:
        p = p[::-1].copy()
        p = p ** 2 / np.sum(p ** 2)
    if shifted and i == 6:  # the most frequent category gains 6 points
        p = np.array([0.30] + [0.70 / (k - 1)] * (k - 1))
        target = p.copy()
        target[0] = 0.36
        target[1:] *= 0.64 / 0.70
        p = target
    elif i == 6:
        p = np.array([0.30] + [0.70 / (k - 1)] * (k - 1))
    return rng.choice(labels[:k], n, p=p)


def make_data(folder: Path, rows: int, seed: int) -> dict[str, Any]:
    """Writes reference/current numerical (.npy, column-major) and categorical (Parquet) files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for side, shifted in (("reference", False), ("current", True)):
        numbers = np.empty((rows, NUMERICAL), dtype=np.float64, order="F")
        for i in range(NUMERICAL):
            numbers[:, i] = _numerical(rng, i, rows, shifted)
        np.save(folder / f"{side}-numerical.npy", numbers)
        del numbers
        table = pa.table({categorical_name(i): pa.array(_categorical(rng, i, rows, shifted))
                          for i in range(CATEGORICAL)})
        pq.write_table(table, folder / f"{side}-categorical.parquet")
        # alibi-detect's venv has numpy < 2, which today's pyarrow refuses: it reads these instead.
        np.save(folder / f"{side}-categorical.npy", np.column_stack([c.to_numpy(zero_copy_only=False).astype(str)
                                                                      for c in table.columns]))
    return {"rows": rows, "seed": seed}


def _load_arrays(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Any, Any, int]:
    import pyarrow.parquet as pq

    reference = np.load(folder / "reference-numerical.npy")
    current = np.load(folder / "current-numerical.npy")
    ref_cat = pq.read_table(folder / "reference-categorical.parquet")
    cur_cat = pq.read_table(folder / "current-categorical.parquet")
    size = reference.nbytes + current.nbytes + ref_cat.nbytes + cur_cat.nbytes
    return ({numerical_name(i): reference[:, i] for i in range(NUMERICAL)},
            {numerical_name(i): current[:, i] for i in range(NUMERICAL)}, ref_cat, cur_cat, size)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# -- the engines (each runs in a child process) ---------------------------------------------------------


def child_kubeloop(folder: Path, method: str, correction: str) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "operator"))
    from kubeloop.driftmonitor.stats import DriftOptions, detect_drift_on_rows

    reference, current, ref_cat, cur_cat, size = _load_arrays(folder)
    for name in ref_cat.column_names:
        reference[name] = ref_cat.column(name)
        current[name] = cur_cat.column(name)
    loaded = _peak_rss_mb()
    started = time.perf_counter()
    result = detect_drift_on_rows(reference, current, DriftOptions(method=method, correction=correction))  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "peak_rss_mb": _peak_rss_mb(), "loaded_rss_mb": loaded, "input_mb": size / 2**20,
            "features": {f.name: {"drifted": f.drifted, "method": f.method, "statistic": f.statistic,
                                  "p_value": f.p_value} for f in result.features}}


def child_evidently(folder: Path) -> dict[str, Any]:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference, current, ref_cat, cur_cat, size = _load_arrays(folder)
    ref_frame = pd.DataFrame(reference).join(ref_cat.to_pandas())
    cur_frame = pd.DataFrame(current).join(cur_cat.to_pandas())
    del reference, current, ref_cat, cur_cat
    definition = DataDefinition(numerical_columns=[numerical_name(i) for i in range(NUMERICAL)],
                                categorical_columns=[categorical_name(i) for i in range(CATEGORICAL)])
    loaded = _peak_rss_mb()
    started = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur_frame, data_definition=definition),
                                               Dataset.from_pandas(ref_frame, data_definition=definition))
    document = snapshot.dict()
    elapsed = time.perf_counter() - started
    features = {}
    for metric in document["metrics"]:
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith("ValueDrift"):
            continue
        method, threshold, value = str(config["method"]), float(config["threshold"]), float(metric["value"])
        drifted = value < threshold if "p_value" in method else value >= threshold
        features[str(config["column"])] = {"drifted": bool(drifted), "method": method, "statistic": value}
    return {"seconds": elapsed, "peak_rss_mb": _peak_rss_mb(), "loaded_rss_mb": loaded, "input_mb": size / 2**20,
            "features": features}


def child_alibi(folder: Path) -> dict[str, Any]:
    from alibi_detect.cd import TabularDrift

    reference = np.load(folder / "reference-numerical.npy")
    current = np.load(folder / "current-numerical.npy")
    ref_cat = np.load(folder / "reference-categorical.npy")
    cur_cat = np.load(folder / "current-categorical.npy")
    size = reference.nbytes + current.nbytes + ref_cat.nbytes + cur_cat.nbytes
    names = [numerical_name(i) for i in range(NUMERICAL)] + [categorical_name(i) for i in range(CATEGORICAL)]
    codes_ref, codes_cur, categories = [], [], {}
    for j in range(CATEGORICAL):
        values, codes = np.unique(np.concatenate([ref_cat[:, j], cur_cat[:, j]]), return_inverse=True)
        codes_ref.append(codes[: len(ref_cat)].astype(np.float64))
        codes_cur.append(codes[len(ref_cat):].astype(np.float64))
        categories[NUMERICAL + j] = len(values)
    x_ref = np.column_stack([reference, *codes_ref])
    x_cur = np.column_stack([current, *codes_cur])
    del reference, current, codes_ref, codes_cur, ref_cat, cur_cat
    loaded = _peak_rss_mb()
    started = time.perf_counter()
    detector = TabularDrift(x_ref, p_val=0.05, categories_per_feature=categories)
    prediction = detector.predict(x_cur, drift_type="feature", return_p_val=True, return_distance=True)
    elapsed = time.perf_counter() - started
    data = prediction["data"]
    features = {name: {"drifted": bool(data["is_drift"][k]), "method": "ks" if k < NUMERICAL else "chi2",
                       "statistic": float(data["distance"][k]), "p_value": float(data["p_val"][k])}
                for k, name in enumerate(names)}
    return {"seconds": elapsed, "peak_rss_mb": _peak_rss_mb(), "loaded_rss_mb": loaded, "input_mb": size / 2**20,
            "features": features}


# -- the driver -----------------------------------------------------------------------------------------


def ensure_venv(venv: Path, requirements: Path) -> tuple[Path | None, str]:
    """The venv's python, created and filled on first use; (None, pip's error) when that fails."""
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.exists():
        return python, ""
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return None, (done.stderr or done.stdout)[-3000:]
    marker.write_text(requirements.read_text())
    return python, ""


def run_child(python: Path | str, engine: str, folder: Path, *extra: str) -> dict[str, Any]:
    done = subprocess.run([str(python), str(Path(__file__).resolve()), "child", engine, str(folder), *extra],
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode != 0:
        raise RuntimeError(f"{engine} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def agreement(ours: dict[str, Any], theirs: dict[str, Any], names: list[str]) -> tuple[int, list[str]]:
    differing = [n for n in names if ours["features"][n]["drifted"] != theirs["features"][n]["drifted"]]
    return len(names) - len(differing), differing


def quality(result: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(missed shifted features, false alarms on unshifted ones)."""
    shifted = shifted_features()
    missed = sorted(n for n in shifted if not result["features"][n]["drifted"])
    alarms = sorted(n for n, f in result["features"].items() if f["drifted"] and n not in shifted)
    return missed, alarms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the reference and of the current data")
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "drift")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of kubeloop's engine (median reported)")
    parser.add_argument("--quality-sizes", default="1000,10000,100000")
    parser.add_argument("--quality-repeats", type=int, default=3, help="seeds per quality size")
    parser.add_argument("--skip-alibi", action="store_true")
    parser.add_argument("--skip-evidently", action="store_true")
    args = parser.parse_args()

    evidently_python: Path | None = None
    alibi_python: Path | None = None
    if not args.skip_evidently:
        evidently_python, error = ensure_venv(EVIDENTLY_VENV, EVIDENTLY_REQUIREMENTS)
        if evidently_python is None:
            print(f"Evidently could not be installed:\n{error}")
    if not args.skip_alibi:
        alibi_python, error = ensure_venv(ALIBI_VENV, ALIBI_REQUIREMENTS)
        if alibi_python is None:
            print(f"alibi-detect could not be installed:\n{error}")

    folder = args.out / f"rows-{args.rows}"
    if not (folder / "current-categorical.parquet").exists():
        print(f"writing {args.rows} x 2 rows to {folder} ...", flush=True)
        make_data(folder, args.rows, seed=7)

    print(f"\n== speed and agreement: {args.rows:,} reference x {args.rows:,} current rows, "
          f"{NUMERICAL} numerical + {CATEGORICAL} categorical features ==", flush=True)
    runs = [run_child(sys.executable, "kubeloop", folder, "auto", "fdr") for _ in range(args.repeats)]
    ours = runs[len(runs) // 2]
    ours_seconds = statistics.median(r["seconds"] for r in runs)
    ours_js = run_child(sys.executable, "kubeloop", folder, "jensenshannon", "fdr")
    numerical = [numerical_name(i) for i in range(NUMERICAL)]
    categorical = [categorical_name(i) for i in range(CATEGORICAL)]
    rows_out = [("kubeloop auto", ours_seconds, ours)]
    summary: dict[str, Any] = {"rows": args.rows, "kubeloop_seconds": ours_seconds,
                               "kubeloop_seconds_all": [r["seconds"] for r in runs],
                               "kubeloop_peak_rss_mb": ours["peak_rss_mb"], "input_mb": ours["input_mb"]}
    evidently = None
    if evidently_python is not None:
        evidently = run_child(evidently_python, "evidently", folder)
        rows_out.append(("Evidently DataDriftPreset", evidently["seconds"], evidently))
        same_num, diff_num = agreement(ours, evidently, numerical)
        same_cat, diff_cat = agreement(ours_js, evidently, categorical)
        summary.update(evidently_seconds=evidently["seconds"], evidently_peak_rss_mb=evidently["peak_rss_mb"],
                       speedup_vs_evidently=evidently["seconds"] / ours_seconds,
                       agree_numerical_wasserstein=f"{same_num}/{len(numerical)}",
                       agree_categorical_jensenshannon=f"{same_cat}/{len(categorical)}",
                       differ=diff_num + diff_cat)
    alibi = None
    if alibi_python is not None:
        try:
            alibi = run_child(alibi_python, "alibi", folder)
        except RuntimeError as error:
            print(f"alibi-detect failed: {error}")
        if alibi is not None:
            # alibi-detect applies its correction only to the batch-level verdict: per feature it
            # compares the raw p-values with p_val, so the like-for-like engine run is uncorrected.
            ours_ks = run_child(sys.executable, "kubeloop", folder, "ks", "none")
            ours_chi2 = run_child(sys.executable, "kubeloop", folder, "chi2", "none")
            rows_out.append(("alibi-detect TabularDrift", alibi["seconds"], alibi))
            rows_out.append(("kubeloop ks (uncorrected)", ours_ks["seconds"], ours_ks))
            same_ks, diff_ks = agreement(ours_ks, alibi, numerical)
            same_chi2, diff_chi2 = agreement(ours_chi2, alibi, categorical)
            summary.update(alibi_seconds=alibi["seconds"], alibi_peak_rss_mb=alibi["peak_rss_mb"],
                           kubeloop_ks_seconds=ours_ks["seconds"],
                           speedup_vs_alibi=alibi["seconds"] / ours_ks["seconds"],
                           agree_numerical_ks=f"{same_ks}/{len(numerical)}",
                           agree_categorical_chi2=f"{same_chi2}/{len(categorical)}",
                           differ_alibi=diff_ks + diff_chi2)

    print(f"{'engine':32} {'seconds':>9} {'peak RSS MiB':>13} {'RSS / input':>12} {'missed':>7} {'false alarms':>13}")
    for label, seconds, result in rows_out:
        missed, alarms = quality(result)
        print(f"{label:32} {seconds:9.2f} {result['peak_rss_mb']:13.0f} "
              f"{result['peak_rss_mb'] / result['input_mb']:12.2f} {len(missed):7d} {len(alarms):13d}")
    print(f"input arrays: {ours['input_mb']:.0f} MiB")
    for key, value in summary.items():
        print(f"  {key}: {value}")
    print(f"  kubeloop auto missed {quality(ours)[0]}, false alarms {quality(ours)[1]}")
    if evidently is not None:
        print(f"  Evidently missed {quality(evidently)[0]}, false alarms {quality(evidently)[1]}")

    print("\n== detection quality (known shifts) ==", flush=True)
    print(f"{'rows':>9} {'seeds':>5}  {'kubeloop auto: missed / false alarms':38} {'Evidently defaults: missed / false alarms'}")
    table = []
    for size in [int(s) for s in args.quality_sizes.split(",") if s]:
        totals = {"ours": [0, 0], "evidently": [0, 0]}
        examples: dict[str, set[str]] = {"ours": set(), "evidently": set()}
        for seed in range(args.quality_repeats):
            data = args.out / f"quality-{size}-{seed}"
            if not (data / "current-categorical.parquet").exists():
                make_data(data, size, seed=1000 + seed)
            results = {"ours": run_child(sys.executable, "kubeloop", data, "auto", "fdr")}
            if evidently_python is not None:
                results["evidently"] = run_child(evidently_python, "evidently", data)
            for key, result in results.items():
                missed, alarms = quality(result)
                totals[key][0] += len(missed)
                totals[key][1] += len(alarms)
                examples[key] |= {f"-{n}" for n in missed} | {f"+{n}" for n in alarms}
        table.append((size, totals, examples))
        print(f"{size:9,} {args.quality_repeats:5}  {totals['ours'][0]:3d} / {totals['ours'][1]:<3d} "
              f"{' '.join(sorted(examples['ours']))[:28]:28}   {totals['evidently'][0]:3d} / {totals['evidently'][1]:<3d} "
              f"{' '.join(sorted(examples['evidently']))[:60]}", flush=True)
    (args.out / "summary.json").write_text(json.dumps({**summary, "quality": [
        {"rows": s, "kubeloop": t["ours"], "evidently": t["evidently"],
         "kubeloop_features": sorted(e["ours"]), "evidently_features": sorted(e["evidently"])}
        for s, t, e in table]}, indent=2))
    print(f"\n(-name: shifted feature missed, +name: false alarm; {len(shifted_features())} of "
          f"{NUMERICAL + CATEGORICAL} features shifted per data set; summary in {args.out / 'summary.json'})")


def child_main(argv: list[str]) -> None:
    engine, folder = argv[0], Path(argv[1])
    if engine == "kubeloop":
        result = child_kubeloop(folder, argv[2], argv[3])
    elif engine == "evidently":
        result = child_evidently(folder)
    elif engine == "alibi":
        result = child_alibi(folder)
    else:
        raise SystemExit(f"unknown engine {engine!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_main(sys.argv[2:])
    else:
        main()
