"""kubeloop.local.schema: pruning, defaulting and validation as kube-apiserver does them.

Expected messages are kube-apiserver's own wording (k8s.io/kube-openapi validate messages,
wrapped by apiextensions-apiserver into k8s.io/apimachinery field errors); each assertion
pins the whole message, so a drift in wording fails the test.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubeloop.local.schema import (
    FieldError,
    apply_defaults,
    go_json,
    go_print,
    invalid_message,
    prune,
    status_causes,
    structural_schema_problems,
    validate,
    validate_object_metadata,
)


def spec_schema(**properties: Any) -> dict[str, Any]:
    """A CRD root schema whose `spec` has the given properties."""
    return {"type": "object", "properties": {"spec": {"type": "object", "properties": properties}}}


def messages(obj: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    return [error.message() for error in validate(obj, schema)]


def spec_messages(schema_props: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    return messages({"spec": spec}, spec_schema(**schema_props))


# --- error rendering ---------------------------------------------------------------------------


class TestFieldErrorRendering:
    def test_invalid_value_with_an_integer(self):
        error = FieldError("spec.workers", "FieldValueInvalid", 0,
                           "spec.workers in body should be greater than or equal to 1")
        assert error.message() == "spec.workers: Invalid value: 0: spec.workers in body should be greater than or equal to 1"
        assert error.body() == "Invalid value: 0: spec.workers in body should be greater than or equal to 1"

    @pytest.mark.parametrize(("value", "shown"), [
        ("abc", '"abc"'),
        ('a"b\\c', '"a\\"b\\\\c"'),
        ("line\nbreak\ttab", '"line\\nbreak\\ttab"'),
        ("\x00", '"\\x00"'),
        ("héllo", '"héllo"'),
        (None, '"null"'),
        (True, "true"),
        (False, "false"),
        (12, "12"),
        (-3, "-3"),
        (1.5, "1.5"),
        (2.0, "2"),
        (1e6, "1e+06"),
        (123456.0, "123456"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.5e-7, "-2.5e-07"),
        ({"b": 1, "a": "x"}, '{"a":"x","b":1}'),
        ([1, "a", None, 2.5], '[1,"a",null,2.5]'),
        ({"html": "<&>"}, '{"html":"\\u003c\\u0026\\u003e"}'),
    ])
    def test_values_render_as_go_renders_them(self, value, shown):
        assert FieldError("f", "FieldValueInvalid", value, "d").body() == f"Invalid value: {shown}: d"

    def test_types_without_a_value(self):
        assert FieldError("spec.model", "FieldValueRequired", "", "").message() == "spec.model: Required value"
        assert FieldError("f", "FieldValueTooLong", "<value omitted>", "may not be more than 5 bytes").message() == (
            "f: Too long: may not be more than 5 bytes")
        assert FieldError("f", "FieldValueForbidden", "", "not allowed").message() == "f: Forbidden: not allowed"

    def test_invalid_message_with_one_error(self):
        errors = [FieldError("spec.workers", "FieldValueInvalid", 0, "too small")]
        assert invalid_message("TrainingRun", "kubeloop.dev", "x", errors) == (
            'TrainingRun.kubeloop.dev "x" is invalid: spec.workers: Invalid value: 0: too small')

    def test_invalid_message_brackets_several_and_drops_repeats(self):
        first = FieldError("a", "FieldValueRequired", "", "")
        second = FieldError("b", "FieldValueInvalid", "v", "bad")
        assert invalid_message("TrainingRun", "kubeloop.dev", "x", [first, second, first]) == (
            'TrainingRun.kubeloop.dev "x" is invalid: [a: Required value, b: Invalid value: "v": bad]')

    def test_invalid_message_for_the_core_group(self):
        errors = [FieldError("metadata.name", "FieldValueRequired", "", "name or generateName is required")]
        assert invalid_message("ConfigMap", "", "", errors) == (
            'ConfigMap "" is invalid: metadata.name: Required value: name or generateName is required')

    def test_status_causes(self):
        errors = [FieldError("spec.workers", "FieldValueInvalid", 0, "too small"),
                  FieldError("spec.model", "FieldValueRequired", "", "")]
        assert status_causes(errors) == [
            {"reason": "FieldValueInvalid", "message": "Invalid value: 0: too small", "field": "spec.workers"},
            {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.model"},
        ]

    def test_go_json_and_go_print(self):
        assert go_json({"z": [1, 2.5, True, None], "a": {"k": "v"}}) == '{"a":{"k":"v"},"z":[1,2.5,true,null]}'
        assert go_json(1e21) == "1e+21"
        assert go_json(1e-7) == "1e-7"
        assert go_json(100.0) == "100"
        assert go_print(3) == "3"
        assert go_print(0.95) == "0.95"
        assert go_print(1234567.0) == "1.234567e+06"
        assert go_print("text") == "text"
        assert go_print([1, "a"]) == '[1,"a"]'
        assert go_print(None) == "null"


# --- pruning ---------------------------------------------------------------------------------------

TRAINING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "workers": {"type": "integer"},
                "gates": {"type": "array", "items": {"type": "object", "properties": {"metric": {"type": "string"}}}},
                "hyperparameters": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                                    "properties": {"lr": {"type": "number"}, "nested": {
                                        "type": "object", "properties": {"keep": {"type": "string"}}}}},
                "labels": {"type": "object", "additionalProperties": {
                    "type": "object", "properties": {"value": {"type": "string"}}}},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                             "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}},
                "anything": {"type": "object", "additionalProperties": True},
            },
        },
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
    },
}


class TestPrune:
    def test_unknown_fields_are_dropped_and_reported(self):
        obj = {"apiVersion": "kubeloop.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "x"},
               "spec": {"workers": 2, "foo": 1, "gates": [{"metric": "auc", "bar": 2}, {"baz": 3}]},
               "other": True}
        pruned, unknown = prune(obj, TRAINING_SCHEMA)
        assert pruned == {"apiVersion": "kubeloop.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "x"},
                          "spec": {"workers": 2, "gates": [{"metric": "auc"}, {}]}}
        assert unknown == ["other", "spec.foo", "spec.gates[0].bar", "spec.gates[1].baz"]

    def test_metadata_is_kept_whole_at_the_root(self):
        meta = {"name": "x", "labels": {"a": "b"}, "annotations": {"c": "d"}, "unexpected": 1}
        pruned, unknown = prune({"metadata": meta, "apiVersion": "v", "kind": "K"}, TRAINING_SCHEMA)
        assert pruned["metadata"] == meta
        assert unknown == []

    def test_the_input_is_not_modified(self):
        obj = {"spec": {"foo": 1, "workers": 1}}
        before = copy.deepcopy(obj)
        prune(obj, TRAINING_SCHEMA)
        assert obj == before

    def test_preserve_unknown_fields_keeps_undeclared_but_prunes_inside_declared(self):
        spec = {"hyperparameters": {"lr": 0.1, "depth": 3, "free": {"a": 1}, "nested": {"keep": "k", "drop": 1}}}
        pruned, unknown = prune({"spec": spec}, TRAINING_SCHEMA)
        assert pruned["spec"]["hyperparameters"] == {"lr": 0.1, "depth": 3, "free": {"a": 1}, "nested": {"keep": "k"}}
        assert unknown == ["spec.hyperparameters.nested.drop"]

    def test_additional_properties_schema_prunes_inside_each_value(self):
        spec = {"labels": {"team": {"value": "ml", "extra": 1}, "env": {"value": "dev"}}}
        pruned, unknown = prune({"spec": spec}, TRAINING_SCHEMA)
        assert pruned["spec"]["labels"] == {"team": {"value": "ml"}, "env": {"value": "dev"}}
        assert unknown == ["spec.labels.team.extra"]

    def test_embedded_resource_keeps_type_and_object_meta(self):
        template = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "whatever": 1},
                    "spec": {"x": "y", "z": 1}, "status": {}}
        pruned, unknown = prune({"spec": {"template": template}}, TRAINING_SCHEMA)
        assert pruned["spec"]["template"] == {"apiVersion": "batch/v1", "kind": "Job",
                                              "metadata": {"name": "j", "whatever": 1}, "spec": {"x": "y"}}
        assert unknown == ["spec.template.spec.z", "spec.template.status"]

    def test_type_meta_is_pruned_below_the_root_when_not_embedded(self):
        pruned, unknown = prune({"spec": {"apiVersion": "v1", "kind": "K", "workers": 1}}, TRAINING_SCHEMA)
        assert pruned == {"spec": {"workers": 1}}
        assert unknown == ["spec.apiVersion", "spec.kind"]

    def test_additional_properties_true_empties_nested_objects_like_kube(self):
        # kube's StructuralOrBool carries no schema for `true`: nested objects lose their fields.
        pruned, unknown = prune({"spec": {"anything": {"a": 1, "b": {"c": 2}}}}, TRAINING_SCHEMA)
        assert pruned["spec"]["anything"] == {"a": 1, "b": {}}
        assert unknown == ["spec.anything.b.c"]

    def test_without_a_schema_only_type_and_object_meta_survive(self):
        pruned, unknown = prune({"apiVersion": "v", "kind": "K", "metadata": {"name": "n"}, "spec": {"a": 1}}, None)
        assert pruned == {"apiVersion": "v", "kind": "K", "metadata": {"name": "n"}}
        assert unknown == ["spec"]

    def test_root_preserve_unknown_fields_keeps_everything_undeclared(self):
        schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                  "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}}
        pruned, unknown = prune({"spec": {"a": "x", "b": 1}, "free": {"y": 1}}, schema)
        assert pruned == {"spec": {"a": "x"}, "free": {"y": 1}}
        assert unknown == ["spec.b"]


# --- defaulting ------------------------------------------------------------------------------------

DEFAULTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "default": {},
            "properties": {
                "workers": {"type": "integer", "default": 1},
                "resources": {"type": "object", "default": {"cpu": "1"},
                              "properties": {"cpu": {"type": "string"}, "memory": {"type": "string", "default": "1Gi"}}},
                "gates": {"type": "array", "items": {"type": "object", "properties": {
                    "metric": {"type": "string"}, "op": {"type": "string", "default": ">="}}}},
                "tags": {"type": "array", "items": {"type": "string", "default": "untagged"}},
                "envs": {"type": "object", "additionalProperties": {
                    "type": "object", "properties": {"replicas": {"type": "integer", "default": 2}}}},
                "note": {"type": "string", "nullable": True, "default": "n/a"},
                "comment": {"type": "string", "nullable": True},
                "seed": {"type": "integer"},
                "mode": {"type": "string", "default": "train"},
            },
        },
    },
}


class TestDefaults:
    def test_missing_object_and_nested_defaults_apply_inside_the_default(self):
        result = apply_defaults({}, DEFAULTS_SCHEMA)
        assert result["spec"]["workers"] == 1
        assert result["spec"]["resources"] == {"cpu": "1", "memory": "1Gi"}
        assert result["spec"]["mode"] == "train"
        assert result["spec"]["note"] == "n/a"
        assert "comment" not in result["spec"]

    def test_present_values_are_kept(self):
        result = apply_defaults({"spec": {"workers": 4, "resources": {"cpu": "2"}}}, DEFAULTS_SCHEMA)
        assert result["spec"]["workers"] == 4
        assert result["spec"]["resources"] == {"cpu": "2", "memory": "1Gi"}

    def test_defaults_inside_array_items_and_additional_properties(self):
        result = apply_defaults({"spec": {"gates": [{"metric": "auc"}, {"metric": "f1", "op": "<"}],
                                          "envs": {"dev": {}, "prod": {"replicas": 5}}}}, DEFAULTS_SCHEMA)
        assert result["spec"]["gates"] == [{"metric": "auc", "op": ">="}, {"metric": "f1", "op": "<"}]
        assert result["spec"]["envs"] == {"dev": {"replicas": 2}, "prod": {"replicas": 5}}

    def test_nullable_null_stays_null(self):
        result = apply_defaults({"spec": {"note": None, "comment": None}}, DEFAULTS_SCHEMA)
        assert result["spec"]["note"] is None
        assert result["spec"]["comment"] is None

    def test_non_nullable_null_is_defaulted_or_dropped(self):
        result = apply_defaults({"spec": {"workers": None, "seed": None}}, DEFAULTS_SCHEMA)
        assert result["spec"]["workers"] == 1
        assert "seed" not in result["spec"]

    def test_null_array_item_takes_the_items_default(self):
        result = apply_defaults({"spec": {"tags": ["a", None]}}, DEFAULTS_SCHEMA)
        assert result["spec"]["tags"] == ["a", "untagged"]

    def test_defaults_are_copies_and_the_input_is_untouched(self):
        schema = copy.deepcopy(DEFAULTS_SCHEMA)
        obj: dict[str, Any] = {"spec": {}}
        first = apply_defaults(obj, schema)
        first["spec"]["resources"]["cpu"] = "changed"
        second = apply_defaults(obj, schema)
        assert second["spec"]["resources"]["cpu"] == "1"
        assert obj == {"spec": {}}
        assert schema == DEFAULTS_SCHEMA


# --- validation: keyword by keyword ------------------------------------------------------------------


class TestTypes:
    def test_integer_refuses_a_string(self):
        assert spec_messages({"workers": {"type": "integer"}}, {"workers": "2"}) == [
            'spec.workers: Invalid value: "string": spec.workers in body must be of type integer: "string"']

    def test_integer_refuses_a_fraction_but_takes_a_whole_float(self):
        schema = {"workers": {"type": "integer"}}
        assert spec_messages(schema, {"workers": 2.0}) == []
        assert spec_messages(schema, {"workers": 2.5}) == [
            'spec.workers: Invalid value: "number": spec.workers in body must be of type integer: "number"']

    def test_number_takes_an_integer(self):
        assert spec_messages({"ratio": {"type": "number"}}, {"ratio": 1}) == []

    @pytest.mark.parametrize(("declared", "value", "actual"), [
        ("boolean", "true", "string"), ("string", 5, "integer"), ("string", True, "boolean"),
        ("object", [], "array"), ("array", {}, "object"), ("number", "1.5", "string"),
    ])
    def test_type_mismatches(self, declared, value, actual):
        assert spec_messages({"f": {"type": declared}}, {"f": value}) == [
            f'spec.f: Invalid value: "{actual}": spec.f in body must be of type {declared}: "{actual}"']

    def test_null_is_refused_unless_nullable(self):
        assert spec_messages({"f": {"type": "string"}}, {"f": None}) == [
            'spec.f: Invalid value: "null": spec.f in body must be of type string: "null"']
        assert spec_messages({"f": {"type": "string", "nullable": True}}, {"f": None}) == []

    def test_int_or_string(self):
        schema = {"port": {"x-kubernetes-int-or-string": True}}
        assert spec_messages(schema, {"port": 80}) == []
        assert spec_messages(schema, {"port": "http"}) == []
        assert spec_messages(schema, {"port": 1.5}) == [
            'spec.port: Invalid value: "number": spec.port in body must be of type integer,string: "number"']

    def test_untyped_preserve_unknown_takes_anything(self):
        schema = {"free": {"x-kubernetes-preserve-unknown-fields": True}}
        for value in (1, "a", [1], {"a": 1}, None, True):
            assert spec_messages(schema, {"free": value}) == []

    def test_root_errors_have_kube_s_nil_field(self):
        schema = {"type": "object", "properties": {"spec": {"type": "object"}}, "minProperties": 2}
        assert messages({"spec": {}}, schema) == [
            '<nil>: Invalid value: 1:  in body should have at least 2 properties']


class TestEnum:
    def test_string_enum(self):
        schema = {"mode": {"type": "string", "enum": ["train", "tune"]}}
        assert spec_messages(schema, {"mode": "train"}) == []
        assert spec_messages(schema, {"mode": "serve"}) == [
            'spec.mode: Unsupported value: "serve": supported values: "train", "tune"']

    def test_non_string_enum_values_are_listed_as_json(self):
        schema = {"level": {"type": "integer", "enum": [1, 2]}}
        assert spec_messages(schema, {"level": 3}) == ['spec.level: Unsupported value: 3: supported values: "1", "2"']

    def test_enum_compares_after_go_conversion(self):
        assert spec_messages({"level": {"type": "number", "enum": [1, 2]}}, {"level": 2.0}) == []

    def test_null_never_matches_an_enum_even_when_nullable(self):
        schema = {"mode": {"type": "string", "nullable": True, "enum": ["a"]}}
        assert spec_messages(schema, {"mode": None}) == ['spec.mode: Unsupported value: "null": supported values: "a"']


class TestNumbers:
    @pytest.mark.parametrize(("bounds", "value", "expected"), [
        ({"minimum": 1}, 0, "spec.workers: Invalid value: 0: spec.workers in body should be greater than or equal to 1"),
        ({"minimum": 1, "exclusiveMinimum": True}, 1,
         "spec.workers: Invalid value: 1: spec.workers in body should be greater than 1"),
        ({"maximum": 64}, 65, "spec.workers: Invalid value: 65: spec.workers in body should be less than or equal to 64"),
        ({"maximum": 64, "exclusiveMaximum": True}, 64,
         "spec.workers: Invalid value: 64: spec.workers in body should be less than 64"),
    ])
    def test_integer_bounds(self, bounds, value, expected):
        schema = {"workers": {"type": "integer", **bounds}}
        assert spec_messages(schema, {"workers": value}) == [expected]

    def test_bounds_that_hold(self):
        schema = {"workers": {"type": "integer", "minimum": 1, "maximum": 64}}
        assert spec_messages(schema, {"workers": 1}) == []
        assert spec_messages(schema, {"workers": 64}) == []

    def test_float_bounds_print_go_floats(self):
        schema = {"ratio": {"type": "number", "minimum": 0.5, "maximum": 1e6}}
        assert spec_messages(schema, {"ratio": 0.25}) == [
            "spec.ratio: Invalid value: 0.25: spec.ratio in body should be greater than or equal to 0.5"]
        assert spec_messages(schema, {"ratio": 2e6}) == [
            "spec.ratio: Invalid value: 2e+06: spec.ratio in body should be less than or equal to 1e+06"]

    def test_integer_data_is_compared_with_the_truncated_bound(self):
        # kube-openapi converts the bound to int64 for integer data: minimum 0.5 admits 0.
        assert spec_messages({"n": {"type": "integer", "minimum": 0.5}}, {"n": 0}) == []

    def test_multiple_of(self):
        assert spec_messages({"n": {"type": "integer", "multipleOf": 4}}, {"n": 12}) == []
        assert spec_messages({"n": {"type": "integer", "multipleOf": 4}}, {"n": 10}) == [
            "spec.n: Invalid value: 10: spec.n in body should be a multiple of 4"]
        assert spec_messages({"x": {"type": "number", "multipleOf": 0.1}}, {"x": 0.3}) == []
        assert spec_messages({"x": {"type": "number", "multipleOf": 0.25}}, {"x": 0.3}) == [
            "spec.x: Invalid value: 0.3: spec.x in body should be a multiple of 0.25"]

    def test_all_failed_number_checks_are_reported_in_kube_s_order(self):
        schema = {"n": {"type": "integer", "multipleOf": 5, "minimum": 10}}
        assert spec_messages(schema, {"n": 3}) == [
            "spec.n: Invalid value: 3: spec.n in body should be a multiple of 5",
            "spec.n: Invalid value: 3: spec.n in body should be greater than or equal to 10"]


class TestStrings:
    def test_max_length(self):
        assert spec_messages({"name": {"type": "string", "maxLength": 5}}, {"name": "abcdef"}) == [
            "spec.name: Too long: may not be more than 5 bytes"]
        assert spec_messages({"name": {"type": "string", "maxLength": 1}}, {"name": "ab"}) == [
            "spec.name: Too long: may not be more than 1 byte"]

    def test_lengths_count_characters_not_bytes(self):
        assert spec_messages({"name": {"type": "string", "maxLength": 3}}, {"name": "héé"}) == []

    def test_min_length(self):
        assert spec_messages({"name": {"type": "string", "minLength": 1}}, {"name": ""}) == [
            'spec.name: Invalid value: "": spec.name in body should be at least 1 chars long']

    def test_pattern(self):
        schema = {"name": {"type": "string", "pattern": "^[a-z][a-z0-9-]*$"}}
        assert spec_messages(schema, {"name": "run-1"}) == []
        assert spec_messages(schema, {"name": "Run"}) == [
            "spec.name: Invalid value: \"Run\": spec.name in body should match '^[a-z][a-z0-9-]*$'"]

    def test_pattern_is_searched_not_anchored(self):
        assert spec_messages({"name": {"type": "string", "pattern": "[0-9]"}}, {"name": "abc1"}) == []

    def test_dollar_matches_only_at_the_very_end_as_in_go(self):
        assert spec_messages({"name": {"type": "string", "pattern": "^[a-z]+$"}}, {"name": "abc\n"}) == [
            "spec.name: Invalid value: \"abc\\n\": spec.name in body should match '^[a-z]+$'"]

    def test_go_only_syntax(self):
        schema = {"s": {"type": "string", "pattern": "^[[:alpha:]]+\\z"}}
        assert spec_messages(schema, {"s": "abc"}) == []
        assert len(spec_messages(schema, {"s": "ab1"})) == 1

    def test_only_the_first_string_failure_is_reported(self):
        schema = {"name": {"type": "string", "maxLength": 2, "pattern": "^[0-9]+$"}}
        assert spec_messages(schema, {"name": "abcd"}) == ["spec.name: Too long: may not be more than 2 bytes"]


class TestFormats:
    @pytest.mark.parametrize(("fmt", "good", "bad"), [
        ("date-time", "2024-01-02T03:04:05Z", "2024-01-02 03:04:05"),
        ("date-time", "2024-01-02T03:04:05.123+02:00", "2024-13-02T03:04:05Z"),
        ("date", "2024-02-29", "2023-02-29"),
        ("byte", "aGVsbG8=", "hello!"),
        ("uuid", "123e4567-e89b-12d3-a456-426614174000", "123e4567"),
        ("uuid4", "123e4567-e89b-42d3-a456-426614174000", "123e4567-e89b-12d3-a456-426614174000"),
        ("email", "ml@example.com", "not-an-email"),
        ("ipv4", "10.0.0.1", "10.0.0"),
        ("ipv6", "fe80::1", "10.0.0.1"),
        ("cidr", "10.0.0.0/8", "10.0.0.0"),
        ("mac", "00:00:5e:00:53:01", "00:00:5e"),
        ("hostname", "example.com", "-bad-.com"),
        ("duration", "1h30m", "1 fortnight"),
        ("duration", "3 days", "abc"),
        ("uri", "https://example.com/x", "not a uri"),
        ("hexcolor", "#ff0000", "#ff00"),
        ("k8s-short-name", "my-name", "My-Name"),
        ("k8s-long-name", "my.name", "my..name"),
        ("isbn10", "0-306-40615-2", "0-306-40615-3"),
        ("creditcard", "4111 1111 1111 1111", "4111 1111 1111 1112"),
        ("ssn", "123-45-6789", "123456789"),
        ("bsonobjectid", "507f1f77bcf86cd799439011", "507f1f77"),
    ])
    def test_validated_formats(self, fmt, good, bad):
        schema = {"f": {"type": "string", "format": fmt}}
        assert spec_messages(schema, {"f": good}) == []
        assert spec_messages(schema, {"f": bad}) == [
            f'spec.f: Invalid value: "{bad}": spec.f in body must be of type {fmt}: "{bad}"']

    def test_formats_kube_strips_from_crds_are_not_checked(self):
        # kube-apiserver drops int32/int64/float/double (and unknown formats) from CRD schemas.
        schema = {"n": {"type": "integer", "format": "int32"}, "s": {"type": "string", "format": "my-format"}}
        assert spec_messages(schema, {"n": 2**40, "s": "anything"}) == []

    def test_a_string_format_on_a_number_is_a_type_error(self):
        assert spec_messages({"t": {"type": "string", "format": "date-time"}}, {"t": 5}) == [
            'spec.t: Invalid value: "int64": spec.t in body must be of type date-time: "int64"']


class TestArrays:
    def test_min_and_max_items(self):
        schema = {"gates": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}}}
        assert spec_messages(schema, {"gates": ["a"]}) == []
        assert spec_messages(schema, {"gates": []}) == [
            "spec.gates: Invalid value: 0: spec.gates in body should have at least 1 items"]
        assert spec_messages(schema, {"gates": ["a", "b", "c"]}) == ["spec.gates: Too many: 3: must have at most 2 items"]
        assert spec_messages({"g": {"type": "array", "maxItems": 1, "items": {"type": "string"}}}, {"g": ["a", "b"]}) == [
            "spec.g: Too many: 2: must have at most 1 item"]

    def test_unique_items(self):
        schema = {"tags": {"type": "array", "uniqueItems": True, "items": {"type": "string"}}}
        assert spec_messages(schema, {"tags": ["a", "b"]}) == []
        assert spec_messages(schema, {"tags": ["a", "a"]}) == [
            "spec.tags: Invalid value: \"\": spec.tags in body shouldn't contain duplicates"]

    def test_items_are_validated_with_their_index_before_the_list_checks(self):
        schema = {"gates": {"type": "array", "maxItems": 1, "items": {
            "type": "object", "required": ["metric"], "properties": {"metric": {"type": "string"}}}}}
        assert spec_messages(schema, {"gates": [{"metric": "auc"}, {}]}) == [
            "spec.gates[1].metric: Required value", "spec.gates: Too many: 2: must have at most 1 item"]

    def test_list_type_set(self):
        schema = {"tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}
        assert spec_messages(schema, {"tags": ["a", "b"]}) == []
        assert spec_messages(schema, {"tags": ["a", "b", "a", "a", "b"]}) == [
            'spec.tags[2]: Duplicate value: "a"', 'spec.tags[4]: Duplicate value: "b"']

    def test_list_type_set_tells_integers_from_floats(self):
        schema = {"nums": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "number"}}}
        assert spec_messages(schema, {"nums": [1, 1.0]}) == []

    def test_list_type_map_single_key(self):
        schema = {"gates": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["metric"],
                            "items": {"type": "object", "properties": {"metric": {"type": "string"},
                                                                       "min": {"type": "number"}}}}}
        assert spec_messages(schema, {"gates": [{"metric": "auc"}, {"metric": "f1"}]}) == []
        assert spec_messages(schema, {"gates": [{"metric": "auc", "min": 1}, {"metric": "auc", "min": 2}]}) == [
            'spec.gates[1]: Duplicate value: {"metric":"auc"}']
        assert spec_messages(schema, {"gates": [{}, {"min": 1}]}) == ["spec.gates[1]: Duplicate value: {}"]

    def test_list_type_map_several_keys_and_non_objects(self):
        schema = {"ports": {"type": "array", "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["port", "protocol"],
                            "items": {"type": "object", "properties": {"port": {"type": "integer"},
                                                                       "protocol": {"type": "string"}}}}}
        assert spec_messages(schema, {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 80, "protocol": "UDP"}]}) == []
        assert spec_messages(schema, {"ports": [{"port": 80, "protocol": "TCP"}, {"protocol": "TCP", "port": 80}]}) == [
            'spec.ports[1]: Duplicate value: {"port":80,"protocol":"TCP"}']
        map_schema = {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
                      "items": {"x-kubernetes-preserve-unknown-fields": True}}
        assert spec_messages({"m": map_schema}, {"m": [{"k": 1}, "text"]}) == [
            'spec.m[1]: Invalid value: "text": must be an object for an array of list-type map']


class TestObjects:
    def test_required(self):
        schema = spec_schema(model={"type": "string"})
        schema["properties"]["spec"]["required"] = ["model"]
        assert messages({"spec": {}}, schema) == ["spec.model: Required value"]
        root = {"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object"}}}
        assert messages({}, root) == ["spec: Required value"]

    def test_min_and_max_properties_stop_the_object_checks(self):
        schema = {"env": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "integer"}}}
        assert spec_messages(schema, {"env": {"a": "x", "b": "y"}}) == ["spec.env: Too many: 2: must have at most 1 item"]
        schema = {"env": {"type": "object", "minProperties": 2, "additionalProperties": {"type": "integer"}}}
        assert spec_messages(schema, {"env": {"a": "x"}}) == [
            "spec.env: Invalid value: 1: spec.env in body should have at least 2 properties"]

    def test_additional_properties_schema_validates_each_value(self):
        schema = {"env": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}}
        assert spec_messages(schema, {"env": {"a": 1}}) == []
        assert spec_messages(schema, {"env": {"a": -1, "b": "x"}}) == [
            "spec.env.a: Invalid value: -1: spec.env.a in body should be greater than or equal to 0",
            'spec.env.b: Invalid value: "string": spec.env.b in body must be of type integer: "string"']


class TestCombinators:
    def test_any_of(self):
        schema = {"target": {"type": "object", "properties": {"min": {"type": "number"}, "max": {"type": "number"}},
                             "anyOf": [{"required": ["min"]}, {"required": ["max"]}]}}
        assert spec_messages(schema, {"target": {"max": 1}}) == []
        assert spec_messages(schema, {"target": {}}) == [
            '<nil>: Invalid value: "": "spec.target" must validate at least one schema (anyOf)',
            "spec.target.min: Required value"]

    def test_one_of(self):
        schema = {"target": {"type": "object", "properties": {"min": {"type": "number"}, "max": {"type": "number"}},
                             "oneOf": [{"required": ["min"]}, {"required": ["max"]}]}}
        assert spec_messages(schema, {"target": {"min": 1}}) == []
        assert spec_messages(schema, {"target": {"min": 1, "max": 2}}) == [
            '<nil>: Invalid value: "": "spec.target" must validate one and only one schema (oneOf). '
            "Found 2 valid alternatives"]
        assert spec_messages(schema, {"target": {}}) == [
            '<nil>: Invalid value: "": "spec.target" must validate one and only one schema (oneOf). Found none valid',
            "spec.target.min: Required value"]

    def test_all_of(self):
        schema = {"n": {"type": "integer", "allOf": [{"minimum": 1}, {"maximum": 3}]}}
        assert spec_messages(schema, {"n": 2}) == []
        assert spec_messages(schema, {"n": 5}) == [
            "spec.n: Invalid value: 5: spec.n in body should be less than or equal to 3",
            '<nil>: Invalid value: "": "spec.n" must validate all the schemas (allOf)']

    def test_not(self):
        schema = {"mode": {"type": "string", "not": {"enum": ["legacy"]}}}
        assert spec_messages(schema, {"mode": "new"}) == []
        assert spec_messages(schema, {"mode": "legacy"}) == [
            '<nil>: Invalid value: "": "spec.mode" must not validate the schema (not)']


class TestEmbeddedResources:
    SCHEMA = spec_schema(template={"type": "object", "x-kubernetes-embedded-resource": True,
                                   "x-kubernetes-preserve-unknown-fields": True})

    def test_type_meta_is_required(self):
        assert messages({"spec": {"template": {}}}, self.SCHEMA) == [
            "spec.template.apiVersion: Required value", "spec.template.kind: Required value"]

    def test_values_are_checked(self):
        template = {"apiVersion": "a/b/c", "kind": "Bad_Kind", "metadata": {"name": "a/b"}}
        assert messages({"spec": {"template": template}}, self.SCHEMA) == [
            'spec.template.apiVersion: Invalid value: "a/b/c": unexpected GroupVersion string: a/b/c',
            'spec.template.kind: Invalid value: "Bad_Kind": may have mixed case, but should otherwise match: '
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
            "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
            "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
            "spec.template.metadata.name: Invalid value: \"a/b\": may not contain '/'"]

    def test_a_valid_embedded_resource(self):
        template = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"labels": {"a": "b"}}}
        assert messages({"spec": {"template": template}}, self.SCHEMA) == []


def test_the_brief_s_example_end_to_end():
    schema = spec_schema(workers={"type": "integer", "minimum": 1, "default": 1})
    obj = {"apiVersion": "kubeloop.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "x"},
           "spec": {"workers": 0, "unknown": True}}
    pruned, unknown = prune(obj, schema)
    errors = validate(apply_defaults(pruned, schema), schema)
    assert unknown == ["spec.unknown"]
    assert invalid_message("TrainingRun", "kubeloop.dev", "x", errors) == (
        'TrainingRun.kubeloop.dev "x" is invalid: spec.workers: Invalid value: 0: '
        "spec.workers in body should be greater than or equal to 1")


# --- object metadata ------------------------------------------------------------------------------

SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


def meta_messages(meta: dict[str, Any], **kwargs: Any) -> list[str]:
    return [e.message() for e in validate_object_metadata({"metadata": meta}, **kwargs)]


class TestObjectMetadata:
    def test_a_good_name(self):
        assert meta_messages({"name": "run-1.a"}) == []

    def test_name_or_generate_name_is_required(self):
        assert meta_messages({}) == ["metadata.name: Required value: name or generateName is required"]

    def test_bad_names(self):
        assert meta_messages({"name": "Run_1"}) == [f'metadata.name: Invalid value: "Run_1": {SUBDOMAIN_MESSAGE}']
        long_name = "a" * 254
        assert meta_messages({"name": long_name}) == [
            f'metadata.name: Invalid value: "{long_name}": must be no more than 253 characters']

    def test_generate_name_may_end_with_a_dash(self):
        assert meta_messages({"generateName": "run-", "name": "run-abcde"}) == []
        assert meta_messages({"generateName": "Run-", "name": "run-abcde"}) == [
            f'metadata.generateName: Invalid value: "Run-": {SUBDOMAIN_MESSAGE}']

    def test_namespace_rules_when_the_scope_is_known(self):
        assert meta_messages({"name": "a"}, namespaced=True) == ["metadata.namespace: Required value"]
        assert meta_messages({"name": "a", "namespace": "ns"}, namespaced=False) == [
            "metadata.namespace: Forbidden: not allowed on this type"]
        assert meta_messages({"name": "a", "namespace": "ns"}, namespaced=True) == []

    def test_labels(self):
        assert meta_messages({"name": "a", "labels": {"app.kubernetes.io/name": "x", "tier": ""}}) == []
        assert meta_messages({"name": "a", "labels": {"bad key": "bad value"}}) == [
            'metadata.labels: Invalid value: "bad key": name part must consist of alphanumeric characters, \'-\', '
            "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
            "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            'metadata.labels: Invalid value: "bad value": a valid label must be an empty string or consist of '
            "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
            "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
            "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"]

    def test_label_prefix_and_lengths(self):
        errors = meta_messages({"name": "a", "labels": {"/x": "y", "a" * 64: "b" * 64}})
        assert 'metadata.labels: Invalid value: "/x": prefix part must be non-empty' in errors
        assert f'metadata.labels: Invalid value: "{"a" * 64}": name part must be no more than 63 characters' in errors
        assert f'metadata.labels: Invalid value: "{"b" * 64}": must be no more than 63 characters' in errors

    def test_annotations(self):
        assert meta_messages({"name": "a", "annotations": {"Kubeloop.dev/Note": "any value at all"}}) == []
        assert meta_messages({"name": "a", "annotations": {"a": "x" * (256 * 1024)}}) == [
            "metadata.annotations: Too long: may not be more than 262144 bytes"]

    def test_owner_references_must_be_complete(self):
        reference = {"apiVersion": "kubeloop.dev/v1alpha1", "kind": "TrainingRun", "name": "x"}
        assert meta_messages({"name": "a", "ownerReferences": [reference]}) == [
            'metadata.ownerReferences.uid: Invalid value: "": must not be empty']

    def test_one_controller_only(self):
        references = [{"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": True},
                      {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "2", "controller": True}]
        errors = meta_messages({"name": "a", "ownerReferences": references})
        assert len(errors) == 1
        assert errors[0].endswith('Only one reference can have Controller set to true. Found "true" in references '
                                  "for A/a and B/b")

    def test_finalizers(self):
        assert meta_messages({"name": "a", "finalizers": ["kubeloop.dev/cleanup"]}) == []
        assert meta_messages({"name": "a", "finalizers": ["bad finalizer"]})[0].startswith(
            'metadata.finalizers: Invalid value: "bad finalizer": name part must consist')


# --- structural schema problems -------------------------------------------------------------------


class TestStructuralSchemaProblems:
    def test_a_structural_schema_has_none(self):
        assert structural_schema_problems(TRAINING_SCHEMA) == []
        assert structural_schema_problems(DEFAULTS_SCHEMA) == []

    def test_types_are_required_outside_value_validations(self):
        schema = {"properties": {"spec": {"properties": {"a": {}}, "type": "object"},
                                 "list": {"type": "array", "items": {"description": "x"}}}}
        assert structural_schema_problems(schema) == [
            "properties[list].items.type: Required value: must not be empty for specified array items",
            "properties[spec].properties[a].type: Required value: must not be empty for specified object fields",
            "type: Required value: must not be empty at the root",
        ]

    def test_unsupported_keywords(self):
        schema = {"type": "object", "properties": {
            "a": {"$ref": "#/definitions/x", "type": "object"},
            "b": {"type": "array", "uniqueItems": True, "items": {"type": "string"}},
            "c": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": {"type": "string"}},
            "d": {"type": "array"},
            "e": {"type": "null"},
        }}
        assert structural_schema_problems(schema) == [
            "properties[a].$ref: Forbidden: $ref is not supported",
            "properties[b].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity "
            "becomes quadratic",
            "properties[c].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
            "properties[d].items: Required value: must be specified",
            "properties[e].type: Forbidden: type cannot be set to null, use nullable as an alternative",
        ]

    def test_cel_rules_are_refused_as_not_emulated(self):
        schema = spec_schema(a={"type": "string", "x-kubernetes-validations": [{"rule": "self != ''"}]})
        assert structural_schema_problems(schema) == [
            "properties[spec].properties[a].x-kubernetes-validations: Forbidden: CEL validation rules are not "
            "emulated by the local API server"]

    def test_root_rules(self):
        schema = {"type": "object", "additionalProperties": {"type": "string"},
                  "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
                                 "kind": {"type": "integer"}}}
        assert structural_schema_problems(schema) == [
            "additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
            "additionalProperties: Forbidden: must not be used at the root",
            'properties[kind].type: Invalid value: "integer": must be string',
            "properties[metadata]: Forbidden: must not specify anything other than name and generateName, but "
            "metadata is implicitly specified",
        ]

    def test_metadata_may_restrict_name_and_generate_name(self):
        schema = {"type": "object", "properties": {"metadata": {"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 20}}}}}
        assert structural_schema_problems(schema) == []

    def test_value_validations_must_not_carry_structure(self):
        schema = spec_schema(a={"type": "object", "properties": {"x": {"type": "string"}},
                                "anyOf": [{"type": "object", "properties": {"x": {"description": "no"}}},
                                          {"properties": {"metadata": {}}, "nullable": True}]})
        assert structural_schema_problems(schema) == [
            "properties[spec].properties[a].anyOf[0].properties[x].description: Forbidden: must be empty to be "
            "structural",
            "properties[spec].properties[a].anyOf[0].type: Forbidden: must be empty to be structural",
            "properties[spec].properties[a].anyOf[1].nullable: Forbidden: must be false to be structural",
            "properties[spec].properties[a].anyOf[1].properties[metadata]: Forbidden: must not be specified in a "
            "nested context",
        ]

    def test_root_value_validations_must_name_declared_fields(self):
        schema = {"type": "object", "properties": {"spec": {"type": "object"}},
                  "anyOf": [{"required": ["spec"]}, {"properties": {"status": {"required": ["x"]}}}]}
        assert structural_schema_problems(schema) == [
            "properties[status]: Required value: because it is defined in anyOf[1].properties[status]"]

    def test_int_or_string_patterns(self):
        any_of = {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
        all_of = {"x-kubernetes-int-or-string": True,
                  "allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"pattern": "^[0-9a-z]+$"}]}
        assert structural_schema_problems(spec_schema(a=any_of, b=all_of)) == []
        assert structural_schema_problems(spec_schema(c={"x-kubernetes-int-or-string": True,
                                                         "x-kubernetes-preserve-unknown-fields": True})) == [
            "properties[spec].properties[c].x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false "
            "if x-kubernetes-int-or-string is true"]

    def test_embedded_resources(self):
        assert structural_schema_problems(spec_schema(t={"x-kubernetes-embedded-resource": True})) == [
            "properties[spec].properties[t].properties: Required value: must not be empty if "
            "x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
            "properties[spec].properties[t].type: Required value: must be object if x-kubernetes-embedded-resource is "
            "true",
        ]

    def test_list_types(self):
        schema = spec_schema(
            m={"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object", "properties": {
                "name": {"type": "string"}}}, "x-kubernetes-list-map-keys": ["name", "port"]},
            s={"type": "object", "x-kubernetes-list-type": "set"},
            w={"type": "array", "x-kubernetes-list-type": "bag", "items": {"type": "string"}})
        assert structural_schema_problems(schema) == [
            "properties[spec].properties[m].items.properties[name].default: Required value: this property is in "
            "x-kubernetes-list-map-keys, so it must have a default or be a required property",
            'properties[spec].properties[m].x-kubernetes-list-map-keys: Invalid value: ["name","port"]: entries must '
            "all be names of item properties",
            'properties[spec].properties[s].type: Invalid value: "object": must be array if x-kubernetes-list-type is '
            "specified",
            'properties[spec].properties[w].x-kubernetes-list-type: Unsupported value: "bag": supported values: '
            '"atomic", "set", "map"',
        ]

    def test_defaults_must_be_pruned_and_valid(self):
        schema = spec_schema(
            a={"type": "integer", "default": "one"},
            b={"type": "object", "properties": {"x": {"type": "string"}}, "default": {"x": "ok", "y": 1}},
            c={"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}, "default": {"n": 0}})
        assert structural_schema_problems(schema) == [
            # kube names the default's own root "" (hence two spaces before "in body").
            'properties[spec].properties[a].default: Invalid value: "string":  in body must be of type integer: '
            '"string"',
            'properties[spec].properties[b].default: Invalid value: {"x":"ok","y":1}: must not have unknown fields',
            "properties[spec].properties[c].default.n: Invalid value: 0: n in body should be greater than or equal "
            "to 1",
        ]

    def test_defaults_are_forbidden_in_top_level_metadata(self):
        schema = {"type": "object", "properties": {"metadata": {"type": "object", "default": {"name": "x"}}}}
        assert "properties[metadata].default: Forbidden: must not be set in top-level metadata" in (
            structural_schema_problems(schema))

    def test_patterns_go_cannot_compile(self):
        problems = structural_schema_problems(spec_schema(a={"type": "string", "pattern": "^(?!x).*$"}))
        assert len(problems) == 1
        assert problems[0].startswith('properties[spec].properties[a].pattern: Invalid value: "^(?!x).*$": must be a '
                                      "valid regular expression, but isn't: invalid or unsupported Perl syntax")


# --- properties over generated data -----------------------------------------------------------------

SCALARS = ("string", "integer", "number", "boolean")


@st.composite
def schemas(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    """Random structural schemas with value constraints a generated value can honour."""
    kinds = SCALARS + (("object", "array") if depth < 3 else ())
    kind = draw(st.sampled_from(kinds))
    schema: dict[str, Any] = {"type": kind}
    if kind == "string":
        if draw(st.booleans()):
            schema["enum"] = draw(st.lists(st.text(max_size=5), min_size=1, max_size=3, unique=True))
        else:
            low = draw(st.integers(0, 3))
            schema.update(minLength=low, maxLength=low + draw(st.integers(0, 5)))
    elif kind in ("integer", "number"):
        low = draw(st.integers(-50, 50))
        schema.update(minimum=low, maximum=low + draw(st.integers(0, 100)))
    elif kind == "object":
        names = draw(st.lists(st.from_regex(r"[a-z][a-zA-Z0-9]{0,6}", fullmatch=True), max_size=4, unique=True))
        schema["properties"] = {name: draw(schemas(depth + 1)) for name in names}
        schema["required"] = [name for name in names if draw(st.booleans())]
    else:
        schema["items"] = draw(schemas(depth + 1))
        schema.update(minItems=draw(st.integers(0, 1)), maxItems=draw(st.integers(2, 4)))
    if draw(st.integers(0, 9)) == 0 and "enum" not in schema:  # kube never matches null against an enum
        schema["nullable"] = True
    return schema


def values_for(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    kind = schema["type"]
    if kind == "string":
        if "enum" in schema:
            strategy: st.SearchStrategy[Any] = st.sampled_from(schema["enum"])
        else:
            strategy = st.text(min_size=schema["minLength"], max_size=schema["maxLength"])
    elif kind == "integer":
        strategy = st.integers(schema["minimum"], schema["maximum"])
    elif kind == "number":
        strategy = st.floats(schema["minimum"], schema["maximum"], allow_nan=False) | st.integers(
            schema["minimum"], schema["maximum"])
    elif kind == "boolean":
        strategy = st.booleans()
    elif kind == "array":
        strategy = st.lists(values_for(schema["items"]), min_size=schema["minItems"], max_size=schema["maxItems"])
    else:
        strategy = st.fixed_dictionaries(
            {name: values_for(sub) for name, sub in schema["properties"].items() if name in schema["required"]},
            optional={name: values_for(sub) for name, sub in schema["properties"].items()
                      if name not in schema["required"]})
    return strategy | st.none() if schema.get("nullable") else strategy


def root(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"spec": schema}}


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_value_generated_from_a_schema_validates_against_it(data):
    schema = data.draw(schemas())
    value = data.draw(values_for(schema))
    assert structural_schema_problems(root(schema)) == []
    assert validate({"spec": value}, root(schema)) == []
    assert prune({"spec": value}, root(schema)) == ({"spec": value}, [])


JSON = st.recursive(st.none() | st.booleans() | st.integers(-10, 10) | st.floats(allow_nan=False, width=32)
                    | st.text(max_size=4),
                    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children,
                                                                                         max_size=3),
                    max_leaves=12)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), JSON)
def test_pruning_is_idempotent_and_only_removes(data, noise):
    schema = root(data.draw(schemas()))
    obj = {"spec": noise, "extra": noise}
    once, unknown = prune(obj, schema)
    twice, unknown_again = prune(once, schema)
    assert twice == once
    assert unknown_again == []
    assert ("extra" in unknown) and "extra" not in once
    assert _is_sub_document(once, obj)


def _is_sub_document(small: Any, big: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _is_sub_document(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(small) == len(big) and all(
            _is_sub_document(a, b) for a, b in zip(small, big, strict=True))
    if isinstance(small, float) and math.isnan(small):
        return isinstance(big, float) and math.isnan(big)
    return bool(small == big)


@settings(max_examples=100)
@given(JSON)
def test_defaulting_is_idempotent(noise):
    obj = {"spec": noise if isinstance(noise, dict) else {"tags": noise}}
    once = apply_defaults(obj, DEFAULTS_SCHEMA)
    assert apply_defaults(once, DEFAULTS_SCHEMA) == once


# --- corners: Go regexp syntax, Go conversions, rendering limits -----------------------------------


class TestGoRegexpSyntax:
    @pytest.mark.parametrize(("pattern", "good", "bad"), [
        (r"^\Qa.b\E$", "a.b", "axb"),                 # \Q...\E quotes literally
        (r"^\x{41}+$", "AAA", "aaa"),                  # \x{...} code points
        (r"^(?<word>[a-z]+)$", "abc", "ab1"),          # (?<name>...) groups
        (r"^[]a]+$", "]a]", "b"),                       # a leading ] is a literal
        (r"^[^]a]+$", "bcd", "b]"),
        (r"(?m)^b$", "a\nb", "ab"),                    # with (?m), $ is end of line
        (r"^\d+$", "123", "١٢٣"),                       # \d is ASCII only, as in Go
    ])
    def test_translated_constructs(self, pattern, good, bad):
        schema = {"s": {"type": "string", "pattern": pattern}}
        assert structural_schema_problems(spec_schema(**schema)) == []
        assert spec_messages(schema, {"s": good}) == []
        assert len(spec_messages(schema, {"s": bad})) == 1

    @pytest.mark.parametrize(("pattern", "reason"), [
        ("(a)\\1", "back-references are not supported"),
        ("abc\\", "trailing backslash"),
        ("\\pL+", "Unicode character classes"),
        ("(?U)a+", "ungreedy"),
        ("[[:nope:]]", "invalid character class range"),
        ("[[:^alpha:]]", "negated POSIX classes"),
        ("a(?<=b)", "invalid or unsupported Perl syntax"),
        ("(unclosed", "missing )"),
    ])
    def test_refused_patterns(self, pattern, reason):
        problems = structural_schema_problems(spec_schema(s={"type": "string", "pattern": pattern}))
        assert len(problems) == 1 and reason in problems[0], problems

    def test_a_refused_pattern_at_validation_time_reads_like_kube(self):
        assert spec_messages({"s": {"type": "string", "pattern": "\\pL"}}, {"s": "x"}) == [
            "spec.s: Invalid value: \"x\": spec.s in body should match '\\pL, but pattern is invalid: Unicode "
            "character classes (\\p) are not supported by the local API server'"]


class TestGoConversionsAndRendering:
    def test_an_integer_converts_to_a_code_point_when_the_enum_holds_strings(self):
        # Go's reflect conversion int -> string yields the rune: 65 matches "A".
        assert spec_messages({"s": {"x-kubernetes-int-or-string": True, "enum": ["A"]}}, {"s": 65}) == []
        assert spec_messages({"s": {"x-kubernetes-int-or-string": True, "enum": ["A"]}}, {"s": -1}) == [
            'spec.s: Unsupported value: -1: supported values: "A"']

    def test_composite_enums_compare_deeply_and_strictly(self):
        schema = {"o": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "enum": [{"a": [1, 2]}]}}
        assert spec_messages(schema, {"o": {"a": [1, 2]}}) == []
        assert spec_messages(schema, {"o": {"a": [1, 2.5]}}) == [
            'spec.o: Unsupported value: {"a":[1,2.5]}: supported values: "{\\"a\\":[1,2]}"']

    def test_special_floats_and_unicode(self):
        assert FieldError("f", "FieldValueInvalid", math.inf, "").body() == "Invalid value: +Inf"
        assert FieldError("f", "FieldValueInvalid", -math.inf, "").body() == "Invalid value: -Inf"
        assert FieldError("f", "FieldValueInvalid", math.nan, "").body() == "Invalid value: NaN"
        assert FieldError("f", "FieldValueInvalid", -0.0, "").body() == "Invalid value: -0"
        assert FieldError("f", "FieldValueInvalid", "\u200b\U0001F600\U000E0001", "").body() == (
            'Invalid value: "\\u200b\U0001F600\\U000e0001"')
        assert go_json(0.000123) == "0.000123"
        assert go_json(-1.5e-9) == "-1.5e-9"
        with pytest.raises(ValueError):
            go_json(math.nan)
        with pytest.raises(TypeError):
            go_json(object())

    def test_negative_limits_of_too_long_and_too_many(self):
        from kubeloop.local.schema import OMITTED, _too_long, _too_many

        assert _too_long("f", -1).message() == "f: Too long: value is too long"
        assert _too_many("f", -1, -1).message() == "f: Too many: has too many items"
        assert _too_many("f", -1, 3).value is OMITTED

    def test_an_invalid_message_without_errors(self):
        assert invalid_message("Widget", "", "w", []) == 'Widget "w" is invalid'


def test_preserve_unknown_lists_prune_inside_declared_item_fields():
    schema = spec_schema(items={"type": "array", "x-kubernetes-preserve-unknown-fields": True,
                                "items": {"type": "object", "properties": {"known": {
                                    "type": "object", "properties": {"a": {"type": "string"}}}}}})
    pruned, unknown = prune({"spec": {"items": [{"known": {"a": "x", "b": 1}, "free": 2}, "text"]}}, schema)
    assert pruned["spec"]["items"] == [{"known": {"a": "x"}, "free": 2}, "text"]
    assert unknown == ["spec.items[0].known.b"]
