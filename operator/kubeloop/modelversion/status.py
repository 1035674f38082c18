"""A ModelVersion's status and its rollout decisions, as pure functions of what the handler
observed (no I/O, no clock: `now` comes with `Observed`), so each decision has exact unit tests.

The stages, in the order a user debugs them:

1. registration (`registration_source`): the TrainingRun exists and succeeded, and its run
   record names the artifact, metrics and lineage;
2. `ArtifactVerified`: the artifact's bytes hash to the record's digests (handlers verify once
   per artifact digest; the result is kept in status);
3. `GatesPassed`: the gates, evaluated once per spec generation against the champion of that
   moment (gates.py) and frozen;
4. serving (`decide_serving`): the model's one InferenceService holds this version's template
   (the champion's, or that of the one version rolling out at a time); a staged rollout moves
   `canaryTrafficPercent` through `spec.serving.rollout.steps`, each step held for `interval`
   and then judged on the server's error rate and p99 latency (from Prometheus); a failed step,
   or a revision that cannot start, rolls back (`canaryTrafficPercent: 0`); the last step
   (100%) promotes, and only then does the `champion` alias move.

Phases: Pending (waiting for the run), Failed (artifact refused, or the run failed),
GatesFailed, Registered (gates passed, serving disabled), Deploying (waiting for the
InferenceService, or for another version's rollout), Canary, Serving (champion), RolledBack,
Retired (another version became champion). RolledBack and Retired are final for a generation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

from kubeloop.core import conditions
from kubeloop.core.apimodel import parse_duration
from kubeloop.core.reconcile import ACCEPTED, Observed
from kubeloop.modelversion.api import ConditionType, ModelVersionSpec, Reason
from kubeloop.modelversion.gates import GateVerdict

FINAL_SERVING_PHASES = ("RolledBack", "Retired")
ROLLING_OUT_PHASES = ("Deploying", "Canary")


class Decision(NamedTuple):
    """The value of one condition."""

    status: conditions.ConditionStatus
    reason: str
    message: str


# -- 1. the TrainingRun and its record ----------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """What the run record says about the model: everything the registry keeps."""

    artifact_uri: str
    artifact_digest: str
    metrics: dict[str, float]
    lineage: dict[str, Any]
    record_files: dict[str, str] = field(default_factory=dict)

    def registry_entry(self, training_run: str) -> dict[str, Any]:
        return {"trainingRun": training_run, "artifact": {"uri": self.artifact_uri, "digest": self.artifact_digest},
                "featureSet": {"name": self.lineage.get("featureSet"), "version": self.lineage.get("featureSetVersion"),
                               "digest": self.lineage.get("featureSetDigest")},
                "dataDigest": self.lineage.get("dataDigest"), "metrics": dict(self.metrics)}


def registration_source(run_name: str, namespace: str, run: Mapping[str, Any] | None,
                        record: Mapping[str, Any] | None, record_error: str | None
                        ) -> tuple[str, Decision] | Registration:
    """The registration, or (phase, why not) while there is none."""
    if run is None:
        return "Pending", Decision("False", Reason.TRAINING_RUN_NOT_FOUND,
                                   f'TrainingRun "{run_name}" does not exist in namespace "{namespace}"; create it '
                                   "or fix spec.trainingRunRef")
    phase = (run.get("status") or {}).get("phase")
    if phase == "Failed":
        return "Failed", Decision("False", Reason.TRAINING_RUN_NOT_SUCCEEDED,
                                  f'TrainingRun "{run_name}" failed: there is no model to register')
    if phase != "Succeeded":
        return "Pending", Decision("Unknown", Reason.TRAINING_RUN_NOT_SUCCEEDED,
                                   f'waiting for TrainingRun "{run_name}" to succeed (phase {phase or "Pending"})')
    if record_error is not None:
        return "Pending", Decision("Unknown", Reason.ARTIFACT_MISSING, record_error)
    artifact = (record or {}).get("artifact") or {}
    uri, digest = artifact.get("uri"), artifact.get("digest")
    if not (isinstance(uri, str) and isinstance(digest, str)):
        return "Failed", Decision("False", Reason.ARTIFACT_MISSING,
                                  f'the run record of TrainingRun "{run_name}" names no artifact')
    record = record or {}
    feature_set = record.get("featureSet") or {}
    reproducibility = record.get("reproducibility") or {}
    environment = record.get("environment") or {}
    lineage = {
        "trainingRun": run_name,
        "featureSet": feature_set.get("name"),
        "featureSetVersion": feature_set.get("version"),
        "featureSetDigest": feature_set.get("digest"),
        "dataDigest": (record.get("data") or {}).get("digest"),
        "image": environment.get("image") or reproducibility.get("image"),
        "gitSha": environment.get("gitSha") or reproducibility.get("gitSha"),
        "seed": reproducibility.get("seed"),
    }
    metrics = {str(k): float(v) for k, v in (record.get("metrics") or {}).items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    files = {str(k): str(v) for k, v in (artifact.get("files") or {}).items()}
    return Registration(uri, digest, metrics, {k: v for k, v in lineage.items() if v is not None}, files)


# -- 4. serving -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """What the model's InferenceService reports (KServe's status, read by `traffic_of`)."""

    exists: bool = False
    deployed: str | None = None  # the ModelVersion whose template it holds
    managed: bool = True  # built by kubeloop (else: a name clash with someone else's)
    observed: bool = False  # status.observedGeneration caught up with the spec
    ready: bool = False
    url: str | None = None
    latest_created: str | None = None
    latest_ready: str | None = None
    latest_rolled_out: str | None = None
    latest_percent: int = 0  # traffic of the latest revision (the deployed version's)
    latest_failed: str | None = None  # why the latest revision cannot serve, when it cannot
    canary_percent: int | None = None  # spec.predictor.canaryTrafficPercent


def traffic_of(isvc: Mapping[str, Any] | None, deployed: str | None, managed: bool) -> Traffic:
    """Read an InferenceService's spec and KServe status into `Traffic`."""
    if isvc is None:
        return Traffic()
    meta = isvc.get("metadata") or {}
    status = isvc.get("status") or {}
    predictor = ((status.get("components") or {}).get("predictor")) or {}
    latest_created = predictor.get("latestCreatedRevision")
    percent = sum(int(t.get("percent") or 0) for t in predictor.get("traffic") or []
                  if t.get("latestRevision") or (latest_created and t.get("revisionName") == latest_created))
    ready_condition = conditions.find_condition(status.get("conditions"), "Ready") or {}
    predictor_ready = conditions.find_condition(status.get("conditions"), "PredictorReady") or {}
    failed = None
    if predictor_ready.get("status") == "False" and predictor_ready.get("reason") == "RevisionFailed":
        failed = str(predictor_ready.get("message") or "the new revision failed")
    canary = ((isvc.get("spec") or {}).get("predictor") or {}).get("canaryTrafficPercent")
    return Traffic(
        exists=True, deployed=deployed, managed=managed,
        observed=status.get("observedGeneration") == meta.get("generation"),
        ready=ready_condition.get("status") == "True", url=status.get("url"),
        latest_created=latest_created, latest_ready=predictor.get("latestReadyRevision"),
        latest_rolled_out=predictor.get("latestRolledoutRevision"), latest_percent=percent,
        latest_failed=failed, canary_percent=int(canary) if canary is not None else None)


@dataclass(frozen=True)
class CanaryHealth:
    """The deployed version's server figures over the current step (from Prometheus)."""

    requests: float | None = None
    error_rate: float | None = None
    latency_p99_seconds: float | None = None
    unavailable: str | None = None  # why the figures could not be read


@dataclass(frozen=True)
class ServingFacts:
    """Everything `decide_serving` needs to know."""

    me: str
    champion: str | None  # the registry's champion alias
    champion_live: bool  # the champion's ModelVersion exists and serves (not deleted, not retired)
    deployed_phase: str | None  # phase of the version whose template the InferenceService holds
    traffic: Traffic
    previous: Mapping[str, Any]  # this version's previous status
    health: CanaryHealth | None = None  # figures for a step whose interval has passed


@dataclass(frozen=True)
class ServingDecision:
    """What to do and what to report."""

    phase: str
    serving: Decision  # InferenceServiceReady
    rolled_out: Decision  # RolledOut
    apply: bool = False  # apply this version's InferenceService
    canary_percent: int | None = None  # with this canary percent (None: all traffic)
    take_ownership: bool = False
    promote: bool = False  # move the champion alias to this version (expected: facts.champion)
    needs_health: bool = False  # the step is due: call again with CanaryHealth
    rollout: dict[str, Any] | None = None  # status.rollout
    traffic_percent: int | None = None
    event: tuple[str, str, str] | None = None  # (type, reason, message) worth an Event


def _step_target(steps: Sequence[int], step: int) -> int | None:
    target = steps[min(step, len(steps) - 1)]
    return None if target >= 100 else target


def _health_failure(spec: ModelVersionSpec, health: CanaryHealth) -> str | None:
    rollout = spec.serving.rollout
    if rollout is None or health.unavailable:
        return None
    limit = rollout.max_error_rate
    if limit is not None and health.error_rate is not None and health.error_rate > limit:
        return f"error rate {health.error_rate:.2%} > maxErrorRate {limit:.2%}"
    if rollout.max_latency_p99 and health.latency_p99_seconds is not None:
        bound = parse_duration(rollout.max_latency_p99).total_seconds()
        if health.latency_p99_seconds > bound:
            return f"p99 latency {health.latency_p99_seconds * 1000:.0f}ms > maxLatencyP99 {rollout.max_latency_p99}"
    return None


def _health_note(health: CanaryHealth) -> str:
    if health.unavailable:
        return f"failure conditions not evaluated: {health.unavailable}"
    if not health.requests:
        return "no requests reached the new version during the step"
    rate = f"{health.error_rate:.2%}" if health.error_rate is not None else "n/a"
    latency = f", p99 {health.latency_p99_seconds * 1000:.0f}ms" if health.latency_p99_seconds is not None else ""
    return f"{health.requests:.0f} requests, error rate {rate}{latency}"


def decide_serving(spec: ModelVersionSpec, facts: ServingFacts, now: datetime) -> ServingDecision:
    """The serving role of this version and its next step (see the module docstring)."""
    previous_phase = facts.previous.get("phase")
    traffic = facts.traffic
    if traffic.exists and not traffic.managed:
        return ServingDecision("Deploying", Decision(
            "False", Reason.INFERENCE_SERVICE_NOT_READY,
            f'InferenceService "{spec.model}" exists and is not managed by kubeloop: rename or delete it'),
            Decision("False", Reason.DEPLOYING, "the model's InferenceService name is taken"))
    if facts.champion == facts.me:
        return _as_champion(spec, facts)
    if previous_phase in FINAL_SERVING_PHASES:
        return _final(facts)
    if facts.previous.get("champion"):  # was champion, another version took over
        return ServingDecision("Retired", Decision("False", Reason.RETIRED,
                                                   f'"{facts.champion}" became champion; this version no '
                                                   "longer serves"),
                               Decision("False", Reason.RETIRED, f'superseded by "{facts.champion}"'),
                               traffic_percent=0,
                               event=("Normal", Reason.RETIRED, f'superseded by "{facts.champion}"'))
    return _as_candidate(spec, facts, now)


def _final(facts: ServingFacts) -> ServingDecision:
    previous = facts.previous
    kept = {c.get("type"): c for c in previous.get("conditions") or []}

    def decision(type_: str, fallback: Decision) -> Decision:
        c = kept.get(type_)
        return Decision(c["status"], c["reason"], c["message"]) if c else fallback

    phase = str(previous.get("phase"))
    return ServingDecision(phase, decision(ConditionType.INFERENCE_SERVICE_READY,
                                           Decision("False", phase, "this version no longer serves")),
                           decision(ConditionType.ROLLED_OUT, Decision("False", phase, "not rolled out")),
                           rollout=previous.get("rollout"), traffic_percent=0)


def _as_champion(spec: ModelVersionSpec, facts: ServingFacts) -> ServingDecision:
    """The champion: its template is in the InferenceService unless a candidate's rollout is on."""
    traffic = facts.traffic
    candidate_rolling = (traffic.deployed not in (None, facts.me) and facts.deployed_phase in ROLLING_OUT_PHASES)
    rolled = Decision("True", Reason.PROMOTED, "the champion alias points at this version")
    if candidate_rolling:
        share = 100 - traffic.latest_percent
        return ServingDecision(
            "Serving", Decision("True" if traffic.ready else "False",
                                Reason.INFERENCE_SERVICE_READY if traffic.ready else Reason.INFERENCE_SERVICE_NOT_READY,
                                f'"{traffic.deployed}" is rolling out: this version serves {share}% of the traffic'),
            rolled, take_ownership=True, traffic_percent=share, rollout=facts.previous.get("rollout"))
    serving_all = traffic.exists and traffic.deployed == facts.me and traffic.observed and traffic.ready \
        and traffic.canary_percent in (None, 100) and traffic.latest_percent == 100
    if serving_all:
        return ServingDecision("Serving", Decision("True", Reason.INFERENCE_SERVICE_READY,
                                                   f"serving all traffic at {traffic.url}"),
                               rolled, apply=True, take_ownership=True, traffic_percent=100,
                               rollout=facts.previous.get("rollout"))
    why = traffic.latest_failed or ("creating the InferenceService" if not traffic.exists
                                    else "waiting for the InferenceService to serve this version")
    return ServingDecision("Serving" if traffic.ready else "Deploying",
                           Decision("False" if traffic.latest_failed else "Unknown",
                                    Reason.INFERENCE_SERVICE_NOT_READY, why),
                           rolled, apply=True, take_ownership=True,
                           traffic_percent=traffic.latest_percent if traffic.deployed == facts.me else None,
                           rollout=facts.previous.get("rollout"))


def _as_candidate(spec: ModelVersionSpec, facts: ServingFacts, now: datetime) -> ServingDecision:
    traffic = facts.traffic
    other = traffic.deployed not in (None, facts.me)
    if other and traffic.deployed != facts.champion and facts.deployed_phase in ROLLING_OUT_PHASES:
        message = f'waiting for the rollout of "{traffic.deployed}" to finish (one rollout per model at a time)'
        return ServingDecision("Deploying", Decision("Unknown", Reason.DEPLOYING, message),
                               Decision("False", Reason.DEPLOYING, message))
    rollout_spec = spec.serving.rollout
    staged = rollout_spec is not None and facts.champion is not None and facts.champion_live
    previous_rollout = dict(facts.previous.get("rollout") or {})
    step = int(previous_rollout.get("step") or 0) if staged else 0
    steps = list(rollout_spec.steps) if staged and rollout_spec else [100]
    target = _step_target(steps, step)
    rollout = {"step": step, "stepStartTime": previous_rollout.get("stepStartTime"),
               "previousChampion": previous_rollout.get("previousChampion", facts.champion)}
    mine = traffic.exists and traffic.deployed == facts.me and traffic.observed
    percent = target if target is not None else 100
    base = ServingDecision("Canary" if target is not None else "Deploying",
                           Decision("Unknown", Reason.DEPLOYING, ""), Decision("False", Reason.DEPLOYING, ""),
                           apply=True, canary_percent=target, rollout=rollout,
                           traffic_percent=traffic.latest_percent if mine else 0)

    if mine and traffic.latest_failed and traffic.latest_ready != traffic.latest_created:
        return _rollback(spec, facts, rollout, f"the new revision cannot serve: {traffic.latest_failed}",
                         staged=staged)
    if not (mine and traffic.ready and traffic.latest_percent == percent):
        what = f"step {step + 1}/{len(steps)}: moving {percent}% of the traffic to this version" if staged \
            else "deploying: waiting for the InferenceService to serve this version"
        return _with(base, phase="Canary" if staged and target is not None else "Deploying",
                     serving=Decision("Unknown", Reason.INFERENCE_SERVICE_NOT_READY, what),
                     rolled_out=Decision("False", Reason.CANARY_PROGRESSING if staged else Reason.DEPLOYING, what))
    if target is None:  # all traffic on this version: promote
        if traffic.latest_rolled_out != traffic.latest_created:
            return _with(base, serving=Decision("Unknown", Reason.INFERENCE_SERVICE_NOT_READY,
                                                "waiting for KServe to mark the revision rolled out"))
        message = (f"promoted after {len(steps)} step(s)" if staged else "promoted") + \
            (f'; "{facts.champion}" retires' if facts.champion else "")
        return ServingDecision("Serving", Decision("True", Reason.INFERENCE_SERVICE_READY,
                                                   f"serving all traffic at {traffic.url}"),
                               Decision("True", Reason.PROMOTED, message), apply=True, promote=True,
                               take_ownership=True, rollout={**rollout, "stepStartTime": None}, traffic_percent=100,
                               event=("Normal", Reason.PROMOTED, message))
    # A canary step is serving its share: hold it for the interval, then judge it.
    started = rollout.get("stepStartTime")
    if not started:
        rollout["stepStartTime"] = now.isoformat()
        started = rollout["stepStartTime"]
    assert rollout_spec is not None
    interval = parse_duration(rollout_spec.interval)
    elapsed = now - datetime.fromisoformat(str(started))
    progress = f"step {step + 1}/{len(steps)}: {percent}% of the traffic for {rollout_spec.interval}"
    if elapsed < interval:
        return _with(base, phase="Canary", rollout=rollout,
                     serving=Decision("True", Reason.INFERENCE_SERVICE_READY, f"{progress} (canary at {traffic.url})"),
                     rolled_out=Decision("False", Reason.CANARY_PROGRESSING, progress))
    if facts.health is None:
        return _with(base, phase="Canary", rollout=rollout, needs_health=True,
                     serving=Decision("True", Reason.INFERENCE_SERVICE_READY, progress),
                     rolled_out=Decision("False", Reason.CANARY_PROGRESSING, progress))
    failure = _health_failure(spec, facts.health)
    if failure is not None:
        return _rollback(spec, facts, rollout, f"step {step + 1} ({percent}%) failed: {failure}", staged=True)
    note = _health_note(facts.health)
    next_step = step + 1
    next_target = _step_target(steps, next_step)
    message = f"step {step + 1}/{len(steps)} passed ({note}); moving to {next_target or 100}%"
    return _with(base, phase="Canary", canary_percent=next_target,
                 rollout={**rollout, "step": next_step, "stepStartTime": None},
                 serving=Decision("True", Reason.INFERENCE_SERVICE_READY, message),
                 rolled_out=Decision("False", Reason.CANARY_PROGRESSING, message),
                 event=("Normal", Reason.CANARY_PROGRESSING, message))


def _rollback(spec: ModelVersionSpec, facts: ServingFacts, rollout: dict[str, Any], why: str, *,
              staged: bool) -> ServingDecision:
    if not (facts.champion and facts.champion_live):
        # Nothing to return to: keep trying (the InferenceService reports why it cannot serve).
        return ServingDecision("Deploying", Decision("False", Reason.INFERENCE_SERVICE_NOT_READY, why),
                               Decision("False", Reason.DEPLOYING, why), apply=True, canary_percent=None,
                               rollout=rollout, traffic_percent=0)
    message = f'{why}; traffic returned to "{facts.champion}"'
    return ServingDecision("RolledBack", Decision("False", Reason.CANARY_FAILED, message),
                           Decision("False", Reason.ROLLED_BACK, message), apply=True, canary_percent=0,
                           rollout={**rollout, "stepStartTime": None}, traffic_percent=0,
                           event=("Warning", Reason.ROLLED_BACK, message))


def _with(base: ServingDecision, **changes: Any) -> ServingDecision:
    return replace(base, **changes)


# -- the whole status -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusInputs:
    """The stages' results, for `compute_status`."""

    spec: ModelVersionSpec
    observed: Observed
    waiting: tuple[str, Decision] | None = None  # stage 1 did not produce a registration
    registration: Registration | None = None
    verification: Decision | None = None  # ArtifactVerified
    gates: GateVerdict | None = None
    serving: ServingDecision | None = None
    champion: bool = False
    aliases: tuple[str, ...] = ()
    inference_service: Mapping[str, Any] | None = None
    store_error: str | None = None


def compute_status(inputs: StatusInputs) -> dict[str, Any]:
    """The new status from the stages' results; keeps what later stages did not recompute."""
    observed, spec = inputs.observed, inputs.spec
    previous = dict(observed.status)
    now, generation = observed.now, observed.generation
    conds = conditions.set_condition(previous.get("conditions"), ACCEPTED, "True", Reason.SPEC_VALID,
                                     "the spec is valid", now=now, generation=generation)

    def put(type_: str, decision: Decision) -> None:
        nonlocal conds
        conds = conditions.set_condition(conds, type_, decision.status, decision.reason, decision.message,
                                         now=now, generation=generation)

    status: dict[str, Any] = {**previous, "observedGeneration": generation}
    required = [ACCEPTED, ConditionType.ARTIFACT_VERIFIED, ConditionType.GATES_PASSED]
    if inputs.waiting is not None:
        phase, why = inputs.waiting
        put(ConditionType.ARTIFACT_VERIFIED, Decision("Unknown" if why.status == "Unknown" else "False",
                                                      why.reason, why.message))
        status["phase"] = phase
    registration = inputs.registration
    if registration is not None:
        status["metrics"] = registration.metrics
        status["lineage"] = registration.lineage
        status["artifact"] = {"uri": registration.artifact_uri, "digest": registration.artifact_digest,
                              "shortDigest": registration.artifact_digest[7:19]}
    if inputs.verification is not None:
        put(ConditionType.ARTIFACT_VERIFIED, inputs.verification)
        if inputs.verification.status == "False":
            status["phase"] = "Failed"
    if inputs.gates is not None:
        status["gates"] = inputs.gates.results
        put(ConditionType.GATES_PASSED, Decision("True" if inputs.gates.passed else "False",
                                                 inputs.gates.reason, inputs.gates.message))
        if not inputs.gates.passed:
            status["phase"] = "GatesFailed"
    if inputs.gates is not None and inputs.gates.passed:
        if not spec.serving.enabled:
            status["phase"] = "Registered"
            for type_ in (ConditionType.INFERENCE_SERVICE_READY, ConditionType.ROLLED_OUT):
                conds = conditions.remove_condition(conds, type_)
        elif inputs.serving is not None:
            serving = inputs.serving
            status["phase"] = serving.phase
            put(ConditionType.INFERENCE_SERVICE_READY, serving.serving)
            put(ConditionType.ROLLED_OUT, serving.rolled_out)
            required += [ConditionType.INFERENCE_SERVICE_READY, ConditionType.ROLLED_OUT]
            if serving.rollout is not None:
                status["rollout"] = serving.rollout
            isvc = inputs.inference_service
            if isvc is not None:
                status["inferenceService"] = {**isvc, "trafficPercent": serving.traffic_percent}
    status["champion"] = inputs.champion
    status["aliases"] = list(inputs.aliases)
    conds = conditions.with_ready(conds, required, now=now, generation=generation)
    if inputs.store_error:
        ready = conditions.find_condition(conds, conditions.READY) or {}
        conds = conditions.set_condition(conds, conditions.READY, ready.get("status", "Unknown"),
                                         ready.get("reason", Reason.RECONCILING),
                                         f"{ready.get('message', '')}; {inputs.store_error}".strip("; "),
                                         now=now, generation=generation)
    status["conditions"] = conds
    return {k: v for k, v in status.items() if v is not None}
