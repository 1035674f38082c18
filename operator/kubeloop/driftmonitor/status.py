"""A DriftMonitor's status and its retrain decision, derived from what exists: the monitored
ModelVersion, the check's Jobs, the newest check result in the object store, and the retrain
TrainingRuns the monitor owns. Pure (no I/O, no clock: `now` is a parameter), so every decision
has exact unit tests.

Where each fact comes from:

- what is monitored (`model`, `modelVersion`): spec.modelVersionRef, or the champion of
  spec.model (the ModelVersion of that model whose status.champion is true), and the FeatureSet
  version it was trained on (its status.lineage) — `resolve_target`;
- the last check (`lastCheckTime`, `sampleSize`, `drifted`, `driftShare`, `features`,
  `reportUri`): `latest.json` in the object store (see `results.py`). A check is counted once:
  a result whose time is status.lastCheckTime was already counted. `consecutiveBreaches` grows
  by one per new drift, goes back to 0 on no drift, and stays as it was on insufficient samples;
- a check that failed: the newest check Job failed after the newest result was written;
- retrains (`retrains`, `lastRetrain`): the monitor's TrainingRuns (labelled and controlled by
  it), newest first; their creation times count for cooldown and the daily limit.

The retrain decision is a chain of small functions returning (reason, message, create), as
cert-manager writes them; the first that applies decides:

    RetrainDisabled -> AwaitingConsecutiveBreaches -> RetrainInProgress -> (already acted on this
    evidence: the last retrain's outcome) -> RetrainCooldown -> RetrainDailyLimit -> RetrainCreated
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from kubeloop.core import conditions
from kubeloop.core.apimodel import parse_duration
from kubeloop.core.events import Event
from kubeloop.core.reconcile import Observed
from kubeloop.driftmonitor import desired, results
from kubeloop.driftmonitor.api import ConditionType, DriftMonitorSpec, Reason, Retrain

TERMINAL_RUN_PHASES = ("Succeeded", "Failed")
DAY = timedelta(hours=24)
CHAMPION = "champion"


class Decision(NamedTuple):
    """The value of one condition."""

    status: conditions.ConditionStatus
    reason: str
    message: str


class RetrainDecision(NamedTuple):
    """Whether to create a retrain now, and why (not)."""

    reason: str
    message: str
    create: bool = False


# -- what is monitored ------------------------------------------------------------------------


def _time(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("creationTimestamp") or "")


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def champion_of(model: str, versions: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The champion ModelVersion of `model` among `versions` (the newest, should two claim it
    while the alias moves)."""
    champions = [v for v in versions
                 if (v.get("spec") or {}).get("model") == model and (v.get("status") or {}).get("champion") is True]
    return max(champions, key=lambda v: (_time(v), _name(v))) if champions else None


def target_of(version: Mapping[str, Any]) -> desired.Target | None:
    """What to check for a ModelVersion: None until its status names the FeatureSet version
    it was trained on."""
    lineage = (version.get("status") or {}).get("lineage") or {}
    feature_set, feature_set_version = lineage.get("featureSet"), lineage.get("featureSetVersion")
    if not feature_set or not feature_set_version:
        return None
    spec = version.get("spec") or {}
    run = lineage.get("trainingRun") or (spec.get("trainingRunRef") or {}).get("name")
    return desired.Target(model=str(spec.get("model", "")), model_version=_name(version),
                          feature_set=str(feature_set), feature_set_version=str(feature_set_version),
                          feature_set_digest=lineage.get("featureSetDigest"), training_run=run)


def resolve_target(spec: DriftMonitorSpec, namespace: str,
                   versions: Sequence[Mapping[str, Any]]) -> tuple[Decision, desired.Target | None]:
    """The ModelVersion to monitor among `versions` (the namespace's, or the one
    spec.modelVersionRef names), as a Target, or the reason there is none."""
    if spec.model_version_ref is not None:
        name = spec.model_version_ref.name
        version = next((v for v in versions if _name(v) == name), None)
        if version is None:
            return Decision("False", Reason.MODEL_VERSION_NOT_FOUND,
                            f'ModelVersion "{name}" (spec.modelVersionRef) does not exist in namespace "{namespace}"; '
                            "create it, or point spec.modelVersionRef at an existing one"), None
    else:
        model = str(spec.model)
        version = champion_of(model, versions)
        if version is None:
            return Decision("False", Reason.NO_CHAMPION,
                            f'model "{model}" (spec.model) has no champion in namespace "{namespace}": a ModelVersion '
                            "becomes champion when its rollout completes, and checks start then; to monitor a "
                            "version that is not champion, set spec.modelVersionRef instead"), None
    target = target_of(version)
    if target is None:
        return Decision("False", Reason.REFERENCE_UNAVAILABLE,
                        f'ModelVersion "{_name(version)}" does not name the FeatureSet version it was trained on yet '
                        "(status.lineage.featureSetVersion); the check starts once the ModelVersion is registered"), None
    return Decision("True", Reason.READY, f'monitoring ModelVersion "{target.model_version}" of model '
                    f'"{target.model}" against FeatureSet {target.feature_set} version '
                    f"{target.feature_set_version}"), target


def affected_by_model_version(monitor: Mapping[str, Any], version: Mapping[str, Any], *, deleted: bool) -> bool:
    """Whether a change of ModelVersion `version` may change what `monitor` monitors: it is (or
    stopped being) the champion the monitor follows, or the version it names, or the monitor
    is still waiting for a target (not Ready)."""
    spec, current = monitor.get("spec") or {}, monitor.get("status") or {}
    name = _name(version)
    monitored = current.get("modelVersion") == name
    waiting = not conditions.is_true(current.get("conditions"), ConditionType.READY)
    if (spec.get("modelVersionRef") or {}).get("name") == name:
        return deleted or not monitored or waiting
    if spec.get("model") is None or spec.get("model") != (version.get("spec") or {}).get("model"):
        return False
    champion = not deleted and (version.get("status") or {}).get("champion") is True
    return (champion and (not monitored or waiting)) or (not champion and monitored)


# -- checks ------------------------------------------------------------------------------------


def is_new_check(result: results.CheckResult | None, previous: Mapping[str, Any]) -> bool:
    """Whether `result` has not been counted yet (its time is not status.lastCheckTime).

    Compared at the precision status keeps (seconds, as the API writes times): the check's own
    time may carry microseconds."""
    return result is not None and previous.get("lastCheckTime") != conditions.timestamp(result.time)


def consecutive_breaches(result: results.CheckResult | None, previous: Mapping[str, Any]) -> int:
    """Checks in a row that found drift, counting `result` once."""
    count = int(previous.get("consecutiveBreaches") or 0)
    if result is None or not is_new_check(result, previous):
        return count
    if result.verdict == results.VERDICT_DRIFT:
        return count + 1
    if result.verdict == results.VERDICT_NO_DRIFT:
        return 0
    return count  # insufficient samples: no verdict, the streak neither grows nor breaks


def _job_condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    return conditions.find_condition((job.get("status") or {}).get("conditions"), type_)


def failed_check(jobs: Sequence[Mapping[str, Any]], result: results.CheckResult | None) -> Decision | None:
    """`Ready=False` when the newest check Job failed after the newest result was written."""
    if not jobs:
        return None
    job = max(jobs, key=lambda j: (_time(j), _name(j)))
    failed = _job_condition(job, "Failed")
    if failed is None or failed.get("status") != "True":
        return None
    created = conditions.parse_timestamp((job.get("metadata") or {}).get("creationTimestamp"))
    if result is not None and created is not None and created <= result.time:
        return None  # that Job's failure is older than the result we have
    name = _name(job)
    why = ": ".join(str(part) for part in (failed.get("reason"), failed.get("message")) if part) or "no reason given"
    if failed.get("reason") == "PodFailurePolicy":
        # Exit 3 (the podFailurePolicy's FailJob rule): the reference cannot be read.
        return Decision("False", Reason.REFERENCE_UNAVAILABLE,
                        f"check Job {name} could not read the reference of the monitored model's FeatureSet "
                        f"version ({why}); see `kubectl logs job/{name}`")
    return Decision("False", Reason.CHECK_FAILED, f"check Job {name} failed ({why}); see `kubectl logs job/{name}`")


def drifted_condition(result: results.CheckResult | None, spec: DriftMonitorSpec) -> Decision:
    if result is None:
        return Decision("Unknown", Reason.AWAITING_FIRST_CHECK,
                        f'no check has finished yet; the check runs on the schedule "{spec.schedule}"')
    share = "?" if result.drift_share is None else f"{result.drift_share:.2f}"
    where = f"(check {result.check_id}, {result.sample_size} predictions)"
    if result.verdict == results.VERDICT_INSUFFICIENT:
        needed = result.min_samples if result.min_samples is not None else spec.min_samples
        return Decision("Unknown", Reason.INSUFFICIENT_SAMPLES,
                        f"the window of {spec.window} held {result.sample_size} predictions, fewer than "
                        f"minSamples ({needed}): no verdict (check {result.check_id})")
    if result.verdict == results.VERDICT_DRIFT:
        names = ", ".join(result.drifted_features) or "none named"
        return Decision("True", Reason.DRIFT_DETECTED,
                        f"drift share {share} >= {spec.drift_share:.2f}: {names} {where}")
    return Decision("False", Reason.NO_DRIFT, f"drift share {share} < {spec.drift_share:.2f} {where}")


def readiness(target: Decision, store_error: str | None, failure: Decision | None,
              result: results.CheckResult | None, spec: DriftMonitorSpec) -> Decision:
    """`Ready`: the check is scheduled and its last run produced a result."""
    if target.status != "True":
        return target
    if failure is not None:
        return failure
    if store_error is not None:
        return Decision("Unknown", Reason.OBJECT_STORE_UNAVAILABLE, store_error)
    if result is None:
        return Decision("Unknown", Reason.AWAITING_FIRST_CHECK,
                        f'the check is scheduled ("{spec.schedule}") but has not finished yet')
    return Decision("True", Reason.READY, f"check {result.check_id} finished: {result.verdict}")


# -- retrains ---------------------------------------------------------------------------------


def run_phase(run: Mapping[str, Any]) -> str | None:
    return (run.get("status") or {}).get("phase")


def run_finished(run: Mapping[str, Any]) -> bool:
    return run_phase(run) in TERMINAL_RUN_PHASES


def newest_run(runs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return max(runs, key=lambda r: (_time(r), desired.retrain_number(r) or 0, _name(r))) if runs else None


def _annotation(run: Mapping[str, Any], key: str) -> str:
    return str(((run.get("metadata") or {}).get("annotations") or {}).get(key, ""))


@dataclass(frozen=True)
class RetrainFacts:
    """What the retrain decision looks at."""

    retrain: Retrain | None
    """spec.retrain."""
    result: results.CheckResult | None
    """The newest check's result."""
    breaches: int
    """Consecutive breaches, the newest check counted."""
    runs: Sequence[Mapping[str, Any]]
    """The monitor's retrain TrainingRuns."""
    now: datetime


def _disabled(facts: RetrainFacts) -> RetrainDecision | None:
    if facts.retrain is None or not facts.retrain.on_drift:
        return RetrainDecision(Reason.RETRAIN_DISABLED,
                               "drift is reported only: set spec.retrain.onDrift to retrain automatically")
    return None


def _awaiting_breaches(facts: RetrainFacts) -> RetrainDecision | None:
    needed = facts.retrain.consecutive_breaches if facts.retrain else 1
    if facts.breaches < needed:
        return RetrainDecision(Reason.AWAITING_CONSECUTIVE_BREACHES,
                               f"{facts.breaches} of {needed} consecutive checks found drift "
                               "(spec.retrain.consecutiveBreaches)")
    return None


def unfinished_run(runs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The newest retrain that has not finished, if any (there is at most one)."""
    return newest_run([run for run in runs if not run_finished(run)])


def _in_progress(facts: RetrainFacts) -> RetrainDecision | None:
    running = unfinished_run(facts.runs)
    return outcome_of(running) if running is not None else None


def _already_acted(facts: RetrainFacts) -> RetrainDecision | None:
    """The newest retrain was created after this check (or because of it): its outcome stands
    until a newer check finds drift again."""
    last = newest_run(facts.runs)
    if last is None or facts.result is None:
        return None
    created = conditions.parse_timestamp(_time(last))
    acted = _annotation(last, desired.CHECK_ID_ANNOTATION) == facts.result.check_id or (
        created is not None and facts.result.time <= created)
    return outcome_of(last) if acted else None


def _cooldown(facts: RetrainFacts) -> RetrainDecision | None:
    last = newest_run(facts.runs)
    created = conditions.parse_timestamp(_time(last)) if last is not None else None
    if facts.retrain is None or created is None:
        return None
    cooldown = parse_duration(facts.retrain.cooldown)
    if facts.now - created < cooldown:
        until = conditions.timestamp(created + cooldown)
        return RetrainDecision(Reason.RETRAIN_COOLDOWN,
                               f'drift persists, but retrain "{_name(last or {})}" was created less than '
                               f"{facts.retrain.cooldown} ago (spec.retrain.cooldown); the next may start after {until}")
    return None


def _daily_limit(facts: RetrainFacts) -> RetrainDecision | None:
    if facts.retrain is None:
        return None
    now = facts.now
    recent = [run for run in facts.runs
              if (created := conditions.parse_timestamp(_time(run))) is not None and now - created < DAY]
    if len(recent) >= facts.retrain.max_per_day:
        return RetrainDecision(Reason.RETRAIN_DAILY_LIMIT,
                               f"{len(recent)} retrains were created in the last 24 hours, the most "
                               f"spec.retrain.maxPerDay ({facts.retrain.max_per_day}) allows")
    return None


RETRAIN_CHAIN: tuple[Callable[[RetrainFacts], RetrainDecision | None], ...] = (
    _disabled, _awaiting_breaches, _in_progress, _already_acted, _cooldown, _daily_limit)


def retrain_decision(facts: RetrainFacts) -> RetrainDecision | None:
    """Whether the newest check's drift creates a retrain now; None when it found no drift."""
    if facts.result is None or facts.result.verdict != results.VERDICT_DRIFT:
        return None
    for rule in RETRAIN_CHAIN:
        decided = rule(facts)
        if decided is not None:
            return decided
    return RetrainDecision(Reason.RETRAIN_CREATED, retrain_reason(facts.result, facts.breaches), create=True)


def retrain_reason(result: results.CheckResult, breaches: int) -> str:
    """The reason a retrain carries, in words (status.lastRetrain.reason)."""
    share = "?" if result.drift_share is None else f"{result.drift_share:.2f}"
    names = ", ".join(result.drifted_features) or "no feature named"
    in_a_row = f", {breaches} checks in a row" if breaches > 1 else ""
    return f"drift share {share} in check {result.check_id} ({names}){in_a_row}"


def evidence_of(result: results.CheckResult, decision: RetrainDecision) -> desired.Evidence:
    return desired.Evidence(check_id=result.check_id, drift_share=result.drift_share,
                            drifted_features=result.drifted_features, model_version=result.model_version,
                            reason=decision.message)


def outcome_of(run: Mapping[str, Any]) -> RetrainDecision:
    """The last retrain's outcome, as the Retraining condition tells it."""
    name, phase = _name(run), run_phase(run)
    if phase == "Succeeded":
        return RetrainDecision(Reason.RETRAIN_SUCCEEDED, f'retrain "{name}" succeeded; its ModelVersion goes '
                               "through the gates and the rollout")
    if phase == "Failed":
        return RetrainDecision(Reason.RETRAIN_FAILED, f'retrain "{name}" failed; see `kubectl describe '
                               f"trainingrun {name}`")
    return RetrainDecision(Reason.RETRAIN_IN_PROGRESS, f'TrainingRun "{name}" is still running: one retrain at a time')


def retraining_condition(decision: RetrainDecision | None, runs: Sequence[Mapping[str, Any]],
                         drifted: Decision) -> Decision:
    """`Retraining`: True while a retrain of the monitor is in flight; otherwise why not, or how
    the last one ended."""
    if decision is not None and decision.create:
        return Decision("True", decision.reason, decision.message)
    running = unfinished_run(runs)
    if running is not None:
        return Decision("True", *outcome_of(running)[:2])
    if decision is not None:
        return Decision("False", decision.reason, decision.message)
    last = newest_run(runs)
    if last is not None:
        return Decision("False", *outcome_of(last)[:2])
    return Decision("False", drifted.reason, f"no retrain needed: {drifted.message}")


def last_retrain(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    last = newest_run(runs)
    if last is None:
        return None
    entry = {"trainingRun": _name(last), "time": _time(last) or None,
             "reason": _annotation(last, desired.REASON_ANNOTATION) or None}
    return {key: value for key, value in entry.items() if value is not None}


# -- the whole status -------------------------------------------------------------------------


CHECK_FIELDS = ("lastCheckTime", "sampleSize", "drifted", "driftShare", "features", "reportUri")


def check_fields(result: results.CheckResult) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "lastCheckTime": conditions.timestamp(result.time),
        "sampleSize": result.sample_size,
        "drifted": result.drifted,
        "driftShare": result.drift_share,
        "features": [dict(feature) for feature in result.features],
        "reportUri": result.report_uri,
    }
    return {key: value for key, value in fields.items() if value is not None}


def phase_of(target: Decision, ready: Decision, retraining: Decision, result: results.CheckResult | None,
             previous_phase: Any) -> str:
    if target.status != "True":
        # Waiting for the model (applied together with it, or before its first rollout), as a
        # TrainingRun waits for its FeatureSet: not a failure; Ready=False says what is missing.
        return "Pending"
    if ready.status == "False":
        return "Failed"
    if retraining.status == "True":
        return "Retraining"
    if result is None:
        return str(previous_phase) if previous_phase in ("Healthy", "Drifted", "InsufficientData") else "Pending"
    return {results.VERDICT_DRIFT: "Drifted", results.VERDICT_NO_DRIFT: "Healthy"}.get(result.verdict,
                                                                                     "InsufficientData")


def compute_status(
    spec: DriftMonitorSpec,
    observed: Observed,
    *,
    target: tuple[Decision, desired.Target | None],
    jobs: Sequence[Mapping[str, Any]],
    result: results.CheckResult | None,
    store_error: str | None,
    runs: Sequence[Mapping[str, Any]],
    decision: RetrainDecision | None,
) -> dict[str, Any]:
    """The DriftMonitor's new status.

    `result`: the newest check result, or None (no check yet, or `store_error` says why it
    cannot be read: then the previous status's check fields are kept). `runs`: the monitor's
    retrain TrainingRuns, the one this pass created included. `decision`: `retrain_decision`.
    """
    previous, now, generation = observed.status, observed.now, observed.generation
    target_decision, monitored = target
    if result is not None:
        fields = check_fields(result)
    else:
        fields = {key: previous[key] for key in CHECK_FIELDS if key in previous}
    drifted = drifted_condition(result, spec)
    if result is None and store_error is not None and "drifted" in previous:
        kept = conditions.find_condition(previous.get("conditions"), ConditionType.DRIFTED)
        if kept is not None:
            drifted = Decision(kept["status"], kept["reason"], kept["message"])
    ready = readiness(target_decision, store_error, failed_check(jobs, result), result, spec)
    retraining = retraining_condition(decision, runs, drifted)

    conds = conditions.set_condition(previous.get("conditions"), ConditionType.ACCEPTED, "True",
                                     Reason.SPEC_VALID, "the spec is valid", now=now, generation=generation)
    conds = conditions.set_condition(conds, ConditionType.READY, *ready, now=now, generation=generation)
    conds = conditions.set_condition(conds, ConditionType.DRIFTED, *drifted, now=now, generation=generation)
    conds = conditions.set_condition(conds, ConditionType.RETRAINING, *retraining, now=now, generation=generation)
    numbers = [desired.retrain_number(run) or 0 for run in runs]
    status: dict[str, Any] = {
        "phase": phase_of(target_decision, ready, retraining, result, previous.get("phase")),
        "model": monitored.model if monitored else (spec.model or previous.get("model")),
        "modelVersion": monitored.model_version if monitored else previous.get("modelVersion"),
        **fields,
        "consecutiveBreaches": consecutive_breaches(result, previous),
        "retrains": max([int(previous.get("retrains") or 0), len(runs), *numbers]),
        "lastRetrain": last_retrain(runs) or previous.get("lastRetrain"),
        "observedGeneration": generation,
        "conditions": conds,
    }
    return {key: value for key, value in status.items() if value is not None}


def transition_events(previous: Mapping[str, Any], new: Mapping[str, Any]) -> list[Event]:
    """Events a user should hear of: drift newly detected by a check, a retrain created, a
    retrain that failed."""
    events: list[Event] = []
    drifted = conditions.find_condition(new.get("conditions"), ConditionType.DRIFTED) or {}
    if drifted.get("status") == "True" and new.get("lastCheckTime") != previous.get("lastCheckTime"):
        events.append(Event("Warning", Reason.DRIFT_DETECTED, str(drifted.get("message"))))
    before = conditions.find_condition(previous.get("conditions"), ConditionType.RETRAINING) or {}
    after = conditions.find_condition(new.get("conditions"), ConditionType.RETRAINING) or {}
    changed = (before.get("reason"), before.get("message")) != (after.get("reason"), after.get("message"))
    if changed and after.get("reason") == Reason.RETRAIN_FAILED:
        events.append(Event("Warning", Reason.RETRAIN_FAILED, str(after.get("message"))))
    return events
