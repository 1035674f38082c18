"""The generated CRDs: up to date, structural, valid for Kubernetes, with printer columns that
point at real fields, and every sample valid against its CRD's schema."""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from kubeloop import API_VERSION, GROUP, VERSION
from kubeloop.core.apimodel import SpecError, parse_spec
from kubeloop.crdgen import (
    SchemaError,
    custom_resource_definition,
    file_name,
    generate,
    main,
    resources,
    structural_schema,
)

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
SAMPLES = REPO / "manifests" / "samples"
RESOURCES = {resource.kind: resource for resource in resources()}


def committed_crd(kind: str) -> dict[str, Any]:
    return yaml.safe_load((CRDS / file_name(RESOURCES[kind])).read_text())


def openapi_schema(kind: str) -> dict[str, Any]:
    return committed_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def sample(kind: str) -> dict[str, Any]:
    return yaml.safe_load((SAMPLES / f"{kind.lower()}.yaml").read_text())


# -- --check --------------------------------------------------------------------------------


def test_committed_crds_are_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check"]) == 0, capsys.readouterr().err


def test_check_fails_on_a_changed_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(CRDS, tmp_path / "crds")
    assert main(["--check", "--output", str(tmp_path / "crds")]) == 0
    changed = tmp_path / "crds" / "trainingruns.kubeloop.dev.yaml"
    changed.write_text(changed.read_text().replace("name: Workers", "name: Replicas"))
    capsys.readouterr()
    assert main(["--check", "--output", str(tmp_path / "crds")]) == 1
    err = capsys.readouterr().err
    assert "trainingruns.kubeloop.dev.yaml is out of date" in err
    assert "python -m kubeloop.crdgen --output" in err
    assert "-      name: Replicas" in err and "+      name: Workers" in err


def test_check_fails_on_a_missing_or_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "crds"
    assert main(["--output", str(out)]) == 0
    (out / "featuresets.kubeloop.dev.yaml").unlink()
    assert main(["--check", "--output", str(out)]) == 1
    assert "featuresets.kubeloop.dev.yaml is missing" in capsys.readouterr().err
    assert main(["--output", str(out)]) == 0
    # A generated file whose kind no longer exists is stale; regenerating removes it.
    stale = out / "widgets.kubeloop.dev.yaml"
    stale.write_text((out / "featuresets.kubeloop.dev.yaml").read_text())
    assert main(["--check", "--output", str(out)]) == 1
    assert (
        "widgets.kubeloop.dev.yaml was generated for a kind that no longer exists" in capsys.readouterr().err
    )
    assert main(["--output", str(out)]) == 0
    assert not stale.exists()
    assert main(["--check", "--output", str(out)]) == 0


def test_generation_is_deterministic_and_writes_one_file_per_kind(tmp_path: Path) -> None:
    assert generate() == generate()
    main(["--output", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{plural}.kubeloop.dev.yaml"
        for plural in ("featuresets", "trainingruns", "modelversions", "driftmonitors")
    )
    assert sorted(p.name for p in CRDS.glob("*.yaml")) == sorted(p.name for p in tmp_path.iterdir())


# -- shape of the CRDs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "short"),
    [("FeatureSet", "fs"), ("TrainingRun", "tr"), ("ModelVersion", "mv"), ("DriftMonitor", "dm")],
)
def test_crd_names_scope_and_version(kind: str, short: str) -> None:
    crd = committed_crd(kind)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1" and crd["kind"] == "CustomResourceDefinition"
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{GROUP}"
    assert spec["group"] == GROUP and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind and spec["names"]["listKind"] == f"{kind}List"
    assert spec["names"]["shortNames"] == [short] and spec["names"]["categories"] == ["kubeloop"]
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}
    root = version["schema"]["openAPIV3Schema"]
    assert root["type"] == "object" and root["required"] == ["spec"]
    assert root["properties"]["metadata"] == {"type": "object"}
    assert {"apiVersion", "kind", "metadata", "spec", "status"} == set(root["properties"])
    assert root["description"]


def _kubernetes_version() -> str:
    # kubernetes-validate ships schemas up to a Kubernetes release; 1.37 is what the dev
    # dependency pins today, the newest shipped one otherwise.
    versions = all_versions()
    return "1.37.0" if "1.37.0" in versions else versions[-1]


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_crd_is_valid_for_kubernetes(kind: str) -> None:
    # strict: additionalProperties false everywhere, so a misspelled schema key fails too.
    kubernetes_validate.validate(committed_crd(kind), _kubernetes_version(), strict=True)


def test_kubernetes_validate_catches_a_broken_crd() -> None:
    crd = committed_crd("TrainingRun")
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["nullabel"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(crd, _kubernetes_version(), strict=True)


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")
    for i, option in enumerate(node.get("anyOf", [])):
        yield from walk(option, f"{path}|{i}")


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_schema_is_structural(kind: str) -> None:
    problems = []
    for path, node in walk(openapi_schema(kind)):
        if "$ref" in node or "$defs" in node:
            problems.append(f"{path}: $ref")
        if "title" in node or "const" in node or "allOf" in node or "oneOf" in node:
            problems.append(f"{path}: JSON-Schema-only keyword")
        if node.get("additionalProperties") is False or "uniqueItems" in node:
            problems.append(f"{path}: forbidden in CRDs")
        for key in ("exclusiveMinimum", "exclusiveMaximum", "nullable"):
            if key in node and not isinstance(node[key], bool):
                problems.append(f"{path}: {key} must be a boolean")
        if "|" in path:  # inside an int-or-string anyOf: only the type
            if set(node) != {"type"}:
                problems.append(f"{path}: anyOf branches may only hold a type")
            continue
        if node.get("x-kubernetes-int-or-string"):
            if node.get("anyOf") != [{"type": "integer"}, {"type": "string"}] or "type" in node:
                problems.append(f"{path}: malformed int-or-string")
        elif "anyOf" in node:
            problems.append(f"{path}: anyOf outside int-or-string")
        elif "type" not in node:
            problems.append(f"{path}: no type")
        if node.get("nullable") and "enum" in node:
            problems.append(f"{path}: nullable enum (kube refuses an explicit null)")
        if node.get("x-kubernetes-preserve-unknown-fields") and node.get("type") != "object":
            problems.append(f"{path}: preserve-unknown-fields without type object")
        if (
            node.get("type") == "object"
            and not (
                "properties" in node
                or "additionalProperties" in node
                or node.get("x-kubernetes-preserve-unknown-fields")
            )
            and path != ".metadata"
        ):
            problems.append(f"{path}: an object with no properties would be pruned to {{}}")
    assert problems == []


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_free_form_fields_are_few_and_intended(kind: str) -> None:
    free = [
        path for path, node in walk(openapi_schema(kind)) if node.get("x-kubernetes-preserve-unknown-fields")
    ]
    expected = {
        "FeatureSet": [],
        "TrainingRun": [".spec.hyperparameters"],
        "ModelVersion": [],
        "DriftMonitor": [],
    }
    assert free == expected[kind]


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_defaults_are_valid_and_only_in_spec(kind: str) -> None:
    schema = openapi_schema(kind)
    for path, node in walk(schema):
        if "default" in node:
            assert not path.startswith(".status"), path
            assert schema_problems(node["default"], node, path) == []
    # Spot checks that defaults did reach the schema, so the API server fills them in.
    defaults = {path: node["default"] for path, node in walk(schema) if "default" in node}
    expected_by_kind: dict[str, dict[str, Any]] = {
        "FeatureSet": {".spec.validation.uniqueKeys": True, ".spec.resources.memory": "2Gi"},
        "TrainingRun": {
            ".spec.workers": 1,
            ".spec.seed": 42,
            ".spec.backoffLimit": 0,
            ".spec.maxRestarts": 2,
        },
        "ModelVersion": {".spec.serving.enabled": True, ".spec.serving.rollout.interval": "5m"},
        "DriftMonitor": {".spec.method": "auto", ".spec.correction": "fdr", ".spec.thresholds.pValue": 0.05},
    }
    expected = expected_by_kind[kind]
    assert {path: defaults.get(path) for path in expected} == expected


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_every_field_is_explained(kind: str) -> None:
    # `kubectl explain` shows these descriptions; a field without one is a dead end.
    schema = openapi_schema(kind)
    undocumented = [
        path
        for path, node in walk(schema)
        if path.startswith((".spec.", ".status."))
        and not path.endswith(("[]", "}"))
        and "|" not in path
        and not node.get("description")
    ]
    assert undocumented == []


def test_schema_carries_enums_bounds_patterns_and_nullable() -> None:
    spec = openapi_schema("DriftMonitor")["properties"]["spec"]["properties"]
    assert spec["method"]["enum"] == ["auto", "ks", "psi", "chi2", "wasserstein", "jensenshannon"]
    assert spec["driftShare"] == spec["driftShare"] | {"minimum": 0, "exclusiveMinimum": True, "maximum": 1}
    assert spec["modelVersionRef"]["nullable"] is True and spec["modelVersionRef"]["type"] == "object"
    assert spec["model"]["pattern"] == "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    steps = openapi_schema("ModelVersion")["properties"]["spec"]["properties"]["serving"]["properties"][
        "rollout"
    ]
    assert steps["properties"]["steps"]["items"] == {"type": "integer", "minimum": 1, "maximum": 100}
    conditions = openapi_schema("TrainingRun")["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map" and conditions["x-kubernetes-list-map-keys"] == [
        "type"
    ]
    assert conditions["items"]["properties"]["status"]["enum"] == ["True", "False", "Unknown"]


def test_unsupported_model_shapes_are_refused() -> None:
    from pydantic import BaseModel

    class Union(BaseModel):
        value: int | str

    class FreeMap(BaseModel):
        value: dict[str, Any]

    with pytest.raises(SchemaError, match="unions other than Optional"):
        structural_schema(Union)
    with pytest.raises(SchemaError, match="free-form map must be marked"):
        structural_schema(FreeMap)


# -- printer columns ------------------------------------------------------------------------


def _schema_at(root: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = root
    for part in json_path.lstrip(".").split("."):
        if node is None or part not in node.get("properties", {}):
            return None
        node = node["properties"][part]
    return node


COLUMN_TYPES = {
    "integer": {"integer"},
    "number": {"number", "integer"},
    "string": {"string"},
    "boolean": {"boolean"},
}


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_printer_columns_point_at_existing_fields(kind: str) -> None:
    version = committed_crd(kind)["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    columns = version["additionalPrinterColumns"]
    assert columns[0]["name"] in ("Phase", "Model") and columns[-1]["name"] == "Age"
    for column in columns:
        assert re.fullmatch(r"(\.[A-Za-z]+)+", column["jsonPath"]), column
        if column["jsonPath"] == ".metadata.creationTimestamp":
            continue
        node = _schema_at(root, column["jsonPath"])
        assert node is not None, f"{kind} column {column['name']}: {column['jsonPath']} is not in the schema"
        if column["type"] == "date":
            assert node.get("format") == "date-time", column
        else:
            assert node["type"] in COLUMN_TYPES[column["type"]], column


EXPECTED_COLUMNS = {
    "FeatureSet": ["Phase", "Version", "Rows", "Age"],
    "TrainingRun": ["Phase", "Workers", "Progress", "Metric", "Value", "Attempts", "Age"],
    "ModelVersion": ["Model", "Phase", "Traffic", "Champion", "Age"],
    "DriftMonitor": ["Model", "Phase", "Drifted", "Share", "Last Check", "Retrains", "Age"],
}
EXPECTED_WIDE = {
    "FeatureSet": ["Schedule", "Materialized"],
    "TrainingRun": ["Epoch", "FeatureSet", "Data", "Artifact"],
    "ModelVersion": ["TrainingRun", "URL"],
    "DriftMonitor": ["ModelVersion", "Samples"],
}


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_kubectl_get_columns(kind: str) -> None:
    columns = committed_crd(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns if not c.get("priority")] == EXPECTED_COLUMNS[kind]
    assert [c["name"] for c in columns if c.get("priority")] == EXPECTED_WIDE[kind]


# -- samples against the schema -------------------------------------------------------------


def schema_problems(value: Any, node: dict[str, Any], path: str) -> list[str]:
    """What the API server's structural validation would refuse in `value` (no jsonschema:
    the subset of OpenAPI v3 the generator emits, which the structure test pins down)."""
    if value is None:
        # A null in a non-nullable field is pruned (or defaulted) before validation; in a
        # nullable enum it is checked against the enum, which never lists null.
        return [f"{path}: null is not in {node['enum']}"] if node.get("nullable") and "enum" in node else []
    if node.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            return [f"{path}: must be an integer or a string"]
        if isinstance(value, str) and "pattern" in node and not re.search(node["pattern"], value):
            return [f"{path}: does not match {node['pattern']}"]
        return []
    kind = node["type"]
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    if not checks[kind](value):
        return [f"{path}: must be of type {kind}"]
    problems: list[str] = []
    if "enum" in node and value not in node["enum"]:
        problems.append(f"{path}: {value!r} not in {node['enum']}")
    if kind == "string":
        if "pattern" in node and not re.search(node["pattern"], value):
            problems.append(f"{path}: does not match {node['pattern']}")
        if len(value) < node.get("minLength", 0) or len(value) > node.get("maxLength", len(value)):
            problems.append(f"{path}: length out of bounds")
    if kind in ("integer", "number"):
        if "minimum" in node and (
            value < node["minimum"] or (node.get("exclusiveMinimum") and value == node["minimum"])
        ):
            problems.append(f"{path}: below minimum")
        if "maximum" in node and (
            value > node["maximum"] or (node.get("exclusiveMaximum") and value == node["maximum"])
        ):
            problems.append(f"{path}: above maximum")
    if kind == "array":
        if len(value) < node.get("minItems", 0) or len(value) > node.get("maxItems", len(value)):
            problems.append(f"{path}: item count out of bounds")
        for i, item in enumerate(value):
            problems += schema_problems(item, node["items"], f"{path}[{i}]")
    if kind == "object":
        properties = node.get("properties", {})
        for name in node.get("required", []):
            if name not in value:
                problems.append(f"{path}.{name}: required")
        for name, item in value.items():
            if name in properties:
                problems += schema_problems(item, properties[name], f"{path}.{name}")
            elif isinstance(node.get("additionalProperties"), dict):
                problems += schema_problems(item, node["additionalProperties"], f"{path}.{name}")
            elif not node.get("x-kubernetes-preserve-unknown-fields") and path != ".metadata":
                problems.append(f"{path}.{name}: unknown field")
    return problems


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_sample_is_valid_for_its_crd(kind: str) -> None:
    document = sample(kind)
    assert document["apiVersion"] == API_VERSION and document["kind"] == kind
    assert schema_problems(document, openapi_schema(kind), "") == []
    parse_spec(RESOURCES[kind], document["spec"])  # and for the operator


@pytest.mark.parametrize(
    ("kind", "path", "value", "problem"),
    [
        ("TrainingRun", ("spec", "workers"), 0, ".spec.workers: below minimum"),
        ("TrainingRun", ("spec", "colour"), "blue", ".spec.colour: unknown field"),
        ("TrainingRun", ("spec", "resources", "cpu"), "2 cores", ".spec.resources.cpu: does not match"),
        (
            "ModelVersion",
            ("spec", "serving", "rollout", "steps"),
            [10, 150],
            ".spec.serving.rollout.steps[1]: above maximum",
        ),
        ("DriftMonitor", ("spec", "method"), "t-test", ".spec.method: 't-test' not in"),
        ("FeatureSet", ("spec", "features"), [], ".spec.features: item count out of bounds"),
    ],
)
def test_the_schema_refuses_what_it_should(
    kind: str, path: tuple[str, ...], value: Any, problem: str
) -> None:
    document = copy.deepcopy(sample(kind))
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    problems = schema_problems(document, openapi_schema(kind), "")
    assert any(p.startswith(problem) for p in problems), problems


def test_missing_required_field_is_refused_by_the_schema() -> None:
    document = copy.deepcopy(sample("TrainingRun"))
    del document["spec"]["target"]
    assert ".spec.target: required" in schema_problems(document, openapi_schema("TrainingRun"), "")


SEMANTIC_ONLY = [
    ("FeatureSet", ("spec", "schedule"), "not a cron"),
    ("FeatureSet", ("spec", "ttl"), "1h 30m"),
    ("ModelVersion", ("spec", "gates"), [{"min": 0.9}]),
    ("ModelVersion", ("spec", "gates"), [{"metric": "auc"}]),
    ("ModelVersion", ("spec", "serving", "rollout", "steps"), [50, 10]),
    ("DriftMonitor", ("spec", "window"), "a day"),
    ("TrainingRun", ("spec", "hyperparameters", "learningRate"), -1),
]


@pytest.mark.parametrize(("kind", "path", "value"), SEMANTIC_ONLY)
def test_semantic_rules_do_not_leak_into_the_schema(kind: str, path: tuple[str, ...], value: Any) -> None:
    # The API server accepts these (they satisfy the schema); the operator then reports
    # InvalidSpec naming the field. Were the rule in the schema, kubectl apply would fail.
    document = copy.deepcopy(sample(kind))
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert schema_problems(document, openapi_schema(kind), "") == []
    with pytest.raises(SpecError) as caught:
        parse_spec(RESOURCES[kind], document["spec"])
    assert caught.value.field_path.startswith(".".join(path[:2]))


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_sample_is_valid_for_the_local_api_server(kind: str) -> None:
    # The local API server validates custom resources with its own structural-schema code;
    # the samples must pass it too (skipped until that module exists).
    schema_module = pytest.importorskip("kubeloop.local.schema")
    document = sample(kind)
    assert schema_module.validate(document, openapi_schema(kind)) == []


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_schema_is_structural_for_the_local_api_server(kind: str) -> None:
    schema_module = pytest.importorskip("kubeloop.local.schema")
    assert schema_module.structural_schema_problems(openapi_schema(kind)) == []


def test_explicit_nulls_mean_unset() -> None:
    # `format: null` (an Optional enum) and `featureSetVersion: null` (an Optional string)
    # reach the operator as unset, and neither is refused by the API server's validation.
    schema_module = pytest.importorskip("kubeloop.local.schema")
    document = copy.deepcopy(sample("TrainingRun"))
    document["spec"]["featureSetVersion"] = None
    document["spec"]["model"]["family"] = None
    document["spec"]["labels"] = {
        "uri": "s3://kubeloop-data/labels/*.parquet",
        "format": None,
        "timestampColumn": "t",
    }
    schema = openapi_schema("TrainingRun")
    stored = schema_module.apply_defaults(schema_module.prune(document, schema)[0], schema)
    assert schema_module.validate(stored, schema) == []
    assert schema_problems(document, schema, "") == []
    spec = parse_spec(RESOURCES["TrainingRun"], stored["spec"])
    assert spec.feature_set_version is None and spec.model.family is None  # type: ignore[attr-defined]


def test_generated_matches_the_in_memory_definition() -> None:
    for resource in resources():
        assert yaml.safe_load(generate()[file_name(resource)]) == custom_resource_definition(resource)
