"""A container's environment and command line, resolved as the kubelet resolves them.

- `envFrom` first (ConfigMaps and Secrets, with `prefix`, `optional`), then `env` in order;
  a `value` may reference variables defined before it as `$(NAME)` (`$$` escapes a `$`);
- `valueFrom`: `secretKeyRef` / `configMapKeyRef` (`optional` honoured), `fieldRef`
  (the Downward API fields the kubelet serves; `status.podIP` and `status.hostIP` are
  127.0.0.1 on the local node), `resourceFieldRef` (a limit or request divided by `divisor`,
  rounded up; an unset limit is the node's allocatable amount, as on a real node);
- `command` and `args` are expanded with the final environment.

A reference that cannot be resolved raises `ContainerConfigError` with the kubelet's message:
the kubelet then keeps the container waiting with reason `CreateContainerConfigError`.
Everything here is pure: Secrets and ConfigMaps are looked up before and passed in.

Not emulated: the `<SERVICE>_SERVICE_HOST` variables of `enableServiceLinks`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubeloop.local.node.quantities import QuantityError, divided_rounding_up

LOOPBACK = '127.0.0.1'
_LABEL_OR_ANNOTATION = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")
_ENV_NAME = re.compile(r'^[-._a-zA-Z][-._a-zA-Z0-9]*$')

# name -> the object, or None when it does not exist
ObjectLookup = Callable[[str], Mapping[str, Any] | None]


class ContainerConfigError(Exception):
    """The container cannot be created from its spec yet (the kubelet's CreateContainerConfigError)."""


@dataclass(frozen=True)
class EnvSources:
    """What env resolution reads besides the pod: Secrets, ConfigMaps and the node's allocatable."""

    secrets: ObjectLookup
    config_maps: ObjectLookup
    node_name: str
    allocatable: Mapping[str, str]


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: known names are replaced, unknown ones kept, `$$` is `$`."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != '$' or i + 1 >= len(text):
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == '$':
            out.append('$')
            i += 2
        elif following == '(':
            end = text.find(')', i + 2)
            if end < 0:
                out.append(text[i:])
                break
            name = text[i + 2:end]
            out.append(env[name] if name in env else text[i:end + 1])
            i = end + 1
        else:
            out.append(char)
            i += 1
    return ''.join(out)


def container_env(pod: Mapping[str, Any], container: Mapping[str, Any], sources: EnvSources) -> dict[str, str]:
    """The container's environment variables, in the order the kubelet defines them."""
    namespace = pod['metadata']['namespace']
    env: dict[str, str] = {}
    for source in container.get('envFrom') or []:
        env.update(_env_from(source, namespace, sources))
    for entry in container.get('env') or []:
        name = entry['name']
        if 'valueFrom' in entry and entry['valueFrom']:
            value = _value_from(entry['valueFrom'], pod, container, sources)
            if value is None:
                continue  # an optional reference to something missing defines nothing
            env[name] = value
        else:
            env[name] = expand(str(entry.get('value') or ''), env)
    return env


def command_line(container: Mapping[str, Any], env: Mapping[str, str]) -> tuple[list[str] | None, list[str] | None]:
    """`command` and `args` with `$(VAR)` expanded; None where the container leaves them to the image."""
    command = container.get('command')
    args = container.get('args')
    return ([expand(str(part), env) for part in command] if command else None,
            [expand(str(part), env) for part in args] if args is not None else None)


def _env_from(source: Mapping[str, Any], namespace: str, sources: EnvSources) -> dict[str, str]:
    prefix = str(source.get('prefix') or '')
    if source.get('configMapRef'):
        ref, lookup, kind = source['configMapRef'], sources.config_maps, 'configmap'
    elif source.get('secretRef'):
        ref, lookup, kind = source['secretRef'], sources.secrets, 'secret'
    else:
        return {}
    obj = lookup(ref['name'])
    if obj is None:
        if ref.get('optional'):
            return {}
        raise ContainerConfigError(f'{kind} "{ref["name"]}" not found')
    values = _secret_values(obj) if kind == 'secret' else _config_map_values(obj)
    return {prefix + key: value for key, value in values.items() if _ENV_NAME.match(prefix + key)}


def _value_from(value_from: Mapping[str, Any], pod: Mapping[str, Any], container: Mapping[str, Any],
                sources: EnvSources) -> str | None:
    namespace = pod['metadata']['namespace']
    if value_from.get('secretKeyRef'):
        return _key_ref(value_from['secretKeyRef'], sources.secrets, 'Secret', namespace, _secret_values)
    if value_from.get('configMapKeyRef'):
        return _key_ref(value_from['configMapKeyRef'], sources.config_maps, 'ConfigMap', namespace,
                        _config_map_values)
    if value_from.get('fieldRef'):
        return field_value(pod, str(value_from['fieldRef'].get('fieldPath', '')), sources.node_name)
    if value_from.get('resourceFieldRef'):
        return resource_value(container, value_from['resourceFieldRef'], sources.allocatable)
    raise ContainerConfigError(f'unsupported valueFrom: {sorted(value_from)}')


def _key_ref(ref: Mapping[str, Any], lookup: ObjectLookup, kind: str, namespace: str,
             values_of: Callable[[Mapping[str, Any]], dict[str, str]]) -> str | None:
    obj = lookup(ref['name'])
    optional = bool(ref.get('optional'))
    if obj is None:
        if optional:
            return None
        raise ContainerConfigError(f'{kind.lower()} "{ref["name"]}" not found')
    values = values_of(obj)
    if ref['key'] not in values:
        if optional:
            return None
        raise ContainerConfigError(f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}")
    return values[ref['key']]


def _secret_values(secret: Mapping[str, Any]) -> dict[str, str]:
    """A Secret's `data` (base64) decoded; `stringData` too, which kube-apiserver would merge in."""
    values = {}
    for key, encoded in (secret.get('data') or {}).items():
        try:
            values[key] = base64.b64decode(str(encoded), validate=True).decode('utf-8', errors='replace')
        except (binascii.Error, ValueError) as exc:
            raise ContainerConfigError(f'secret {secret["metadata"]["name"]} key {key} is not base64: {exc}') from exc
    values.update({key: str(value) for key, value in (secret.get('stringData') or {}).items()})
    return values


def _config_map_values(config_map: Mapping[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in (config_map.get('data') or {}).items()}


def field_value(pod: Mapping[str, Any], path: str, node_name: str) -> str:
    """The Downward API value of `path` for this pod on the local node."""
    meta = pod.get('metadata') or {}
    simple = {
        'metadata.name': meta.get('name', ''),
        'metadata.namespace': meta.get('namespace', ''),
        'metadata.uid': meta.get('uid', ''),
        'spec.nodeName': (pod.get('spec') or {}).get('nodeName') or node_name,
        'spec.serviceAccountName': (pod.get('spec') or {}).get('serviceAccountName', ''),
        'status.podIP': LOOPBACK,
        'status.podIPs': LOOPBACK,
        'status.hostIP': LOOPBACK,
        'status.hostIPs': LOOPBACK,
    }
    if path in simple:
        return str(simple[path])
    match = _LABEL_OR_ANNOTATION.match(path)
    if match:
        return str((meta.get(match[1]) or {}).get(match[2], ''))
    raise ContainerConfigError(f'unsupported fieldRef path "{path}"')


def resource_value(container: Mapping[str, Any], ref: Mapping[str, Any], allocatable: Mapping[str, str]) -> str:
    """A `resourceFieldRef` value: `limits.cpu`, `requests.memory`... divided by `divisor`, rounded up."""
    kind, _, resource = str(ref.get('resource', '')).partition('.')
    resources = container.get('resources') or {}
    if kind not in ('limits', 'requests') or not resource:
        raise ContainerConfigError(f'unsupported resourceFieldRef resource "{ref.get("resource")}"')
    amount = (resources.get(kind) or {}).get(resource)
    if amount is None:
        amount = allocatable.get(resource, '0') if kind == 'limits' else '0'
    try:
        return divided_rounding_up(amount, ref.get('divisor') or '1')
    except QuantityError as exc:
        raise ContainerConfigError(str(exc)) from exc
