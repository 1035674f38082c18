"""`kubeloop drift show` and `kubeloop drift report` as a user runs them: the real command in a
subprocess, against the local API server with the DriftMonitor controller (controller_fixtures.py)
and the real object store holding the report."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubeloop.driftmonitor import reports
from tests.driftmonitor.controller_fixtures import BUCKET, REPO, DriftCluster, drift_cluster  # noqa: F401
from tests.integration.conftest import wait_for

HANG_GUARD = 120.0


def kubeloop(cluster: DriftCluster, *args: str, cwd: Path, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubeloop", *args, "--kubeconfig", str(cluster.kubeconfig)],
                          capture_output=True, text=True, timeout=HANG_GUARD, cwd=cwd,
                          env={**os.environ, "KUBELOOP_S3_BUCKET": BUCKET,
                               "PYTHONPATH": str(REPO / "operator"), **(env or {})})


@pytest.fixture
def checked_monitor(drift_cluster: DriftCluster) -> tuple[str, str, dict[str, Any]]:  # noqa: F811
    """A monitor whose last check found drift in amount_log: (namespace, name, the result)."""
    cluster, ns = drift_cluster, drift_cluster.namespace()
    cluster.model_version(ns, "fraud-v1")
    cluster.apply("DriftMonitor", ns, "cards", {"modelVersionRef": {"name": "fraud-v1"}})
    found = wait_for(lambda: cluster.get("DriftMonitor", ns, "cards"), what="the monitor")
    result = cluster.write_result(ns, "cards", "drift", uid=found["metadata"]["uid"], share=0.5)
    wait_for(lambda: cluster.status(ns, "cards").get("reportUri") == result["reportUri"], what="reportUri",
             timeout=HANG_GUARD)
    return ns, "cards", result


def test_show_prints_the_last_check_one_line_per_feature(drift_cluster: DriftCluster,  # noqa: F811
                                                         checked_monitor: tuple[str, str, dict[str, Any]],
                                                         tmp_path: Path):
    ns, name, result = checked_monitor
    shown = kubeloop(drift_cluster, "drift", "show", name, "-n", ns, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert f"DriftMonitor:         {ns}/{name}" in lines
    assert "Drifted:              yes" in lines and "Drift share:          0.5" in lines
    header = next(i for i, line in enumerate(lines) if line.startswith("FEATURE"))
    assert lines[header].split() == ["FEATURE", "METHOD", "STATISTIC", "P-VALUE", "THRESHOLD", "DRIFTED"]
    assert lines[header + 1].split() == ["amount_log", "ks", "0.42", "0.0001", "0.05", "yes"]  # drifted first
    assert lines[header + 2].split() == ["merchant", "chi2", "3.5", "0.31", "0.05", "no"]


def test_report_saves_the_html_and_opens_it(drift_cluster: DriftCluster,  # noqa: F811
                                            checked_monitor: tuple[str, str, dict[str, Any]], tmp_path: Path):
    ns, name, result = checked_monitor
    saved = kubeloop(drift_cluster, "drift", "report", name, "-n", ns, cwd=tmp_path)
    assert saved.returncode == 0, saved.stderr
    default = tmp_path / f"{name}-drift-report.html"
    assert default.read_text() == f"<html><body>report {result['checkId']}</body></html>"
    assert str(default.name) in saved.stdout

    # --open hands the saved file to the user's browser ($BROWSER, as Python's webbrowser reads it).
    opened = tmp_path / "opened.txt"
    browser = f"{shlex.quote(sys.executable)} -c " + shlex.quote(
        f"import sys, pathlib; pathlib.Path({str(opened)!r}).write_text(sys.argv[1])") + " %s"
    target = tmp_path / "out" / "report.html"
    shown = kubeloop(drift_cluster, "drift", "report", name, "-n", ns, "-o", str(target), "--open", cwd=tmp_path,
                     env={"BROWSER": browser})
    assert shown.returncode == 0, shown.stderr
    assert target.read_text() == default.read_text()
    assert opened.read_text() == target.resolve().as_uri()


def test_report_errors_say_what_is_wrong(drift_cluster: DriftCluster, tmp_path: Path):  # noqa: F811
    cluster, ns = drift_cluster, drift_cluster.namespace()
    missing = kubeloop(cluster, "drift", "report", "nope", "-n", ns, cwd=tmp_path)
    assert missing.returncode == 1
    assert f'DriftMonitor "nope" does not exist in namespace "{ns}"' in missing.stderr
    cluster.apply("DriftMonitor", ns, "fresh", {"model": "fraud"})
    wait_for(lambda: cluster.status(ns, "fresh").get("conditions"), what="a status")
    unchecked = kubeloop(cluster, "drift", "report", "fresh", "-n", ns, cwd=tmp_path)
    assert unchecked.returncode == 1
    assert 'DriftMonitor "fresh" has no report yet: no check has finished' in unchecked.stderr
    assert not list(tmp_path.glob("*.html"))


def test_a_report_of_another_bucket_is_refused_with_the_reason():
    monitor = {"metadata": {"name": "m", "namespace": "ml"}, "status": {"reportUri": "s3://elsewhere/r.html"}}
    with pytest.raises(reports.ReportUnavailable, match='not in the object store bucket "kubeloop"'):
        reports.report_key(monitor, "kubeloop")


def test_show_before_any_check():
    text = reports.format_monitor({"metadata": {"name": "m", "namespace": "ml"}, "status": {"phase": "Pending"}})
    assert "Phase:                Pending" in text and text.endswith("No per-feature results yet.")
