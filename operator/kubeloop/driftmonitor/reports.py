"""`kubeloop drift`: a DriftMonitor's last check for people — the per-feature table of its status
(`show`), and its HTML report fetched from the object store (`report`).

Reads the DriftMonitor through the API (its status is the source of truth for which report is
the newest) and the report through the object store; no numpy, no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from kubeloop import API_VERSION
from kubeloop.driftmonitor import results
from kubeloop.driftmonitor.api import RESOURCE


class ReportUnavailable(Exception):
    """The report cannot be fetched; the message says why and what to do."""


class MonitorReader(Protocol):
    """What reading a DriftMonitor needs (`KubeClient` has it)."""

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None: ...


class ReportStore(Protocol):
    """What fetching a report needs (`ObjectStore` has it)."""

    @property
    def bucket(self) -> str: ...

    def get_bytes(self, key: str) -> bytes: ...


def read_monitor(client: MonitorReader, namespace: str, name: str) -> dict[str, Any]:
    monitor = client.get(API_VERSION, RESOURCE.kind, namespace, name)
    if monitor is None:
        raise ReportUnavailable(f'DriftMonitor "{name}" does not exist in namespace "{namespace}" '
                                f"(`kubectl get driftmonitors -n {namespace}` lists them)")
    return monitor


def default_report_path(name: str) -> Path:
    return Path(f"{name}-drift-report.html")


def report_key(monitor: Mapping[str, Any], bucket: str) -> str:
    """The object key of the monitor's newest report (status.reportUri)."""
    meta, current = monitor.get("metadata") or {}, monitor.get("status") or {}
    uri = current.get("reportUri")
    if not uri:
        raise ReportUnavailable(f'DriftMonitor "{meta.get("name")}" has no report yet: no check has finished '
                                f'(see `kubectl describe driftmonitor {meta.get("name")} -n {meta.get("namespace")}`)')
    try:
        return results.key_of_uri(str(uri), bucket)
    except ValueError as error:
        raise ReportUnavailable(f"{error}; fetch it with an S3 client configured for that bucket") from None


def save_report(store: ReportStore, monitor: Mapping[str, Any], path: Path) -> Path:
    """Write the monitor's newest HTML report to `path`; the path written."""
    from kubeloop.store import NotFound

    key = report_key(monitor, store.bucket)
    try:
        html = store.get_bytes(key)
    except NotFound:
        raise ReportUnavailable(f"the report s3://{store.bucket}/{key} is gone from the object store; "
                                "the next check writes a new one") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(html)
    return path


def _cell(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in [header, *rows]]
    return "\n".join(lines)


def format_monitor(monitor: Mapping[str, Any]) -> str:
    """The monitor's last check in words, then one line per feature (drifted ones first)."""
    meta, current = monitor.get("metadata") or {}, monitor.get("status") or {}
    last = current.get("lastRetrain") or {}
    summary = [
        ("DriftMonitor", f"{meta.get('namespace')}/{meta.get('name')}"),
        ("Phase", current.get("phase")),
        ("Model", current.get("model")),
        ("ModelVersion", current.get("modelVersion")),
        ("Last check", current.get("lastCheckTime")),
        ("Samples", current.get("sampleSize")),
        ("Drifted", current.get("drifted")),
        ("Drift share", current.get("driftShare")),
        ("Consecutive breaches", current.get("consecutiveBreaches")),
        ("Retrains", current.get("retrains")),
        ("Last retrain", f"{last.get('trainingRun')} at {last.get('time')} ({last.get('reason')})" if last else None),
        ("Report", current.get("reportUri")),
    ]
    width = max(len(label) for label, _ in summary)
    text = "\n".join(f"{label + ':':<{width + 1}} {_cell(value)}" for label, value in summary)
    features = sorted(current.get("features") or [], key=lambda f: (not f.get("drifted"), str(f.get("name"))))
    if not features:
        return text + "\n\nNo per-feature results yet."
    rows = [[_cell(f.get("name")), _cell(f.get("method")), _cell(f.get("statistic")), _cell(f.get("pValue")),
             _cell(f.get("threshold")), _cell(f.get("drifted"))] for f in features]
    return text + "\n\n" + _table(["FEATURE", "METHOD", "STATISTIC", "P-VALUE", "THRESHOLD", "DRIFTED"], rows)
