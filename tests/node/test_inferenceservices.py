"""The local node's KServe emulation: traffic and status decisions (pure), the router, and
InferenceServices served for real by the session node.

The pure tests pin the traffic rules to KServe's Serverless mode (canary, promotion, rollback,
a failing revision) and the status to KServe's shape; the router tests proxy real HTTP
in-process; the real tests apply InferenceServices whose predictor is a tiny HTTP server and
talk to it through `status.url`.
"""

from __future__ import annotations

import json
import random
import socket
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from kubeloop.local.node.inferenceservices import (
    ANNOTATION_TEMPLATE_HASH,
    CRD_NAME,
    LABEL_ISVC,
    LABEL_KN_REVISION,
    RevisionHealth,
    current_pod,
    desired_revision_pod,
    desired_traffic,
    inference_service_status,
    inferenceservice_crd,
    knative_service_status,
    merge_patch,
    replaceable,
    replacement_backoff,
    revision_health,
    revision_template,
    settle_conditions,
    settle_routing,
    template_hash,
    unsupported_spec,
)
from kubeloop.local.node.inferenceservices import Cond as C
from kubeloop.local.node.router import TAG_HEADER, Backend, TrafficRouter, choose_backend
from tests.node.conftest import KubeAPI, RunningNode, wait_for

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
URL = "http://127.0.0.1:40000"
R1, R2, R3 = "m-predictor-00001", "m-predictor-00002", "m-predictor-00003"
READY = RevisionHealth("Ready", url="http://127.0.0.1:41001")
DEPLOYING = RevisionHealth("Deploying", "Deploying")
FAILED = RevisionHealth("Failed", "ExitCode1", "Container failed with: Error (exit code 1)")


def isvc(predictor: dict[str, Any] | None = None, *, status: dict[str, Any] | None = None,
         annotations: dict[str, str] | None = None, generation: int = 1) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "m", "namespace": "ns", "uid": "isvc-uid", "generation": generation}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": meta,
            "spec": {"predictor": predictor if predictor is not None else {
                "containers": [{"name": "kserve-container", "image": "ghcr.io/kubeloop/server:dev"}]}},
            **({"status": status} if status is not None else {})}


def settle(canary: int | None, component: dict[str, Any], health: dict[str, RevisionHealth],
           latest: str) -> Any:
    return settle_routing(canary, component, health, latest_created=latest, service="m-predictor", url=URL)


def split(routing: Any) -> list[tuple[str, int, bool, str | None]]:
    return [(t["revisionName"], t["percent"], t["latestRevision"], t.get("tag")) for t in routing.component["traffic"]]


# --- traffic (KServe's ksvc reconciler + Knative's route) -------------------------------------------


def test_desired_traffic_is_kserves() -> None:
    assert desired_traffic(None, {}) == desired_traffic(30, {}) == [
        desired_traffic(None, {"latestRolledoutRevision": R1})[0]]  # blue-green until something rolled out
    canary = desired_traffic(30, {"latestRolledoutRevision": R1})
    assert [(t.percent, t.latest_revision, t.revision_name, t.tag) for t in canary] == [
        (30, True, None, None), (70, False, R1, "prev")]
    assert [(t.percent, t.latest_revision) for t in desired_traffic(100, {"latestRolledoutRevision": R1})] == [
        (100, True)]


def test_first_revision_gets_all_traffic_once_ready() -> None:
    pending = settle(None, {}, {R1: DEPLOYING}, R1)
    assert pending.component["latestCreatedRevision"] == R1
    assert "traffic" not in pending.component and "latestReadyRevision" not in pending.component
    assert pending.service.routes_ready.reason == "RevisionMissing"
    assert pending.service.ready.status == "Unknown"
    ready = settle(None, pending.component, {R1: READY}, R1)
    assert split(ready) == [(R1, 100, True, None)]
    assert ready.component["latestRolledoutRevision"] == R1
    assert "previousRolledoutRevision" not in ready.component
    assert ready.component["url"] == URL and ready.component["address"] == {"url": URL}


def rolled_out_r1() -> dict[str, Any]:
    return settle(None, {}, {R1: READY}, R1).component


def test_canary_keeps_traffic_on_the_previous_revision_until_the_new_one_is_ready() -> None:
    waiting = settle(30, rolled_out_r1(), {R1: READY, R2: DEPLOYING}, R2)
    # The latest-revision target resolves to the latest *ready* revision: all traffic stays on R1.
    assert split(waiting) == [(R1, 30, True, None), (R1, 70, False, "prev")]
    assert waiting.service.configurations_ready.status == "Unknown"
    canary = settle(30, waiting.component, {R1: READY, R2: READY}, R2)
    assert split(canary) == [(R2, 30, True, None), (R1, 70, False, "prev")]
    assert canary.component["latestReadyRevision"] == R2
    assert canary.component["latestRolledoutRevision"] == R1  # not rolled out at 30%
    assert canary.service.ready.status == "True"


def test_promotion_to_100_rolls_the_canary_out() -> None:
    canary = settle(30, rolled_out_r1(), {R1: READY, R2: READY}, R2)
    promoted = settle(100, canary.component, {R1: READY, R2: READY}, R2)
    assert split(promoted) == [(R2, 100, True, None)]
    assert promoted.component["latestRolledoutRevision"] == R2
    assert promoted.component["previousRolledoutRevision"] == R1
    # Removing canaryTrafficPercent altogether promotes the same way.
    assert split(settle(None, canary.component, {R1: READY, R2: READY}, R2)) == [(R2, 100, True, None)]


def test_canary_zero_after_promotion_rolls_back() -> None:
    promoted = settle(100, settle(30, rolled_out_r1(), {R1: READY, R2: READY}, R2).component,
                      {R1: READY, R2: READY}, R2)
    rolled_back = settle(0, promoted.component, {R1: READY, R2: READY}, R2)
    assert split(rolled_back) == [(R2, 0, True, None), (R1, 100, False, "prev")]
    assert rolled_back.component["latestRolledoutRevision"] == R1


def test_failing_revision_keeps_traffic_where_it_was() -> None:
    failing = settle(None, rolled_out_r1(), {R1: READY, R2: FAILED}, R2)
    assert split(failing) == [(R1, 100, True, None)]
    assert failing.component["latestCreatedRevision"] == R2
    assert failing.component["latestReadyRevision"] == R1
    assert failing.service.configurations_ready == C(
        "ConfigurationsReady", "False", "RevisionFailed",
        f'Revision "{R2}" failed with message: Container failed with: Error (exit code 1).')
    assert failing.service.routes_ready.status == "True"
    assert failing.service.ready.status == "False"
    # A fixed spec (revision 3) that becomes ready takes over.
    fixed = settle(None, failing.component, {R1: READY, R2: FAILED, R3: READY}, R3)
    assert split(fixed) == [(R3, 100, True, None)]
    assert (fixed.component["latestRolledoutRevision"], fixed.component["previousRolledoutRevision"]) == (R3, R1)


def test_a_routed_revision_that_dies_makes_the_route_not_ready() -> None:
    canary = settle(30, rolled_out_r1(), {R1: READY, R2: READY}, R2)
    broken = knative_service_status([], {}, latest_created=None, previous_latest_ready=None, service="m-predictor")
    assert broken.ready.status == "Unknown"
    dead_prev = settle(30, canary.component, {R1: FAILED, R2: READY}, R2)
    assert dead_prev.service.routes_ready == C("RoutesReady", "False", "RevisionMissing",
                                               f'Revision "{R1}" failed to become ready.')


# --- revisions ------------------------------------------------------------------------------------


def test_only_pod_template_changes_make_a_new_revision() -> None:
    base = isvc({"containers": [{"name": "kserve-container", "image": "i"}]})
    canary = isvc({"containers": [{"name": "kserve-container", "image": "i"}], "canaryTrafficPercent": 30})
    changed = isvc({"containers": [{"name": "kserve-container", "image": "i", "env": [{"name": "A", "value": "1"}]}]})
    assert template_hash(revision_template(base)) == template_hash(revision_template(canary))
    assert template_hash(revision_template(base)) != template_hash(revision_template(changed))


def test_revision_pod_follows_knatives_container_contract() -> None:
    predictor = {"containers": [{"name": "kserve-container", "image": "ghcr.io/kubeloop/server:1",
                                 "args": ["--port", "$(PORT)"], "env": [{"name": "PORT", "value": "8080"},
                                                                         {"name": "MODEL", "value": "m"}],
                                 "ports": [{"containerPort": 8080, "name": "h2c", "protocol": "TCP"}]}],
                 "minReplicas": 0, "maxReplicas": 3, "canaryTrafficPercent": 10,
                 "labels": {"team": "ml"}, "serviceAccountName": "sa"}
    pod = desired_revision_pod(isvc(predictor), revision=R1, number=1, port=45678,
                               template=revision_template(isvc(predictor)))
    container = pod["spec"]["containers"][0]
    assert container["ports"] == [{"containerPort": 45678, "name": "h2c", "protocol": "TCP"}]
    assert container["env"] == [{"name": "MODEL", "value": "m"}, {"name": "PORT", "value": "45678"},
                                {"name": "K_REVISION", "value": R1}, {"name": "K_CONFIGURATION", "value": "m-predictor"},
                                {"name": "K_SERVICE", "value": "m-predictor"}]
    assert container["readinessProbe"]["tcpSocket"] == {"port": 45678}
    assert pod["spec"]["serviceAccountName"] == "sa"
    assert pod["spec"]["restartPolicy"] == "Always"
    assert not {"minReplicas", "maxReplicas", "canaryTrafficPercent", "labels"} & set(pod["spec"])
    meta = pod["metadata"]
    assert meta["generateName"] == f"{R1}-deployment-"
    assert meta["labels"] == {"team": "ml", LABEL_ISVC: "m", "component": "predictor",
                              "serving.knative.dev/service": "m-predictor",
                              "serving.knative.dev/configuration": "m-predictor",
                              "serving.knative.dev/configurationGeneration": "1", LABEL_KN_REVISION: R1, "app": R1}
    assert meta["annotations"][ANNOTATION_TEMPLATE_HASH] == template_hash(revision_template(isvc(predictor)))
    assert meta["ownerReferences"] == [{"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                        "name": "m", "uid": "isvc-uid", "controller": True,
                                        "blockOwnerDeletion": True}]


def test_a_users_probe_on_the_container_port_follows_the_port() -> None:
    predictor = {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 8080}],
                                 "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8080}}}]}
    pod = desired_revision_pod(isvc(predictor), revision=R1, number=1, port=41000,
                               template=revision_template(isvc(predictor)))
    assert pod["spec"]["containers"][0]["readinessProbe"] == {"httpGet": {"path": "/v2/health/ready", "port": 41000}}


def pod(*, ready: bool = False, phase: str = "Running", statuses: list[dict[str, Any]] | None = None,
        port: int = 41001) -> dict[str, Any]:
    return {"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "kserve-container", "ports": [{"containerPort": port}]}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "containerStatuses": statuses or []}}


def health(p: dict[str, Any] | None, created: datetime | None = NOW) -> RevisionHealth:
    return revision_health(p, now=NOW + timedelta(seconds=30), created=created,
                           progress_deadline=timedelta(seconds=600))


def test_revision_health_from_its_pod() -> None:
    assert health(pod(ready=True)) == RevisionHealth("Ready", url="http://127.0.0.1:41001")
    assert health(pod()).state == "Deploying"
    assert health(None).state == "Deploying"
    crashed = pod(statuses=[{"name": "kserve-container", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                             "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}}}])
    assert health(crashed) == RevisionHealth("Failed", "ExitCode3", "Container failed with: Error (exit code 3)")
    refused = pod(phase="Pending", statuses=[{"name": "kserve-container", "state": {"waiting": {
        "reason": "ImageNotRunnableLocally", "message": 'image "x" cannot run on the local node'}}}])
    assert health(refused) == RevisionHealth("Failed", "ImageNotRunnableLocally",
                                             'ImageNotRunnableLocally: image "x" cannot run on the local node')
    # Ready again after a crash: a ready pod wins over its last termination, as in Knative.
    recovered = pod(ready=True, statuses=[{"name": "kserve-container", "state": {"running": {}},
                                           "lastState": {"terminated": {"exitCode": 1}}}])
    assert health(recovered).ready
    # Never ready within the progress deadline.
    assert health(pod(), created=NOW - timedelta(seconds=600)) == RevisionHealth(
        "Failed", "ProgressDeadlineExceeded", "Initial scale was never achieved")


def named(name: str, phase: str, created: str, *, reason: str | None = None, deleting: bool = False
          ) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = created
    return {"metadata": meta, "status": {"phase": phase, **({"reason": reason} if reason else {})}}


def test_one_pod_stands_for_a_revision_and_terminated_ones_are_replaced() -> None:
    old_failed = named("r-a", "Failed", "2024-03-01T12:00:00Z", reason="Terminated")
    running = named("r-b", "Running", "2024-03-01T11:00:00Z")
    newest_deleting = named("r-c", "Running", "2024-03-01T13:00:00Z", deleting=True)
    assert current_pod([old_failed, running, newest_deleting]) is running  # live and not terminated wins
    assert current_pod([old_failed]) is old_failed
    assert current_pod([newest_deleting]) is None
    # The node stopped under it: a ReplicaSet replaces it. An image that cannot run: a new Pod won't help.
    assert replaceable(old_failed)
    assert not replaceable(running)
    assert not replaceable(named("r-d", "Failed", "2024-03-01T12:00:00Z", reason="ImageNotRunnableLocally"))
    assert [replacement_backoff(n).total_seconds() for n in (1, 2, 3, 12)] == [1, 2, 4, 300]
    assert replacement_backoff(0) == timedelta(0)


@pytest.mark.parametrize(("change", "reason"), [
    ({"spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://b/m"}}}},
     "ModelRuntimeNotEmulated"),
    ({"spec": {"predictor": {"sklearn": {"storageUri": "s3://b/m"}}}}, "ModelRuntimeNotEmulated"),
    ({"spec": {"predictor": {"containers": [{"name": "c", "image": "i"}]},
               "transformer": {"containers": [{"name": "t", "image": "i"}]}}}, "ComponentNotEmulated"),
    ({"metadata": {"name": "m", "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"}}},
     "DeploymentModeNotEmulated"),
    ({"spec": {"predictor": {"containers": []}}}, "InvalidSpec"),
])
def test_what_is_not_emulated_is_named(change: dict[str, Any], reason: str) -> None:
    obj = isvc()
    for key, value in change.items():
        obj[key] = value
    problem = unsupported_spec(obj)
    assert problem is not None and problem[0] == reason
    assert "spec." in problem[1] or "annotations" in problem[1]
    assert unsupported_spec(isvc()) is None


# --- status ----------------------------------------------------------------------------------------


def status_of(obj: dict[str, Any], routing: Any, latest: RevisionHealth | None, now: datetime = NOW,
              latest_pod: dict[str, Any] | None = None) -> dict[str, Any]:
    return inference_service_status(obj, routing=routing, invalid=None, latest=latest,
                                    latest_pod=latest_pod or pod(ready=latest is not None and latest.ready),
                                    url=URL, now=now)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c.get("reason", ""), c.get("severity", "")) for c in status["conditions"]}


def test_ready_status_has_kserves_shape() -> None:
    routing = settle(None, {}, {R1: READY}, R1)
    status = status_of(isvc(generation=3), routing, READY)
    assert [c["type"] for c in status["conditions"]] == sorted(c["type"] for c in status["conditions"])
    assert conditions(status) == {
        "IngressReady": ("True", "", ""), "LatestDeploymentReady": ("True", "", "Info"),
        "PredictorConfigurationReady": ("True", "", "Info"), "PredictorReady": ("True", "", ""),
        "PredictorRouteReady": ("True", "", "Info"), "Ready": ("True", "", ""), "RoutesReady": ("True", "", "Info"),
    }
    assert all(c["lastTransitionTime"] == "2024-03-01T12:00:00Z" for c in status["conditions"])
    assert status["url"] == URL and status["address"] == {"url": URL}
    assert status["observedGeneration"] == 3
    predictor = status["components"]["predictor"]
    assert predictor == {"latestCreatedRevision": R1, "latestReadyRevision": R1, "latestRolledoutRevision": R1,
                         "traffic": [{"latestRevision": True, "percent": 100, "revisionName": R1}],
                         "url": URL, "address": {"url": URL}}
    assert status["modelStatus"] == {"transitionStatus": "UpToDate",
                                     "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
                                     "copies": {"failedCopies": 0, "totalCopies": 1}}


def test_no_url_before_the_predictor_was_ever_ready() -> None:
    status = status_of(isvc(), settle(None, {}, {R1: DEPLOYING}, R1), DEPLOYING)
    assert "url" not in status and "address" not in status
    assert conditions(status)["IngressReady"] == ("Unknown", "", "")
    assert conditions(status)["Ready"][0] == "Unknown"
    assert status["modelStatus"]["transitionStatus"] == "InProgress"


def test_failing_revision_status_names_it_and_keeps_the_url() -> None:
    first = status_of(isvc(), settle(None, {}, {R1: READY}, R1), READY)
    component = first["components"]["predictor"]
    later = NOW + timedelta(minutes=5)
    routing = settle(None, component, {R1: READY, R2: FAILED}, R2)
    crashed_pod = pod(statuses=[{"name": "kserve-container", "state": {"terminated": {"exitCode": 1}}}])
    status = status_of(isvc(status=first, generation=2), routing, FAILED, now=later, latest_pod=crashed_pod)
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["PredictorReady"]["status"] == "False"
    assert by_type["PredictorReady"]["reason"] == "RevisionFailed"
    assert R2 in by_type["PredictorReady"]["message"] and "exit code 1" in by_type["PredictorReady"]["message"]
    assert (by_type["Ready"]["status"], by_type["Ready"]["reason"]) == ("False", "RevisionFailed")
    assert (by_type["IngressReady"]["status"], by_type["IngressReady"]["reason"]) == (
        "False", "Predictor ingress not created")
    assert by_type["PredictorRouteReady"]["lastTransitionTime"] == "2024-03-01T12:00:00Z"  # did not flip
    assert by_type["Ready"]["lastTransitionTime"] == "2024-03-01T12:05:00Z"
    assert status["url"] == URL  # traffic still flows to R1
    assert status["components"]["predictor"]["traffic"] == [
        {"latestRevision": True, "percent": 100, "revisionName": R1}]
    assert status["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
    assert status["modelStatus"]["lastFailureInfo"]["reason"] == "ModelLoadFailed"
    assert status["modelStatus"]["lastFailureInfo"]["exitCode"] == 1


def test_unsupported_spec_status() -> None:
    obj = isvc({"model": {"modelFormat": {"name": "sklearn"}}})
    status = inference_service_status(obj, routing=None, invalid=unsupported_spec(obj), latest=None,
                                      latest_pod=None, url=URL, now=NOW)
    by_type = {c["type"]: c for c in status["conditions"]}
    assert (by_type["Ready"]["status"], by_type["Ready"]["reason"]) == ("False", "ModelRuntimeNotEmulated")
    assert "spec.predictor.model" in by_type["Ready"]["message"]
    assert status["modelStatus"]["transitionStatus"] == "InvalidSpec"


def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    first = settle_conditions([], [C("Ready", "Unknown")], "t1")
    assert settle_conditions(first, [C("Ready", "Unknown")], "t2")[0]["lastTransitionTime"] == "t1"
    assert settle_conditions(first, [C("Ready", "True")], "t2")[0]["lastTransitionTime"] == "t2"


def test_merge_patch_removes_what_is_gone() -> None:
    old = {"components": {"predictor": {"previousRolledoutRevision": R1, "traffic": [1]}}, "url": URL}
    new = {"components": {"predictor": {"traffic": [2]}}, "url": URL}
    assert merge_patch(old, new) == {"components": {"predictor": {"previousRolledoutRevision": None,
                                                                   "traffic": [2]}}}


def test_crd_is_served_and_validates_the_emulated_fields() -> None:
    from kubeloop.local.crds import crd_problems
    from kubeloop.local.schema import validate

    crd = inferenceservice_crd()
    assert crd["metadata"]["name"] == CRD_NAME
    assert crd_problems(crd) == []
    version = crd["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "URL", "Ready", "Prev", "Latest", "PrevRolledoutRevision", "LatestReadyRevision", "Age"]
    schema = version["schema"]["openAPIV3Schema"]
    good = isvc({"containers": [{"name": "c", "image": "i"}], "canaryTrafficPercent": 30, "minReplicas": 0,
                 "tolerations": [{"key": "gpu"}]})
    assert validate(good, schema) == []
    bad = isvc({"containers": [{"image": "i"}], "canaryTrafficPercent": 150, "minReplicas": -1})
    messages = " ".join(str(e) for e in validate(bad, schema))
    assert "canaryTrafficPercent" in messages and "minReplicas" in messages and "name" in messages


# --- the router --------------------------------------------------------------------------------------


def test_choose_backend_splits_by_percent_and_honours_tags() -> None:
    backends = [Backend(R2, 30, "u2", "latest"), Backend(R1, 70, "u1", "prev")]
    assert choose_backend(backends, 0.0).revision == R2
    assert choose_backend(backends, 0.2999).revision == R2
    assert choose_backend(backends, 0.3).revision == R1
    assert choose_backend(backends, 0.9999).revision == R1
    assert choose_backend(backends, 0.1, tag="prev").revision == R1
    assert choose_backend(backends, 0.9, tag="unknown").revision == R1  # unknown tag: default split
    assert choose_backend([Backend(R1, 0, "u1")], 0.5) is None
    rng = random.Random(7)
    counts = Counter(choose_backend(backends, rng.random()).revision for _ in range(10_000))  # type: ignore[union-attr]
    assert 2_800 < counts[R2] < 3_200


async def upstream_app(label: str) -> tuple[web.AppRunner, str]:
    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path == "/stream":
            response = web.StreamResponse(headers={"X-Label": label})
            await response.prepare(request)
            for i in range(3):
                await response.write(f"chunk{i};".encode())
            await response.write_eof()
            return response
        return web.json_response({"label": label, "method": request.method, "path": request.path,
                                  "query": request.query_string, "body": body.decode(),
                                  "x_custom": request.headers.get("X-Custom"),
                                  "forwarded_for": request.headers.get("X-Forwarded-For")},
                                 status=201 if request.method == "POST" else 200, headers={"Set-Cookie": "a=1"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_router_forwards_requests_and_streams_responses() -> None:
    import aiohttp

    runner, url = await upstream_app("one")
    router = TrafficRouter("ns/m")
    await router.start()
    try:
        async with aiohttp.ClientSession(trust_env=False) as session:
            async with session.get(router.url + "/v1/models/m") as response:
                assert response.status == 503
                assert "no revision of ns/m is ready" in await response.text()
            router.update([Backend(R1, 100, None)])
            async with session.get(router.url + "/") as response:
                assert response.status == 503 and R1 in await response.text()
            router.update([Backend(R1, 100, url)])
            async with session.post(router.url + "/v1/models/m:predict?x=1&y=2", data=b'{"instances": [1]}',
                                    headers={"X-Custom": "yes"}) as response:
                assert response.status == 201
                assert response.headers["Set-Cookie"] == "a=1"
                echoed = await response.json()
            assert echoed == {"label": "one", "method": "POST", "path": "/v1/models/m:predict", "query": "x=1&y=2",
                              "body": '{"instances": [1]}', "x_custom": "yes", "forwarded_for": "127.0.0.1"}
            async with session.get(router.url + "/stream") as response:
                assert response.headers["X-Label"] == "one"
                assert await response.text() == "chunk0;chunk1;chunk2;"
            # Knative's tag header picks the tagged revision whatever its share.
            other_runner, other_url = await upstream_app("two")
            try:
                router.update([Backend(R2, 100, other_url, "latest"), Backend(R1, 0, url, "prev")])
                for tag, label in (("prev", "one"), ("latest", "two"), (None, "two")):
                    async with session.get(router.url + "/", headers={TAG_HEADER: tag} if tag else {}) as response:
                        assert (await response.json())["label"] == label
            finally:
                await other_runner.cleanup()
            with socket.socket() as sock:  # a port nothing listens on
                sock.bind(("127.0.0.1", 0))
                dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
            router.update([Backend(R1, 100, dead)])
            async with session.get(router.url + "/") as response:
                assert response.status == 502 and "could not be reached" in await response.text()
    finally:
        await router.stop()
        await runner.cleanup()


async def test_router_keeps_its_port_across_restarts_when_free() -> None:
    router = TrafficRouter("ns/m")
    port = await router.start()
    await router.stop()
    again = TrafficRouter("ns/m")
    assert await again.start(port) == port
    taken = TrafficRouter("ns/other")
    try:
        assert await taken.start(port) != port  # taken: any other free port
    finally:
        await again.stop()
        await taken.stop()


# --- InferenceServices served for real by the session node -----------------------------------------------

SERVER_IMAGE = "ghcr.io/kubeloop/server:test"
# A tiny predictor: answers with its MESSAGE and revision (and echoes POST bodies) on $PORT.
SERVER = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def reply(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.reply(f"{os.environ['MESSAGE']} {os.environ['K_REVISION']} {self.path}".encode())
    def do_POST(self):
        self.reply(self.rfile.read(int(self.headers["Content-Length"])))
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def isvc_crd(node: RunningNode, api: KubeAPI) -> None:
    """The InferenceService CRD installed in the session cluster (as `kubeloop up` installs it)."""
    try:
        api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", inferenceservice_crd())
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise
    wait_for(lambda: api.get("/apis/serving.kserve.io/v1beta1/inferenceservices") is not None,
             what="the InferenceService API")


@pytest.fixture()
def ns(isvc_crd: None, namespace: str) -> Iterator[str]:
    yield namespace


def predictor(message: str, *, command: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"containers": [{"name": "kserve-container", "image": SERVER_IMAGE,
                            "command": command or ["python", "-c", SERVER],
                            "env": [{"name": "MESSAGE", "value": message}]}], **extra}


def apply_isvc(api: KubeAPI, ns: str, name: str, spec_predictor: dict[str, Any]) -> dict[str, Any]:
    path = f"/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices"
    if api.get(f"{path}/{name}") is None:
        return api.create(path, {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                 "metadata": {"name": name}, "spec": {"predictor": spec_predictor}})
    return api.request("PATCH", f"{path}/{name}", [{"op": "replace", "path": "/spec/predictor",
                                                     "value": spec_predictor}],
                       content_type="application/json-patch+json")


def get_isvc(api: KubeAPI, ns: str, name: str) -> dict[str, Any]:
    return api.get(f"/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices/{name}") or {}


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c["type"] == kind), {})


def traffic(obj: dict[str, Any]) -> list[tuple[str, int, bool, str | None]]:
    entries = obj.get("status", {}).get("components", {}).get("predictor", {}).get("traffic") or []
    return [(t["revisionName"], t["percent"], t["latestRevision"], t.get("tag")) for t in entries]


def ready_isvc(api: KubeAPI, ns: str, name: str, generation: int | None = None) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        obj = get_isvc(api, ns, name)
        if condition(obj, "Ready").get("status") != "True":
            return None
        if generation is not None and obj["status"].get("observedGeneration") != generation:
            return None
        return obj

    return wait_for(ready, what=f"InferenceService {name} Ready")


def http(url: str, data: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with _DIRECT.open(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def revision_pods(api: KubeAPI, ns: str, name: str) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["labels"][LABEL_KN_REVISION]: p
            for p in api.items(f"/api/v1/namespaces/{ns}/pods", f"{LABEL_ISVC}={name}")}


def test_inferenceservice_answers_on_its_url(api: KubeAPI, ns: str, kubectl: Any) -> None:
    kubectl.apply({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                   "metadata": {"name": "hello", "namespace": ns}, "spec": {"predictor": predictor("v1")}})
    obj = ready_isvc(api, ns, "hello")
    url = obj["status"]["url"]
    assert url.startswith("http://127.0.0.1:") and obj["status"]["address"] == {"url": url}
    assert http(url + "/v1/models/hello?q=1") == (200, "v1 hello-predictor-00001 /v1/models/hello?q=1")
    assert http(url + "/echo", b'{"instances": [[1, 2]]}') == (200, '{"instances": [[1, 2]]}')
    assert traffic(obj) == [("hello-predictor-00001", 100, True, None)]
    for kind in ("PredictorReady", "IngressReady", "LatestDeploymentReady", "RoutesReady"):
        assert condition(obj, kind)["status"] == "True"
        assert condition(obj, kind)["lastTransitionTime"]
    pods = revision_pods(api, ns, "hello")
    assert list(pods) == ["hello-predictor-00001"]
    assert pods["hello-predictor-00001"]["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"
    table = kubectl("get", "isvc", "hello", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "URL", "READY", "PREV", "LATEST", "PREVROLLEDOUTREVISION",
                                "LATESTREADYREVISION", "AGE"]
    assert table[1].split()[:5] == ["hello", url, "True", "100", "hello-predictor-00001"]


def test_canary_split_then_promotion(api: KubeAPI, ns: str) -> None:
    apply_isvc(api, ns, "canary", predictor("v1"))
    first = ready_isvc(api, ns, "canary")
    url = first["status"]["url"]
    apply_isvc(api, ns, "canary", predictor("v2", canaryTrafficPercent=30))

    def split_ready() -> dict[str, Any] | None:
        obj = ready_isvc(api, ns, "canary", generation=2)
        return obj if traffic(obj) == [("canary-predictor-00002", 30, True, None),
                                       ("canary-predictor-00001", 70, False, "prev")] else None

    obj = wait_for(split_ready, what="a 30/70 canary split")
    assert obj["status"]["url"] == url  # the address never moves
    counts = Counter(http(url + "/")[1].split()[0] for _ in range(300))
    assert set(counts) == {"v1", "v2"}
    assert 45 <= counts["v2"] <= 135, counts  # 30% of 300 is 90: more than five standard deviations each side

    apply_isvc(api, ns, "canary", predictor("v2", canaryTrafficPercent=100))
    promoted = wait_for(lambda: (o := ready_isvc(api, ns, "canary", generation=3)) and
                        traffic(o) == [("canary-predictor-00002", 100, True, None)] and o, what="the promotion")
    component = promoted["status"]["components"]["predictor"]
    assert (component["latestRolledoutRevision"], component["previousRolledoutRevision"]) == (
        "canary-predictor-00002", "canary-predictor-00001")
    assert {http(url + "/")[1].split()[0] for _ in range(20)} == {"v2"}
    wait_for(lambda: list(revision_pods(api, ns, "canary")) == ["canary-predictor-00002"],
             what="the unrouted revision's pod deleted")


def test_failing_revision_keeps_traffic_on_the_previous_one(api: KubeAPI, ns: str) -> None:
    apply_isvc(api, ns, "flaky", predictor("v1"))
    url = ready_isvc(api, ns, "flaky")["status"]["url"]
    apply_isvc(api, ns, "flaky", predictor("v2", command=["python", "-c", "raise SystemExit(3)"]))

    def failed() -> dict[str, Any] | None:
        obj = get_isvc(api, ns, "flaky")
        return obj if condition(obj, "PredictorReady").get("status") == "False" else None

    obj = wait_for(failed, what="PredictorReady False")
    predictor_ready = condition(obj, "PredictorReady")
    assert predictor_ready["reason"] == "RevisionFailed"
    assert "flaky-predictor-00002" in predictor_ready["message"] and "exit code 3" in predictor_ready["message"]
    assert (condition(obj, "Ready")["status"], condition(obj, "Ready")["reason"]) == ("False", "RevisionFailed")
    assert traffic(obj) == [("flaky-predictor-00001", 100, True, None)]
    component = obj["status"]["components"]["predictor"]
    assert (component["latestCreatedRevision"], component["latestReadyRevision"]) == (
        "flaky-predictor-00002", "flaky-predictor-00001")
    assert {http(url + "/")[1].split()[0] for _ in range(10)} == {"v1"}


def test_unsupported_predictor_fails_loudly(api: KubeAPI, ns: str) -> None:
    apply_isvc(api, ns, "runtime", {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://b/m"}})
    obj = wait_for(lambda: (o := get_isvc(api, ns, "runtime")) and condition(o, "Ready").get("status") == "False"
                   and o, what="Ready False")
    assert condition(obj, "Ready")["reason"] == "ModelRuntimeNotEmulated"
    assert revision_pods(api, ns, "runtime") == {}


def test_crd_rejects_an_out_of_range_canary(api: KubeAPI, ns: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        apply_isvc(api, ns, "bad", predictor("v1", canaryTrafficPercent=150))
    assert caught.value.code == 422
    assert "canaryTrafficPercent" in json.loads(caught.value.read())["message"]


def test_deleting_the_inferenceservice_stops_router_and_pods(api: KubeAPI, ns: str) -> None:
    apply_isvc(api, ns, "gone", predictor("v1"))
    url = ready_isvc(api, ns, "gone")["status"]["url"]
    assert http(url + "/")[0] == 200
    api.delete(f"/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices/gone")
    port = int(url.rsplit(":", 1)[1])

    def refused() -> bool:
        with socket.socket() as sock:
            sock.settimeout(5)
            return sock.connect_ex(("127.0.0.1", port)) != 0

    wait_for(refused, what="the router to stop listening")
    wait_for(lambda: revision_pods(api, ns, "gone") == {}, what="the revision pods to be deleted")

