"""The operator's ClusterRole grants exactly what the operator uses.

A real operator (`kubeloop operator`, a separate process) reconciles one object of each kind —
the samples of manifests/samples/, on real data, through to a materialized FeatureSet, a
succeeded TrainingRun and the ModelVersion it registers — against a local API server that
records every request. The operator authenticates with a token of its own, so its requests are
told apart from those of the test, kubectl and the local node the way kube-apiserver tells users
apart: by credential. Each request becomes the (verb, group, resource) RBAC authorizes; then

* every call the operator made must be granted by manifests/base/clusterrole.yaml, and
* every (verb, group, resource) the ClusterRole grants must have been used, or be listed in
  NOT_EXERCISED with the reason it is needed although this run did not call it.
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import attrs
import kmock
import pytest
import yaml

from kubeloop.local.apiserver import HOST, LocalAPIServer
from kubeloop.local.kubeconfig import write_kubeconfig
from kubeloop.local.request_options import parse_route
from kubeloop.local.supervisor import ManagedProcess, free_port, python_module
from tests.conftest import KubectlCLI
from tests.integration import conftest as integration
from tests.manifests.rendering import find, render

REPO = Path(__file__).resolve().parents[2]
OPERATOR_TOKEN = "kubeloop-operator-under-test"
NAMESPACE = "rbac-probe"
HANG_GUARD = 300.0  # seconds: only stops a hung run (training included); never a performance limit
T = TypeVar("T")

Call = tuple[str, str, str]
"""(verb, API group, resource[/subresource]) as RBAC authorizes a request."""

NOT_EXERCISED: dict[Call, str] = {
    ("delete", "batch", "jobs"): "a FeatureSet whose spec changes while its materialization Job still runs "
    "deletes that Job (featureset/desired.py superseded_jobs); here the Job had finished",
    ("get", "batch", "jobs"): "a TrainingRun whose Job already exists (create answered 409) reads it back, "
    "and a Job created by a CronJob is traced to its owner through that CronJob",
    ("get", "kubeloop.dev", "driftmonitors"): "a child of a DriftMonitor that changes (its check's CronJob or "
    "Job) makes the operator read the monitor to reconcile it; no check ran here",
    ("create", "kubeloop.dev", "trainingruns"): "a DriftMonitor's retrain creates a TrainingRun; this run has "
    "no prediction traffic, so no drift and no retrain",
    ("get", "serving.kserve.io", "inferenceservices"): "ModelVersion serving reconciles into a KServe "
    "InferenceService (architecture); this run serves nothing",
    ("create", "serving.kserve.io", "inferenceservices"): "server-side apply of a ModelVersion's "
    "InferenceService creates it (authorized as create)",
    ("patch", "serving.kserve.io", "inferenceservices"): "server-side apply of a ModelVersion's "
    "InferenceService, and each canary step's traffic change",
    ("delete", "serving.kserve.io", "inferenceservices"): "a retired or rolled-back ModelVersion's "
    "InferenceService is removed",
}

# Requests that are not about a resource: discovery, version and OpenAPI. kube-apiserver grants
# them to every authenticated user through the system:discovery and system:public-info-viewer
# ClusterRoles, so the operator's ClusterRole needs no nonResourceURLs rule for them.
NON_RESOURCE_PREFIXES = ("/api", "/apis", "/version", "/openapi", "/healthz", "/livez", "/readyz")


@dataclass(frozen=True)
class Request:
    """What RBAC needs of one request, and who made it (its bearer token)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    token: str


@attrs.define(kw_only=True)
class RecordingAPIServer(LocalAPIServer):
    """The local API server, keeping every request's method, path, query and bearer token
    (its own history is a bounded window, too short for a whole reconcile)."""

    log: list[Request] = attrs.field(init=False, factory=list)

    def _remember(self, request: kmock.Request) -> None:
        raw = request._raw_request
        assert raw is not None
        token = raw.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        self.log.append(Request(raw.method, raw.path, dict(raw.query), raw.content_type, token))
        super()._remember(request)


class ServedRecorder:
    """A RecordingAPIServer served on 127.0.0.1 from a thread with its own event loop."""

    def __init__(self) -> None:
        self.server = RecordingAPIServer()
        self.port = free_port()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> ServedRecorder:
        self._thread.start()
        if not self._ready.wait(30):
            raise AssertionError("the recording API server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)

    def requests(self) -> list[Request]:
        """A copy of the log (appended to from the server's thread)."""
        return list(self.server.log)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.server:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, self.port))
            runner = aiohttp.web.ServerRunner(aiohttp.web.Server(self.server, handler_cancellation=True),
                                              shutdown_timeout=5.0)
            await runner.setup()
            await aiohttp.web.SockSite(runner, sock).start()
            self._ready.set()
            await self._stop.wait()
            self.server.stop_watches()
            await runner.cleanup()


def rbac_calls(request: Request) -> set[Call]:
    """The (verb, group, resource) calls kube-apiserver's RBAC authorizer checks for a request;
    none for a non-resource request.

    A server-side apply is a PATCH authorized as patch and, when it creates the object, also as
    create (kube-apiserver's "patch and apply" API concepts); the operator applies children that
    may not exist yet, so each of its apply requests counts as both.
    """
    method, path, query = request.method, request.path, request.query
    route = parse_route(path)
    if route.plural is None:
        if not path.startswith(NON_RESOURCE_PREFIXES):
            raise AssertionError(f"unexpected non-resource request {method} {path}")
        return set()
    resource = route.plural + (f"/{route.subresource}" if route.subresource else "")
    group = route.group or ""
    if method == "GET":
        verb = "watch" if query.get("watch") in ("1", "true") else "get" if route.name else "list"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, "")
        if method == "DELETE":
            verb = "delete" if route.name else "deletecollection"
    if not verb:
        raise AssertionError(f"no RBAC verb for {method} {path}")
    if method == "PATCH" and request.content_type == "application/apply-patch+yaml":
        return {(verb, group, resource), ("create", group, resource)}
    return {(verb, group, resource)}


def granted(clusterrole: dict[str, Any]) -> set[Call]:
    """Every (verb, group, resource) the ClusterRole's rules grant (no wildcards allowed)."""
    calls: set[Call] = set()
    for rule in clusterrole["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {field} of {rule}: grant exactly what is used"
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    calls.add((verb, group, resource))
    return calls


@dataclass
class Probe:
    """The operator's calls during the run, and the ClusterRole under test."""

    calls: set[Call]
    clusterrole: dict[str, Any]


@dataclass
class ProbeCluster:
    """The recording API server, an S3 store, a local node and the operator under test."""

    root: Path
    api: ServedRecorder
    s3: Any  # kubeloop.local.s3.LocalS3
    client: Any  # kubeloop.core.kube.KubeClient, as the cluster admin
    kubectl: KubectlCLI
    processes: list[ManagedProcess]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log_tail(40)}" for p in self.processes)

    def wait_for(self, check: Callable[[], T], *, what: str) -> T:
        """integration.wait_for, with the processes' logs in the failure."""
        try:
            return integration.wait_for(check, what=what, timeout=HANG_GUARD, interval=0.5)
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n{self.logs()}") from None

    def status(self, kind: str, name: str) -> dict[str, Any]:
        obj = self.client.get("kubeloop.dev/v1alpha1", kind, NAMESPACE, name) or {}
        return dict(obj.get("status") or {})

    def operator_calls(self, since: int = 0) -> set[Call]:
        return {call for request in self.api.requests()[since:] if request.token == OPERATOR_TOKEN
                for call in rbac_calls(request)}

    def workload_env(self) -> dict[str, str]:
        return {"KUBELOOP_S3_ENDPOINT": self.s3.endpoint, "KUBELOOP_S3_BUCKET": "kubeloop",
                "KUBELOOP_S3_SECRET": "kubeloop-s3", "KUBELOOP_S3_REGION": self.s3.region}


def _samples() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((REPO / "manifests" / "samples").glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def install(cluster: ProbeCluster) -> None:
    """CRDs (kubeloop's and KServe's InferenceService), the namespace, the sample data and the
    object store Secrets, as an administrator would set them up."""
    from kubeloop.crdgen import custom_resource_definition, resources
    from kubeloop.local.environment import wait_established
    from kubeloop.local.node.inferenceservices import inferenceservice_crd
    from kubeloop.local.sampledata import parquet_bytes, transactions

    crds = [custom_resource_definition(r) for r in resources()] + [inferenceservice_crd()]
    for crd in crds:
        cluster.client.apply(crd)
    for crd in crds:
        wait_established(cluster.client, crd["metadata"]["name"])
    cluster.client.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    for bucket in ("kubeloop", "kubeloop-data"):
        cluster.s3.ensure_bucket(bucket)
    data = parquet_bytes(transactions(20_000))
    cluster.s3.client().put_object("kubeloop-data", "transactions/part-0.parquet", io.BytesIO(data), len(data))
    for secret in ("kubeloop-s3", "kubeloop-data-credentials"):
        cluster.client.apply(cluster.s3.secret_manifest(secret, NAMESPACE))


def start_node(cluster: ProbeCluster, kubeconfig: Path) -> None:
    from kubeloop.local.environment import wait_node_ready

    # No scrape controller: there is no Prometheus here.
    node = ManagedProcess(
        "node", python_module("kubeloop", "local", "node", "--kubeconfig", str(kubeconfig),
                              "--state-dir", str(cluster.root / "node"), "--node-name", "rbac-node",
                              "--controllers", "kubelet,job,cronjob,inferenceservice"),
        log_path=cluster.root / "node.log", env=cluster.workload_env()).start()
    cluster.processes.append(node)
    wait_node_ready(cluster.client, "rbac-node", node)


def start_operator(cluster: ProbeCluster, kubeconfig: Path) -> None:
    health_port = free_port()
    operator = ManagedProcess(
        "operator", python_module("kubeloop", "operator", "--kubeconfig", str(kubeconfig),
                                  "--metrics-address", "127.0.0.1", "--metrics-port", str(free_port()),
                                  "--health-address", "127.0.0.1", "--health-port", str(health_port)),
        log_path=cluster.root / "operator.log",
        # A short resync period, so the periodic half of the reconcile is recorded too.
        env={**cluster.workload_env(), "KUBELOOP_RESYNC_SECONDS": "2"}).start()
    cluster.processes.append(operator)
    operator.wait_ready(f"http://127.0.0.1:{health_port}/healthz", timeout=60)


def exercise(cluster: ProbeCluster) -> None:
    """Make the operator do its work: the samples through materialization, training and
    registration; a FeatureSet change that deletes its CronJob and materializes again; a resync."""
    from kubeloop.core.labels import label_value, owner_label_key
    from kubeloop.crdgen import resources

    for doc in _samples():
        cluster.kubectl.apply(doc, "-n", NAMESPACE)
    cluster.wait_for(lambda: cluster.status("FeatureSet", "transactions").get("phase") == "Ready",
                     what="the sample FeatureSet to materialize")
    cluster.wait_for(lambda: cluster.status("TrainingRun", "fraud-detector-1").get("phase") == "Succeeded",
                     what="the sample TrainingRun to succeed")
    for kind, name in (("ModelVersion", "fraud-detector-1"), ("DriftMonitor", "fraud-detector-drift")):
        cluster.wait_for(lambda k=kind, n=name: cluster.status(k, n).get("observedGeneration"),  # type: ignore[misc]
                         what=f"the operator to write the sample {kind}'s status")

    # A schedule removed: the CronJob is deleted, and the changed spec materializes again.
    children = f"{owner_label_key('FeatureSet')}={label_value('transactions')}"
    cluster.wait_for(lambda: cluster.client.list("batch/v1", "CronJob", NAMESPACE, label_selector=children),
                     what="the CronJob of the scheduled sample FeatureSet")
    cluster.kubectl("patch", "featureset", "transactions", "-n", NAMESPACE, "--type=json",
                    "-p", '[{"op": "remove", "path": "/spec/schedule"}]')
    cluster.wait_for(lambda: not cluster.client.list("batch/v1", "CronJob", NAMESPACE, label_selector=children),
                     what="the CronJob of the unscheduled FeatureSet to be deleted")
    cluster.wait_for(lambda: cluster.status("FeatureSet", "transactions").get("observedGeneration") == 2
                     and cluster.status("FeatureSet", "transactions").get("phase") == "Ready",
                     what="the changed FeatureSet to materialize again")

    # The resync loop lists every kind and marks each object; wait for a full pass of it.
    since = len(cluster.api.requests())
    cluster.wait_for(lambda: all(("list", "kubeloop.dev", r.plural) in cluster.operator_calls(since)
                                 for r in resources()),
                     what="a resync pass over every kind")


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    from kubeloop.core.kube import KubeClient
    from kubeloop.local.s3 import LocalS3

    root = tmp_path_factory.mktemp("rbac")
    api = ServedRecorder().start()
    s3 = LocalS3(root / "s3").start()
    admin_kubeconfig = write_kubeconfig(root / "admin-kubeconfig", api.url)
    client = KubeClient.connect(str(admin_kubeconfig), field_manager="rbac-test")
    cluster = ProbeCluster(root=root, api=api, s3=s3, client=client,
                           kubectl=KubectlCLI(admin_kubeconfig, root / "kubecache"), processes=[])
    try:
        install(cluster)
        start_node(cluster, admin_kubeconfig)
        start_operator(cluster, write_kubeconfig(root / "operator-kubeconfig", api.url, token=OPERATOR_TOKEN))
        exercise(cluster)
        clusterrole = find(render(REPO / "manifests"), "ClusterRole", "kubeloop-operator")
        yield Probe(calls=cluster.operator_calls(), clusterrole=clusterrole)
    finally:
        for process in reversed(cluster.processes):
            process.stop()
        client.close()
        s3.stop()
        api.stop()


@pytest.mark.integration
@pytest.mark.slow
def test_every_call_of_the_operator_is_granted(probe: Probe) -> None:
    missing = sorted(probe.calls - granted(probe.clusterrole))
    assert not missing, f"the operator made calls its ClusterRole does not grant: {missing}"


@pytest.mark.integration
@pytest.mark.slow
def test_every_grant_is_used_or_justified(probe: Probe) -> None:
    unused = granted(probe.clusterrole) - probe.calls
    unjustified = sorted(unused - NOT_EXERCISED.keys())
    assert not unjustified, (
        f"the ClusterRole grants calls the operator never made: {unjustified}; remove them, or add "
        "each to NOT_EXERCISED with the reason it is needed")


@pytest.mark.integration
@pytest.mark.slow
def test_justifications_are_for_granted_calls(probe: Probe) -> None:
    # An entry may be used in one run and not in another (a Job still running when its spec
    # changes is a race), so only entries the ClusterRole no longer grants are stale.
    stale = sorted(call for call in NOT_EXERCISED if call not in granted(probe.clusterrole))
    assert not stale, f"NOT_EXERCISED lists calls the ClusterRole does not grant: {stale}; remove them"


@pytest.mark.integration
@pytest.mark.slow
def test_the_operator_reconciled_through_the_probe(probe: Probe) -> None:
    # The run reached what the ClusterRole exists for: watching each kind, writing its status,
    # creating children. A probe that observed nothing would prove nothing.
    for plural in ("featuresets", "trainingruns", "modelversions", "driftmonitors"):
        assert ("watch", "kubeloop.dev", plural) in probe.calls
        assert ("patch", "kubeloop.dev", f"{plural}/status") in probe.calls
    assert ("create", "batch", "jobs") in probe.calls or ("patch", "batch", "jobs") in probe.calls
    assert ("create", "kubeloop.dev", "modelversions") in probe.calls


@pytest.mark.parametrize(("method", "path", "query", "content_type", "expected"), [
    ("GET", "/apis/batch/v1/namespaces/ml/jobs/j", {}, "", {("get", "batch", "jobs")}),
    ("GET", "/apis/batch/v1/jobs", {"labelSelector": "a=b"}, "", {("list", "batch", "jobs")}),
    ("GET", "/apis/batch/v1/jobs", {"watch": "true"}, "", {("watch", "batch", "jobs")}),
    ("POST", "/api/v1/namespaces/ml/events", {}, "application/json", {("create", "", "events")}),
    ("PATCH", "/apis/kubeloop.dev/v1alpha1/namespaces/ml/featuresets/fs/status", {},
     "application/merge-patch+json", {("patch", "kubeloop.dev", "featuresets/status")}),
    ("PATCH", "/apis/batch/v1/namespaces/ml/cronjobs/c", {"fieldManager": "kubeloop"},
     "application/apply-patch+yaml", {("patch", "batch", "cronjobs"), ("create", "batch", "cronjobs")}),
    ("PUT", "/api/v1/namespaces/ml/services/s", {}, "application/json", {("update", "", "services")}),
    ("DELETE", "/apis/batch/v1/namespaces/ml/jobs/j", {}, "", {("delete", "batch", "jobs")}),
    ("DELETE", "/apis/batch/v1/namespaces/ml/jobs", {}, "", {("deletecollection", "batch", "jobs")}),
    ("GET", "/apis", {}, "", set()),
    ("GET", "/version", {}, "", set()),
])
def test_requests_map_to_the_calls_rbac_authorizes(method: str, path: str, query: dict[str, str],
                                                   content_type: str, expected: set[Call]) -> None:
    assert rbac_calls(Request(method, path, query, content_type, OPERATOR_TOKEN)) == expected


def test_wildcards_are_refused() -> None:
    with pytest.raises(AssertionError, match="wildcard"):
        granted({"rules": [{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}]})
