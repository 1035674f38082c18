"""docs/api-reference.md and docs/conditions.md: generated from the API models, complete (no
field, condition type or reason without a description) and up to date."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from pydantic import Field

from kubeloop import apidocs
from kubeloop.core.apimodel import KubeModel, ResourceDefinition, StatusModel
from kubeloop.crdgen import resources, structural_schema

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_committed_references_are_up_to_date() -> None:
    problems = apidocs.check(DOCS)
    assert not problems, "\n".join(problems)


def test_check_reports_a_stale_file(tmp_path: Path) -> None:
    assert apidocs.main(["--output", str(tmp_path)]) == 0
    (tmp_path / apidocs.API_REFERENCE).write_text("stale\n")
    assert apidocs.main(["--check", "--output", str(tmp_path)]) == 1
    assert apidocs.main(["--output", str(tmp_path)]) == 0
    assert apidocs.main(["--check", "--output", str(tmp_path)]) == 0


@pytest.mark.parametrize("resource", resources(), ids=lambda r: r.kind)
def test_no_field_is_undocumented(resource: ResourceDefinition) -> None:
    assert apidocs.undocumented(structural_schema(resource.spec_model), "spec") == []
    assert apidocs.undocumented(structural_schema(resource.status_model, keep_defaults=False), "status") == []


@pytest.mark.parametrize("resource", resources(), ids=lambda r: r.kind)
def test_every_field_and_printer_column_is_in_the_reference(resource: ResourceDefinition) -> None:
    text = "\n".join(apidocs.kind_reference(resource))
    for root, schema in (("spec", structural_schema(resource.spec_model)),
                         ("status", structural_schema(resource.status_model, keep_defaults=False))):
        for path, node in apidocs.objects(schema, root):
            section = text.split(f"#### `{path}`\n", 1)[1].split("\n#### ", 1)[0]
            for name in node["properties"]:
                assert f"| `{name}`" in section, f"{path}.{name} is missing from the reference"
    for column in resource.printer_columns:
        assert f"| {column.name} | {column.type} | `{column.json_path}` |" in text


@pytest.mark.parametrize("resource", resources(), ids=lambda r: r.kind)
def test_every_condition_type_and_reason_is_documented(resource: ResourceDefinition) -> None:
    module = importlib.import_module(resource.spec_model.__module__)
    text = apidocs.conditions_reference()
    section = text.split(f"## {resource.kind}\n", 1)[1].split("\n## ", 1)[0]
    for enum in (module.ConditionType, module.Reason):
        docs = apidocs.member_docs(enum)
        for member in enum:
            assert docs[member.name].strip(), f"{enum.__name__}.{member.name} has no docstring"
            assert f"| `{member.value}` |" in section


class _Undocumented(KubeModel):
    documented: int = 1
    """Has a description."""
    bare: int = Field(default=2, ge=0)


class _UndocumentedStatus(StatusModel):
    phase: str | None = None
    """Phase."""


def test_an_undocumented_field_fails_the_generator() -> None:
    resource = ResourceDefinition(kind="Thing", plural="things", singular="thing", short_names=("th",),
                                  spec_model=_Undocumented, status_model=_UndocumentedStatus,
                                  printer_columns=(), description="A thing.")
    with pytest.raises(apidocs.UndocumentedError, match=r"spec\.bare"):
        apidocs.kind_reference(resource)
