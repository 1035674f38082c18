"""Local networking: every pod of the local node shares 127.0.0.1.

There is no cluster DNS and no pod network, so the kubelet rewrites what a container is
told about addresses (its env values and args), and nothing else:

1. A cluster-DNS name of a Service that exists in the cluster becomes `127.0.0.1`:
   `<service>.<namespace>.svc[.cluster.local]` and a headless Service's pod names
   `<hostname>.<service>.<namespace>.svc[.cluster.local]` anywhere in a value (URLs keep
   their scheme, port and path); the short forms `<hostname>.<service>[.<namespace>]`
   (optionally `:port`) only when they are the whole value. Ports are not translated: a
   process listens on its own port on 127.0.0.1, so a Service whose port equals its
   targetPort works, others do not (there is no kube-proxy).
2. In pods of a Job, `MASTER_ADDR` is `127.0.0.1` and `MASTER_PORT` is the Job's own
   rendezvous port: the Job controller picks one free port per Job and records it in the
   Job's and its pods' annotation `local.kubeloop.dev/rendezvous-port`, so that all pods of
   one Job agree and two Jobs never collide on torch's default 29500.
3. The Downward API's `status.podIP` / `status.hostIP` are `127.0.0.1` (see containerenv).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

LOOPBACK = '127.0.0.1'
RENDEZVOUS_PORT_ANNOTATION = 'local.kubeloop.dev/rendezvous-port'
RENDEZVOUS_ENV = ('MASTER_ADDR', 'MASTER_PORT')

ServiceKey = tuple[str, str]  # (namespace, name)

_LABEL = r'[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?'
_CLUSTER_NAME = re.compile(
    rf'(?<![\w.-])(?P<labels>{_LABEL}(?:\.{_LABEL}){{1,2}})\.svc(?:\.cluster\.local)?\.?(?![\w-]|\.\w)')
_SHORT_POD_NAME = re.compile(rf'^(?P<host>{_LABEL})\.(?P<service>{_LABEL})(?:\.(?P<namespace>{_LABEL}))?'
                             r'(?P<port>:\d+)?$')


def owning_job(pod: Mapping[str, Any]) -> str | None:
    """The name of the Job that controls this pod, if any."""
    for ref in (pod.get('metadata') or {}).get('ownerReferences') or []:
        if ref.get('controller') and ref.get('kind') == 'Job' and str(ref.get('apiVersion', '')).startswith('batch/'):
            return str(ref['name'])
    return None


def needs_rendezvous_port(pod_spec: Mapping[str, Any]) -> bool:
    """Whether a pod template declares torch's rendezvous variables (then its Job gets a port)."""
    containers = [*(pod_spec.get('initContainers') or []), *(pod_spec.get('containers') or [])]
    return any(entry.get('name') in RENDEZVOUS_ENV for c in containers for entry in c.get('env') or [])


def rendezvous_overrides(pod: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """MASTER_ADDR / MASTER_PORT values for a Job's pod (only those the container defines)."""
    if owning_job(pod) is None:
        return {}
    overrides = {}
    if 'MASTER_ADDR' in env:
        overrides['MASTER_ADDR'] = LOOPBACK
    port = ((pod.get('metadata') or {}).get('annotations') or {}).get(RENDEZVOUS_PORT_ANNOTATION)
    if 'MASTER_PORT' in env and port:
        overrides['MASTER_PORT'] = str(port)
    return overrides


def service_candidates(texts: Iterable[str], namespace: str) -> set[ServiceKey]:
    """Services that cluster-DNS names in `texts` would refer to (to look up before rewriting)."""
    found: set[ServiceKey] = set()
    for text in texts:
        for match in _CLUSTER_NAME.finditer(text):
            found.add(_service_of(match['labels']))
        short = _SHORT_POD_NAME.match(text)
        if short:
            found.add((short['namespace'] or namespace, short['service']))
    return found


def rewrite_cluster_names(text: str, namespace: str, services: set[ServiceKey]) -> str:
    """`text` with cluster-DNS names of existing Services replaced by 127.0.0.1."""
    short = _SHORT_POD_NAME.match(text)
    if short and (short['namespace'] or namespace, short['service']) in services:
        return LOOPBACK + (short['port'] or '')

    def replace(match: re.Match[str]) -> str:
        return LOOPBACK if _service_of(match['labels']) in services else match[0]

    return _CLUSTER_NAME.sub(replace, text)


def _service_of(labels: str) -> ServiceKey:
    parts = labels.split('.')
    if len(parts) == 2:  # <service>.<namespace>
        return parts[1], parts[0]
    return parts[2], parts[1]  # <hostname>.<service>.<namespace>
