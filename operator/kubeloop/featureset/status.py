"""A FeatureSet's status, derived from what exists: its Jobs, its versions and run records in
the object store. Pure (no I/O, no clock: `now` is a parameter), so each decision has exact
unit tests.

Where each fact comes from:

- versions (`latestVersion`, `versions[]`, `rows`, `schema`, `profileUri`,
  `lastMaterializedTime`): the version manifests the materializer publishes under
  `featuresets/<namespace>/<name>`. They are immutable, so when the store cannot be read the
  previous status keeps them rather than forgetting them;
- the outcome of the newest materialization (`Materialized`): the newest Job (the one-off Job
  of a spec change or one the CronJob created) and the run result the materializer wrote for
  it (`runs/<Job name>.json`, see `results.py`), which names the reason (ContractViolated,
  SourceUnavailable ...) and says which column, rule and count broke the contract. Jobs are
  deleted some time after they finish; the newest run result then stands for them;
- which version is the latest: the one the newest successful run published. Publication is
  idempotent (the same data and spec give the same version, with its first creation time), so
  a run over data that went back to an earlier state yields an older version, and that one is
  what the FeatureSet now holds. Without a run result, the most recently created version.

The decisions are chains of small functions returning a `Decision` (status, reason, message),
as cert-manager writes them:

- `Materialized`: the newest run's outcome (True: it published a version; False: it failed,
  with the materializer's reason and message; Unknown: running, waiting, or unknowable
  because the object store cannot be read);
- `Ready`: a version exists to train on. It stays True with the previous `latestVersion` when
  a newer materialization fails: a broken batch of data must not take away the last good one;
- `phase`: Materializing while a Job runs, else Ready once a version exists, else Failed when
  the newest materialization failed, else Pending.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from kubeloop.core import conditions
from kubeloop.core.events import Event
from kubeloop.core.reconcile import Observed
from kubeloop.featureset import results
from kubeloop.featureset.api import ConditionType, FeatureSetSpec, Reason
from kubeloop.featureset.desired import job_finished

# Newest versions listed in status; older ones stay in the object store.
MAX_VERSIONS_IN_STATUS = 10
# The object store cannot be read (no credentials Secret, unreachable, access denied): the
# outcome of a finished materialization is unknown until it can. Not in `api.Reason` (which
# lists the materializer's outcomes); the message says what to fix.
OBJECT_STORE_UNAVAILABLE = "ObjectStoreUnavailable"
# Reasons a failed run result may carry; any other becomes MaterializationFailed.
_FAILURE_REASONS = results.RUN_REASONS - {Reason.MATERIALIZED}
# The file of a version that holds its reference profile (the materializer's layout).
PROFILE_FILE = "profile.json"


class Decision(NamedTuple):
    """The value of one condition."""

    status: conditions.ConditionStatus
    reason: str
    message: str


class StoredVersion(Protocol):
    """What status needs of a published version (`kubeloop.store.Version` has it)."""

    @property
    def id(self) -> str: ...

    @property
    def digest(self) -> str: ...

    @property
    def created(self) -> datetime: ...

    @property
    def files(self) -> Mapping[str, Any]: ...

    @property
    def manifest(self) -> Mapping[str, Any]: ...


# -- Jobs ---------------------------------------------------------------------------------------


def _job_name(job: Mapping[str, Any]) -> str:
    return str(job["metadata"]["name"])


def newest_job(jobs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The most recently created Job (ties: the later start, then the name)."""
    if not jobs:
        return None

    def order(job: Mapping[str, Any]) -> tuple[str, str, str]:
        return (str(job["metadata"].get("creationTimestamp") or ""),
                str((job.get("status") or {}).get("startTime") or ""), _job_name(job))

    return max(jobs, key=order)


def job_condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    return conditions.find_condition((job.get("status") or {}).get("conditions"), type_)


def job_failed(job: Mapping[str, Any]) -> bool:
    return (job_condition(job, "Failed") or {}).get("status") == "True"


def job_started(job: Mapping[str, Any]) -> bool:
    """A pod of the Job exists (pending or running): the Job is no longer waiting to start."""
    return int((job.get("status") or {}).get("active") or 0) > 0


def running_job(jobs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The newest Job if it has started and not finished."""
    job = newest_job(jobs)
    return job if job is not None and not job_finished(job) and job_started(job) else None


def run_result_of(job: Mapping[str, Any], runs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The run result the Job's run wrote (its run id is the Job's name), if it is among `runs`."""
    name = _job_name(job)
    return next((run for run in reversed(runs) if run.get("runId") == name), None)


def newest_success(runs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return next((run for run in reversed(runs) if run.get("outcome") == results.SUCCEEDED), None)


# -- versions -----------------------------------------------------------------------------------


def timestamp(moment: datetime) -> str:
    return conditions.timestamp(moment.astimezone(UTC))


def _rows(version: StoredVersion) -> int | None:
    rows = version.manifest.get("rows")
    return rows if isinstance(rows, int) and not isinstance(rows, bool) else None


def version_entry(version: StoredVersion, manifest_uri: str) -> dict[str, Any]:
    """One item of `status.versions`."""
    entry: dict[str, Any] = {"id": version.id, "digest": version.digest, "uri": manifest_uri,
                             "createdTime": timestamp(version.created)}
    rows = _rows(version)
    if rows is not None:
        entry["rows"] = rows
    return entry


def schema_of(manifest: Mapping[str, Any]) -> list[dict[str, str]]:
    """`status.schema` from a version manifest's `schema`: [{name, dtype, role}]."""
    schema = manifest.get("schema")
    return [{key: str(column[key]) for key in ("name", "dtype", "role") if column.get(key)}
            for column in (schema if isinstance(schema, list) else [])
            if isinstance(column, Mapping) and column.get("name")]


def version_fields(versions: Sequence[StoredVersion], *, latest_id: str | None, bucket: str,
                   prefix: str) -> dict[str, Any]:
    """The status fields that describe the published versions (`versions` oldest first).

    `latest_id`: the version the newest successful run published, if known and listed;
    otherwise the most recently created version is the latest.
    """
    if not versions:
        return {}
    newest_first = list(reversed(versions))
    latest = next((v for v in newest_first if v.id == latest_id), newest_first[0])
    fields: dict[str, Any] = {
        "latestVersion": latest.id,
        "versions": [version_entry(v, f"s3://{bucket}/{prefix}/versions/{v.id}.json")
                     for v in newest_first[:MAX_VERSIONS_IN_STATUS]],
        "lastMaterializedTime": timestamp(latest.created),
    }
    rows = _rows(latest)
    if rows is not None:
        fields["rows"] = rows
    schema = schema_of(latest.manifest)
    if schema:
        fields["schema"] = schema
    profile = latest.files.get(PROFILE_FILE)
    if profile is not None:
        fields["profileUri"] = f"s3://{bucket}/{profile.key}"
    return fields


VERSION_FIELDS = ("latestVersion", "versions", "rows", "schema", "profileUri", "lastMaterializedTime")


def kept_version_fields(previous: Mapping[str, Any]) -> dict[str, Any]:
    """The version fields of the previous status (when the store cannot be read now)."""
    return {key: previous[key] for key in VERSION_FIELDS if key in previous}


# -- decisions ----------------------------------------------------------------------------------


def run_outcome(run: Mapping[str, Any]) -> Decision:
    """`Materialized` from a run result: the materializer's reason and message, and the run."""
    run_id = run.get("runId") or "?"
    message = str(run.get("message") or "").strip()
    if run.get("outcome") == results.SUCCEEDED:
        message = message or f"version {run.get('version')} published"
        return Decision("True", Reason.MATERIALIZED, f"{message} (run {run_id})")
    reason = str(run.get("reason") or "")
    if reason not in _FAILURE_REASONS:
        reason = Reason.MATERIALIZATION_FAILED
    message = message or f"the materializer reported {run.get('reason') or 'a failure'}"
    return Decision("False", reason, f"{message} (run {run_id})")


def failed_job_outcome(job: Mapping[str, Any]) -> Decision:
    """`Materialized` for a failed Job that left no run result (it crashed, was killed, or could
    not start: the Job's own condition says which)."""
    name = _job_name(job)
    failed = job_condition(job, "Failed") or {}
    why = ": ".join(str(part) for part in (failed.get("reason"), failed.get("message")) if part)
    return Decision("False", Reason.MATERIALIZATION_FAILED,
                    f"Job {name} failed without a run result ({why or 'no reason given'}); "
                    f"see `kubectl logs job/{name}`")


def unfinished_job_outcome(job: Mapping[str, Any]) -> Decision:
    name = _job_name(job)
    if job_started(job):
        return Decision("Unknown", Reason.MATERIALIZING, f"Job {name} is materializing")
    return Decision("Unknown", Reason.PENDING, f"waiting for Job {name} to start")


def completed_job_outcome(job: Mapping[str, Any]) -> Decision:
    """`Materialized` for a Job that completed without writing its run result: the
    materializer always writes one, so something else ran or it was removed."""
    name = _job_name(job)
    return Decision("False", Reason.MATERIALIZATION_FAILED,
                    f"Job {name} completed but wrote no run result; see `kubectl logs job/{name}`")


def materialized(jobs: Sequence[Mapping[str, Any]], versions: Sequence[StoredVersion],
                 runs: Sequence[Mapping[str, Any]], store_error: str | None,
                 schedule: str | None = None) -> Decision:
    """The `Materialized` condition: the outcome of the newest materialization.

    `runs`: the most recent run results, oldest first (empty when the store cannot be read).
    """
    job = newest_job(jobs)
    if job is not None and job_finished(job):
        record = run_result_of(job, runs)
        if record is not None:
            return run_outcome(record)
        if job_failed(job):
            return failed_job_outcome(job)
    if store_error is not None:
        running = f"; Job {_job_name(job)} is not finished" if job is not None and not job_finished(job) else ""
        return Decision("Unknown", OBJECT_STORE_UNAVAILABLE, f"{store_error}{running}")
    if job is not None:
        return completed_job_outcome(job) if job_finished(job) else unfinished_job_outcome(job)
    if runs:
        return run_outcome(runs[-1])
    if versions:
        return Decision("True", Reason.MATERIALIZED, f"version {versions[-1].id} is the newest")
    scheduled = f'; the schedule "{schedule}" runs the next one' if schedule else ""
    return Decision("Unknown", Reason.PENDING, f"no materialization has run yet{scheduled}")


def readiness(latest_version: str | None, rows: int | None, outcome: Decision) -> Decision:
    """The `Ready` condition: a version exists to train on, even when a newer run failed."""
    if latest_version is not None:
        counted = f" ({rows} rows)" if rows is not None else ""
        message = f"version {latest_version}{counted} is available"
        if outcome.status == "False":
            message += (f"; the newest materialization failed ({outcome.reason}), "
                        "see the Materialized condition")
        return Decision("True", Reason.VERSION_AVAILABLE, message)
    if outcome.status == "False":
        return outcome
    return Decision("Unknown", Reason.AWAITING_FIRST_VERSION, outcome.message)


def phase_of(jobs: Sequence[Mapping[str, Any]], latest_version: str | None, outcome: Decision) -> str:
    if running_job(jobs) is not None:
        return "Materializing"
    if latest_version is not None:
        return "Ready"
    if outcome.status == "False":
        return "Failed"
    return "Pending"


# -- the whole status ---------------------------------------------------------------------------


def compute_status(
    spec: FeatureSetSpec,
    observed: Observed,
    *,
    jobs: Sequence[Mapping[str, Any]],
    versions: Sequence[StoredVersion] | None,
    runs: Sequence[Mapping[str, Any]],
    store_error: str | None,
    now: datetime,
    bucket: str,
    prefix: str,
) -> dict[str, Any]:
    """The FeatureSet's new status.

    `jobs`: its materialization Jobs (one-off and CronJob-made). `versions`: the published
    versions, oldest first, or None when the store could not be read (`store_error` says why;
    the previous status's version fields are kept). `runs`: the most recent run results,
    oldest first (`results.read_runs`).
    """
    previous = observed.status
    generation = observed.generation
    if versions is None:
        fields = kept_version_fields(previous)
        known_versions: Sequence[StoredVersion] = ()
    else:
        success = newest_success(runs)
        fields = version_fields(versions, latest_id=success.get("version") if success else None,
                                bucket=bucket, prefix=prefix)
        known_versions = versions
    outcome = materialized(jobs, known_versions, runs, store_error, spec.schedule)
    latest = fields.get("latestVersion")
    ready = readiness(latest, fields.get("rows"), outcome)

    conds = conditions.set_condition(previous.get("conditions"), ConditionType.ACCEPTED, "True",
                                     Reason.SPEC_VALID, "the spec is valid", now=now, generation=generation)
    conds = conditions.set_condition(conds, ConditionType.MATERIALIZED, *outcome, now=now, generation=generation)
    conds = conditions.set_condition(conds, ConditionType.READY, *ready, now=now, generation=generation)
    return {
        "phase": phase_of(jobs, latest, outcome),
        **fields,
        "observedGeneration": generation,
        "conditions": conds,
    }


def transition_events(previous: Mapping[str, Any], new: Mapping[str, Any]) -> list[Event]:
    """Events for what changed and a user should hear of: a new version, a failed run."""
    events: list[Event] = []
    latest = new.get("latestVersion")
    if latest and latest != previous.get("latestVersion"):
        rows = new.get("rows")
        counted = f" with {rows} rows" if rows is not None else ""
        events.append(Event("Normal", Reason.MATERIALIZED, f"published version {latest}{counted}"))
    before = conditions.find_condition(previous.get("conditions"), ConditionType.MATERIALIZED) or {}
    after = conditions.find_condition(new.get("conditions"), ConditionType.MATERIALIZED) or {}
    if after.get("status") == "False" and (before.get("status"), before.get("message")) != ("False", after.get("message")):
        events.append(Event("Warning", str(after.get("reason")), str(after.get("message"))))
    return events
