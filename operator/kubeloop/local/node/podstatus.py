"""Pod status as the kubelet writes it, computed from what the local node knows of its containers.

Pure functions: `ContainerRecord`s (one per container, kept by the pod's worker) and the
pod go in, a `status` document comes out: `phase` by the kubelet's rules, the conditions
PodReadyToStartContainers, Initialized, ContainersReady, Ready and PodScheduled (their
`lastTransitionTime` kept while their status does not change), `containerStatuses` /
`initContainerStatuses`, `startTime` and the pod/host IPs (127.0.0.1 on the local node).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubeloop.local.node.localnet import LOOPBACK

PENDING, RUNNING, SUCCEEDED, FAILED = 'Pending', 'Running', 'Succeeded', 'Failed'
TERMINAL_PHASES = (SUCCEEDED, FAILED)
CONTAINER_CREATING = 'ContainerCreating'
POD_INITIALIZING = 'PodInitializing'
CREATE_CONTAINER_CONFIG_ERROR = 'CreateContainerConfigError'
CRASH_LOOP_BACK_OFF = 'CrashLoopBackOff'
START_ERROR = 'StartError'
START_ERROR_EXIT_CODE = 128  # what container runtimes report for a container that could not start


@dataclass
class ContainerRecord:
    """What the node knows of one container: the state the kubelet reports for it."""

    name: str
    image: str
    init: bool = False
    restart_count: int = 0
    state: dict[str, Any] = field(default_factory=lambda: {'waiting': {'reason': CONTAINER_CREATING}})
    last_state: dict[str, Any] = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    container_id: str = ''

    @property
    def running(self) -> bool:
        return 'running' in self.state

    @property
    def terminated(self) -> dict[str, Any] | None:
        return self.state.get('terminated')

    @property
    def succeeded(self) -> bool:
        return self.terminated is not None and self.terminated.get('exitCode') == 0

    def as_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            'name': self.name, 'image': self.image, 'imageID': '', 'ready': self.ready,
            'restartCount': self.restart_count, 'started': self.started,
            'state': self.state, 'lastState': self.last_state,
        }
        if self.container_id:
            status['containerID'] = self.container_id
        return status


@dataclass(frozen=True)
class PodFailure:
    """A pod the node ends as Failed without running it (status.reason and message)."""

    reason: str
    message: str


def pod_phase(restart_policy: str, init: Sequence[ContainerRecord], regular: Sequence[ContainerRecord],
              failure: PodFailure | None = None) -> str:
    """The kubelet's getPhase: from the containers' states and the pod's restartPolicy."""
    if failure is not None:
        return FAILED
    for record in init:
        if record.succeeded:
            continue
        if record.terminated is not None and restart_policy == 'Never':
            return FAILED
        return PENDING
    waiting = running = stopped = succeeded = 0
    for record in regular:
        if record.running:
            running += 1
        elif record.terminated is not None:
            stopped += 1
            succeeded += record.succeeded
        elif record.last_state.get('terminated'):
            stopped += 1  # waiting to restart: it has run before
        else:
            waiting += 1
    if waiting:
        return PENDING
    if running:
        return RUNNING
    if not stopped or restart_policy == 'Always':
        return RUNNING if stopped else PENDING
    if stopped == succeeded:
        return SUCCEEDED
    return FAILED if restart_policy == 'Never' else RUNNING


def _names(records: Sequence[ContainerRecord]) -> str:
    return '[' + ' '.join(record.name for record in records) + ']'


def _condition(kind: str, ok: bool, reason: str = '', message: str = '') -> dict[str, Any]:
    condition: dict[str, Any] = {'type': kind, 'status': 'True' if ok else 'False'}
    if not ok and reason:
        condition['reason'] = reason
    if not ok and message:
        condition['message'] = message
    return condition


def pod_conditions(phase: str, init: Sequence[ContainerRecord], regular: Sequence[ContainerRecord],
                   sandbox_ready: bool) -> list[dict[str, Any]]:
    """The kubelet's conditions (without times; `with_transition_times` adds those)."""
    uninitialized = [record for record in init if not record.succeeded]
    unready = [record for record in regular if not record.ready]
    if phase in TERMINAL_PHASES:
        reason, message = 'PodCompleted', ''
        initialized = _condition('Initialized', True) if not uninitialized else _condition(
            'Initialized', False, 'PodCompleted')
        containers_ready = _condition('ContainersReady', False, reason, message)
    else:
        initialized = _condition('Initialized', not uninitialized, 'ContainersNotInitialized',
                                 f'containers with incomplete status: {_names(uninitialized)}')
        containers_ready = (_condition('ContainersReady', False, 'ContainersNotInitialized',
                                       f'containers with incomplete status: {_names(uninitialized)}')
                            if uninitialized else
                            _condition('ContainersReady', not unready, 'ContainersNotReady',
                                       f'containers with unready status: {_names(unready)}'))
    ready = {**containers_ready, 'type': 'Ready'}
    return [
        _condition('PodReadyToStartContainers', sandbox_ready and phase not in TERMINAL_PHASES),
        initialized,
        ready,
        containers_ready,
        _condition('PodScheduled', True),
    ]


def with_transition_times(conditions: list[dict[str, Any]], previous: Sequence[Mapping[str, Any]],
                          now: str) -> list[dict[str, Any]]:
    """Keep each condition's lastTransitionTime unless its status flipped."""
    before = {c.get('type'): c for c in previous}
    result = []
    for condition in conditions:
        old = before.get(condition['type'])
        moment = old.get('lastTransitionTime') if old and old.get('status') == condition['status'] else None
        result.append({**condition, 'lastProbeTime': None, 'lastTransitionTime': moment or now})
    return result


def pod_status(pod: Mapping[str, Any], init: Sequence[ContainerRecord], regular: Sequence[ContainerRecord],
               *, start_time: str, now: str, failure: PodFailure | None = None,
               sandbox_ready: bool = True) -> dict[str, Any]:
    """The whole status the kubelet writes for a pod it runs."""
    spec = pod.get('spec') or {}
    previous = pod.get('status') or {}
    phase = pod_phase(spec.get('restartPolicy', 'Always'), init, regular, failure)
    status: dict[str, Any] = {
        'phase': phase,
        'conditions': with_transition_times(pod_conditions(phase, init, regular, sandbox_ready),
                                            previous.get('conditions') or [], now),
        'hostIP': LOOPBACK, 'hostIPs': [{'ip': LOOPBACK}],
        'podIP': LOOPBACK, 'podIPs': [{'ip': LOOPBACK}],
        'startTime': start_time,
        'containerStatuses': [record.as_status() for record in regular],
    }
    if init:
        status['initContainerStatuses'] = [record.as_status() for record in init]
    if previous.get('qosClass'):
        status['qosClass'] = previous['qosClass']
    if failure is not None:
        status['reason'], status['message'] = failure.reason, failure.message
    return status


def unschedulable_status(pod: Mapping[str, Any], message: str, now: str) -> dict[str, Any]:
    """What kube-scheduler writes for a pod no node can take."""
    previous = (pod.get('status') or {}).get('conditions') or []
    condition = {'type': 'PodScheduled', 'status': 'False', 'reason': 'Unschedulable', 'message': message}
    status: dict[str, Any] = {'phase': PENDING, 'conditions': with_transition_times([condition], previous, now)}
    if (pod.get('status') or {}).get('qosClass'):
        status['qosClass'] = pod['status']['qosClass']
    return status
