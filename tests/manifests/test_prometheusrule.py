"""The PrometheusRule's expressions and alerts, tested for real with promtool: its rule groups
are written to a rules file, `promtool check rules` parses them, and `promtool test rules` runs
tests/manifests/promtool/kubeloop-alerts.test.yaml, where each alert fires in one case and
stays silent in another."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.manifests.rendering import MANIFESTS, find, render

TESTS = Path(__file__).parent / "promtool" / "kubeloop-alerts.test.yaml"
RULES_FILE = "kubeloop-alerts.rules.yaml"


def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        # `make test` installs it (.ci/system-deps.sh); a missing binary is a failed set-up.
        pytest.fail("promtool is not installed: run .ci/system-deps.sh as root (Debian's prometheus package)")
    return binary


def rule_groups() -> dict[str, Any]:
    rule = find(render(MANIFESTS / "monitoring"), "PrometheusRule", "kubeloop")
    return {"groups": rule["spec"]["groups"]}


def alerts() -> list[str]:
    return [r["alert"] for group in rule_groups()["groups"] for r in group["rules"] if "alert" in r]


def without_annotations(groups: dict[str, Any]) -> dict[str, Any]:
    """The groups without alert annotations: promtool's unit tests compare annotations
    verbatim, and the cases are about when alerts fire. `promtool check rules` still parses the
    annotation templates (test_promtool_checks_the_rules)."""
    return {"groups": [{**group, "rules": [{k: v for k, v in rule.items() if k != "annotations"}
                                            for rule in group["rules"]]}
                       for group in groups["groups"]]}


@pytest.fixture()
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump(rule_groups(), sort_keys=False))
    (tmp_path / "unit").mkdir()
    (tmp_path / "unit" / RULES_FILE).write_text(yaml.safe_dump(without_annotations(rule_groups()), sort_keys=False))
    shutil.copy(TESTS, tmp_path / "unit" / TESTS.name)
    return tmp_path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules(rules_dir: Path) -> None:
    result = run("check", "rules", RULES_FILE, cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass(rules_dir: Path) -> None:
    result = run("test", "rules", TESTS.name, cwd=rules_dir / "unit")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_fails_a_wrong_expectation(rules_dir: Path) -> None:
    # The unit tests can fail: flip one expectation and promtool must say so.
    tests = yaml.safe_load(TESTS.read_text())
    first = tests["tests"][0]["alert_rule_test"][0]
    first["exp_alerts"] = []
    (rules_dir / "unit" / TESTS.name).write_text(yaml.safe_dump(tests))
    result = run("test", "rules", TESTS.name, cwd=rules_dir / "unit")
    assert result.returncode != 0


def test_every_alert_is_tested_firing_and_silent() -> None:
    cases = [case for test in yaml.safe_load(TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert sorted(alerts()) == sorted(set(alerts()))
    assert set(alerts()) == fired, "every alert needs a case where it fires"
    assert set(alerts()) == silent, "every alert needs a case where it must not fire"


def test_the_alerts_the_operations_guide_promises() -> None:
    assert set(alerts()) == {"KubeloopOperatorDown", "KubeloopReconcileErrors", "KubeloopTrainingFailed",
                             "KubeloopRetrainFailed", "KubeloopDriftDetected"}
    for group in rule_groups()["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["labels"]["severity"] in {"warning", "critical"}
                assert rule["annotations"]["summary"] and rule["annotations"]["description"]
