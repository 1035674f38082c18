"""What serving a ModelVersion means in Kubernetes: one KServe `serving.kserve.io/v1beta1`
InferenceService per registered model. Pure builders (values in, manifests out), covered by
golden files in tests/modelversion/golden/.

One InferenceService per model, not per version, because KServe's canary rollout is a
property of one InferenceService: a change of the predictor's pod template makes a new
revision, `canaryTrafficPercent` gives it that share of the traffic and the previous rolled-out
revision (the champion) the rest; removing the field promotes the new revision, setting it to 0
rolls back. Clients keep one URL (`<model>` in the namespace) across versions.

- The predictor is a custom container running kubeloop's server
  (`python -m kubeloop.modelversion.serve`, the server image) on Knative's `$PORT` (8080), with
  the artifact's URI and digest, the model and version names and the object-store credentials
  (Secret references only) in its environment; Prometheus scraping annotations on its pods.
- The annotation `kubeloop.dev/model-version` names the ModelVersion whose template the
  predictor holds (the version rolling out, or the champion), and the controller
  ownerReference is the champion's, when there is one: deleting a version that is rolling out
  leaves the champion serving; deleting the champion retires the model's endpoint.
- Deployment mode Serverless (`serving.kserve.io/deploymentMode`), the one where KServe
  honours `canaryTrafficPercent` (docs/serving.md explains the RawDeployment case).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubeloop import API_VERSION
from kubeloop.core.labels import label_value, owner_label_key, standard_labels
from kubeloop.core.settings import Settings
from kubeloop.core.workloads import NON_ROOT_ID, object_store_env
from kubeloop.modelversion.api import RESOURCE, Serving

ISVC_API_VERSION = "serving.kserve.io/v1beta1"
ISVC_KIND = "InferenceService"
COMPONENT = "server"
CONTAINER = "kserve-container"  # the name KServe gives a custom predictor's serving container
SERVER_MODULE = "kubeloop.modelversion.serve"
SERVER_PORT = 8080  # Knative's default $PORT
MODEL_LABEL = "kubeloop.dev/model"
MODEL_VERSION_ANNOTATION = "kubeloop.dev/model-version"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
SERVERLESS = "Serverless"
# Knative's readiness: the server answers KServe's v2 health endpoint once the model is loaded.
READY_PATH = "/v2/health/ready"


@dataclass(frozen=True)
class DeployedVersion:
    """The ModelVersion whose model the predictor serves, as its status verified it."""

    name: str
    namespace: str
    model: str
    artifact_uri: str
    artifact_digest: str


@dataclass(frozen=True)
class OwnerVersion:
    """The ModelVersion that owns the InferenceService (the champion, or the first version)."""

    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": RESOURCE.kind, "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": True}


def inference_service_name(model: str) -> str:
    """The model's InferenceService: the model name (a DNS label, as ModelVersion.spec.model is)."""
    return model


def server_env(version: DeployedVersion, settings: Settings) -> list[dict[str, Any]]:
    """The server's environment (its contract, see serve.py)."""
    return [
        {"name": "KUBELOOP_MODEL", "value": version.model},
        {"name": "KUBELOOP_MODEL_VERSION", "value": version.name},
        {"name": "KUBELOOP_NAMESPACE", "value": version.namespace},
        {"name": "KUBELOOP_ARTIFACT_URI", "value": version.artifact_uri},
        {"name": "KUBELOOP_ARTIFACT_DIGEST", "value": version.artifact_digest},
        *object_store_env(settings.object_store),
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def predictor_container(version: DeployedVersion, serving: Serving, settings: Settings) -> dict[str, Any]:
    return {
        "name": CONTAINER,
        "image": settings.images.server,
        "command": ["python", "-m", SERVER_MODULE],
        "env": server_env(version, settings),
        "ports": [{"name": "http1", "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": READY_PATH, "port": SERVER_PORT}, "periodSeconds": 2,
                           "failureThreshold": 3},
        "resources": serving.resources.requirements(),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": False,  # the server unpacks the artifact into its home
            "runAsNonRoot": True,
            "runAsUser": NON_ROOT_ID,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def desired_inference_service(version: DeployedVersion, serving: Serving, owner: OwnerVersion,
                              settings: Settings, *, canary_percent: int | None) -> dict[str, Any]:
    """The model's InferenceService serving `version`'s template; `canary_percent` of the traffic
    goes to it while the previous rolled-out revision keeps the rest (None: all of it, 100)."""
    labels = {**standard_labels(kind=RESOURCE.kind, name=version.name, component=COMPONENT),
              MODEL_LABEL: version.model}
    # The owner label names the controlling version, so that the InferenceService's changes
    # re-reconcile it (core.reconcile's child events).
    labels[owner_label_key(RESOURCE.kind)] = label_value(owner.name)
    predictor: dict[str, Any] = {
        "minReplicas": serving.min_replicas,
        "maxReplicas": serving.max_replicas if serving.max_replicas is not None else max(serving.min_replicas, 1),
        "annotations": {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(SERVER_PORT),
            "prometheus.io/path": "/metrics",
        },
        "labels": {MODEL_LABEL: version.model, MODEL_VERSION_ANNOTATION: label_value(version.name)},
        "containers": [predictor_container(version, serving, settings)],
    }
    # Always written, 100 for all traffic (what KServe does without the field): a value removed
    # from an applied manifest is not removed from the object by every apply tool (client-side
    # apply, another field manager, Argo CD's replace), and a stale 0 would keep traffic away.
    predictor["canaryTrafficPercent"] = canary_percent if canary_percent is not None else 100
    return {
        "apiVersion": ISVC_API_VERSION,
        "kind": ISVC_KIND,
        "metadata": {
            "name": inference_service_name(version.model),
            "namespace": version.namespace,
            "labels": labels,
            "annotations": {MODEL_VERSION_ANNOTATION: version.name, DEPLOYMENT_MODE_ANNOTATION: SERVERLESS},
            "ownerReferences": [owner.reference()],
        },
        "spec": {"predictor": predictor},
    }


def deployed_version_of(isvc: Mapping[str, Any] | None) -> str | None:
    """The ModelVersion whose template an InferenceService built here holds."""
    return ((isvc or {}).get("metadata", {}).get("annotations") or {}).get(MODEL_VERSION_ANNOTATION)
