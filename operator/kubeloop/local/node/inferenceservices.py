"""KServe InferenceServices (serving.kserve.io/v1beta1) in KServe's Serverless mode, emulated locally.

On a cluster, KServe turns an InferenceService's predictor into a Knative Service; Knative
makes one Revision per change of the pod template (`<isvc>-predictor-00001`, `-00002`...),
routes traffic between revisions and reports back; KServe copies that into the
InferenceService's status. The local node plays all three for predictors with custom
containers (`spec.predictor.containers`):

- a **revision** is made whenever the predictor's pod template changes (everything in
  `spec.predictor` except `canaryTrafficPercent`, which only moves traffic, exactly as on a
  cluster). It runs as one Pod, `<revision>-deployment-<random>`, owned by the InferenceService and
  labelled like Knative's (`serving.kserve.io/inferenceservice`, `component: predictor`,
  `serving.knative.dev/{service,configuration,configurationGeneration,revision}`). The
  kubelet runs it as a local process. Knative's container contract holds: the container gets
  a free loopback port in `$PORT` and as its `containerPort` (it must listen there), plus
  `K_REVISION`, `K_CONFIGURATION`, `K_SERVICE`; a TCP readiness probe on that port is added
  when the container has none (Knative's queue-proxy does the same).
- **traffic** is computed as KServe does (`ksvc_reconciler.go`): without
  `canaryTrafficPercent` (or at 100) all traffic goes to the latest ready revision, which then
  becomes `latestRolledoutRevision`; with a canary percent the latest ready revision gets that
  share and the previous rolled-out revision (tag `prev`) the rest; setting it back to 0 after
  a promotion rolls back to `previousRolledoutRevision`. Until a new revision is ready — or
  when it fails — traffic stays where it was.
- a **router** (`router.py`) per InferenceService listens on a stable 127.0.0.1 port, which is
  the InferenceService's `status.url` and `status.address.url`, and splits requests between
  revisions by those percentages; the `Knative-Serving-Tag: prev|latest` header selects a
  tagged revision.
- the **status** has KServe's shape: conditions `PredictorReady`, `IngressReady`, `Ready`
  (+ `PredictorConfigurationReady`, `PredictorRouteReady`, `LatestDeploymentReady`,
  `RoutesReady`, with severity `Info` as Knative writes them) sorted by type, each with
  `lastTransitionTime`; `components.predictor` (`latestCreatedRevision`,
  `latestReadyRevision`, `latestRolledoutRevision`, `previousRolledoutRevision`, `traffic[]`,
  `url`, `address`); `modelStatus`; `url`; `address`; `observedGeneration`. `Ready` is True
  only when the latest revision and the routed revisions have ready Pods. A revision whose Pod
  fails (its process exits, its image cannot run locally, it is not ready within Knative's
  progress deadline — `serving.knative.dev/progress-deadline`, default 600 s of node time)
  makes `PredictorReady`/`Ready` False with reason `RevisionFailed` and a message naming the
  revision and the Pod's reason (`ExitCode1`, `ImageNotRunnableLocally`...), as Knative
  words it; the traffic stays on the previous revision.
- a revision's Pod that is deleted, or terminated by its node stopping, is replaced (what its
  ReplicaSet would do; with a back-off from the second replacement on, and never for a Pod
  whose image cannot run locally). After a restart of the node the router takes its old port
  again when it is free, so `status.url` stays the same.
- revisions that no longer receive traffic have their Pod deleted (Knative scales them to
  zero); the controller remembers their template, so a rollback to one brings its Pod back.
  Deleting the InferenceService stops its router; its Pods go by ownerReference garbage
  collection. A spec changed to something not emulated (below) is reported, and what was
  serving keeps serving (on a cluster, KServe's webhook would have refused the change).

Deliberately not emulated, each reported as `Ready=False` with a reason naming it (never a
silent success): `spec.predictor.model` and the framework shorthands (`sklearn`, `pytorch`...:
ServingRuntimes; reason `ModelRuntimeNotEmulated`), transformers and explainers
(`ComponentNotEmulated`), the RawDeployment and ModelMesh deployment modes
(`DeploymentModeNotEmulated`). Autoscaling is not emulated: each revision runs exactly one
Pod whatever `minReplicas`/`maxReplicas` say (`minReplicas: 0` is treated as 1: no scale to
zero). Tagged traffic targets get no URL of their own (use the tag header instead). A
template remembered only in memory is lost when the node restarts: a rollback to a revision
whose Pod was deleted before the restart then reports the route as not ready.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from typing import Any, Literal

import aiohttp
import yaml

from kubeloop.local.node.client import ApiError, Informer, NodeClient, ObjectKey, object_key, resource_path
from kubeloop.local.node.cronjobs import DelayingQueue, format_time, node_time_of, parse_time
from kubeloop.local.node.router import Backend, TrafficRouter
from kubeloop.local.node.settings import NodeSettings
from kubeloop.local.supervisor import free_port

log = logging.getLogger(__name__)

GROUP = "serving.kserve.io"
API_VERSION = f"{GROUP}/v1beta1"
KIND = "InferenceService"
PLURAL = "inferenceservices"
CRD_NAME = f"{PLURAL}.{GROUP}"
CRD_FILE = f"{CRD_NAME}.yaml"
ISVC_PATH = resource_path(API_VERSION, PLURAL)

LABEL_ISVC = "serving.kserve.io/inferenceservice"
LABEL_COMPONENT = "component"
LABEL_KN_SERVICE = "serving.knative.dev/service"
LABEL_KN_CONFIGURATION = "serving.knative.dev/configuration"
LABEL_KN_CONFIGURATION_GENERATION = "serving.knative.dev/configurationGeneration"
LABEL_KN_REVISION = "serving.knative.dev/revision"
ANNOTATION_TEMPLATE_HASH = "local.kubeloop.dev/revision-template-hash"
ANNOTATION_PROGRESS_DEADLINE = "serving.knative.dev/progress-deadline"
ANNOTATION_DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
DEFAULT_CONTAINER_NAME = "kserve-container"
DEFAULT_PROGRESS_DEADLINE = timedelta(seconds=600)
PREDICTOR = "predictor"

# Condition types (KServe's, and the Knative Service's it propagates).
PREDICTOR_READY = "PredictorReady"
INGRESS_READY = "IngressReady"
READY = "Ready"
PREDICTOR_ROUTE_READY = "PredictorRouteReady"
PREDICTOR_CONFIGURATION_READY = "PredictorConfigurationReady"
ROUTES_READY = "RoutesReady"
LATEST_DEPLOYMENT_READY = "LatestDeploymentReady"
KN_CONFIGURATIONS_READY = "ConfigurationsReady"
KN_ROUTES_READY = "RoutesReady"

# Reasons.
REASON_REVISION_FAILED = "RevisionFailed"  # Knative Configuration: the latest created revision failed
REASON_REVISION_MISSING = "RevisionMissing"  # Knative Route: a target revision is not ready
REASON_PROGRESS_DEADLINE = "ProgressDeadlineExceeded"
REASON_INGRESS_NOT_CREATED = "Predictor ingress not created"  # KServe's wording, spaces included
REASON_MODEL_RUNTIME_NOT_EMULATED = "ModelRuntimeNotEmulated"
REASON_COMPONENT_NOT_EMULATED = "ComponentNotEmulated"
REASON_DEPLOYMENT_MODE_NOT_EMULATED = "DeploymentModeNotEmulated"
REASON_INVALID_SPEC = "InvalidSpec"

SEVERITY_INFO = "Info"
Status = Literal["True", "False", "Unknown"]

# Fields of spec.predictor that are not part of the pod (KServe's ComponentExtensionSpec and the
# model/framework specs); everything else in the predictor is the PodSpec.
_EXTENSION_FIELDS = frozenset({
    "minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "scaleMetricType", "autoScaling",
    "containerConcurrency", "timeoutSeconds", "canaryTrafficPercent", "logger", "batcher", "labels",
    "annotations", "deploymentStrategy", "workerSpec", "storageUri", "storage", "protocolVersion",
})
_MODEL_FIELDS = ("model", "sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx", "pmml", "lightgbm",
                 "paddle", "huggingface", "catboost", "mlflow")
_NOT_EMULATED_COMPONENTS = ("transformer", "explainer")
# Waiting reasons after which a Pod will not become ready by itself (Knative reports them).
_FAILING_WAITING_REASONS = frozenset({
    "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError",
    "CreateContainerError", "RunContainerError", "ImageNotRunnableLocally", "StartError",
})
_REVISION_SUFFIX = re.compile(r"-(\d{5,})$")


def inferenceservice_crd() -> dict[str, Any]:
    """The InferenceService CRD the local cluster installs (a structural subset of KServe's).

    It validates the predictor fields the local node emulates and preserves every other field,
    as KServe's own (very large) CRD would accept them.
    """
    text = resources.files("kubeloop.local").joinpath("crds", CRD_FILE).read_text()
    return dict(yaml.safe_load(text))


# --- revisions (pure) ----------------------------------------------------------------------------


def service_name(isvc_name: str) -> str:
    """The Knative Service KServe would create for the predictor: `<isvc>-predictor`."""
    return f"{isvc_name}-{PREDICTOR}"


def revision_name(isvc_name: str, number: int) -> str:
    return f"{service_name(isvc_name)}-{number:05d}"


def revision_number(name: str | None) -> int:
    match = _REVISION_SUFFIX.search(name or "")
    return int(match.group(1)) if match else 0


def pod_name_prefix(revision: str) -> str:
    """Revision Pods are named like Knative's, `<revision>-deployment-<random>`: a replacement gets a new name."""
    return f"{revision}-deployment-"


def unsupported_spec(isvc: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) when the InferenceService asks for what the local node does not emulate."""
    meta = isvc.get("metadata") or {}
    spec = isvc.get("spec") or {}
    mode = (meta.get("annotations") or {}).get(ANNOTATION_DEPLOYMENT_MODE)
    if mode and mode != "Serverless":
        return REASON_DEPLOYMENT_MODE_NOT_EMULATED, (
            f"metadata.annotations[{ANNOTATION_DEPLOYMENT_MODE}]: deployment mode {mode!r} is not emulated by the "
            "local node; it emulates KServe's Serverless mode only (remove the annotation)")
    for component in _NOT_EMULATED_COMPONENTS:
        if spec.get(component):
            return REASON_COMPONENT_NOT_EMULATED, (
                f"spec.{component}: {component}s are not emulated by the local node; only the predictor is")
    predictor = spec.get("predictor") or {}
    for name in _MODEL_FIELDS:
        if predictor.get(name):
            return REASON_MODEL_RUNTIME_NOT_EMULATED, (
                f"spec.predictor.{name}: ServingRuntime-based predictors are not emulated by the local node; "
                "give the predictor's containers instead (spec.predictor.containers)")
    containers = predictor.get("containers") or []
    if not containers:
        return REASON_INVALID_SPEC, "spec.predictor.containers: Required value: the predictor has no container"
    names = [c.get("name") or DEFAULT_CONTAINER_NAME for c in containers]
    if len(set(names)) != len(names):
        return REASON_INVALID_SPEC, "spec.predictor.containers: container names must be unique"
    return None


def revision_template(isvc: Mapping[str, Any]) -> dict[str, Any]:
    """What makes a new revision when it changes: the predictor without its traffic settings."""
    predictor = dict((isvc.get("spec") or {}).get("predictor") or {})
    predictor.pop("canaryTrafficPercent", None)
    return predictor


def template_hash(template: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def serving_container_index(containers: Sequence[Mapping[str, Any]]) -> int:
    """The container that serves: the one with a port, else `kserve-container`, else the first."""
    for index, container in enumerate(containers):
        if container.get("ports"):
            return index
    for index, container in enumerate(containers):
        if container.get("name") == DEFAULT_CONTAINER_NAME:
            return index
    return 0


def _probe_on_port(probe: Mapping[str, Any], port: int, user_port: int | None) -> dict[str, Any]:
    """A user's probe, pointed at the revision's port when it named the container's port (or none)."""
    result = copy.deepcopy(dict(probe))
    for action in ("httpGet", "tcpSocket", "grpc"):
        handler = result.get(action)
        if isinstance(handler, dict) and handler.get("port") in (None, 0, user_port, "http1", "h2c"):
            handler["port"] = port
    return result


def desired_revision_pod(isvc: Mapping[str, Any], *, revision: str, number: int, port: int,
                         template: Mapping[str, Any]) -> dict[str, Any]:
    """The Pod of one revision: the predictor's pod spec with Knative's port contract applied."""
    meta = isvc["metadata"]
    name = meta["name"]
    template = copy.deepcopy(dict(template))
    pod_spec = {k: v for k, v in template.items() if k not in _EXTENSION_FIELDS and k not in _MODEL_FIELDS}
    containers = [dict(c) for c in pod_spec.get("containers") or []]
    for container in containers:
        container.setdefault("name", DEFAULT_CONTAINER_NAME)
    index = serving_container_index(containers)
    serving = containers[index]
    user_ports = serving.get("ports") or []
    user_port = user_ports[0].get("containerPort") if user_ports else None
    first_port = dict(user_ports[0]) if user_ports else {"name": "http1"}
    first_port.update({"containerPort": port, "protocol": first_port.get("protocol", "TCP")})
    serving["ports"] = [first_port]
    env = [e for e in serving.get("env") or [] if e.get("name") not in ("PORT", "K_REVISION", "K_CONFIGURATION",
                                                                        "K_SERVICE")]
    serving["env"] = [*env, {"name": "PORT", "value": str(port)}, {"name": "K_REVISION", "value": revision},
                      {"name": "K_CONFIGURATION", "value": service_name(name)},
                      {"name": "K_SERVICE", "value": service_name(name)}]
    if serving.get("readinessProbe"):
        serving["readinessProbe"] = _probe_on_port(serving["readinessProbe"], port, user_port)
    else:
        serving["readinessProbe"] = {"tcpSocket": {"port": port}, "periodSeconds": 1, "successThreshold": 1,
                                     "failureThreshold": 3, "timeoutSeconds": 1}
    if serving.get("livenessProbe"):
        serving["livenessProbe"] = _probe_on_port(serving["livenessProbe"], port, user_port)
    containers[index] = serving
    pod_spec["containers"] = containers
    pod_spec["restartPolicy"] = "Always"  # a Deployment's pod

    labels = {k: v for k, v in (meta.get("labels") or {}).items()}
    labels.update(template.get("labels") or {})
    labels.update({
        LABEL_ISVC: name, LABEL_COMPONENT: PREDICTOR, LABEL_KN_SERVICE: service_name(name),
        LABEL_KN_CONFIGURATION: service_name(name), LABEL_KN_CONFIGURATION_GENERATION: str(number),
        LABEL_KN_REVISION: revision, "app": revision,
    })
    annotations = dict(template.get("annotations") or {})
    annotations[ANNOTATION_TEMPLATE_HASH] = template_hash(template)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": pod_name_prefix(revision), "namespace": meta.get("namespace"), "labels": labels,
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": API_VERSION, "kind": KIND, "name": name, "uid": meta.get("uid"),
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": pod_spec,
    }


def pod_port(pod: Mapping[str, Any]) -> int | None:
    """The loopback port the revision's serving container listens on."""
    containers = (pod.get("spec") or {}).get("containers") or []
    if not containers:
        return None
    ports = containers[serving_container_index(containers)].get("ports") or []
    return int(ports[0]["containerPort"]) if ports and ports[0].get("containerPort") else None


TERMINAL_PHASES = ("Failed", "Succeeded")
# Pod failures a new Pod cannot fix (the spec must change): never replaced, the revision fails.
PERMANENT_POD_FAILURES = frozenset({"ImageNotRunnableLocally"})
MAX_REPLACEMENT_BACKOFF = timedelta(minutes=5)


def _phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def _deleting(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def current_pod(pods: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The Pod that stands for a revision: the newest live one, preferring one not terminated."""
    live = [p for p in pods if not _deleting(p)]
    pool = [p for p in live if _phase(p) not in TERMINAL_PHASES] or live
    if not pool:
        return None
    return max(pool, key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"].get("name") or ""))


def replaceable(pod: Mapping[str, Any]) -> bool:
    """A terminated revision Pod that a ReplicaSet would replace (its node stopped, it was evicted...)."""
    return _phase(pod) in TERMINAL_PHASES and (pod.get("status") or {}).get("reason") not in PERMANENT_POD_FAILURES


def replacement_backoff(replacements: int) -> timedelta:
    """Delay before the next replacement: none for the first, then 1 s doubling up to 5 minutes (node time)."""
    if replacements <= 0:
        return timedelta(0)
    return min(timedelta(seconds=2 ** (replacements - 1)), MAX_REPLACEMENT_BACKOFF)


@dataclass(frozen=True)
class RevisionHealth:
    """Where a revision stands, from its Pod (what Knative's Revision Ready condition says)."""

    state: Literal["Ready", "Failed", "Deploying"]
    reason: str = ""
    message: str = ""
    url: str | None = None

    @property
    def ready(self) -> bool:
        return self.state == "Ready"

    @property
    def failed(self) -> bool:
        return self.state == "Failed"


def revision_health(pod: Mapping[str, Any] | None, *, now: datetime, created: datetime | None,
                    progress_deadline: timedelta) -> RevisionHealth:
    """Ready, Failed (with Knative's reason and message) or Deploying, from the revision's Pod.

    As Knative's revision reconciler: a Pod that is ready makes the revision ready whatever
    happened before; otherwise a terminated container (now or last time: a crash loop) or a
    waiting reason that will not resolve by itself fails it, as does the progress deadline.
    """
    if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return _deploying(now, created, progress_deadline)
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    port = pod_port(pod)
    if ready and status.get("phase") == "Running" and port:
        return RevisionHealth("Ready", url=f"http://127.0.0.1:{port}")
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        terminated = state.get("terminated") or (container.get("lastState") or {}).get("terminated")
        if terminated:
            code = int(terminated.get("exitCode", 0) or 0)
            if terminated.get("message"):
                detail = str(terminated["message"]).strip()
            elif code == 0:
                detail = "container exited with no error"
            else:
                detail = f"{terminated.get('reason') or 'Error'} (exit code {code})"
            return RevisionHealth("Failed", f"ExitCode{code}", f"Container failed with: {detail}")
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in _FAILING_WAITING_REASONS:
            reason = str(waiting["reason"])
            return RevisionHealth("Failed", reason, f"{reason}: {waiting['message']}" if waiting.get("message")
                                  else reason)
    if status.get("phase") in ("Failed", "Succeeded"):
        reason = status.get("reason") or ("Completed" if status.get("phase") == "Succeeded" else "Error")
        return RevisionHealth("Failed", reason, f"{reason}: {status['message']}" if status.get("message")
                              else f"the revision's pod ended ({reason})")
    return _deploying(now, created, progress_deadline)


def _deploying(now: datetime, created: datetime | None, progress_deadline: timedelta) -> RevisionHealth:
    if created is not None and now - created > progress_deadline:
        return RevisionHealth("Failed", REASON_PROGRESS_DEADLINE, "Initial scale was never achieved")
    return RevisionHealth("Deploying", "Deploying")


def progress_deadline_of(isvc: Mapping[str, Any]) -> timedelta:
    """Knative's per-revision progress deadline (annotation `serving.knative.dev/progress-deadline`)."""
    annotations = dict((isvc.get("metadata") or {}).get("annotations") or {})
    annotations.update(((isvc.get("spec") or {}).get("predictor") or {}).get("annotations") or {})
    text = annotations.get(ANNOTATION_PROGRESS_DEADLINE)
    if not text:
        return DEFAULT_PROGRESS_DEADLINE
    match = re.fullmatch(r"(\d+)(s|m|h)?", text.strip())
    if not match:
        return DEFAULT_PROGRESS_DEADLINE
    return timedelta(seconds=int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2) or "s"])


# --- traffic and the Knative Service's status (pure) --------------------------------------------


@dataclass(frozen=True)
class TrafficTarget:
    """A Route traffic target as KServe writes it into the Knative Service's spec."""

    percent: int
    latest_revision: bool
    revision_name: str | None = None
    tag: str | None = None


def desired_traffic(canary_percent: int | None, component: Mapping[str, Any]) -> list[TrafficTarget]:
    """KServe's traffic split: canary between the latest and the last rolled-out revision, else blue-green."""
    rolled_out = component.get("latestRolledoutRevision")
    if canary_percent is not None and rolled_out:
        targets = [TrafficTarget(canary_percent, True)]
        if canary_percent < 100:
            targets.append(TrafficTarget(100 - canary_percent, False, rolled_out, "prev"))
        return targets
    return [TrafficTarget(100, True)]


@dataclass(frozen=True)
class Cond:
    """A condition before its lastTransitionTime is settled."""

    type: str
    status: Status
    reason: str = ""
    message: str = ""
    severity: str = ""


@dataclass(frozen=True)
class ServiceStatus:
    """What the Knative Service of the predictor would report."""

    latest_created: str | None
    latest_ready: str | None
    traffic: tuple[dict[str, Any], ...]
    configurations_ready: Cond
    routes_ready: Cond
    ready: Cond


def _combine(happy: str, *dependents: Cond) -> Cond:
    """A living condition set's happy condition: False wins, then Unknown, else True."""
    for cond in dependents:
        if cond.status == "False":
            return Cond(happy, "False", cond.reason, cond.message)
    unknown = [cond for cond in dependents if cond.status == "Unknown"]
    if unknown:
        return Cond(happy, "Unknown", unknown[-1].reason, unknown[-1].message)
    return Cond(happy, "True")


def knative_service_status(targets: Sequence[TrafficTarget], health: Mapping[str, RevisionHealth], *,
                           latest_created: str | None, previous_latest_ready: str | None,
                           service: str) -> ServiceStatus:
    """Configuration and Route status for the given traffic targets and revision health."""
    latest = health.get(latest_created or "")
    if latest_created and latest is not None and latest.ready:
        latest_ready = latest_created
    elif previous_latest_ready and previous_latest_ready in health:
        latest_ready = previous_latest_ready
    else:
        latest_ready = None

    if latest is not None and latest.ready:
        configurations = Cond(KN_CONFIGURATIONS_READY, "True")
    elif latest is not None and latest.failed:
        configurations = Cond(KN_CONFIGURATIONS_READY, "False", REASON_REVISION_FAILED,
                              f'Revision "{latest_created}" failed with message: {latest.message}.')
    else:
        configurations = Cond(KN_CONFIGURATIONS_READY, "Unknown")

    traffic: list[dict[str, Any]] = []
    route = Cond(KN_ROUTES_READY, "True")
    for target in targets:
        name = latest_ready if target.latest_revision else target.revision_name
        if name is None:
            route = Cond(KN_ROUTES_READY, "Unknown", REASON_REVISION_MISSING,
                         f'Configuration "{service}" is waiting for a Revision to become ready.')
            traffic = []
            break
        entry: dict[str, Any] = {"latestRevision": target.latest_revision, "percent": target.percent,
                                 "revisionName": name}
        if target.tag:
            entry["tag"] = target.tag
        traffic.append(entry)
        target_health = health.get(name)
        if route.status == "True":
            if target_health is None or target_health.failed:
                route = Cond(KN_ROUTES_READY, "False", REASON_REVISION_MISSING,
                             f'Revision "{name}" failed to become ready.')
            elif not target_health.ready:
                route = Cond(KN_ROUTES_READY, "Unknown", REASON_REVISION_MISSING,
                             f'Revision "{name}" is not yet ready.')
    ready = _combine(READY, configurations, route)
    return ServiceStatus(latest_created, latest_ready, tuple(traffic), configurations, route, ready)


def propagate_component(previous: Mapping[str, Any], svc: ServiceStatus, url: str) -> dict[str, Any]:
    """`status.components.predictor` from the Knative Service's status (KServe's PropagateStatus)."""
    component = dict(previous)
    if svc.latest_created:
        component["latestCreatedRevision"] = svc.latest_created
    per_revision: dict[str, int] = {}
    for entry in svc.traffic:
        per_revision[entry["revisionName"]] = per_revision.get(entry["revisionName"], 0) + entry["percent"]
    for entry in svc.traffic:
        if entry["revisionName"] != svc.latest_ready or not entry["latestRevision"]:
            continue
        if component.get("latestRolledoutRevision") != svc.latest_ready:
            if entry["percent"] == 100:  # fully rolled out: remember the one before
                component["previousRolledoutRevision"] = component.get("latestRolledoutRevision")
                component["latestRolledoutRevision"] = svc.latest_ready
        elif (svc.latest_ready == svc.latest_created and entry["percent"] < 100
              and per_revision.get(entry["revisionName"]) == 100 and component.get("previousRolledoutRevision")):
            # rolled back after a full rollout: the previous rolled-out revision is the baseline again
            component["latestRolledoutRevision"] = component["previousRolledoutRevision"]
    if svc.latest_ready:
        component["latestReadyRevision"] = svc.latest_ready
    if svc.ready.status == "True" or component.get("url"):
        component["url"] = url
        component["address"] = {"url": url}
    component["traffic"] = [dict(entry) for entry in svc.traffic]
    return {k: v for k, v in component.items() if v not in (None, "", [])}


@dataclass(frozen=True)
class Routing:
    """The settled traffic of one pass: the Knative Service status and the predictor component."""

    service: ServiceStatus
    component: dict[str, Any]


def settle_routing(canary_percent: int | None, previous_component: Mapping[str, Any],
                   health: Mapping[str, RevisionHealth], *, latest_created: str | None, service: str,
                   url: str) -> Routing:
    """Run KServe's and Knative's reconcilers against each other until the traffic stops moving.

    On a cluster KServe writes traffic from its last status, Knative routes it, KServe reads it
    back — a loop of a few rounds (a promotion or rollback settles in two). Here the rounds run
    at once, so one pass shows the settled result.
    """
    component = dict(previous_component)
    routing = None
    for _ in range(4):
        targets = desired_traffic(canary_percent, component)
        svc = knative_service_status(targets, health, latest_created=latest_created,
                                     previous_latest_ready=component.get("latestReadyRevision"), service=service)
        updated = propagate_component(component, svc, url)
        routing = Routing(svc, updated)
        if updated == component:
            break
        component = updated
    assert routing is not None
    return routing


def routed_revisions(traffic: Iterable[Mapping[str, Any]]) -> set[str]:
    return {str(entry["revisionName"]) for entry in traffic}


def backends(traffic: Iterable[Mapping[str, Any]], health: Mapping[str, RevisionHealth]) -> list[Backend]:
    """The router's backends for the routed traffic."""
    result = []
    for entry in traffic:
        name = str(entry["revisionName"])
        revision = health.get(name)
        url = revision.url if revision is not None and revision.ready else None
        tag = entry.get("tag") or ("latest" if entry.get("latestRevision") else None)
        result.append(Backend(name, int(entry.get("percent") or 0), url, tag))
    return result


# --- the InferenceService's status (pure) --------------------------------------------------------


def settle_conditions(previous: Sequence[Mapping[str, Any]], conditions: Iterable[Cond],
                      now: str) -> list[dict[str, Any]]:
    """Knative-style conditions sorted by type; lastTransitionTime kept when nothing else changed."""
    old = {c.get("type"): c for c in previous}
    result = []
    for cond in conditions:
        entry: dict[str, Any] = {"type": cond.type, "status": cond.status}
        if cond.reason:
            entry["reason"] = cond.reason
        if cond.message:
            entry["message"] = cond.message
        if cond.severity:
            entry["severity"] = cond.severity
        before = old.get(cond.type)
        unchanged = before is not None and all(before.get(k) == entry.get(k)
                                               for k in ("status", "reason", "message", "severity"))
        entry["lastTransitionTime"] = before.get("lastTransitionTime", now) if unchanged and before else now
        result.append(entry)
    return sorted(result, key=lambda c: c["type"])


def _cross_component(kind: str, component_cond: Cond) -> Cond:
    """RoutesReady / LatestDeploymentReady aggregated over components (only the predictor here)."""
    if component_cond.status == "True":
        return Cond(kind, "True", severity=SEVERITY_INFO)
    return Cond(kind, component_cond.status, f"{component_cond.type} not ready", severity=SEVERITY_INFO)


def ingress_condition(predictor_ready: Cond, component: Mapping[str, Any], previous: Cond | None) -> Cond:
    """KServe's ingress reconciler: nothing until the predictor has a URL, then mirrors PredictorReady."""
    if not component.get("url"):
        return previous or Cond(INGRESS_READY, "Unknown")
    if predictor_ready.status == "True":
        return Cond(INGRESS_READY, "True")
    return Cond(INGRESS_READY, predictor_ready.status, REASON_INGRESS_NOT_CREATED)


def model_status(previous: Mapping[str, Any], *, latest: RevisionHealth | None, latest_pod: Mapping[str, Any] | None,
                 ready: bool, up_to_date: bool, any_false: bool, invalid: tuple[str, str] | None,
                 now: str) -> dict[str, Any]:
    """`status.modelStatus` as KServe's PropagateModelStatus computes it for a predictor."""
    states = dict(previous.get("states") or {})
    states.setdefault("activeModelState", "Pending")
    result: dict[str, Any] = {}
    if previous.get("lastFailureInfo"):
        result["lastFailureInfo"] = previous["lastFailureInfo"]

    def target(state: str, transition: str) -> dict[str, Any]:
        states["targetModelState"] = state
        if state == "Loaded":
            states["activeModelState"] = "Loaded"
        return {**result, "transitionStatus": transition, "states": dict(states)}

    if invalid is not None:
        result["lastFailureInfo"] = {"reason": "InvalidPredictorSpec", "message": invalid[1], "time": now}
        return {**target("FailedToLoad", "InvalidSpec"), "copies": {"failedCopies": 0, "totalCopies": 0}}
    copies = {"failedCopies": 0, "totalCopies": 1 if latest is not None and latest.ready else 0}
    if latest_pod is None:
        state = ("FailedToLoad", "BlockedByFailedLoad") if any_false else ("Pending", "InProgress")
        return {**target(*state), "copies": copies}
    if ready and up_to_date:
        return {**target("Loaded", "UpToDate"), "copies": copies}
    if latest is not None and latest.failed:
        exit_code = None
        match = re.fullmatch(r"ExitCode(\d+)", latest.reason)
        if match:
            exit_code = int(match.group(1))
        info = {"reason": "ModelLoadFailed", "message": latest.message, "location": latest_pod["metadata"]["name"],
                "time": now}
        if exit_code is not None:
            info["exitCode"] = exit_code
        previous_info = previous.get("lastFailureInfo") or {}
        if {k: v for k, v in previous_info.items() if k != "time"} == {k: v for k, v in info.items() if k != "time"}:
            info["time"] = previous_info.get("time", now)
        result["lastFailureInfo"] = info
        return {**target("FailedToLoad", "BlockedByFailedLoad"), "copies": copies}
    return {**target("Pending", "InProgress"), "copies": copies}


def inference_service_status(isvc: Mapping[str, Any], *, routing: Routing | None, invalid: tuple[str, str] | None,
                             latest: RevisionHealth | None, latest_pod: Mapping[str, Any] | None,
                             url: str, now: datetime) -> dict[str, Any]:
    """The whole status KServe would write for this pass (pure: the caller writes it if it changed)."""
    previous = dict(isvc.get("status") or {})
    stamp = format_time(now)
    old_conditions = previous.get("conditions") or []
    old_by_type = {c.get("type"): c for c in old_conditions}
    components = dict(previous.get("components") or {})

    if invalid is not None or routing is None:
        reason, message = invalid or (REASON_INVALID_SPEC, "the predictor cannot be reconciled")
        predictor_ready = Cond(PREDICTOR_READY, "False", reason, message)
        conds = [predictor_ready]
        prev_ingress = old_by_type.get(INGRESS_READY)
        ingress = Cond(INGRESS_READY, prev_ingress.get("status", "Unknown"), prev_ingress.get("reason", ""),
                       prev_ingress.get("message", "")) if prev_ingress else Cond(INGRESS_READY, "Unknown")
        conds += [ingress, _combine(READY, predictor_ready, ingress)]
        # Conditions only a reconciled predictor sets are kept as they were.
        kept = [Cond(c["type"], c.get("status", "Unknown"), c.get("reason", ""), c.get("message", ""),
                     c.get("severity", "")) for c in old_conditions
                if c.get("type") not in {PREDICTOR_READY, INGRESS_READY, READY}]
        status: dict[str, Any] = {**previous, "conditions": settle_conditions(old_conditions, [*conds, *kept], stamp)}
        status["modelStatus"] = model_status(previous.get("modelStatus") or {}, latest=None, latest_pod=None,
                                             ready=False, up_to_date=False, any_false=True, invalid=invalid,
                                             now=stamp)
        status["observedGeneration"] = (isvc.get("metadata") or {}).get("generation")
        status["deploymentMode"] = "Serverless"
        return {k: v for k, v in status.items() if v is not None}

    svc, component = routing.service, routing.component
    predictor_ready = Cond(PREDICTOR_READY, svc.ready.status, svc.ready.reason, svc.ready.message)
    route = Cond(PREDICTOR_ROUTE_READY, svc.routes_ready.status, svc.routes_ready.reason, svc.routes_ready.message,
                 SEVERITY_INFO)
    configuration = Cond(PREDICTOR_CONFIGURATION_READY, svc.configurations_ready.status,
                         svc.configurations_ready.reason, svc.configurations_ready.message, SEVERITY_INFO)
    old_ingress = old_by_type.get(INGRESS_READY)
    previous_ingress = Cond(INGRESS_READY, old_ingress.get("status", "Unknown"), old_ingress.get("reason", ""),
                            old_ingress.get("message", "")) if old_ingress else None
    ingress = ingress_condition(predictor_ready, component, previous_ingress)
    conds = [predictor_ready, route, configuration, _cross_component(ROUTES_READY, route),
             _cross_component(LATEST_DEPLOYMENT_READY, configuration), ingress,
             _combine(READY, predictor_ready, ingress)]
    components[PREDICTOR] = component
    status = {**previous, "conditions": settle_conditions(old_conditions, conds, stamp), "components": components}
    if component.get("url"):
        status["url"] = url
        status["address"] = {"url": url}
    ready = all(c.status == "True" for c in conds if c.type == READY)
    status["modelStatus"] = model_status(
        previous.get("modelStatus") or {}, latest=latest, latest_pod=latest_pod, ready=ready,
        up_to_date=component.get("latestCreatedRevision") == component.get("latestReadyRevision"),
        any_false=any(c.status == "False" for c in conds), invalid=None, now=stamp)
    status["observedGeneration"] = (isvc.get("metadata") or {}).get("generation")
    status["deploymentMode"] = "Serverless"
    return {k: v for k, v in status.items() if v is not None}


def status_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return json.dumps(old, sort_keys=True) != json.dumps(new, sort_keys=True)


def canary_percent(isvc: Mapping[str, Any]) -> int | None:
    value = ((isvc.get("spec") or {}).get("predictor") or {}).get("canaryTrafficPercent")
    return None if value is None else int(value)


# --- the controller ------------------------------------------------------------------------------


@dataclass
class RevisionRecord:
    """A revision the controller knows: enough to run (or run again) its Pod."""

    name: str
    number: int
    template_hash: str
    pod: dict[str, Any]  # the manifest to create when the revision needs a Pod
    created: datetime | None = None  # node time the revision was made (progress deadline)
    replacements: int = 0  # Pods replaced since the revision was last ready
    retry_at: datetime | None = None  # no replacement before this node time (back-off)


@dataclass
class ServingState:
    """What the controller keeps per InferenceService (by uid) between passes."""

    uid: str
    router: TrafficRouter
    revisions: dict[str, RevisionRecord] = field(default_factory=dict)
    latest_created: str | None = None


def _owned_by(pod: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid and ref.get("controller")
               for ref in (pod.get("metadata") or {}).get("ownerReferences") or [])


def _record_from_pod(pod: Mapping[str, Any]) -> RevisionRecord | None:
    meta = pod.get("metadata") or {}
    name = (meta.get("labels") or {}).get(LABEL_KN_REVISION)
    if not name:
        return None
    manifest = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": pod_name_prefix(name),
                             **{k: copy.deepcopy(meta[k]) for k in ("namespace", "labels", "annotations",
                                                                    "ownerReferences") if k in meta}},
                "spec": {k: copy.deepcopy(v) for k, v in (pod.get("spec") or {}).items() if k != "nodeName"}}
    created = parse_time(meta.get("creationTimestamp"))
    return RevisionRecord(name, revision_number(name), (meta.get("annotations") or {}).get(ANNOTATION_TEMPLATE_HASH, ""),
                          manifest, created)


class InferenceServiceController:
    """Serves every InferenceService of the cluster the Serverless way (see the module docstring)."""

    def __init__(self, client: NodeClient, settings: NodeSettings) -> None:
        self.client = client
        self.settings = settings
        self.clock = settings.clock
        self.inferenceservices = Informer(client, ISVC_PATH)
        self.pods = Informer(client, resource_path("v1", "pods"), label_selector=LABEL_ISVC)
        self.queue = DelayingQueue(self.clock)
        self.serving: dict[ObjectKey, ServingState] = {}
        self._created_pods: dict[ObjectKey, dict[str, Any]] = {}
        self._deleted_pods: set[str] = set()  # uids of Pods deleted here that the watch may still show
        self._written: dict[ObjectKey, dict[str, Any]] = {}
        self._failures: dict[ObjectKey, int] = {}

    async def run(self) -> None:
        """Wait for the InferenceService CRD, then reconcile until cancelled (routers stop on the way out)."""
        try:
            await self._wait_for_crd()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._watch_inferenceservices())
                tasks.create_task(self._watch_pods())
                await self.inferenceservices.synced.wait()
                await self.pods.synced.wait()
                tasks.create_task(self._work())
        finally:
            for state in list(self.serving.values()):
                await state.router.stop()
            self.serving.clear()

    async def _wait_for_crd(self) -> None:
        announced = False
        while True:
            try:
                if await self.client.get(ISVC_PATH) is not None:
                    return
            except (ApiError, aiohttp.ClientError) as exc:
                log.debug("InferenceService API not available yet: %s", exc)
            if not announced:
                log.info("waiting for the InferenceService CRD (%s) to be installed", CRD_NAME)
                announced = True
            await asyncio.sleep(0.5)

    async def _watch_inferenceservices(self) -> None:
        async for kind, obj in self.inferenceservices.events():
            key = object_key(obj)
            if kind == "DELETED":
                self._written.pop(key, None)
            self.queue.add(key)

    async def _watch_pods(self) -> None:
        async for kind, pod in self.pods.events():
            key = object_key(pod)
            self._created_pods.pop(key, None)  # the cache has it (or knows it is gone) from now on
            if kind == "DELETED":
                self._deleted_pods.discard(str(pod["metadata"].get("uid")))
            owner = (pod.get("metadata") or {}).get("labels", {}).get(LABEL_ISVC)
            if owner:
                self.queue.add((key[0], owner))

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                requeue = await self.reconcile(key)
            except (ApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(0.05 * 2.0 ** failures, 30.0)
                log.warning("reconciling InferenceService %s/%s failed (%s); retrying in %.1fs", *key, exc, delay)
                self.queue.add(key, timedelta(seconds=delay * self.clock.speed))
                continue
            except Exception:
                log.exception("reconciling InferenceService %s/%s failed", *key)
                self.queue.add(key, timedelta(seconds=30 * self.clock.speed))
                continue
            self._failures.pop(key, None)
            if requeue is not None:
                self.queue.add(key, requeue)

    def _isvc(self, key: ObjectKey) -> dict[str, Any] | None:
        cached = self.inferenceservices.cache.get(key)
        written = self._written.get(key)
        if cached is None:
            return None
        if written is not None and written["metadata"].get("uid") == cached["metadata"].get("uid") and \
                int(written["metadata"].get("resourceVersion") or 0) > int(cached["metadata"].get("resourceVersion") or 0):
            return written
        self._written.pop(key, None)
        return cached

    def _pods_of(self, namespace: str, uid: str) -> dict[str, list[dict[str, Any]]]:
        """The revision Pods of one InferenceService, by revision name (as this controller last knew them)."""
        pods = {key: pod for key, pod in self.pods.cache.items() if key[0] == namespace}
        for key, pod in self._created_pods.items():
            if key[0] == namespace:
                pods.setdefault(key, pod)
        result: dict[str, list[dict[str, Any]]] = {}
        for pod in pods.values():
            if str(pod["metadata"].get("uid")) in self._deleted_pods or not _owned_by(pod, uid):
                continue
            revision = (pod["metadata"].get("labels") or {}).get(LABEL_KN_REVISION)
            if revision:
                result.setdefault(revision, []).append(pod)
        return result

    async def _stop(self, key: ObjectKey) -> None:
        state = self.serving.pop(key, None)
        if state is not None:
            await state.router.stop()
            log.info("stopped the router of InferenceService %s/%s", *key)

    async def _state_for(self, key: ObjectKey, isvc: Mapping[str, Any],
                         pods: Mapping[str, Sequence[Mapping[str, Any]]]) -> ServingState:
        uid = str(isvc["metadata"].get("uid"))
        state = self.serving.get(key)
        if state is not None and state.uid == uid:
            return state
        await self._stop(key)  # a new object with the same name
        router = TrafficRouter(f"{key[0]}/{key[1]}")
        previous_url = (isvc.get("status") or {}).get("url") or ""
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/?", previous_url)
        await router.start(int(match.group(1)) if match else None)
        state = ServingState(uid=uid, router=router)
        for revision_pods in pods.values():  # revisions that outlived a restart of the node
            pod = current_pod(revision_pods)
            record = _record_from_pod(pod) if pod is not None else None
            if record is not None:
                record.created = node_time_of(self.clock, record.created) if record.created else None
                state.revisions[record.name] = record
        component = ((isvc.get("status") or {}).get("components") or {}).get(PREDICTOR) or {}
        latest = component.get("latestCreatedRevision")
        if latest:
            state.latest_created = latest
        elif state.revisions:
            state.latest_created = max(state.revisions.values(), key=lambda r: r.number).name
        self.serving[key] = state
        return state

    async def reconcile(self, key: ObjectKey) -> timedelta | None:
        """One pass for one InferenceService; returns when to look again (None: on change only)."""
        isvc = self._isvc(key)
        if isvc is None or isvc["metadata"].get("deletionTimestamp"):
            await self._stop(key)
            return None
        namespace, name = key
        uid = str(isvc["metadata"].get("uid"))
        pods = self._pods_of(namespace, uid)
        state = await self._state_for(key, isvc, pods)
        now = self.clock.now()
        invalid = unsupported_spec(isvc)
        routing: Routing | None = None
        latest_health: RevisionHealth | None = None
        latest_pod: dict[str, Any] | None = None
        requeue: timedelta | None = None

        if invalid is None:
            template = revision_template(isvc)
            digest = template_hash(template)
            latest = state.revisions.get(state.latest_created or "")
            if latest is None or (latest.template_hash != digest and latest.template_hash):
                number = max([revision_number(state.latest_created), *(r.number for r in state.revisions.values())]) + 1
                if latest is None and state.latest_created:
                    number = revision_number(state.latest_created)  # remembered in status, Pod gone with a restart
                revision = revision_name(name, number)
                manifest = desired_revision_pod(isvc, revision=revision, number=number, port=free_port(),
                                                template=template)
                state.revisions[revision] = RevisionRecord(revision, number, digest, manifest, now)
                state.latest_created = revision
                log.info("InferenceService %s/%s: revision %s", namespace, name, revision)
            assert state.latest_created is not None
            requeues: list[timedelta] = []
            previous_component = ((isvc.get("status") or {}).get("components") or {}).get(PREDICTOR) or {}
            # One Pod for each revision that is, or may be, routed or is the latest (a ReplicaSet's
            # job); revisions beyond those only keep the Pod they have until it is deleted below.
            candidates = {state.latest_created, *routed_revisions(previous_component.get("traffic") or []),
                          *(previous_component.get(k) for k in ("latestReadyRevision", "latestRolledoutRevision",
                                                                 "previousRolledoutRevision"))}
            current: dict[str, Mapping[str, Any]] = {}
            for revision in {*pods, state.latest_created}:
                record = state.revisions.get(revision)
                if record is not None and revision in candidates:
                    pod = await self._replica(record, pods.get(revision, []), now, requeues)
                else:
                    pod = current_pod(pods.get(revision, []))
                if pod is not None:
                    current[revision] = pod

            deadline = progress_deadline_of(isvc)
            health = {record.name: revision_health(current.get(record.name), now=now, created=record.created,
                                                   progress_deadline=deadline)
                      for record in state.revisions.values()}
            for revision, known in health.items():
                if known.ready:
                    state.revisions[revision].replacements = 0
                    state.revisions[revision].retry_at = None
            routing = settle_routing(canary_percent(isvc), previous_component, health,
                                     latest_created=state.latest_created, service=service_name(name),
                                     url=state.router.url)
            routed = routed_revisions(routing.service.traffic)
            for revision in routed - set(current):  # a rollback to a revision scaled to zero
                record = state.revisions.get(revision)
                if record is not None:
                    await self._replica(record, [], now, requeues)
            state.router.update(backends(routing.service.traffic, health))
            for revision, revision_pods in pods.items():
                if revision not in routed and revision != state.latest_created:
                    for pod in revision_pods:  # no traffic: Knative scales the revision to zero
                        await self._delete_pod(pod)
            latest_health = health.get(state.latest_created)
            latest_pod = dict(current[state.latest_created]) if state.latest_created in current else None
            latest_record = state.revisions[state.latest_created]
            if latest_health is not None and latest_health.state == "Deploying" and latest_record.created:
                requeues.append(latest_record.created + deadline - now + timedelta(milliseconds=100))
            requeue = min(requeues) if requeues else None

        status = inference_service_status(isvc, routing=routing, invalid=invalid, latest=latest_health,
                                          latest_pod=latest_pod, url=state.router.url, now=now)
        old = dict(isvc.get("status") or {})
        if status_changed(_without_times(old), _without_times(status)):
            written = await self.client.patch_status(resource_path(API_VERSION, PLURAL, namespace, name),
                                                     merge_patch(old, status))
            if written is not None:
                self._written[key] = written
        return requeue

    async def _replica(self, record: RevisionRecord, pods: Sequence[Mapping[str, Any]], now: datetime,
                       requeues: list[timedelta]) -> Mapping[str, Any] | None:
        """Keep exactly one Pod for the revision, as its ReplicaSet would; returns that Pod.

        A terminated Pod (its node stopped, it was evicted) is replaced by a new one, with a
        back-off between replacements; one failed for a reason a new Pod cannot fix is kept,
        so that the revision reports it.
        """
        pod = current_pod(pods)
        if pod is not None and replaceable(pod):
            if record.retry_at is not None and now < record.retry_at:
                requeues.append(record.retry_at - now)
            else:
                record.replacements += 1
                record.retry_at = now + replacement_backoff(record.replacements)
                log.info("revision %s: replacing terminated pod %s", record.name, pod["metadata"]["name"])
                pod = None
        for other in pods:
            if other is not pod and not _deleting(other):
                await self._delete_pod(other)
        if pod is None:
            pod = await self._create_pod(record)
        return pod

    async def _create_pod(self, record: RevisionRecord) -> dict[str, Any]:
        namespace = record.pod["metadata"]["namespace"]
        created = await self.client.create(resource_path("v1", "pods", namespace), record.pod)
        self._created_pods[object_key(created)] = created
        return created

    async def _delete_pod(self, pod: Mapping[str, Any]) -> None:
        if _deleting(pod):
            return
        namespace, name = object_key(pod)
        await self.client.delete(resource_path("v1", "pods", namespace, name))
        self._created_pods.pop((namespace, name), None)
        self._deleted_pods.add(str(pod["metadata"].get("uid")))


def _without_times(status: Mapping[str, Any]) -> dict[str, Any]:
    """The status without timestamps that alone never justify a write."""
    result = copy.deepcopy(dict(status))
    for cond in result.get("conditions") or []:
        cond.pop("lastTransitionTime", None)
    info = (result.get("modelStatus") or {}).get("lastFailureInfo")
    if isinstance(info, dict):
        info.pop("time", None)
    return result


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: removed keys become null."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif key not in old or before != value:
            patch[key] = copy.deepcopy(value)
    return patch

