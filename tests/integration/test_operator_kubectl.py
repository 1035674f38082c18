"""The foundation end to end: real kubectl and the real operator process against the local
API server, with the generated CRDs and the samples of manifests/samples/."""

from __future__ import annotations

import copy
import urllib.request
from typing import Any

import pytest
import yaml

from tests.conftest import KubectlCLI
from tests.integration.conftest import REPO, wait_for

pytestmark = pytest.mark.integration

SAMPLES = sorted((REPO / "manifests" / "samples").glob("*.yaml"))
KINDS = {"FeatureSet": "featuresets", "TrainingRun": "trainingruns",
         "ModelVersion": "modelversions", "DriftMonitor": "driftmonitors"}


def load_samples() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in SAMPLES:
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def sample(kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(doc for doc in load_samples() if doc["kind"] == kind))


def status_of(kubectl: KubectlCLI, plural: str, name: str, namespace: str) -> dict[str, Any]:
    obj = kubectl.json("get", plural, name, "-n", namespace)
    return obj.get("status") or {}


def condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), None)


@pytest.fixture()
def applied_samples(operator_process: Any, kubectl_session: KubectlCLI, namespace: str) -> str:
    kubectl_session("apply", "-n", namespace, "-f", str(REPO / "manifests" / "samples"))
    return namespace


def test_every_kind_has_a_sample():
    assert {doc["kind"] for doc in load_samples()} >= set(KINDS)


def test_crds_are_established_and_discoverable(crds_installed: None, kubectl_session: KubectlCLI):
    resources = kubectl_session("api-resources", "--api-group=kubeloop.dev", "-o", "wide").stdout
    for plural, short in [("featuresets", "fs"), ("trainingruns", "tr"), ("modelversions", "mv"),
                          ("driftmonitors", "dm")]:
        line = next(line for line in resources.splitlines() if line.startswith(plural))
        assert f" {short} " in f" {line} ", line
        assert "kubeloop" in line  # category


def test_samples_are_reconciled_and_listed_by_category(applied_samples: str, kubectl_session: KubectlCLI):
    ns = applied_samples
    for doc in load_samples():
        plural, name = KINDS[doc["kind"]], doc["metadata"]["name"]
        status = wait_for(lambda p=plural, n=name: status_of(kubectl_session, p, n, ns).get("observedGeneration"),
                          what=f"{plural}/{name} to be reconciled")
        assert status == 1
        status = status_of(kubectl_session, plural, name, ns)
        accepted = condition(status, "Accepted")
        assert accepted is not None and accepted["status"] == "True", status
        assert condition(status, "Ready") is not None
        assert status["phase"] == "Pending"
    listing = kubectl_session("get", "kubeloop", "-n", ns).stdout
    for doc in load_samples():
        assert doc["metadata"]["name"] in listing
    for plural in KINDS.values():
        assert plural.removesuffix("s") in listing.lower()


def test_get_wide_shows_printer_columns_from_status(applied_samples: str, kubectl_session: KubectlCLI):
    ns = applied_samples
    tr = sample("TrainingRun")
    wait_for(lambda: status_of(kubectl_session, "tr", tr["metadata"]["name"], ns).get("phase"),
             what="TrainingRun phase")
    crd = kubectl_session.json("get", "crd", "trainingruns.kubeloop.dev")
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    table = kubectl_session("get", "tr", "-n", ns, "-o", "wide").stdout.splitlines()
    header = table[0].split()
    for column in columns:
        assert column.upper().split()[0] in header, (column, header)
    row = next(line for line in table[1:] if line.startswith(tr["metadata"]["name"]))
    assert "Pending" in row.split()


def test_explain_shows_field_descriptions(crds_installed: None, kubectl_session: KubectlCLI):
    text = kubectl_session("explain", "trainingrun.spec").stdout
    assert "KIND:       TrainingRun" in text or "KIND:" in text
    assert "workers" in text
    assert "featureSetRef" in text
    nested = kubectl_session("explain", "trainingrun.spec.featureSetRef").stdout
    assert "name" in nested


def test_get_yaml_update_and_delete(applied_samples: str, kubectl_session: KubectlCLI):
    ns = applied_samples
    tr = sample("TrainingRun")
    name = tr["metadata"]["name"]
    wait_for(lambda: status_of(kubectl_session, "tr", name, ns).get("observedGeneration"), what="first pass")
    obj = yaml.safe_load(kubectl_session("get", "tr", name, "-n", ns, "-o", "yaml").stdout)
    assert obj["metadata"]["uid"] and obj["metadata"]["generation"] == 1
    # No finalizer: children are garbage-collected through ownerReferences, and a finalizer
    # would cost a write per object (docs/performance.md).
    assert not obj["metadata"].get("finalizers")

    kubectl_session("patch", "tr", name, "-n", ns, "--type=merge", "-p", '{"spec": {"seed": 1234}}')
    wait_for(lambda: status_of(kubectl_session, "tr", name, ns).get("observedGeneration") == 2,
             what="observedGeneration to follow the spec change")

    kubectl_session("delete", "tr", name, "-n", ns, "--timeout=60s")
    gone = kubectl_session("get", "tr", name, "-n", ns, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_schema_violation_is_refused_by_the_server_naming_the_field(
        crds_installed: None, kubectl_session: KubectlCLI, namespace: str):
    tr = sample("TrainingRun")
    tr["metadata"] = {"name": "too-few-workers", "namespace": namespace}
    tr["spec"]["workers"] = 0
    result = kubectl_session.apply(tr, check=False)
    assert result.returncode != 0
    assert "spec.workers" in result.stderr
    assert kubectl_session("get", "tr", "too-few-workers", "-n", namespace, check=False).returncode != 0


def test_unknown_field_is_refused_by_strict_validation(crds_installed: None, kubectl_session: KubectlCLI,
                                                        namespace: str):
    fs = sample("FeatureSet")
    fs["metadata"] = {"name": "typo", "namespace": namespace}
    fs["spec"]["sheduel"] = "@daily"
    result = kubectl_session.apply(fs, check=False)
    assert result.returncode != 0
    assert 'unknown field "spec.sheduel"' in result.stderr


def test_semantically_invalid_spec_gets_invalid_spec_condition_and_others_keep_working(
        operator_process: Any, kubectl_session: KubectlCLI, namespace: str):
    bad = sample("FeatureSet")
    bad["metadata"] = {"name": "bad-schedule", "namespace": namespace}
    bad["spec"]["schedule"] = "every tuesday"
    kubectl_session.apply(bad)
    good = sample("FeatureSet")
    good["metadata"] = {"name": "good", "namespace": namespace}
    kubectl_session.apply(good)

    status = wait_for(lambda: status_of(kubectl_session, "fs", "bad-schedule", namespace).get("conditions"),
                      what="InvalidSpec condition")
    ready = next(c for c in status if c["type"] == "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "InvalidSpec"
    assert "spec.schedule" in ready["message"]
    assert "every tuesday" in ready["message"]
    assert status_of(kubectl_session, "fs", "bad-schedule", namespace)["phase"] == "Failed"
    wait_for(lambda: status_of(kubectl_session, "fs", "good", namespace).get("phase") == "Pending",
             what="the valid FeatureSet to be reconciled too")

    # Fixing the spec clears the condition.
    kubectl_session("patch", "fs", "bad-schedule", "-n", namespace, "--type=merge",
                    "-p", '{"spec": {"schedule": "0 * * * *"}}')
    wait_for(lambda: (condition(status_of(kubectl_session, "fs", "bad-schedule", namespace), "Ready") or {})
             .get("reason") != "InvalidSpec", what="InvalidSpec to clear after the fix")
    events = kubectl_session("get", "events", "-n", namespace,
                             "--field-selector", "involvedObject.name=bad-schedule").stdout
    assert "InvalidSpec" in events


def test_metrics_endpoint_counts_reconciles_and_phases(applied_samples: str, operator_process: dict[str, Any],
                                                       kubectl_session: KubectlCLI):
    name = sample("DriftMonitor")["metadata"]["name"]
    wait_for(lambda: status_of(kubectl_session, "dm", name, applied_samples).get("phase"), what="dm phase")
    # The phase gauge follows the watch event of the status write, which may come after the status
    # is readable: wait for the line rather than reading once.
    expected = ('kubeloop_reconciles_total{kind="DriftMonitor",result="ok"}',
                'kubeloop_resources{kind="DriftMonitor",phase="Pending"}')

    def scraped() -> str | None:
        text = _scrape(operator_process["metrics_url"])
        return text if all(line in text for line in expected) else None

    text = wait_for(scraped, what="the DriftMonitor's reconcile and phase metrics")
    assert "kubeloop_reconcile_duration_seconds_bucket" in text


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        return response.read().decode()



def test_gate_naming_no_metric_gets_invalid_spec(operator_process: Any, kubectl_session: KubectlCLI,
                                                 namespace: str):
    mv = sample("ModelVersion")
    mv["metadata"] = {"name": "no-metric", "namespace": namespace}
    mv["spec"]["gates"] = [{"min": 0.9}]
    kubectl_session.apply(mv)
    ready = wait_for(lambda: condition(status_of(kubectl_session, "mv", "no-metric", namespace), "Ready"),
                     what="Ready condition")
    assert ready["reason"] == "InvalidSpec"
    assert "spec.gates[0]" in ready["message"]
