"""The deployable manifests: every kustomization renders with the real kubectl, every rendered
object validates against the Kubernetes schema, custom resources against their CRD's schema,
and the pieces agree with each other and with the operator's settings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from kubeloop import crdgen
from kubeloop.core.settings import Settings
from tests.manifests.rendering import MANIFESTS, REPO, find, render

KUSTOMIZATIONS = ["", "base", "monitoring", "argocd", "samples", "overlays/kind"]
SCHEMAS = Path(__file__).parent / "schemas"

# Kinds whose schema is not in kubernetes-validate: validated against their CRD's schema.
# The PrometheusRule CRD is vendored from prometheus-operator; ServiceMonitor's CRD (~100 kB)
# and Argo CD's Application are checked against the structural schemas below, which list the
# fields these manifests use, with the CRDs' field names and types, and refuse any other field.
# The duration pattern of prometheus-operator's CRDs (interval, scrapeTimeout).
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"enum": ["monitoring.coreos.com/v1"]}, "kind": {"enum": ["ServiceMonitor"]},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
            "properties": {
                "selector": {"type": "object", "additionalProperties": False,
                             "properties": {"matchLabels": {"type": "object",
                                                            "additionalProperties": {"type": "string"}}}},
                "namespaceSelector": {"type": "object", "additionalProperties": False,
                                      "properties": {"matchNames": {"type": "array", "items": {"type": "string"}},
                                                     "any": {"type": "boolean"}}},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False, "required": ["port"],
                    "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                   "interval": {"type": "string", "pattern": DURATION},
                                   "scrapeTimeout": {"type": "string",
                                                     "pattern": DURATION},
                                   "scheme": {"enum": ["http", "https"]}}}},
            },
        },
    },
}
APPLICATION_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"enum": ["argoproj.io/v1alpha1"]}, "kind": {"enum": ["Application"]},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object", "required": ["project", "source", "destination"], "additionalProperties": False,
            "properties": {
                "project": {"type": "string"},
                "source": {"type": "object", "additionalProperties": False, "required": ["repoURL"],
                           "properties": {"repoURL": {"type": "string"}, "targetRevision": {"type": "string"},
                                          "path": {"type": "string"}}},
                "destination": {"type": "object", "additionalProperties": False,
                                "properties": {"server": {"type": "string"}, "namespace": {"type": "string"}}},
                "syncPolicy": {"type": "object", "additionalProperties": False, "properties": {
                    "automated": {"type": "object", "additionalProperties": False,
                                  "properties": {"prune": {"type": "boolean"}, "selfHeal": {"type": "boolean"}}},
                    "syncOptions": {"type": "array", "items": {"type": "string", "pattern": r"^[A-Za-z]+=\w+$"}},
                    "retry": {"type": "object", "additionalProperties": False, "properties": {
                        "limit": {"type": "integer"},
                        "backoff": {"type": "object", "additionalProperties": False, "properties": {
                            "duration": {"type": "string"}, "factor": {"type": "integer"},
                            "maxDuration": {"type": "string"}}}}}}},
            },
        },
    },
}


def kubernetes_version() -> str:
    versions = all_versions()
    return "1.37.0" if "1.37.0" in versions else versions[-1]


def rendered(path: str) -> list[dict[str, Any]]:
    return render(MANIFESTS / path)


def crd_schema(path: Path) -> dict[str, Any]:
    crd = next(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def unknown_fields(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Fields of `value` that `schema` (a CRD schema) does not declare: the API server would
    prune them silently, so a typo would pass unnoticed."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                found.append(f"{where}.{key}")
            else:
                found += unknown_fields(item, schema["properties"][key], f"{where}.{key}")
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            found += unknown_fields(item, schema["additionalProperties"], f"{where}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{where}[{index}]")
    return found


def custom_resource_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {("monitoring.coreos.com/v1", "PrometheusRule"):
               crd_schema(SCHEMAS / "monitoring.coreos.com_prometheusrules.yaml"),
               ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR_SCHEMA,
               ("argoproj.io/v1alpha1", "Application"): APPLICATION_SCHEMA}
    for path in sorted((MANIFESTS / "base" / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        schemas[(f"{crd['spec']['group']}/v1alpha1", crd["spec"]["names"]["kind"])] = crd_schema(path)
    return schemas


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_kustomization_renders_and_every_object_validates(path: str) -> None:
    objects = rendered(path)
    assert objects, f"manifests/{path} renders nothing"
    schemas = custom_resource_schemas()
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if key in schemas:
            # OpenAPI v3.0 schemas follow JSON Schema draft 4 (boolean exclusiveMinimum).
            errors = [e.message for e in jsonschema.Draft4Validator(schemas[key]).iter_errors(obj)]
            assert not errors, f"{name}: {errors}"
            assert not unknown_fields(obj, schemas[key]), f"{name}: {unknown_fields(obj, schemas[key])}"
        else:
            kubernetes_validate.validate(obj, kubernetes_version(), strict=True)


def test_validation_catches_a_broken_object() -> None:
    deployment = find(rendered("base"), "Deployment", "kubeloop-operator")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_version(), strict=True)
    rule = find(rendered("monitoring"), "PrometheusRule", "kubeloop")
    rule["spec"]["groups"][1]["rules"][0]["fore"] = "5m"
    assert unknown_fields(rule, custom_resource_schemas()[("monitoring.coreos.com/v1", "PrometheusRule")])


def test_the_full_install_is_base_plus_monitoring() -> None:
    def names(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(o["kind"], o["metadata"]["name"]) for o in objects}

    assert names(rendered("")) == names(rendered("base")) | names(rendered("monitoring"))


def test_the_crds_in_the_manifests_are_the_generated_ones() -> None:
    problems = crdgen.check(MANIFESTS / "base" / "crds", "python -m kubeloop.crdgen --output manifests/base/crds")
    assert not problems, "\n".join(problems)
    for path in (REPO / "crds").glob("*.yaml"):
        assert (MANIFESTS / "base" / "crds" / path.name).read_text() == path.read_text()


def test_crds_come_first_in_argocd_sync_waves() -> None:
    objects = rendered("")
    waves = {(o["kind"], o["metadata"]["name"]):
             int((o["metadata"].get("annotations") or {}).get("argocd.argoproj.io/sync-wave", "0"))
             for o in objects}
    crd_waves = {wave for (kind, _), wave in waves.items() if kind == "CustomResourceDefinition"}
    other_waves = {wave for (kind, _), wave in waves.items() if kind != "CustomResourceDefinition"}
    assert len(crd_waves) == 1 and max(crd_waves) < min(other_waves)
    for sample in rendered("samples"):
        annotations = sample["metadata"]["annotations"]
        assert int(annotations["argocd.argoproj.io/sync-wave"]) > max(other_waves)
        assert annotations["argocd.argoproj.io/sync-options"] == "SkipDryRunOnMissingResource=true"


def test_deployment_matches_the_operator_settings() -> None:
    objects = rendered("")
    deployment = find(objects, "Deployment", "kubeloop-operator")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    defaults = Settings()
    env = {e["name"]: e["value"] for e in container["env"]}
    assert Settings.from_env(env).images == defaults.images
    assert Settings.from_env(env).object_store == defaults.object_store
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": defaults.metrics_port, "health": defaults.health_port}
    assert "command" not in container and "args" not in container, "the image's entrypoint runs the operator"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert defaults.peering_name is None, "one replica with Recreate assumes a standalone operator"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    service = find(objects, "Service", "kubeloop-operator-metrics")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    monitor = find(objects, "ServiceMonitor", "kubeloop-operator")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    binding = find(objects, "ClusterRoleBinding", "kubeloop-operator")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": pod["serviceAccountName"],
                                    "namespace": deployment["metadata"]["namespace"]}]


def test_operator_pod_meets_the_restricted_pod_security_standard() -> None:
    objects = rendered("")
    namespace = find(objects, "Namespace", "kubeloop-system")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = find(objects, "Deployment", "kubeloop-operator")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["readOnlyRootFilesystem"] is True


def test_alerts_and_dashboard_use_only_metrics_that_exist() -> None:
    # The operator's metrics (core/metrics.py), the drift figures, the model server's
    # (contracts), Prometheus' own `up`, and the recording rule.
    known = {"up", "kubeloop_reconciles_total", "kubeloop_reconcile_duration_seconds_bucket",
             "kubeloop_resources", "kubeloop_drift_share", "kubeloop_drift_detected",
             "kubeloop_drift_checks_total", "kubeloop_retrains_total", "kubeloop_drift_feature_statistic",
             "kubeloop_server_requests_total", "kubeloop_server_request_duration_seconds_bucket",
             "kubeloop_server_errors_total", "kubeloop_server_prediction_bucket",
             "kubeloop_server_prediction_log_rows_total", "kubeloop:trainingruns_failed:count"}
    dashboard = json.loads(find(rendered("monitoring"), "ConfigMap", "kubeloop-grafana-dashboard")
                           ["data"]["kubeloop.json"])
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    rule = find(rendered("monitoring"), "PrometheusRule", "kubeloop")
    exprs += [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
    functions = {"sum", "rate", "increase", "max", "by", "histogram_quantile", "or", "vector", "and", "on",
                 "absent", "min_over_time", "max_over_time", "le", "offset"}
    for expr in exprs:
        without_strings = re.sub(r'"[^"]*"|\{[^}]*\}|\[[^]]*\]', "", expr)
        names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_strings)) - functions
        labels = {"kind", "result", "phase", "namespace", "monitor", "verdict", "model", "model_version",
                  "code", "outcome", "feature", "method"}
        assert names - labels <= known, f"{expr}: unknown metrics {sorted(names - labels - known)}"
    assert dashboard["uid"] == "kubeloop"
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_kind_overlay_wires_the_object_store() -> None:
    objects = rendered("overlays/kind")
    service = find(objects, "Service", "kubeloop-s3")
    endpoint = f"http://{service['metadata']['name']}.{service['metadata']['namespace']}:" \
               f"{service['spec']['ports'][0]['port']}"
    assert endpoint == Settings().object_store.endpoint
    secret = find(objects, "Secret", Settings().object_store.secret_name)
    config = json.loads(__import__("base64").b64decode(
        find(objects, "Secret", "kubeloop-s3-config")["data"]["s3.json"]))
    credentials = config["identities"][0]["credentials"][0]
    decoded = {k: __import__("base64").b64decode(v).decode() for k, v in secret["data"].items()}
    assert (decoded["accessKey"], decoded["secretKey"]) == (credentials["accessKey"], credentials["secretKey"])
