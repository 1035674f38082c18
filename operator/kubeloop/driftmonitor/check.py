"""The drift check: the DriftMonitor CronJob's pod entrypoint (`python -m kubeloop.driftmonitor.check`).

One run reads the monitored model version's prediction log over `spec.window` (ending now), and the
reference of the FeatureSet version the model was trained on, tests the features with the engine
(`stats.py`), and writes, under `drift/<namespace>/<monitor>/`:

    checks/<checkId>/report.html   the HTML report (report.py), written first
    checks/<checkId>/result.json   the result (schema in docs and below), then
    latest.json                    a copy of the result, written last: what the controller reads

checkId is the UTC start time `YYYYMMDDTHHMMSSZ`. With fewer than `spec.minSamples` logged rows in the
window the result says "insufficient-samples" and carries no verdict (exit 0 all the same).

What is compared (`spec.reference`):

- profile (default): the version's stored reference profile (`profile.json`, bounded memory). By
  default every raw source column of the profile is tested against the same column of the log
  (the log holds the raw inputs, read the way the transforms read them). `spec.features` may name
  source columns and also transformed features of the version (the profile's `features`): the
  log's rows are then passed through the version's fitted transforms (`apply_batch`, the code the
  server runs) and compared with the feature's profile.
- data: the version's rows (features.parquet or its parts: exact tests, memory for the rows). A
  version stores the transformed features, not the raw source columns, so data mode tests the
  features (default: every fitted feature): the log's rows pass through the fitted transforms and
  are compared with the stored feature columns. `spec.features` may also name other stored columns
  that the log holds under the same name.

Environment: KUBELOOP_DRIFTMONITOR (JSON: name, namespace, uid, spec, model, modelVersion,
featureSet {name, version, digest}), the object store's (KUBELOOP_S3_ENDPOINT, KUBELOOP_S3_BUCKET,
AWS_*), and optional KUBELOOP_PUSHGATEWAY_URL (the figures are pushed there as gauges, grouped by
namespace and monitor; a failed push is reported on stderr and does not fail the check).

Exit codes: 0 a result was written (drift or not, or insufficient samples); 3 permanent: the
reference is unavailable or corrupt, or the configuration is invalid (the message on stderr says
which and why); 1 transient (the object store could not be reached): the Job retries.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from kubeloop.core.apimodel import parse_duration
from kubeloop.driftmonitor.api import DriftMonitorSpec
from kubeloop.driftmonitor.report import drift_report
from kubeloop.driftmonitor.results import (
    RESULT_KIND,
    SCHEMA_VERSION,
    VERDICT_DRIFT,
    VERDICT_INSUFFICIENT,
    VERDICT_NO_DRIFT,
    check_report_key,
    check_result_key,
    drift_prefix,
    latest_result_key,
)
from kubeloop.driftmonitor.stats import (
    DriftOptions,
    DriftResult,
    FeatureReference,
    detect_drift,
    reference_from_profile,
    reference_from_values,
)
from kubeloop.featureset.profile import ReferenceProfile
from kubeloop.featureset.results import featureset_prefix
from kubeloop.featureset.transforms import FittedFeatures, TransformInputError, apply_batch
from kubeloop.modelversion.predictionlog import prediction_log_prefix, read_prediction_log
from kubeloop.store import ObjectStore
from kubeloop.store.errors import (
    AccessDenied,
    CorruptObject,
    DigestMismatch,
    NotFound,
    StoreConfigError,
    StoreError,
)

EXIT_OK = 0
EXIT_TRANSIENT = 1
EXIT_PERMANENT = 3
MONITOR_ENV = "KUBELOOP_DRIFTMONITOR"
PUSHGATEWAY_ENV = "KUBELOOP_PUSHGATEWAY_URL"
PROFILE_FILE = "profile.json"
FITTED_FILE = "fitted.json"


class CheckFailed(Exception):
    """The check cannot produce a result; `exit_code` says whether retrying can help."""

    def __init__(self, message: str, exit_code: int = EXIT_PERMANENT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class CheckJob:
    """What one check examines, from KUBELOOP_DRIFTMONITOR."""

    name: str
    namespace: str
    uid: str
    spec: DriftMonitorSpec
    model: str
    model_version: str
    feature_set: str
    feature_set_version: str
    feature_set_digest: str | None

    @property
    def prefix(self) -> str:
        return drift_prefix(self.namespace, self.name)


def check_id(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def parse_job(environ: Mapping[str, str]) -> CheckJob:
    """The check's job; CheckFailed (permanent) naming the field that is missing or invalid."""
    text = environ.get(MONITOR_ENV)
    if not text:
        raise CheckFailed(f"{MONITOR_ENV} is not set: the check does not know what to monitor")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as error:
        raise CheckFailed(f"{MONITOR_ENV} is not JSON: {error}") from None
    if not isinstance(doc, dict):
        raise CheckFailed(f"{MONITOR_ENV} must be a JSON object")
    missing = [key for key in ("name", "namespace", "spec", "model", "modelVersion", "featureSet") if not doc.get(key)]
    if missing:
        raise CheckFailed(f"{MONITOR_ENV} lacks {', '.join(missing)}")
    feature_set = doc["featureSet"]
    if not isinstance(feature_set, dict) or not feature_set.get("name") or not feature_set.get("version"):
        raise CheckFailed(f"{MONITOR_ENV}: featureSet must be an object with name and version")
    try:
        spec = DriftMonitorSpec.model_validate(doc["spec"])
        parse_duration(spec.window)
    except (ValidationError, ValueError) as error:
        raise CheckFailed(f"{MONITOR_ENV}: invalid spec: {error}") from None
    return CheckJob(name=str(doc["name"]), namespace=str(doc["namespace"]), uid=str(doc.get("uid") or ""), spec=spec,
                    model=str(doc["model"]), model_version=str(doc["modelVersion"]),
                    feature_set=str(feature_set["name"]), feature_set_version=str(feature_set["version"]),
                    feature_set_digest=feature_set.get("digest") or None)


# -- the reference -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """The references to test and how to compute each feature's live column from the log."""

    features: list[FeatureReference]
    transformed: frozenset[str]
    """Features computed from the log's rows with the fitted transforms (the rest are log columns)."""
    fitted: FittedFeatures | None


def _unavailable(job: CheckJob, problem: str) -> CheckFailed:
    return CheckFailed(f"reference unavailable: FeatureSet {job.namespace}/{job.feature_set} version "
                       f"{job.feature_set_version}: {problem}")


def load_reference(store: ObjectStore, job: CheckJob, scratch: Path) -> Reference:
    """The reference of the monitored model's FeatureSet version, verified against its digest;
    CheckFailed (permanent) when it is missing or corrupt, (transient) when the store is down."""
    prefix = featureset_prefix(job.namespace, job.feature_set)
    try:
        version = store.read_manifest(prefix, job.feature_set_version)
        if job.feature_set_digest and job.feature_set_digest != version.digest:
            raise _unavailable(job, f"has digest {version.digest}, not {job.feature_set_digest} as resolved")
        fitted = None
        if FITTED_FILE in version.files:
            fitted = FittedFeatures.from_json(store.download(version, FITTED_FILE, scratch / FITTED_FILE).read_bytes())
        if job.spec.reference == "profile":
            profile = ReferenceProfile.from_json(store.download(version, PROFILE_FILE, scratch / PROFILE_FILE)
                                                 .read_bytes())
            return _profile_reference(job, profile, fitted)
        names = [str(n) for n in version.manifest.get("featureFiles") or ["features.parquet"]]
        paths = [store.download(version, name, scratch / "features" / name) for name in names]
        table = pa.concat_tables([pq.read_table(path) for path in paths])
    except CheckFailed:
        raise
    except (NotFound, DigestMismatch, CorruptObject, AccessDenied) as error:
        raise _unavailable(job, str(error)) from None
    except StoreError as error:
        raise CheckFailed(f"object store: {error}", EXIT_TRANSIENT) from None
    except (ValueError, KeyError, TypeError, pa.ArrowInvalid, OSError) as error:  # JSON, schema, Parquet
        raise _unavailable(job, f"unreadable ({type(error).__name__}: {error})") from None
    return _data_reference(job, table, fitted)


def _profile_reference(job: CheckJob, profile: ReferenceProfile, fitted: FittedFeatures | None) -> Reference:
    names = job.spec.features or [n for n, c in profile.columns.items() if c.kind != "other"]
    references, transformed = [], set()
    for name in names:
        if name in profile.columns:
            column = profile.columns[name]
        elif name in profile.features and fitted is not None:
            column = profile.features[name]
            transformed.add(name)
        else:
            raise CheckFailed(f"spec.features: {name!r} is neither a source column nor a feature of FeatureSet "
                              f"{job.namespace}/{job.feature_set} version {job.feature_set_version} (columns: "
                              f"{', '.join(sorted(profile.columns)) or 'none'}; features: "
                              f"{', '.join(sorted(profile.features)) or 'none'})")
        try:
            references.append(reference_from_profile(name, column))
        except ValueError as error:
            raise _unavailable(job, f"profile.json: {error}") from None
    return Reference(references, frozenset(transformed), fitted)


def _data_reference(job: CheckJob, table: pa.Table, fitted: FittedFeatures | None) -> Reference:
    feature_names = [str(f["name"]) for f in fitted.to_dict().get("features", [])] if fitted is not None else []
    names = job.spec.features or [n for n in feature_names if n in table.column_names]
    if not names:
        raise _unavailable(job, "it has no fitted features to test (fitted.json missing or empty)")
    references = []
    for name in names:
        if name not in table.column_names:
            raise CheckFailed(f"spec.features: {name!r} is not a column of FeatureSet {job.namespace}/"
                              f"{job.feature_set} version {job.feature_set_version} (columns: "
                              f"{', '.join(table.column_names)})")
        references.append(reference_from_values(name, table.column(name)))
    return Reference(references, frozenset(n for n in names if n in feature_names), fitted)


def live_columns(window: pa.Table, reference: Reference) -> dict[str, Any]:
    """Each tested feature's live column: the log's column, or the fitted transforms' output."""
    columns: dict[str, Any] = {n: window.column(n) for n in window.column_names}
    if reference.transformed and window.num_rows:
        assert reference.fitted is not None
        try:
            features = apply_batch(reference.fitted, window)
        except TransformInputError as error:
            raise CheckFailed(f"the prediction log cannot be transformed like the reference: {error}") from None
        for name in reference.transformed:
            columns[name] = features.column(name)
    return {f.name: columns.get(f.name) for f in reference.features}


# -- the result --------------------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    return None if value is None or value != value or value in (float("inf"), float("-inf")) else float(value)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def result_document(job: CheckJob, *, check: str, since: datetime, until: datetime, finished: datetime,
                    sample_size: int, drift: DriftResult | None, report_uri: str) -> dict[str, Any]:
    """result.json (schemaVersion 1): the contract between the check and the controller."""
    verdict = VERDICT_INSUFFICIENT if drift is None else VERDICT_DRIFT if drift.drifted else VERDICT_NO_DRIFT
    return {
        "schemaVersion": SCHEMA_VERSION,
        "kind": RESULT_KIND,
        "checkId": check,
        "monitor": {"name": job.name, "namespace": job.namespace, "uid": job.uid},
        "model": job.model,
        "modelVersion": job.model_version,
        "featureSet": {"name": job.feature_set, "version": job.feature_set_version},
        "time": _iso(finished),
        "window": {"since": _iso(since), "until": _iso(until)},
        "sampleSize": sample_size,
        "minSamples": job.spec.min_samples,
        "verdict": verdict,
        "drifted": None if drift is None else bool(drift.drifted),
        "driftShare": None if drift is None else _finite(drift.drift_share),
        "driftedFeatures": [] if drift is None else drift.drifted_features,
        "features": [] if drift is None else [
            {"name": f.name, "method": f.method, "statistic": _finite(f.statistic), "pValue": _finite(f.p_value),
             "threshold": f.threshold, "drifted": f.drifted, "nullFraction": _finite(f.null_fraction),
             "unseenCategories": f.unseen_categories}
            for f in drift.features
        ],
        "reportUri": report_uri,
        "reference": job.spec.reference,
        "correction": job.spec.correction,
    }


def push_metrics(url: str, document: Mapping[str, Any]) -> None:
    """The check's figures as gauges on a Prometheus Pushgateway, grouped by namespace and monitor
    (each push replaces the monitor's previous figures)."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    registry = CollectorRegistry()
    base = ["model", "model_version"]
    labels = {"model": str(document["model"]), "model_version": str(document["modelVersion"])}
    Gauge("kubeloop_drift_check_timestamp_seconds", "When the drift check finished.", base,
          registry=registry).labels(**labels).set(datetime.fromisoformat(str(document["time"])).timestamp())
    Gauge("kubeloop_drift_sample_size", "Predictions in the check's window.", base,
          registry=registry).labels(**labels).set(float(document["sampleSize"]))
    if document["verdict"] != VERDICT_INSUFFICIENT:
        Gauge("kubeloop_drift_detected", "1 when the check found dataset-level drift.", base,
              registry=registry).labels(**labels).set(1.0 if document["drifted"] else 0.0)
        Gauge("kubeloop_drift_share", "Fraction of tested features that drifted.", base,
              registry=registry).labels(**labels).set(float(document["driftShare"] or 0.0))
        feature_labels = [*base, "feature", "method"]
        statistic = Gauge("kubeloop_drift_feature_statistic", "Test statistic or distance of a feature.",
                          feature_labels, registry=registry)
        p_value = Gauge("kubeloop_drift_feature_p_value", "Corrected p-value of a feature (ks, chi2).",
                        feature_labels, registry=registry)
        drifted = Gauge("kubeloop_drift_feature_drifted", "1 when the feature drifted.", feature_labels,
                        registry=registry)
        for feature in document["features"]:
            key = {**labels, "feature": str(feature["name"]), "method": str(feature["method"])}
            if feature["statistic"] is not None:
                statistic.labels(**key).set(float(feature["statistic"]))
            if feature["pValue"] is not None:
                p_value.labels(**key).set(float(feature["pValue"]))
            drifted.labels(**key).set(1.0 if feature["drifted"] else 0.0)
    monitor = document["monitor"]
    push_to_gateway(url, job="kubeloop_drift_check", registry=registry,
                    grouping_key={"namespace": str(monitor["namespace"]), "monitor": str(monitor["name"])})


def run_check(job: CheckJob, store: ObjectStore, *, clock: Callable[[], datetime],
              scratch: Path) -> dict[str, Any]:
    """One check: reads, tests, writes report.html, result.json and latest.json; the result."""
    started = clock()
    until = started.astimezone(UTC)
    since = until - parse_duration(job.spec.window)
    check = check_id(started)
    reference = load_reference(store, job, scratch)
    log_prefix = prediction_log_prefix(job.namespace, job.model, job.model_version)
    try:
        window = read_prediction_log(store, log_prefix, since=since, until=until)
    except StoreError as error:
        raise CheckFailed(f"object store: reading the prediction log {store.uri(log_prefix)}: {error}",
                          EXIT_TRANSIENT) from None
    except (ValueError, pa.ArrowInvalid, OSError) as error:
        raise CheckFailed(f"the prediction log {store.uri(log_prefix)} is unreadable: {error}",
                          EXIT_TRANSIENT) from None
    drift = None
    if window.num_rows >= job.spec.min_samples:
        drift = detect_drift(reference.features, live_columns(window, reference), DriftOptions.from_spec(job.spec))
    report_key = check_report_key(job.namespace, job.name, check)
    document = result_document(job, check=check, since=since, until=until, finished=clock(),
                               sample_size=window.num_rows, drift=drift, report_uri=store.uri(report_key))
    histograms = {f.name: f.histogram for f in drift.features if f.histogram is not None} if drift else {}
    details = {f.name: {"kind": f.kind, "effectSize": f.effect_size, "errorBound": f.error_bound, "note": f.note}
               for f in drift.features} if drift else {}
    try:
        store.put_bytes(report_key, drift_report(document, histograms, details).encode(),
                        content_type="text/html; charset=utf-8")
        store.put_json(check_result_key(job.namespace, job.name, check), document)
        store.put_json(latest_result_key(job.namespace, job.name), document)  # last: readers poll it
    except StoreError as error:
        raise CheckFailed(f"object store: writing the result under {store.uri(job.prefix)}: {error}",
                          EXIT_TRANSIENT) from None
    return document


def main(environ: Mapping[str, str] | None = None, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
         out: TextIO | None = None, err: TextIO | None = None, store: ObjectStore | None = None) -> int:
    """The pod's entrypoint; the exit code (0 result written, 1 transient, 3 permanent)."""
    environ = os.environ if environ is None else environ
    out, err = out or sys.stdout, err or sys.stderr
    try:
        job = parse_job(environ)
        store = store or ObjectStore.from_env(environ)
        with tempfile.TemporaryDirectory(prefix="driftcheck-") as scratch:
            document = run_check(job, store, clock=clock, scratch=Path(scratch))
    except CheckFailed as error:
        print(f"drift check: failed: {error}", file=err, flush=True)
        return error.exit_code
    except StoreConfigError as error:
        print(f"drift check: failed: object store configuration: {error}", file=err, flush=True)
        return EXIT_PERMANENT
    except StoreError as error:
        print(f"drift check: failed: object store: {error}", file=err, flush=True)
        return EXIT_TRANSIENT
    drifted = ", ".join(document["driftedFeatures"]) or "none"
    print(f"drift check {job.namespace}/{job.name} {document['checkId']}: {document['verdict']} "
          f"(samples {document['sampleSize']}, drift share {document['driftShare']}, drifted: {drifted}) "
          f"-> {document['reportUri']}", file=out, flush=True)
    url = environ.get(PUSHGATEWAY_ENV)
    if url:
        try:
            push_metrics(url, document)
        except Exception as error:  # noqa: BLE001 - the result is stored; metrics are best effort
            print(f"drift check: warning: pushing metrics to {url} failed: {error}", file=err, flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
