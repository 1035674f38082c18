"""Pure pieces of the Job controller: pod predicates, conditions, indexes, failure policy, back-off.

They follow k8s.io/kubernetes/pkg/controller/job closely (names in the docstrings), so that
the local Job controller counts, fails and completes Jobs the way the real one does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kubeloop.local.node.containerlogs import parse_time

TRACKING_FINALIZER = 'batch.kubernetes.io/job-tracking'
COMPLETION_INDEX = 'batch.kubernetes.io/job-completion-index'
INDEX_FAILURE_COUNT = 'batch.kubernetes.io/job-index-failure-count'
JOB_CONTROLLER_NAME = 'kubernetes.io/job-controller'
MAX_POD_FAILURE_BACKOFF_SECONDS = 360.0  # the real controller's cap (6 minutes)
MAX_GENERATED_NAME_PREFIX = 58  # 63 minus the 5 random characters the API server appends

COMPLETE, FAILED, FAILURE_TARGET, SUCCESS_CRITERIA_MET, SUSPENDED = (
    'Complete', 'Failed', 'FailureTarget', 'SuccessCriteriaMet', 'Suspended')
BACKOFF_LIMIT_EXCEEDED = ('BackoffLimitExceeded', 'Job has reached the specified backoff limit')
DEADLINE_EXCEEDED = ('DeadlineExceeded', 'Job was active longer than specified deadline')
MAX_FAILED_INDEXES_EXCEEDED = ('MaxFailedIndexesExceeded',
                               'Job has exceeded the specified maximal number of failed indexes')
FAILED_INDEXES = ('FailedIndexes', 'Job has failed indexes')
COMPLETIONS_REACHED = ('CompletionsReached', 'Reached expected number of succeeded pods')
POD_FAILURE_POLICY = 'PodFailurePolicy'

Obj = dict[str, Any]


# Pods.

def phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get('status') or {}).get('phase') or 'Pending')


def is_terminal(pod: Mapping[str, Any]) -> bool:
    return phase(pod) in ('Succeeded', 'Failed')


def is_deleting(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get('metadata') or {}).get('deletionTimestamp'))


def is_active(pod: Mapping[str, Any]) -> bool:
    """controller.FilterActivePods: not terminal and not being deleted."""
    return not is_terminal(pod) and not is_deleting(pod)


def is_terminating(pod: Mapping[str, Any]) -> bool:
    return is_deleting(pod) and not is_terminal(pod)


def is_ready(pod: Mapping[str, Any]) -> bool:
    return any(c.get('type') == 'Ready' and c.get('status') == 'True'
               for c in (pod.get('status') or {}).get('conditions') or [])


def has_tracking_finalizer(pod: Mapping[str, Any]) -> bool:
    return TRACKING_FINALIZER in ((pod.get('metadata') or {}).get('finalizers') or [])


def only_replace_failed_pods(spec: Mapping[str, Any]) -> bool:
    return spec.get('podReplacementPolicy') == 'Failed' or bool(spec.get('podFailurePolicy'))


def is_pod_failed(pod: Mapping[str, Any], spec: Mapping[str, Any]) -> bool:
    """isPodFailed: Failed, or (unless only failed pods are replaced) deleted before succeeding."""
    if phase(pod) == 'Failed':
        return True
    if only_replace_failed_pods(spec):
        return False
    return is_deleting(pod) and phase(pod) != 'Succeeded'


def completion_index(pod: Mapping[str, Any]) -> int | None:
    value = ((pod.get('metadata') or {}).get('annotations') or {}).get(COMPLETION_INDEX)
    return int(value) if value is not None and str(value).isdigit() else None


def finish_time(pod: Mapping[str, Any], fallback: datetime) -> datetime:
    """When the pod finished: its containers' latest finishedAt, else its deletion, else `fallback`."""
    status = pod.get('status') or {}
    times = [((s.get('state') or {}).get('terminated') or {}).get('finishedAt')
             for s in [*(status.get('containerStatuses') or []), *(status.get('initContainerStatuses') or [])]]
    known = [parse_time(t) for t in times if t]
    if known:
        return max(known)
    deleted = (pod.get('metadata') or {}).get('deletionTimestamp')
    return parse_time(deleted) if deleted else fallback


def pod_name_prefix(job_name: str, index: int | None) -> str:
    """generateName of a Job's pod: `<job>-` or, Indexed, `<job>-<index>-` (trimmed as kube trims)."""
    if index is None:
        return (job_name + '-')[:MAX_GENERATED_NAME_PREFIX]
    suffix = f'-{index}-'
    prefix = job_name + suffix
    if len(prefix) > MAX_GENERATED_NAME_PREFIX:
        prefix = prefix[:MAX_GENERATED_NAME_PREFIX - len(suffix)] + suffix
    return prefix


# Conditions.

def condition(kind: str, status: str, reason: str, message: str, now: str) -> Obj:
    return {'type': kind, 'status': status, 'reason': reason, 'message': message,
            'lastProbeTime': now, 'lastTransitionTime': now}


def find_condition(conditions: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get('type') == kind), None)


def is_true(conditions: Sequence[Mapping[str, Any]], kind: str) -> bool:
    found = find_condition(conditions, kind)
    return found is not None and found.get('status') == 'True'


def is_finished(job: Mapping[str, Any]) -> bool:
    conditions = (job.get('status') or {}).get('conditions') or []
    return is_true(conditions, COMPLETE) or is_true(conditions, FAILED)


def ensure_condition(conditions: list[Obj], kind: str, status: str, reason: str, message: str,
                     now: str) -> tuple[list[Obj], bool]:
    """ensureJobConditionStatus: set or add a condition; a False condition is never added new."""
    for i, existing in enumerate(conditions):
        if existing.get('type') == kind:
            if (existing.get('status'), existing.get('reason'), existing.get('message')) == (status, reason, message):
                return conditions, False
            return [*conditions[:i], condition(kind, status, reason, message, now), *conditions[i + 1:]], True
    if status == 'False':
        return conditions, False
    return [*conditions, condition(kind, status, reason, message, now)], True


# Completed and failed indexes ("1,3-5,7").

def parse_indexes(text: str | None, completions: int) -> set[int]:
    result: set[int] = set()
    for part in (text or '').split(','):
        if not part:
            continue
        first, _, last = part.partition('-')
        if first.isdigit() and (not last or last.isdigit()):
            result.update(i for i in range(int(first), int(last or first) + 1) if i < completions)
    return result


def format_indexes(indexes: Iterable[int]) -> str:
    """orderedIntervals.String: ranges of three or more as `a-b`, two neighbours as `a,b`."""
    ordered = sorted(set(indexes))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        first, last = ordered[i], ordered[j]
        if last == first:
            parts.append(str(first))
        elif last == first + 1:
            parts.append(f'{first},{last}')
        else:
            parts.append(f'{first}-{last}')
        i = j + 1
    return ','.join(parts)


# Pod failure policy.

@dataclass(frozen=True)
class PolicyMatch:
    """matchPodFailurePolicy: the action of the first matching rule (None: no rule matched)."""

    action: str | None
    counts: bool
    fail_job_message: str | None = None


def match_pod_failure_policy(policy: Mapping[str, Any] | None, pod: Mapping[str, Any]) -> PolicyMatch:
    if not policy:
        return PolicyMatch(None, True)
    meta = pod.get('metadata') or {}
    status = pod.get('status') or {}
    for index, rule in enumerate(policy.get('rules') or []):
        action = rule.get('action')
        if rule.get('onExitCodes'):
            matched = _matching_container(status, rule['onExitCodes'])
            if matched is None:
                continue
            message = (f'Container {matched["name"]} for pod {meta.get("namespace")}/{meta.get("name")} failed with '
                       f'exit code {matched["state"]["terminated"]["exitCode"]} matching {action} rule at index {index}')
        elif rule.get('onPodConditions'):
            found = _matching_condition(status, rule['onPodConditions'])
            if found is None:
                continue
            message = (f'Pod {meta.get("namespace")}/{meta.get("name")} has condition {found["type"]} matching '
                       f'{action} rule at index {index}')
        else:
            continue
        if action == 'Ignore':
            return PolicyMatch('Ignore', False)
        if action == 'FailJob':
            return PolicyMatch('FailJob', True, message)
        return PolicyMatch(action, True)  # Count, FailIndex
    return PolicyMatch(None, True)


def _matching_container(status: Mapping[str, Any], requirement: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for statuses in (status.get('containerStatuses') or [], status.get('initContainerStatuses') or []):
        for container in statuses:
            terminated = (container.get('state') or {}).get('terminated')
            if terminated is None or terminated.get('exitCode', 0) == 0:
                continue
            if requirement.get('containerName') not in (None, container.get('name')):
                continue
            inside = terminated['exitCode'] in (requirement.get('values') or [])
            if inside == (requirement.get('operator') == 'In'):
                return container
    return None


def _matching_condition(status: Mapping[str, Any], patterns: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    for found in status.get('conditions') or []:
        for pattern in patterns:
            if found.get('type') == pattern.get('type') and found.get('status') == pattern.get('status', 'True'):
                return found
    return None


# Back-off before replacing failed pods (backoff_utils.go).

@dataclass(frozen=True)
class BackoffRecord:
    failures_after_last_success: int = 0
    last_failure_time: datetime | None = None

    def remaining(self, now: datetime, base_seconds: float) -> float:
        """Seconds until a new pod may be created (0: now)."""
        if self.failures_after_last_success == 0 or self.last_failure_time is None:
            return 0.0
        backoff = min(base_seconds * 2 ** (self.failures_after_last_success - 1), MAX_POD_FAILURE_BACKOFF_SECONDS)
        elapsed = (now - self.last_failure_time).total_seconds()
        return max(0.0, backoff - elapsed)


def next_backoff_record(previous: BackoffRecord, succeeded_pods: Sequence[Mapping[str, Any]],
                        failed_pods: Sequence[Mapping[str, Any]], now: datetime) -> BackoffRecord:
    """newBackoffRecord: failures since the last success and the last failure's time."""
    failed_times = sorted(finish_time(pod, now) for pod in failed_pods)
    if not succeeded_pods:
        if not failed_times:
            return previous
        return BackoffRecord(previous.failures_after_last_success + len(failed_times), failed_times[-1])
    last_success = max(finish_time(pod, now) for pod in succeeded_pods)
    later = [moment for moment in failed_times if moment > last_success]
    return BackoffRecord(len(later), later[-1] if later else None)


def seconds_until(moment: datetime, now: datetime) -> float:
    return (moment - now) / timedelta(seconds=1)


def uid_list(values: Iterable[str]) -> list[str]:
    return sorted(set(values))


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)
