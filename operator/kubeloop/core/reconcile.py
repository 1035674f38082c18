"""The shared shape of every kind's reconcile pass: validate → reconcile → write status once.

Handlers stay thin: they hand kopf's `body` and `patch` to `run_reconcile` with the
kind's pure `reconcile` function. This module owns what is the same for all kinds:
spec validation with the pydantic models (an invalid spec becomes `Ready=False,
reason=InvalidSpec` with a message naming the field, then a permanent error so kopf does
not retry until the spec changes), status written only where it changed, and metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from kubeloop.core import conditions
from kubeloop.core.apimodel import ResourceDefinition, SpecError, parse_spec
from kubeloop.core.kube import KubeClient, resource_type
from kubeloop.core.labels import owner_label_key
from kubeloop.core.metrics import OPERATOR_METRICS, OperatorMetrics
from kubeloop.core.settings import Settings

log = logging.getLogger("kubeloop.reconcile")

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


class Runtime:
    """What reconciles need from the running operator: the API client, settings, and object
    store clients per namespace (credentials come from the namespace's Secret).

    One per operator process (`Runtime.install`); unit tests of pure code never need it.
    """

    current: Runtime | None = None

    def __init__(self, client: KubeClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self._stores: dict[str, tuple[str, Any]] = {}
        self._lock = threading.Lock()

    @classmethod
    def install(cls, runtime: Runtime) -> Runtime:
        cls.current = runtime
        return runtime

    @classmethod
    def get(cls) -> Runtime:
        if cls.current is None:
            raise RuntimeError("the operator runtime is not installed (Runtime.install)")
        return cls.current

    def store_for(self, namespace: str) -> Any:
        """The ObjectStore for workloads in `namespace`, from its object-store Secret.

        Raises `ObjectStoreNotConfigured` (a user-facing message) when the Secret is missing
        or incomplete. Cached per Secret resourceVersion, so rotated credentials are picked up.
        """
        from kubeloop.store import ObjectStore, StoreConfig, StoreConfigError

        name = self.settings.object_store.secret_name
        secret = self.client.get("v1", "Secret", namespace, name)
        if secret is None:
            raise ObjectStoreNotConfigured(
                f'Secret "{name}" with the object store credentials does not exist in namespace '
                f'"{namespace}"; create it (keys accessKey, secretKey; `kubeloop up` creates it in "default")')
        version = str(secret.get("metadata", {}).get("resourceVersion", ""))
        with self._lock:
            cached = self._stores.get(namespace)
            if cached is not None and cached[0] == version:
                return cached[1]
            try:
                store = ObjectStore(StoreConfig.from_secret(self.settings.object_store, secret))
            except StoreConfigError as exc:
                raise ObjectStoreNotConfigured(str(exc)) from None
            self._stores[namespace] = (version, store)
            return store


class ObjectStoreNotConfigured(Exception):
    """The object store cannot be used for a namespace; the message tells the user what to do."""


Reconciler = Callable[[Any, Observed], dict[str, Any]]
"""A kind's reconcile: (validated spec model, observed) -> the new full status. It may do I/O
through `Runtime.get()` (apply children, read the store) but decides with pure functions."""


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


@dataclass(frozen=True)
class Outcome:
    """The result of one reconcile pass: the new status, and the spec error if any."""

    status: dict[str, Any]
    spec_error: SpecError | None = None


def evaluate(definition: ResourceDefinition, body: Mapping[str, Any], reconcile: Reconciler,
             now: datetime) -> Outcome:
    """Validate the spec and compute the new status; no I/O of its own."""
    observed = observed_from(body, now)
    try:
        spec = parse_spec(definition, dict(body.get("spec") or {}))
    except SpecError as error:
        return Outcome(invalid_spec_status(observed.status, error, observed), error)
    return Outcome(reconcile(spec, observed))


def run_reconcile(
    definition: ResourceDefinition,
    body: kopf.Body,
    patch: kopf.Patch,
    logger: Any,
    reconcile: Reconciler,
    *,
    metrics: OperatorMetrics = OPERATOR_METRICS,
    now: datetime | None = None,
) -> None:
    """One reconcile pass inside a kopf handler: status goes out through kopf's patch."""
    started = time.perf_counter()
    result = "error"
    try:
        outcome = evaluate(definition, body, reconcile, now or datetime.now(UTC))
        for key, value in status_changes(body.get("status") or {}, outcome.status).items():
            patch.status[key] = value
        if outcome.spec_error is not None:
            result = "invalid"
            kopf.warn(body, reason=INVALID_SPEC, message=str(outcome.spec_error))
            raise kopf.PermanentError(f"invalid spec: {outcome.spec_error}")
        result = "ok"
    except kopf.TemporaryError:
        result = "retry"
        raise
    finally:
        metrics.reconciles.labels(kind=definition.kind, result=result).inc()
        metrics.reconcile_duration.labels(kind=definition.kind).observe(time.perf_counter() - started)


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


ChildResource = tuple[str, str, str]
"""(group, version, plural) of a kind of child object, e.g. ("batch", "v1", "jobs")."""


def register_reconciler(registry: kopf.OperatorRegistry, definition: ResourceDefinition,
                        reconcile: Reconciler, *, children: Sequence[ChildResource] = ()) -> None:
    """Register the event-driven half of `definition`'s level-triggered reconcile with kopf.

    Create, update (of the spec) and resume run the same function; running it twice changes
    nothing. The periodic half is `resync` (one loop for all objects, see below), not a kopf
    timer: kopf timers require a finalizer on every object, which costs a write and a watch
    event per object and halved throughput (docs/performance.md). kubeloop needs no
    finalizer: children are garbage-collected through their ownerReferences.
    """
    from kubeloop import GROUP, VERSION

    resource = (GROUP, VERSION, definition.plural)

    def reconcile_handler(body: kopf.Body, patch: kopf.Patch, logger: Any, **_: Any) -> None:
        run_reconcile(definition, body, patch, logger, reconcile)

    # async: runs on kopf's event loop, not in its thread pool (a thread hop per event).
    async def track_phase(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
        meta = body.get("metadata", {})
        key = (definition.kind, meta.get("namespace", ""), meta.get("name", ""))
        if event.get("type") == "DELETED":
            OPERATOR_METRICS.phases.forget(*key)
        else:
            OPERATOR_METRICS.phases.observe(*key, (body.get("status") or {}).get("phase"))

    owner_label = owner_label_key(definition.kind)

    def child_changed(body: kopf.Body, type: str | None = None, **_: Any) -> None:
        # A child (Job, CronJob, InferenceService ...) changed: reconcile its owner now, so
        # status follows the child without waiting for the periodic resync. Not when a child
        # of the owner's own was just created: the owner's reconcile created it and already
        # counted it in the status (reacting would cost a second pass per child for nothing).
        meta = body.get("metadata", {})
        owner_name = (meta.get("labels") or {}).get(owner_label)
        if not owner_name or (type == "ADDED" and _controller_kind(meta) == (definition.api_version,
                                                                              definition.kind)):
            return
        runtime = Runtime.get()
        owner = runtime.client.get(definition.api_version, definition.kind, meta.get("namespace"), owner_name)
        if owner is not None and _descends_from(runtime.client, meta, owner.get("metadata", {}).get("uid", "")):
            resync_object(runtime.client, Reconcilable(definition, reconcile), owner,
                          now=datetime.now(UTC))

    for group, version, plural in children:
        kopf.on.event(group, version, plural, id=f"{definition.plural}-owner", registry=registry,
                      labels={owner_label: kopf.PRESENT})(child_changed)
    kopf.on.create(*resource, id="reconcile", registry=registry)(reconcile_handler)
    kopf.on.update(*resource, id="reconcile", registry=registry, field="spec")(reconcile_handler)
    kopf.on.resume(*resource, id="reconcile", registry=registry)(reconcile_handler)
    kopf.on.event(*resource, id="track-phase", registry=registry)(track_phase)


def _owner_uids(meta: Mapping[str, Any]) -> set[str]:
    return {ref.get("uid", "") for ref in meta.get("ownerReferences") or []}


def _controller_kind(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("apiVersion", "")), str(ref.get("kind", ""))
    return None


def _descends_from(client: KubeClient, meta: Mapping[str, Any], owner_uid: str) -> bool:
    """True if the object whose metadata is `meta` is owned by `owner_uid`, directly or through
    its controller: a Job that a child CronJob created (on schedule, or `kubectl create job
    --from=cronjob/...`) carries the owner's labels from the job template but is owned by the
    CronJob, and a failed manual run does not change the CronJob's status."""
    if owner_uid in _owner_uids(meta):
        return True
    for ref in meta.get("ownerReferences") or []:
        if not ref.get("controller"):
            continue
        try:
            parent = client.get(str(ref.get("apiVersion")), str(ref.get("kind")), meta.get("namespace"),
                                str(ref.get("name")))
        except ValueError:  # a kind kubeloop does not know cannot be one of its children
            return False
        parent_meta = (parent or {}).get("metadata", {})
        return parent_meta.get("uid") == ref.get("uid") and owner_uid in _owner_uids(parent_meta)
    return False


@dataclass(frozen=True)
class Reconcilable:
    """A kind and its reconcile, as the resync loop needs them."""

    definition: ResourceDefinition
    reconcile: Reconciler


def resync_object(client: KubeClient, item: Reconcilable, body: Mapping[str, Any], *,
                  now: datetime, metrics: OperatorMetrics = OPERATOR_METRICS) -> bool:
    """Reconcile one object outside kopf; write status only if it changed. True if written.

    The status patch carries the object's resourceVersion, so a pass based on a stale read
    is refused (409) and skipped: kopf's event-driven pass for the newer version wins.
    """
    started = time.perf_counter()
    result = "ok"
    try:
        outcome = evaluate(item.definition, body, item.reconcile, now)
        if outcome.spec_error is not None:
            result = "invalid"
        changes = status_changes(body.get("status") or {}, outcome.status)
        if not changes:
            return False
        meta = body["metadata"]
        path = resource_type(item.definition.api_version, item.definition.kind).path(
            meta.get("namespace"), meta["name"], "status")
        try:
            client.request("PATCH", path, body={"metadata": {"resourceVersion": meta["resourceVersion"]},
                                                "status": changes},
                           content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status in (404, 409):  # deleted or changed meanwhile: nothing to do now
                result = "retry"
                return False
            result = "error"
            raise
        return True
    finally:
        metrics.reconciles.labels(kind=item.definition.kind, result=result).inc()
        metrics.reconcile_duration.labels(kind=item.definition.kind).observe(time.perf_counter() - started)


def resync_all(client: KubeClient, items: Sequence[Reconcilable], namespaces: Sequence[str] = (), *,
               now: datetime | None = None) -> int:
    """One periodic pass over every object of every kind; returns how many statuses changed."""
    written = 0
    for item in items:
        scopes: Sequence[str | None] = list(namespaces) or [None]
        for namespace in scopes:
            objects = client.list(item.definition.api_version, item.definition.kind, namespace)
            for body in objects:
                written += resync_object(client, item, body, now=now or datetime.now(UTC))
    return written


class PhasePoller(threading.Thread):
    """Re-reconciles the objects of one kind whose `status.phase` is in `phases` every `interval`
    seconds, for what no watch event announces: a trainer's progress file, the end of a canary
    step. The periodic resync covers every object, but minutes apart."""

    def __init__(self, client: KubeClient, item: Reconcilable, phases: Sequence[str], interval: float,
                 namespaces: Sequence[str]) -> None:
        super().__init__(name=f"kubeloop-{item.definition.plural}-poller", daemon=True)
        self.client, self.item, self.phases = client, item, tuple(phases)
        self.interval, self.namespaces = interval, namespaces
        self.stop = threading.Event()

    def run(self) -> None:
        definition = self.item.definition
        while not self.stop.wait(self.interval):
            try:
                scopes: list[str | None] = list(self.namespaces) or [None]
                for namespace in scopes:
                    for body in self.client.list(definition.api_version, definition.kind, namespace):
                        if (body.get("status") or {}).get("phase") in self.phases:
                            resync_object(self.client, self.item, body, now=datetime.now(UTC))
            except Exception:  # one failed poll must not end polling
                log.exception("%s poll failed; retrying in %.0fs", definition.kind, self.interval)


def register_poller(registry: kopf.OperatorRegistry, item: Reconcilable, phases: Sequence[str]) -> None:
    """Run a `PhasePoller` for `item` while the operator runs (every `progress_poll_seconds`)."""
    running: dict[str, PhasePoller] = {}

    def start(logger: Any, **_: Any) -> None:
        runtime = Runtime.current
        if runtime is None:  # kopf run without kubeloop's manager (a test of handlers alone)
            logger.warning("no operator runtime: %s phases %s are not polled", item.definition.kind, phases)
            return
        running["thread"] = PhasePoller(runtime.client, item, phases, runtime.settings.progress_poll_seconds,
                                        runtime.settings.namespaces)
        running["thread"].start()

    def stop(**_: Any) -> None:
        if "thread" in running:
            running.pop("thread").stop.set()

    kopf.on.startup(registry=registry, id=f"{item.definition.plural}-poller")(start)
    kopf.on.cleanup(registry=registry, id=f"{item.definition.plural}-poller")(stop)
