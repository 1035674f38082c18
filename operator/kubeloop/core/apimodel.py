"""The shared vocabulary of kubeloop's API models: the base class, shared field types, the
resource descriptor that `crdgen` turns into a CRD, and `parse_spec` for the handlers.

Every `<kind>/api.py` builds on this module and nothing else from kubeloop's core, so the
CRD schema, the operator's validation and `kubectl explain` all come from one source.

Two kinds of rules live in the models, and they must stay apart:

* **Schema rules** (types, enums, ranges, patterns, lengths, defaults) become the CRD's
  structural schema; the API server enforces them and refuses a violating object with 422.
* **Semantic rules** (a cron expression that does not parse, rollout steps that do not end at
  100, ...) are pydantic validators. They never reach the schema; the operator reports them
  as `Ready=False, reason=InvalidSpec` with a message naming the field, which `parse_spec`
  builds. A validator that concerns one field of a nested object raises `InvalidField` so
  the message names that field rather than the object holding it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, get_args

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from kubeloop import GROUP, VERSION

# -- base classes ---------------------------------------------------------------------------


class KubeModel(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python, strict."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        # Python callers (tests, desired.py) may build models with snake_case names.
        populate_by_name=True,
        serialize_by_alias=True,
        # A field the model does not know is a typo; the API server prunes unknown fields,
        # so this only bites callers that bypass it (tests, the local CLI), which is wanted.
        extra="forbid",
        # Attribute docstrings become schema descriptions, hence `kubectl explain` text.
        use_attribute_docstrings=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """The object as Kubernetes stores it: camelCase keys, unset (None) fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusModel(KubeModel):
    """Base of every status model.

    Unknown fields are ignored rather than refused: during an operator upgrade an older
    replica may read a status written by a newer one.
    """

    model_config = ConfigDict(extra="ignore")


# -- shared field types ---------------------------------------------------------------------

# DNS-1123 subdomain: what Kubernetes accepts as the name of most objects.
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# DNS-1123 label: names that end up in labels, Service names or hostnames.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A column name kubeloop creates (a feature): usable unquoted in SQL, Arrow and Python.
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# metav1.Condition's constraints, as kube-apiserver's own types declare them.
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
# A Kubernetes resource.Quantity without a sign: negative resources make no sense here.
QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# An artifact or data digest, as written by the object store layer.
DIGEST_PATTERN = r"^sha256:[a-f0-9]{64}$"

_QUANTITY_RE = re.compile(QUANTITY_PATTERN)


class InvalidField(ValueError):  # noqa: N818 - it is raised as a ValueError, pydantic's contract
    """Raised by a model validator to blame one field (relative to the model) for an error.

    pydantic reports a model validator's error at the model itself; `parse_spec` appends
    `loc` so that the message reads `spec.serving.rollout.steps: ...`, not `spec.serving`.
    """

    def __init__(self, loc: str | Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.loc: tuple[str | int, ...] = (loc,) if isinstance(loc, str) else tuple(loc)
        self.message = message


def _validate_quantity(value: object) -> int | str:
    # bool is an int in Python but `cpu: true` is nonsense; floats are refused because the
    # API server's int-or-string schema refuses them too (write "0.5" or "500m").
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f'invalid quantity {value!r}: write an integer or a string such as "500m" or "4Gi"')
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid quantity {value}: must not be negative")
        return value
    if not _QUANTITY_RE.match(value):
        raise ValueError(
            f'invalid quantity "{value}": use a Kubernetes quantity such as "500m", "2" or "4Gi"'
        )
    return value


Quantity = Annotated[
    int | str,
    PlainValidator(_validate_quantity),
    # The same shape kube-apiserver publishes for resource.Quantity.
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
"""A Kubernetes resource quantity: an integer, or a string such as "500m" or "4Gi"."""


def _validate_int_or_string(value: object) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected an integer or a string, got {value!r}")
    return value


IntOrString = Annotated[
    int | str,
    PlainValidator(_validate_int_or_string),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}),
]
"""An integer or a string, as Kubernetes' IntOrString."""


_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration ("90s", "15m", "1h30m", "1.5h", "7d") into a timedelta.

    Go's units plus `d` (24h), since drift windows and cooldowns are often days. Raises
    ValueError with a message users can act on.
    """
    position, seconds = 0, 0.0
    for match in _DURATION_PART_RE.finditer(text):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(
            f'invalid duration "{text}": use numbers with units ms, s, m, h or d, such as 30s, 15m, 1h30m or 7d'
        )
    if seconds <= 0:
        raise ValueError(f'invalid duration "{text}": must be longer than zero')
    return timedelta(seconds=seconds)


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[str, AfterValidator(_check_duration)]
"""A duration such as "30s", "15m", "1h30m" or "7d". Kept as the user wrote it; parse it with
`parse_duration`. Its syntax is checked by the operator, not the schema (InvalidSpec)."""

# The macros Kubernetes CronJobs accept (robfig/cron's standard parser).
_CRON_MACROS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})


def check_cron(expression: str) -> str:
    """Accept exactly what a Kubernetes CronJob's `schedule` accepts; raise ValueError otherwise.

    croniter alone is too lenient: it takes 6- and 7-field expressions and Quartz's L, W and #,
    all of which the CronJob controller refuses, which would leave a FeatureSet that looks
    valid but never runs.
    """
    prefix = f'invalid cron expression "{expression}"'
    stripped = expression.strip()
    if stripped.startswith("@"):
        if stripped not in _CRON_MACROS:
            raise ValueError(f"{prefix}: unknown macro; use one of {', '.join(sorted(_CRON_MACROS))}")
        return expression
    fields = stripped.split()
    if len(fields) != 5:
        raise ValueError(
            f"{prefix}: expected 5 fields (minute hour day-of-month month day-of-week) "
            f"or a macro such as @daily, got {len(fields)}"
        )
    if any(ch in field for field in fields for ch in "LW#"):
        raise ValueError(f"{prefix}: L, W and # are not supported by Kubernetes CronJobs")
    try:
        croniter(stripped)
    except (ValueError, KeyError) as exc:  # croniter's errors subclass ValueError
        raise ValueError(f"{prefix}: {exc}") from None
    return expression


CronSchedule = Annotated[str, AfterValidator(check_cron)]
"""A cron expression in the format of Kubernetes CronJobs ("0 2 * * *", "@daily"), in UTC.
Checked by the operator, not the schema (InvalidSpec)."""


def first_duplicate(values: Sequence[str]) -> int | None:
    """Index of the first value that repeats an earlier one, or None (for "duplicated" errors
    that point at the offending list item)."""
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            return index
        seen.add(value)
    return None


# -- shared models --------------------------------------------------------------------------


class ObjectRef(KubeModel):
    """A reference to another object in the same namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
    """Name of the referenced object."""


class SecretRef(KubeModel):
    """A reference to a Secret in the same namespace; its keys become environment variables."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
    """Name of the Secret."""


class Resources(KubeModel):
    """Compute resources of each pod (for a TrainingRun: of each worker)."""

    cpu: Quantity = "1"
    """CPU request, such as 2 or "500m". No CPU limit is set, so pods may burst."""
    memory: Quantity = "2Gi"
    """Memory request and limit, such as "4Gi"."""
    gpus: int = Field(default=0, ge=0, le=64)
    """NVIDIA GPUs (`nvidia.com/gpu` limit). 0 runs on CPU."""

    def requirements(self) -> dict[str, dict[str, int | str]]:
        """The container's `resources` (core/v1 ResourceRequirements) for these values.

        Memory limit = request: a pod that outgrows its memory is killed predictably rather
        than starving its node. CPU gets no limit (CFS throttling slows data loaders and
        collectives for no benefit). GPUs are extended resources: Kubernetes takes them as
        limits and sets the request equal.
        """
        requests: dict[str, int | str] = {"cpu": self.cpu, "memory": self.memory}
        limits: dict[str, int | str] = {"memory": self.memory}
        if self.gpus:
            limits["nvidia.com/gpu"] = str(self.gpus)  # a quantity: the API returns it as a string
        return {"requests": requests, "limits": limits}


class Toleration(KubeModel):
    """A pod toleration, as core/v1 Toleration."""

    key: str | None = Field(default=None, max_length=316)
    """Taint key the toleration applies to; empty with operator Exists matches every taint."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """Exists matches any value; Equal matches `value`."""
    value: str | None = Field(default=None, max_length=63)
    """Taint value to match when the operator is Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: int | None = Field(default=None, ge=0)
    """For NoExecute: how long the pod stays bound after the taint appears."""

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        # The API server refuses these combinations only when the operator creates the pod's
        # Job, long after the spec was accepted; say so up front instead.
        if self.operator == "Exists" and self.value:
            raise InvalidField("value", "must be empty when operator is Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise InvalidField("tolerationSeconds", "is only valid with effect NoExecute")
        return self


class Artifact(StatusModel):
    """A content-addressed object in the object store."""

    uri: str | None = None
    """Where the artifact lives, such as s3://kubeloop/artifacts/sha256/ab12..."""
    digest: str | None = Field(default=None, pattern=DIGEST_PATTERN)
    """sha256 of the artifact's content, as "sha256:<64 hex digits>"."""
    short_digest: str | None = None
    """The first 12 hex digits of the digest, for `kubectl get -o wide`."""


class Condition(StatusModel):
    """One aspect of the object's state, as metav1.Condition."""

    type: str = Field(max_length=316, pattern=CONDITION_TYPE_PATTERN)
    """Type of condition in CamelCase, such as Ready."""
    status: Literal["True", "False", "Unknown"]
    """Status of the condition: True, False or Unknown."""
    reason: str = Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)
    """A CamelCase identifier of the reason for the last transition, such as InvalidSpec."""
    message: str = Field(max_length=32768)
    """A human-readable message about the transition; may be empty."""
    last_transition_time: datetime
    """When the status last changed from one value to another."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation this condition was computed from."""


# Conditions are a list keyed by type, as in every built-in kind, so that server-side apply
# merges them by type instead of replacing the whole list.
CONDITIONS_SCHEMA_EXTRA: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}

# Marks a field whose content is free-form (the schema keeps everything under it).
FREE_FORM: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}


# -- models shared by several kinds ---------------------------------------------------------
# They live here rather than in one kind's api.py because api modules import only this one:
# a FeatureSet's source is also a TrainingRun's label source, and a TrainingRun's
# `register` creates a ModelVersion from the same template a ModelVersion's spec extends.

SourceFormat = Literal["parquet", "csv"]

# Extensions the source format is inferred from when `format` is omitted.
_FORMAT_BY_SUFFIX: dict[str, SourceFormat] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".csv.gz": "csv",
}


class DataSource(KubeModel):
    """Where raw rows are read from."""

    uri: str = Field(min_length=1, pattern=r"^(s3://[^/]+/.+|/.+|file:///.+)$")
    """Parquet or CSV files: s3://bucket/prefix/*.parquet, or a local path (/data/*.csv).
    Glob patterns are expanded; a prefix ending in / reads every file under it."""
    format: SourceFormat | None = None
    """File format; inferred from the URI's extension (.parquet, .pq, .csv, .csv.gz) when omitted."""
    timestamp_column: str | None = Field(default=None, min_length=1)
    """Event-time column: needed for point-in-time joins and for the uniqueness of
    entity + timestamp."""
    secret_ref: SecretRef | None = None
    """Secret with the object store credentials (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    optionally AWS_SESSION_TOKEN and AWS_ENDPOINT_URL); omitted: the operator's own store."""

    @property
    def effective_format(self) -> SourceFormat:
        """`format`, or the one the URI's extension implies."""
        if self.format is not None:
            return self.format
        inferred = _format_of(self.uri)
        if inferred is None:  # unreachable after validation
            raise ValueError(f"cannot infer the format of {self.uri}")
        return inferred

    @model_validator(mode="after")
    def _format_known(self) -> DataSource:
        if self.format is None and _format_of(self.uri) is None:
            raise InvalidField(
                "format",
                f'cannot be inferred from "{self.uri}" (no .parquet or .csv extension); set it to parquet or csv',
            )
        return self


def _format_of(uri: str) -> SourceFormat | None:
    lowered = uri.lower()
    for suffix, fmt in _FORMAT_BY_SUFFIX.items():
        if lowered.endswith(suffix):
            return fmt
    return None


# The alias the operator moves when a rollout completes; users cannot claim it.
CHAMPION_ALIAS = "champion"


class Gate(KubeModel):
    """An evaluation gate on one of the TrainingRun's final metrics. Set min and/or max for an
    absolute threshold, or minDeltaVsChampion / maxDeltaVsChampion to compare with the model's
    current champion (those pass when the model has no champion yet)."""

    metric: str | None = None
    """Name of a metric in the TrainingRun's status.metrics, such as auc. Required."""
    min: float | None = None
    """The metric must be at least this."""
    max: float | None = None
    """The metric must be at most this."""
    min_delta_vs_champion: float | None = None
    """The metric minus the champion's must be at least this (higher-is-better metrics;
    a small negative value tolerates a slight regression)."""
    max_delta_vs_champion: float | None = None
    """The metric minus the champion's must be at most this (lower-is-better metrics such as
    loss or rmse; 0 means no worse than the champion)."""

    @model_validator(mode="after")
    def _names_metric_and_bound(self) -> Gate:
        if not (self.metric and self.metric.strip()):
            raise InvalidField("metric", "required: the gate names no metric")
        bounds = (self.min, self.max, self.min_delta_vs_champion, self.max_delta_vs_champion)
        if all(bound is None for bound in bounds):
            raise InvalidField(
                "metric",
                f'gate on "{self.metric}" has neither min, max, minDeltaVsChampion nor maxDeltaVsChampion',
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise InvalidField("max", f"must not be less than min ({self.min})")
        return self


class Rollout(KubeModel):
    """A staged (canary) rollout: traffic moves to the new version step by step, and is rolled
    back to the previous champion when a failure condition is met during a step."""

    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(min_length=1, max_length=20)
    """Percentages of traffic for the new version, strictly increasing and ending at 100,
    such as [10, 50, 100]."""
    interval: Duration = "5m"
    """How long each step lasts before the next one, such as "10m"."""
    max_error_rate: float | None = Field(default=0.05, ge=0, le=1)
    """Roll back when the fraction of failed requests to the new version exceeds this
    (null disables the check)."""
    max_latency_p99: Duration | None = None
    """Roll back when the new version's 99th percentile latency exceeds this, such as "250ms"."""

    @field_validator("steps")
    @classmethod
    def _steps_increase_to_100(cls, steps: list[int]) -> list[int]:
        for i in range(1, len(steps)):
            if steps[i] <= steps[i - 1]:
                raise InvalidField(
                    (i,), f"must be greater than the previous step ({steps[i - 1]}): steps must increase"
                )
        if steps[-1] != 100:
            raise ValueError(f"must end at 100, got {steps}")
        return steps


class Serving(KubeModel):
    """How the version is served (a KServe InferenceService running kubeloop's server)."""

    enabled: bool = True
    """Deploy the version once its gates pass; false registers it without serving."""
    min_replicas: int = Field(default=1, ge=0)
    """Fewest predictor replicas (0 allows scale to zero where KServe supports it)."""
    max_replicas: int | None = Field(default=None, ge=1)
    """Most predictor replicas; omitted: equal to minReplicas (at least 1)."""
    resources: Resources = Field(default_factory=Resources)
    """Resources of each predictor replica."""
    rollout: Rollout | None = None
    """Staged rollout against the current champion; omitted: the version takes all traffic at once."""

    @model_validator(mode="after")
    def _replicas_ordered(self) -> Serving:
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise InvalidField("maxReplicas", f"must not be less than minReplicas ({self.min_replicas})")
        return self


class ModelVersionTemplate(KubeModel):
    """A ModelVersion spec without its TrainingRun: what a TrainingRun's `register` creates."""

    model: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)
    """Registered model name, such as fraud-detector; versions of one model share its aliases."""
    aliases: list[Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]] = Field(
        default_factory=list, max_length=16
    )
    """User aliases (such as staging) to point at this version in the registry; `champion`
    is reserved: the operator moves it when a rollout completes."""
    gates: list[Gate] = Field(default_factory=list, max_length=32)
    """Evaluation gates; all must pass before anything is deployed."""
    serving: Serving = Field(default_factory=Serving)
    """Serving and rollout."""

    @field_validator("aliases")
    @classmethod
    def _aliases_valid(cls, aliases: list[str]) -> list[str]:
        for i, alias in enumerate(aliases):
            if alias == CHAMPION_ALIAS:
                raise InvalidField(
                    (i,), '"champion" is managed by the operator: it moves when a rollout completes'
                )
        index = first_duplicate(aliases)
        if index is not None:
            raise InvalidField((index,), f'duplicated alias "{aliases[index]}"')
        return aliases


# -- the resource descriptor ----------------------------------------------------------------


class PrinterColumn(KubeModel):
    """An additionalPrinterColumns entry of a CRD version (what `kubectl get` shows)."""

    name: str
    """Column header."""
    type: Literal["integer", "number", "string", "boolean", "date"]
    """OpenAPI type of the value; `date` is shown as an age."""
    json_path: str = Field(pattern=r"^\.")
    """Simple JSONPath into the object, such as .status.phase."""
    description: str | None = None
    """Shown by `kubectl explain`-like tools."""
    priority: int = Field(default=0, ge=0)
    """0: shown by default; greater than 0: shown by `-o wide` only."""
    format: str | None = None
    """OpenAPI format of the value (rarely needed)."""


AGE_COLUMN = PrinterColumn(
    name="Age",
    type="date",
    json_path=".metadata.creationTimestamp",
    description="Time since the object was created.",
)


@dataclass(frozen=True)
class ResourceDefinition:
    """Everything `crdgen` needs to write a kind's CRD, and handlers need to register it."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec_model: type[KubeModel]
    status_model: type[StatusModel]
    printer_columns: tuple[PrinterColumn, ...]
    description: str
    categories: tuple[str, ...] = ("kubeloop",)
    group: str = GROUP
    version: str = VERSION

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def crd_name(self) -> str:
        """The CRD's metadata.name, `<plural>.<group>` as Kubernetes requires."""
        return f"{self.plural}.{self.group}"


# -- validating a spec ----------------------------------------------------------------------


class SpecError(ValueError):
    """A spec the operator cannot act on; `str()` names each field, as kube-apiserver does:

        spec.schedule: invalid cron expression "x": expected 5 fields ...

    `field_path` and `message` describe the first problem; `errors` holds all of them.
    """

    def __init__(self, field_path: str, message: str, *, errors: Sequence[tuple[str, str]] = ()) -> None:
        self.field_path = field_path
        self.message = message
        self.errors: list[tuple[str, str]] = list(errors) or [(field_path, message)]
        super().__init__("; ".join(f"{path}: {text}" for path, text in self.errors))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a (possibly Optional / list / dict) annotation holds, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def alias_loc(model: type[BaseModel], loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """A pydantic error loc with every field named by its alias (its name in the YAML).

    Locs already use aliases when the input did, but a model built from Python names
    (populate_by_name) reports Python names; walking the model translates either.
    """
    translated: list[str | int] = []
    current: type[BaseModel] | None = model
    for segment in loc:
        if isinstance(segment, int) or current is None:
            translated.append(segment)
            continue
        for name, info in current.model_fields.items():
            alias = info.alias or name
            if segment in (name, alias):
                translated.append(alias)
                current = _model_in(info.annotation)
                break
        else:
            # A dict key, or a field the model does not have (an unknown field).
            translated.append(segment)
    return tuple(translated)


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def format_path(root: str, loc: Sequence[str | int]) -> str:
    """`spec` + ("features", 2, "from") -> `spec.features[2].from`; odd keys in brackets."""
    path = root
    for segment in loc:
        if isinstance(segment, int):
            path += f"[{segment}]"
        elif _PLAIN_KEY.match(segment):
            path += f".{segment}" if path else segment
        else:
            path += f"[{segment}]"
    return path


def _message(error: Any) -> tuple[str, tuple[str | int, ...]]:
    """The user-facing message of one pydantic error, plus the loc an InvalidField adds."""
    kind = error["type"]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, InvalidField):
        return cause.message, cause.loc
    if kind == "missing":
        return "required value", ()
    if kind == "extra_forbidden":
        return "unknown field", ()
    if isinstance(cause, Exception) and kind in ("value_error", "assertion_error"):
        return str(cause), ()
    return error["msg"], ()


def error_locs(exc: ValidationError, model: type[BaseModel]) -> list[tuple[tuple[str | int, ...], str]]:
    """Every problem of a ValidationError as (alias loc, message)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for error in exc.errors():
        message, extra = _message(error)
        problems.append((alias_loc(model, tuple(error["loc"]) + extra), message))
    return problems


def spec_errors(exc: ValidationError, model: type[BaseModel], root: str = "spec") -> list[tuple[str, str]]:
    """Every problem of a ValidationError as (dotted field path, message)."""
    return [(format_path(root, loc), message) for loc, message in error_locs(exc, model)]


def parse_spec(resource: ResourceDefinition, spec: Any) -> KubeModel:
    """Validate a custom resource's `spec` (a dict as read from the API server).

    Returns the spec model; raises `SpecError` naming every offending field otherwise. The
    API server has already enforced the schema, so what fails here is mostly semantic.
    """
    if not isinstance(spec, dict):
        raise SpecError("spec", "required value" if spec is None else "must be an object")
    try:
        return resource.spec_model.model_validate(spec)
    except ValidationError as exc:
        problems = spec_errors(exc, resource.spec_model)
        raise SpecError(problems[0][0], problems[0][1], errors=problems) from None
