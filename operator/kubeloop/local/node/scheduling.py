"""Whether a pod fits the one local node: kube-scheduler's filters that matter here.

- extended resources (`nvidia.com/gpu`, hugepages, anything but cpu, memory and
  ephemeral-storage) that the node does not have: Insufficient <resource>;
- `nodeSelector` labels the node does not carry.

cpu and memory requests are deliberately not counted against the node: local processes
share the machine, and a training pod requesting 4 cores must still run on a 2-core laptop.
Pods for another scheduler (`schedulerName`) or already bound to another node name are
left alone, as the default scheduler and this node's kubelet would. The message has the
scheduler's format: "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: ...".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_SCHEDULER = 'default-scheduler'
NODE_RESOURCES = frozenset({'cpu', 'memory', 'ephemeral-storage', 'pods'})
_SELECTOR_MISMATCH = "node(s) didn't match Pod's node affinity/selector"


def is_for_default_scheduler(pod: Mapping[str, Any]) -> bool:
    return (pod.get('spec') or {}).get('schedulerName', DEFAULT_SCHEDULER) == DEFAULT_SCHEDULER


def requested_resources(pod_spec: Mapping[str, Any]) -> set[str]:
    """Every resource name a container or init container requests or limits."""
    names: set[str] = set()
    for container in [*(pod_spec.get('initContainers') or []), *(pod_spec.get('containers') or [])]:
        resources = container.get('resources') or {}
        names.update(resources.get('requests') or {})
        names.update(resources.get('limits') or {})
    return names


def unschedulable_reasons(pod: Mapping[str, Any], node_labels: Mapping[str, str],
                          node_capacity: Mapping[str, str]) -> list[str]:
    """Why the node cannot take the pod, in kube-scheduler's words (empty when it fits)."""
    spec = pod.get('spec') or {}
    reasons = []
    selector = spec.get('nodeSelector') or {}
    if any(node_labels.get(key) != value for key, value in selector.items()):
        reasons.append(_SELECTOR_MISMATCH)
    missing = sorted(name for name in requested_resources(spec)
                     if name not in NODE_RESOURCES and _quantity_absent(node_capacity.get(name)))
    reasons.extend(f'Insufficient {name}' for name in missing)
    return reasons


def _quantity_absent(value: str | None) -> bool:
    return value in (None, '', '0')


def unschedulable_message(reasons: list[str]) -> str:
    """kube-scheduler's FitError message for one node."""
    listed = ', '.join(f'1 {reason}' for reason in reasons)
    return (f'0/1 nodes are available: {listed}. preemption: 0/1 nodes are available: '
            f'1 No preemption victims found for incoming pod.')
