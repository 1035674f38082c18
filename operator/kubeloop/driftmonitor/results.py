"""What a drift check reports back, and where: the contract between the check pod
(`check.py`, which writes it) and its readers (the DriftMonitor controller, `kubeloop drift`).
Standard library and `kubeloop.store` only, so the operator can import it without pyarrow,
numpy or scipy.

Layout, under the monitor's prefix `drift/<namespace>/<monitor>` (`drift_prefix`):

    checks/<checkId>/result.json      one result per check (checkId = UTC `YYYYMMDDTHHMMSSZ`)
    checks/<checkId>/report.html      its HTML report
    latest.json                       a copy of the newest result, written last

A result (schemaVersion 1; see /work/notes/contracts.md):

    {"schemaVersion": 1, "kind": "kubeloop.dev/DriftCheckResult", "checkId",
     "monitor": {name, namespace, uid}, "model", "modelVersion", "featureSet": {name, version},
     "time" (ISO UTC, when it finished), "window": {since, until}, "sampleSize", "minSamples",
     "verdict": "drift" | "no-drift" | "insufficient-samples", "drifted": bool | null,
     "driftShare": float | null, "driftedFeatures": [names],
     "features": [{name, method, statistic, pValue, threshold, drifted, nullFraction,
                   unseenCategories}],
     "reportUri": "s3://...", "reference": "profile" | "data", "correction"}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubeloop.core.conditions import parse_timestamp
from kubeloop.store import NotFound, ObjectStore

RESULT_KIND = "kubeloop.dev/DriftCheckResult"
SCHEMA_VERSION = 1
LATEST_FILE = "latest.json"
RESULT_FILE = "result.json"
REPORT_FILE = "report.html"

VERDICT_DRIFT = "drift"
VERDICT_NO_DRIFT = "no-drift"
VERDICT_INSUFFICIENT = "insufficient-samples"
VERDICTS = (VERDICT_DRIFT, VERDICT_NO_DRIFT, VERDICT_INSUFFICIENT)

# Per-feature fields of a result, as status.features holds them (same camelCase names).
FEATURE_FIELDS = ("name", "method", "statistic", "pValue", "threshold", "drifted", "nullFraction",
                  "unseenCategories")


def drift_prefix(namespace: str, monitor: str) -> str:
    """The object store prefix of a DriftMonitor's check results and reports."""
    return f"drift/{namespace}/{monitor}"


def latest_result_key(namespace: str, monitor: str) -> str:
    return f"{drift_prefix(namespace, monitor)}/{LATEST_FILE}"


def check_result_key(namespace: str, monitor: str, check_id: str) -> str:
    return f"{drift_prefix(namespace, monitor)}/checks/{check_id}/{RESULT_FILE}"


def check_report_key(namespace: str, monitor: str, check_id: str) -> str:
    return f"{drift_prefix(namespace, monitor)}/checks/{check_id}/{REPORT_FILE}"


class InvalidResult(ValueError):
    """A stored document is not a drift check result this version understands; the message
    says which field is wrong."""


@dataclass(frozen=True)
class CheckResult:
    """One drift check's result, validated."""

    check_id: str
    monitor_uid: str | None
    model: str | None
    model_version: str | None
    time: datetime
    sample_size: int
    min_samples: int | None
    verdict: str
    drifted: bool | None
    drift_share: float | None
    drifted_features: tuple[str, ...]
    features: tuple[dict[str, Any], ...]
    report_uri: str | None
    window: Mapping[str, Any] = field(default_factory=dict)

    @property
    def has_verdict(self) -> bool:
        return self.verdict != VERDICT_INSUFFICIENT


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _feature(entry: Any, index: int) -> dict[str, Any]:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
        raise InvalidResult(f"features[{index}] has no name")
    feature: dict[str, Any] = {"name": entry["name"]}
    if isinstance(entry.get("method"), str):
        feature["method"] = entry["method"]
    for key in ("statistic", "pValue", "threshold", "nullFraction"):
        number = _number(entry.get(key))
        if number is not None:
            feature[key] = number
    if isinstance(entry.get("drifted"), bool):
        feature["drifted"] = entry["drifted"]
    unseen = entry.get("unseenCategories")
    if isinstance(unseen, int) and not isinstance(unseen, bool) and unseen >= 0:
        feature["unseenCategories"] = unseen
    return feature


def parse_result(document: Any) -> CheckResult:
    """A `CheckResult` from a stored document; `InvalidResult` naming the bad field otherwise."""
    if not isinstance(document, Mapping):
        raise InvalidResult("the result is not a JSON object")
    if document.get("kind") != RESULT_KIND:
        raise InvalidResult(f'kind is {document.get("kind")!r}, expected "{RESULT_KIND}"')
    if document.get("schemaVersion") != SCHEMA_VERSION:
        raise InvalidResult(f"schemaVersion {document.get('schemaVersion')!r} is not supported "
                            f"(this operator reads {SCHEMA_VERSION}); upgrade the operator or the check image")
    check_id = document.get("checkId")
    if not isinstance(check_id, str) or not check_id:
        raise InvalidResult("checkId is missing")
    time = parse_timestamp(document.get("time"))
    if time is None:
        raise InvalidResult(f"time {document.get('time')!r} is not an ISO time")
    verdict = document.get("verdict")
    if verdict not in VERDICTS:
        raise InvalidResult(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    sample_size = document.get("sampleSize")
    if not isinstance(sample_size, int) or isinstance(sample_size, bool) or sample_size < 0:
        raise InvalidResult(f"sampleSize {sample_size!r} is not a count")
    min_samples = document.get("minSamples")
    features = document.get("features") or []
    if not isinstance(features, Sequence) or isinstance(features, str):
        raise InvalidResult("features is not a list")
    monitor: Mapping[str, Any] = document["monitor"] if isinstance(document.get("monitor"), Mapping) else {}
    if document.get("drifted") not in (True, False, None):
        raise InvalidResult(f"drifted {document.get('drifted')!r} is not true, false or null")
    share = _number(document.get("driftShare"))
    has_verdict = verdict != VERDICT_INSUFFICIENT
    names = document.get("driftedFeatures") or []
    report = document.get("reportUri")
    window = document.get("window")
    return CheckResult(
        check_id=check_id,
        monitor_uid=monitor.get("uid") if isinstance(monitor.get("uid"), str) else None,
        model=document.get("model") if isinstance(document.get("model"), str) else None,
        model_version=document.get("modelVersion") if isinstance(document.get("modelVersion"), str) else None,
        time=time,
        sample_size=sample_size,
        min_samples=min_samples if isinstance(min_samples, int) and not isinstance(min_samples, bool) else None,
        verdict=str(verdict),
        # A verdict-less result says nothing about drift, whatever else it holds.
        drifted=(verdict == VERDICT_DRIFT) if has_verdict else None,
        drift_share=share if has_verdict and share is not None and 0 <= share <= 1 else None,
        drifted_features=tuple(str(n) for n in names if isinstance(n, str)) if has_verdict else (),
        features=tuple(_feature(entry, i) for i, entry in enumerate(features)),
        report_uri=report if isinstance(report, str) and report else None,
        window=dict(window) if isinstance(window, Mapping) else {},
    )


def read_latest_result(store: ObjectStore, namespace: str, monitor: str) -> CheckResult | None:
    """The newest check's result (`latest.json`), or None before the first check.

    Raises `InvalidResult` when the stored document cannot be understood and the store's own
    errors (`StoreError`) when it cannot be read."""
    try:
        data = store.get_bytes(latest_result_key(namespace, monitor))
    except NotFound:
        return None
    try:
        document = json.loads(data)
    except ValueError:
        raise InvalidResult(f"{latest_result_key(namespace, monitor)} is not JSON") from None
    return parse_result(document)


def key_of_uri(uri: str, bucket: str) -> str:
    """The object key of `s3://<bucket>/<key>`; ValueError when the URI is of another bucket or
    not an s3 URI (the monitor's reports always live in the operator's bucket)."""
    prefix = f"s3://{bucket}/"
    if not uri.startswith(prefix) or len(uri) == len(prefix):
        raise ValueError(f'report URI "{uri}" is not in the object store bucket "{bucket}"')
    return uri[len(prefix):]
