"""The local node's kubelet (and, for its one node, the scheduler's binding and pod GC).

`KubeletController` registers the Node object (see nodeobject.py), serves container logs on
127.0.0.1 (containerlogs.py), and watches every Pod:

- a new Pod for the default scheduler is bound to this node (`spec.nodeName`) when it fits
  (scheduling.py), else it stays Pending with PodScheduled=False, reason Unschedulable and
  kube-scheduler's message;
- a Pod bound to this node is run by a `PodWorker` (podworker.py) until it ends;
- a Pod being deleted is stopped (SIGTERM, `terminationGracePeriodSeconds`, SIGKILL) and
  reported terminal, so that finalizers such as the Job controller's can be released; an
  unscheduled Pod being deleted is marked Failed, as kube's pod GC does;
- when the Pod is gone, its directory (volumes, logs) is removed.

When the node stops, every container is stopped the same way (the grace period capped at
`shutdown_grace_period_seconds`, as the kubelet's shutdownGracePeriod caps it) and its pods
are reported Failed ("Terminated": imminent node shutdown, as the kubelet's graceful node
shutdown says), and the Node's Ready condition turns False.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiohttp

from kubeloop.local.node import podstatus, scheduling
from kubeloop.local.node.client import ApiError, Informer, NodeClient, resource_path
from kubeloop.local.node.containerlogs import LogRequestError, LogServer, LogSource, container_log_dir
from kubeloop.local.node.nodeobject import (
    kept_transition_times,
    machine_capacity,
    node_labels,
    node_manifest,
    node_status,
)
from kubeloop.local.node.podstatus import PodFailure
from kubeloop.local.node.podworker import NodeContext, PodWorker
from kubeloop.local.node.runtime import kill_leftovers
from kubeloop.local.node.settings import NodeSettings

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 40.0
NODE_SHUTDOWN = PodFailure('Terminated', 'Pod was terminated in response to imminent node shutdown.')
PODS = '/api/v1/pods'


def _is_deleting(obj: dict[str, Any]) -> bool:
    return bool(obj['metadata'].get('deletionTimestamp'))


def _phase(pod: dict[str, Any]) -> str:
    return str((pod.get('status') or {}).get('phase') or podstatus.PENDING)


class KubeletController:
    """Plays kubelet (plus binding and pod GC) for the one local node; `run()` until cancelled."""

    def __init__(self, client: NodeClient, settings: NodeSettings) -> None:
        self.client = client
        self.settings = settings
        self.boot_id = uuid.uuid4().hex[:12]
        self.capacity = machine_capacity(settings.state_dir)
        self.labels = node_labels(settings.node_name)
        self.context = NodeContext(client, settings, self.boot_id, self.capacity)
        self.pods = Informer(client, PODS)
        self.workers: dict[str, PodWorker] = {}
        self.log_server = LogServer(self.resolve_log, settings.clock.now)
        self.registered = asyncio.Event()
        self._bound: set[str] = set()
        self._unschedulable: dict[str, str] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._node_status: dict[str, Any] | None = None

    async def run(self) -> None:
        killed = kill_leftovers(self.settings.state_dir)
        if killed:
            log.warning('killed %d process(es) left by an earlier run of this node', killed)
        await self.log_server.start()
        try:
            await self._register_node()
            await asyncio.gather(self._heartbeat(), self._watch_pods())
        finally:
            await self._shut_down()

    # The Node object.

    async def _register_node(self) -> None:
        """Create (or take over) the Node object; retried while the API server cannot be reached."""
        while True:
            try:
                return await self._register_node_once()
            except (aiohttp.ClientError, OSError) as exc:
                log.warning('cannot register the node yet (%s); retrying', exc)
                await asyncio.sleep(1)

    async def _register_node_once(self) -> None:
        path = resource_path('v1', 'nodes', name=self.settings.node_name)
        try:
            await self.client.create('/api/v1/nodes', node_manifest(self.settings.node_name, self.labels))
        except ApiError as exc:
            if exc.status != 409:
                raise
            await self.client.patch(path, {'metadata': {'labels': self.labels}})
        await self._post_node_status(ready=True)
        self.registered.set()
        log.info('node %s registered (kubelet log endpoint 127.0.0.1:%d)', self.settings.node_name,
                 self.log_server.port)

    async def _post_node_status(self, *, ready: bool, message: str = 'kubelet is posting ready status') -> None:
        status = node_status(name=self.settings.node_name, capacity=self.capacity,
                             kubelet_port=self.log_server.port, boot_id=self.boot_id,
                             now=self.context.now(), ready=ready, message=message)
        status = kept_transition_times(status, self._node_status)
        await self.client.patch_status(resource_path('v1', 'nodes', name=self.settings.node_name), status)
        self._node_status = status

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)  # wall time: a fast node clock need not post more often
            try:
                await self._post_node_status(ready=True)
            except (ApiError, aiohttp.ClientError, OSError) as exc:
                log.warning('node heartbeat failed: %s', exc)

    # Pods.

    async def _watch_pods(self) -> None:
        async for kind, pod in self.pods.events():
            try:
                self._on_pod(kind, pod)
            except Exception:
                log.exception('handling %s of pod %s failed', kind, pod.get('metadata', {}).get('name'))

    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        uid = pod['metadata']['uid']
        if kind == 'DELETED':
            self._forget(uid, pod)
            return
        node_name = (pod.get('spec') or {}).get('nodeName')
        if not node_name:
            self._handle_unbound(uid, pod)
        elif node_name == self.settings.node_name:
            self._handle_bound(uid, pod)

    def _handle_unbound(self, uid: str, pod: dict[str, Any]) -> None:
        if _is_deleting(pod):
            if _phase(pod) not in podstatus.TERMINAL_PHASES:
                self._spawn(self._fail_unscheduled(pod))
        elif scheduling.is_for_default_scheduler(pod) and uid not in self._bound:
            self._spawn(self._schedule(uid, pod))

    def _handle_bound(self, uid: str, pod: dict[str, Any]) -> None:
        worker = self.workers.get(uid)
        if worker is None:
            if _phase(pod) in podstatus.TERMINAL_PHASES:
                return  # it ended before (this node process may have restarted since): nothing to run
            worker = self.workers[uid] = PodWorker(self.context, pod)
            log.info('pod %s/%s: starting', worker.namespace, worker.name)
            worker.start()
        else:
            worker.pod = pod
        if _is_deleting(pod) and not worker.stopping:
            self._spawn(worker.terminate(worker.grace_seconds()))

    def _forget(self, uid: str, pod: dict[str, Any]) -> None:
        self._bound.discard(uid)
        self._unschedulable.pop(uid, None)
        worker = self.workers.pop(uid, None)
        if worker is not None or (pod.get('spec') or {}).get('nodeName') == self.settings.node_name:
            self._spawn(self._remove(worker, pod))

    async def _remove(self, worker: PodWorker | None, pod: dict[str, Any]) -> None:
        """The pod is gone from the API: stop what still runs, then delete its directory and logs."""
        meta = pod['metadata']
        if worker is not None:
            await worker.terminate(worker.grace_seconds(), write_status=False)
        shutil.rmtree(self.context.pods_root / meta['uid'], ignore_errors=True)
        shutil.rmtree(self.context.logs_root / f'{meta["namespace"]}_{meta["name"]}_{meta["uid"]}',
                      ignore_errors=True)

    async def _schedule(self, uid: str, pod: dict[str, Any]) -> None:
        reasons = scheduling.unschedulable_reasons(pod, self.labels, self.capacity)
        meta = pod['metadata']
        path = resource_path('v1', 'pods', meta['namespace'], meta['name'])
        if reasons:
            message = scheduling.unschedulable_message(reasons)
            if self._unschedulable.get(uid) != message:
                self._unschedulable[uid] = message
                log.info('pod %s/%s is unschedulable: %s', meta['namespace'], meta['name'], message)
                await self.client.patch_status(path, podstatus.unschedulable_status(pod, message, self.context.now()))
            return
        self._bound.add(uid)
        try:
            await self.client.patch(path, {'spec': {'nodeName': self.settings.node_name}})
        except ApiError as exc:
            self._bound.discard(uid)
            if exc.status != 404:
                log.warning('binding pod %s/%s failed: %s', meta['namespace'], meta['name'], exc)

    async def _fail_unscheduled(self, pod: dict[str, Any]) -> None:
        """Pod GC: a pod deleted before it was scheduled never runs; it ends Failed."""
        meta = pod['metadata']
        now = self.context.now()
        condition = {'type': 'DisruptionTarget', 'status': 'True', 'reason': 'DeletionByPodGC',
                     'message': 'PodGC: the pod was deleted before it was scheduled', 'lastTransitionTime': now}
        conditions = [c for c in (pod.get('status') or {}).get('conditions') or [] if c.get('type') != 'DisruptionTarget']
        await self.client.patch_status(resource_path('v1', 'pods', meta['namespace'], meta['name']),
                                       {'phase': podstatus.FAILED, 'conditions': [*conditions, condition]})

    # Logs.

    async def resolve_log(self, namespace: str, pod_name: str, container: str, previous: bool) -> LogSource:
        """Which log file answers a /containerLogs request (400 with the kubelet's words otherwise)."""
        pod = self.pods.cache.get((namespace, pod_name))
        if pod is None or (pod.get('spec') or {}).get('nodeName') != self.settings.node_name:
            raise LogRequestError(404, f'pod "{pod_name}" in namespace "{namespace}" is not on this node')
        spec = pod.get('spec') or {}
        if container not in [c['name'] for c in [*(spec.get('initContainers') or []), *(spec.get('containers') or [])]]:
            raise LogRequestError(400, f'container "{container}" in pod "{pod_name}" is not valid')
        uid = pod['metadata']['uid']
        directory = container_log_dir(self.context.logs_root, namespace, pod_name, uid, container)
        runs = sorted(int(path.stem) for path in directory.glob('*.log') if path.stem.isdigit())
        worker = self.workers.get(uid)
        record = worker.record(container) if worker is not None else None
        if previous:
            return self._previous_run(directory, runs, pod_name, container)
        if not runs:
            waiting = (record.state.get('waiting') or {}) if record is not None else {}
            reason = waiting.get('reason') or podstatus.CONTAINER_CREATING
            raise LogRequestError(400, f'container "{container}" in pod "{pod_name}" is waiting to start: {reason}')
        current = runs[-1]
        return LogSource(directory / f'{current}.log',
                         running=lambda: worker is not None and worker.is_running(container, current))

    @staticmethod
    def _previous_run(directory: Path, runs: list[int], pod_name: str, container: str) -> LogSource:
        if len(runs) < 2:
            raise LogRequestError(400, f'previous terminated container "{container}" in pod "{pod_name}" not found')
        return LogSource(directory / f'{runs[-2]}.log', running=lambda: False)

    # Stopping.

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)

    async def _shut_down(self) -> None:
        """Stop every container gracefully, report the pods terminated, the node not ready."""
        workers = list(self.workers.values())
        if workers:
            log.info('stopping %d pod(s)', len(workers))
        limit = self.settings.shutdown_grace_period_seconds
        await asyncio.gather(*(worker.terminate(min(worker.grace_seconds(), limit), NODE_SHUTDOWN)
                               for worker in workers), return_exceptions=True)
        if self._background:  # pods being removed finish stopping; nothing is left running
            await asyncio.wait(list(self._background), timeout=60)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.registered.is_set():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._post_node_status(ready=False, message='the local node stopped'), 5)
        await self.log_server.stop()


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error('a kubelet task failed', exc_info=task.exception())
