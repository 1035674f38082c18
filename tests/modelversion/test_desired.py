"""The model's InferenceService as built by `modelversion.desired`: golden files, KServe's
v1beta1 schema (the kserve SDK's generated models, with the Kubernetes models for pod fields),
and the server's contract.

Golden files live in tests/modelversion/golden/; regenerate them with

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/modelversion/test_desired.py

and review the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import kserve.models
import kubernetes.client.models
import pytest
import yaml

from kubeloop.core.settings import Images, ObjectStore, Settings
from kubeloop.modelversion import desired
from kubeloop.modelversion.api import Serving

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
SETTINGS = Settings(images=Images(server="ghcr.io/kubeloop/server:0.1.0"),
                    object_store=ObjectStore(endpoint="http://kubeloop-s3.kubeloop-system:8333", bucket="kubeloop",
                                             secret_name="kubeloop-s3", region="us-east-1"))
DIGEST = "sha256:5b0e3c4f1a2d9e8b7c6a5f4e3d2c1b0a9f8e7d6c5b4a39281706f5e4d3c2b1a0"
VERSION = desired.DeployedVersion(
    name="fraud-v2", namespace="risk", model="fraud",
    artifact_uri="s3://kubeloop/trainingruns/risk/fraud-v2/artifact/versions/5b0e3c4f1a2d.json",
    artifact_digest=DIGEST)
CHAMPION = desired.OwnerVersion("fraud-v1", "0e4d2a9b-5f21-4f0a-9c61-7d3c9a512b8e")
SELF = desired.OwnerVersion("fraud-v2", "7d3c9a51-2b8e-4f0a-9c61-0e4d2a9b5f21")

CASES: dict[str, tuple[dict[str, Any], desired.OwnerVersion, int | None]] = {
    # the first version of a model: all traffic, owned by itself
    "first-version": ({}, SELF, None),
    # a canary step of a staged rollout: 10% to the new revision, owned by the champion
    "canary-10": ({"minReplicas": 2, "maxReplicas": 6, "resources": {"cpu": "2", "memory": "4Gi"},
                   "rollout": {"steps": [10, 50, 100], "interval": "10m"}}, CHAMPION, 10),
    # a rollback: the new template stays, its traffic returns to the previous revision
    "rolled-back": ({"rollout": {"steps": [25, 100]}}, CHAMPION, 0),
    # scale to zero where KServe allows it; a GPU server
    "gpu-scale-to-zero": ({"minReplicas": 0, "maxReplicas": 3, "resources": {"cpu": "4", "memory": "16Gi",
                                                                               "gpus": 1}}, SELF, None),
}


def built(case: str) -> dict[str, Any]:
    serving, owner, canary = CASES[case]
    return desired.desired_inference_service(VERSION, Serving.model_validate(serving), owner, SETTINGS,
                                             canary_percent=canary)


@pytest.mark.parametrize("case", sorted(CASES))
def test_inference_service_matches_golden_file(case: str):
    manifest = built(case)
    path = GOLDEN / f"inferenceservice-{case}.yaml"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump(manifest, sort_keys=False, width=1_000_000))
    assert path.exists(), f"no golden file {path.name}; run with UPDATE_GOLDEN=1"
    assert yaml.safe_load(path.read_text()) == manifest, f"{path.name} differs; UPDATE_GOLDEN=1 regenerates it"


# -- KServe's schema, from the kserve SDK's generated models ------------------------------------------

# kserve's models write list[X] and dict(str, X); the kubernetes client's write List[X] and Dict[str, X].
_LIST = re.compile(r"^[Ll]ist\[(.+)\]$")
_DICT = re.compile(r"^(?:dict\(([^,]+), (.+)\)|Dict\[([^,]+), (.+)\])$")
_PRIMITIVES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float),
                                            "object": (object,), "datetime": (str,), "date": (str,)}


def _model_class(name: str) -> Any:
    for module in (kserve.models, kubernetes.client.models):
        if hasattr(module, name):
            return getattr(module, name)
    raise AssertionError(f"no generated model {name}")


def schema_problems(value: Any, type_name: str, path: str = "") -> list[str]:
    """Where `value` breaks the generated model `type_name` (unknown fields, wrong types)."""
    if type_name in _PRIMITIVES:
        if type_name in ("int", "float") and isinstance(value, bool):
            return [f"{path}: expected {type_name}, got bool"]
        ok = isinstance(value, _PRIMITIVES[type_name])
        return [] if ok else [f"{path}: expected {type_name}, got {type(value).__name__}"]
    if type_name in ("ResourceQuantity", "IntOrString"):
        return [] if isinstance(value, str | int) else [f"{path}: expected a quantity"]
    if match := _LIST.match(type_name):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [p for i, item in enumerate(value) for p in schema_problems(item, match.group(1), f"{path}[{i}]")]
    if match := _DICT.match(type_name):
        if not isinstance(value, dict):
            return [f"{path}: expected a map"]
        item_type = match.group(2) or match.group(4)
        return [p for k, item in value.items() for p in schema_problems(item, item_type, f"{path}.{k}")]
    model = _model_class(type_name)
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({type_name})"]
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    problems = []
    for key, item in value.items():
        if key not in by_json:
            problems.append(f"{path}.{key}: not a field of {type_name}")
            continue
        problems += schema_problems(item, model.openapi_types[by_json[key]], f"{path}.{key}")
    return problems


@pytest.mark.parametrize("case", sorted(CASES))
def test_inference_service_validates_against_kserve_v1beta1_models(case: str):
    assert schema_problems(built(case), "V1beta1InferenceService") == []


def test_schema_check_catches_unknown_fields_and_wrong_types():
    manifest = built("first-version")
    manifest["spec"]["predictor"]["canaryTraficPercent"] = 10
    manifest["spec"]["predictor"]["minReplicas"] = "2"
    problems = schema_problems(manifest, "V1beta1InferenceService")
    assert ".spec.predictor.canaryTraficPercent: not a field of V1beta1PredictorSpec" in problems
    assert ".spec.predictor.minReplicas: expected int, got str" in problems


# -- the server's contract ------------------------------------------------------------------------------


def env_of(manifest: dict[str, Any]) -> dict[str, Any]:
    container = manifest["spec"]["predictor"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_server_gets_the_artifact_and_credentials_by_secret_reference_only():
    env = env_of(built("canary-10"))
    assert env["KUBELOOP_ARTIFACT_URI"] == VERSION.artifact_uri
    assert env["KUBELOOP_ARTIFACT_DIGEST"] == DIGEST
    assert env["KUBELOOP_MODEL"] == "fraud" and env["KUBELOOP_MODEL_VERSION"] == "fraud-v2"
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "kubeloop-s3", "key": "secretKey"}}
    container = built("canary-10")["spec"]["predictor"]["containers"][0]
    assert container["command"] == ["python", "-m", "kubeloop.modelversion.serve"]
    assert container["image"] == "ghcr.io/kubeloop/server:0.1.0"


def test_canary_percent_is_written_explicitly_100_for_all_traffic():
    assert built("first-version")["spec"]["predictor"]["canaryTrafficPercent"] == 100
    assert built("canary-10")["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert built("rolled-back")["spec"]["predictor"]["canaryTrafficPercent"] == 0


def test_the_champion_owns_the_inference_service_while_a_candidate_rolls_out():
    manifest = built("canary-10")
    assert manifest["metadata"]["ownerReferences"] == [CHAMPION.reference()]
    assert desired.deployed_version_of(manifest) == "fraud-v2"
    assert manifest["metadata"]["name"] == "fraud"
    assert manifest["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"


def test_pods_are_scraped_by_prometheus():
    predictor = built("first-version")["spec"]["predictor"]
    assert predictor["annotations"]["prometheus.io/scrape"] == "true"
    assert predictor["annotations"]["prometheus.io/port"] == str(desired.SERVER_PORT)
