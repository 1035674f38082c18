"""The kubelet's pure parts: env resolution, expansion, images, volumes, networking, scheduling, phases."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import pytest

from kubeloop.local import defaults
from kubeloop.local.node.containerenv import (
    ContainerConfigError,
    EnvSources,
    container_env,
    expand,
    field_value,
)
from kubeloop.local.node.images import (
    ImageNotRunnable,
    ProgramNotFound,
    entrypoint_of,
    parse_image,
    process_argv,
)
from kubeloop.local.node.localnet import (
    RENDEZVOUS_PORT_ANNOTATION,
    rendezvous_overrides,
    rewrite_cluster_names,
    service_candidates,
)
from kubeloop.local.node.podstatus import ContainerRecord, pod_conditions, pod_phase
from kubeloop.local.node.quantities import QuantityError, divided_rounding_up, parse_quantity
from kubeloop.local.node.scheduling import unschedulable_message, unschedulable_reasons
from kubeloop.local.node.volumes import Mount, path_rewriter, unsupported_volume_problem, volume_env

POD: dict[str, Any] = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"a": "b"},
                                    "annotations": {"k": "v"}}, "spec": {"nodeName": "n1"}}


def sources(secrets: dict[str, Any] | None = None, config_maps: dict[str, Any] | None = None) -> EnvSources:
    return EnvSources((secrets or {}).get, (config_maps or {}).get, "n1", {"cpu": "2", "memory": "4Gi"})


@pytest.mark.parametrize(("text", "expected"), [
    ("$(A)", "1"), ("$(A)$(B)", "12"), ("$$(A)", "$(A)"), ("$$$(A)", "$1"), ("$(MISSING)", "$(MISSING)"),
    ("$(A", "$(A"), ("a$b", "a$b"), ("$", "$"), ("x$$", "x$"), ("$()", "$()"),
])
def test_expansion_follows_kubernetes_rules(text: str, expected: str) -> None:
    assert expand(text, {"A": "1", "B": "2"}) == expected


def test_env_is_resolved_in_order_from_every_source() -> None:
    secret = {"metadata": {"name": "s"}, "data": {"user": base64.b64encode(b"ada").decode()},
              "stringData": {"extra": "x"}}
    container = {"envFrom": [{"secretRef": {"name": "s"}, "prefix": "S_"},
                             {"configMapRef": {"name": "gone", "optional": True}}],
                 "env": [{"name": "ONE", "value": "1"}, {"name": "TWO", "value": "$(ONE)+$(S_user)"},
                         {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                         {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                                            "divisor": "1Gi"}}},
                         {"name": "ANN", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['k']"}}}]}

    env = container_env(POD, container, sources({"s": secret}))

    assert env == {"S_user": "ada", "S_extra": "x", "ONE": "1", "TWO": "1+ada", "CPU": "2", "MEM": "4", "ANN": "v"}


@pytest.mark.parametrize(("entry", "message"), [
    ({"configMapKeyRef": {"name": "cm", "key": "nope"}}, "couldn't find key nope in ConfigMap ns/cm"),
    ({"configMapKeyRef": {"name": "other", "key": "x"}}, 'configmap "other" not found'),
    ({"secretKeyRef": {"name": "other", "key": "x"}}, 'secret "other" not found'),
    ({"fieldRef": {"fieldPath": "spec.containers"}}, 'unsupported fieldRef path "spec.containers"'),
])
def test_unresolvable_references_are_container_config_errors(entry: dict[str, Any], message: str) -> None:
    container = {"env": [{"name": "X", "valueFrom": entry}]}
    with pytest.raises(ContainerConfigError) as error:
        container_env(POD, container, sources(config_maps={"cm": {"data": {"x": "1"}}}))
    assert str(error.value) == message


def test_downward_api_values_on_the_local_node() -> None:
    assert [field_value(POD, path, "n1") for path in ("metadata.uid", "metadata.labels['a']", "status.podIP",
                                                       "status.hostIP", "spec.nodeName")] == [
        "u-1", "b", "127.0.0.1", "127.0.0.1", "n1"]


def test_quantities() -> None:
    assert parse_quantity("500m") * 1000 == 500 and parse_quantity("2Gi") == 2 * 2**30
    assert parse_quantity("1e3") == 1000 and parse_quantity("1.5k") == 1500
    assert divided_rounding_up("1500m", "1") == "2" and divided_rounding_up("129Mi", "64Mi") == "3"
    with pytest.raises(QuantityError):
        parse_quantity("lots")


def test_images_map_by_repository_whatever_the_tag() -> None:
    assert parse_image("registry:5000/team/app:1.2@sha256:ab").repository == "registry:5000/team/app"
    assert parse_image("registry:5000/app").tag is None
    entrypoints = {"ghcr.io/kubeloop/jobs": ("python",), "registry:5000/app": ("app",)}
    assert entrypoint_of("ghcr.io/kubeloop/jobs:anything", entrypoints) == ("python",)
    assert entrypoint_of("registry:5000/app", entrypoints) == ("app",)
    with pytest.raises(ImageNotRunnable, match=r'"busybox:1" cannot run.*--image busybox=COMMAND'):
        entrypoint_of("busybox:1", entrypoints)


def test_command_and_args_follow_docker_entrypoint_rules() -> None:
    path = "/usr/bin:/bin"
    assert process_argv(("python", "-m", "mod"), None, ["--x"], path) == [sys.executable, "-m", "mod", "--x"]
    assert process_argv(("python",), ["echo"], ["hi"], path)[1:] == ["hi"]
    assert process_argv(("python",), ["echo"], ["hi"], path)[0].endswith("/echo")
    kubeloop = process_argv(("kubeloop", "operator"), None, None, path)
    assert kubeloop == [str(Path(sys.executable).parent / "kubeloop"), "operator"]
    with pytest.raises(ProgramNotFound, match='exec: "no-such-program": executable file not found in \\$PATH'):
        process_argv(("python",), ["no-such-program"], None, path)


def test_mount_paths_are_rewritten_only_where_they_start_a_path() -> None:
    rewrite = path_rewriter([Mount("data", "/data", Path("/s/v/data")), Mount("deep", "/data/deep", Path("/s/v/deep")),
                             Mount("root", "/", Path("/s/v/root"))])
    assert rewrite("/data") == "/s/v/data"
    assert rewrite("--out=/data/model.pt") == "--out=/s/v/data/model.pt"
    assert rewrite("cat /data/deep/x > '/data/y'") == "cat /s/v/deep/x > '/s/v/data/y'"
    assert rewrite("/database /srv/data /data.bak data/x") == "/database /srv/data /data.bak data/x"
    assert rewrite("/s/v/data/x") == "/s/v/data/x"  # rewriting is a single pass


def test_volume_env_and_unsupported_volumes() -> None:
    assert volume_env([Mount("model-store", "/m", Path("/x"))]) == {"KUBELOOP_VOLUME_MODEL_STORE": "/x"}
    pod = {"spec": {"volumes": [{"name": "a", "emptyDir": {}}, {"name": "b", "persistentVolumeClaim": {}}]}}
    assert unsupported_volume_problem(pod) == ('volume "b" is of type persistentVolumeClaim, which the local node '
                                               'does not emulate (supported: emptyDir, configMap, secret)')
    assert unsupported_volume_problem({"spec": {"volumes": [{"name": "c", "configMap": {"name": "x"}}]}}) is None


def test_cluster_names_of_existing_services_become_loopback() -> None:
    services = {("ns", "svc"), ("ns", "workers"), ("other", "db")}
    assert rewrite_cluster_names("http://svc.ns.svc.cluster.local:8080/p", "ns", services) == "http://127.0.0.1:8080/p"
    assert rewrite_cluster_names("db.other.svc:5432", "ns", services) == "127.0.0.1:5432"
    assert rewrite_cluster_names("w-0.workers.ns.svc", "ns", services) == "127.0.0.1"
    assert rewrite_cluster_names("w-0.workers", "ns", services) == "127.0.0.1"
    assert rewrite_cluster_names("w-0.workers:29500", "ns", services) == "127.0.0.1:29500"
    assert rewrite_cluster_names("unknown.ns.svc", "ns", services) == "unknown.ns.svc"
    assert rewrite_cluster_names("svc.ns.svc.example.com", "ns", services) == "svc.ns.svc.example.com"
    assert rewrite_cluster_names("model.pkl", "ns", services) == "model.pkl"
    assert service_candidates(["x http://a.b.svc/", "h.sub"], "ns") == {("b", "a"), ("ns", "sub")}


def test_rendezvous_values_only_for_a_jobs_pods() -> None:
    owned = {"metadata": {"ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u",
                                               "controller": True}],
                          "annotations": {RENDEZVOUS_PORT_ANNOTATION: "41234"}}}
    env = {"MASTER_ADDR": "j-0.svc", "MASTER_PORT": "29500"}
    assert rendezvous_overrides(owned, env) == {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "41234"}
    assert rendezvous_overrides({"metadata": {}}, env) == {}
    assert rendezvous_overrides(owned, {}) == {}


def test_scheduling_refuses_missing_extended_resources_and_selectors_only() -> None:
    pod = {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": 1, "cpu": "64", "memory": "1Ti"}}}],
                    "nodeSelector": {"pool": "gpu"}}}
    reasons = unschedulable_reasons(pod, {"kubernetes.io/os": "linux"}, {"cpu": "2", "memory": "1Gi"})
    assert reasons == ["node(s) didn't match Pod's node affinity/selector", "Insufficient nvidia.com/gpu"]
    assert unschedulable_message(reasons[1:]).startswith("0/1 nodes are available: 1 Insufficient nvidia.com/gpu. ")
    assert unschedulable_reasons({"spec": {"containers": [{"resources": {"requests": {"cpu": "64"}}}]}}, {}, {}) == []


def record(state: str, exit_code: int = 0, *, ran_before: bool = False) -> ContainerRecord:
    result = ContainerRecord("c", "i")
    result.state = ({"running": {}} if state == "running" else {"terminated": {"exitCode": exit_code}}
                    if state == "terminated" else {"waiting": {"reason": "x"}})
    if ran_before:
        result.last_state = {"terminated": {"exitCode": 1}}
    return result


@pytest.mark.parametrize(("policy", "records", "phase"), [
    ("Never", [record("waiting")], "Pending"),
    ("Never", [record("running"), record("terminated")], "Running"),
    ("Never", [record("terminated"), record("terminated")], "Succeeded"),
    ("Never", [record("terminated"), record("terminated", 2)], "Failed"),
    ("OnFailure", [record("terminated", 2)], "Running"),
    ("OnFailure", [record("waiting", ran_before=True)], "Running"),
    ("OnFailure", [record("terminated")], "Succeeded"),
    ("Always", [record("terminated")], "Running"),
])
def test_pod_phase_follows_the_kubelet(policy: str, records: list[ContainerRecord], phase: str) -> None:
    assert pod_phase(policy, [], records) == phase


def test_init_containers_gate_the_phase_and_conditions() -> None:
    failed_init = record("terminated", 1)
    failed_init.init = True
    assert pod_phase("Never", [failed_init], [record("waiting")]) == "Failed"
    assert pod_phase("OnFailure", [failed_init], [record("waiting")]) == "Pending"
    conditions = {c["type"]: c for c in pod_conditions("Pending", [failed_init], [record("waiting")], True)}
    assert conditions["Initialized"]["reason"] == "ContainersNotInitialized"
    assert conditions["Ready"]["status"] == "False" and conditions["PodScheduled"]["status"] == "True"


def test_pod_defaults_and_qos() -> None:
    pod = defaults.default_on_create("", "Pod", {"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [
        {"name": "c", "image": "i:1", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}})
    spec = pod["spec"]
    assert (spec["restartPolicy"], spec["terminationGracePeriodSeconds"], spec["dnsPolicy"]) == ("Always", 30,
                                                                                                 "ClusterFirst")
    assert spec["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert pod["status"] == {"phase": "Pending", "qosClass": "Guaranteed"}
    assert defaults.qos_class({"containers": [{"name": "c"}]}) == "BestEffort"
    assert defaults.qos_class({"containers": [{"resources": {"requests": {"cpu": "1"}}}]}) == "Burstable"


def test_cronjob_defaults() -> None:
    cronjob = defaults.default_on_create("batch", "CronJob", {"metadata": {"name": "c", "uid": "u"}, "spec": {
        "schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}})
    spec = cronjob["spec"]
    assert (spec["concurrencyPolicy"], spec["suspend"], spec["successfulJobsHistoryLimit"],
            spec["failedJobsHistoryLimit"]) == ("Allow", False, 3, 1)
    assert "backoffLimit" not in spec["jobTemplate"]["spec"]  # a job template is not defaulted as a Job
    assert defaults.validation_causes("batch", "CronJob", cronjob)[0].field == (
        "spec.jobTemplate.spec.template.spec.restartPolicy")
