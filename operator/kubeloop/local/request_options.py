"""Reading a Kubernetes API request: its path, its body, its query options.

kube-apiserver's conventions for what a URL names (`/api/v1/namespaces/x` is a namespace,
`/api/v1/namespaces/x/pods` its pods), which query parameters mean what (dryRun,
fieldValidation, propagationPolicy...), and how bad values are refused (400 or 422).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import kmock
import yaml

from kubeloop.local import errors
from kubeloop.local.operations import APPLY_PATCH, PROPAGATION_POLICIES, DeleteOptions, WriteOptions

_NAMESPACE_SUBRESOURCES = frozenset({'status', 'finalize'})


@dataclass(frozen=True)
class Route:
    """A Kubernetes API path taken apart (group None: not an API resource path)."""

    group: str | None = None
    version: str | None = None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_route(path: str) -> Route:
    parts = [part for part in path.split('/') if part]
    if parts[:1] == ['api']:
        group, rest = '', parts[1:]
    elif parts[:1] == ['apis'] and len(parts) >= 2:
        group, rest = parts[1], parts[2:]
    else:
        return Route()
    version, rest = (rest[0], rest[1:]) if rest else (None, [])
    namespace = None
    # /namespaces/<ns>/<plural>... is namespaced content; /namespaces/<ns>[/status|/finalize] is a namespace.
    if rest[:1] == ['namespaces'] and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in _NAMESPACE_SUBRESOURCES):
        namespace, rest = rest[1], rest[2:]
    plural = rest[0] if rest else None
    name = rest[1] if len(rest) > 1 else None
    subresource = '/'.join(rest[2:]) or None
    return Route(group, version, plural, namespace, name, subresource)


def kmock_action(route: Route, method: str, watch: str | None) -> kmock.action | None:
    """The Kubernetes action as kmock's DSL names it (for `server['list pods']` and the like)."""
    if route.group is None:
        return None
    if method == 'GET' and watch in ('true', '1'):
        return kmock.action.WATCH
    if route.name is None:
        return {'GET': kmock.action.LIST, 'POST': kmock.action.CREATE}.get(method)
    return {'GET': kmock.action.FETCH, 'PATCH': kmock.action.UPDATE, 'DELETE': kmock.action.DELETE}.get(method)


def decode_body(content_type: str, body: bytes) -> Any:
    """The parsed body for kmock's DSL matching (None when it does not parse)."""
    if not body:
        return None
    try:
        if content_type == APPLY_PATCH or content_type.endswith('yaml'):
            return yaml.safe_load(body)
        return json.loads(body)
    except (ValueError, yaml.YAMLError):
        return None


def require_body(raw: aiohttp.web.BaseRequest, request: kmock.Request) -> Any:
    content_type = raw.content_type
    if content_type.startswith('application/vnd.kubernetes.protobuf'):
        raise errors.unsupported_media_type(content_type, ('application/json', 'application/yaml'))
    if request.data is None:
        if not request.body:
            raise errors.bad_request('the request has no body: an object is expected')
        raise errors.bad_request(f'the body of the request does not parse as {content_type or "JSON"}')
    return request.data


def is_watch(raw: aiohttp.web.BaseRequest) -> bool:
    return raw.query.get('watch') in ('true', '1')


def optional_bool(query: Any, key: str) -> bool | None:
    value = query.get(key)
    if value in (None, ''):
        return None
    if value in ('true', '1'):
        return True
    if value in ('false', '0'):
        return False
    raise errors.bad_request(f'{key}: invalid boolean value "{value}"')


def non_negative_int(query: Any, key: str) -> int | None:
    value = query.get(key)
    if value in (None, ''):
        return None
    try:
        number = int(value)
    except ValueError:
        raise errors.bad_request(f'{key}: invalid integer value "{value}"') from None
    if number < 0:
        raise errors.bad_request(f'{key}: must be non-negative, not {number}')
    return number


def refuse_shard_selector(raw: aiohttp.web.BaseRequest) -> None:
    if raw.query.get('shardSelector'):
        raise errors.bad_request('shardSelector is not emulated by the local API server')


def dry_run(values: Sequence[str]) -> bool:
    for value in values:
        if value != 'All':
            raise errors.bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    return bool(values)


def write_options(raw: aiohttp.web.BaseRequest) -> WriteOptions:
    query = raw.query
    return WriteOptions(
        dry_run=dry_run(query.getall('dryRun', [])),
        field_validation=query.get('fieldValidation') or 'Warn',
        field_manager=query.get('fieldManager'),
        force=optional_bool(query, 'force') or False,
    )


def delete_options(raw: aiohttp.web.BaseRequest, request: kmock.Request) -> DeleteOptions:
    """DeleteOptions from the body (kubectl, client libraries) and the query (curl, kopf)."""
    body = request.data if isinstance(request.data, dict) else {}
    if request.body and not isinstance(request.data, dict):
        raise errors.bad_request('the body of a DELETE must be a DeleteOptions object')
    query = raw.query
    policy = body.get('propagationPolicy') or query.get('propagationPolicy')
    orphan = body.get('orphanDependents')
    if orphan is None:
        orphan = optional_bool(query, 'orphanDependents')
    causes = []
    if policy is not None and policy not in PROPAGATION_POLICIES:
        causes.append(errors.Cause('propagationPolicy', 'FieldValueNotSupported',
                                   f'Unsupported value: "{policy}": supported values: "Foreground", '
                                   '"Background", "Orphan"'))
    if policy is not None and orphan is not None:
        causes.append(errors.Cause('propagationPolicy', 'FieldValueInvalid',
                                   'Invalid value: Cannot both set OrphanDependents and PropagationPolicy'))
    if causes:
        raise errors.invalid('meta.k8s.io', 'DeleteOptions', '', causes)
    preconditions = body.get('preconditions') or {}
    return DeleteOptions(
        dry_run=dry_run([*query.getall('dryRun', []), *(body.get('dryRun') or [])]),
        propagation_policy=policy,
        orphan_dependents=orphan,
        precondition_uid=preconditions.get('uid'),
        precondition_resource_version=preconditions.get('resourceVersion'),
    )
