"""ModelVersion: a registry entry with lineage, evaluation gates, and a staged KServe rollout.
The one source of the ModelVersion CRD schema."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from kubeloop.core.apimodel import (
    AGE_COLUMN,
    CONDITIONS_SCHEMA_EXTRA,
    DIGEST_PATTERN,
    Artifact,
    Condition,
    ModelVersionTemplate,
    ObjectRef,
    PrinterColumn,
    ResourceDefinition,
    StatusModel,
)

# The spec's building blocks are shared with TrainingRun's `register`, so they are defined in
# core.apimodel; re-exported here, where readers of the ModelVersion API look for them.
from kubeloop.core.apimodel import CHAMPION_ALIAS as CHAMPION_ALIAS
from kubeloop.core.apimodel import Gate as Gate
from kubeloop.core.apimodel import Rollout as Rollout
from kubeloop.core.apimodel import Serving as Serving

ModelVersionPhase = Literal[
    "Pending",
    "GatesFailed",
    "Registered",
    "Deploying",
    "Canary",
    "Serving",
    "RolledBack",
    "Retired",
    "Failed",
]


class ConditionType(StrEnum):
    """Condition types of a ModelVersion."""

    READY = "Ready"
    """Summary: the version is registered and, when serving is enabled, serves all its traffic."""
    ACCEPTED = "Accepted"
    """The spec is valid (False, reason InvalidSpec, with a message naming the field)."""
    ARTIFACT_VERIFIED = "ArtifactVerified"
    """The artifact's sha256 matches the TrainingRun's record."""
    GATES_PASSED = "GatesPassed"
    """Every evaluation gate passed."""
    INFERENCE_SERVICE_READY = "InferenceServiceReady"
    """The KServe InferenceService reports Ready."""
    ROLLED_OUT = "RolledOut"
    """The rollout reached 100% and the champion alias points at this version."""


class Reason(StrEnum):
    """Condition reasons of a ModelVersion."""

    INVALID_SPEC = "InvalidSpec"
    """The spec breaks a rule the schema cannot express; the message names the field."""
    RECONCILING = "Reconciling"
    """The operator is evaluating or applying the version."""
    SPEC_VALID = "SpecValid"
    """Accepted=True: the spec passed validation."""
    PENDING = "Pending"
    """Ready=Unknown: accepted, waiting for its first result (the message says for what)."""
    READY = "Ready"
    """Ready=True: every condition that Ready sums up is True."""
    TRAINING_RUN_NOT_FOUND = "TrainingRunNotFound"
    """`spec.trainingRunRef` names no TrainingRun."""
    TRAINING_RUN_NOT_SUCCEEDED = "TrainingRunNotSucceeded"
    """The TrainingRun has not (or not yet) succeeded; nothing to register."""
    ARTIFACT_MISSING = "ArtifactMissing"
    """The artifact is absent from the object store."""
    ARTIFACT_DIGEST_MISMATCH = "ArtifactDigestMismatch"
    """The artifact's sha256 differs from the run record: refused, never served."""
    ARTIFACT_VERIFIED = "ArtifactVerified"
    """The artifact's sha256 matches the run record."""
    METRIC_MISSING = "MetricMissing"
    """A gate names a metric the TrainingRun did not report."""
    GATES_PASSED = "GatesPassed"
    """Every gate passed."""
    GATES_FAILED = "GatesFailed"
    """At least one gate failed; the message lists them. Nothing is deployed."""
    NO_CHAMPION = "NoChampion"
    """The model has no champion yet: champion-relative gates pass, the rollout goes to 100%."""
    SERVING_DISABLED = "ServingDisabled"
    """`spec.serving.enabled` is false: registered only."""
    DEPLOYING = "Deploying"
    """The InferenceService is being created or updated."""
    INFERENCE_SERVICE_NOT_READY = "InferenceServiceNotReady"
    """The InferenceService exists but is not Ready (see the message)."""
    INFERENCE_SERVICE_READY = "InferenceServiceReady"
    """The InferenceService is Ready."""
    CANARY_PROGRESSING = "CanaryProgressing"
    """A canary step is running; the message gives the step and traffic."""
    CANARY_FAILED = "CanaryFailed"
    """A failure condition of the rollout was met; rolling back."""
    ROLLED_BACK = "RolledBack"
    """Traffic returned to the previous champion."""
    PROMOTED = "Promoted"
    """The rollout completed and the champion alias moved to this version."""
    RETIRED = "Retired"
    """A newer version became champion; this one no longer serves."""


class ModelVersionSpec(ModelVersionTemplate):
    """Desired state of a ModelVersion."""

    training_run_ref: ObjectRef
    """The TrainingRun that produced the model (its artifact, metrics and lineage)."""


class GateResult(StatusModel):
    """The evaluation of one gate."""

    metric: str | None = None
    """The metric evaluated."""
    value: float | None = None
    """The version's value of the metric (absent when the run did not report it)."""
    champion_value: float | None = None
    """The champion's value, for champion-relative gates."""
    min: float | None = None
    """Effective lower bound (champion-relative bounds resolved to absolute values)."""
    max: float | None = None
    """Effective upper bound (champion-relative bounds resolved to absolute values)."""
    passed: bool | None = None
    """Whether the gate passed."""
    message: str | None = None
    """Why, in words."""


class Lineage(StatusModel):
    """Where the model came from, copied from the TrainingRun's run record."""

    training_run: str | None = None
    """Name of the TrainingRun."""
    feature_set: str | None = None
    """Name of the FeatureSet trained on."""
    feature_set_version: str | None = None
    """FeatureSet version trained on; serving applies this version's transforms."""
    feature_set_digest: str | None = Field(default=None, pattern=DIGEST_PATTERN)
    """Digest of that FeatureSet version."""
    data_digest: str | None = Field(default=None, pattern=DIGEST_PATTERN)
    """Digest of the exact training set (after joins and the split)."""
    image: str | None = None
    """Trainer image."""
    git_sha: str | None = None
    """Git commit of the training code, when known."""
    seed: int | None = None
    """Random seed of the run."""


class InferenceServiceStatus(StatusModel):
    """The KServe InferenceService serving this version."""

    name: str | None = None
    """Name of the InferenceService."""
    url: str | None = None
    """URL the model answers on (KServe v1 and v2 protocols)."""
    ready: bool | None = None
    """Whether the InferenceService reports Ready."""
    traffic_percent: int | None = Field(default=None, ge=0, le=100)
    """Percentage of the model's traffic this version receives."""


class RolloutStatus(StatusModel):
    """Progress of the staged rollout, kept so that a restarted operator resumes it."""

    step: int | None = Field(default=None, ge=0)
    """Index into spec.serving.rollout.steps of the current step."""
    step_start_time: datetime | None = None
    """When the current step started."""
    previous_champion: str | None = None
    """The ModelVersion that was champion when the rollout began; rollback returns to it."""


class ModelVersionStatus(StatusModel):
    """Observed state of a ModelVersion."""

    phase: ModelVersionPhase | None = None
    """Pending, GatesFailed, Registered (gates passed, serving disabled), Deploying, Canary,
    Serving, RolledBack, Retired, or Failed (the artifact was refused, or the spec is invalid)."""
    champion: bool | None = None
    """Whether this version is its model's champion."""
    aliases: list[str] = Field(default_factory=list)
    """Registry aliases pointing at this version, champion included."""
    gates: list[GateResult] = Field(default_factory=list)
    """The result of each gate, in spec order."""
    metrics: dict[str, float] = Field(default_factory=dict)
    """Final metrics of the TrainingRun."""
    lineage: Lineage | None = None
    """Where the model came from."""
    artifact: Artifact | None = None
    """The verified model artifact."""
    inference_service: InferenceServiceStatus | None = None
    """The InferenceService serving the version."""
    rollout: RolloutStatus | None = None
    """Progress of the staged rollout."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation the status was computed from."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=CONDITIONS_SCHEMA_EXTRA)
    """Accepted, Ready, ArtifactVerified, GatesPassed, InferenceServiceReady and RolledOut conditions."""


RESOURCE = ResourceDefinition(
    kind="ModelVersion",
    plural="modelversions",
    singular="modelversion",
    short_names=("mv",),
    spec_model=ModelVersionSpec,
    status_model=ModelVersionStatus,
    description=(
        "ModelVersion registers a TrainingRun's model under a model name with its lineage, checks "
        "evaluation gates, verifies the artifact's digest, and serves it with KServe through a staged "
        "rollout that moves the model's champion alias when it completes."
    ),
    printer_columns=(
        PrinterColumn(
            name="Model", type="string", json_path=".spec.model", description="Registered model name."
        ),
        PrinterColumn(name="Phase", type="string", json_path=".status.phase", description="Lifecycle phase."),
        PrinterColumn(
            name="Traffic",
            type="integer",
            json_path=".status.inferenceService.trafficPercent",
            description="Percentage of the model's traffic served by this version.",
        ),
        PrinterColumn(
            name="Champion",
            type="boolean",
            json_path=".status.champion",
            description="Whether this is the champion.",
        ),
        PrinterColumn(
            name="TrainingRun",
            type="string",
            json_path=".spec.trainingRunRef.name",
            description="The TrainingRun that produced the model.",
            priority=1,
        ),
        PrinterColumn(
            name="URL",
            type="string",
            json_path=".status.inferenceService.url",
            description="Inference URL.",
            priority=1,
        ),
        AGE_COLUMN,
    ),
)
