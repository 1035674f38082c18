"""A TrainingRun's status, derived from what exists: its FeatureSet, its Jobs (one per attempt)
and what the trainer wrote to the object store. Pure (no I/O, no clock: `now` comes with
`Observed`), so each decision has exact unit tests.

Where each fact comes from:

- `FeatureSetReady`, `featureSetVersion`: before the first Job, the FeatureSet's status
  (`latestVersion`, or the pinned version in `versions[]`); afterwards, the version recorded in
  the first Job (a run never changes the data it trains on);
- the attempt's state: the newest Job (its `Suspended`, `Complete`, `Failed` conditions, its
  `active`/`ready` counts) and, for a failed Job, the trainer's `failure.json`;
- `progress`, `keyMetric` while running: `progress.json`; `metrics`, `artifact`,
  `reproducibility` on success: `record.json` (`trainingruns/<ns>/<name>/`).

The decisions are small functions returning a `Decision` (status, reason, message), as
cert-manager writes them: `feature_set_resolution`, `spec_change`, `attempt_state`,
`should_restart`, `outcome`, `registration_condition`, then `compute_status` puts them together.

Semantics:
- phase: Pending (waiting for the FeatureSet, for Kueue, for pods), Running, Suspended,
  Succeeded, Failed. Succeeded and Failed are final.
- a failed attempt is transient (the Job's BackoffLimitExceeded: a crash, a killed pod, a lost
  node) unless the trainer said otherwise (exit 3 / failure.json) or the deadline passed; a
  transient failure starts attempt n+1 while `attempts < maxRestarts + 1`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

from kubeloop.core import conditions
from kubeloop.core.apimodel import CONDITION_REASON_PATTERN, DIGEST_PATTERN
from kubeloop.core.events import Event
from kubeloop.core.reconcile import Observed
from kubeloop.trainingrun.api import ConditionType, Reason, TrainingRunSpec
from kubeloop.trainingrun.desired import MUTABLE_SPEC_FIELDS, FeatureSetVersion, job_attempt

# The object store cannot be read: the outcome of a finished attempt is unknown until it can.
OBJECT_STORE_UNAVAILABLE = "ObjectStoreUnavailable"
TERMINAL_PHASES = ("Succeeded", "Failed")
_REASON = re.compile(CONDITION_REASON_PATTERN)
_DIGEST = re.compile(DIGEST_PATTERN)


class Decision(NamedTuple):
    """The value of one condition."""

    status: conditions.ConditionStatus
    reason: str
    message: str


# -- the FeatureSet ---------------------------------------------------------------------------


def feature_set_resolution(name: str, pinned: str | None, featureset: Mapping[str, Any] | None
                           ) -> tuple[Decision, FeatureSetVersion | None]:
    """Which FeatureSet version to train on, from the FeatureSet object (None: it does not exist).

    Unpinned: the newest (`status.latestVersion`). Pinned: that version, which must be listed in
    `status.versions` (a version the FeatureSet has not published yet is waited for).
    """
    if featureset is None:
        return Decision("False", Reason.FEATURE_SET_NOT_FOUND,
                        f'FeatureSet "{name}" does not exist in this namespace; create it, or fix '
                        "spec.featureSetRef.name (the run waits for it)"), None
    status = featureset.get("status") or {}
    versions = [v for v in status.get("versions") or [] if isinstance(v, Mapping) and v.get("id")]
    wanted = pinned or status.get("latestVersion")
    if not wanted:
        return Decision("False", Reason.FEATURE_SET_NOT_READY,
                        f'FeatureSet "{name}" has no materialized version yet; the run starts when it has '
                        "one (see `kubectl describe fs " + name + "`)"), None
    entry = next((v for v in versions if v.get("id") == wanted), None)
    if entry is None and pinned:
        return Decision("False", Reason.FEATURE_SET_NOT_READY,
                        f'FeatureSet "{name}" has no version "{pinned}" (spec.featureSetVersion); '
                        f"its latest is {status.get('latestVersion') or 'none'}"), None
    digest = str(entry["digest"]) if entry is not None and entry.get("digest") else None
    version = FeatureSetVersion(name=name, version=str(wanted), digest=digest)
    return Decision("True", Reason.FEATURE_SET_READY, f'training on FeatureSet "{name}" version {wanted}'), version


def recorded_feature_set(run: Mapping[str, Any] | None) -> FeatureSetVersion | None:
    """The FeatureSet version a Job's run document names."""
    found = (run or {}).get("featureSet")
    if not isinstance(found, Mapping) or not found.get("name") or not found.get("version"):
        return None
    return FeatureSetVersion(name=str(found["name"]), version=str(found["version"]),
                             digest=str(found["digest"]) if found.get("digest") else None)


# -- immutability -----------------------------------------------------------------------------


def spec_change(recorded: Mapping[str, Any] | None, current: Mapping[str, Any], job: str) -> Decision:
    """`Accepted`: False (SpecImmutable) when the spec differs from the one the run started with.

    `recorded`: the spec of the run's first Job (camelCase), None before it exists.
    """
    if recorded is None:
        return Decision("True", Reason.SPEC_VALID, "the spec is valid")
    keys = sorted((set(recorded) | set(current)) - set(MUTABLE_SPEC_FIELDS))
    changed = [f"spec.{key}" for key in keys if recorded.get(key) != current.get(key)]
    if not changed:
        return Decision("True", Reason.SPEC_VALID, "the spec is valid")
    return Decision("False", Reason.SPEC_IMMUTABLE,
                    f"{', '.join(changed)} changed after Job {job} was created; the change is refused and the run "
                    "goes on with the spec it started with (only spec.suspend may change). To train with the "
                    "new spec, create a new TrainingRun (or delete this one and create it again)")


# -- the attempt ------------------------------------------------------------------------------

AttemptPhase = Literal["queued", "suspended", "starting", "running", "succeeded", "permanent", "transient"]


class AttemptState(NamedTuple):
    """Where the current attempt's Job stands, with the reason and message to show."""

    phase: AttemptPhase
    reason: str
    message: str


def job_condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    found = conditions.find_condition((job.get("status") or {}).get("conditions"), type_)
    return found if found is not None and found.get("status") == "True" else None


def job_name_of(job: Mapping[str, Any]) -> str:
    return str(job["metadata"]["name"])


def current_job(jobs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The Job of the newest attempt."""
    numbered = [job for job in jobs if job_attempt(job) is not None]
    return max(numbered, key=lambda job: job_attempt(job) or 0) if numbered else None


def trainer_reason(failure: Mapping[str, Any]) -> str:
    """The trainer's reason, if it is a valid condition reason; else TrainingFailed."""
    reason = str(failure.get("reason") or "")
    return reason if reason and len(reason) <= 1024 and _REASON.match(reason) else Reason.TRAINING_FAILED


def attempt_state(job: Mapping[str, Any], spec: TrainingRunSpec, failure: Mapping[str, Any] | None
                  ) -> AttemptState:
    """The state of one attempt from its Job (and the trainer's failure.json, if it wrote one)."""
    name = job_name_of(job)
    status = job.get("status") or {}
    if job_condition(job, "Complete") is not None:
        return AttemptState("succeeded", Reason.SUCCEEDED, f"Job {name} completed")
    failed = job_condition(job, "Failed")
    if failed is not None:
        if failure is not None:
            message = str(failure.get("message") or "").strip() or "the trainer reported a permanent failure"
            return AttemptState("permanent", trainer_reason(failure), message)
        why = str(failed.get("message") or "").strip()
        if failed.get("reason") == "DeadlineExceeded":
            return AttemptState("permanent", Reason.DEADLINE_EXCEEDED,
                                f"Job {name} ran longer than spec.activeDeadlineSeconds "
                                f"({spec.active_deadline_seconds}s)")
        if failed.get("reason") == "PodFailurePolicy":
            return AttemptState("permanent", Reason.TRAINING_FAILED,
                                f"the trainer exited with code 3 (a failure no retry can fix) but left no "
                                f"failure.json; see `kubectl logs job/{name}` ({why})")
        return AttemptState("transient", Reason.BACKOFF_LIMIT_EXCEEDED,
                            f"Job {name} failed ({failed.get('reason') or 'Failed'}: {why or 'no message'})")
    suspended = job_condition(job, "Suspended") is not None or (job.get("spec") or {}).get("suspend")
    if spec.suspend:
        return AttemptState("suspended", Reason.SUSPENDED, f"spec.suspend is true: Job {name} runs no pods")
    if suspended and spec.queue_name:
        return AttemptState("queued", Reason.QUEUED,
                            f'Job {name} waits for admission by Kueue (LocalQueue "{spec.queue_name}")')
    if suspended:
        return AttemptState("starting", Reason.JOB_CREATED, f"Job {name} is being resumed")
    ready, active = int(status.get("ready") or 0), int(status.get("active") or 0)
    if ready > 0:
        return AttemptState("running", Reason.RUNNING, f"{ready} of {spec.workers} workers of Job {name} are running")
    return AttemptState("starting", Reason.JOB_CREATED,
                        f"Job {name} created; {active} of {spec.workers} worker pods started, waiting for them to run")


def should_restart(state: AttemptState, attempts: int, max_restarts: int) -> bool:
    """A transient failure starts the next attempt while attempts remain."""
    return state.phase == "transient" and attempts < max_restarts + 1


def exhausted(state: AttemptState, attempts: int, max_restarts: int) -> AttemptState:
    """The final state of a transient failure with no attempt left."""
    if max_restarts == 0:
        return AttemptState("permanent", Reason.BACKOFF_LIMIT_EXCEEDED,
                            f"{state.message}; spec.maxRestarts is 0, so the run is not restarted")
    return AttemptState("permanent", Reason.MAX_RESTARTS_EXCEEDED,
                        f"all {attempts} attempts failed (spec.maxRestarts {max_restarts}); the last: {state.message}")


class Outcome(NamedTuple):
    """The run as a whole: phase and the Running / Succeeded conditions."""

    phase: str
    running: Decision
    succeeded: Decision


def outcome(state: AttemptState, attempts: int, max_restarts: int, *, record: Mapping[str, Any] | None,
            store_error: str | None) -> Outcome:
    """Phase, `Running` and `Succeeded` from the current attempt's state."""
    of = f" (attempt {attempts} of {max_restarts + 1})" if attempts > 1 else ""
    if state.phase == "succeeded":
        if record is not None:
            return Outcome("Succeeded", Decision("False", Reason.SUCCEEDED, "training finished"),
                           Decision("True", Reason.SUCCEEDED, f"{state.message}; the run record is published"))
        if store_error is not None:
            waiting = Decision("Unknown", OBJECT_STORE_UNAVAILABLE, f"{state.message}; {store_error}")
            return Outcome("Running", waiting, waiting)
        failed = Decision("False", Reason.TRAINING_FAILED,
                          f"{state.message} but the trainer wrote no run record (record.json)")
        return Outcome("Failed", failed, failed)
    if state.phase == "transient":
        state = exhausted(state, attempts, max_restarts)
    if state.phase == "permanent":
        failed = Decision("False", state.reason, state.message + of)
        return Outcome("Failed", failed, failed)
    if state.phase == "running":
        reason = Reason.RESTARTING if attempts > 1 else Reason.RUNNING
        message = state.message + (f"; resumed from the last checkpoint{of}" if attempts > 1 else "")
        return Outcome("Running", Decision("True", reason, message), Decision("Unknown", reason, message))
    phase = {"queued": "Pending", "suspended": "Suspended", "starting": "Pending"}[state.phase]
    waiting = Decision("False", state.reason, state.message + of)
    return Outcome(phase, waiting, Decision("Unknown", state.reason, state.message + of))


# -- what the trainer wrote -------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _parse_time(value: Any) -> datetime | None:
    """A time the trainer wrote: epoch seconds, or RFC 3339."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return conditions.parse_timestamp(value)


def progress_of(document: Mapping[str, Any] | None, *, done: bool = False) -> dict[str, Any] | None:
    """`status.progress` from progress.json (epoch, epochs, percent, ETA)."""
    if document is None:
        return None
    progress: dict[str, Any] = {}
    epoch, epochs, percent = (_number(document.get(key)) for key in ("epoch", "epochs", "percent"))
    if epoch is not None and epoch >= 0:
        progress["epoch"] = int(epoch)
    if epochs is not None and epochs >= 1:
        progress["epochs"] = int(epochs)
    if percent is not None:
        progress["percent"] = max(0, min(100, int(percent)))
    updated, eta = _parse_time(document.get("updated")), _number(document.get("etaSeconds"))
    if updated is not None and eta is not None and eta >= 0 and not done:
        progress["estimatedCompletionTime"] = conditions.timestamp(updated + timedelta(seconds=eta))
    if done:
        progress["percent"] = 100
    return progress or None


def numeric_metrics(metrics: Any) -> dict[str, float]:
    """The finite numbers of a metrics mapping (anything else is left out)."""
    if not isinstance(metrics, Mapping):
        return {}
    return {str(key): value for key, raw in metrics.items() if (value := _number(raw)) is not None}


def final_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The final validation metrics of a run record (`finalMetrics`, or `metrics.final`, or a
    flat `metrics` mapping)."""
    for candidate in (record.get("finalMetrics"), (record.get("metrics") or {}).get("final")
                      if isinstance(record.get("metrics"), Mapping) else None, record.get("metrics")):
        found = numeric_metrics(candidate)
        if found:
            return found
    return {}


KEY_METRICS = {"classification": ("auc", "accuracy"), "regression": ("rmse",)}


def key_metric(task: str, metrics: Mapping[str, float]) -> dict[str, Any] | None:
    """The headline metric: auc (binary classification), accuracy (multiclass), rmse (regression)."""
    for name in KEY_METRICS.get(task, ()):
        for key in (name, f"val_{name}", f"val{name.capitalize()}", f"validation_{name}"):
            if key in metrics:
                return {"name": name, "value": metrics[key]}
    return None


def recorded_key_metric(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The headline metric the trainer chose (`keyMetric` of the run record), if numeric."""
    found = record.get("keyMetric")
    if not isinstance(found, Mapping) or not isinstance(found.get("name"), str):
        return None
    value = _number(found.get("value"))
    return {"name": found["name"], "value": value} if value is not None else None


def artifact_of(record: Mapping[str, Any]) -> dict[str, Any] | None:
    artifact = record.get("artifact")
    if not isinstance(artifact, Mapping) or not artifact.get("uri"):
        return None
    result: dict[str, Any] = {"uri": str(artifact["uri"])}
    digest = artifact.get("digest")
    if isinstance(digest, str) and _DIGEST.match(digest):
        result["digest"] = digest
        result["shortDigest"] = digest.removeprefix("sha256:")[:12]
    return result


# status field -> keys the run record may use for it
_REPRODUCIBILITY_KEYS: dict[str, tuple[str, ...]] = {
    "seed": ("seed",),
    "deterministic": ("deterministic",),
    "worldSize": ("worldSize", "world_size"),
    "backend": ("backend",),
    "deviceType": ("deviceType", "device_type", "device"),
    "image": ("image",),
    "gitSha": ("gitSha", "git_sha"),
    "pythonVersion": ("pythonVersion", "python_version", "python"),
    "torchVersion": ("torchVersion", "torch_version", "torch"),
    "numpyVersion": ("numpyVersion", "numpy_version", "numpy"),
    "featureSetDigest": ("featureSetDigest", "feature_set_digest"),
    "dataDigest": ("dataDigest", "data_digest"),
}


def _valid(field: str, value: Any) -> bool:
    if field == "seed" or field == "worldSize":
        return isinstance(value, int) and not isinstance(value, bool) and value >= (1 if field == "worldSize" else 0)
    if field == "deterministic":
        return isinstance(value, bool)
    if field == "backend":
        return value in ("gloo", "nccl")
    if field == "deviceType":
        return value in ("cpu", "cuda")
    if field in ("featureSetDigest", "dataDigest"):
        return isinstance(value, str) and bool(_DIGEST.match(value))
    return isinstance(value, str) and bool(value)


def reproducibility_of(record: Mapping[str, Any], spec: TrainingRunSpec,
                       feature_set: FeatureSetVersion | None) -> dict[str, Any]:
    """`status.reproducibility` from the run record's sections (reproducibility, environment,
    data, featureSet, top level), completed with what the operator knows for sure."""
    sections = [record.get(key) for key in ("reproducibility", "environment", "data", "featureSet")]
    sections = [s for s in sections if isinstance(s, Mapping)] + [record]
    found: dict[str, Any] = {}
    for field, keys in _REPRODUCIBILITY_KEYS.items():
        for section in sections:
            value = next((section[key] for key in keys if key in section and _valid(field, section[key])), None)
            if value is not None:
                found[field] = value
                break
    feature_set_section = record.get("featureSet")
    if "featureSetDigest" not in found and isinstance(feature_set_section, Mapping) and _valid(
            "featureSetDigest", feature_set_section.get("digest")):
        found["featureSetDigest"] = feature_set_section["digest"]
    defaults = {"seed": spec.seed, "deterministic": spec.deterministic,
                "worldSize": spec.workers * spec.procs_per_worker,
                "featureSetDigest": feature_set.digest if feature_set else None}
    for field, value in defaults.items():
        if field not in found and value is not None and _valid(field, value):
            found[field] = value
    return found


# -- registration -----------------------------------------------------------------------------


class Registration(NamedTuple):
    """What the handler found or did about the ModelVersion of spec.register."""

    name: str
    ok: bool
    message: str


def previous_registration(previous: Mapping[str, Any]) -> Registration | None:
    """The registration an earlier pass recorded (Registered=True and modelVersionRef), if any."""
    found = conditions.find_condition(previous.get("conditions"), ConditionType.REGISTERED)
    name = (previous.get("modelVersionRef") or {}).get("name")
    if found is None or found.get("status") != "True" or not name:
        return None
    return Registration(str(name), True, str(found.get("message") or ""))


def registration_condition(registration: Registration | None, succeeded: bool) -> Decision:
    if not succeeded or registration is None:
        return Decision("Unknown", Reason.PENDING, "the ModelVersion is created when training succeeds")
    if registration.ok:
        return Decision("True", Reason.REGISTERED, registration.message)
    return Decision("False", Reason.REGISTRATION_FAILED, registration.message)


# -- the whole status -------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreFacts:
    """What the trainer wrote (None: not written, or stale), or why the store cannot be read."""

    progress: Mapping[str, Any] | None = None
    record: Mapping[str, Any] | None = None
    failure: Mapping[str, Any] | None = None
    error: str | None = None


def _kept(conds: Sequence[Mapping[str, Any]], type_: str) -> Decision:
    found = conditions.find_condition(conds, type_) or {}
    return Decision(found.get("status", "Unknown"), str(found.get("reason") or Reason.PENDING),
                    str(found.get("message") or ""))


def _first_time(jobs: Sequence[Mapping[str, Any]]) -> str | None:
    times = [str((job.get("status") or {}).get("startTime") or "") for job in jobs]
    times = [t for t in times if t]
    return min(times) if times else None


def _finished_time(job: Mapping[str, Any], now: datetime) -> str:
    status = job.get("status") or {}
    if status.get("completionTime"):
        return str(status["completionTime"])
    failed = job_condition(job, "Failed")
    if failed is not None and failed.get("lastTransitionTime"):
        return str(failed["lastTransitionTime"])
    return conditions.timestamp(now)


def compute_status(
    spec: TrainingRunSpec,
    observed: Observed,
    *,
    trained: TrainingRunSpec | None = None,
    recorded: Mapping[str, Any] | None,
    resolution: tuple[Decision, FeatureSetVersion | None],
    jobs: Sequence[Mapping[str, Any]],
    attempts: int,
    store: StoreFacts,
    registration: Registration | None,
    run_record_uri: str,
) -> dict[str, Any]:
    """The TrainingRun's new status.

    `spec`: the current spec; `trained`: the spec the run trains with (the one recorded in its
    Job, with the current `suspend`; default `spec`). `recorded`: the run document of the run's
    Job (None before one exists): its spec and FeatureSet version. `resolution`: the
    FeatureSet decision (used before the first Job). `jobs`: the run's Jobs. `attempts`: attempts
    started. `registration`: the ModelVersion outcome, once succeeded with spec.register.
    """
    previous, now, generation = observed.status, observed.now, observed.generation
    current = spec.to_dict()
    spec = trained or spec  # from here on: the spec the run trains with
    job = current_job(jobs)
    accepted = spec_change((recorded or {}).get("spec") if recorded else None, current,
                           job_name_of(job) if job is not None else "")
    feature_set = recorded_feature_set(recorded)
    # Finished, and its Jobs deleted after ttlSecondsAfterFinished: the outcome stands.
    finished_long_ago = job is None and previous.get("phase") in TERMINAL_PHASES and attempts > 0
    if finished_long_ago:
        fs_decision = _kept(previous.get("conditions") or [], ConditionType.FEATURE_SET_READY)
        if previous.get("featureSetVersion"):
            feature_set = FeatureSetVersion(spec.feature_set_ref.name, str(previous["featureSetVersion"]))
    elif feature_set is not None:
        fs_decision = Decision("True", Reason.FEATURE_SET_READY,
                               f'training on FeatureSet "{feature_set.name}" version {feature_set.version}')
    else:
        fs_decision, feature_set = resolution

    conds = conditions.set_condition(previous.get("conditions"), ConditionType.ACCEPTED, *accepted,
                                     now=now, generation=generation)
    conds = conditions.set_condition(conds, ConditionType.FEATURE_SET_READY, *fs_decision, now=now,
                                     generation=generation)
    fields: dict[str, Any] = {}
    for key in ("startTime", "completionTime", "progress", "keyMetric", "metrics", "artifact", "reproducibility",
                "modelVersionRef", "jobName"):
        if key in previous:
            fields[key] = previous[key]

    if finished_long_ago:
        result = Outcome(str(previous["phase"]), _kept(conds, ConditionType.RUNNING),
                         _kept(conds, ConditionType.SUCCEEDED))
    elif job is None:
        waiting = (Decision("False", fs_decision.reason, fs_decision.message) if fs_decision.status != "True"
                   else Decision("False", Reason.RECONCILING, "creating the training Job"))
        result = Outcome("Pending", waiting, Decision("Unknown", waiting.reason, waiting.message))
    else:
        state = attempt_state(job, spec, store.failure)
        result = outcome(state, attempts, spec.max_restarts, record=store.record, store_error=store.error)
        fields["jobName"] = job_name_of(job)
        start = previous.get("startTime") or _first_time(jobs)
        if start:
            fields["startTime"] = start
        if result.phase in TERMINAL_PHASES and "completionTime" not in fields:
            fields["completionTime"] = _finished_time(job, now)
        progress = progress_of(store.progress, done=result.phase == "Succeeded")
        if progress is not None:
            fields["progress"] = progress
        if store.progress is not None and result.phase != "Succeeded":
            running_key = key_metric(spec.model.task, numeric_metrics(store.progress.get("metrics")))
            if running_key is not None:
                fields["keyMetric"] = running_key
        if result.phase == "Succeeded" and store.record is not None:
            metrics = final_metrics(store.record)
            fields["metrics"] = metrics
            final_key = recorded_key_metric(store.record) or key_metric(spec.model.task, metrics)
            if final_key is not None:
                fields["keyMetric"] = final_key
            artifact = artifact_of(store.record)
            if artifact is not None:
                fields["artifact"] = artifact
            fields["reproducibility"] = reproducibility_of(store.record, spec, feature_set)
            fields["runRecordUri"] = run_record_uri
        if store.error is not None and result.running.reason != OBJECT_STORE_UNAVAILABLE:
            # Progress and the trainer's messages are unknown meanwhile; say why.
            result = result._replace(running=result.running._replace(
                message=f"{result.running.message}; {store.error}"))

    conds = conditions.set_condition(conds, ConditionType.RUNNING, *result.running, now=now, generation=generation)
    conds = conditions.set_condition(conds, ConditionType.SUCCEEDED, *result.succeeded, now=now,
                                     generation=generation)
    required = [ConditionType.FEATURE_SET_READY, ConditionType.SUCCEEDED]
    if spec.registration is not None:
        registered = registration_condition(registration, result.phase == "Succeeded")
        conds = conditions.set_condition(conds, ConditionType.REGISTERED, *registered, now=now,
                                         generation=generation)
        required.append(ConditionType.REGISTERED)
        if registration is not None and registration.ok:
            fields["modelVersionRef"] = {"name": registration.name}
    conds = conditions.with_ready(conds, required, now=now, generation=generation)
    if "runRecordUri" in previous and "runRecordUri" not in fields:
        fields["runRecordUri"] = previous["runRecordUri"]
    new: dict[str, Any] = {"phase": result.phase, "attempts": attempts}
    if feature_set is not None:
        new["featureSetVersion"] = feature_set.version
    new.update({key: value for key, value in fields.items() if value is not None})
    new["observedGeneration"] = generation
    new["conditions"] = conds
    return new


def transition_events(previous: Mapping[str, Any], new: Mapping[str, Any]) -> list[Event]:
    """Events a user should hear of in `kubectl describe tr`: an attempt restarted, the run
    succeeded (with its key metric) or failed for good, the ModelVersion registered or not.
    Only transitions between `previous` and `new` count, so a pass that changes nothing says
    nothing (and the Event names dedupe passes that race)."""
    events: list[Event] = []
    before, after = int(previous.get("attempts") or 0), int(new.get("attempts") or 0)
    if after > before >= 1:
        running = conditions.find_condition(new.get("conditions"), ConditionType.RUNNING) or {}
        events.append(Event("Warning", Reason.RESTARTING,
                            f"attempt {after} started after attempt {before} failed: {running.get('message', '')}"))
    phase = new.get("phase")
    if phase != previous.get("phase") and phase in TERMINAL_PHASES:
        done = conditions.find_condition(new.get("conditions"), ConditionType.SUCCEEDED) or {}
        if phase == "Succeeded":
            key = new.get("keyMetric") or {}
            metric = f"{key['name']} {key['value']:.4g}; " if "name" in key and "value" in key else ""
            events.append(Event("Normal", Reason.SUCCEEDED, f"{metric}{done.get('message', '')}"))
        else:
            events.append(Event("Warning", str(done.get("reason") or "Failed"), str(done.get("message", ""))))
    was = conditions.find_condition(previous.get("conditions"), ConditionType.REGISTERED) or {}
    now = conditions.find_condition(new.get("conditions"), ConditionType.REGISTERED) or {}
    if (now.get("status"), now.get("reason")) != (was.get("status"), was.get("reason")) and \
            now.get("status") in ("True", "False"):
        events.append(Event("Normal" if now["status"] == "True" else "Warning", str(now.get("reason")),
                            str(now.get("message", ""))))
    return events
