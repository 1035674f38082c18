"""The batch/v1 Job controller of the local node, and the TTL-after-finished controller.

It follows kube-controller-manager's job controller (pkg/controller/job) closely:

- pods are created from `spec.template` with the template's labels (the API server's
  defaulting adds `batch.kubernetes.io/controller-uid`, `batch.kubernetes.io/job-name`,
  `controller-uid`, `job-name` and the selector), a controller ownerReference with
  `blockOwnerDeletion`, and the finalizer `batch.kubernetes.io/job-tracking`, which is
  released only once the pod's outcome is counted (through
  `status.uncountedTerminatedPods`), so no success or failure is lost or counted twice;
- names `<job>-<random>`; Indexed: `<job>-<index>-<random>`, the index in the annotation and
  label `batch.kubernetes.io/job-completion-index`, env `JOB_COMPLETION_INDEX`, hostname
  `<job>-<index>` (the subdomain comes from the template), `status.completedIndexes`;
- `parallelism`, `completions` (or none: a work queue), `backoffLimit` (Never: failed pods;
  OnFailure: container restarts), `backoffLimitPerIndex` / `maxFailedIndexes` (failure
  counts per index from the pods' `batch.kubernetes.io/job-index-failure-count`),
  `podFailurePolicy` (FailJob, Ignore, Count, FailIndex on exit codes and pod conditions),
  `activeDeadlineSeconds`, `suspend` (Suspended condition; resuming resets `startTime`),
  `podReplacementPolicy`, `managedBy` (Jobs for another controller are left alone);
- failed pods are replaced after a back-off of `pod_failure_backoff_seconds` doubling per
  failure since the last success (capped at 6 minutes);
- status: `startTime`, `completionTime`, `active`, `ready`, `terminating`, `succeeded`,
  `failed`, and conditions as the real controller sets them: first the interim
  `SuccessCriteriaMet` / `FailureTarget`, then, once no pod is left running, `Complete`
  (CompletionsReached) or `Failed` (BackoffLimitExceeded, DeadlineExceeded, PodFailurePolicy,
  MaxFailedIndexes, FailedIndexes); the pods of a failed Job are deleted (and stopped).

`spec.ttlSecondsAfterFinished` is the TTL-after-finished controller's job, folded in here:
the finished Job is deleted with Foreground propagation (its pods first) after the TTL, as
that controller does. Jobs whose pods need torch's rendezvous (`MASTER_ADDR`/`MASTER_PORT` in
the template) get one free port, recorded in the annotation
`local.kubeloop.dev/rendezvous-port` on the Job and its pods (see localnet.py).

Not emulated: `successPolicy`, adoption of orphan pods matching a Job's selector, per-index
back-off delays (the Job-wide back-off applies), Events.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from kubeloop.local.node import jobstate as js
from kubeloop.local.node.client import ApiError, Informer, NodeClient, ObjectKey, resource_path
from kubeloop.local.node.containerlogs import parse_time
from kubeloop.local.node.localnet import RENDEZVOUS_PORT_ANNOTATION, needs_rendezvous_port
from kubeloop.local.node.podworker import timestamp
from kubeloop.local.node.settings import NodeSettings
from kubeloop.local.node.workqueue import WorkQueue, WrittenObjects
from kubeloop.local.supervisor import free_port

log = logging.getLogger(__name__)

JOBS = '/apis/batch/v1/jobs'
PODS = '/api/v1/pods'
WORKERS = 4
REMOVE_TRACKING_FINALIZER = {'metadata': {'$deleteFromPrimitiveList/finalizers': [js.TRACKING_FINALIZER]}}
STRATEGIC_MERGE = 'application/strategic-merge-patch+json'

Obj = dict[str, Any]


def job_owner(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """(name, uid) of the Job that controls the pod."""
    for ref in (pod.get('metadata') or {}).get('ownerReferences') or []:
        if ref.get('controller') and ref.get('kind') == 'Job' and str(ref.get('apiVersion', '')).startswith('batch/'):
            return str(ref.get('name')), str(ref.get('uid'))
    return None


def _uid(obj: Mapping[str, Any]) -> str:
    return str(obj['metadata']['uid'])


@dataclass(frozen=True)
class Finish:
    """Why the Job is finishing: an interim condition type, its reason and message."""

    kind: str  # SuccessCriteriaMet or FailureTarget
    reason: str
    message: str

    @property
    def final_kind(self) -> str:
        return js.COMPLETE if self.kind == js.SUCCESS_CRITERIA_MET else js.FAILED


@dataclass
class SyncState:
    """One reconcile of one Job (the real controller's syncJobCtx)."""

    key: ObjectKey
    job: Obj
    pods: list[Obj]
    now: datetime
    status: Obj
    uncounted_succeeded: set[str]
    uncounted_failed: set[str]
    active: list[Obj] = field(default_factory=list)
    terminating: int = 0
    ready: int = 0
    succeeded: int = 0
    failed: int = 0
    finish: Finish | None = None
    succeeded_indexes: set[int] = field(default_factory=set)
    failed_indexes: set[int] | None = None
    index_failures: dict[int, int] = field(default_factory=dict)
    backoff: js.BackoffRecord = field(default_factory=js.BackoffRecord)

    @property
    def spec(self) -> Obj:
        return self.job['spec']

    @property
    def indexed(self) -> bool:
        return self.spec.get('completionMode') == 'Indexed'

    @property
    def completions(self) -> int | None:
        value = self.spec.get('completions')
        return None if value is None else int(value)

    def valid_index(self, pod: Mapping[str, Any]) -> bool:
        index = js.completion_index(pod)
        return not self.indexed or (index is not None and index < (self.completions or 0))

    @property
    def stamp(self) -> str:
        return timestamp(self.now)


class JobController:
    """The Job controller (and TTL-after-finished controller) of the local node; `run()` until cancelled."""

    def __init__(self, client: NodeClient, settings: NodeSettings) -> None:
        self.client = client
        self.settings = settings
        self._job_informer = Informer(client, JOBS)
        self._pod_informer = Informer(client, PODS)
        self.jobs = WrittenObjects(self._job_informer)
        self.pods = WrittenObjects(self._pod_informer)
        self.queue: WorkQueue[ObjectKey] = WorkQueue()
        self._backoff: dict[ObjectKey, js.BackoffRecord] = {}

    async def run(self) -> None:
        watchers = [asyncio.create_task(self._watch_jobs()), asyncio.create_task(self._watch_pods())]
        try:
            await self._job_informer.synced.wait()
            await self._pod_informer.synced.wait()
            await asyncio.gather(*watchers, *(self._work() for _ in range(WORKERS)))
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            self.queue.close()

    async def _watch_jobs(self) -> None:
        async for kind, job in self._job_informer.events():
            self.jobs.observe(kind, job)
            self.queue.add((job['metadata']['namespace'], job['metadata']['name']))

    async def _watch_pods(self) -> None:
        async for kind, pod in self._pod_informer.events():
            self.pods.observe(kind, pod)
            owner = job_owner(pod)
            if owner is not None:
                self.queue.add((pod['metadata']['namespace'], owner[0]))

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self.sync(key)
            except (ApiError, aiohttp.ClientError, OSError) as exc:
                log.warning('job %s/%s: sync failed (%s); retrying', *key, exc)
                self._requeue(key, 1.0)
            except Exception:
                log.exception('job %s/%s: sync failed', *key)
                self._requeue(key, 5.0)
            finally:
                self.queue.done(key)

    def _requeue(self, key: ObjectKey, node_seconds: float) -> None:
        self.queue.add_after(key, node_seconds / self.settings.clock.speed + 0.01)

    # Reconcile.

    async def sync(self, key: ObjectKey) -> None:
        namespace, name = key
        job = self.jobs.get(key)
        pods = [p for p in self.pods.values()
                if p['metadata']['namespace'] == namespace and (job_owner(p) or ('', ''))[0] == name]
        if job is None:
            await self._release(pods)  # the Job is gone: its pods no longer need tracking
            self._backoff.pop(key, None)
            return
        mine = [p for p in pods if (job_owner(p) or ('', ''))[1] == _uid(job)]
        await self._release([p for p in pods if p not in mine])
        if job['spec'].get('managedBy') not in (None, js.JOB_CONTROLLER_NAME):
            return
        if js.is_finished(job):
            await self._release(mine)
            self._backoff.pop(key, None)
            await self._clean_up_after_ttl(key, job)
            return
        if js.is_deleting(job):
            await self._release(mine)
            return
        await self._sync_unfinished(self._observe(key, job, mine))

    def _observe(self, key: ObjectKey, job: Obj, pods: list[Obj]) -> SyncState:
        """Count what the pods show, the way syncJob starts."""
        status = copy.deepcopy(job.get('status') or {})
        uncounted = status.get('uncountedTerminatedPods') or {}
        state = SyncState(key, job, pods, self.settings.clock.now(), status,
                          set(uncounted.get('succeeded') or []), set(uncounted.get('failed') or []))
        spec = state.spec
        state.active = [p for p in pods if js.is_active(p)]
        state.terminating = sum(js.is_terminating(p) for p in pods)
        state.ready = sum(js.is_ready(p) for p in state.active)
        fresh = [p for p in pods if js.has_tracking_finalizer(p) and state.valid_index(p)]
        new_succeeded = [p for p in fresh if js.phase(p) == 'Succeeded' and _uid(p) not in state.uncounted_succeeded]
        new_failed = [p for p in fresh if js.is_pod_failed(p, spec) and _uid(p) not in state.uncounted_failed]
        counted = [p for p in new_failed if js.match_pod_failure_policy(spec.get('podFailurePolicy'), p).counts]
        state.succeeded = int(status.get('succeeded', 0)) + len(new_succeeded) + len(state.uncounted_succeeded)
        state.failed = int(status.get('failed', 0)) + len(counted) + len(state.uncounted_failed)
        if not status.get('startTime') and not spec.get('suspend'):
            status['startTime'] = state.stamp
        state.backoff = js.next_backoff_record(self._backoff.get(key, js.BackoffRecord()), new_succeeded,
                                               new_failed, state.now)
        if state.indexed:
            self._observe_indexes(state)
        return state

    def _observe_indexes(self, state: SyncState) -> None:
        completions = state.completions or 0
        state.succeeded_indexes = js.parse_indexes(state.status.get('completedIndexes'), completions) | {
            js.completion_index(p) or 0 for p in state.pods
            if js.phase(p) == 'Succeeded' and js.has_tracking_finalizer(p) and state.valid_index(p)}
        state.succeeded = len(state.succeeded_indexes)
        limit = state.spec.get('backoffLimitPerIndex')
        if limit is None:
            return
        failed = js.parse_indexes(state.status.get('failedIndexes'), completions)
        policy = state.spec.get('podFailurePolicy')
        for pod in state.pods:
            index = js.completion_index(pod)
            if index is None or not state.valid_index(pod):
                continue
            count = int(((pod['metadata'].get('annotations') or {}).get(js.INDEX_FAILURE_COUNT)) or 0)
            if js.is_pod_failed(pod, state.spec):
                match = js.match_pod_failure_policy(policy, pod)
                count += int(match.counts)
                if match.action == 'FailIndex':
                    failed.add(index)
            state.index_failures[index] = max(state.index_failures.get(index, 0), count)
            if count > int(limit):
                failed.add(index)
        state.failed_indexes = failed - state.succeeded_indexes

    async def _sync_unfinished(self, state: SyncState) -> None:
        state.finish = self._finish_of(state)
        if state.finish is not None:
            deleted = await self._delete_active(state.active)
            if deleted < len(state.active):
                state.finish = None  # some pod could not be deleted: try again before finishing
            state.terminating += deleted
            if deleted == len(state.active):
                state.ready = 0
            active = len(state.active) - deleted
        else:
            active = await self._manage(state)
            if self._complete(state, active):
                state.finish = Finish(js.SUCCESS_CRITERIA_MET, *js.COMPLETIONS_REACHED)
            else:
                self._update_suspended_condition(state)
        state.status['active'] = active
        state.status['ready'] = max(state.ready, 0)
        state.status['terminating'] = state.terminating
        await self._track_and_release(state)

    def _finish_of(self, state: SyncState) -> Finish | None:
        """Whether the Job has met its success criteria or must fail, and why (syncJob's checks)."""
        conditions = state.status.get('conditions') or []
        met = js.find_condition(conditions, js.SUCCESS_CRITERIA_MET)
        if met is not None and met.get('status') == 'True':
            return Finish(js.SUCCESS_CRITERIA_MET, met.get('reason', ''), met.get('message', ''))
        target = js.find_condition(conditions, js.FAILURE_TARGET)
        if target is not None and target.get('status') == 'True':
            return Finish(js.FAILURE_TARGET, target.get('reason', ''), target.get('message', ''))
        message = self._fail_job_message(state)
        if message is not None:
            return Finish(js.FAILURE_TARGET, js.POD_FAILURE_POLICY, message)
        spec = state.spec
        if state.failed > int(spec.get('backoffLimit', 6)) or self._past_backoff_limit_on_failure(state):
            return Finish(js.FAILURE_TARGET, *js.BACKOFF_LIMIT_EXCEEDED)
        deadline = self._seconds_to_deadline(state)
        if deadline is not None and deadline <= 0:
            return Finish(js.FAILURE_TARGET, *js.DEADLINE_EXCEEDED)
        if deadline is not None:
            self._requeue(state.key, deadline)
        if state.failed_indexes is not None:
            limit = spec.get('maxFailedIndexes')
            if limit is not None and len(state.failed_indexes) > int(limit):
                return Finish(js.FAILURE_TARGET, *js.MAX_FAILED_INDEXES_EXCEEDED)
            if state.failed_indexes and len(state.failed_indexes) + len(state.succeeded_indexes) >= (
                    state.completions or 0):
                return Finish(js.FAILURE_TARGET, *js.FAILED_INDEXES)
        return None

    @staticmethod
    def _fail_job_message(state: SyncState) -> str | None:
        policy = state.spec.get('podFailurePolicy')
        if not policy:
            return None
        for pod in state.pods:
            if js.is_pod_failed(pod, state.spec):
                match = js.match_pod_failure_policy(policy, pod)
                if match.fail_job_message is not None:
                    return match.fail_job_message
        return None

    @staticmethod
    def _past_backoff_limit_on_failure(state: SyncState) -> bool:
        """With restartPolicy OnFailure, container restarts count against backoffLimit."""
        if ((state.spec.get('template') or {}).get('spec') or {}).get('restartPolicy') != 'OnFailure':
            return False
        restarts = sum(int(s.get('restartCount', 0))
                       for p in state.pods if js.phase(p) in ('Running', 'Pending')
                       for s in [*((p.get('status') or {}).get('initContainerStatuses') or []),
                                 *((p.get('status') or {}).get('containerStatuses') or [])])
        limit = int(state.spec.get('backoffLimit', 6))
        return restarts > 0 if limit == 0 else restarts >= limit

    @staticmethod
    def _seconds_to_deadline(state: SyncState) -> float | None:
        deadline = state.spec.get('activeDeadlineSeconds')
        start = state.status.get('startTime')
        if deadline is None or not start or state.spec.get('suspend'):
            return None
        return js.seconds_until(parse_time(start) + timedelta(seconds=int(deadline)), state.now)

    @staticmethod
    def _complete(state: SyncState, active: int) -> bool:
        if state.completions is None:
            return state.succeeded > 0 and active == 0
        return state.succeeded >= state.completions and active == 0

    def _update_suspended_condition(self, state: SyncState) -> None:
        conditions = state.status.get('conditions') or []
        if state.spec.get('suspend'):
            conditions, _ = js.ensure_condition(conditions, js.SUSPENDED, 'True', 'JobSuspended', 'Job suspended',
                                                state.stamp)
        else:
            conditions, resumed = js.ensure_condition(conditions, js.SUSPENDED, 'False', 'JobResumed', 'Job resumed',
                                                      state.stamp)
            if resumed:  # activeDeadlineSeconds counts from the resumption
                state.status['startTime'] = state.stamp
        if conditions:
            state.status['conditions'] = conditions

    # Creating and deleting pods (manageJob).

    async def _manage(self, state: SyncState) -> int:
        """Create or delete pods so that the right number is active; the new active count."""
        active = list(state.active)
        if state.spec.get('suspend'):
            return len(active) - await self._delete_job_pods(active)
        want = self._wanted_active(state)
        doomed = self._pods_to_remove(state, active, want)
        if doomed:
            return len(active) - await self._delete_job_pods(doomed)
        waiting = state.terminating if js.only_replace_failed_pods(state.spec) else 0
        missing = want - waiting - len(active)
        if missing <= 0:
            return len(active)
        delay = state.backoff.remaining(state.now, self.settings.pod_failure_backoff_seconds)
        if delay > 0:
            self._requeue(state.key, delay)
            return len(active)
        indexes: list[int | None] = (list(self._pending_indexes(state, active, missing)) if state.indexed
                                     else [None] * missing)
        job = await self._with_rendezvous_port(state)
        created = await asyncio.gather(*(self._create_pod(job, state, index) for index in indexes))
        return len(active) + sum(created)

    @staticmethod
    def _wanted_active(state: SyncState) -> int:
        parallelism = int(state.spec.get('parallelism', 1))
        if state.completions is None:
            return len(state.active) if state.succeeded > 0 else parallelism
        return max(0, min(state.completions - state.succeeded, parallelism))

    @staticmethod
    def _pods_to_remove(state: SyncState, active: list[Obj], want: int) -> list[Obj]:
        """activePodsForRemoval: duplicate or invalid indexes first, then the least advanced pods."""
        doomed: list[Obj] = []
        keep = active
        if state.indexed:
            seen: set[int] = set()
            keep = []
            for pod in sorted(active, key=lambda p: p['metadata'].get('creationTimestamp', '')):
                index = js.completion_index(pod)
                if (not state.valid_index(pod) or index in seen or index in state.succeeded_indexes
                        or index in (state.failed_indexes or set())):
                    doomed.append(pod)
                else:
                    seen.add(index or 0)
                    keep.append(pod)
        extra = len(active) - len(doomed) - want
        if extra > 0:
            ordered = sorted(keep, key=lambda p: (js.is_ready(p), js.phase(p) == 'Running',
                                                  p['metadata'].get('creationTimestamp', '')))
            doomed.extend(ordered[:extra])
        return doomed

    @staticmethod
    def _pending_indexes(state: SyncState, active: list[Obj], count: int) -> list[int]:
        """firstPendingIndexes: the lowest indexes neither succeeded, failed nor running."""
        running = {index for index in map(js.completion_index, active) if index is not None}
        taken = state.succeeded_indexes | (state.failed_indexes or set()) | running
        return [i for i in range(state.completions or 0) if i not in taken][:count]

    async def _with_rendezvous_port(self, state: SyncState) -> Obj:
        """Jobs whose pods expect MASTER_ADDR/MASTER_PORT get one free port, recorded on the Job."""
        job = state.job
        annotations = job['metadata'].get('annotations') or {}
        template_spec = (job['spec'].get('template') or {}).get('spec') or {}
        if RENDEZVOUS_PORT_ANNOTATION in annotations or not needs_rendezvous_port(template_spec):
            return job
        patch = {'metadata': {'annotations': {RENDEZVOUS_PORT_ANNOTATION: str(free_port())}}}
        updated = await self.client.patch(self._job_path(job), patch)
        self.jobs.remember(updated)
        state.job = {**job, 'metadata': updated['metadata']}
        return state.job

    async def _create_pod(self, job: Obj, state: SyncState, index: int | None) -> bool:
        pod = desired_pod(job, index, state.index_failures.get(index, 0) if index is not None else 0)
        namespace = job['metadata']['namespace']
        try:
            created = await self.client.create(resource_path('v1', 'pods', namespace), pod)
        except ApiError as exc:
            if exc.status not in (403, 404, 409):  # a terminating namespace refuses creations: expected
                log.warning('job %s/%s: creating a pod failed: %s', namespace, job['metadata']['name'], exc)
            return False
        self.pods.remember(created)
        return True

    async def _delete_active(self, pods: list[Obj]) -> int:
        """deleteActivePods: delete keeping the tracking finalizer (they will be counted as failed)."""
        results = await asyncio.gather(*(self._delete_pod(p) for p in pods))
        return sum(results)

    async def _delete_job_pods(self, pods: list[Obj]) -> int:
        """deleteJobPods: release the finalizer first (these pods are not counted), then delete."""
        released = await asyncio.gather(*(self._remove_finalizer(p) for p in pods))
        results = await asyncio.gather(*(self._delete_pod(p) for p, ok in zip(pods, released, strict=True) if ok))
        return sum(results)

    async def _delete_pod(self, pod: Obj) -> bool:
        meta = pod['metadata']
        path = resource_path('v1', 'pods', meta['namespace'], meta['name'])
        try:
            remaining = await self.client.request('DELETE', path, body={
                'propagationPolicy': 'Background', 'preconditions': {'uid': meta['uid']}})
        except ApiError as exc:
            if exc.status in (404, 409):
                return True  # already gone (or replaced by another pod of the same name)
            log.warning('deleting pod %s/%s failed: %s', meta['namespace'], meta['name'], exc)
            return False
        if remaining.get('metadata', {}).get('finalizers'):
            self.pods.remember(remaining)
        else:
            self.pods.remember_gone(pod)
        return True

    async def _remove_finalizer(self, pod: Obj) -> bool:
        if not js.has_tracking_finalizer(pod):
            return True
        meta = pod['metadata']
        try:
            updated = await self.client.patch(resource_path('v1', 'pods', meta['namespace'], meta['name']),
                                              REMOVE_TRACKING_FINALIZER, content_type=STRATEGIC_MERGE)
        except ApiError as exc:
            if exc.status == 404:
                return True
            log.warning('removing the tracking finalizer of pod %s/%s failed: %s', meta['namespace'],
                        meta['name'], exc)
            return False
        if updated.get('metadata', {}).get('deletionTimestamp') and not updated['metadata'].get('finalizers'):
            self.pods.remember_gone(pod)
        else:
            self.pods.remember(updated)
        return True

    async def _release(self, pods: list[Obj]) -> None:
        await asyncio.gather(*(self._remove_finalizer(p) for p in pods if js.has_tracking_finalizer(p)))

    # Counting finished pods and writing status (trackJobStatusAndRemoveFinalizers).

    async def _track_and_release(self, state: SyncState) -> None:
        releasable = self._count_finished_pods(state)
        conditions = list(state.status.get('conditions') or [])
        if state.finish is not None and js.find_condition(conditions, state.finish.kind) is None:
            conditions.append(js.condition(state.finish.kind, 'True', state.finish.reason, state.finish.message,
                                           state.stamp))
        if conditions:
            state.status['conditions'] = conditions
        self._set_uncounted(state)
        await self._write_status(state)
        released = await asyncio.gather(*(self._remove_finalizer(p) for p in releasable))
        still_tracked = {_uid(p) for p in state.pods if js.has_tracking_finalizer(p)}
        still_tracked -= {_uid(p) for p, ok in zip(releasable, released, strict=True) if ok}
        self._count_released(state, still_tracked)
        self._enact_finished(state)
        await self._write_status(state)
        self._backoff[state.key] = state.backoff

    def _count_finished_pods(self, state: SyncState) -> list[Obj]:
        """Add finished pods to uncountedTerminatedPods; return the pods whose finalizer can go."""
        releasable = []
        new_indexes = set()
        policy = state.spec.get('podFailurePolicy')
        failing = state.finish is not None and state.finish.kind == js.FAILURE_TARGET
        for pod in sorted(state.pods, key=lambda p: js.completion_index(p) or 0):
            if not js.has_tracking_finalizer(pod):
                continue
            failed = js.is_pod_failed(pod, state.spec)
            if not (js.is_deleting(state.job) or state.finish is not None or js.phase(pod) == 'Succeeded' or failed):
                continue
            releasable.append(pod)
            uid = _uid(pod)
            if js.phase(pod) == 'Succeeded' and uid not in state.uncounted_failed:
                if state.indexed:
                    if state.valid_index(pod):
                        new_indexes.add(js.completion_index(pod) or 0)
                else:
                    state.uncounted_succeeded.add(uid)
            elif ((failed or failing) and uid not in state.uncounted_failed and state.valid_index(pod)
                    and js.match_pod_failure_policy(policy, pod).counts):
                state.uncounted_failed.add(uid)
        if state.indexed:
            state.succeeded_indexes |= new_indexes
            state.status['completedIndexes'] = js.format_indexes(state.succeeded_indexes)
            state.status['succeeded'] = len(state.succeeded_indexes)
            if state.failed_indexes is not None:
                state.status['failedIndexes'] = js.format_indexes(state.failed_indexes)
        return releasable

    @staticmethod
    def _set_uncounted(state: SyncState) -> None:
        state.status['uncountedTerminatedPods'] = {
            'succeeded': js.uid_list(state.uncounted_succeeded), 'failed': js.uid_list(state.uncounted_failed)}
        state.status.setdefault('succeeded', 0)
        state.status.setdefault('failed', 0)

    @staticmethod
    def _count_released(state: SyncState, still_tracked: set[str]) -> None:
        """cleanUncountedPodsWithoutFinalizers: counted once their finalizer is gone."""
        done_succeeded = {uid for uid in state.uncounted_succeeded if uid not in still_tracked}
        done_failed = {uid for uid in state.uncounted_failed if uid not in still_tracked}
        state.status['succeeded'] = int(state.status.get('succeeded', 0)) + len(done_succeeded)
        state.status['failed'] = int(state.status.get('failed', 0)) + len(done_failed)
        state.uncounted_succeeded -= done_succeeded
        state.uncounted_failed -= done_failed
        JobController._set_uncounted(state)

    @staticmethod
    def _enact_finished(state: SyncState) -> None:
        """Complete/Failed only once every pod is counted and none is still terminating."""
        if state.finish is None or state.uncounted_succeeded or state.uncounted_failed or state.terminating > 0:
            return
        conditions, changed = js.ensure_condition(list(state.status.get('conditions') or []),
                                                  state.finish.final_kind, 'True', state.finish.reason,
                                                  state.finish.message, state.stamp)
        state.status['conditions'] = conditions
        if changed and state.finish.final_kind == js.COMPLETE:
            state.status['completionTime'] = state.stamp
        if changed:
            log.info('job %s/%s: %s (%s)', *state.key, state.finish.final_kind, state.finish.reason)

    async def _write_status(self, state: SyncState) -> None:
        if js.canonical(state.status) == js.canonical(state.job.get('status') or {}):
            return
        updated = await self.client.patch_status(self._job_path(state.job), state.status)
        if updated is not None:
            self.jobs.remember(updated)
            state.job = updated
            state.status = copy.deepcopy(updated.get('status') or {})

    @staticmethod
    def _job_path(job: Obj) -> str:
        return resource_path('batch/v1', 'jobs', job['metadata']['namespace'], job['metadata']['name'])

    # ttlSecondsAfterFinished (the TTL-after-finished controller).

    async def _clean_up_after_ttl(self, key: ObjectKey, job: Obj) -> None:
        ttl = job['spec'].get('ttlSecondsAfterFinished')
        finished_at = finish_time_of(job)
        if ttl is None or finished_at is None or js.is_deleting(job):
            return
        remaining = js.seconds_until(finished_at + timedelta(seconds=int(ttl)), self.settings.clock.now())
        if remaining > 0:
            self._requeue(key, remaining)
            return
        log.info('job %s/%s: deleting it, %ss after it finished', *key, ttl)
        try:
            await self.client.request('DELETE', self._job_path(job), body={
                'propagationPolicy': 'Foreground', 'preconditions': {'uid': _uid(job)}})
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise


def finish_time_of(job: Mapping[str, Any]) -> datetime | None:
    """When a finished Job finished: its Complete or Failed condition's transition time."""
    status = job.get('status') or {}
    for kind in (js.COMPLETE, js.FAILED):
        found = js.find_condition(status.get('conditions') or [], kind)
        if found is not None and found.get('status') == 'True' and found.get('lastTransitionTime'):
            return parse_time(found['lastTransitionTime'])
    return None


def desired_pod(job: Mapping[str, Any], index: int | None, index_failures: int = 0) -> Obj:
    """The pod the Job controller creates from the template (for `index` in Indexed mode)."""
    meta = job['metadata']
    template = copy.deepcopy(job['spec'].get('template') or {})
    template_meta = template.get('metadata') or {}
    labels = dict(template_meta.get('labels') or {})
    annotations = dict(template_meta.get('annotations') or {})
    spec = template.get('spec') or {}
    port = (meta.get('annotations') or {}).get(RENDEZVOUS_PORT_ANNOTATION)
    if port:
        annotations[RENDEZVOUS_PORT_ANNOTATION] = port
    if index is not None:
        annotations[js.COMPLETION_INDEX] = str(index)
        labels[js.COMPLETION_INDEX] = str(index)
        if job['spec'].get('backoffLimitPerIndex') is not None:
            annotations[js.INDEX_FAILURE_COUNT] = str(index_failures)
        spec['hostname'] = f'{meta["name"]}-{index}'
        _add_completion_index_env(spec)
    finalizers = list(template_meta.get('finalizers') or [])
    if js.TRACKING_FINALIZER not in finalizers:
        finalizers.append(js.TRACKING_FINALIZER)
    return {
        'apiVersion': 'v1', 'kind': 'Pod',
        'metadata': {
            'generateName': js.pod_name_prefix(meta['name'], index),
            'namespace': meta['namespace'],
            'labels': labels, 'annotations': annotations, 'finalizers': finalizers,
            'ownerReferences': [{'apiVersion': 'batch/v1', 'kind': 'Job', 'name': meta['name'], 'uid': meta['uid'],
                                 'controller': True, 'blockOwnerDeletion': True}],
        },
        'spec': spec,
    }


def _add_completion_index_env(spec: Obj) -> None:
    """addCompletionIndexEnvVariables: JOB_COMPLETION_INDEX from the index annotation, in every container."""
    for container in [*(spec.get('initContainers') or []), *(spec.get('containers') or [])]:
        env = container.setdefault('env', [])
        if not any(entry.get('name') == 'JOB_COMPLETION_INDEX' for entry in env):
            env.append({'name': 'JOB_COMPLETION_INDEX', 'valueFrom': {'fieldRef': {
                'apiVersion': 'v1', 'fieldPath': f"metadata.annotations['{js.COMPLETION_INDEX}']"}}})
