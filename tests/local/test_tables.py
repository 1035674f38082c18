"""kubeloop.local.tables: the meta.k8s.io/v1 Tables kube-apiserver serves to `kubectl get`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubeloop.local.tables import JSONPathError, columns_for, find_jsonpath, human_duration, render_table

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- durations -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(seconds=-5), "<invalid>"),
    (timedelta(seconds=-1), "0s"),
    (timedelta(0), "0s"),
    (timedelta(seconds=1), "1s"),
    (timedelta(seconds=119), "119s"),
    (timedelta(seconds=120), "2m"),
    (timedelta(seconds=190), "3m10s"),
    (timedelta(minutes=5), "5m"),
    (timedelta(minutes=9, seconds=59), "9m59s"),
    (timedelta(minutes=10, seconds=30), "10m"),
    (timedelta(minutes=179), "179m"),
    (timedelta(hours=3), "3h"),
    (timedelta(hours=3, minutes=2), "3h2m"),
    (timedelta(hours=8, minutes=30), "8h"),
    (timedelta(hours=47), "47h"),
    (timedelta(hours=48), "2d"),
    (timedelta(hours=49), "2d1h"),
    (timedelta(days=8, hours=2), "8d"),
    (timedelta(days=400), "400d"),
    (timedelta(days=365 * 2), "2y"),
    (timedelta(days=365 * 2 + 45), "2y45d"),
    (timedelta(days=365 * 9), "9y"),
])
def test_human_duration(delta, text):
    assert human_duration(delta) == text


# --- JSONPath --------------------------------------------------------------------------------------

DOC: dict[str, Any] = {
    "metadata": {"name": "run", "labels": {"app.kubernetes.io/name": "trainer"}},
    "spec": {"gates": [{"metric": "auc", "min": 0.9}, {"metric": "f1", "min": 0.5}, {"metric": "loss"}],
             "workers": 4, "empty": []},
    "status": {"conditions": [{"type": "Progressing", "status": "True"}, {"type": "Ready", "status": "False"}],
               "phase": "Running", "nothing": None},
}


@pytest.mark.parametrize(("path", "found"), [
    (".spec.workers", [4]),
    (".status.phase", ["Running"]),
    (".status.missing", []),
    (".status.nothing", [None]),
    (".spec.gates[0].metric", ["auc"]),
    (".spec.gates[-1].metric", ["loss"]),
    (".spec.gates[1:].metric", ["f1", "loss"]),
    (".spec.gates[0:3:2].metric", ["auc", "loss"]),
    (".spec.gates[*].metric", ["auc", "f1", "loss"]),
    (".spec.gates[0,2].metric", ["auc", "loss"]),
    (".spec.gates[*].min", [0.9, 0.5]),
    ('.status.conditions[?(@.type=="Ready")].status', ["False"]),
    (".status.conditions[?(@.type!='Ready')].type", ["Progressing"]),
    (".spec.gates[?(@.min > 0.6)].metric", ["auc"]),
    (".spec.gates[?(@.min)].metric", ["auc", "f1"]),
    (".metadata.labels['app.kubernetes.io/name']", ["trainer"]),
    (".metadata.labels.app\\.kubernetes\\.io/name", ["trainer"]),
    ("..metric", ["auc", "f1", "loss"]),
    (".status.conditions[*]['type','status']", ["Progressing", "Ready", "True", "False"]),
    (".spec.empty[*]", []),
    ("{.spec.workers}", [4]),
    (".spec.gates.metric", []),  # a field on a list finds nothing, as in client-go
])
def test_jsonpath(path, found):
    assert find_jsonpath(path, DOC) == found


@pytest.mark.parametrize("path", [
    ".spec.gates[5].metric",          # index out of bounds
    ".spec.workers[0]",               # not a list
    ".spec.gates[?(@.min == 'x')]",   # number compared with a string
    ".status.phase[?(@.a)]",          # filtering a scalar
])
def test_jsonpath_errors(path):
    with pytest.raises(JSONPathError):
        find_jsonpath(path, DOC)


# --- custom resources ------------------------------------------------------------------------------

CRD_VERSION: dict[str, Any] = {
    "name": "v1alpha1",
    "additionalPrinterColumns": [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Lifecycle phase."},
        {"name": "Workers", "type": "integer", "jsonPath": ".spec.workers"},
        {"name": "Accuracy", "type": "number", "format": "float", "jsonPath": ".status.metrics.accuracy"},
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Suspended", "type": "boolean", "jsonPath": ".spec.suspend", "priority": 1},
        {"name": "Gates", "type": "string", "jsonPath": ".spec.gates[*].metric", "priority": 1},
        {"name": "Started", "type": "date", "jsonPath": ".status.startTime"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
}


def training_run(name: str, **spec_status: Any) -> dict[str, Any]:
    return {"apiVersion": "kubeloop.dev/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": ago(hours=3, minutes=2),
                         "uid": "u-1", "resourceVersion": "7"},
            **spec_status}


class TestCustomResourceTables:
    def test_columns_follow_the_printer_columns(self):
        columns = columns_for("kubeloop.dev/v1alpha1", "TrainingRun", CRD_VERSION)
        table = render_table([], columns, now=NOW)
        assert [(c["name"], c["type"], c["format"], c["priority"]) for c in table["columnDefinitions"]] == [
            ("Name", "string", "name", 0), ("Phase", "string", "", 0), ("Workers", "integer", "", 0),
            ("Accuracy", "number", "float", 0), ("Ready", "string", "", 0), ("Suspended", "boolean", "", 1),
            ("Gates", "string", "", 1), ("Started", "date", "", 0), ("Age", "date", "", 0)]
        descriptions = {c["name"]: c["description"] for c in table["columnDefinitions"]}
        assert descriptions["Phase"] == "Lifecycle phase."
        assert descriptions["Workers"] == "Custom resource definition column (in JSONPath format): .spec.workers"
        assert descriptions["Name"].startswith("Name must be unique within a namespace.")
        assert all(set(c) == {"name", "type", "format", "description", "priority"} for c in table["columnDefinitions"])

    def test_without_printer_columns_kube_serves_name_and_age(self):
        columns = columns_for("kubeloop.dev/v1alpha1", "TrainingRun", {"name": "v1alpha1"})
        assert [(c["name"], c["type"]) for c in columns] == [("Name", "string"), ("Age", "date")]
        table = render_table([training_run("a")], columns, now=NOW)
        assert table["rows"][0]["cells"] == ["a", "3h2m"]

    def test_cells(self):
        run = training_run(
            "a",
            spec={"workers": 4, "suspend": False, "gates": [{"metric": "auc"}, {"metric": "f1"}]},
            status={"phase": "Running", "metrics": {"accuracy": 0.93},
                    "conditions": [{"type": "Ready", "status": "True"}], "startTime": ago(minutes=5)})
        table = render_table([run], columns_for("kubeloop.dev/v1alpha1", "TrainingRun", CRD_VERSION), now=NOW)
        # Only the first match of [*] is shown, as kube's table convertor does.
        assert table["rows"][0]["cells"] == ["a", "Running", 4, 0.93, "True", False, "auc", "5m", "3h2m"]

    def test_missing_and_mistyped_values_are_null_cells(self):
        run = training_run("b", spec={"workers": "four", "suspend": "no"},
                           status={"metrics": {"accuracy": True}, "startTime": "yesterday"})
        table = render_table([run], columns_for("kubeloop.dev/v1alpha1", "TrainingRun", CRD_VERSION), now=NOW)
        assert table["rows"][0]["cells"] == ["b", None, None, None, None, None, None, "<invalid>", "3h2m"]

    def test_value_conversions(self):
        columns = columns_for("g/v", "K", {"additionalPrinterColumns": [
            {"name": "I", "type": "integer", "jsonPath": ".a"},
            {"name": "N", "type": "number", "jsonPath": ".b"},
            {"name": "S", "type": "string", "jsonPath": ".c"},
            {"name": "L", "type": "string", "jsonPath": ".d"},
            {"name": "Null", "type": "string", "jsonPath": ".e"},
            {"name": "Float", "type": "string", "jsonPath": ".f"},
        ]})
        obj = {"metadata": {"name": "x"}, "a": 2.9, "b": 3, "c": 7, "d": {"k": [1, "v"]}, "e": None, "f": 1e6}
        assert render_table([obj], columns, now=NOW)["rows"][0]["cells"] == [
            "x", 2, 3.0, "7", '{"k":[1,"v"]}', "<no value>", "1e+06"]

    def test_include_object(self):
        columns = columns_for("kubeloop.dev/v1alpha1", "TrainingRun", {"name": "v1alpha1"})
        run = training_run("a", spec={"workers": 1})
        partial = render_table([run], columns, now=NOW)["rows"][0]["object"]
        assert partial == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": run["metadata"]}
        assert render_table([run], columns, now=NOW, include_object="")["rows"][0]["object"] == partial
        assert render_table([run], columns, now=NOW, include_object="Object")["rows"][0]["object"] == run
        assert render_table([run], columns, now=NOW, include_object="None")["rows"][0]["object"] is None
        with pytest.raises(ValueError, match='unrecognized includeObject value: "All"'):
            render_table([run], columns, now=NOW, include_object="All")

    def test_table_envelope(self):
        columns = columns_for("kubeloop.dev/v1alpha1", "TrainingRun", {"name": "v1alpha1"})
        table = render_table([training_run("a"), training_run("b")], columns, now=NOW,
                             list_metadata={"resourceVersion": "42", "continue": "tok"})
        assert table["kind"] == "Table"
        assert table["apiVersion"] == "meta.k8s.io/v1"
        assert table["metadata"] == {"resourceVersion": "42", "continue": "tok"}
        assert [row["cells"][0] for row in table["rows"]] == ["a", "b"]
        assert "columnDefinitions" not in render_table([], columns, now=NOW, no_headers=True)

    def test_the_object_is_a_copy(self):
        run = training_run("a")
        row = render_table([run], columns_for("g/v", "K", {}), now=NOW, include_object="Object")["rows"][0]
        row["object"]["metadata"]["name"] = "changed"
        assert run["metadata"]["name"] == "a"


# --- built-in kinds --------------------------------------------------------------------------------


def cells(api_version: str, kind: str, obj: dict[str, Any]) -> list[Any]:
    return render_table([obj], columns_for(api_version, kind, None), now=NOW)["rows"][0]["cells"]


def names(api_version: str, kind: str, wide: bool = False) -> list[str]:
    return [c["name"] for c in columns_for(api_version, kind, None) if wide or c["priority"] == 0]


def pod(**status: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "creationTimestamp": ago(minutes=5)},
            "spec": {"containers": [{"name": "main", "image": "trainer:1"}], "nodeName": "local"},
            "status": status}


class TestPods:
    def test_columns(self):
        assert names("v1", "Pod") == ["Name", "Ready", "Status", "Restarts", "Age"]
        assert names("v1", "Pod", wide=True)[5:] == ["IP", "Node", "Nominated Node", "Readiness Gates"]

    def test_running_with_restarts(self):
        status = {"phase": "Running", "podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}],
                  "containerStatuses": [{"name": "main", "ready": True, "restartCount": 2, "state": {"running": {}},
                                         "lastState": {"terminated": {"finishedAt": ago(minutes=2)}}}]}
        assert cells("v1", "Pod", pod(**status)) == [
            "p", "1/1", "Running", "2 (2m ago)", "5m", "127.0.0.1", "local", "<none>", "<none>"]

    def test_pending_without_statuses(self):
        assert cells("v1", "Pod", pod(phase="Pending"))[:5] == ["p", "0/1", "Pending", "0", "5m"]

    def test_completed_pods_carry_a_row_condition(self):
        status = {"phase": "Succeeded", "containerStatuses": [
            {"name": "main", "ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": 0,
                                                                                       "reason": "Completed"}}}]}
        table = render_table([pod(**status)], columns_for("v1", "Pod", None), now=NOW)
        assert table["rows"][0]["cells"][:3] == ["p", "0/1", "Completed"]
        assert table["rows"][0]["conditions"] == [{"type": "Completed", "status": "True", "reason": "Succeeded",
                                                   "message": "The pod has completed successfully."}]

    def test_waiting_and_failed_containers(self):
        waiting = {"phase": "Running", "containerStatuses": [
            {"name": "main", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        assert cells("v1", "Pod", pod(**waiting))[2:4] == ["CrashLoopBackOff", "4"]
        failed = {"phase": "Failed", "containerStatuses": [
            {"name": "main", "state": {"terminated": {"exitCode": 3}}}]}
        assert cells("v1", "Pod", pod(**failed))[2] == "ExitCode:3"
        config = {"phase": "Pending", "containerStatuses": [
            {"name": "main", "state": {"waiting": {"reason": "CreateContainerConfigError"}}}]}
        assert cells("v1", "Pod", pod(**config))[2] == "CreateContainerConfigError"

    def test_init_containers(self):
        obj = pod(phase="Pending", initContainerStatuses=[{"name": "init", "state": {"running": {}}}])
        obj["spec"]["initContainers"] = [{"name": "init", "image": "busybox"}]
        assert cells("v1", "Pod", obj)[2] == "Init:0/1"
        obj["status"]["initContainerStatuses"] = [{"name": "init", "state": {"terminated": {"exitCode": 1,
                                                                                           "reason": "Error"}}}]
        assert cells("v1", "Pod", obj)[2] == "Init:Error"

    def test_terminating(self):
        obj = pod(phase="Running")
        obj["metadata"]["deletionTimestamp"] = ago(seconds=1)
        assert cells("v1", "Pod", obj)[2] == "Terminating"

    def test_readiness_gates(self):
        obj = pod(phase="Running", conditions=[{"type": "example.com/ready", "status": "True"}])
        obj["spec"]["readinessGates"] = [{"conditionType": "example.com/ready"}, {"conditionType": "other"}]
        assert cells("v1", "Pod", obj)[8] == "1/2"


def job(**fields: Any) -> dict[str, Any]:
    spec = {"template": {"spec": {"containers": [{"name": "train", "image": "trainer:1"}]}},
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}}
    spec.update(fields.pop("spec", {}))
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "creationTimestamp": ago(minutes=10)},
            "spec": spec, "status": fields}


class TestJobs:
    def test_columns(self):
        assert names("batch/v1", "Job") == ["Name", "Status", "Completions", "Duration", "Age"]
        assert names("batch/v1", "Job", wide=True)[5:] == ["Containers", "Images", "Selector"]

    def test_running(self):
        assert cells("batch/v1", "Job", job(startTime=ago(minutes=2))) == [
            "j", "Running", "0/1", "2m", "10m", "train", "trainer:1", "batch.kubernetes.io/controller-uid=u1"]

    def test_complete(self):
        obj = job(spec={"completions": 3}, succeeded=3, startTime=ago(minutes=3), completionTime=ago(seconds=90),
                  conditions=[{"type": "Complete", "status": "True"}])
        assert cells("batch/v1", "Job", obj)[:4] == ["j", "Complete", "3/3", "90s"]

    def test_statuses_and_completions(self):
        assert cells("batch/v1", "Job", job(conditions=[{"type": "Failed", "status": "True"}]))[1] == "Failed"
        assert cells("batch/v1", "Job", job(conditions=[{"type": "Suspended", "status": "True"}]))[1] == "Suspended"
        assert cells("batch/v1", "Job", job(conditions=[{"type": "Complete", "status": "False"}]))[1] == "Running"
        assert cells("batch/v1", "Job", job(spec={"parallelism": 2}, succeeded=1))[2] == "1/1 of 2"
        assert cells("batch/v1", "Job", job())[3] == ""


class TestOtherKinds:
    def test_cronjob(self):
        obj = {"apiVersion": "batch/v1", "kind": "CronJob",
               "metadata": {"name": "c", "creationTimestamp": ago(days=3)},
               "spec": {"schedule": "*/5 * * * *", "suspend": False, "jobTemplate": {"spec": {"template": {"spec": {
                   "containers": [{"name": "check", "image": "checker:1"}]}}}}},
               "status": {"active": [{"name": "c-1"}], "lastScheduleTime": ago(minutes=4)}}
        assert names("batch/v1", "CronJob") == ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule",
                                                "Age"]
        assert cells("batch/v1", "CronJob", obj) == [
            "c", "*/5 * * * *", "<none>", "False", 1, "4m", "3d", "check", "checker:1", "<none>"]

    def test_services(self):
        cluster = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "creationTimestamp": ago(hours=1)},
                   "spec": {"clusterIP": "10.0.0.10", "selector": {"b": "2", "a": "1"},
                            "ports": [{"port": 80}, {"port": 443, "nodePort": 30443, "protocol": "TCP"}],
                            "type": "NodePort"}}
        assert cells("v1", "Service", cluster) == ["s", "NodePort", "10.0.0.10", "<none>", "80/TCP,443:30443/TCP", "60m",
                                                   "a=1,b=2"]
        balancer = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
                    "spec": {"type": "LoadBalancer", "clusterIPs": ["10.0.0.11"]}}
        assert cells("v1", "Service", balancer) == ["lb", "LoadBalancer", "10.0.0.11", "<pending>", "<none>",
                                                    "<unknown>", "<none>"]

    def test_configmaps_secrets_namespaces(self):
        configmap = {"metadata": {"name": "cm", "creationTimestamp": ago(seconds=30)},
                     "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}
        assert cells("v1", "ConfigMap", configmap) == ["cm", 3, "30s"]
        secret = {"metadata": {"name": "s", "creationTimestamp": ago(days=1)}, "type": "Opaque", "data": {"k": "dg=="}}
        assert cells("v1", "Secret", secret) == ["s", "Opaque", 1, "24h"]
        namespace = {"metadata": {"name": "default", "creationTimestamp": ago(days=10)},
                     "status": {"phase": "Terminating"}}
        assert cells("v1", "Namespace", namespace) == ["default", "Terminating", "10d"]

    def test_core_and_events_api_events(self):
        core = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1"}, "type": "Normal", "reason": "Created",
                "involvedObject": {"kind": "TrainingRun", "name": "a"}, "message": " created job \n",
                "source": {"component": "kubeloop"}, "firstTimestamp": ago(minutes=10),
                "lastTimestamp": ago(minutes=1), "count": 3}
        assert names("v1", "Event") == ["Last Seen", "Type", "Reason", "Object", "Message"]
        assert cells("v1", "Event", core) == ["60s", "Normal", "Created", "trainingrun/a", "", "kubeloop",
                                              "created job", "10m", 3, "e1"]
        modern = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e2"}, "type": "Warning",
                  "reason": "Failed", "regarding": {"kind": "Pod", "name": "p"}, "note": "boom",
                  "eventTime": ago(minutes=2), "reportingController": "kubelet", "reportingInstance": "local"}
        assert cells("events.k8s.io/v1", "Event", modern) == ["2m", "Warning", "Failed", "pod/p", "", "kubelet, local",
                                                              "boom", "2m", 1, "e2"]

    def test_deployment(self):
        obj = {"metadata": {"name": "d", "creationTimestamp": ago(hours=2)},
               "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "x"},
                                                    "matchExpressions": [{"key": "tier", "operator": "In",
                                                                          "values": ["b", "a"]}]},
                        "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
               "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
        assert names("apps/v1", "Deployment") == ["Name", "Ready", "Up-to-date", "Available", "Age"]
        assert cells("apps/v1", "Deployment", obj) == ["d", "2/3", 3, 2, "120m", "c", "i", "app=x,tier in (a,b)"]

    def test_unknown_kinds_get_kube_s_default_columns(self):
        crd = {"metadata": {"name": "trainingruns.kubeloop.dev", "creationTimestamp": "2024-05-31T10:00:00Z"}}
        columns = columns_for("apiextensions.k8s.io/v1", "CustomResourceDefinition", None)
        assert [(c["name"], c["type"]) for c in columns] == [("Name", "string"), ("Created At", "date")]
        assert render_table([crd], columns, now=NOW)["rows"][0]["cells"] == [
            "trainingruns.kubeloop.dev", "2024-05-31T10:00:00Z"]


# --- more JSONPath and printer corners -------------------------------------------------------------


@pytest.mark.parametrize(("path", "found"), [
    (".spec.*", [[], [{"metric": "auc", "min": 0.9}, {"metric": "f1", "min": 0.5}, {"metric": "loss"}], 4]),
    ("$.spec.workers", [4]),
    (". spec .workers", []),
    ('.status.conditions[?(@.status=="True")].type', ["Progressing"]),
    (".spec.gates[?(@.min >= 0.5)].metric", ["auc", "f1"]),
    (".spec.gates[?(@.min <= 0.5)].metric", ["f1"]),
    (".spec.gates[?(@.min < 1.0)].metric", ["auc", "f1"]),
    (".spec.gates[0:0]", []),
    ("..name", ["run"]),
])
def test_more_jsonpath(path, found):
    assert find_jsonpath(path, DOC) == found


@pytest.mark.parametrize("path", [
    ".spec.gates[", ".spec.gates[a]", ".spec.gates[]", ".spec.gates[1:2:3:4]", "#bad",
    ".spec.gates[?(@.x == nope)]", ".spec.gates[3:1]", ".spec.gates[-9:]",
    ".spec.gates[?(@.min < 1)]",  # a float compared with an integer literal: text/template refuses
])
def test_jsonpath_parse_and_range_errors(path):
    with pytest.raises(JSONPathError):
        find_jsonpath(path, DOC)


def test_filters_compare_one_value_of_one_type():
    with pytest.raises(JSONPathError):
        find_jsonpath(".items[?(@.v[*] == 1)]", {"items": [{"v": [1, 2]}]})
    with pytest.raises(JSONPathError):
        find_jsonpath(".items[?(@.v == true)]", {"items": [{"v": [1, 2]}]})
    assert find_jsonpath(".items[?(@.v == true)].v", {"items": [{"v": False}, {"v": True}, {"w": 1}]}) == [True]
    with pytest.raises(JSONPathError):
        find_jsonpath(".items[?(@.v > true)]", {"items": [{"v": True}]})
    assert find_jsonpath(".items[?(@.v == @.v)].w", {"items": [{"v": 1, "w": 2}]}) == [2]


class TestMorePrinters:
    def test_sidecars_and_gates(self):
        obj = pod(phase="Running", conditions=[{"type": "Initialized", "status": "True"},
                                              {"type": "Ready", "status": "False"}],
                  initContainerStatuses=[{"name": "sidecar", "started": True, "ready": True, "restartCount": 1,
                                          "lastState": {"terminated": {"finishedAt": ago(minutes=3)}}}],
                  containerStatuses=[{"name": "main", "ready": True, "state": {"running": {}}}])
        obj["spec"]["initContainers"] = [{"name": "sidecar", "restartPolicy": "Always"}]
        assert cells("v1", "Pod", obj)[:4] == ["p", "2/2", "Running", "1 (3m ago)"]

    def test_completed_container_beside_a_running_one(self):
        obj = pod(phase="Running", conditions=[{"type": "Ready", "status": "False"}], containerStatuses=[
            {"name": "main", "ready": True, "state": {"running": {}}},
            {"name": "done", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}])
        assert cells("v1", "Pod", obj)[2] == "NotReady"

    def test_scheduling_gated_and_node_lost(self):
        obj = pod(phase="Pending", conditions=[{"type": "PodScheduled", "reason": "SchedulingGated"}])
        assert cells("v1", "Pod", obj)[2] == "SchedulingGated"
        lost = pod(phase="Running", reason="NodeLost")
        lost["metadata"]["deletionTimestamp"] = ago(seconds=5)
        assert cells("v1", "Pod", lost)[2] == "Unknown"

    def test_init_container_failures(self):
        obj = pod(phase="Pending", initContainerStatuses=[{"name": "init", "state": {"terminated": {"exitCode": 2}}}])
        obj["spec"]["initContainers"] = [{"name": "init"}]
        assert cells("v1", "Pod", obj)[2] == "Init:ExitCode:2"
        obj["status"]["initContainerStatuses"][0]["state"] = {"terminated": {"exitCode": 137, "signal": 9}}
        assert cells("v1", "Pod", obj)[2] == "Init:Signal:9"
        obj["status"]["initContainerStatuses"][0]["state"] = {"waiting": {"reason": "ImagePullBackOff"}}
        assert cells("v1", "Pod", obj)[2] == "Init:ImagePullBackOff"
        killed = pod(phase="Failed", containerStatuses=[{"name": "main", "state": {"terminated": {"signal": 15}}}])
        assert cells("v1", "Pod", killed)[2] == "Signal:15"

    def test_selectors(self):
        obj = job(spec={"selector": {"matchExpressions": [
            {"key": "b", "operator": "NotIn", "values": ["y", "x"]}, {"key": "a", "operator": "Exists"},
            {"key": "c", "operator": "DoesNotExist"}]}})
        assert cells("batch/v1", "Job", obj)[7] == "a,b notin (x,y),!c"
        broken = job(spec={"selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}})
        assert cells("batch/v1", "Job", broken)[7] == "<error>"
        terminating = job()
        terminating["metadata"]["deletionTimestamp"] = ago(seconds=1)
        assert cells("batch/v1", "Job", terminating)[1] == "Terminating"
        assert cells("batch/v1", "Job", job(conditions=[{"type": "FailureTarget", "status": "True"}]))[1] == (
            "FailureTarget")

    def test_load_balancer_and_external_name_services(self):
        ready = {"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "externalIPs": ["1.2.3.4"]},
                 "status": {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example"}]}}}
        assert cells("v1", "Service", ready)[3] == "5.6.7.8,lb.example,1.2.3.4"
        external = {"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "db.example"}}
        assert cells("v1", "Service", external)[3] == "db.example"
        weird = {"metadata": {"name": "w"}, "spec": {"type": "Other"}}
        assert cells("v1", "Service", weird)[3] == "<unknown>"

    def test_event_series(self):
        event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}, "involvedObject": {"kind": "Node"},
                 "firstTimestamp": ago(hours=1), "series": {"count": 7, "lastObservedTime": ago(minutes=3)}}
        assert cells("v1", "Event", event)[:4] == ["3m", "", "", "node"]
        assert cells("v1", "Event", event)[7:9] == ["60m", 7]

    def test_workload_kinds(self):
        template = {"spec": {"containers": [{"name": "c", "image": "i"}], "nodeSelector": {"disk": "ssd"}}}
        replicaset = {"metadata": {"name": "rs"}, "spec": {"template": template, "selector": {"matchLabels": {"a": "b"}}},
                      "status": {"replicas": 1, "readyReplicas": 1}}
        assert cells("apps/v1", "ReplicaSet", replicaset) == ["rs", 1, 1, 1, "<unknown>", "c", "i", "a=b"]
        statefulset = {"metadata": {"name": "ss"}, "spec": {"replicas": 3, "template": template},
                       "status": {"readyReplicas": 2}}
        assert cells("apps/v1", "StatefulSet", statefulset) == ["ss", "2/3", "<unknown>", "c", "i"]
        daemonset = {"metadata": {"name": "ds"}, "spec": {"template": template},
                     "status": {"desiredNumberScheduled": 1, "numberReady": 1}}
        assert cells("apps/v1", "DaemonSet", daemonset) == ["ds", 1, 0, 1, 0, 0, "disk=ssd", "<unknown>", "c", "i",
                                                            "<none>"]

    def test_service_accounts_leases_and_nodes(self):
        assert cells("v1", "ServiceAccount", {"metadata": {"name": "sa"}, "secrets": [{"name": "t"}]}) == [
            "sa", 1, "<unknown>"]
        assert cells("coordination.k8s.io/v1", "Lease", {"metadata": {"name": "l"}, "spec": {
            "holderIdentity": "kubeloop-1"}}) == ["l", "kubeloop-1", "<unknown>"]
        node = {"metadata": {"name": "local", "creationTimestamp": ago(days=3),
                             "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker"}},
                "spec": {"unschedulable": True},
                "status": {"conditions": [{"type": "Ready", "status": "True"}],
                           "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                           "nodeInfo": {"kubeletVersion": "v1.37.0"}}}
        assert cells("v1", "Node", node) == ["local", "Ready,SchedulingDisabled", "control-plane,worker", "3d",
                                             "v1.37.0", "127.0.0.1", "<none>", "<unknown>", "<unknown>", "<unknown>"]
        assert cells("v1", "Node", {"metadata": {"name": "n"}})[1:3] == ["Unknown", "<none>"]

    def test_timestamps_with_offsets_and_bad_dates(self):
        columns = columns_for("g/v", "K", {"additionalPrinterColumns": [
            {"name": "T", "type": "date", "jsonPath": ".t"}]})
        offset = {"metadata": {"name": "x"}, "t": "2024-06-01T13:54:59.5+02:00"}
        assert render_table([offset], columns, now=NOW)["rows"][0]["cells"] == ["x", "5m"]
        for bad, shown in (("2024-02-30T00:00:00Z", "<invalid>"), ("", "<unknown>"), (5, None)):
            assert render_table([{"metadata": {"name": "x"}, "t": bad}], columns, now=NOW)["rows"][0]["cells"] == [
                "x", shown]
        naive_now = NOW.replace(tzinfo=None)
        assert render_table([offset], columns, now=naive_now)["rows"][0]["cells"] == ["x", "5m"]
