"""CustomResourceDefinitions: what the local API server accepts, serves and reports.

A CRD that kube-apiserver would reject is refused the same way (422 naming the field); a CRD
that uses what the local server does not emulate (CEL rules, which `schema.py` reports,
conversion webhooks, served versions with different schemas) is refused with a 422 saying
so, rather than accepted and then silently not enforced.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from kubeloop.local.catalog import ALL_VERBS, CustomVersion, ResourceDef
from kubeloop.local.errors import Cause
from kubeloop.local.schema import structural_schema_problems

CRD_GROUP = 'apiextensions.k8s.io'
CRD_PLURAL = 'customresourcedefinitions'
CLEANUP_FINALIZER = 'customresourcecleanup.apiextensions.k8s.io'
NOT_EMULATED = 'not emulated by the local API server'


def _spec(crd: dict[str, Any]) -> dict[str, Any]:
    spec = crd.get('spec')
    return spec if isinstance(spec, dict) else {}


def _names(crd: dict[str, Any]) -> dict[str, Any]:
    names = _spec(crd).get('names')
    return names if isinstance(names, dict) else {}


def _versions(crd: dict[str, Any]) -> list[dict[str, Any]]:
    versions = _spec(crd).get('versions')
    return [v for v in versions if isinstance(v, dict)] if isinstance(versions, list) else []


def crd_problems(crd: dict[str, Any]) -> list[Cause]:
    """Why this CRD cannot be served (empty when it can), as field causes."""
    return [*_required_field_problems(crd), *_version_problems(crd), *_unsupported_feature_problems(crd)]


def _required_field_problems(crd: dict[str, Any]) -> Iterator[Cause]:
    spec, names = _spec(crd), _names(crd)
    for path, value in [('spec.group', spec.get('group')), ('spec.names.plural', names.get('plural')),
                        ('spec.names.kind', names.get('kind'))]:
        if not value or not isinstance(value, str):
            yield Cause(path, 'FieldValueRequired', 'Required value')
    if spec.get('scope') not in ('Namespaced', 'Cluster'):
        yield Cause('spec.scope', 'FieldValueNotSupported',
                    f'Unsupported value: {json.dumps(spec.get("scope"))}: '
                    'supported values: "Cluster", "Namespaced"')
    name = (crd.get('metadata') or {}).get('name')
    expected = f"{names.get('plural')}.{spec.get('group')}"
    if name != expected:
        yield Cause('metadata.name', 'FieldValueInvalid',
                    f'Invalid value: {json.dumps(name)}: must be spec.names.plural+"."+spec.group')


def _version_problems(crd: dict[str, Any]) -> Iterator[Cause]:
    versions = _versions(crd)
    if not versions:
        yield Cause('spec.versions', 'FieldValueInvalid', 'Invalid value: []: must have exactly one version'
                    ' marked as storage version')
        return
    if sum(1 for v in versions if v.get('storage')) != 1:
        yield Cause('spec.versions', 'FieldValueInvalid',
                    'Invalid value: must have exactly one version marked as storage version')
    for index, version in enumerate(versions):
        path = f'spec.versions[{index}]'
        if not version.get('name'):
            yield Cause(f'{path}.name', 'FieldValueRequired', 'Required value')
        schema = (version.get('schema') or {}).get('openAPIV3Schema')
        if not isinstance(schema, dict):
            yield Cause(f'{path}.schema.openAPIV3Schema', 'FieldValueRequired',
                        'Required value: schemas are required')
            continue
        for problem in structural_schema_problems(schema):
            yield Cause(f'{path}.schema.openAPIV3Schema', 'FieldValueInvalid', problem)


def _unsupported_feature_problems(crd: dict[str, Any]) -> Iterator[Cause]:
    spec = _spec(crd)
    if (spec.get('conversion') or {}).get('strategy', 'None') != 'None':
        yield Cause('spec.conversion.strategy', 'FieldValueNotSupported',
                    f'Unsupported value: {json.dumps(spec["conversion"]["strategy"])}: '
                    f'conversion webhooks are {NOT_EMULATED}; use strategy "None"')
    if spec.get('preserveUnknownFields'):
        yield Cause('spec.preserveUnknownFields', 'FieldValueInvalid',
                    'Invalid value: true: must be false in order to use defaults in the schema')
    served = [v for v in _versions(crd) if v.get('served')]
    schemas = {json.dumps((v.get('schema') or {}).get('openAPIV3Schema'), sort_keys=True) for v in served}
    if len(schemas) > 1:
        yield Cause('spec.versions', 'FieldValueNotSupported',
                    f'served versions with different schemas need conversion, which is {NOT_EMULATED}')


def accepted_names(crd: dict[str, Any]) -> dict[str, Any]:
    names = dict(_names(crd))
    names.setdefault('singular', str(names.get('kind', '')).lower())
    names.setdefault('listKind', f"{names.get('kind', '')}List")
    return names


def resource_definitions(crd: dict[str, Any]) -> list[ResourceDef]:
    """One served resource per served version of the CRD."""
    spec, names = _spec(crd), accepted_names(crd)
    return [
        ResourceDef(
            group=spec['group'],
            version=version['name'],
            plural=names['plural'],
            kind=names['kind'],
            singular=names['singular'],
            namespaced=spec['scope'] == 'Namespaced',
            verbs=ALL_VERBS,
            short_names=frozenset(names.get('shortNames') or ()),
            categories=frozenset(names.get('categories') or ()),
            subresources=frozenset(sub for sub in ('status', 'scale') if sub in (version.get('subresources') or {})),
            custom=CustomVersion(crd_name=crd['metadata']['name'], version=version),
        )
        for version in _versions(crd) if version.get('served')
    ]


def storage_version(crd: dict[str, Any]) -> str:
    return next(v['name'] for v in _versions(crd) if v.get('storage'))


def condition(type_: str, status: str, reason: str, message: str, now: str) -> dict[str, str]:
    return {'type': type_, 'status': status, 'lastTransitionTime': now, 'reason': reason, 'message': message}


def established_status(crd: dict[str, Any], previous: dict[str, Any] | None, now: str) -> dict[str, Any]:
    """The status the apiextensions controllers would write once the names are accepted."""
    stored = list((previous or {}).get('storedVersions') or [])
    if storage_version(crd) not in stored:
        stored.append(storage_version(crd))
    old_conditions = {c.get('type'): c for c in (previous or {}).get('conditions') or []}
    conditions = [
        condition('NamesAccepted', 'True', 'NoConflicts', 'no conflicts found', now),
        condition('Established', 'True', 'InitialNamesAccepted', 'the initial names have been accepted', now),
    ]
    # Keep the transition time of a condition that did not flip, as controllers do.
    for cond in conditions:
        old = old_conditions.get(cond['type'])
        if old is not None and old.get('status') == cond['status']:
            cond['lastTransitionTime'] = old.get('lastTransitionTime', now)
    return {'conditions': conditions, 'acceptedNames': accepted_names(crd), 'storedVersions': stored}


def terminating_status(status: dict[str, Any], now: str) -> dict[str, Any]:
    conditions = [c for c in status.get('conditions') or [] if c.get('type') != 'Terminating']
    conditions.append(condition('Terminating', 'True', 'InstanceDeletionInProgress',
                                'CustomResource deletion is in progress', now))
    return {**status, 'conditions': conditions}
