"""The shared shape of every kind's reconcile pass: validate → reconcile → write status once.

Handlers stay thin: they hand kopf's `body` and `patch` to `run_reconcile` with the
kind's pure `reconcile` function. This module owns what is the same for all kinds:
spec validation with the pydantic models (an invalid spec becomes `Ready=False,
reason=InvalidSpec` with a message naming the field, then a permanent error so kopf does
not retry until the spec changes), status written only where it changed, and metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from kubeloop.core import conditions
from kubeloop.core.apimodel import ResourceDefinition, SpecError, parse_spec
from kubeloop.core.metrics import OPERATOR_METRICS, OperatorMetrics

INVALID_SPEC = "InvalidSpec"
ACCEPTED = "Accepted"
FAILED_PHASE = "Failed"


@dataclass(frozen=True)
class Observed:
    """What a reconcile pass knows about the object it reconciles (no I/O needed to use it)."""

    name: str
    namespace: str
    uid: str
    generation: int | None
    labels: Mapping[str, str]
    status: Mapping[str, Any]
    now: datetime


Reconciler = Callable[[Any, Observed], dict[str, Any]]
"""A kind's reconcile: (validated spec model, observed) -> the new full status."""


def observed_from(body: Mapping[str, Any], now: datetime) -> Observed:
    meta = body.get("metadata", {})
    return Observed(
        name=meta.get("name", ""),
        namespace=meta.get("namespace", ""),
        uid=meta.get("uid", ""),
        generation=meta.get("generation"),
        labels=dict(meta.get("labels") or {}),
        status=dict(body.get("status") or {}),
        now=now,
    )


def invalid_spec_status(previous: Mapping[str, Any], error: SpecError, observed: Observed) -> dict[str, Any]:
    """Status of an object whose spec cannot be acted on: says which field and why."""
    message = f"{error}; fix the spec and apply it again"
    conds = conditions.set_condition(
        previous.get("conditions"), ACCEPTED, "False", INVALID_SPEC, message,
        now=observed.now, generation=observed.generation)
    conds = conditions.set_condition(
        conds, conditions.READY, "False", INVALID_SPEC, message,
        now=observed.now, generation=observed.generation)
    return {**previous, "phase": FAILED_PHASE, "observedGeneration": observed.generation, "conditions": conds}


def status_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns `old` into `new` at the top level of status (None deletes)."""
    changes = {key: value for key, value in new.items() if old.get(key) != value}
    changes.update({key: None for key in old if key not in new})
    return changes


def run_reconcile(
    definition: ResourceDefinition,
    body: Mapping[str, Any],
    patch: kopf.Patch,
    logger: Any,
    reconcile: Reconciler,
    *,
    metrics: OperatorMetrics = OPERATOR_METRICS,
    now: datetime | None = None,
) -> None:
    kind = definition.kind
    started = time.perf_counter()
    observed = observed_from(body, now or datetime.now(UTC))
    result = "error"
    try:
        try:
            spec = parse_spec(definition, dict(body.get("spec") or {}))
        except SpecError as error:
            result = "invalid"
            new_status = invalid_spec_status(observed.status, error, observed)
            _write_status(patch, observed.status, new_status)
            kopf.warn(dict(body), reason=INVALID_SPEC, message=str(error))
            raise kopf.PermanentError(f"invalid spec: {error}") from None
        new_status = reconcile(spec, observed)
        _write_status(patch, observed.status, new_status)
        result = "ok"
    except kopf.TemporaryError:
        result = "retry"
        raise
    finally:
        metrics.reconciles.labels(kind=kind, result=result).inc()
        metrics.reconcile_duration.labels(kind=kind).observe(time.perf_counter() - started)


def _write_status(patch: kopf.Patch, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in status_changes(old, new).items():
        patch.status[key] = value


def accepted_status(previous: Mapping[str, Any], observed: Observed, *, waiting_for: str) -> dict[str, Any]:
    """Status of a valid object whose children do not exist yet: accepted, not ready.

    `waiting_for` says what the object waits for, in the user's words.
    """
    conds = conditions.set_condition(
        previous.get("conditions"), ACCEPTED, "True", "SpecValid", "the spec is valid",
        now=observed.now, generation=observed.generation)
    conds = conditions.set_condition(
        conds, conditions.READY, "Unknown", "Pending", waiting_for,
        now=observed.now, generation=observed.generation)
    phase = previous.get("phase")
    return {**previous, "phase": "Pending" if phase in (None, FAILED_PHASE) else phase,
            "observedGeneration": observed.generation, "conditions": conds}


def register_reconciler(
    registry: kopf.OperatorRegistry,
    definition: ResourceDefinition,
    reconcile: Reconciler,
    *,
    resync_seconds: float,
) -> None:
    """Register one level-triggered reconcile for `definition`'s kind with kopf.

    Create, update, resume and a periodic timer all run the same function, so a missed
    event or an operator restart converges on the next pass; running it twice changes
    nothing. A kopf event handler (which also sees deletions) feeds the phase gauge.
    """
    from kubeloop import GROUP, VERSION

    resource = (GROUP, VERSION, definition.plural)

    def reconcile_handler(body: kopf.Body, patch: kopf.Patch, logger: Any, **_: Any) -> None:
        run_reconcile(definition, body, patch, logger, reconcile)

    def track_phase(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
        meta = body.get("metadata", {})
        key = (definition.kind, meta.get("namespace", ""), meta.get("name", ""))
        if event.get("type") == "DELETED":
            OPERATOR_METRICS.phases.forget(*key)
        else:
            OPERATOR_METRICS.phases.observe(*key, (body.get("status") or {}).get("phase"))

    kopf.on.create(*resource, id="reconcile", registry=registry)(reconcile_handler)
    kopf.on.update(*resource, id="reconcile", registry=registry, field="spec")(reconcile_handler)
    kopf.on.resume(*resource, id="reconcile", registry=registry)(reconcile_handler)
    kopf.timer(*resource, id="resync", registry=registry, interval=resync_seconds,
               initial_delay=resync_seconds)(reconcile_handler)
    kopf.on.event(*resource, id="track-phase", registry=registry)(track_phase)
