"""The shapes every entrypoint of the jobs image shares: its environment for the object store,
its restricted pod, the Job around it and the CronJob that runs it on a schedule.

The FeatureSet materializer and the DriftMonitor check are both `python -m <module>` in the jobs
image, both talk to the object store only, and both follow the same exit-code contract (0 done,
3 permanent: retrying cannot help, 1 transient). One builder serves both, so a hardening of the
pod (security context, scratch volume) reaches every one of them. Pure: values in, manifests out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubeloop.core.settings import ObjectStore, Settings

# The entrypoints' exit codes (their contract): 3 = retrying cannot help.
EXIT_PERMANENT_FAILURE = 3
# The pod's only writable directory (the root filesystem is read-only): temporary files.
SCRATCH_VOLUME = "scratch"
SCRATCH_PATH = "/scratch"
NON_ROOT_ID = 65532  # the "nonroot" user of distroless images
# A scheduled run that could not start within an hour (operator or control plane down) is
# skipped; the next schedule runs instead of a pile of late ones.
STARTING_DEADLINE_SECONDS = 3600
SUCCESSFUL_JOBS_HISTORY_LIMIT = 3
FAILED_JOBS_HISTORY_LIMIT = 3


def secret_env(variable: str, secret: str, key: str, *, optional: bool = False) -> dict[str, Any]:
    """An env entry read from a Secret's key (credentials never appear in a manifest)."""
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": variable, "valueFrom": {"secretKeyRef": ref}}


def object_store_env(store: ObjectStore) -> list[dict[str, Any]]:
    """Where the object store is, with credentials from the namespace's Secret
    (`StoreConfig.from_env` reads exactly these)."""
    return [
        {"name": "KUBELOOP_S3_ENDPOINT", "value": store.endpoint},
        {"name": "KUBELOOP_S3_BUCKET", "value": store.bucket},
        {"name": "AWS_REGION", "value": store.region},
        secret_env("AWS_ACCESS_KEY_ID", store.secret_name, "accessKey"),
        secret_env("AWS_SECRET_ACCESS_KEY", store.secret_name, "secretKey"),
    ]


def scratch_env() -> list[dict[str, Any]]:
    """Temporary files and $HOME in the scratch volume, output unbuffered."""
    return [
        {"name": "TMPDIR", "value": SCRATCH_PATH},
        {"name": "HOME", "value": SCRATCH_PATH},
        # Progress lines reach `kubectl logs` as they are printed, not when a buffer fills.
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def restricted_container_security() -> dict[str, Any]:
    """A container's fields of the restricted Pod Security Standard, and a read-only root
    filesystem (the scratch volume is the one writable place)."""
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def restricted_pod_security(user: int) -> dict[str, Any]:
    """A pod's fields of the restricted Pod Security Standard, running as `user` (also its group
    and the volumes' group)."""
    return {"runAsNonRoot": True, "runAsUser": user, "runAsGroup": user, "fsGroup": user,
            "seccompProfile": {"type": "RuntimeDefault"}}


def jobs_pod_template(*, container: str, module: str, env: Sequence[Mapping[str, Any]],
                      resources: Mapping[str, Any], labels: Mapping[str, str],
                      settings: Settings) -> dict[str, Any]:
    """A pod running `python -m <module>` in the jobs image: restricted security context,
    read-only root filesystem with a scratch volume, no API server credentials."""
    spec_container = {
        "name": container,
        "image": settings.images.jobs,
        "command": ["python", "-m", module],
        "env": [dict(entry) for entry in env],
        "resources": dict(resources),
        "securityContext": restricted_container_security(),
        "volumeMounts": [{"name": SCRATCH_VOLUME, "mountPath": SCRATCH_PATH}],
    }
    return {
        "metadata": {"labels": dict(labels)},
        "spec": {
            # podFailurePolicy needs Never: each retry is a new pod, counted by backoffLimit.
            "restartPolicy": "Never",
            # The entrypoints talk to the object store only, never to the API server.
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": restricted_pod_security(NON_ROOT_ID),
            "containers": [spec_container],
            "volumes": [{"name": SCRATCH_VOLUME, "emptyDir": {}}],
        },
    }


def entrypoint_job_spec(template: Mapping[str, Any], *, container: str, backoff_limit: int,
                        ttl_seconds_after_finished: int) -> dict[str, Any]:
    """A Job spec around `template` honouring the exit-code contract: exit 3 fails the Job at
    once, other failures are retried up to `backoff_limit` times."""
    return {
        "backoffLimit": backoff_limit,
        "ttlSecondsAfterFinished": ttl_seconds_after_finished,
        "podFailurePolicy": {"rules": [
            # Another attempt would fail the same way (broken contract, missing reference ...).
            {"action": "FailJob",
             "onExitCodes": {"containerName": container, "operator": "In",
                             "values": [EXIT_PERMANENT_FAILURE]}},
            # A pod evicted or preempted did nothing wrong: not counted against backoffLimit.
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]},
        "template": dict(template),
    }


def cronjob_spec(schedule: str, job_metadata: Mapping[str, Any], job_spec: Mapping[str, Any]) -> dict[str, Any]:
    """A CronJob spec running `job_spec` on `schedule` (UTC), never two at once."""
    return {
        "schedule": schedule,
        "timeZone": "Etc/UTC",  # schedules are documented as UTC, whatever the controller's zone
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": STARTING_DEADLINE_SECONDS,
        "successfulJobsHistoryLimit": SUCCESSFUL_JOBS_HISTORY_LIMIT,
        "failedJobsHistoryLimit": FAILED_JOBS_HISTORY_LIMIT,
        "jobTemplate": {"metadata": dict(job_metadata), "spec": dict(job_spec)},
    }
