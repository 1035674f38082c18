"""Tests of kubeloop.local.patching: the patch semantics the local API server promises.

Expected values come from the RFCs (7386, 6902, 6901), from kube-apiserver's documented and
observed behaviour, and from the exact bodies real ``kubectl apply`` 1.37.1 sent to a
recording stub server (reproduced literally below). Every call is checked not to mutate its
inputs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeloop.local.patching import (
    FieldRule,
    PatchError,
    PatchMeta,
    PatchTestFailed,
    apply_json_patch,
    apply_merge_patch,
    apply_server_side,
    apply_strategic_merge_patch,
    patch_meta_for_builtin,
    patch_meta_from_schema,
)

KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def smp(
    target: dict[str, Any], patch: dict[str, Any], kind: tuple[str, str] = ("apps/v1", "Deployment")
) -> Any:
    """Apply a strategic merge patch, checking that neither input is mutated."""
    meta = patch_meta_for_builtin(*kind)
    assert meta is not None
    before = copy.deepcopy((target, patch))
    result = apply_strategic_merge_patch(target, patch, meta)
    assert (target, patch) == before, "inputs were mutated"
    return result


def ssa(target: dict[str, Any] | None, applied: dict[str, Any], meta: PatchMeta) -> Any:
    before = copy.deepcopy((target, applied))
    result = apply_server_side(target, applied, meta)
    assert (target, applied) == before, "inputs were mutated"
    return result


def json_patch(target: dict[str, Any], ops: list[dict[str, Any]]) -> Any:
    before = copy.deepcopy((target, ops))
    try:
        return apply_json_patch(target, ops)
    finally:
        assert (target, ops) == before, "inputs were mutated"


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> Any:
    before = copy.deepcopy((target, patch))
    result = apply_merge_patch(target, patch)
    assert (target, patch) == before, "inputs were mutated"
    return result


def pod_spec(**fields: Any) -> dict[str, Any]:
    """A Deployment whose pod template spec holds ``fields``."""
    return {"spec": {"template": {"spec": fields}}}


def directive_keys(value: Any) -> list[str]:
    """Every key anywhere in ``value`` that looks like a strategic-merge directive."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, sub in value.items():
            if key.startswith("$"):
                found.append(key)
            found.extend(directive_keys(sub))
    elif isinstance(value, list):
        for sub in value:
            found.extend(directive_keys(sub))
    return found


# --------------------------------------------------------------------------------------
# RFC 7386 merge patch
# --------------------------------------------------------------------------------------

# The examples of RFC 7386, Appendix A (those whose target and result are objects).
RFC7386_CASES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC7386_CASES)
def test_merge_patch_rfc7386_examples(target: dict, patch: dict, expected: dict) -> None:
    assert merge_patch(target, patch) == expected


def test_merge_patch_kopf_status_patch_keeps_other_fields() -> None:
    live = {"metadata": {"name": "r"}, "status": {"phase": "Pending", "conditions": [{"type": "Ready"}]}}
    patched = merge_patch(live, {"status": {"phase": "Running", "observedGeneration": 2}})
    assert patched == {
        "metadata": {"name": "r"},
        "status": {"phase": "Running", "conditions": [{"type": "Ready"}], "observedGeneration": 2},
    }


def test_merge_patch_result_does_not_alias_the_patch() -> None:
    patch = {"spec": {"items": [{"a": 1}]}}
    result = merge_patch({}, patch)
    result["spec"]["items"][0]["a"] = 2
    assert patch == {"spec": {"items": [{"a": 1}]}}


@pytest.mark.parametrize("patch", [["a"], "x", None, 1])
def test_merge_patch_must_be_an_object(patch: Any) -> None:
    with pytest.raises(PatchError, match="merge patch must be a JSON object"):
        apply_merge_patch({"a": 1}, patch)


JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text("abc", max_size=3))
JSON_KEYS = st.text("abcde", min_size=1, max_size=2)


def json_values(allow_null_in_objects: bool = True) -> st.SearchStrategy[Any]:
    scalars = JSON_SCALARS if allow_null_in_objects else JSON_SCALARS.filter(lambda v: v is not None)
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(JSON_KEYS, children, max_size=3),
        ),
        max_leaves=10,
    )


def json_objects(allow_null_in_objects: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(JSON_KEYS, json_values(allow_null_in_objects), max_size=4)


def create_merge_patch(source: Any, target: Any) -> Any:
    """The smallest RFC 7386 patch that turns ``source`` into ``target`` (objects recurse)."""
    if not isinstance(source, dict) or not isinstance(target, dict):
        return copy.deepcopy(target)
    patch: dict[str, Any] = {key: None for key in source if key not in target}
    for key, value in target.items():
        if key not in source:
            patch[key] = copy.deepcopy(value)
        elif source[key] != value or type(source[key]) is not type(value):
            if isinstance(source[key], dict) and isinstance(value, dict):
                patch[key] = create_merge_patch(source[key], value)
            else:
                patch[key] = copy.deepcopy(value)
    return patch


def strip_object_nulls(value: Any) -> Any:
    """Merge patch cannot set a member to null (null deletes), so targets never hold one."""
    if isinstance(value, dict):
        return {k: strip_object_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [v if not isinstance(v, dict | list) else strip_object_nulls(v) for v in value]
    return value


@given(json_objects(), json_objects(allow_null_in_objects=False))
@settings(deadline=None, max_examples=300)
def test_merge_patch_of_a_diff_turns_source_into_target(source: dict, target: dict) -> None:
    target = strip_object_nulls(target)
    assert merge_patch(source, create_merge_patch(source, target)) == target


@given(json_objects())
@settings(deadline=None)
def test_merge_patch_with_empty_patch_is_identity(source: dict) -> None:
    assert merge_patch(source, {}) == source


# --------------------------------------------------------------------------------------
# RFC 6902 JSON patch
# --------------------------------------------------------------------------------------

DOC = {"foo": "bar", "list": [1, 2, 3], "obj": {"a/b": 1, "m~n": 2, "": 3}}

JSON_PATCH_CASES = [
    ("add member", [{"op": "add", "path": "/baz", "value": "qux"}], {**DOC, "baz": "qux"}),
    ("add replaces member", [{"op": "add", "path": "/foo", "value": 1}], {**DOC, "foo": 1}),
    ("add inserts", [{"op": "add", "path": "/list/1", "value": 9}], {**DOC, "list": [1, 9, 2, 3]}),
    ("add at end index", [{"op": "add", "path": "/list/3", "value": 9}], {**DOC, "list": [1, 2, 3, 9]}),
    ("add appends with -", [{"op": "add", "path": "/list/-", "value": 9}], {**DOC, "list": [1, 2, 3, 9]}),
    ("add null value", [{"op": "add", "path": "/n", "value": None}], {**DOC, "n": None}),
    ("remove member", [{"op": "remove", "path": "/foo"}], {k: v for k, v in DOC.items() if k != "foo"}),
    ("remove item", [{"op": "remove", "path": "/list/0"}], {**DOC, "list": [2, 3]}),
    ("replace member", [{"op": "replace", "path": "/foo", "value": [1]}], {**DOC, "foo": [1]}),
    ("replace item", [{"op": "replace", "path": "/list/2", "value": "x"}], {**DOC, "list": [1, 2, "x"]}),
    ("replace root", [{"op": "replace", "path": "", "value": {"x": 1}}], {"x": 1}),
    ("add root", [{"op": "add", "path": "", "value": {"x": 1}}], {"x": 1}),
    (
        "~1 is a slash",
        [{"op": "replace", "path": "/obj/a~1b", "value": 10}],
        {**DOC, "obj": {"a/b": 10, "m~n": 2, "": 3}},
    ),
    (
        "~0 is a tilde",
        [{"op": "remove", "path": "/obj/m~0n"}],
        {**DOC, "obj": {"a/b": 1, "": 3}},
    ),
    (
        "empty token is the empty key",
        [{"op": "remove", "path": "/obj/"}],
        {**DOC, "obj": {"a/b": 1, "m~n": 2}},
    ),
    (
        "move",
        [{"op": "move", "from": "/foo", "path": "/obj/foo"}],
        {"list": [1, 2, 3], "obj": {"a/b": 1, "m~n": 2, "": 3, "foo": "bar"}},
    ),
    ("move item", [{"op": "move", "from": "/list/0", "path": "/list/-"}], {**DOC, "list": [2, 3, 1]}),
    ("move onto itself", [{"op": "move", "from": "/foo", "path": "/foo"}], DOC),
    ("copy", [{"op": "copy", "from": "/list", "path": "/copy"}], {**DOC, "copy": [1, 2, 3]}),
    ("test passes", [{"op": "test", "path": "/list", "value": [1, 2, 3]}], DOC),
    ("test numbers compare as numbers", [{"op": "test", "path": "/list/0", "value": 1.0}], DOC),
    (
        "test objects ignore key order",
        [{"op": "test", "path": "/obj", "value": {"": 3, "m~n": 2, "a/b": 1}}],
        DOC,
    ),
    (
        "operations apply in order",
        [
            {"op": "add", "path": "/a", "value": {}},
            {"op": "add", "path": "/a/b", "value": 1},
            {"op": "test", "path": "/a", "value": {"b": 1}},
        ],
        {**DOC, "a": {"b": 1}},
    ),
]


@pytest.mark.parametrize(
    ("ops", "expected"), [c[1:] for c in JSON_PATCH_CASES], ids=[c[0] for c in JSON_PATCH_CASES]
)
def test_json_patch_operations(ops: list, expected: dict) -> None:
    assert json_patch(DOC, ops) == expected


def test_json_patch_replace_keeps_key_order() -> None:
    assert list(json_patch({"a": 1, "b": 2, "c": 3}, [{"op": "replace", "path": "/a", "value": 0}])) == [
        "a",
        "b",
        "c",
    ]


JSON_PATCH_ERRORS = [
    ("unknown op", [{"op": "frobnicate", "path": "/foo"}], "unknown op 'frobnicate'"),
    ("op missing", [{"path": "/foo"}], "unknown op None"),
    ("path missing", [{"op": "remove"}], "missing 'path'"),
    ("value missing", [{"op": "add", "path": "/x"}], "missing 'value'"),
    ("from missing", [{"op": "copy", "path": "/x"}], "missing 'from'"),
    ("pointer without slash", [{"op": "remove", "path": "foo"}], "invalid JSON pointer 'foo'"),
    ("bad escape", [{"op": "remove", "path": "/obj/a~2b"}], "'~' must be followed by 0 or 1"),
    ("remove missing member", [{"op": "remove", "path": "/nope"}], "'/nope' does not exist"),
    ("replace missing member", [{"op": "replace", "path": "/nope", "value": 1}], "'/nope' does not exist"),
    ("add under missing parent", [{"op": "add", "path": "/a/b", "value": 1}], "'/a' does not exist"),
    ("index out of bounds", [{"op": "add", "path": "/list/4", "value": 1}], "index 4 is out of bounds"),
    ("leading zero index", [{"op": "remove", "path": "/list/01"}], "'01' is not an array index"),
    ("negative index", [{"op": "remove", "path": "/list/-1"}], "'-1' is not an array index"),
    ("dash outside add", [{"op": "remove", "path": "/list/-"}], "'-' is not an array index"),
    ("member of a scalar", [{"op": "add", "path": "/foo/x", "value": 1}], "cannot add a member to a string"),
    (
        "move into own child",
        [{"op": "move", "from": "/obj", "path": "/obj/x"}],
        "cannot move '/obj' into its own child",
    ),
    ("copy from missing", [{"op": "copy", "from": "/nope", "path": "/x"}], "'/nope' does not exist"),
    ("remove root", [{"op": "remove", "path": ""}], "cannot remove the whole document"),
    ("root becomes a list", [{"op": "replace", "path": "", "value": [1]}], "must remain a JSON object"),
    ("operation not an object", ["add"], "operation 0: must be a JSON object"),
    ("test of missing path", [{"op": "test", "path": "/nope", "value": None}], "'/nope' does not exist"),
]


@pytest.mark.parametrize(
    ("ops", "message"), [c[1:] for c in JSON_PATCH_ERRORS], ids=[c[0] for c in JSON_PATCH_ERRORS]
)
def test_json_patch_errors_name_the_path(ops: list, message: str) -> None:
    with pytest.raises(PatchError, match=_escaped(message)) as raised:
        json_patch(DOC, ops)
    assert not isinstance(raised.value, PatchTestFailed)


def _escaped(text: str) -> str:
    import re

    return re.escape(text)


def test_json_patch_must_be_a_list() -> None:
    with pytest.raises(PatchError, match="must be a list of operations"):
        apply_json_patch({}, {"op": "add"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "value"),
    [("/foo", "baz"), ("/list/0", True), ("/list", [1, 2]), ("/obj/a~1b", "1"), ("/list/1", 2.5)],
)
def test_json_patch_failed_test_raises_test_failed_naming_the_path(path: str, value: Any) -> None:
    with pytest.raises(PatchTestFailed, match=f"testing value {_escaped(path)} failed") as raised:
        json_patch(DOC, [{"op": "test", "path": path, "value": value}])
    assert raised.value.path == path
    assert isinstance(raised.value, PatchError)


def test_json_patch_is_atomic() -> None:
    ops = [{"op": "add", "path": "/x", "value": 1}, {"op": "test", "path": "/foo", "value": "nope"}]
    with pytest.raises(PatchTestFailed):
        json_patch(DOC, ops)
    assert "x" not in DOC


def test_json_patch_result_does_not_alias_the_operation_values() -> None:
    value = {"deep": [1]}
    result = json_patch({}, [{"op": "add", "path": "/v", "value": value}])
    result["v"]["deep"].append(2)
    assert value == {"deep": [1]}


# kopf 1.45 patches finalizers with JSON patch: a `test` of the resourceVersion it last saw,
# then the ops python-json-patch computes (the literal ops below are what kopf generated).
LIVE_RESOURCE = {
    "apiVersion": "kubeloop.dev/v1alpha1",
    "kind": "TrainingRun",
    "metadata": {"name": "r", "namespace": "default", "resourceVersion": "41", "uid": "u"},
    "spec": {},
}

KOPF_FINALIZER_CASES = [
    (
        "add the first finalizer",
        None,
        [{"op": "add", "path": "/metadata/finalizers", "value": [KOPF_FINALIZER]}],
        [KOPF_FINALIZER],
    ),
    (
        "append to other finalizers",
        ["a"],
        [{"op": "add", "path": "/metadata/finalizers/1", "value": KOPF_FINALIZER}],
        ["a", KOPF_FINALIZER],
    ),
    (
        "remove one of two",
        ["other/x", KOPF_FINALIZER],
        [{"op": "remove", "path": "/metadata/finalizers/1"}],
        ["other/x"],
    ),
    ("remove the last", [KOPF_FINALIZER], [{"op": "remove", "path": "/metadata/finalizers"}], None),
]


@pytest.mark.parametrize(
    ("finalizers", "ops", "expected"),
    [c[1:] for c in KOPF_FINALIZER_CASES],
    ids=[c[0] for c in KOPF_FINALIZER_CASES],
)
def test_kopf_finalizer_json_patch(finalizers: list | None, ops: list, expected: list | None) -> None:
    live = copy.deepcopy(LIVE_RESOURCE)
    if finalizers is not None:
        live["metadata"]["finalizers"] = finalizers
    test = {"op": "test", "path": "/metadata/resourceVersion", "value": "41"}
    patched = json_patch(live, [test, *ops])
    assert patched["metadata"].get("finalizers") == expected


@pytest.mark.parametrize("stale", ["40", None, 41])
def test_kopf_finalizer_json_patch_with_stale_resource_version_fails_the_test(stale: Any) -> None:
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": stale},
        {"op": "add", "path": "/metadata/finalizers", "value": [KOPF_FINALIZER]},
    ]
    with pytest.raises(PatchTestFailed, match="testing value /metadata/resourceVersion failed") as raised:
        json_patch(LIVE_RESOURCE, ops)
    assert raised.value.path == "/metadata/resourceVersion"


@given(json_objects(), json_objects())
@settings(deadline=None, max_examples=300)
def test_json_patch_from_python_json_patch_diff_turns_source_into_target(source: dict, target: dict) -> None:
    jsonpatch = pytest.importorskip("jsonpatch")  # what kopf uses to compute its ops
    ops = jsonpatch.JsonPatch.from_diff(source, target).patch
    assert json_patch(source, ops) == target


def json_paths(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every (pointer, value) in ``value``."""
    found = [(prefix, value)]
    if isinstance(value, dict):
        for key, sub in value.items():
            found += json_paths(sub, f"{prefix}/{key.replace('~', '~0').replace('/', '~1')}")
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            found += json_paths(sub, f"{prefix}/{index}")
    return found


@given(json_objects(), st.data())
@settings(deadline=None)
def test_json_patch_test_passes_on_the_current_value_and_fails_on_any_other(
    doc: dict, data: st.DataObject
) -> None:
    pointer, value = data.draw(st.sampled_from(json_paths(doc)))
    assert json_patch(doc, [{"op": "test", "path": pointer, "value": value}]) == doc
    other = data.draw(
        json_values().filter(lambda v: json.dumps(v, sort_keys=True) != json.dumps(value, sort_keys=True))
    )
    if (
        isinstance(other, float | int)
        and not isinstance(other, bool)
        and other == value
        and not isinstance(value, bool)
    ):
        return  # 1 and 1.0 are the same JSON number
    with pytest.raises(PatchTestFailed):
        json_patch(doc, [{"op": "test", "path": pointer, "value": other}])


def test_json_patch_test_distinguishes_booleans_from_numbers() -> None:
    with pytest.raises(PatchTestFailed):
        json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": True}])
    with pytest.raises(PatchTestFailed):
        json_patch({"a": False}, [{"op": "test", "path": "/a", "value": 0}])


# --------------------------------------------------------------------------------------
# Strategic merge patch: what real `kubectl apply` 1.37.1 sends
# --------------------------------------------------------------------------------------


def last_applied(config: dict[str, Any]) -> str:
    return json.dumps(config, separators=(",", ":"), sort_keys=True) + "\n"


CONFIGMAP_LIVE = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {
        "name": "settings",
        "namespace": "default",
        "labels": {"app": "demo", "tier": "web"},
        "annotations": {LAST_APPLIED: "<previous configuration>"},
        "uid": "u-1",
        "resourceVersion": "41",
    },
    "data": {"a": "1", "b": "2", "z": "added-by-someone-else"},
}

# kubectl apply of {data: {a: "1", c: "3"}, labels: {app: demo, team: ml}} over the object above.
CONFIGMAP_KUBECTL_PATCH = {
    "data": {"b": None, "c": "3"},
    "metadata": {
        "annotations": {LAST_APPLIED: "<new configuration>"},
        "labels": {"team": "ml", "tier": None},
    },
}


def test_kubectl_apply_configmap_update() -> None:
    patched = smp(CONFIGMAP_LIVE, CONFIGMAP_KUBECTL_PATCH, ("v1", "ConfigMap"))
    assert patched["data"] == {"a": "1", "c": "3", "z": "added-by-someone-else"}
    assert patched["metadata"]["labels"] == {"app": "demo", "team": "ml"}
    assert patched["metadata"]["annotations"] == {LAST_APPLIED: "<new configuration>"}
    assert patched["metadata"]["uid"] == "u-1"


DEPLOYMENT_LIVE = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}, "generation": 1},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "app:1",
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        "imagePullPolicy": "IfNotPresent",
                        "terminationMessagePath": "/dev/termination-log",
                    }
                ],
                "volumes": [{"name": "cache", "emptyDir": {}}],
                "restartPolicy": "Always",
            },
        },
    },
    "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]},
}

# kubectl apply adding a sidecar before `app`, changing app's image, env (drop A, add C) and
# ports, adding a volume before `cache`, switching the strategy to Recreate, 3 replicas.
DEPLOYMENT_KUBECTL_PATCH = {
    "metadata": {"annotations": {LAST_APPLIED: "<new configuration>"}},
    "spec": {
        "replicas": 3,
        "strategy": {"$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate"},
        "template": {
            "spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
                "$setElementOrder/volumes": [{"name": "data"}, {"name": "cache"}],
                "containers": [
                    {"image": "side:1", "name": "sidecar"},
                    {
                        "$setElementOrder/env": [{"name": "B"}, {"name": "C"}],
                        "$setElementOrder/ports": [{"containerPort": 8080}, {"containerPort": 9090}],
                        "env": [{"name": "C", "value": "3"}, {"$patch": "delete", "name": "A"}],
                        "image": "app:2",
                        "name": "app",
                        "ports": [{"containerPort": 9090, "name": "metrics"}],
                    },
                ],
                "volumes": [{"configMap": {"name": "cfg"}, "name": "data"}],
            }
        },
    },
}


def test_kubectl_apply_deployment_update() -> None:
    patched = smp(DEPLOYMENT_LIVE, DEPLOYMENT_KUBECTL_PATCH)
    spec = patched["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {"type": "Recreate"}  # $retainKeys dropped rollingUpdate
    assert spec["selector"] == {"matchLabels": {"app": "web"}}
    pod = spec["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["sidecar", "app"]
    assert pod["containers"][0] == {"image": "side:1", "name": "sidecar"}
    app = pod["containers"][1]
    assert app["image"] == "app:2"
    assert app["env"] == [{"name": "B", "value": "2"}, {"name": "C", "value": "3"}]
    assert app["ports"] == [
        {"containerPort": 8080, "protocol": "TCP"},
        {"containerPort": 9090, "name": "metrics"},
    ]
    assert app["imagePullPolicy"] == "IfNotPresent"  # server-side defaults survive
    assert pod["volumes"] == [
        {"configMap": {"name": "cfg"}, "name": "data"},
        {"name": "cache", "emptyDir": {}},
    ]
    assert pod["restartPolicy"] == "Always"
    assert patched["status"] == DEPLOYMENT_LIVE["status"]
    assert directive_keys(patched) == []


JOB_LIVE = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {
        "name": "train",
        "namespace": "default",
        "labels": {"app": "train"},
        "finalizers": [KOPF_FINALIZER],
    },
    "spec": {
        "suspend": True,
        "backoffLimit": 2,
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}},
        "template": {
            "metadata": {"labels": {"job": "train", "batch.kubernetes.io/controller-uid": "u-1"}},
            "spec": {
                "restartPolicy": "Never",
                "tolerations": [{"key": "gpu", "operator": "Exists"}],
                "containers": [
                    {
                        "name": "train",
                        "image": "t:1",
                        "args": ["--epochs", "1"],
                        "env": [{"name": "LR", "value": "0.1"}],
                    }
                ],
            },
        },
    },
    "status": {"conditions": [{"type": "Suspended", "status": "True"}]},
}

# kubectl apply adding a finalizer, resuming the job, changing args, env and tolerations.
JOB_KUBECTL_PATCH = {
    "metadata": {
        "$setElementOrder/finalizers": ["example.com/keep"],
        "annotations": {LAST_APPLIED: "<new configuration>"},
        "finalizers": ["example.com/keep"],
    },
    "spec": {
        "backoffLimit": 4,
        "suspend": False,
        "template": {
            "metadata": {"labels": {"run": "r2"}},
            "spec": {
                "$setElementOrder/containers": [{"name": "train"}],
                "containers": [
                    {
                        "$setElementOrder/env": [{"name": "LR"}, {"name": "SEED"}],
                        "args": ["--epochs", "3"],
                        "env": [{"name": "LR", "value": "0.01"}, {"name": "SEED", "value": "7"}],
                        "name": "train",
                    }
                ],
                "tolerations": [{"effect": "NoSchedule", "key": "gpu", "operator": "Exists"}],
            },
        },
    },
}


def test_kubectl_apply_job_update() -> None:
    patched = smp(JOB_LIVE, JOB_KUBECTL_PATCH, ("batch/v1", "Job"))
    # The operator's finalizer (not in the configuration) stays, after the applied one.
    assert patched["metadata"]["finalizers"] == ["example.com/keep", KOPF_FINALIZER]
    assert patched["metadata"]["annotations"] == {LAST_APPLIED: "<new configuration>"}
    assert patched["spec"]["suspend"] is False
    assert patched["spec"]["backoffLimit"] == 4
    assert patched["spec"]["selector"] == JOB_LIVE["spec"]["selector"]
    template = patched["spec"]["template"]
    assert template["metadata"]["labels"] == {
        "job": "train",
        "batch.kubernetes.io/controller-uid": "u-1",
        "run": "r2",
    }
    assert template["spec"]["tolerations"] == [{"effect": "NoSchedule", "key": "gpu", "operator": "Exists"}]
    (container,) = template["spec"]["containers"]
    assert container == {
        "name": "train",
        "image": "t:1",
        "args": ["--epochs", "3"],
        "env": [{"name": "LR", "value": "0.01"}, {"name": "SEED", "value": "7"}],
    }
    assert directive_keys(patched) == []


def test_kubectl_apply_directives_for_lists_the_live_object_lacks_are_not_stored() -> None:
    # The gap of stock kmock: `$setElementOrder/...` stored literally and the list lost.
    live = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "a"}]}}}}
    patch = pod_spec(
        **{
            "$setElementOrder/volumes": [{"name": "data"}],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [
                {"name": "app", "$setElementOrder/env": [{"name": "X"}], "env": [{"name": "X", "value": "1"}]}
            ],
        }
    )
    patched = smp(live, patch)
    assert patched == pod_spec(
        containers=[{"name": "app", "image": "a", "env": [{"name": "X", "value": "1"}]}],
        volumes=[{"name": "data", "emptyDir": {}}],
    )


def test_directives_in_a_brand_new_subtree_take_effect() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                    "containers": [
                        {"name": "b", "image": "b"},
                        {"name": "a", "image": "a", "$patch": "delete"},
                    ],
                    "securityContext": {"$patch": "delete"},
                    "nodeSelector": {"$patch": "replace", "disk": "ssd"},
                }
            }
        }
    }
    patched = smp({"metadata": {"name": "x"}}, patch)
    assert patched == {
        "metadata": {"name": "x"},
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "b", "image": "b"}], "nodeSelector": {"disk": "ssd"}}
            }
        },
    }


# --------------------------------------------------------------------------------------
# Strategic merge patch: rule by rule
# --------------------------------------------------------------------------------------

SMP_CASES: list[tuple[str, tuple[str, str], dict, dict, dict]] = [
    # (id, kind, live, patch, expected)
    (
        "maps merge",
        ("v1", "ConfigMap"),
        {"data": {"a": "1"}},
        {"data": {"b": "2"}},
        {"data": {"a": "1", "b": "2"}},
    ),
    (
        "null deletes",
        ("v1", "ConfigMap"),
        {"data": {"a": "1", "b": "2"}},
        {"data": {"a": None}},
        {"data": {"b": "2"}},
    ),
    (
        "null of a missing key",
        ("v1", "ConfigMap"),
        {"data": {"a": "1"}},
        {"data": {"x": None}},
        {"data": {"a": "1"}},
    ),
    (
        "null in a new map is dropped",
        ("v1", "ConfigMap"),
        {},
        {"data": {"a": "1", "x": None}},
        {"data": {"a": "1"}},
    ),
    (
        "scalar replaced",
        ("apps/v1", "Deployment"),
        {"spec": {"replicas": 1}},
        {"spec": {"replicas": 2}},
        {"spec": {"replicas": 2}},
    ),
    (
        "type change replaces",
        ("v1", "ConfigMap"),
        {"data": {"a": {"x": 1}}},
        {"data": {"a": "s"}},
        {"data": {"a": "s"}},
    ),
    (
        "labels and annotations are maps",
        ("v1", "Secret"),
        {"metadata": {"labels": {"a": "1", "b": "2"}, "annotations": {"x": "1"}}},
        {"metadata": {"labels": {"a": None, "c": "3"}, "annotations": {"y": "2"}}},
        {"metadata": {"labels": {"b": "2", "c": "3"}, "annotations": {"x": "1", "y": "2"}}},
    ),
    (
        "$patch replace in a map",
        ("apps/v1", "Deployment"),
        pod_spec(nodeSelector={"a": "1", "b": "2"}),
        pod_spec(nodeSelector={"$patch": "replace", "c": "3"}),
        pod_spec(nodeSelector={"c": "3"}),
    ),
    (
        "$patch delete in a map",
        ("apps/v1", "Deployment"),
        pod_spec(securityContext={"runAsUser": 1}, hostname="h"),
        pod_spec(securityContext={"$patch": "delete"}),
        pod_spec(hostname="h"),
    ),
    (
        "merge list: update by key, keep others",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]),
        pod_spec(containers=[{"name": "b", "image": "b:2"}]),
        pod_spec(containers=[{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]),
    ),
    (
        "merge list: a new item goes first without $setElementOrder",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a", "image": "a"}]),
        pod_spec(containers=[{"name": "b", "image": "b"}]),
        pod_spec(containers=[{"name": "b", "image": "b"}, {"name": "a", "image": "a"}]),
    ),
    (
        # Patched items take the patch order; the others interleave by live position.
        "merge list: patch order among patched items, live order for the rest",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a"}, {"name": "b"}, {"name": "c"}]),
        pod_spec(containers=[{"name": "c", "image": "c"}, {"name": "a", "image": "a"}]),
        pod_spec(containers=[{"name": "b"}, {"name": "c", "image": "c"}, {"name": "a", "image": "a"}]),
    ),
    (
        "$setElementOrder reorders without changes",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a"}, {"name": "b"}, {"name": "c"}]),
        pod_spec(**{"$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}]}),
        pod_spec(containers=[{"name": "c"}, {"name": "b"}, {"name": "a"}]),
    ),
    (
        "$setElementOrder: items it omits keep their live place",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "x"}, {"name": "a"}, {"name": "y"}, {"name": "b"}]),
        pod_spec(**{"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}),
        pod_spec(containers=[{"name": "x"}, {"name": "y"}, {"name": "b"}, {"name": "a"}]),
    ),
    (
        "$patch delete a list item (every match)",
        ("apps/v1", "Deployment"),
        pod_spec(volumes=[{"name": "a"}, {"name": "b"}, {"name": "a", "emptyDir": {}}]),
        pod_spec(volumes=[{"name": "a", "$patch": "delete"}]),
        pod_spec(volumes=[{"name": "b"}]),
    ),
    (
        "$patch delete of the last item removes the list",
        ("apps/v1", "Deployment"),
        pod_spec(volumes=[{"name": "a"}]),
        pod_spec(volumes=[{"name": "a", "$patch": "delete"}]),
        pod_spec(),
    ),
    (
        "$patch replace as a list item replaces the list",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a", "image": "a"}, {"name": "b"}]),
        pod_spec(containers=[{"name": "c"}, {"$patch": "replace"}]),
        pod_spec(containers=[{"name": "c"}]),
    ),
    (
        "finalizers merge as a set",
        ("v1", "ConfigMap"),
        {"metadata": {"finalizers": ["a", "b"]}},
        {"metadata": {"finalizers": ["b", "c"]}},
        {"metadata": {"finalizers": ["a", "b", "c"]}},
    ),
    (
        "a new finalizer goes first when the patch names no live one",
        ("v1", "ConfigMap"),
        {"metadata": {"finalizers": ["a", "b"]}},
        {"metadata": {"finalizers": ["c"]}},
        {"metadata": {"finalizers": ["c", "a", "b"]}},
    ),
    (
        "finalizers: $setElementOrder and $deleteFromPrimitiveList",
        ("v1", "ConfigMap"),
        {"metadata": {"finalizers": ["a", "b", "c"]}},
        {
            "metadata": {
                "$setElementOrder/finalizers": ["c", "d", "a"],
                "finalizers": ["d"],
                "$deleteFromPrimitiveList/finalizers": ["b"],
            }
        },
        {"metadata": {"finalizers": ["c", "d", "a"]}},
    ),
    (
        "deleting every finalizer removes the list",
        ("v1", "ConfigMap"),
        {"metadata": {"finalizers": ["a"]}},
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zzz"]}},
        {"metadata": {}},
    ),
    (
        "ownerReferences merge by uid",
        ("v1", "ConfigMap"),
        {"metadata": {"ownerReferences": [{"uid": "1", "name": "a", "kind": "X"}]}},
        {
            "metadata": {
                "ownerReferences": [{"uid": "2", "name": "b", "kind": "X"}, {"uid": "1", "controller": True}]
            }
        },
        {
            "metadata": {
                "ownerReferences": [
                    {"uid": "2", "name": "b", "kind": "X"},
                    {"uid": "1", "name": "a", "kind": "X", "controller": True},
                ]
            }
        },
    ),
    (
        "env merges by name",
        ("apps/v1", "Deployment"),
        pod_spec(
            containers=[{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]
        ),
        pod_spec(containers=[{"name": "a", "env": [{"name": "Y", "value": "3"}]}]),
        pod_spec(
            containers=[{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}]}]
        ),
    ),
    (
        "envFrom is atomic",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a", "envFrom": [{"configMapRef": {"name": "x"}}]}]),
        pod_spec(containers=[{"name": "a", "envFrom": [{"secretRef": {"name": "y"}}]}]),
        pod_spec(containers=[{"name": "a", "envFrom": [{"secretRef": {"name": "y"}}]}]),
    ),
    (
        "args and command are replaced",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a", "args": ["1", "2"], "command": ["x"]}]),
        pod_spec(containers=[{"name": "a", "args": ["3"]}]),
        pod_spec(containers=[{"name": "a", "args": ["3"], "command": ["x"]}]),
    ),
    (
        "container ports merge by containerPort alone (kubernetes#39188)",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a", "ports": [{"containerPort": 53, "protocol": "TCP"}]}]),
        pod_spec(containers=[{"name": "a", "ports": [{"containerPort": 53, "protocol": "UDP"}]}]),
        pod_spec(containers=[{"name": "a", "ports": [{"containerPort": 53, "protocol": "UDP"}]}]),
    ),
    (
        "volumeMounts by mountPath, volumeDevices by devicePath",
        ("apps/v1", "Deployment"),
        pod_spec(
            containers=[
                {
                    "name": "a",
                    "volumeMounts": [{"mountPath": "/a", "name": "v"}],
                    "volumeDevices": [{"devicePath": "/dev/a", "name": "d"}],
                }
            ]
        ),
        pod_spec(
            containers=[
                {
                    "name": "a",
                    "volumeMounts": [{"mountPath": "/a", "readOnly": True}],
                    "volumeDevices": [{"devicePath": "/dev/b", "name": "e"}],
                }
            ]
        ),
        pod_spec(
            containers=[
                {
                    "name": "a",
                    "volumeMounts": [{"mountPath": "/a", "name": "v", "readOnly": True}],
                    "volumeDevices": [
                        {"devicePath": "/dev/b", "name": "e"},
                        {"devicePath": "/dev/a", "name": "d"},
                    ],
                }
            ]
        ),
    ),
    (
        "initContainers and ephemeralContainers merge by name",
        ("v1", "Pod"),
        {"spec": {"initContainers": [{"name": "i", "image": "1"}], "ephemeralContainers": [{"name": "e"}]}},
        {"spec": {"initContainers": [{"name": "i", "image": "2"}], "ephemeralContainers": [{"name": "f"}]}},
        {
            "spec": {
                "initContainers": [{"name": "i", "image": "2"}],
                "ephemeralContainers": [{"name": "f"}, {"name": "e"}],
            }
        },
    ),
    (
        "imagePullSecrets by name, hostAliases by ip",
        ("v1", "Pod"),
        {
            "spec": {
                "imagePullSecrets": [{"name": "a"}],
                "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["a"]}],
            }
        },
        {
            "spec": {
                "imagePullSecrets": [{"name": "b"}],
                "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["b"]}],
            }
        },
        {
            "spec": {
                "imagePullSecrets": [{"name": "b"}, {"name": "a"}],
                "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["b"]}],
            }
        },
    ),
    (
        "tolerations are atomic",
        ("v1", "Pod"),
        {"spec": {"tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]}},
        {"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}},
        {"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}},
    ),
    (
        "topologySpreadConstraints merge by topologyKey",
        ("v1", "Pod"),
        {"spec": {"topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1}]}},
        {"spec": {"topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}]}},
        {"spec": {"topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}]}},
    ),
    (
        "resourceClaims merge by name",
        ("v1", "Pod"),
        {"spec": {"resourceClaims": [{"name": "gpu", "resourceClaimName": "a"}]}},
        {"spec": {"resourceClaims": [{"name": "gpu", "resourceClaimName": "b"}]}},
        {"spec": {"resourceClaims": [{"name": "gpu", "resourceClaimName": "b"}]}},
    ),
    (
        "$retainKeys on a volume switches its source",
        ("v1", "Pod"),
        {"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}},
        {
            "spec": {
                "volumes": [{"name": "v", "$retainKeys": ["configMap", "name"], "configMap": {"name": "c"}}]
            }
        },
        {"spec": {"volumes": [{"name": "v", "configMap": {"name": "c"}}]}},
    ),
    (
        "pod status conditions merge by type",
        ("v1", "Pod"),
        {
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "False"},
                    {"type": "PodScheduled", "status": "True"},
                ]
            }
        },
        {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        {
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "PodScheduled", "status": "True"},
                ]
            }
        },
    ),
    (
        "pod status podIPs merge by ip",
        ("v1", "Pod"),
        {"status": {"podIPs": [{"ip": "10.0.0.1"}]}},
        {"status": {"podIPs": [{"ip": "fd00::1"}]}},
        {"status": {"podIPs": [{"ip": "fd00::1"}, {"ip": "10.0.0.1"}]}},
    ),
    (
        "job status conditions merge by type",
        ("batch/v1", "Job"),
        {"status": {"conditions": [{"type": "Suspended", "status": "True"}]}},
        {"status": {"conditions": [{"type": "Complete", "status": "True"}]}},
        {
            "status": {
                "conditions": [
                    {"type": "Complete", "status": "True"},
                    {"type": "Suspended", "status": "True"},
                ]
            }
        },
    ),
    (
        "job pod template containers merge",
        ("batch/v1", "Job"),
        {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b"}]}}}},
        {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "2"}]}}}},
        {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "2"}, {"name": "b"}]}}}},
    ),
    (
        "cronjob's embedded pod template containers merge",
        ("batch/v1", "CronJob"),
        {
            "spec": {
                "jobTemplate": {
                    "spec": {"template": {"spec": {"containers": [{"name": "a", "env": [{"name": "X"}]}]}}}
                }
            }
        },
        {
            "spec": {
                "jobTemplate": {
                    "spec": {"template": {"spec": {"containers": [{"name": "a", "env": [{"name": "Y"}]}]}}}
                }
            }
        },
        {
            "spec": {
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": "a", "env": [{"name": "Y"}, {"name": "X"}]}]}
                        }
                    }
                }
            }
        },
    ),
    (
        "service ports merge by port",
        ("v1", "Service"),
        {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}},
        {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}},
        {"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}},
    ),
    (
        "service selector merges as a map in a strategic patch",
        ("v1", "Service"),
        {"spec": {"selector": {"a": "1"}}},
        {"spec": {"selector": {"b": "2"}}},
        {"spec": {"selector": {"a": "1", "b": "2"}}},
    ),
    (
        "statefulset, daemonset and replicaset templates merge",
        ("apps/v1", "StatefulSet"),
        {"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}},
        {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}},
        {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}},
    ),
    (
        "role rules are atomic",
        ("rbac.authorization.k8s.io/v1", "Role"),
        {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
        {"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]},
        {"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]},
    ),
    (
        "clusterrole rules are atomic",
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        {"rules": [{"verbs": ["get"]}, {"verbs": ["list"]}]},
        {"rules": [{"verbs": ["watch"]}]},
        {"rules": [{"verbs": ["watch"]}]},
    ),
    (
        "service account secrets merge by name",
        ("v1", "ServiceAccount"),
        {"secrets": [{"name": "a"}]},
        {"secrets": [{"name": "b"}]},
        {"secrets": [{"name": "b"}, {"name": "a"}]},
    ),
    (
        "namespace status conditions merge by type",
        ("v1", "Namespace"),
        {"status": {"phase": "Active", "conditions": [{"type": "A"}]}},
        {"status": {"conditions": [{"type": "B"}]}},
        {"status": {"phase": "Active", "conditions": [{"type": "B"}, {"type": "A"}]}},
    ),
    (
        "endpoints subsets are atomic",
        ("v1", "Endpoints"),
        {"subsets": [{"addresses": [{"ip": "1.1.1.1"}]}]},
        {"subsets": [{"addresses": [{"ip": "2.2.2.2"}]}]},
        {"subsets": [{"addresses": [{"ip": "2.2.2.2"}]}]},
    ),
    (
        "event fields are plain",
        ("v1", "Event"),
        {"count": 1, "involvedObject": {"kind": "Pod", "name": "a"}},
        {"count": 2, "involvedObject": {"name": "b"}},
        {"count": 2, "involvedObject": {"kind": "Pod", "name": "b"}},
    ),
    (
        "lease spec",
        ("coordination.k8s.io/v1", "Lease"),
        {"spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}},
        {"spec": {"holderIdentity": "b"}},
        {"spec": {"holderIdentity": "b", "leaseDurationSeconds": 15}},
    ),
    (
        "pod template",
        ("v1", "PodTemplate"),
        {"template": {"spec": {"containers": [{"name": "a"}]}}},
        {"template": {"spec": {"containers": [{"name": "b"}]}}},
        {"template": {"spec": {"containers": [{"name": "b"}, {"name": "a"}]}}},
    ),
    (
        "pod disruption budget selector is replaced",
        ("policy/v1", "PodDisruptionBudget"),
        {"spec": {"selector": {"matchLabels": {"a": "1"}}}},
        {"spec": {"selector": {"matchLabels": {"b": "2"}}}},
        {"spec": {"selector": {"matchLabels": {"b": "2"}}}},
    ),
    (
        "CRD versions are atomic",
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        {"spec": {"versions": [{"name": "v1", "served": True}, {"name": "v2"}]}},
        {
            "spec": {
                "versions": [{"name": "v1", "served": False, "schema": {"openAPIV3Schema": {"$ref": "#/x"}}}]
            }
        },
        {
            "spec": {
                "versions": [{"name": "v1", "served": False, "schema": {"openAPIV3Schema": {"$ref": "#/x"}}}]
            }
        },
    ),
    (
        "an emptied merging list is dropped, as the typed object omits it",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[]),
        pod_spec(containers=[]),
        pod_spec(),
    ),
    (
        "a merging list with a new item when the live value is not a list",
        ("apps/v1", "Deployment"),
        pod_spec(containers="garbage"),
        pod_spec(containers=[{"name": "a"}]),
        pod_spec(containers=[{"name": "a"}]),
    ),
    (
        "merge keys compare as JSON values",
        ("v1", "Service"),
        {"spec": {"ports": [{"port": 80, "name": "a"}, {"port": "80", "name": "s"}]}},
        {"spec": {"ports": [{"port": 80.0, "name": "b"}]}},
        {"spec": {"ports": [{"port": 80.0, "name": "b"}, {"port": "80", "name": "s"}]}},
    ),
    (
        "whole object replaced with $patch replace at the root",
        ("v1", "ConfigMap"),
        {"data": {"a": "1"}, "metadata": {"name": "x"}},
        {"$patch": "replace", "data": {"b": "2"}},
        {"data": {"b": "2"}},
    ),
]


@pytest.mark.parametrize(
    ("kind", "live", "patch", "expected"), [c[1:] for c in SMP_CASES], ids=[c[0] for c in SMP_CASES]
)
def test_strategic_merge_patch(kind: tuple[str, str], live: dict, patch: dict, expected: dict) -> None:
    assert smp(live, patch, kind) == expected


def test_strategic_merge_patch_whole_object_deleted_is_empty() -> None:
    assert smp({"data": {"a": "1"}}, {"$patch": "delete"}, ("v1", "ConfigMap")) == {}


def test_strategic_merge_patch_result_does_not_alias_the_patch() -> None:
    patch = pod_spec(containers=[{"name": "a", "args": ["x"]}], tolerations=[{"key": "k"}])
    result = smp(pod_spec(containers=[{"name": "b"}]), patch)
    result["spec"]["template"]["spec"]["containers"][0]["args"].append("y")
    result["spec"]["template"]["spec"]["tolerations"][0]["key"] = "changed"
    assert patch == pod_spec(containers=[{"name": "a", "args": ["x"]}], tolerations=[{"key": "k"}])


SMP_ERRORS: list[tuple[str, tuple[str, str], dict, dict, str]] = [
    (
        "list item missing its merge key",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a"}]),
        pod_spec(containers=[{"image": "x"}]),
        'spec.template.spec.containers[0]: list item {"image": "x"} does not contain declared merge key \'name\'',
    ),
    (
        "delete directive missing its merge key",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a"}]),
        pod_spec(containers=[{"$patch": "delete"}]),
        "spec.template.spec.containers[0]: a list item with '$patch: delete' must name its merge key 'name'",
    ),
    (
        "non-list where a list is expected",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a"}]),
        pod_spec(containers={"name": "a"}),
        "spec.template.spec.containers: expected a list, got object",
    ),
    (
        "non-list for an atomic list",
        ("v1", "Pod"),
        {"spec": {"tolerations": []}},
        {"spec": {"tolerations": "all"}},
        "spec.tolerations: expected a list, got string",
    ),
    (
        "scalars in a list of objects",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a"}]),
        pod_spec(containers=["a"]),
        "spec.template.spec.containers[0]: expected an object with merge key 'name', got string (patch)",
    ),
    (
        "objects in a set of scalars",
        ("v1", "ConfigMap"),
        {"metadata": {"finalizers": ["a"]}},
        {"metadata": {"finalizers": [{"name": "a"}]}},
        "metadata.finalizers[0]: cannot merge a list of objects without a merge key (patch)",
    ),
    (
        "lists of lists",
        ("v1", "ConfigMap"),
        {"metadata": {"finalizers": ["a"]}},
        {"metadata": {"finalizers": [["a"]]}},
        "metadata.finalizers[0]: lists of lists cannot be merged (patch)",
    ),
    (
        "unknown directive key",
        ("apps/v1", "Deployment"),
        {"spec": {}},
        {"spec": {"$setElementOrders/containers": []}},
        "spec.$setElementOrders/containers: unknown patch directive '$setElementOrders/containers'",
    ),
    (
        "unknown $patch value in a map",
        ("apps/v1", "Deployment"),
        {"spec": {"strategy": {}}},
        {"spec": {"strategy": {"$patch": "frobnicate"}}},
        "spec.strategy: unknown patch type 'frobnicate' in a map",
    ),
    (
        "$patch merge in a map is refused, as by kube-apiserver",
        ("apps/v1", "Deployment"),
        {"spec": {"strategy": {}}},
        {"spec": {"strategy": {"$patch": "merge", "type": "Recreate"}}},
        "spec.strategy: unknown patch type 'merge' in a map",
    ),
    (
        "$patch merge in a list item is refused, as by kube-apiserver",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a"}]),
        pod_spec(containers=[{"name": "a", "$patch": "merge"}]),
        'spec.template.spec.containers[name="a"]: merging lists cannot yet be specified in the patch',
    ),
    (
        "unknown $patch value in a list item",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a"}]),
        pod_spec(containers=[{"name": "a", "$patch": "zap"}]),
        "spec.template.spec.containers[name=\"a\"]: unknown patch type 'zap' in a list item",
    ),
    (
        "$setElementOrder on an atomic list",
        ("v1", "Pod"),
        {"spec": {"tolerations": [{"key": "a"}]}},
        {"spec": {"$setElementOrder/tolerations": [{"key": "a"}]}},
        "spec.tolerations: '$setElementOrder/tolerations' applies only to lists that merge",
    ),
    (
        "$setElementOrder that is not a list",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a"}]),
        pod_spec(**{"$setElementOrder/containers": {"name": "a"}}),
        "spec.template.spec.containers: invalid patch format of setElementOrder list",
    ),
    (
        "$setElementOrder entries without the merge key",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a"}]),
        pod_spec(**{"$setElementOrder/containers": [{"image": "a"}]}),
        "spec.template.spec.containers: $setElementOrder/containers[0] must be an object holding the merge key 'name'",
    ),
    (
        "$setElementOrder inconsistent with the patch list",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a"}, {"name": "b"}]),
        pod_spec(
            **{
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{"name": "b"}, {"name": "a"}],
            }
        ),
        "spec.template.spec.containers: the order in the patch list",
    ),
    (
        "$setElementOrder missing an item of the patch list",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a"}]),
        pod_spec(**{"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "c"}]}),
        "doesn't match the $setElementOrder/containers list",
    ),
    (
        "$setElementOrder with the list deleted",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a"}]),
        pod_spec(**{"$setElementOrder/containers": [], "containers": None}),
        "spec.template.spec.containers: a list with '$setElementOrder/containers' cannot also be deleted",
    ),
    (
        "$deleteFromPrimitiveList on a list of objects",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a"}]),
        pod_spec(**{"$deleteFromPrimitiveList/containers": ["a"]}),
        "spec.template.spec.containers: '$deleteFromPrimitiveList/containers' applies only to lists of scalars",
    ),
    (
        "$deleteFromPrimitiveList on an atomic list",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a", "args": ["x"]}]),
        pod_spec(containers=[{"name": "a", "$deleteFromPrimitiveList/args": ["x"]}]),
        "spec.template.spec.containers[name=\"a\"].args: '$deleteFromPrimitiveList/args' applies only",
    ),
    (
        "$deleteFromPrimitiveList that is not a list",
        ("v1", "ConfigMap"),
        {"metadata": {"finalizers": ["a"]}},
        {"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}},
        "metadata.finalizers: invalid patch format of deleteFromPrimitiveList",
    ),
    (
        "$retainKeys that is not a list",
        ("apps/v1", "Deployment"),
        {"spec": {"strategy": {"type": "Recreate"}}},
        {"spec": {"strategy": {"$retainKeys": "type"}}},
        "spec.strategy: invalid patch format of retainKeys",
    ),
    (
        "$retainKeys missing a key the patch sets",
        ("apps/v1", "Deployment"),
        {"spec": {"strategy": {"type": "Recreate"}}},
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "RollingUpdate", "rollingUpdate": {}}}},
        "spec.strategy.rollingUpdate: invalid patch format of retainKeys",
    ),
]


@pytest.mark.parametrize(
    ("kind", "live", "patch", "message"), [c[1:] for c in SMP_ERRORS], ids=[c[0] for c in SMP_ERRORS]
)
def test_strategic_merge_patch_errors_name_the_path(
    kind: tuple[str, str], live: dict, patch: dict, message: str
) -> None:
    meta = patch_meta_for_builtin(*kind)
    assert meta is not None
    before = copy.deepcopy((live, patch))
    with pytest.raises(PatchError, match=_escaped(message)) as raised:
        apply_strategic_merge_patch(live, patch, meta)
    assert (live, patch) == before
    assert raised.value.path and raised.value.path in str(raised.value)


@pytest.mark.parametrize("patch", [[], "x", None])
def test_strategic_merge_patch_must_be_an_object(patch: Any) -> None:
    with pytest.raises(PatchError, match="strategic merge patch must be a JSON object"):
        apply_strategic_merge_patch({}, patch, PatchMeta())


# A small two-way strategic-merge diff, as `kubectl apply` builds for a merging list of
# objects: changed or new items, deletions by key, and the wanted order.
def env_patch(live: list[dict[str, str]], wanted: list[dict[str, str]]) -> dict[str, Any]:
    live_by_name = {item["name"]: item for item in live}
    wanted_names = {item["name"] for item in wanted}
    changes: list[dict[str, Any]] = [item for item in wanted if live_by_name.get(item["name"]) != item]
    deletions = [{"name": name, "$patch": "delete"} for name in live_by_name if name not in wanted_names]
    container: dict[str, Any] = {"name": "app", "$setElementOrder/env": [{"name": i["name"]} for i in wanted]}
    if changes or deletions:
        container["env"] = changes + deletions
    return pod_spec(**{"$setElementOrder/containers": [{"name": "app"}], "containers": [container]})


ENV_NAMES = st.sampled_from(["A", "B", "C", "D", "E", "F"])
ENV_LISTS = st.lists(
    st.builds(lambda name, value: {"name": name, "value": value}, ENV_NAMES, st.sampled_from(["1", "2"])),
    unique_by=lambda item: item["name"],
    max_size=6,
)


@given(ENV_LISTS, ENV_LISTS)
@settings(deadline=None, max_examples=300)
def test_kubectl_style_patch_of_a_merge_list_yields_the_wanted_list(live: list, wanted: list) -> None:
    current = pod_spec(containers=[{"name": "app", "image": "x", "env": live}])
    patched = smp(current, env_patch(live, wanted))
    container = patched["spec"]["template"]["spec"]["containers"][0]
    assert container.get("env", []) == wanted
    assert container["image"] == "x"
    assert directive_keys(patched) == []


FINALIZER_LISTS = st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), unique=True, max_size=5)


@given(FINALIZER_LISTS, FINALIZER_LISTS)
@settings(deadline=None, max_examples=300)
def test_kubectl_style_patch_of_a_primitive_set_yields_the_wanted_list(live: list, wanted: list) -> None:
    metadata: dict[str, Any] = {"$setElementOrder/finalizers": wanted}
    added = [f for f in wanted if f not in live]
    removed = [f for f in live if f not in wanted]
    if added:
        metadata["finalizers"] = added
    if removed:
        metadata["$deleteFromPrimitiveList/finalizers"] = removed
    patched = smp({"metadata": {"finalizers": live}}, {"metadata": metadata}, ("v1", "ConfigMap"))
    assert patched["metadata"].get("finalizers", []) == wanted


@given(FINALIZER_LISTS, FINALIZER_LISTS)
@settings(deadline=None)
def test_finalizers_patch_without_order_is_a_union(live: list, patch: list) -> None:
    patched = smp(
        {"metadata": {"finalizers": live}}, {"metadata": {"finalizers": patch}}, ("v1", "ConfigMap")
    )
    result = patched["metadata"].get("finalizers", [])
    assert sorted(result) == sorted(set(live) | set(patch))
    # Items the patch names follow the patch order, the others keep their live order.
    assert [f for f in result if f in patch] == patch
    assert [f for f in result if f not in patch] == [f for f in live if f not in patch]


# --------------------------------------------------------------------------------------
# Patch metadata of built-in kinds
# --------------------------------------------------------------------------------------

REQUIRED_KINDS = [
    ("v1", "Pod"),
    ("v1", "PodTemplate"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Namespace"),
    ("v1", "Event"),
    ("v1", "ServiceAccount"),
    ("v1", "Endpoints"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "ReplicaSet"),
    ("coordination.k8s.io/v1", "Lease"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
]


@pytest.mark.parametrize(("api_version", "kind"), REQUIRED_KINDS)
def test_builtin_kinds_have_metadata_rules(api_version: str, kind: str) -> None:
    meta = patch_meta_for_builtin(api_version, kind)
    assert meta is not None
    assert meta.rule_at("metadata.finalizers").merges_list
    assert meta.rule_at("metadata.ownerReferences").merge_key == "uid"


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("kubeloop.dev/v1alpha1", "TrainingRun"),
        ("v1", "NoSuchKind"),
        ("apps/v2", "Deployment"),
        ("v1", "pod"),
    ],
)
def test_no_strategic_merge_metadata_for_custom_or_unknown_kinds(api_version: str, kind: str) -> None:
    assert patch_meta_for_builtin(api_version, kind) is None


@pytest.mark.parametrize(
    ("kind", "path", "strategy", "merge_key", "list_type", "keys"),
    [
        (
            ("v1", "Pod"),
            "spec.containers[].ports",
            ("merge",),
            "containerPort",
            "map",
            ("containerPort", "protocol"),
        ),
        (
            ("v1", "Pod"),
            "spec.topologySpreadConstraints",
            ("merge",),
            "topologyKey",
            "map",
            ("topologyKey", "whenUnsatisfiable"),
        ),
        (("v1", "Service"), "spec.ports", ("merge",), "port", "map", ("port", "protocol")),
        (("v1", "Pod"), "spec.volumes", ("merge", "retainKeys"), "name", "map", ("name",)),
        (("v1", "Pod"), "spec.tolerations", (), None, "atomic", ()),
        (("v1", "Pod"), "spec.containers[].envFrom", (), None, "atomic", ()),
        (("batch/v1", "Job"), "status.conditions", ("merge",), "type", "atomic", ()),
        (
            ("batch/v1", "CronJob"),
            "spec.jobTemplate.spec.template.spec.containers[].env",
            ("merge",),
            "name",
            "map",
            ("name",),
        ),
        (
            ("apps/v1", "Deployment"),
            "spec.template.spec.initContainers[].volumeMounts",
            ("merge",),
            "mountPath",
            "map",
            ("mountPath",),
        ),
        (("v1", "ConfigMap"), "metadata.finalizers", ("merge",), None, "set", ()),
        (("rbac.authorization.k8s.io/v1", "ClusterRole"), "rules", (), None, "atomic", ()),
    ],
)
def test_builtin_rules(
    kind: tuple[str, str], path: str, strategy: tuple, merge_key: str | None, list_type: str, keys: tuple
) -> None:
    meta = patch_meta_for_builtin(*kind)
    assert meta is not None
    rule = meta.rule_at(path)
    assert (rule.strategy, rule.merge_key, rule.list_type, rule.list_map_keys) == (
        strategy,
        merge_key,
        list_type,
        keys,
    )


def _schema_definitions() -> dict[str, Any]:
    import kubernetes_validate  # a dev dependency: its schema is the reference here
    schema_file = (
        Path(kubernetes_validate.__file__).parent
        / "kubernetes-json-schema"
        / "v1.37.0-local"
        / "_definitions.json"
    )
    assert schema_file.exists(), f"no Kubernetes 1.37 schema at {schema_file} (kubernetes-validate >= 1.37)"
    return json.loads(schema_file.read_text())["$defs"]


def _definition_of(definitions: dict[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    group, _, version = api_version.rpartition("/")
    for definition in definitions.values():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            if (gvk["group"], gvk["version"], gvk["kind"]) == (group, version, kind):
                return definition
    raise AssertionError(f"no OpenAPI definition for {api_version} {kind}")


def _normal(annotations: dict[str, Any], inside_atomic_map: bool) -> tuple:
    """What matters of a field's merge annotations, for comparison with a FieldRule."""
    strategy = tuple(sorted(filter(None, annotations.get("x-kubernetes-patch-strategy", "").split(","))))
    list_type = annotations.get("x-kubernetes-list-type")
    significant_list = list_type if list_type in ("set", "map") and not inside_atomic_map else None
    keys = tuple(annotations.get("x-kubernetes-list-map-keys", ())) if significant_list == "map" else ()
    atomic_map = annotations.get("x-kubernetes-map-type") == "atomic" and not inside_atomic_map
    return (strategy, annotations.get("x-kubernetes-patch-merge-key"), significant_list, keys, atomic_map)


def _rule_normal(rule: FieldRule) -> tuple:
    significant_list = rule.list_type if rule.list_type in ("set", "map") else None
    return (
        tuple(sorted(rule.strategy)),
        rule.merge_key,
        significant_list,
        rule.list_map_keys,
        rule.map_type == "atomic",
    )


def _schema_rules(definitions: dict[str, Any], schema: dict[str, Any]) -> dict[str, tuple[tuple, bool]]:
    """path -> (normalised annotations, is a list) for every field reachable where merging happens."""
    found: dict[str, tuple[tuple, bool]] = {}

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        merged = dict(node)
        while isinstance(merged.get("$ref"), str):
            target = definitions[merged.pop("$ref").rsplit("/", 1)[-1]]
            merged = {**target, **merged}
        return merged

    def walk(node: dict[str, Any], path: str, inside_atomic_map: bool, depth: int) -> None:
        node = resolve(node)
        types = node.get("type", [])
        is_list = "array" in (types if isinstance(types, list) else [types])
        normal = _normal(node, inside_atomic_map)
        if path:
            found[path] = (normal, is_list)
        if depth > 16:
            return
        strategy, _, list_type, _, atomic_map = normal
        below_atomic = inside_atomic_map or node.get("x-kubernetes-map-type") == "atomic"
        for name, sub in (node.get("properties") or {}).items():
            walk(sub, f"{path}.{name}" if path else name, below_atomic, depth + 1)
        items = node.get("items")
        if is_list and isinstance(items, dict) and ("merge" in strategy or list_type):
            walk(items, f"{path}[]", below_atomic, depth + 1)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and not atomic_map:
            walk(extra, f"{path}.*", below_atomic, depth + 1)

    walk(schema, "", False, 0)
    return found


@pytest.mark.parametrize(
    ("api_version", "kind"),
    REQUIRED_KINDS
    + [
        ("v1", "Node"),
        ("v1", "PersistentVolumeClaim"),
        ("policy/v1", "PodDisruptionBudget"),
        ("networking.k8s.io/v1", "Ingress"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("events.k8s.io/v1", "Event"),
    ],
)
def test_builtin_tables_match_the_kubernetes_1_37_openapi_schema(api_version: str, kind: str) -> None:
    definitions = _schema_definitions()
    schema_rules = _schema_rules(definitions, _definition_of(definitions, api_version, kind))
    meta = patch_meta_for_builtin(api_version, kind)
    assert meta is not None
    # Every field the schema says merges non-trivially is described, and alike.
    default = _rule_normal(FieldRule())
    for path, (normal, _) in schema_rules.items():
        if normal != default:
            assert _rule_normal(meta.rule_at(path)) == normal, f"{kind} {path}"
    # Every row of the table is a real field with those very annotations (explicit atomic
    # rows must be lists that merge in neither flavour).
    for path, rule in meta.described_paths():
        assert path in schema_rules, f"{kind} {path}: not a field reachable for merging"
        normal, is_list = schema_rules[path]
        assert _rule_normal(rule) == normal, f"{kind} {path}"
        if rule.list_type == "atomic":
            assert is_list, f"{kind} {path} is not a list"


# --------------------------------------------------------------------------------------
# Server-side apply
# --------------------------------------------------------------------------------------

DEPLOYMENT_META = patch_meta_for_builtin("apps/v1", "Deployment")
JOB_META = patch_meta_for_builtin("batch/v1", "Job")
CONFIGMAP_META = patch_meta_for_builtin("v1", "ConfigMap")


def test_server_side_apply_creates_when_absent() -> None:
    assert DEPLOYMENT_META is not None
    config = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "w"},
        "spec": {"replicas": 1},
    }
    created = ssa(None, config, DEPLOYMENT_META)
    assert created == config
    created["spec"]["replicas"] = 5
    assert config["spec"]["replicas"] == 1  # no aliasing


def test_server_side_apply_field_removed_from_config_is_kept_the_documented_gap() -> None:
    # Real SSA would remove `b` (owned only by this manager); without managedFields we keep it.
    assert CONFIGMAP_META is not None
    live = ssa(None, {"data": {"a": "1", "b": "2"}}, CONFIGMAP_META)
    assert ssa(live, {"data": {"a": "1"}}, CONFIGMAP_META) == {"data": {"a": "1", "b": "2"}}


SSA_CASES: list[tuple[str, tuple[str, str], dict, dict, dict]] = [
    (
        "maps merge recursively, scalars replaced",
        ("v1", "ConfigMap"),
        {"metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"x": "1"}},
        {"metadata": {"name": "c", "labels": {"b": "2"}}, "data": {"x": "2"}},
        {"metadata": {"name": "c", "labels": {"a": "1", "b": "2"}}, "data": {"x": "2"}},
    ),
    (
        "null is stored as null",
        ("v1", "ConfigMap"),
        {"data": {"x": "1"}},
        {"data": {"x": None}},
        {"data": {"x": None}},
    ),
    (
        "containers merge by name",
        ("apps/v1", "Deployment"),
        pod_spec(
            containers=[
                {"name": "a", "image": "a:1", "imagePullPolicy": "Always"},
                {"name": "b", "image": "b"},
            ]
        ),
        pod_spec(containers=[{"name": "a", "image": "a:2"}]),
        pod_spec(
            containers=[
                {"name": "a", "image": "a:2", "imagePullPolicy": "Always"},
                {"name": "b", "image": "b"},
            ]
        ),
    ),
    (
        "ports merge by containerPort and protocol, protocol defaults to TCP",
        ("apps/v1", "Deployment"),
        pod_spec(
            containers=[{"name": "a", "ports": [{"containerPort": 53, "protocol": "TCP", "name": "dns"}]}]
        ),
        pod_spec(
            containers=[
                {
                    "name": "a",
                    "ports": [
                        {"containerPort": 53, "hostPort": 53},
                        {"containerPort": 53, "protocol": "UDP"},
                    ],
                }
            ]
        ),
        pod_spec(
            containers=[
                {
                    "name": "a",
                    "ports": [
                        {"containerPort": 53, "protocol": "TCP", "name": "dns", "hostPort": 53},
                        {"containerPort": 53, "protocol": "UDP"},
                    ],
                }
            ]
        ),
    ),
    (
        "finalizers merge as a set",
        ("v1", "ConfigMap"),
        {"metadata": {"finalizers": ["a", "b"]}},
        {"metadata": {"finalizers": ["c", "a"]}},
        {"metadata": {"finalizers": ["c", "a", "b"]}},
    ),
    (
        "ownerReferences merge by uid, each reference atomic",
        ("v1", "ConfigMap"),
        {"metadata": {"ownerReferences": [{"uid": "1", "name": "a", "controller": True}]}},
        {"metadata": {"ownerReferences": [{"uid": "1", "name": "b"}]}},
        {"metadata": {"ownerReferences": [{"uid": "1", "name": "b"}]}},
    ),
    (
        "atomic lists are replaced",
        ("apps/v1", "Deployment"),
        pod_spec(tolerations=[{"key": "a"}, {"key": "b"}], containers=[{"name": "a", "args": ["1", "2"]}]),
        pod_spec(tolerations=[{"key": "c"}], containers=[{"name": "a", "args": ["3"]}]),
        pod_spec(tolerations=[{"key": "c"}], containers=[{"name": "a", "args": ["3"]}]),
    ),
    (
        "job status conditions are atomic for apply",
        ("batch/v1", "Job"),
        {"status": {"conditions": [{"type": "Suspended", "status": "True"}]}},
        {"status": {"conditions": [{"type": "Complete", "status": "True"}]}},
        {"status": {"conditions": [{"type": "Complete", "status": "True"}]}},
    ),
    (
        "atomic maps are replaced",
        ("apps/v1", "Deployment"),
        {
            "spec": {
                "selector": {"matchLabels": {"a": "1"}},
                "template": {"spec": {"nodeSelector": {"x": "1"}}},
            }
        },
        {
            "spec": {
                "selector": {"matchLabels": {"b": "2"}},
                "template": {"spec": {"nodeSelector": {"y": "2"}}},
            }
        },
        {
            "spec": {
                "selector": {"matchLabels": {"b": "2"}},
                "template": {"spec": {"nodeSelector": {"y": "2"}}},
            }
        },
    ),
    (
        "applied order wins, live-only items stay in place",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "x"}, {"name": "a"}, {"name": "y"}, {"name": "b"}]),
        pod_spec(containers=[{"name": "b"}, {"name": "new"}, {"name": "a"}]),
        pod_spec(containers=[{"name": "x"}, {"name": "y"}, {"name": "b"}, {"name": "new"}, {"name": "a"}]),
    ),
    (
        "a live-only item stays before new ones",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a"}, {"name": "b"}]),
        pod_spec(containers=[{"name": "a"}, {"name": "c"}]),
        pod_spec(containers=[{"name": "a"}, {"name": "b"}, {"name": "c"}]),
    ),
    (
        "reordering shared items",
        ("apps/v1", "Deployment"),
        pod_spec(containers=[{"name": "a"}, {"name": "b"}, {"name": "c"}]),
        pod_spec(containers=[{"name": "c"}, {"name": "a"}]),
        pod_spec(containers=[{"name": "b"}, {"name": "c"}, {"name": "a"}]),
    ),
    (
        "strategic directives mean nothing to apply",
        ("v1", "ConfigMap"),
        {"data": {"a": "1"}},
        {"data": {"$patch": "x"}},
        {"data": {"a": "1", "$patch": "x"}},
    ),
]


@pytest.mark.parametrize(
    ("kind", "live", "applied", "expected"), [c[1:] for c in SSA_CASES], ids=[c[0] for c in SSA_CASES]
)
def test_server_side_apply(kind: tuple[str, str], live: dict, applied: dict, expected: dict) -> None:
    meta = patch_meta_for_builtin(*kind)
    assert meta is not None
    assert ssa(live, applied, meta) == expected


SSA_ERRORS: list[tuple[str, dict | None, dict, str]] = [
    (
        "duplicate keys in the configuration",
        None,
        pod_spec(containers=[{"name": "a"}, {"name": "a"}]),
        'spec.template.spec.containers: duplicate entries for key [name="a"] in the applied configuration',
    ),
    (
        "duplicate keys in the live object",
        pod_spec(containers=[{"name": "a"}, {"name": "a"}]),
        pod_spec(containers=[{"name": "b"}]),
        'spec.template.spec.containers: duplicate entries for key [name="a"] in the live object',
    ),
    (
        "duplicate ports once the protocol default applies",
        None,
        pod_spec(
            containers=[
                {"name": "a", "ports": [{"containerPort": 1}, {"containerPort": 1, "protocol": "TCP"}]}
            ]
        ),
        'spec.template.spec.containers[0].ports: duplicate entries for key [containerPort=1,protocol="TCP"]',
    ),
    (
        "an item missing a key without default",
        pod_spec(containers=[{"name": "a"}]),
        pod_spec(containers=[{"image": "a"}]),
        "spec.template.spec.containers[0]: associative list with keys has an element that omits key field 'name'",
    ),
    (
        "a list-map item that is not an object",
        None,
        pod_spec(containers=["a"]),
        "spec.template.spec.containers[0]: items of a list-map (keyed by name) must be objects, found string",
    ),
    (
        "a set holding objects",
        None,
        {"metadata": {"finalizers": [{"a": 1}]}},
        "metadata.finalizers[0]: a set (x-kubernetes-list-type: set) holds scalars, found object",
    ),
    (
        "not a list where a list is expected",
        pod_spec(containers=[]),
        pod_spec(containers={"name": "a"}),
        "spec.template.spec.containers: expected list, got object",
    ),
    (
        "not a list inside a new subtree",
        None,
        pod_spec(tolerations="all"),
        "spec.template.spec.tolerations: expected list, got string",
    ),
]


@pytest.mark.parametrize(
    ("live", "applied", "message"), [c[1:] for c in SSA_ERRORS], ids=[c[0] for c in SSA_ERRORS]
)
def test_server_side_apply_errors_name_the_path(live: dict | None, applied: dict, message: str) -> None:
    assert DEPLOYMENT_META is not None
    with pytest.raises(PatchError, match=_escaped(message)) as raised:
        ssa(live, applied, DEPLOYMENT_META)
    assert raised.value.path in str(raised.value)


def test_server_side_apply_config_must_be_an_object() -> None:
    with pytest.raises(PatchError, match="applied configuration must be a JSON object"):
        apply_server_side({}, [], PatchMeta())  # type: ignore[arg-type]


CONTAINERS = st.lists(
    st.builds(lambda n, i: {"name": n, "image": i}, st.sampled_from("abcdefg"), st.sampled_from(["1", "2"])),
    unique_by=lambda c: c["name"],
    max_size=6,
)


@given(CONTAINERS, CONTAINERS)
@settings(deadline=None, max_examples=300)
def test_server_side_apply_list_map_properties(live: list, applied: list) -> None:
    assert DEPLOYMENT_META is not None
    result = ssa(pod_spec(containers=live), pod_spec(containers=applied), DEPLOYMENT_META)
    merged = result["spec"]["template"]["spec"]["containers"]
    names = [c["name"] for c in merged]
    # Every item once; applied items with their applied content, in applied order.
    assert sorted(names) == sorted({c["name"] for c in live + applied})
    assert [c for c in merged if c["name"] in {a["name"] for a in applied}] == applied
    # Live-only items keep their relative order.
    applied_names = {a["name"] for a in applied}
    assert [n for n in names if n not in applied_names] == [
        c["name"] for c in live if c["name"] not in applied_names
    ]
    # Applying the same configuration again changes nothing.
    assert ssa(result, pod_spec(containers=applied), DEPLOYMENT_META) == result


# --------------------------------------------------------------------------------------
# CRD schemas
# --------------------------------------------------------------------------------------

CRD_SCHEMA = {
    "type": "object",
    "properties": {
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "properties": {
                "gates": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["metric", "stage"],
                    "items": {
                        "type": "object",
                        "properties": {
                            "metric": {"type": "string"},
                            "stage": {"type": "string", "default": "eval"},
                            "min": {"type": "number"},
                            "tags": {
                                "type": "array",
                                "x-kubernetes-list-type": "set",
                                "items": {"type": "string"},
                            },
                        },
                    },
                },
                "args": {"type": "array", "items": {"type": "string"}},
                "owners": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "resources": {
                    "type": "object",
                    "x-kubernetes-map-type": "atomic",
                    "properties": {"cpu": {"type": "string"}},
                },
                "params": {
                    "type": "object",
                    "additionalProperties": {"type": "object", "x-kubernetes-map-type": "atomic"},
                },
                "matrix": {
                    "type": "array",
                    "x-kubernetes-list-type": "atomic",
                    "items": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "integer"}},
                },
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        },
    },
}


def test_schema_meta_reads_list_and_map_types() -> None:
    meta = patch_meta_from_schema(CRD_SCHEMA)
    gates = meta.rule_at("spec.gates")
    assert (gates.list_type, gates.list_map_keys, gates.default_for("stage")) == (
        "map",
        ("metric", "stage"),
        "eval",
    )
    assert meta.rule_at("spec.gates[].tags").list_type == "set"
    assert meta.rule_at("spec.args").list_type is None  # atomic, the default
    assert meta.rule_at("spec.owners").list_type == "set"
    assert meta.rule_at("spec.resources").map_type == "atomic"
    assert meta.rule_at("spec.params.anything").map_type == "atomic"
    assert meta.rule_at("spec.matrix[]").list_type == "set"
    # ObjectMeta rules apply to custom resources too.
    assert meta.rule_at("metadata.finalizers").list_type == "set"
    assert meta.rule_at("metadata.ownerReferences").list_map_keys == ("uid",)
    # No strategic merge metadata for custom resources.
    assert not meta.rule_at("spec.gates").merges_list


def test_server_side_apply_with_a_crd_schema() -> None:
    meta = patch_meta_from_schema(CRD_SCHEMA)
    live = {
        "metadata": {"name": "r", "finalizers": ["kopf"]},
        "spec": {
            "gates": [
                {"metric": "acc", "min": 0.5, "tags": ["a"]},
                {"metric": "acc", "stage": "prod", "min": 0.9},
            ],
            "args": ["a", "b"],
            "owners": ["x"],
            "resources": {"cpu": "1", "memory": "1Gi"},
            "params": {"p": {"a": 1, "b": 2}},
            "free": {"x": {"y": 1}},
        },
    }
    applied = {
        "metadata": {"name": "r", "finalizers": ["mine"]},
        "spec": {
            "gates": [{"metric": "acc", "stage": "eval", "min": 0.7, "tags": ["b"]}],
            "args": ["c"],
            "owners": ["y", "x"],
            "resources": {"cpu": "2"},
            "params": {"p": {"a": 3}},
            "free": {"x": {"z": 2}},
        },
    }
    assert ssa(live, applied, meta) == {
        "metadata": {"name": "r", "finalizers": ["kopf", "mine"]},
        "spec": {
            "gates": [
                {"metric": "acc", "stage": "eval", "min": 0.7, "tags": ["a", "b"]},
                {"metric": "acc", "stage": "prod", "min": 0.9},
            ],
            "args": ["c"],
            "owners": ["y", "x"],
            "resources": {"cpu": "2"},
            "params": {"p": {"a": 3}},
            "free": {"x": {"y": 1, "z": 2}},
        },
    }


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"type": "object", "properties": {"spec": {"x-kubernetes-list-type": "bag"}}},
            "spec: unknown x-kubernetes-list-type 'bag'",
        ),
        (
            {
                "properties": {
                    "spec": {"properties": {"l": {"type": "array", "x-kubernetes-list-type": "map"}}}
                }
            },
            "spec.l: x-kubernetes-list-type: map needs x-kubernetes-list-map-keys",
        ),
        (
            {"properties": {"m": {"x-kubernetes-map-type": "weird"}}},
            "m: unknown x-kubernetes-map-type 'weird'",
        ),
    ],
)
def test_schema_meta_errors_name_the_path(schema: dict, message: str) -> None:
    with pytest.raises(PatchError, match=_escaped(message)):
        patch_meta_from_schema(schema)


def test_patch_meta_from_table_paths() -> None:
    meta = PatchMeta.from_table(
        {"a.b[].c": FieldRule(merge_key="k", strategy=("merge",)), "m.*.x": FieldRule(map_type="atomic")}
    )
    assert meta.rule_at("a.b[].c").merge_key == "k"
    assert meta.field("a").field("b").element().field("c").rule.merges_list
    assert meta.rule_at("m.anykey.x").map_type == "atomic"
    assert meta.rule_at("unknown.path") == FieldRule()
    assert [path for path, _ in meta.described_paths()] == ["a.b[].c", "m.*.x"]
    with pytest.raises(ValueError, match="grafted"):
        PatchMeta.from_table({"a": PatchMeta(), "a.b": FieldRule()})
