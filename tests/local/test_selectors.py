"""Tests of kubeloop.local.selectors: label and field selectors as kube-apiserver reads them.

The grammar, the edge cases (``x in ()`` is the empty value, ``!a=b`` is an error,
``a>-1`` is refused because ``-1`` is not a valid label value) and the error wording
follow k8s.io/apimachinery's ``labels.Parse``, ``metav1.LabelSelectorAsSelector`` and
``fields.ParseSelector``.
"""

from __future__ import annotations

import re
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeloop.local.selectors import (
    FieldRequirement,
    FieldSelector,
    LabelRequirement,
    LabelSelector,
    SelectorError,
    label_selector_from_spec,
    parse_field_selector,
    parse_label_selector,
    supported_field_selectors,
)

# --------------------------------------------------------------------------------------
# label selectors: parsing and matching
# --------------------------------------------------------------------------------------

LABELS = {"app": "web", "tier": "front", "example.com/team": "ml", "replicas": "3", "empty": ""}

# (selector, matches LABELS?)
MATCH_CASES = [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app=db", False),
    ("app!=db", True),
    ("app!=web", False),
    ("missing!=x", True),  # != matches objects without the label
    ("app in (web,db)", True),
    ("app in (db)", False),
    ("missing in (x)", False),
    ("app notin (db,cache)", True),
    ("app notin (web)", False),
    ("missing notin (x)", True),
    ("app", True),
    ("missing", False),
    ("!missing", True),
    ("!app", False),
    ("replicas>2", True),
    ("replicas>3", False),
    ("replicas<4", True),
    ("replicas<3", False),
    ("app>1", False),  # a label that is not an integer matches neither > nor <
    ("missing<100", False),
    ("example.com/team=ml", True),
    ("empty=", True),
    ("empty in ()", True),  # `()` is the set holding the empty value
    ("empty in (,x)", True),
    ("app in (,web)", True),
    ("app=web,tier=front", True),
    ("app=web,tier=back", False),
    ("  app = web ,\ttier\n!= back  ", True),
    ("app=web,!missing,replicas>1,tier in (front)", True),
    ("in in (in)", False),  # keywords are identifiers where a key or value is expected
]


@pytest.mark.parametrize(("text", "expected"), MATCH_CASES)
def test_label_selector_matching(text: str, expected: bool) -> None:
    assert parse_label_selector(text).matches(LABELS) is expected


def test_label_selector_matches_objects_without_labels() -> None:
    assert parse_label_selector("").matches(None)
    assert parse_label_selector("!a").matches({})
    assert not parse_label_selector("a").matches(None)


PARSE_CASES = [
    ("a=b", [LabelRequirement("a", "=", ("b",))]),
    ("a==b", [LabelRequirement("a", "==", ("b",))]),
    ("a!=b", [LabelRequirement("a", "!=", ("b",))]),
    ("a in (z,y,y)", [LabelRequirement("a", "in", ("y", "z"))]),
    ("a notin (x)", [LabelRequirement("a", "notin", ("x",))]),
    ("a", [LabelRequirement("a", "exists")]),
    ("!a", [LabelRequirement("a", "!")]),
    ("a>1", [LabelRequirement("a", "gt", ("1",))]),
    ("a<10", [LabelRequirement("a", "lt", ("10",))]),
    ("a=", [LabelRequirement("a", "=", ("",))]),
    ("a in ()", [LabelRequirement("a", "in", ("",))]),
    ("a in (x,)", [LabelRequirement("a", "in", ("", "x"))]),
    ("a in (,,x)", [LabelRequirement("a", "in", ("", "x"))]),
    ("in notin (in,notin)", [LabelRequirement("in", "notin", ("in", "notin"))]),
    ("b=1,a=2", [LabelRequirement("a", "=", ("2",)), LabelRequirement("b", "=", ("1",))]),  # sorted by key
]


@pytest.mark.parametrize(("text", "requirements"), PARSE_CASES)
def test_label_selector_parse(text: str, requirements: list[LabelRequirement]) -> None:
    assert parse_label_selector(text).requirements == tuple(requirements)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("b = 1 , a in (y, x)", "a in (x,y),b=1"),
        ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
        ("!a,b==c,d!=e,f>1,g<2", "!a,b==c,d!=e,f>1,g<2"),
        ("", ""),
    ],
)
def test_label_selector_canonical_string(text: str, canonical: str) -> None:
    selector = parse_label_selector(text)
    assert str(selector) == canonical
    assert parse_label_selector(canonical) == selector


LONG_NAME = "a" * 64
LONG_PREFIX = ("a" * 63 + ".") * 4 + "b/x"  # 257 characters before the slash

# (selector, substring of the error); messages are Kubernetes' own.
PARSE_ERRORS = [
    (",a", "found ',', expected: !, identifier, or 'end of string'"),
    ("a,", "found '', expected: identifier after ','"),
    ("a,,b", "found ',', expected: identifier after ','"),
    ("a b", "unable to parse requirement: found 'b', expected: '=', '!=', '==', 'in', notin'"),
    ("a=b=c", "found '=', expected: ',' or 'end of string'"),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("!a=b", "found '=', expected: ',' or 'end of string'"),
    ("a==!b", "unable to parse requirement: found '!', expected: identifier"),
    ("a in b", "unable to parse requirement: found 'b' expected: '('"),
    ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
    ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
    ("a in (b,=)", "unable to parse requirement: found '=', expected: ',', or identifier"),
    ("a>=1", "unable to parse requirement: found '=', expected: identifier"),
    ("=a", "found '=', expected: !, identifier, or 'end of string'"),
    ("!", "unable to parse requirement: found '', expected: identifier"),
    (
        "a>x",
        "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer",
    ),
    ("a>", "for 'Gt', 'Lt' operators, the value must be an integer"),
    ("a<99999999999999999999", "for 'Gt', 'Lt' operators, the value must be an integer"),
    ("a>-1", 'values[0][a]: Invalid value: "-1": a valid label must be an empty string or consist of'),
    ("a=-b", 'values[0][a]: Invalid value: "-b": a valid label must be an empty string'),
    (f"a={'v' * 64}", "must be no more than 63 characters"),
    ("a=b/c", 'values[0][a]: Invalid value: "b/c"'),
    ("-a=b", 'Invalid value: "-a": name part must consist of alphanumeric characters'),
    (f"{LONG_NAME}=b", f'Invalid value: "{LONG_NAME}": name part must be no more than 63 characters'),
    ("Example.com/a=b", "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric"),
    (f"{LONG_PREFIX}=b", "prefix part must be no more than 253 characters"),
    ("/a=b", "prefix part must be non-empty"),
    ("a/=b", "name part must be non-empty"),
    ("a/b/c=d", "a qualified name must consist of alphanumeric characters"),
    ("a$=b", 'Invalid value: "a$": name part must consist of'),
]


@pytest.mark.parametrize(("text", "message"), PARSE_ERRORS)
def test_label_selector_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError, match=re.escape(message)):
        parse_label_selector(text)


def test_label_key_error_quotes_the_regex_and_examples() -> None:
    with pytest.raises(SelectorError) as raised:
        parse_label_selector("-a")
    assert str(raised.value) == (
        'unable to parse requirement: Invalid value: "-a": name part must consist of alphanumeric characters, '
        "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  "
        "or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    )


def test_label_selector_limits_are_inclusive() -> None:
    prefix = ("a" * 62 + ".") * 4 + "b"  # 253 characters
    assert len(prefix) == 253
    key = f"{prefix}/{'n' * 63}"
    selector = parse_label_selector(f"{key}={'v' * 63}")
    assert selector.matches({key: "v" * 63})


def test_label_selector_must_be_a_string() -> None:
    with pytest.raises(SelectorError, match="must be a string"):
        parse_label_selector(None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# metav1.LabelSelector objects
# --------------------------------------------------------------------------------------


def test_null_selector_matches_nothing_and_empty_selector_matches_everything() -> None:
    nothing = label_selector_from_spec(None)
    assert nothing.nothing and not nothing.everything
    assert not nothing.matches({})
    assert not nothing.matches(LABELS)
    everything = label_selector_from_spec({})
    assert everything.everything
    assert everything.matches({}) and everything.matches(LABELS)
    assert label_selector_from_spec({"matchLabels": {}, "matchExpressions": []}).everything


SPEC_CASES: list[tuple[dict[str, Any], bool]] = [
    ({"matchLabels": {"app": "web"}}, True),
    ({"matchLabels": {"app": "web", "tier": "back"}}, False),
    ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]}]}, True),
    ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, False),
    ({"matchExpressions": [{"key": "gone", "operator": "DoesNotExist", "values": []}]}, True),
    (
        {
            "matchLabels": {"example.com/team": "ml"},
            "matchExpressions": [
                {"key": "app", "operator": "In", "values": ["web"]},
                {"key": "gone", "operator": "DoesNotExist"},
            ],
        },
        True,
    ),
]


@pytest.mark.parametrize(("spec", "expected"), SPEC_CASES)
def test_label_selector_from_spec(spec: dict[str, Any], expected: bool) -> None:
    assert label_selector_from_spec(spec).matches(LABELS) is expected


def test_label_selector_from_spec_equals_the_parsed_string() -> None:
    spec = {
        "matchLabels": {"b": "2"},
        "matchExpressions": [
            {"key": "a", "operator": "In", "values": ["y", "x"]},
            {"key": "c", "operator": "Exists"},
        ],
    }
    selector = label_selector_from_spec(spec)
    assert str(selector) == "a in (x,y),b=2,c"
    assert parse_label_selector(str(selector)) == selector


SPEC_ERRORS = [
    (
        {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
        'matchExpressions[0].operator: "Gt" is not a valid label selector operator',
    ),
    (
        {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
        "matchExpressions[0].values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty",
    ),
    (
        {"matchExpressions": [{"key": "a", "operator": "NotIn"}]},
        "for 'in', 'notin' operators, values set can't be empty",
    ),
    (
        {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
        "matchExpressions[0].values: Invalid value: ['x']: values set must be empty for exists and does not exist",
    ),
    (
        {"matchExpressions": [{"key": "A_/x", "operator": "Exists"}]},
        'matchExpressions[0].key: Invalid value: "A_/x": prefix part',
    ),
    (
        {"matchExpressions": [{"key": 3, "operator": "Exists"}]},
        "matchExpressions[0].key: Invalid value: 3: a label key must be a string",
    ),
    (
        {"matchExpressions": [{"key": "a", "operator": "In", "values": ["-x"]}]},
        'matchExpressions[0].values[0][a]: Invalid value: "-x"',
    ),
    ({"matchExpressions": ["a"]}, "matchExpressions[0]: must be an object"),
    ({"matchLabels": {"bad key": "x"}}, 'matchLabels[bad key].key: Invalid value: "bad key"'),
    ({"matchLabels": {"a": "x y"}}, 'matchLabels[a].values[0][a]: Invalid value: "x y"'),
    ({"matchLabels": {"a": 1}}, "matchLabels[a]: Invalid value: 1: label values must be strings"),
    ({"matchLabels": ["a"]}, "matchLabels: must be an object"),
    ({"matchExpressions": {"a": 1}}, "matchExpressions: must be a list"),
]


@pytest.mark.parametrize(("spec", "message"), SPEC_ERRORS)
def test_label_selector_from_spec_errors_name_the_entry(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SelectorError, match=re.escape(message)):
        label_selector_from_spec(spec)


def test_label_selector_from_spec_reports_every_problem_of_a_requirement() -> None:
    with pytest.raises(SelectorError) as raised:
        label_selector_from_spec({"matchExpressions": [{"key": "-a", "operator": "In", "values": []}]})
    message = str(raised.value)
    assert (
        message.startswith("[") and "key: Invalid value" in message and "values set can't be empty" in message
    )


# --------------------------------------------------------------------------------------
# label selectors: properties
# --------------------------------------------------------------------------------------

NAME_CHARS = string.ascii_letters + string.digits
label_names = st.builds(
    lambda first, middle, last: first + middle + last if middle or last else first,
    st.sampled_from(NAME_CHARS),
    st.text(NAME_CHARS + "-_.", max_size=5),
    st.sampled_from(NAME_CHARS) | st.just(""),
).filter(lambda n: n[-1] in NAME_CHARS)
prefixes = st.lists(
    st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=4), min_size=1, max_size=3
).map(".".join)
label_keys = st.one_of(label_names, st.builds(lambda p, n: f"{p}/{n}", prefixes, label_names))
label_values = st.one_of(st.just(""), label_names, st.sampled_from(["0", "1", "2", "10"]))

requirements = st.one_of(
    st.builds(
        lambda k, op, v: LabelRequirement(k, op, (v,)),
        label_keys,
        st.sampled_from(["=", "==", "!="]),
        label_values,
    ),
    st.builds(
        lambda k, op, vs: LabelRequirement(k, op, tuple(sorted(set(vs)))),
        label_keys,
        st.sampled_from(["in", "notin"]),
        st.lists(label_values, min_size=1, max_size=3),
    ),
    st.builds(lambda k, op: LabelRequirement(k, op), label_keys, st.sampled_from(["exists", "!"])),
    st.builds(
        lambda k, op, n: LabelRequirement(k, op, (str(n),)),
        label_keys,
        st.sampled_from(["gt", "lt"]),
        st.integers(0, 20),
    ),
)
selectors = st.lists(requirements, max_size=4).map(lambda rs: LabelSelector(tuple(sorted(rs))))
label_sets = st.dictionaries(label_keys, label_values, max_size=4)


@given(selectors)
@settings(deadline=None, max_examples=300)
def test_label_selector_string_round_trip(selector: LabelSelector) -> None:
    assert parse_label_selector(str(selector)) == selector


@given(selectors, label_sets)
@settings(deadline=None, max_examples=300)
def test_label_selector_matching_survives_the_round_trip(
    selector: LabelSelector, labels: dict[str, str]
) -> None:
    assert parse_label_selector(str(selector)).matches(labels) == selector.matches(labels)
    assert selector.matches(labels) == all(r.matches(labels) for r in selector.requirements)


@given(label_sets)
@settings(deadline=None)
def test_set_based_selector_of_a_label_set_matches_it(labels: dict[str, str]) -> None:
    spec = {"matchLabels": labels}
    assert label_selector_from_spec(spec).matches(labels)
    assert label_selector_from_spec(spec).matches({**labels, "extra": "x"})


@given(label_keys, label_values, label_sets)
@settings(deadline=None)
def test_equality_and_inequality_are_complements(key: str, value: str, labels: dict[str, str]) -> None:
    assert parse_label_selector(f"{key}={value}").matches(labels) != parse_label_selector(
        f"{key}!={value}"
    ).matches(labels)
    assert parse_label_selector(key).matches(labels) != parse_label_selector(f"!{key}").matches(labels)


@given(st.text(max_size=12))
@settings(deadline=None)
def test_label_selector_parser_never_fails_unexpectedly(text: str) -> None:
    try:
        selector = parse_label_selector(text)
    except SelectorError:
        return
    assert parse_label_selector(str(selector)) == selector


# --------------------------------------------------------------------------------------
# field selectors
# --------------------------------------------------------------------------------------

POD_FIELDS = supported_field_selectors("v1", "Pod")

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "trainer-0", "namespace": "ml"},
    "spec": {"nodeName": "local", "restartPolicy": "Never", "serviceAccountName": "runner"},
    "status": {"phase": "Running", "podIPs": [{"ip": "127.0.0.1"}]},
}

FIELD_MATCH_CASES = [
    ("", True),
    ("metadata.name=trainer-0", True),
    ("metadata.name==trainer-0", True),
    ("metadata.name!=trainer-0", False),
    ("metadata.namespace=ml,status.phase=Running", True),
    ("metadata.namespace=ml,status.phase=Pending", False),
    ("status.phase!=Succeeded", True),
    ("spec.nodeName=local", True),
    ("spec.restartPolicy=Never", True),
    ("spec.schedulerName=", True),  # absent reads as empty
    ("spec.serviceAccountName=runner", True),
    ("spec.hostNetwork=false", True),  # defaults to false
    ("spec.hostNetwork!=true", True),
    ("status.podIP=127.0.0.1", True),
    ("status.nominatedNodeName=", True),
    (",,metadata.name=trainer-0,", True),  # empty terms are ignored
]


@pytest.mark.parametrize(("text", "expected"), FIELD_MATCH_CASES)
def test_field_selector_matching_pods(text: str, expected: bool) -> None:
    assert parse_field_selector(text, POD_FIELDS).matches(POD) is expected


def test_pod_field_values_follow_the_pod_registry() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "spec": {"hostNetwork": True}, "status": {"podIP": "10.0.0.1"}}
    assert parse_field_selector("spec.hostNetwork=true,status.podIP=10.0.0.1", POD_FIELDS).matches(pod)


@pytest.mark.parametrize(
    ("api_version", "kind", "obj", "text"),
    [
        ("batch/v1", "Job", {"status": {"succeeded": 2}}, "status.successful=2"),
        ("batch/v1", "Job", {"status": {}}, "status.successful=0"),
        ("v1", "Secret", {"type": "kubernetes.io/tls"}, "type=kubernetes.io/tls"),
        ("v1", "Namespace", {"status": {"phase": "Terminating"}}, "status.phase=Terminating"),
        ("v1", "Node", {"spec": {}}, "spec.unschedulable=false"),
        ("apps/v1", "ReplicaSet", {"status": {"replicas": 3}}, "status.replicas=3"),
        (
            "v1",
            "Event",
            {
                "involvedObject": {"kind": "TrainingRun", "name": "r", "uid": "u"},
                "reason": "Created",
                "type": "Normal",
            },
            "involvedObject.kind=TrainingRun,involvedObject.name=r,involvedObject.uid=u,reason=Created,type=Normal",
        ),
        ("v1", "Event", {"source": {"component": "kopf"}}, "source=kopf"),
        (
            "v1",
            "Event",
            {"source": {}, "reportingComponent": "kubelet"},
            "source=kubelet,reportingComponent=kubelet",
        ),
    ],
)
def test_kind_specific_field_values(api_version: str, kind: str, obj: dict[str, Any], text: str) -> None:
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}, **obj}
    selector = parse_field_selector(text, supported_field_selectors(api_version, kind))
    assert selector.matches(obj)
    negated = text.split(",")[0].replace("=", "!=", 1)
    assert not parse_field_selector(negated, supported_field_selectors(api_version, kind)).matches(obj)


def test_crd_selectable_fields_are_read_at_their_path() -> None:
    supported = supported_field_selectors(
        "kubeloop.dev/v1alpha1", "TrainingRun", [".spec.framework", ".status.epochs", ".spec.gpu", ".source"]
    )
    assert supported == {
        "metadata.name",
        "metadata.namespace",
        "spec.framework",
        "status.epochs",
        "spec.gpu",
        "source",
    }
    run = {
        "apiVersion": "kubeloop.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "r"},
        "spec": {"framework": "torch", "gpu": False},
        "status": {"epochs": 3},
        "source": "s3",
    }
    assert parse_field_selector(
        "spec.framework=torch,status.epochs=3,spec.gpu=false,source=s3", supported
    ).matches(run)
    assert parse_field_selector("spec.framework!=torch", supported).matches(run) is False


def test_escaped_values() -> None:
    selector = parse_field_selector(r"metadata.name=a\,b\=c\\d", {"metadata.name"})
    assert selector.requirements == (FieldRequirement("metadata.name", "=", "a,b=c\\d"),)
    assert selector.matches({"metadata": {"name": "a,b=c\\d"}})
    assert str(selector) == r"metadata.name=a\,b\=c\\d"


def test_the_first_operator_splits_a_term() -> None:
    (requirement,) = parse_field_selector("metadata.name!=\\=x", {"metadata.name"}).requirements
    assert requirement == FieldRequirement("metadata.name", "!=", "=x")


FIELD_ERRORS = [
    ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
    ("metadata.name=a,b", "invalid selector: 'metadata.name=a,b'; can't understand 'b'"),
    ("metadata.name=a=b", "invalid field selector: unescaped character ="),
    (r"metadata.name=a\b", r"invalid field selector: invalid escape sequence: \b"),
    ("metadata.name=a\\", "invalid field selector: invalid escape sequence: \\"),
    ("spec.color=red", "field label not supported: spec.color"),
    ("status.phase=Running", "field label not supported: status.phase"),
    ("=x", "field label not supported: "),
    ("metadata.name = x", "field label not supported: metadata.name "),
]


@pytest.mark.parametrize(("text", "message"), FIELD_ERRORS)
def test_field_selector_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as raised:
        parse_field_selector(text, supported_field_selectors("v1", "ConfigMap"))
    assert str(raised.value) == message


def test_unsupported_field_message_is_exactly_kubernetes() -> None:
    with pytest.raises(SelectorError, match=r"^field label not supported: spec\.nodeName$"):
        parse_field_selector("spec.nodeName=x", supported_field_selectors("v1", "Secret"))


@pytest.mark.parametrize(
    ("api_version", "kind", "expected_extra"),
    [
        (
            "v1",
            "Pod",
            {
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            },
        ),
        (
            "v1",
            "Event",
            {
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            },
        ),
        ("v1", "Secret", {"type"}),
        ("v1", "Namespace", {"status.phase"}),
        ("batch/v1", "Job", {"status.successful"}),
        ("v1", "ConfigMap", set()),
        ("kubeloop.dev/v1alpha1", "TrainingRun", set()),
    ],
)
def test_supported_field_selectors(api_version: str, kind: str, expected_extra: set[str]) -> None:
    assert (
        supported_field_selectors(api_version, kind)
        == {"metadata.name", "metadata.namespace"} | expected_extra
    )


def test_kind_specific_values_do_not_leak_into_other_kinds() -> None:
    # A custom resource with a field named like a pod's is read plainly.
    supported = supported_field_selectors("x.dev/v1", "Thing", [".spec.hostNetwork"])
    thing = {"apiVersion": "x.dev/v1", "kind": "Thing", "spec": {}}
    assert parse_field_selector("spec.hostNetwork=", supported).matches(thing)
    assert not parse_field_selector("spec.hostNetwork=false", supported).matches(thing)


field_values = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=10)


@given(field_values)
@settings(deadline=None)
def test_field_value_escaping_round_trip(value: str) -> None:
    selector = FieldSelector((FieldRequirement("metadata.name", "=", value),))
    parsed = parse_field_selector(str(selector), {"metadata.name"})
    assert parsed == selector
    assert parsed.matches({"metadata": {"name": value}})
    assert not parse_field_selector(str(selector).replace("=", "!=", 1), {"metadata.name"}).matches(
        {"metadata": {"name": value}}
    )


@given(st.text(max_size=15))
@settings(deadline=None)
def test_field_selector_parser_never_fails_unexpectedly(text: str) -> None:
    try:
        selector = parse_field_selector(text, {"metadata.name", "a", "b"})
    except SelectorError:
        return
    assert parse_field_selector(str(selector), {"metadata.name", "a", "b"}) == selector
