"""`kubeloop runs list|show|compare`: read-only views of the run records trainers write.

Everything is read from the object store layout of `train.py` (under `trainingruns/<ns>/<name>/`:
`record.json` once a run succeeded, `failure.json` after a permanent failure, `progress.json`
while it runs), so these functions need no API server and work on any copy of the bucket.

    list_runs(store, namespace)                 -> [RunSummary], by name
    format_run_list(runs)                       -> the table `runs list` prints
    show_run(store, namespace, name)            -> one run, as text
    compare_runs(store, namespace, names, png)  -> params and metrics side by side, as text,
                                                   and the learning curves written to `png`

The PNG is drawn here with numpy and zlib (matplotlib is not a dependency): one panel per metric
(validation loss, then the runs' key metric), one coloured line per run, axes with tick marks and
the value range written with a small built-in digit font; the text output names the colours.
Standard library, numpy and kubeloop.store only: the CLI imports it without torch.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kubeloop.store import NotFound, ObjectStore

RUNS_ROOT = "trainingruns"
RECORD_FILE = "record.json"
FAILURE_FILE = "failure.json"
PROGRESS_FILE = "progress.json"

COLORS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("blue", (31, 119, 180)), ("orange", (255, 127, 14)), ("green", (44, 160, 44)), ("red", (214, 39, 40)),
    ("purple", (148, 103, 189)), ("brown", (140, 86, 75)), ("pink", (227, 119, 194)), ("grey", (127, 127, 127)),
)


@dataclass(frozen=True)
class RunSummary:
    """One line of `runs list`."""

    name: str
    state: str  # Succeeded, Failed, Running (progress only) or Unknown
    task: str | None = None
    family: str | None = None
    metric: str | None = None
    value: float | None = None
    epoch: int | None = None
    epochs: int | None = None
    attempt: int | None = None
    artifact: str | None = None  # short digest
    updated: str | None = None
    reason: str | None = None


def _prefix(namespace: str, name: str) -> str:
    return f"{RUNS_ROOT}/{namespace}/{name}"


def _get(store: ObjectStore, key: str) -> Any | None:
    try:
        return store.get_json(key)
    except NotFound:
        return None


def read_record(store: ObjectStore, namespace: str, name: str) -> dict[str, Any] | None:
    """The run record of a finished run, or None."""
    return _get(store, f"{_prefix(namespace, name)}/{RECORD_FILE}")


def summarize(name: str, record: Mapping[str, Any] | None, failure: Mapping[str, Any] | None,
              progress: Mapping[str, Any] | None) -> RunSummary:
    """A list line from whatever the run has written (pure)."""
    if record is not None:
        params = record.get("params", {})
        key = record.get("keyMetric", {})
        epochs = record.get("epochs", [])
        return RunSummary(
            name=name, state=str(record.get("outcome", "Succeeded")), task=params.get("task"),
            family=params.get("family"), metric=key.get("name"), value=key.get("value"),
            epoch=len(epochs), epochs=record.get("hyperparameters", {}).get("epochs"),
            attempt=record.get("run", {}).get("attempt"), artifact=record.get("artifact", {}).get("shortDigest"),
            updated=record.get("timings", {}).get("finishedAt"))
    if failure is not None:
        return RunSummary(name=name, state="Failed", attempt=failure.get("attempt"), updated=failure.get("time"),
                          reason=failure.get("reason"))
    if progress is not None:
        return RunSummary(name=name, state="Running", epoch=progress.get("epoch"), epochs=progress.get("epochs"),
                          attempt=progress.get("attempt"), updated=progress.get("updated"),
                          metric="loss", value=(progress.get("metrics") or {}).get("loss"))
    return RunSummary(name=name, state="Unknown")


def list_runs(store: ObjectStore, namespace: str) -> list[RunSummary]:
    """Every run with anything in the store under `trainingruns/<namespace>/`, by name."""
    folder = f"{RUNS_ROOT}/{namespace}/"
    names = sorted({info.key[len(folder):].split("/", 1)[0] for info in store.list_objects(folder, recursive=False)
                    if info.key.startswith(folder) and info.key.endswith("/")})
    runs = []
    for name in names:
        prefix = _prefix(namespace, name)
        record = _get(store, f"{prefix}/{RECORD_FILE}")
        failure = _get(store, f"{prefix}/{FAILURE_FILE}") if record is None else None
        progress = _get(store, f"{prefix}/{PROGRESS_FILE}") if record is None and failure is None else None
        runs.append(summarize(name, record, failure, progress))
    return runs


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with aligned columns, as kubectl prints them."""
    cells = [[str(h) for h in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def format_run_list(runs: Sequence[RunSummary]) -> str:
    rows = [[r.name, r.state, r.family, r.task, r.metric, r.value,
             f"{r.epoch}/{r.epochs}" if r.epoch is not None else None, r.attempt, r.artifact or r.reason, r.updated]
            for r in runs]
    return table(["NAME", "STATE", "FAMILY", "TASK", "METRIC", "VALUE", "EPOCH", "ATTEMPT", "ARTIFACT", "UPDATED"],
                 rows)


def show_run(store: ObjectStore, namespace: str, name: str) -> str:
    """One run as text: parameters, data, environment, per-epoch metrics, artifact. NotFound if
    the run wrote nothing."""
    prefix = _prefix(namespace, name)
    record = read_record(store, namespace, name)
    if record is None:
        failure = _get(store, f"{prefix}/{FAILURE_FILE}")
        progress = _get(store, f"{prefix}/{PROGRESS_FILE}")
        if failure is None and progress is None:
            raise NotFound(f"no training run {namespace}/{name} in {store.uri(prefix)}/", key=prefix)
        lines = [f"TrainingRun {namespace}/{name}"]
        if failure is not None:
            lines += [f"  state: Failed ({failure.get('reason')}) in attempt {failure.get('attempt')}",
                      f"  message: {failure.get('message')}"]
        if progress is not None:
            lines += [f"  progress: epoch {progress.get('epoch')}/{progress.get('epochs')} "
                      f"({progress.get('percent')}%), attempt {progress.get('attempt')}, eta "
                      f"{_fmt(progress.get('etaSeconds'))} s, updated {progress.get('updated')}",
                      "  metrics: " + ", ".join(f"{k}={_fmt(v)}" for k, v in (progress.get("metrics") or {}).items())]
        return "\n".join(lines)
    params, data, env = record.get("params", {}), record.get("data", {}), record.get("environment", {})
    fs, artifact, timings = record.get("featureSet", {}), record.get("artifact", {}), record.get("timings", {})
    key = record.get("keyMetric", {})
    lines = [
        f"TrainingRun {namespace}/{name}: {record.get('outcome')} in attempt {record.get('run', {}).get('attempt')}",
        f"  model: {params.get('family')} {params.get('task')} of {params.get('target')!r}; "
        f"{key.get('name')} = {_fmt(key.get('value'))}",
        "  params: " + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items() if v is not None),
        "  hyperparameters: " + ", ".join(f"{k}={_fmt(v)}" for k, v in record.get("hyperparameters", {}).items()),
        f"  featureSet: {fs.get('name')} version {fs.get('version')} ({fs.get('digest')})",
        f"  data: {data.get('rows')} rows ({data.get('trainRows')} train, {data.get('validationRows')} validation, "
        f"split by {data.get('splitBy')}, {data.get('droppedRows')} dropped), digest {data.get('digest')}",
        f"  environment: python {env.get('python')}, torch {env.get('torch')}, numpy {env.get('numpy')}, "
        f"{env.get('deviceType')} x {env.get('worldSize')} ({env.get('backend')}, {env.get('hostnameCount')} hosts), "
        f"image {_fmt(env.get('image'))}, git {_fmt(env.get('gitSha'))}",
        f"  determinism: seed {record.get('determinism', {}).get('seed')}, "
        f"deterministic {_fmt(record.get('determinism', {}).get('deterministic'))}",
        f"  artifact: {artifact.get('uri')}",
        f"            {artifact.get('digest')}",
        f"  timings: data {_fmt(timings.get('dataSeconds'))} s, training {_fmt(timings.get('trainSeconds'))} s, "
        f"publish {_fmt(timings.get('publishSeconds'))} s; finished {timings.get('finishedAt')}",
        "",
    ]
    epochs = record.get("epochs", [])
    names = sorted({m for e in epochs for m in e.get("metrics", {})}, key=lambda m: (m != "loss", m))
    lines.append(table(["EPOCH", "ATTEMPT", *[n.upper() for n in names], "SECONDS", "SAMPLES/S"],
                       [[e.get("epoch"), e.get("attempt"), *[e.get("metrics", {}).get(n) for n in names],
                         e.get("seconds"), round(e["samplesPerSecond"]) if e.get("samplesPerSecond") else None]
                        for e in epochs]))
    final = record.get("metrics", {})
    lines += ["", "final: " + ", ".join(f"{k}={_fmt(v)}" for k, v in final.items())]
    return "\n".join(lines)


COMPARED_PARAMS = ("family", "task", "target", "seed", "deterministic", "validationFraction")
COMPARED_HYPERPARAMETERS = ("epochs", "batchSize", "learningRate", "hiddenLayers", "dropout", "weightDecay",
                            "optimizer", "earlyStoppingPatience")


def compare_runs(store: ObjectStore, namespace: str, names: Sequence[str], png_path: Path | str) -> str:
    """Finished runs side by side (a table of params and final metrics) and their learning curves
    as a PNG at `png_path`; NotFound naming a run without a record."""
    if not names:
        raise ValueError("give at least one run to compare")
    records = []
    for name in names:
        record = read_record(store, namespace, name)
        if record is None:
            raise NotFound(f"training run {namespace}/{name} has no run record (not finished, failed, or absent)",
                           key=f"{_prefix(namespace, name)}/{RECORD_FILE}")
        records.append(record)
    rows: list[list[Any]] = []
    for param in COMPARED_PARAMS:
        rows.append([param, *[r.get("params", {}).get(param) for r in records]])
    for param in COMPARED_HYPERPARAMETERS:
        rows.append([param, *[r.get("hyperparameters", {}).get(param) for r in records]])
    rows.append(["worldSize", *[r.get("environment", {}).get("worldSize") for r in records]])
    rows.append(["featureSet", *[f"{r['featureSet'].get('name')}@{r['featureSet'].get('version')}" for r in records]])
    rows.append(["epochsRun", *[len(r.get("epochs", [])) for r in records]])
    metrics = sorted({m for r in records for m in r.get("metrics", {})}, key=lambda m: (m != "loss", m))
    for metric in metrics:
        rows.append([f"metric {metric}", *[r.get("metrics", {}).get(metric) for r in records]])
    rows.append(["artifact", *[r.get("artifact", {}).get("shortDigest") for r in records]])
    text = table(["", *names], rows)
    panels = ["loss"]
    key_metrics = {r.get("keyMetric", {}).get("name") for r in records}
    if len(key_metrics) == 1 and (key := key_metrics.pop()) not in (None, "loss"):
        panels.append(key)
    images = []
    for metric in panels:
        series = [[e.get("metrics", {}).get(metric) for e in r.get("epochs", [])] for r in records]
        images.append(line_chart(series))
    write_png(png_path, np.concatenate(images, axis=1))
    legend = ", ".join(f"{name}={COLORS[i % len(COLORS)][0]}" for i, name in enumerate(names))
    return (f"{text}\n\nlearning curves (validation {' and '.join(panels)} per epoch, one panel each) "
            f"written to {png_path}\ncolours: {legend}")


# -- a tiny PNG plotter ----------------------------------------------------------------------------

# 3x5 glyphs, rows top to bottom, 3 bits each (4 = left pixel).
_GLYPHS = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7), "4": (5, 5, 7, 1, 1),
    "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1), "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7),
    ".": (0, 0, 0, 0, 2), "-": (0, 0, 7, 0, 0), "e": (0, 7, 7, 4, 7), "+": (0, 2, 7, 2, 0),
}


def _text(canvas: np.ndarray, x: int, y: int, text: str, color: tuple[int, int, int], scale: int = 2) -> None:
    for glyph in text:
        rows = _GLYPHS.get(glyph)
        if rows is not None:
            for r, bits in enumerate(rows):
                for c in range(3):
                    if bits & (4 >> c):
                        y0, x0 = y + r * scale, x + c * scale
                        canvas[max(y0, 0):max(y0 + scale, 0), max(x0, 0):max(x0 + scale, 0)] = color
        x += 4 * scale


def _line(canvas: np.ndarray, x0: float, y0: float, x1: float, y1: float, color: tuple[int, int, int],
          width: int = 2) -> None:
    steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs = np.rint(np.linspace(x0, x1, steps)).astype(int)
    ys = np.rint(np.linspace(y0, y1, steps)).astype(int)
    height, wide = canvas.shape[:2]
    for dx in range(width):
        for dy in range(width):
            keep = (ys + dy < height) & (xs + dx < wide)
            canvas[ys[keep] + dy, xs[keep] + dx] = color


def line_chart(series: Sequence[Sequence[float | None]], width: int = 480, height: int = 320) -> np.ndarray:
    """An RGB image (uint8 [height, width, 3]) of one line per series over epochs 1..n, with axes,
    tick marks and the y range labelled. Missing values break a line."""
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    left, right, top, bottom = 64, width - 16, 16, height - 32
    values = [v for s in series for v in s if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    pad = (high - low) * 0.05
    low, high = low - pad, high + pad
    longest = max((len(s) for s in series), default=1)
    grey, black = (220, 220, 220), (0, 0, 0)
    for i in range(5):  # horizontal grid and y ticks
        y = bottom - (bottom - top) * i / 4
        _line(canvas, left, y, right, y, grey, 1)
        _line(canvas, left - 5, y, left, y, black, 1)
        _text(canvas, 2, int(y) - 5, f"{low + (high - low) * i / 4:.3g}", black)
    for epoch in range(1, longest + 1):  # x ticks, labelled when there are few
        x = left + (right - left) * (epoch - 1) / max(longest - 1, 1)
        _line(canvas, x, bottom, x, bottom + 5, black, 1)
        if longest <= 20 or epoch % max(1, longest // 10) == 0:
            _text(canvas, int(x) - 3, bottom + 10, str(epoch), black)
    _line(canvas, left, top, left, bottom, black, 2)
    _line(canvas, left, bottom, right, bottom, black, 2)
    for index, values_of_run in enumerate(series):
        color = COLORS[index % len(COLORS)][1]
        points = [(left + (right - left) * i / max(longest - 1, 1), bottom - (bottom - top) * (v - low) / (high - low))
                  if v is not None else None for i, v in enumerate(values_of_run)]
        for a, b in zip(points, points[1:], strict=False):
            if a is not None and b is not None:
                _line(canvas, a[0], a[1], b[0], b[1], color, 2)
        for p in points:
            if p is not None:  # a 5x5 marker centred on the point (the line is 2 px wide to its lower right)
                x, y = round(p[0]), round(p[1])
                canvas[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3] = color
    return canvas


def png_bytes(rgb: np.ndarray) -> bytes:
    """A truecolor PNG of an RGB uint8 image (no filtering, zlib level 9)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError("expected an RGB uint8 image of shape [height, width, 3]")
    height, width = rgb.shape[:2]
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def write_png(path: Path | str, rgb: np.ndarray) -> Path:
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(png_bytes(rgb))
    return destination
