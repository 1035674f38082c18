"""The `/scale` subresource: an autoscaling/v1 `Scale` view of an object's replica count.

Built-in workloads keep replicas at `.spec.replicas` / `.status.replicas` and their selector
at `.spec.selector`; a CRD says where in its `subresources.scale` (`specReplicasPath`,
`statusReplicasPath`, `labelSelectorPath`). Reading builds the Scale; writing sets only the
spec replicas of the object, through the ordinary update path.
"""

from __future__ import annotations

from typing import Any

from kubeloop.local import errors
from kubeloop.local.catalog import ResourceDef
from kubeloop.local.errors import Cause
from kubeloop.local.selectors import SelectorError, label_selector_from_spec
from kubeloop.local.store import metadata

_BUILT_IN_PATHS = {'specReplicasPath': '.spec.replicas', 'statusReplicasPath': '.status.replicas'}
_BUILT_IN_SCALABLE = frozenset({('apps', 'deployments'), ('apps', 'replicasets'), ('apps', 'statefulsets'),
                                ('', 'replicationcontrollers')})


def scale_paths(res: ResourceDef) -> dict[str, str]:
    """Where the replica counts live (404 when the resource has no /scale)."""
    if res.custom is not None:
        paths = ((res.custom.version.get('subresources') or {}).get('scale'))
        if isinstance(paths, dict) and paths.get('specReplicasPath'):
            return paths
    elif (res.group, res.plural) in _BUILT_IN_SCALABLE:
        return _BUILT_IN_PATHS
    raise errors.unknown_path()


def _dig(obj: Any, path: str) -> Any:
    for key in path.lstrip('.').split('.'):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _with_value(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `obj` with `value` at a dotted path (copying only the dicts on the way)."""
    head, _, rest = path.lstrip('.').partition('.')
    if not rest:
        return {**obj, head: value}
    child = obj.get(head)
    return {**obj, head: _with_value(child if isinstance(child, dict) else {}, rest, value)}


def _selector(res: ResourceDef, obj: dict[str, Any], paths: dict[str, str]) -> str | None:
    if res.custom is not None:
        selector = _dig(obj, paths['labelSelectorPath']) if paths.get('labelSelectorPath') else None
        return selector if isinstance(selector, str) else None
    spec_selector = (obj.get('spec') or {}).get('selector')
    if res.plural == 'replicationcontrollers':  # a plain map of labels, not a LabelSelector
        spec_selector = {'matchLabels': spec_selector} if isinstance(spec_selector, dict) else None
    try:
        return str(label_selector_from_spec(spec_selector)) if spec_selector is not None else None
    except SelectorError:
        return None


def scale_of(res: ResourceDef, obj: dict[str, Any]) -> dict[str, Any]:
    paths = scale_paths(res)
    meta = metadata(obj)
    status: dict[str, Any] = {'replicas': _dig(obj, paths['statusReplicasPath']) or 0}
    selector = _selector(res, obj, paths)
    if selector is not None:
        status['selector'] = selector
    return {
        'kind': 'Scale',
        'apiVersion': 'autoscaling/v1',
        'metadata': {key: meta[key] for key in ('name', 'namespace', 'uid', 'resourceVersion', 'creationTimestamp')
                     if key in meta},
        'spec': {'replicas': _dig(obj, paths['specReplicasPath']) or 0},
        'status': status,
    }


def scaled(res: ResourceDef, obj: dict[str, Any], scale: Any) -> dict[str, Any]:
    """The object with the spec replicas a Scale asks for (422 for a bad count)."""
    replicas = (scale.get('spec') or {}).get('replicas') if isinstance(scale, dict) else None
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise errors.invalid('autoscaling', 'Scale', metadata(obj)['name'], [Cause(
            'spec.replicas', 'FieldValueInvalid',
            f'Invalid value: {replicas!r}: must be greater than or equal to 0')])
    sent_version = (scale.get('metadata') or {}).get('resourceVersion')
    updated = _with_value(obj, scale_paths(res)['specReplicasPath'], replicas)
    return {**updated, 'metadata': {**metadata(updated), 'resourceVersion': sent_version}} if sent_version \
        else updated
