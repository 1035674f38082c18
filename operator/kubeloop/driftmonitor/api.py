"""DriftMonitor: scheduled drift detection on a served model's live inputs against its
training reference, with automatic retraining. The one source of the DriftMonitor CRD schema."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from kubeloop.core.apimodel import (
    AGE_COLUMN,
    CONDITIONS_SCHEMA_EXTRA,
    DNS_LABEL_PATTERN,
    Condition,
    CronSchedule,
    Duration,
    InvalidField,
    KubeModel,
    ObjectRef,
    PrinterColumn,
    ResourceDefinition,
    Resources,
    StatusModel,
    first_duplicate,
)

DriftMethod = Literal["auto", "ks", "psi", "chi2", "wasserstein", "jensenshannon"]
Correction = Literal["bonferroni", "fdr", "none"]
DriftMonitorPhase = Literal["Pending", "Healthy", "Drifted", "InsufficientData", "Retraining", "Failed"]


class ConditionType(StrEnum):
    """Condition types of a DriftMonitor."""

    READY = "Ready"
    """Summary: the check is scheduled and its last run produced a result."""
    ACCEPTED = "Accepted"
    """The spec is valid (False, reason InvalidSpec, with a message naming the field)."""
    DRIFTED = "Drifted"
    """The last check found dataset-level drift (Unknown while there is no verdict)."""
    RETRAINING = "Retraining"
    """A retraining TrainingRun created by this monitor is in flight."""


class Reason(StrEnum):
    """Condition reasons of a DriftMonitor."""

    INVALID_SPEC = "InvalidSpec"
    """The spec breaks a rule the schema cannot express; the message names the field."""
    RECONCILING = "Reconciling"
    """The operator is creating or updating the check's CronJob."""
    SPEC_VALID = "SpecValid"
    """Accepted=True: the spec passed validation."""
    PENDING = "Pending"
    """Ready=Unknown: accepted, waiting for its first result (the message says for what)."""
    READY = "Ready"
    """Ready=True: every condition that Ready sums up is True."""
    MODEL_VERSION_NOT_FOUND = "ModelVersionNotFound"
    """`spec.modelVersionRef` names no ModelVersion."""
    NO_CHAMPION = "NoChampion"
    """`spec.model` has no champion version to monitor yet."""
    REFERENCE_UNAVAILABLE = "ReferenceUnavailable"
    """The reference profile (or rows) of the model's FeatureSet version cannot be read."""
    AWAITING_FIRST_CHECK = "AwaitingFirstCheck"
    """The check is scheduled but has not run yet."""
    CHECK_FAILED = "CheckFailed"
    """The last check's Job failed (see the message)."""
    INSUFFICIENT_SAMPLES = "InsufficientSamples"
    """The window held fewer than `spec.minSamples` predictions: no verdict."""
    NO_DRIFT = "NoDrift"
    """The share of drifted features is below `spec.driftShare`."""
    DRIFT_DETECTED = "DriftDetected"
    """The share of drifted features reached `spec.driftShare`; the message names them."""
    AWAITING_CONSECUTIVE_BREACHES = "AwaitingConsecutiveBreaches"
    """Drift was found, fewer times in a row than `spec.retrain.consecutiveBreaches`."""
    RETRAIN_CREATED = "RetrainCreated"
    """A retraining TrainingRun was created; the message names it."""
    RETRAIN_IN_PROGRESS = "RetrainInProgress"
    """A retraining TrainingRun is still running: no second one is created."""
    RETRAIN_COOLDOWN = "RetrainCooldown"
    """Drift persists but the last retrain is more recent than `spec.retrain.cooldown`."""
    RETRAIN_DAILY_LIMIT = "RetrainDailyLimit"
    """`spec.retrain.maxPerDay` retrains were already created in the last 24 hours."""
    RETRAIN_SUCCEEDED = "RetrainSucceeded"
    """The last retraining TrainingRun succeeded."""
    RETRAIN_FAILED = "RetrainFailed"
    """The last retraining TrainingRun failed."""
    RETRAIN_DISABLED = "RetrainDisabled"
    """Drift was found and `spec.retrain` is absent or onDrift is false: reported only."""
    RETRAIN_SOURCE_NOT_FOUND = "RetrainSourceNotFound"
    """A retrain is due but the TrainingRun to copy (`spec.retrain.templateRef`, or the run that
    produced the monitored model) does not exist; the message names it."""
    OBJECT_STORE_UNAVAILABLE = "ObjectStoreUnavailable"
    """The check results cannot be read (no object store Secret, store unreachable); the message
    says what to fix."""


class Thresholds(KubeModel):
    """Per-method thresholds deciding whether one feature drifted (defaults: Evidently's)."""

    p_value: float = Field(default=0.05, gt=0, lt=1)
    """ks and chi2: drift when the (corrected) p-value is below this."""
    psi: float = Field(default=0.1, gt=0)
    """psi: drift when the population stability index is at least this."""
    wasserstein: float = Field(default=0.1, gt=0)
    """wasserstein: drift when the distance, divided by the reference standard deviation, is at least this."""
    jensen_shannon: float = Field(default=0.1, gt=0, le=1)
    """jensenshannon: drift when the Jensen-Shannon distance is at least this."""


class Retrain(KubeModel):
    """Automatic retraining when drift is detected: a qualifying breach creates one TrainingRun,
    owned by the monitor; never more than one is in flight per monitor."""

    on_drift: bool = True
    """Create a TrainingRun when dataset-level drift is detected; false only reports."""
    consecutive_breaches: int = Field(default=1, ge=1, le=100)
    """Checks in a row that must find drift before retraining."""
    cooldown: Duration = "6h"
    """Least time between two retrains, such as "12h"."""
    max_per_day: int = Field(default=1, ge=1, le=100)
    """Most retrains created in any 24 hours."""
    template_ref: ObjectRef | None = None
    """A TrainingRun whose spec each retrain copies (a suspended TrainingRun makes a good
    template: the copy is not suspended). Omitted: the TrainingRun that produced the monitored
    model. Either way the copy is unpinned from its FeatureSet version, so that it trains on
    the newest data, and keeps its `register`, so that the new model is gated and rolled out."""


class DriftMonitorSpec(KubeModel):
    """Desired state of a DriftMonitor. Set exactly one of modelVersionRef and model."""

    model_version_ref: ObjectRef | None = None
    """Monitor this ModelVersion."""
    model: str | None = Field(default=None, min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)
    """Monitor this registered model's current champion, following it as new versions roll out."""
    schedule: CronSchedule = "0 * * * *"
    """Cron schedule (UTC) of the check, such as "*/30 * * * *"."""
    window: Duration = "24h"
    """How far back the check reads the prediction log, such as "6h" or "7d"."""
    min_samples: int = Field(default=1000, ge=1)
    """Fewest logged predictions in the window for a verdict; fewer: InsufficientSamples."""
    features: list[str] = Field(default_factory=list)
    """Features to test; empty: every feature of the model's FeatureSet version."""
    method: DriftMethod = "auto"
    """Statistical test: auto picks per feature by type and reference size (ks up to 1,000
    reference values, normed wasserstein above, for numerical features; chi2 with an effect-size
    floor for categorical and low-cardinality ones); the others force one test."""
    thresholds: Thresholds = Field(default_factory=Thresholds)
    """Per-method drift thresholds."""
    correction: Correction = "fdr"
    """Multiple-testing correction of the p-values across features: fdr (Benjamini-Hochberg),
    bonferroni, or none."""
    min_effect_size: float | None = Field(default=None, gt=0)
    """For p-value tests, also require this effect size (the KS statistic for ks, Cramer's V
    for chi2), so that very large samples do not flag negligible shifts. Omitted: p-value only,
    except auto's chi2, which requires Cramer's V >= 0.02."""
    drift_share: float = Field(default=0.5, gt=0, le=1)
    """Dataset-level drift when at least this fraction of the tested features drifted."""
    reference: Literal["profile", "data"] = "profile"
    """profile compares with the FeatureSet version's stored reference profile (bounded memory,
    approximate); data reads the version's rows (exact, needs memory for them)."""
    resources: Resources = Field(default_factory=Resources)
    """Resources of the check pod."""
    retrain: Retrain | None = None
    """Automatic retraining; omitted: drift is reported only."""

    @field_validator("features")
    @classmethod
    def _features_unique(cls, features: list[str]) -> list[str]:
        index = first_duplicate(features)
        if index is not None:
            raise InvalidField((index,), f'duplicated feature "{features[index]}"')
        return features

    @model_validator(mode="after")
    def _one_target(self) -> DriftMonitorSpec:
        if (self.model_version_ref is None) == (self.model is None):
            which = "both are set" if self.model is not None else "neither is set"
            raise InvalidField("modelVersionRef", f"set exactly one of modelVersionRef or model ({which})")
        if self.resources.gpus:
            raise InvalidField(("resources", "gpus"), "must be 0: drift checks do not use GPUs")
        return self


class FeatureDrift(StatusModel):
    """The test result of one feature in the last check."""

    name: str | None = None
    """Feature name."""
    method: Literal["ks", "psi", "chi2", "wasserstein", "jensenshannon"] | None = None
    """Test applied."""
    statistic: float | None = None
    """Test statistic or distance."""
    p_value: float | None = Field(default=None, ge=0, le=1)
    """Corrected p-value (ks and chi2 only)."""
    threshold: float | None = None
    """Threshold the decision used."""
    drifted: bool | None = None
    """Whether the feature drifted."""
    null_fraction: float | None = Field(default=None, ge=0, le=1)
    """Fraction of missing values in the live window."""
    unseen_categories: int | None = Field(default=None, ge=0)
    """Categories in the live window that the reference never saw."""


class LastRetrain(StatusModel):
    """The most recent retraining the monitor started."""

    training_run: str | None = None
    """Name of the TrainingRun created."""
    time: datetime | None = None
    """When it was created."""
    reason: str | None = None
    """Why, such as "drift share 0.60 >= 0.50 (amount_log, merchant_category, ...)"."""


class DriftMonitorStatus(StatusModel):
    """Observed state of a DriftMonitor."""

    phase: DriftMonitorPhase | None = None
    """Pending (no check yet, or waiting for the model to monitor: Ready says which), Healthy,
    Drifted, InsufficientData, Retraining, or Failed (the last check failed, or the spec is invalid)."""
    model: str | None = None
    """Registered model monitored."""
    model_version: str | None = None
    """ModelVersion monitored by the last check (the champion when following spec.model)."""
    last_check_time: datetime | None = None
    """When the last check finished."""
    sample_size: int | None = Field(default=None, ge=0)
    """Predictions in the last check's window."""
    drifted: bool | None = None
    """Whether the last check found dataset-level drift."""
    drift_share: float | None = Field(default=None, ge=0, le=1)
    """Fraction of tested features that drifted in the last check."""
    features: list[FeatureDrift] = Field(default_factory=list)
    """Per-feature results of the last check."""
    report_uri: str | None = None
    """HTML report of the last check (per-feature table and histograms)."""
    consecutive_breaches: int | None = Field(default=None, ge=0)
    """Checks in a row that found drift."""
    retrains: int | None = Field(default=None, ge=0)
    """Retraining TrainingRuns created so far."""
    last_retrain: LastRetrain | None = None
    """The most recent retraining."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation the status was computed from."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=CONDITIONS_SCHEMA_EXTRA)
    """Accepted, Ready, Drifted and Retraining conditions."""


RESOURCE = ResourceDefinition(
    kind="DriftMonitor",
    plural="driftmonitors",
    singular="driftmonitor",
    short_names=("dm",),
    spec_model=DriftMonitorSpec,
    status_model=DriftMonitorStatus,
    description=(
        "DriftMonitor compares a served model's logged live inputs with the reference profile of "
        "the FeatureSet version it was trained on, on a schedule, writes a report, and retrains the "
        "model when drift persists."
    ),
    printer_columns=(
        PrinterColumn(
            name="Model", type="string", json_path=".status.model", description="Registered model monitored."
        ),
        PrinterColumn(name="Phase", type="string", json_path=".status.phase", description="Lifecycle phase."),
        PrinterColumn(
            name="Drifted",
            type="boolean",
            json_path=".status.drifted",
            description="Drift in the last check.",
        ),
        PrinterColumn(
            name="Share",
            type="number",
            json_path=".status.driftShare",
            description="Fraction of features that drifted in the last check.",
        ),
        PrinterColumn(
            name="Last Check",
            type="date",
            json_path=".status.lastCheckTime",
            description="Time since the last check.",
        ),
        PrinterColumn(
            name="Retrains", type="integer", json_path=".status.retrains", description="Retrains created."
        ),
        PrinterColumn(
            name="ModelVersion",
            type="string",
            json_path=".status.modelVersion",
            description="ModelVersion monitored.",
            priority=1,
        ),
        PrinterColumn(
            name="Samples",
            type="integer",
            json_path=".status.sampleSize",
            description="Predictions in the last window.",
            priority=1,
        ),
        AGE_COLUMN,
    ),
)
