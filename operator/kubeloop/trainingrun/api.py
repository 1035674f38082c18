"""TrainingRun: a tracked, reproducible, distributed training job over a FeatureSet version.
The one source of the TrainingRun CRD schema."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from kubeloop.core.apimodel import (
    AGE_COLUMN,
    CONDITIONS_SCHEMA_EXTRA,
    DIGEST_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    FREE_FORM,
    Artifact,
    Condition,
    DataSource,
    InvalidField,
    KubeModel,
    ModelVersionTemplate,
    ObjectRef,
    PrinterColumn,
    ResourceDefinition,
    Resources,
    StatusModel,
    Toleration,
    error_locs,
)

TrainingRunPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Suspended"]
ModelFamily = Literal["mlp", "linear"]
Task = Literal["classification", "regression"]


class ConditionType(StrEnum):
    """Condition types of a TrainingRun."""

    READY = "Ready"
    """Summary: the run succeeded (and, with spec.register, its ModelVersion exists)."""
    ACCEPTED = "Accepted"
    """The spec is valid (False, reason InvalidSpec, with a message naming the field)."""
    FEATURE_SET_READY = "FeatureSetReady"
    """The FeatureSet (version) to train on is available."""
    RUNNING = "Running"
    """Training pods are running."""
    SUCCEEDED = "Succeeded"
    """Training finished and the artifact is published (False once the run failed for good)."""
    REGISTERED = "Registered"
    """The ModelVersion requested by spec.register exists."""


class Reason(StrEnum):
    """Condition reasons of a TrainingRun."""

    INVALID_SPEC = "InvalidSpec"
    """The spec breaks a rule the schema cannot express; the message names the field."""
    RECONCILING = "Reconciling"
    """The operator is creating the Job and Service of the current attempt."""
    SPEC_VALID = "SpecValid"
    """Accepted=True: the spec passed validation."""
    PENDING = "Pending"
    """Ready=Unknown: accepted, waiting for its first result (the message says for what)."""
    READY = "Ready"
    """Ready=True: every condition that Ready sums up is True."""
    FEATURE_SET_NOT_FOUND = "FeatureSetNotFound"
    """`spec.featureSetRef` names no FeatureSet."""
    FEATURE_SET_NOT_READY = "FeatureSetNotReady"
    """The FeatureSet has no ready version (or not the pinned one) yet; the run waits."""
    FEATURE_SET_READY = "FeatureSetReady"
    """The version to train on is resolved and available."""
    SECRET_NOT_FOUND = "SecretNotFound"
    """`spec.labels.secretRef` names a Secret that does not exist."""
    SPEC_IMMUTABLE = "SpecImmutable"
    """The spec changed after the Job was created; the change is refused, not half-applied."""
    QUEUED = "Queued"
    """The Job waits, suspended, for admission by Kueue (`spec.queueName`)."""
    SUSPENDED = "Suspended"
    """`spec.suspend` is true."""
    JOB_CREATED = "JobCreated"
    """The Job exists; pods are being scheduled."""
    RUNNING = "Running"
    """Training pods are running."""
    RESTARTING = "Restarting"
    """The attempt failed; all workers restart together from the last checkpoint."""
    SUCCEEDED = "Succeeded"
    """Training finished; metrics, artifact and run record are published."""
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    """A Job failed with its pod retries exhausted and no restarts left."""
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    """`spec.activeDeadlineSeconds` passed before training finished."""
    MAX_RESTARTS_EXCEEDED = "MaxRestartsExceeded"
    """Every attempt allowed by `spec.maxRestarts` failed."""
    TRAINING_FAILED = "TrainingFailed"
    """The trainer reported an error (such as a target column that does not exist)."""
    REGISTERED = "Registered"
    """The ModelVersion requested by `spec.register` was created."""
    REGISTRATION_FAILED = "RegistrationFailed"
    """The ModelVersion could not be created (see the message)."""


class ModelSpec(KubeModel):
    """What to train: a built-in model family, or a user image that follows the trainer's
    contract (it receives the torchrun environment and writes the same run record)."""

    task: Task
    """classification (metrics: loss, accuracy, auc, f1) or regression (loss, rmse, mae)."""
    family: ModelFamily | None = None
    """Built-in family: mlp, or linear (an mlp without hidden layers: logistic or linear
    regression). Omitted: mlp, unless an image is given."""
    image: str | None = Field(default=None, min_length=1)
    """A user training image instead of a built-in family."""
    command: list[str] | None = None
    """Entrypoint of the user image."""
    args: list[str] | None = None
    """Arguments of the user image's entrypoint."""

    @property
    def builtin_family(self) -> ModelFamily | None:
        """The built-in family trained, or None for a user image."""
        if self.image is not None:
            return None
        return self.family or "mlp"

    @model_validator(mode="after")
    def _family_or_image(self) -> ModelSpec:
        if self.image is not None and self.family is not None:
            raise InvalidField("family", "set either family (a built-in model) or image (your own), not both")
        if self.image is None:
            for name in ("command", "args"):
                if getattr(self, name) is not None:
                    raise InvalidField(name, "is only used with image")
        return self


class Hyperparameters(KubeModel):
    """The hyperparameters of the built-in families, with their defaults. The trainer reads
    them through this model too, so the operator refuses a bad one before any pod starts."""

    epochs: int = Field(default=10, ge=1, le=100_000)
    """Passes over the training set."""
    batch_size: int = Field(default=256, ge=1, le=1_048_576)
    """Rows per step and process (the global batch is this times the world size)."""
    learning_rate: float = Field(default=1e-3, gt=0, le=10)
    """Optimizer learning rate."""
    hidden_layers: list[Annotated[int, Field(ge=1, le=65_536)]] = Field(default_factory=lambda: [64, 32])
    """mlp: width of each hidden layer (linear has none)."""
    dropout: float = Field(default=0.0, ge=0, lt=1)
    """mlp: dropout probability after each hidden layer."""
    weight_decay: float = Field(default=0.0, ge=0)
    """L2 penalty."""
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    """Optimizer."""
    early_stopping_patience: int | None = Field(default=None, ge=1)
    """Stop after this many epochs without improvement of the validation loss."""


class TrainingRunSpec(KubeModel):
    """Desired state of a TrainingRun. Immutable once its Job exists."""

    feature_set_ref: ObjectRef
    """The FeatureSet to train on."""
    feature_set_version: str | None = Field(default=None, min_length=1)
    """Pinned FeatureSet version; omitted: the newest ready version when the run starts
    (recorded in status.featureSetVersion)."""
    labels: DataSource | None = None
    """Label rows kept apart from the features (entity columns, a timestamp column and the
    target), joined to the features point-in-time: each row gets the feature values as of
    its timestamp, never later ones. Omitted: the target is a label column of the FeatureSet."""
    target: str = Field(min_length=1)
    """Column to predict."""
    model: ModelSpec
    """What to train."""
    hyperparameters: dict[str, Any] = Field(default_factory=dict, json_schema_extra=FREE_FORM)
    """Hyperparameters. Built-in families take epochs, batchSize, learningRate, hiddenLayers,
    dropout, weightDecay, optimizer (adam, adamw, sgd) and earlyStoppingPatience; a user image
    receives whatever is here, as JSON."""
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    """Fraction of rows held out for validation; the split is deterministic given the seed."""
    seed: int = Field(default=42, ge=0, le=4_294_967_295)
    """Seed of every random number generator (split, initialisation, shuffling)."""
    deterministic: bool = False
    """Force deterministic algorithms, so that the same spec and seed give bit-identical weights
    (slower on GPUs; the run record lists what it implied)."""
    workers: int = Field(default=1, ge=1, le=1024)
    """Pods (nodes) training together; more than 1 runs an Indexed Job with one rank per pod."""
    procs_per_worker: int = Field(default=1, ge=1, le=64)
    """Training processes per pod (torchrun's nproc_per_node); one per GPU when gpus > 0."""
    resources: Resources = Field(default_factory=Resources)
    """Resources of each worker pod."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels the worker pods must run on."""
    tolerations: list[Toleration] = Field(default_factory=list)
    """Tolerations of the worker pods (GPU runs also get the nvidia.com/gpu one)."""
    priority_class_name: str | None = Field(default=None, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
    """PriorityClass of the worker pods."""
    queue_name: str | None = Field(default=None, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
    """Kueue LocalQueue: the Job is created suspended and admitted as a whole gang by Kueue."""
    backoff_limit: int = Field(default=0, ge=0, le=100)
    """Pod retries within one attempt before its Job fails. 0 suits distributed training:
    one failed rank fails the attempt, and the next attempt restarts every rank together."""
    max_restarts: int = Field(default=2, ge=0, le=100)
    """Further attempts after a failed one, each resuming from the last checkpoint."""
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    """Seconds an attempt may run before it is stopped (DeadlineExceeded)."""
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    """Seconds after which a finished Job and its pods are deleted (the TrainingRun stays)."""
    suspend: bool = False
    """Suspend the run: no pods run until it is set back to false."""
    # `register` would shadow ABCMeta.register on the class, hence the Python name.
    registration: ModelVersionTemplate | None = Field(default=None, alias="register")
    """On success, create a ModelVersion named after this TrainingRun with this spec."""

    @model_validator(mode="after")
    def _consistent(self) -> TrainingRunSpec:
        gpus = self.resources.gpus
        if gpus and self.procs_per_worker > gpus:
            raise InvalidField(
                "procsPerWorker",
                f"{self.procs_per_worker} processes exceed resources.gpus ({gpus}): each process drives one GPU",
            )
        if self.labels is not None and not self.labels.timestamp_column:
            raise InvalidField(
                ("labels", "timestampColumn"), "required: a point-in-time join needs the label timestamp"
            )
        family = self.model.builtin_family
        if family is not None:
            try:
                parsed = Hyperparameters.model_validate(self.hyperparameters)
            except ValidationError as exc:
                loc, message = error_locs(exc, Hyperparameters)[0]
                raise InvalidField(("hyperparameters", *loc), message) from None
            if family == "linear" and "hiddenLayers" in self.hyperparameters and parsed.hidden_layers:
                raise InvalidField(("hyperparameters", "hiddenLayers"), "must be empty for the linear family")
        return self

    def builtin_hyperparameters(self) -> Hyperparameters:
        """The built-in family's hyperparameters with defaults filled in (linear: no hidden layers)."""
        parsed = Hyperparameters.model_validate(self.hyperparameters)
        if self.model.builtin_family == "linear":
            parsed.hidden_layers = []
        return parsed


class Progress(StatusModel):
    """Training progress, as reported by the trainer while it runs."""

    epoch: int | None = Field(default=None, ge=0)
    """Epochs completed."""
    epochs: int | None = Field(default=None, ge=1)
    """Epochs planned."""
    percent: int | None = Field(default=None, ge=0, le=100)
    """Percentage of training completed."""
    estimated_completion_time: datetime | None = None
    """When training is expected to finish, at the current pace."""


class KeyMetric(StatusModel):
    """The metric `kubectl get` shows: auc (binary classification), accuracy (multiclass)
    or rmse (regression) on the validation set."""

    name: str | None = None
    """Metric name."""
    value: float | None = None
    """Latest validation value while running, final value once succeeded."""


class Reproducibility(StatusModel):
    """What is needed to reproduce the run, from its run record."""

    seed: int | None = None
    """Seed of every random number generator."""
    deterministic: bool | None = None
    """Whether deterministic algorithms were forced."""
    world_size: int | None = Field(default=None, ge=1)
    """Training processes in total (workers x procsPerWorker)."""
    backend: Literal["gloo", "nccl"] | None = None
    """torch.distributed backend."""
    device_type: Literal["cpu", "cuda"] | None = None
    """Device trained on."""
    image: str | None = None
    """Trainer image, by digest when known."""
    git_sha: str | None = None
    """Git commit of the training code, when known."""
    python_version: str | None = None
    """Python version of the trainer."""
    torch_version: str | None = None
    """PyTorch version of the trainer."""
    numpy_version: str | None = None
    """NumPy version of the trainer."""
    feature_set_digest: str | None = Field(default=None, pattern=DIGEST_PATTERN)
    """Digest of the FeatureSet version trained on."""
    data_digest: str | None = Field(default=None, pattern=DIGEST_PATTERN)
    """Digest of the exact training set (after joins and the split)."""


class TrainingRunStatus(StatusModel):
    """Observed state of a TrainingRun."""

    phase: TrainingRunPhase | None = None
    """Pending, Running, Succeeded, Failed (for good, or the spec is invalid) or Suspended."""
    feature_set_version: str | None = None
    """The FeatureSet version this run trains on (the pinned one, or the newest at start)."""
    attempts: int | None = Field(default=None, ge=0)
    """Attempts started so far (1 + gang restarts)."""
    job_name: str | None = None
    """Name of the current attempt's Job."""
    start_time: datetime | None = None
    """When the first attempt started."""
    completion_time: datetime | None = None
    """When the run succeeded or failed for good."""
    progress: Progress | None = None
    """Training progress."""
    key_metric: KeyMetric | None = None
    """The headline validation metric."""
    metrics: dict[str, float] = Field(default_factory=dict)
    """Final validation metrics, such as loss, accuracy, auc, f1 or rmse, mae."""
    artifact: Artifact | None = None
    """The trained model: weights, model config and the FeatureSet version it needs."""
    reproducibility: Reproducibility | None = None
    """What is needed to reproduce the run."""
    run_record_uri: str | None = None
    """The run record: parameters, per-epoch metrics, environment, data and artifact digests."""
    model_version_ref: ObjectRef | None = None
    """The ModelVersion created by spec.register."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation the status was computed from."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=CONDITIONS_SCHEMA_EXTRA)
    """Accepted, Ready, FeatureSetReady, Running, Succeeded and Registered conditions."""


RESOURCE = ResourceDefinition(
    kind="TrainingRun",
    plural="trainingruns",
    singular="trainingrun",
    short_names=("tr",),
    spec_model=TrainingRunSpec,
    status_model=TrainingRunStatus,
    description=(
        "TrainingRun trains a model on a FeatureSet version as a (distributed, gang-restarted) "
        "Kubernetes Job with PyTorch DDP, records everything needed to reproduce it, publishes a "
        "content-addressed artifact and, with spec.register, creates a ModelVersion."
    ),
    printer_columns=(
        PrinterColumn(name="Phase", type="string", json_path=".status.phase", description="Lifecycle phase."),
        PrinterColumn(name="Workers", type="integer", json_path=".spec.workers", description="Worker pods."),
        PrinterColumn(
            name="Progress",
            type="integer",
            json_path=".status.progress.percent",
            description="Percent of training done.",
        ),
        PrinterColumn(
            name="Metric", type="string", json_path=".status.keyMetric.name", description="Headline metric."
        ),
        PrinterColumn(
            name="Value",
            type="number",
            json_path=".status.keyMetric.value",
            description="Headline metric's value.",
        ),
        PrinterColumn(
            name="Attempts", type="integer", json_path=".status.attempts", description="Attempts started."
        ),
        PrinterColumn(
            name="Epoch",
            type="integer",
            json_path=".status.progress.epoch",
            description="Epochs completed.",
            priority=1,
        ),
        PrinterColumn(
            name="FeatureSet",
            type="string",
            json_path=".spec.featureSetRef.name",
            description="FeatureSet trained on.",
            priority=1,
        ),
        PrinterColumn(
            name="Data",
            type="string",
            json_path=".status.featureSetVersion",
            description="FeatureSet version trained on.",
            priority=1,
        ),
        PrinterColumn(
            name="Artifact",
            type="string",
            json_path=".status.artifact.shortDigest",
            description="Short digest of the model artifact.",
            priority=1,
        ),
        AGE_COLUMN,
    ),
)
