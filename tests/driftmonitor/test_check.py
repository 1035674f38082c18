"""The drift check entrypoint against a real S3 server (SeaweedFS): a FeatureSet version published
like the materializer does, prediction log objects written with the server's predictionlog
functions, and `check.main(environ)` run as the CronJob's pod runs it."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from kubeloop.driftmonitor import check, results
from kubeloop.store import ObjectStore
from tests.driftmonitor.conftest import DRIFT_NAMESPACE, live_rows, write_prediction_log
from tests.trainingrun.conftest import PublishedFeatureSet, publish_feature_set, raw_rows

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def monitor_env(store_env: dict[str, str], feature_set: PublishedFeatureSet, *, name: str, model_version: str,
                **spec: Any) -> dict[str, str]:
    doc = {"name": name, "namespace": DRIFT_NAMESPACE, "uid": f"uid-{name}",
           "spec": {"model": "fraud", "window": "2h", "minSamples": 1000, **spec},
           "model": "fraud", "modelVersion": model_version, "featureSet": feature_set.reference}
    return {**store_env, check.MONITOR_ENV: json.dumps(doc)}


def run(environ: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = check.main(environ, clock=lambda: NOW, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def latest(store: ObjectStore, monitor: str) -> dict[str, Any]:
    doc: dict[str, Any] = store.get_json(f"drift/{DRIFT_NAMESPACE}/{monitor}/latest.json")
    return doc


@pytest.fixture(scope="module")
def logged_versions(drift_store: ObjectStore) -> dict[str, int]:
    """Three model versions' logs in the window [10:30, 12:30): few rows, unshifted, age shifted.
    Rows before the window (09:00) must be ignored."""
    start = datetime(2026, 3, 1, 10, 45, tzinfo=UTC)
    write_prediction_log(drift_store, "fraud", "fraud-few", live_rows(300, 21), start, timedelta(seconds=10))
    write_prediction_log(drift_store, "fraud", "fraud-stable", live_rows(3000, 22), start, timedelta(seconds=2))
    write_prediction_log(drift_store, "fraud", "fraud-shifted", live_rows(3000, 23, age_shift=12.0), start,
                         timedelta(seconds=2))
    write_prediction_log(drift_store, "fraud", "fraud-shifted", live_rows(2000, 24, age_shift=-30.0),
                         datetime(2026, 3, 1, 9, 0, tzinfo=UTC), timedelta(seconds=1))
    return {"fraud-few": 300, "fraud-stable": 3000, "fraud-shifted": 3000}


def test_insufficient_samples_gives_a_result_without_verdict(
        drift_store_env: dict[str, str], drift_store: ObjectStore, drift_feature_set: PublishedFeatureSet,
        logged_versions: dict[str, int]) -> None:
    code, out, err = run(monitor_env(drift_store_env, drift_feature_set, name="few", model_version="fraud-few"))
    assert code == 0, err
    result = latest(drift_store, "few")
    assert result["verdict"] == "insufficient-samples" and result["drifted"] is None
    assert results.parse_result(result).verdict == "insufficient-samples"  # what the controller reads
    assert result["driftShare"] is None and result["features"] == [] and result["driftedFeatures"] == []
    assert result["sampleSize"] == 300 and result["minSamples"] == 1000
    assert "insufficient-samples" in out
    report = drift_store.get_bytes(f"drift/{DRIFT_NAMESPACE}/few/checks/20260301T123000Z/report.html").decode()
    assert "fewer than minSamples" in report


def test_no_drift_on_unshifted_inputs(
        drift_store_env: dict[str, str], drift_store: ObjectStore, drift_feature_set: PublishedFeatureSet,
        logged_versions: dict[str, int]) -> None:
    code, _, err = run(monitor_env(drift_store_env, drift_feature_set, name="stable", model_version="fraud-stable"))
    assert code == 0, err
    result = latest(drift_store, "stable")
    assert result["verdict"] == "no-drift" and result["drifted"] is False and result["driftedFeatures"] == []
    assert result["sampleSize"] == 3000
    assert {f["name"] for f in result["features"]} == {"amount", "age", "country"}
    by_name = {f["name"]: f for f in result["features"]}
    assert by_name["amount"]["method"] == "wasserstein" and by_name["country"]["method"] == "chi2"
    assert by_name["amount"]["nullFraction"] == pytest.approx(0.03, abs=0.015)  # raw_rows masks 3% of amount
    assert by_name["country"]["unseenCategories"] == 0


def test_drift_is_found_on_the_shifted_feature_only_and_the_result_follows_the_contract(
        drift_store_env: dict[str, str], drift_store: ObjectStore, drift_feature_set: PublishedFeatureSet,
        logged_versions: dict[str, int]) -> None:
    environ = monitor_env(drift_store_env, drift_feature_set, name="shifted", model_version="fraud-shifted",
                          driftShare=0.3)
    code, out, err = run(environ)
    assert code == 0, err
    result = latest(drift_store, "shifted")
    prefix = f"drift/{DRIFT_NAMESPACE}/shifted"
    assert drift_store.get_json(f"{prefix}/checks/20260301T123000Z/result.json") == result
    assert set(result) == {"schemaVersion", "kind", "checkId", "monitor", "model", "modelVersion", "featureSet",
                           "time", "window", "sampleSize", "minSamples", "verdict", "drifted", "driftShare",
                           "driftedFeatures", "features", "reportUri", "reference", "correction"}
    assert result["schemaVersion"] == 1 and result["kind"] == "kubeloop.dev/DriftCheckResult"
    assert result["checkId"] == "20260301T123000Z"
    assert result["monitor"] == {"name": "shifted", "namespace": DRIFT_NAMESPACE, "uid": "uid-shifted"}
    assert result["featureSet"] == {"name": drift_feature_set.name, "version": drift_feature_set.version.id}
    assert result["window"] == {"since": "2026-03-01T10:30:00Z", "until": "2026-03-01T12:30:00Z"}
    assert result["sampleSize"] == 3000  # the 09:00 rows are outside the window
    assert result["verdict"] == "drift" and result["drifted"] is True
    parsed = results.parse_result(result)  # what the controller reads
    assert parsed.verdict == "drift" and list(parsed.drifted_features) == ["age"]
    assert result["driftedFeatures"] == ["age"] and result["driftShare"] == pytest.approx(1 / 3)
    assert result["reference"] == "profile" and result["correction"] == "fdr"
    for feature in result["features"]:
        assert set(feature) == {"name", "method", "statistic", "pValue", "threshold", "drifted", "nullFraction",
                                "unseenCategories"}
    assert result["reportUri"] == drift_store.uri(f"{prefix}/checks/20260301T123000Z/report.html")
    report = drift_store.get_bytes(f"{prefix}/checks/20260301T123000Z/report.html").decode()
    assert "Drift detected" in report and "Drifted features: <strong>age</strong>" in report
    assert report.count("<svg") == 3 and "age" in out


def test_data_mode_tests_the_transformed_features(
        drift_store_env: dict[str, str], drift_store: ObjectStore, drift_feature_set: PublishedFeatureSet,
        logged_versions: dict[str, int]) -> None:
    environ = monitor_env(drift_store_env, drift_feature_set, name="shifted-data", model_version="fraud-shifted",
                          reference="data", driftShare=0.3)
    code, _, err = run(environ)
    assert code == 0, err
    result = latest(drift_store, "shifted-data")
    assert result["reference"] == "data"
    assert [f["name"] for f in result["features"]] == ["amount_std", "age_std", "country_onehot"]
    assert result["driftedFeatures"] == ["age_std"]
    assert {f["name"]: f["method"] for f in result["features"]} == {
        "amount_std": "wasserstein", "age_std": "wasserstein", "country_onehot": "chi2"}


def test_spec_features_may_name_source_columns_and_transformed_features(
        drift_store_env: dict[str, str], drift_store: ObjectStore, drift_feature_set: PublishedFeatureSet,
        logged_versions: dict[str, int]) -> None:
    environ = monitor_env(drift_store_env, drift_feature_set, name="chosen", model_version="fraud-shifted",
                          features=["age_std", "country"], method="ks", correction="bonferroni")
    code, _, err = run(environ)
    assert code == 0, err
    result = latest(drift_store, "chosen")
    by_name = {f["name"]: f for f in result["features"]}
    assert list(by_name) == ["age_std", "country"]
    assert by_name["age_std"]["method"] == "ks" and by_name["age_std"]["drifted"]
    assert by_name["country"]["method"] == "chi2" and not by_name["country"]["drifted"]
    assert result["correction"] == "bonferroni" and result["verdict"] == "drift"


def test_unknown_feature_is_a_permanent_failure_naming_it(
        drift_store_env: dict[str, str], drift_feature_set: PublishedFeatureSet, logged_versions: dict[str, int]) -> None:
    environ = monitor_env(drift_store_env, drift_feature_set, name="unknown", model_version="fraud-stable",
                          features=["income"])
    code, _, err = run(environ)
    assert code == 3
    assert "spec.features: 'income' is neither a source column nor a feature" in err


def test_missing_reference_version_exits_3_with_a_clear_message(
        drift_store_env: dict[str, str], drift_feature_set: PublishedFeatureSet, logged_versions: dict[str, int]) -> None:
    missing = PublishedFeatureSet(name=drift_feature_set.name, version=drift_feature_set.version.__class__(
        **{**drift_feature_set.version.__dict__, "id": "0123456789ab"}), raw=drift_feature_set.raw)
    environ = monitor_env(drift_store_env, missing, name="missing", model_version="fraud-stable")
    code, _, err = run(environ)
    assert code == 3
    assert "reference unavailable" in err and "0123456789ab" in err and "does not exist" in err


def test_corrupt_reference_profile_exits_3_with_a_clear_message(
        drift_store_env: dict[str, str], drift_store: ObjectStore, logged_versions: dict[str, int],
        tmp_path_factory: pytest.TempPathFactory) -> None:
    corrupt = publish_feature_set(drift_store, tmp_path_factory.mktemp("corrupt-fs"), "corrupted", raw_rows(1500, 3))
    drift_store.put_bytes(corrupt.version.file("profile.json").key, b'{"not": "the profile"}')
    environ = monitor_env(drift_store_env, corrupt, name="corrupt", model_version="fraud-stable")
    code, _, err = run(environ)
    assert code == 3
    assert "reference unavailable" in err and "corrupted" in err and "profile.json" in err
    assert not drift_store.exists(f"drift/{DRIFT_NAMESPACE}/corrupt/latest.json")


def test_unreadable_profile_with_a_matching_digest_exits_3(
        drift_store_env: dict[str, str], drift_store: ObjectStore, logged_versions: dict[str, int],
        tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("bad-profile-fs")
    good = publish_feature_set(drift_store, folder, "badprofile", raw_rows(1200, 4))
    files = {name: drift_store.get_bytes(entry.key) for name, entry in good.version.files.items()}
    files["profile.json"] = b'{"schemaVersion": 99, "kind": "kubeloop.dev/ReferenceProfile"}'
    version = drift_store.publish_version(good.version.prefix, files, dict(good.version.manifest))
    environ = monitor_env(drift_store_env, PublishedFeatureSet("badprofile", version, good.raw), name="badprofile",
                          model_version="fraud-stable")
    code, _, err = run(environ)
    assert code == 3
    assert "reference unavailable" in err and "schemaVersion" in err


def test_invalid_environment_exits_3() -> None:
    code, _, err = run({})
    assert code == 3 and "KUBELOOP_DRIFTMONITOR is not set" in err
    code, _, err = run({check.MONITOR_ENV: json.dumps({"name": "x", "namespace": "ml", "spec": {"window": "2h"},
                                                        "model": "m", "modelVersion": "v",
                                                        "featureSet": {"name": "f", "version": "abc"}})})
    assert code == 3 and "invalid spec" in err and "modelVersionRef" in err


class _Pushgateway(BaseHTTPRequestHandler):
    received: list[tuple[str, str, str]] = []

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.received.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    do_POST = do_PUT  # noqa: N815

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def drift_pushgateway() -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    _Pushgateway.received = []
    server = HTTPServer(("127.0.0.1", 0), _Pushgateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Pushgateway.received
    finally:
        server.shutdown()
        server.server_close()


def test_figures_are_pushed_to_the_pushgateway(
        drift_store_env: dict[str, str], drift_feature_set: PublishedFeatureSet, logged_versions: dict[str, int],
        drift_pushgateway: tuple[str, list[tuple[str, str, str]]]) -> None:
    url, received = drift_pushgateway
    environ = {**monitor_env(drift_store_env, drift_feature_set, name="pushed", model_version="fraud-shifted",
                             driftShare=0.3), check.PUSHGATEWAY_ENV: url}
    code, _, err = run(environ)
    assert code == 0, err
    [(method, path, body)] = received
    assert method == "PUT" and path.startswith("/metrics/job/kubeloop_drift_check/")
    assert f"/namespace/{DRIFT_NAMESPACE}" in path and "/monitor/pushed" in path
    assert 'kubeloop_drift_detected{model="fraud",model_version="fraud-shifted"} 1.0' in body
    assert 'kubeloop_drift_feature_drifted{feature="age",method="wasserstein",model="fraud"' in body
    assert "kubeloop_drift_sample_size" in body


def test_a_failed_push_does_not_fail_the_check(
        drift_store_env: dict[str, str], drift_feature_set: PublishedFeatureSet, logged_versions: dict[str, int]) -> None:
    environ = {**monitor_env(drift_store_env, drift_feature_set, name="push-fails", model_version="fraud-stable"),
               check.PUSHGATEWAY_ENV: "http://127.0.0.1:9"}
    code, _, err = run(environ)
    assert code == 0
    assert "warning: pushing metrics to http://127.0.0.1:9 failed" in err
