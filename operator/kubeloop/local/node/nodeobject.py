"""The local node's Node object: what the kubelet registers and keeps reporting.

Capacity is this machine's (cpu cores, memory, disk of the state directory, 110 pods) and
no extended resources: no GPUs, so a pod asking for `nvidia.com/gpu` stays Pending. The
address is 127.0.0.1 and `status.daemonEndpoints.kubeletEndpoint.Port` the kubelet's log
endpoint, which the API server uses to serve `pods/log` as kube-apiserver asks a kubelet.
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubeloop import __version__
from kubeloop.local.node.localnet import LOOPBACK

MAX_PODS = 110  # the kubelet's default


def machine_capacity(state_dir: Path) -> dict[str, str]:
    """cpu, memory, ephemeral-storage and pods of this machine, as Kubernetes quantities."""
    return {
        'cpu': str(os.cpu_count() or 1),
        'memory': f'{_memory_kib()}Ki',
        'ephemeral-storage': f'{shutil.disk_usage(_existing_parent(state_dir)).total // 1024}Ki',
        'pods': str(MAX_PODS),
    }


def _memory_kib() -> int:
    try:
        for line in Path('/proc/meminfo').read_text().splitlines():
            if line.startswith('MemTotal:'):
                return int(line.split()[1])
    except OSError:
        pass
    pages, page_size = os.sysconf('SC_PHYS_PAGES'), os.sysconf('SC_PAGE_SIZE')
    return int(pages * page_size // 1024)


def _existing_parent(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def node_labels(name: str) -> dict[str, str]:
    arch = {'x86_64': 'amd64', 'aarch64': 'arm64'}.get(platform.machine(), platform.machine())
    return {
        'kubernetes.io/hostname': name,
        'kubernetes.io/os': 'linux' if platform.system() == 'Linux' else platform.system().lower(),
        'kubernetes.io/arch': arch,
        'beta.kubernetes.io/os': 'linux' if platform.system() == 'Linux' else platform.system().lower(),
        'beta.kubernetes.io/arch': arch,
        'node.kubernetes.io/instance-type': 'kubeloop-local',
    }


def node_manifest(name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {'apiVersion': 'v1', 'kind': 'Node', 'metadata': {'name': name, 'labels': dict(labels)},
            'spec': {}}


def node_status(*, name: str, capacity: Mapping[str, str], kubelet_port: int, boot_id: str, now: str,
                ready: bool, message: str = 'kubelet is posting ready status') -> dict[str, Any]:
    """The Node status: conditions, capacity, addresses, the kubelet endpoint and node info."""
    pressure = [
        ('MemoryPressure', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
        ('DiskPressure', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
        ('PIDPressure', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
    ]
    conditions = [{'type': kind, 'status': 'False', 'reason': reason, 'message': text,
                   'lastHeartbeatTime': now, 'lastTransitionTime': now} for kind, reason, text in pressure]
    conditions.append({'type': 'Ready', 'status': 'True' if ready else 'False',
                       'reason': 'KubeletReady' if ready else 'KubeletNotReady', 'message': message,
                       'lastHeartbeatTime': now, 'lastTransitionTime': now})
    return {
        'capacity': dict(capacity),
        'allocatable': dict(capacity),
        'conditions': conditions,
        'addresses': [{'type': 'InternalIP', 'address': LOOPBACK}, {'type': 'Hostname', 'address': name}],
        'daemonEndpoints': {'kubeletEndpoint': {'Port': kubelet_port}},
        'nodeInfo': {
            'machineID': boot_id, 'systemUUID': boot_id, 'bootID': boot_id,
            'kernelVersion': platform.release(), 'osImage': platform.platform(),
            'containerRuntimeVersion': f'kubeloop-local://{__version__}',
            'kubeletVersion': f'v1.37.0-kubeloop.{__version__}', 'kubeProxyVersion': '',
            'operatingSystem': 'linux' if platform.system() == 'Linux' else platform.system().lower(),
            'architecture': node_labels(name)['kubernetes.io/arch'],
        },
    }


def kept_transition_times(new: dict[str, Any], old: Mapping[str, Any] | None) -> dict[str, Any]:
    """Node conditions keep their lastTransitionTime while their status stays the same."""
    before = {c['type']: c for c in ((old or {}).get('conditions') or [])}
    for condition in new['conditions']:
        previous = before.get(condition['type'])
        if previous and previous.get('status') == condition['status'] and previous.get('lastTransitionTime'):
            condition['lastTransitionTime'] = previous['lastTransitionTime']
    return new
