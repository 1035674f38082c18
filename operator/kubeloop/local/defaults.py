"""Built-in defaulting (and the few checks that go with it) of Pod, Job and CronJob.

kube-apiserver fills in defaults of built-in kinds when it decodes a request (the
`SetDefaults_*` functions of k8s.io/kubernetes/pkg/apis/*/v1), and a kind's strategy adds
what needs the object's identity on create (a Job's generated selector and labels, a new
Pod's Pending status and QoS class). Controllers and kubectl rely on these fields being
there: the Job controller selects its pods with `spec.selector`, kubectl logs job/X lists
pods with it, the kubelet reads `restartPolicy` and `terminationGracePeriodSeconds`.

The local API server calls `default_on_create` / `default_on_update` for every write of the
main resource (never of a subresource); both are pure and return new objects. Only these
three kinds are defaulted (their pod templates too); other built-in kinds are stored as sent.
A new Pod also gets `serviceAccountName: default`, as the ServiceAccount admission plugin
sets it (the account itself is not required to exist). `validation_causes`
refuses what the Job controller could not run (a Job whose pods restart `Always`), with
kube-apiserver's messages.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from kubeloop.local.errors import Cause

JOB_NAME_LABEL = 'batch.kubernetes.io/job-name'
CONTROLLER_UID_LABEL = 'batch.kubernetes.io/controller-uid'
LEGACY_JOB_NAME_LABEL = 'job-name'
LEGACY_CONTROLLER_UID_LABEL = 'controller-uid'

_POD = ('', 'Pod')
_JOB = ('batch', 'Job')
_CRONJOB = ('batch', 'CronJob')

Obj = dict[str, Any]


def default_on_create(group: str, kind: str, obj: Obj) -> Obj:
    """Defaults plus what the kind's create strategy adds (the object already has its uid)."""
    defaulted = default_on_update(group, kind, obj)
    if (group, kind) == _JOB:
        return _job_prepared_for_create(defaulted)
    if (group, kind) == _POD:
        return _pod_prepared_for_create(defaulted)
    return defaulted


def default_on_update(group: str, kind: str, obj: Obj) -> Obj:
    """The `SetDefaults_*` of the kind: fields a client left out get kube's default value."""
    defaulter = _DEFAULTERS.get((group, kind))
    if defaulter is None:
        return obj
    result = copy.deepcopy(obj)
    defaulter(result)
    return result


def validation_causes(group: str, kind: str, obj: Obj) -> list[Cause]:
    """What kube-apiserver's validation of Jobs (and CronJobs' job templates) would refuse."""
    if (group, kind) == _JOB:
        return _job_spec_causes(obj.get('spec') or {}, 'spec')
    if (group, kind) == _CRONJOB:
        job_spec = ((obj.get('spec') or {}).get('jobTemplate') or {}).get('spec') or {}
        return _job_spec_causes(job_spec, 'spec.jobTemplate.spec')
    return []


# Pods and pod templates (SetDefaults_PodSpec, SetDefaults_Container, probes, ports, env).

def _default_pod(pod: Obj) -> None:
    spec = pod.setdefault('spec', {})
    _default_pod_spec(spec)
    for container in spec.get('containers') or []:
        _default_requests_from_limits(container)  # SetDefaults_Pod does this for pods only


def _default_pod_spec(spec: Obj) -> None:
    spec.setdefault('restartPolicy', 'Always')
    spec.setdefault('terminationGracePeriodSeconds', 30)
    spec.setdefault('dnsPolicy', 'ClusterFirst')
    spec.setdefault('schedulerName', 'default-scheduler')
    spec.setdefault('securityContext', {})
    spec.setdefault('enableServiceLinks', True)
    for container in [*(spec.get('initContainers') or []), *(spec.get('containers') or [])]:
        _default_container(container)


def _default_container(container: Obj) -> None:
    container.setdefault('terminationMessagePath', '/dev/termination-log')
    container.setdefault('terminationMessagePolicy', 'File')
    container.setdefault('imagePullPolicy', _image_pull_policy(str(container.get('image') or '')))
    for port in container.get('ports') or []:
        port.setdefault('protocol', 'TCP')
    for entry in container.get('env') or []:
        field_ref = (entry.get('valueFrom') or {}).get('fieldRef')
        if isinstance(field_ref, dict):
            field_ref.setdefault('apiVersion', 'v1')
    for probe_name in ('livenessProbe', 'readinessProbe', 'startupProbe'):
        probe = container.get(probe_name)
        if isinstance(probe, dict):
            _default_probe(probe)


def _default_probe(probe: Obj) -> None:
    probe.setdefault('timeoutSeconds', 1)
    probe.setdefault('periodSeconds', 10)
    probe.setdefault('successThreshold', 1)
    probe.setdefault('failureThreshold', 3)
    if isinstance(probe.get('httpGet'), dict):
        probe['httpGet'].setdefault('path', '/')
        probe['httpGet'].setdefault('scheme', 'HTTP')


def _image_pull_policy(image: str) -> str:
    """Always for `:latest` or an untagged image, IfNotPresent otherwise (kube's rule)."""
    if '@' in image:
        return 'IfNotPresent'
    last = image.rsplit('/', 1)[-1]
    tag = last.split(':', 1)[1] if ':' in last else ''
    return 'Always' if tag in ('', 'latest') else 'IfNotPresent'


def _default_requests_from_limits(container: Obj) -> None:
    resources = container.get('resources')
    if not isinstance(resources, dict) or not resources.get('limits'):
        return
    requests = resources.setdefault('requests', {})
    for name, quantity in resources['limits'].items():
        requests.setdefault(name, quantity)


def _pod_prepared_for_create(pod: Obj) -> Obj:
    """A new Pod starts Pending with its QoS class (the pod strategy's PrepareForCreate)."""
    spec = pod.get('spec') or {}
    spec.setdefault('serviceAccountName', 'default')  # what the ServiceAccount admission plugin sets
    pod['status'] = {'phase': 'Pending', 'qosClass': qos_class(spec)}
    return pod


def qos_class(spec: Obj) -> str:
    """Guaranteed, Burstable or BestEffort, from the containers' cpu and memory requests/limits."""
    containers = [*(spec.get('initContainers') or []), *(spec.get('containers') or [])]
    resources = [c.get('resources') or {} for c in containers]
    if not any((set(r.get('requests') or {}) | set(r.get('limits') or {})) & {'cpu', 'memory'} for r in resources):
        return 'BestEffort'
    if all(_guaranteed(r) for r in resources):
        return 'Guaranteed'
    return 'Burstable'


def _guaranteed(resources: Obj) -> bool:
    limits, requests = resources.get('limits') or {}, resources.get('requests') or {}
    return all(name in limits and requests.get(name, limits[name]) == limits[name] for name in ('cpu', 'memory'))


# Jobs (SetDefaults_Job) and their create strategy (generateSelector).

def _default_job(job: Obj) -> None:
    spec = job.setdefault('spec', {})
    _default_job_spec(spec)


def _default_job_spec(spec: Obj) -> None:
    if spec.get('completions') is None and spec.get('parallelism') is None:
        spec['completions'] = 1
        spec['parallelism'] = 1
    spec.setdefault('parallelism', 1)
    if spec.get('backoffLimit') is None:
        spec['backoffLimit'] = 2**31 - 1 if spec.get('backoffLimitPerIndex') is not None else 6
    spec.setdefault('completionMode', 'NonIndexed')
    spec.setdefault('suspend', False)
    spec.setdefault('manualSelector', False)
    failure_policy = spec.get('podFailurePolicy')
    if isinstance(failure_policy, dict):
        for rule in failure_policy.get('rules') or []:
            for pattern in rule.get('onPodConditions') or []:
                pattern.setdefault('status', 'True')
    spec.setdefault('podReplacementPolicy', 'Failed' if failure_policy else 'TerminatingOrFailed')
    template = spec.setdefault('template', {})
    _default_pod_spec(template.setdefault('spec', {}))


def _job_prepared_for_create(job: Obj) -> Obj:
    """Generate the selector and the pod template labels that make a Job's pods its own.

    kube does this unless `spec.manualSelector` is true; a Job without labels of its own is
    shown with its template's labels (kube defaults them whenever it reads the Job back).
    """
    spec = job['spec']
    meta = job['metadata']
    if not spec.get('manualSelector'):
        template_meta = spec['template'].setdefault('metadata', {})
        labels = template_meta.setdefault('labels', {})
        for key in (LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL):
            labels.setdefault(key, meta['name'])
        for key in (LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL):
            labels.setdefault(key, meta['uid'])
        selector = spec.get('selector') or {}
        match_labels = selector.setdefault('matchLabels', {})
        match_labels.setdefault(CONTROLLER_UID_LABEL, meta['uid'])
        spec['selector'] = selector
    template_labels = ((spec.get('template') or {}).get('metadata') or {}).get('labels')
    if template_labels and not meta.get('labels'):
        meta['labels'] = dict(template_labels)
    return job


def _default_cronjob(cronjob: Obj) -> None:
    spec = cronjob.setdefault('spec', {})
    spec.setdefault('concurrencyPolicy', 'Allow')
    spec.setdefault('suspend', False)
    spec.setdefault('successfulJobsHistoryLimit', 3)
    spec.setdefault('failedJobsHistoryLimit', 1)
    job_template = spec.setdefault('jobTemplate', {})
    pod_template = job_template.setdefault('spec', {}).setdefault('template', {})
    _default_pod_spec(pod_template.setdefault('spec', {}))


def _job_spec_causes(spec: Obj, path: str) -> list[Cause]:
    causes: list[Cause] = []
    restart_policy = ((spec.get('template') or {}).get('spec') or {}).get('restartPolicy')
    if restart_policy not in ('OnFailure', 'Never'):
        causes.append(Cause(f'{path}.template.spec.restartPolicy', 'FieldValueNotSupported',
                            f'Unsupported value: "{restart_policy or ""}": supported values: "OnFailure", "Never"'))
    if spec.get('podFailurePolicy') and restart_policy == 'OnFailure':
        causes.append(Cause(f'{path}.template.spec.restartPolicy', 'FieldValueInvalid',
                            'Invalid value: "OnFailure": only "Never" is supported when podFailurePolicy is '
                            'specified'))
    if spec.get('completionMode') == 'Indexed' and spec.get('completions') is None:
        causes.append(Cause(f'{path}.completions', 'FieldValueRequired',
                            'Required value: when completion mode is Indexed'))
    return causes


_DEFAULTERS: dict[tuple[str, str], Callable[[Obj], None]] = {
    _POD: _default_pod,
    _JOB: _default_job,
    _CRONJOB: _default_cronjob,
}
