"""Checks of `metadata` that kube-apiserver applies to every kind.

Shape errors (a label that is not a string) are decoding errors: 400 BadRequest, with kube's
message. Value errors are 422 causes: `schema.validate_object_metadata` checks what all kinds
share (labels, annotations, owner references, finalizers, a DNS-subdomain name); a few
built-in kinds name their objects by another rule, which this module applies instead.
"""

from __future__ import annotations

import re
from typing import Any

from kubeloop.local.schema import FieldError, validate_object_metadata

_LABEL_1123 = r'[a-z0-9]([-a-z0-9]*[a-z0-9])?'
_LABEL_1035 = r'[a-z]([-a-z0-9]*[a-z0-9])?'
_LABEL_1123_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    f"validation is '{_LABEL_1123}')")
_LABEL_1035_MESSAGE = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
    f"regex used for validation is '{_LABEL_1035}')")
_PATH_SEGMENT_GROUPS = frozenset({'rbac.authorization.k8s.io'})  # e.g. "system:controller:x"
_NAME_FIELDS = frozenset({'metadata.name', 'metadata.generateName'})

_JSON_TYPE_NAMES = {str: 'string', int: 'number', float: 'number', bool: 'bool', list: 'array',
                    dict: 'object', type(None): 'null'}


def decoding_problem(meta: Any) -> str | None:
    """Kube's decoding error for a metadata of the wrong shape, or None when it decodes."""
    if not isinstance(meta, dict):
        return _unmarshal_message(meta, 'metadata', 'ObjectMeta')
    for key in ('name', 'generateName', 'namespace', 'resourceVersion', 'uid'):
        if key in meta and not isinstance(meta[key], str | None):
            return _unmarshal_message(meta[key], f'metadata.{key}', 'string')
    for key in ('labels', 'annotations'):
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            return _unmarshal_message(value, f'metadata.{key}', 'map[string]string')
        for item in value.values():
            if not isinstance(item, str):
                return _unmarshal_message(item, f'metadata.{key}', 'string')
    finalizers = meta.get('finalizers')
    if finalizers is not None and not (isinstance(finalizers, list) and all(isinstance(f, str) for f in finalizers)):
        return _unmarshal_message(finalizers, 'metadata.finalizers', '[]string')
    refs = meta.get('ownerReferences')
    if refs is not None and not (isinstance(refs, list) and all(isinstance(r, dict) for r in refs)):
        return _unmarshal_message(refs, 'metadata.ownerReferences', '[]v1.OwnerReference')
    return None


def _unmarshal_message(value: Any, field: str, go_type: str) -> str:
    json_type = _JSON_TYPE_NAMES.get(type(value), 'value')
    return f'json: cannot unmarshal {json_type} into Go struct field ObjectMeta.{field} of type {go_type}'


def metadata_errors(group: str, plural: str, obj: dict[str, Any], *, namespaced: bool) -> list[FieldError]:
    """Every value problem of an object's metadata, with the kind's own rule for names."""
    errors = validate_object_metadata(obj, namespaced=namespaced)
    name_rule = _special_name_rule(group, plural)
    if name_rule is None:
        return errors
    name = (obj.get('metadata') or {}).get('name') or ''
    return [error for error in errors if error.field not in _NAME_FIELDS] + [
        FieldError('metadata.name', 'FieldValueInvalid', name, problem) for problem in name_rule(name)]


def _special_name_rule(group: str, plural: str) -> Any:
    if group in _PATH_SEGMENT_GROUPS:
        return _path_segment_problems
    if (group, plural) == ('', 'namespaces'):
        return lambda name: _label_problems(name, _LABEL_1123, _LABEL_1123_MESSAGE)
    if (group, plural) == ('', 'services'):
        return lambda name: _label_problems(name, _LABEL_1035, _LABEL_1035_MESSAGE)
    return None


def _label_problems(name: str, pattern: str, message: str) -> list[str]:
    problems = [] if len(name) <= 63 else ['must be no more than 63 characters']
    return problems + ([] if re.fullmatch(pattern, name) else [message])


def _path_segment_problems(name: str) -> list[str]:
    if name in ('.', '..'):
        return [f"may not be '{name}'"]
    return [f"may not contain '{char}'" for char in ('/', '%') if char in name]
