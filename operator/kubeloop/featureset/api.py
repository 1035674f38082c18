"""FeatureSet: versioned features with a data contract, computed by one transforms module with
one set of fitted parameters for training (batch) and serving (online). The one source of the FeatureSet CRD schema."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from kubeloop.core.apimodel import (
    AGE_COLUMN,
    CONDITIONS_SCHEMA_EXTRA,
    DIGEST_PATTERN,
    IDENTIFIER_PATTERN,
    Condition,
    CronSchedule,
    DataSource,
    Duration,
    IntOrString,
    InvalidField,
    KubeModel,
    PrinterColumn,
    ResourceDefinition,
    Resources,
    StatusModel,
    first_duplicate,
)

TransformType = Literal[
    "identity",
    "log1p",
    "clip",
    "standardize",
    "minMax",
    "bucketize",
    "vocabulary",
    "hash",
    "fillNull",
    "datetime",
]
FeatureDtype = Literal["float32", "float64", "int32", "int64", "bool", "string"]
ColumnType = Literal["integer", "float", "string", "boolean", "timestamp"]
FeatureSetPhase = Literal["Pending", "Materializing", "Ready", "Failed"]


class ConditionType(StrEnum):
    """Condition types of a FeatureSet."""

    READY = "Ready"
    """Summary: a version is available to train on (True even while a newer one fails)."""
    ACCEPTED = "Accepted"
    """The spec is valid (False, reason InvalidSpec, with a message naming the field)."""
    MATERIALIZED = "Materialized"
    """The outcome of the most recent materialization."""


class Reason(StrEnum):
    """Condition reasons of a FeatureSet."""

    INVALID_SPEC = "InvalidSpec"
    """The spec breaks a rule the schema cannot express; the message names the field."""
    RECONCILING = "Reconciling"
    """The operator is creating or updating the CronJob and the materialization Job."""
    SPEC_VALID = "SpecValid"
    """Accepted=True: the spec passed validation."""
    PENDING = "Pending"
    """Ready=Unknown: accepted, waiting for its first result (the message says for what)."""
    READY = "Ready"
    """Ready=True: every condition that Ready sums up is True."""
    AWAITING_FIRST_VERSION = "AwaitingFirstVersion"
    """No version has been materialized yet."""
    MATERIALIZING = "Materializing"
    """A materialization Job is running."""
    MATERIALIZED = "Materialized"
    """The latest materialization published a new version."""
    VERSION_AVAILABLE = "VersionAvailable"
    """Ready: at least one version is available (Ready=True)."""
    CONTRACT_VIOLATED = "ContractViolated"
    """The data broke `spec.validation`; the message names the column, rule and count."""
    SOURCE_UNAVAILABLE = "SourceUnavailable"
    """The source URI matched no file or could not be read."""
    SECRET_NOT_FOUND = "SecretNotFound"
    """`spec.source.secretRef` names a Secret that does not exist."""
    MATERIALIZATION_FAILED = "MaterializationFailed"
    """The materialization Job failed for another reason (see the message)."""


class Transform(KubeModel):
    """One step of a feature's transform pipeline. `type` chooses the step; only the
    parameters listed for that type may be set. Fitted parameters (means, vocabularies,
    quantile edges) are computed at materialization and stored with the version."""

    type: TransformType
    """identity, log1p, clip (min/max), standardize, minMax (to [0, 1]), bucketize
    (boundaries or numBuckets quantiles), vocabulary (maxSize, minFrequency, oovBuckets,
    output), hash (numBuckets), fillNull (strategy, value or stringValue), datetime (part)."""
    min: float | None = None
    """clip: lower bound."""
    max: float | None = None
    """clip: upper bound."""
    boundaries: list[float] | None = None
    """bucketize: fixed, strictly increasing bucket edges."""
    num_buckets: int | None = Field(default=None, ge=1, le=1_000_000)
    """bucketize: number of quantile buckets fitted on the data; hash: number of hash buckets."""
    max_size: int | None = Field(default=None, ge=1)
    """vocabulary: keep at most this many most frequent values."""
    min_frequency: int | None = Field(default=None, ge=1)
    """vocabulary: drop values seen fewer times than this."""
    oov_buckets: int | None = Field(default=None, ge=1, le=1000)
    """vocabulary: buckets for values outside the vocabulary (default 1)."""
    output: Literal["index", "oneHot"] | None = None
    """vocabulary: an integer index (default) or a one-hot vector."""
    strategy: Literal["constant", "mean", "median", "mostFrequent"] | None = None
    """fillNull: how to replace missing values (fitted on the data except for constant)."""
    value: float | None = None
    """fillNull with strategy constant: the number that replaces missing values."""
    string_value: str | None = None
    """fillNull with strategy constant: the string that replaces missing values."""
    part: Literal["year", "month", "day", "hour", "minute", "dayOfWeek", "dayOfYear"] | None = None
    """datetime: the calendar part to extract from a timestamp column (UTC)."""

    @model_validator(mode="after")
    def _parameters_fit_type(self) -> Transform:
        allowed = _TRANSFORM_PARAMETERS[self.type]
        for name in sorted(self.model_fields_set - {"type"}):
            alias = type(self).model_fields[name].alias or name
            if alias not in allowed and getattr(self, name) is not None:
                accepts = ", ".join(sorted(allowed)) or "no parameters"
                raise InvalidField(alias, f"is not a parameter of {self.type} (it takes {accepts})")
        check = _TRANSFORM_CHECKS.get(self.type)
        if check is not None:
            check(self)
        return self


def _check_clip(t: Transform) -> None:
    if t.min is None and t.max is None:
        raise InvalidField("min", "clip needs min, max or both")
    if t.min is not None and t.max is not None and t.min >= t.max:
        raise InvalidField("max", f"must be greater than min ({t.min})")


def _check_bucketize(t: Transform) -> None:
    if (t.boundaries is None) == (t.num_buckets is None):
        raise InvalidField("boundaries", "bucketize needs exactly one of boundaries or numBuckets")
    if t.boundaries is not None:
        if not t.boundaries:
            raise InvalidField("boundaries", "needs at least one edge")
        for i in range(1, len(t.boundaries)):
            if t.boundaries[i] <= t.boundaries[i - 1]:
                raise InvalidField(
                    ("boundaries", i), f"must be greater than the previous edge ({t.boundaries[i - 1]})"
                )


def _check_hash(t: Transform) -> None:
    if t.num_buckets is None:
        raise InvalidField("numBuckets", "hash needs numBuckets")


def _check_fill_null(t: Transform) -> None:
    if t.strategy is None:
        raise InvalidField("strategy", "fillNull needs a strategy (constant, mean, median or mostFrequent)")
    given = [name for name, v in (("value", t.value), ("stringValue", t.string_value)) if v is not None]
    if t.strategy == "constant" and len(given) != 1:
        raise InvalidField("value", "strategy constant needs exactly one of value or stringValue")
    if t.strategy != "constant" and given:
        raise InvalidField(given[0], f"is only used with strategy constant, not {t.strategy}")


def _check_datetime(t: Transform) -> None:
    if t.part is None:
        raise InvalidField(
            "part", "datetime needs a part (year, month, day, hour, minute, dayOfWeek, dayOfYear)"
        )


_TRANSFORM_PARAMETERS: dict[str, frozenset[str]] = {
    "identity": frozenset(),
    "log1p": frozenset(),
    "clip": frozenset({"min", "max"}),
    "standardize": frozenset(),
    "minMax": frozenset(),
    "bucketize": frozenset({"boundaries", "numBuckets"}),
    "vocabulary": frozenset({"maxSize", "minFrequency", "oovBuckets", "output"}),
    "hash": frozenset({"numBuckets"}),
    "fillNull": frozenset({"strategy", "value", "stringValue"}),
    "datetime": frozenset({"part"}),
}
_TRANSFORM_CHECKS = {
    "clip": _check_clip,
    "bucketize": _check_bucketize,
    "hash": _check_hash,
    "fillNull": _check_fill_null,
    "datetime": _check_datetime,
}


class Feature(KubeModel):
    """A feature: a source column passed through a pipeline of transforms."""

    name: str = Field(min_length=1, max_length=128, pattern=IDENTIFIER_PATTERN)
    """Name of the feature in the version's data and in serving requests' outputs."""
    from_: str = Field(alias="from", min_length=1)
    """Source column the feature is computed from; serving requests send this column."""
    transforms: list[Transform] = Field(default_factory=list, max_length=16)
    """Steps applied in order, such as fillNull, then log1p, then standardize. Empty: identity."""
    dtype: FeatureDtype | None = None
    """Type the result is cast to; omitted: the last step's natural type (float64 for numeric
    steps, int64 for vocabulary indices, hash and bucketize, the source type for identity)."""


class ColumnRule(KubeModel):
    """The data contract of one source column. Every rule set must hold for a version to be
    published; a violation fails the materialization naming the column, rule and count."""

    column: str = Field(min_length=1)
    """Source column the rules apply to."""
    type: ColumnType | None = None
    """Expected type of the column."""
    min: float | None = None
    """Smallest allowed value."""
    max: float | None = None
    """Largest allowed value."""
    allowed_values: list[IntOrString] | None = Field(default=None, min_length=1)
    """The only values allowed (compared as written: 1 and "1" differ for string columns)."""
    max_null_fraction: float | None = Field(default=None, ge=0, le=1)
    """Largest allowed fraction of missing values, from 0 to 1."""

    @model_validator(mode="after")
    def _bounds_ordered(self) -> ColumnRule:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise InvalidField("max", f"must not be less than min ({self.min})")
        return self


class Validation(KubeModel):
    """The data contract checked at every materialization."""

    min_rows: int | None = Field(default=None, ge=0)
    """Fewest rows a version may have."""
    unique_keys: bool = True
    """Entity columns plus the timestamp column (when set) must identify each row uniquely."""
    columns: list[ColumnRule] = Field(default_factory=list)
    """Rules per source column."""


class FeatureSetSpec(KubeModel):
    """Desired state of a FeatureSet."""

    source: DataSource
    """Where raw rows come from."""
    entities: list[str] = Field(min_length=1, max_length=8)
    """Join-key columns (such as customer_id) identifying what the features describe."""
    label_columns: list[str] = Field(default_factory=list)
    """Columns (labels, such as is_fraud) stored unchanged with every version for training;
    never transformed and never expected in serving requests."""
    features: list[Feature] = Field(min_length=1, max_length=1000)
    """The features and how each is computed."""
    validation: Validation | None = None
    """The data contract; a version that breaks it is not published."""
    schedule: CronSchedule | None = None
    """Cron schedule (UTC) of materialization, such as "0 2 * * *". A spec change also
    materializes once. Omitted: only spec changes materialize."""
    ttl: Duration | None = None
    """In point-in-time joins, a feature row older than this at a label's timestamp counts
    as missing, such as "30d". Omitted: no limit."""
    resources: Resources = Field(default_factory=Resources)
    """Resources of the materialization pod."""

    @field_validator("entities", "label_columns")
    @classmethod
    def _columns_unique(cls, columns: list[str]) -> list[str]:
        index = first_duplicate(columns)
        if index is not None:
            raise InvalidField((index,), f'duplicated column "{columns[index]}"')
        return columns

    @field_validator("features")
    @classmethod
    def _names_unique(cls, features: list[Feature]) -> list[Feature]:
        index = first_duplicate([f.name for f in features])
        if index is not None:
            raise InvalidField((index, "name"), f'duplicated feature name "{features[index].name}"')
        return features

    @model_validator(mode="after")
    def _columns_consistent(self) -> FeatureSetSpec:
        keys = set(self.entities)
        if self.source.timestamp_column:
            keys.add(self.source.timestamp_column)
        for i, column in enumerate(self.label_columns):
            if column in keys:
                raise InvalidField(("labelColumns", i), f'"{column}" is an entity or the timestamp column')
        reserved = keys | set(self.label_columns)
        for i, feature in enumerate(self.features):
            # A feature named like a key or label column would overwrite it in the version.
            if feature.name in reserved:
                raise InvalidField(
                    ("features", i, "name"),
                    f'"{feature.name}" collides with an entity, timestamp or label column',
                )
        read = reserved | {f.from_ for f in self.features}
        if self.validation is not None:
            seen: set[str] = set()
            for i, rule in enumerate(self.validation.columns):
                if rule.column in seen:
                    raise InvalidField(
                        ("validation", "columns", i, "column"), f'duplicated rule for column "{rule.column}"'
                    )
                seen.add(rule.column)
                if rule.column not in read:
                    raise InvalidField(
                        ("validation", "columns", i, "column"),
                        f'column "{rule.column}" is not read by this FeatureSet '
                        "(not an entity, the timestamp column, a label column or any feature's from)",
                    )
        if self.resources.gpus:
            raise InvalidField(("resources", "gpus"), "must be 0: materialization does not use GPUs")
        return self


class FeatureSetVersion(StatusModel):
    """One immutable, content-addressed materialization."""

    id: str | None = None
    """Version identifier (derived from the content digest)."""
    digest: str | None = Field(default=None, pattern=DIGEST_PATTERN)
    """sha256 of the version manifest, which lists the digest of every file of the version."""
    rows: int | None = Field(default=None, ge=0)
    """Rows in the version."""
    uri: str | None = None
    """Object store prefix holding the version's data, fitted parameters and profile."""
    created_time: datetime | None = None
    """When the version was published."""


class ColumnSchema(StatusModel):
    """A column of the latest version."""

    name: str | None = None
    """Column name."""
    dtype: str | None = None
    """Arrow type of the column, such as float64 or string."""
    role: Literal["entity", "timestamp", "label", "input", "feature"] | None = None
    """entity, timestamp and label columns are stored as read; input columns are what serving
    requests must send (each feature's from); feature columns are the transforms' outputs."""


class FeatureSetStatus(StatusModel):
    """Observed state of a FeatureSet."""

    phase: FeatureSetPhase | None = None
    """Pending (no version yet), Materializing (a Job runs), Ready (a version is available,
    even if a newer materialization failed), Failed (the spec is invalid, or no version exists and
    materialization failed)."""
    latest_version: str | None = None
    """Identifier of the newest published version; TrainingRuns use it unless they pin one."""
    rows: int | None = Field(default=None, ge=0)
    """Rows in the latest version."""
    versions: list[FeatureSetVersion] = Field(default_factory=list)
    """The most recent versions, newest first (older ones stay in the object store)."""
    schema_: list[ColumnSchema] = Field(default_factory=list, alias="schema")
    """Columns of the latest version."""
    profile_uri: str | None = None
    """Reference profile of the latest version (per-feature histograms, quantiles and
    category frequencies) that drift detection compares live traffic with."""
    last_materialized_time: datetime | None = None
    """When the latest version was published."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation the status was computed from."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=CONDITIONS_SCHEMA_EXTRA)
    """Accepted, Ready and Materialized conditions."""


RESOURCE = ResourceDefinition(
    kind="FeatureSet",
    plural="featuresets",
    singular="featureset",
    short_names=("fs",),
    spec_model=FeatureSetSpec,
    status_model=FeatureSetStatus,
    description=(
        "FeatureSet materializes versioned features from raw data on a schedule: a data contract "
        "is checked, declarative transforms are fitted and applied, and each version (features, "
        "fitted parameters, reference profile) is stored immutably. Training and serving apply the "
        "same transforms of the same version."
    ),
    printer_columns=(
        PrinterColumn(name="Phase", type="string", json_path=".status.phase", description="Lifecycle phase."),
        PrinterColumn(
            name="Version",
            type="string",
            json_path=".status.latestVersion",
            description="Newest published version.",
        ),
        PrinterColumn(
            name="Rows", type="integer", json_path=".status.rows", description="Rows in the newest version."
        ),
        PrinterColumn(
            name="Schedule",
            type="string",
            json_path=".spec.schedule",
            description="Materialization schedule.",
            priority=1,
        ),
        PrinterColumn(
            name="Materialized",
            type="date",
            json_path=".status.lastMaterializedTime",
            description="Time since the newest version was published.",
            priority=1,
        ),
        AGE_COLUMN,
    ),
)
