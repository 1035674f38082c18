"""The pydantic API models: defaults, camelCase round trips, semantic validators (each failing
with a message that names the field) and the samples."""

from __future__ import annotations

import ast
import copy
import inspect
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeloop.core.apimodel import (
    CONDITION_REASON_PATTERN,
    Condition,
    DataSource,
    Resources,
    SpecError,
    parse_duration,
    parse_spec,
)
from kubeloop.driftmonitor import api as dm
from kubeloop.featureset import api as fs
from kubeloop.modelversion import api as mv
from kubeloop.trainingrun import api as tr

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "manifests" / "samples"
KINDS = {module.RESOURCE.kind: module for module in (fs, tr, mv, dm)}


def sample(kind: str) -> dict[str, Any]:
    return yaml.safe_load((SAMPLES / f"{kind.lower()}.yaml").read_text())


def sample_spec(kind: str) -> dict[str, Any]:
    return copy.deepcopy(sample(kind)["spec"])


def spec_error(kind: str, spec: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as caught:
        parse_spec(KINDS[kind].RESOURCE, spec)
    return caught.value


# -- samples --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_sample_parses_and_round_trips(kind: str) -> None:
    document = sample(kind)
    assert document["apiVersion"] == "kubeloop.dev/v1alpha1"
    assert document["kind"] == kind
    spec = parse_spec(KINDS[kind].RESOURCE, document["spec"])
    assert isinstance(spec, KINDS[kind].RESOURCE.spec_model)
    dumped = spec.to_dict()
    # Everything the sample says survives, under the same camelCase names...
    assert _contains(dumped, document["spec"])
    # ...and the dump parses back to the same model.
    assert KINDS[kind].RESOURCE.spec_model.model_validate(dumped) == spec


def _contains(big: Any, small: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _contains(big[k], v) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(big) == len(small) and all(map(_contains, big, small))
    return big == small


def test_samples_tell_one_consistent_story() -> None:
    featureset, run, version, monitor = (
        sample(k) for k in ("FeatureSet", "TrainingRun", "ModelVersion", "DriftMonitor")
    )
    assert run["spec"]["featureSetRef"]["name"] == featureset["metadata"]["name"]
    assert run["spec"]["target"] in featureset["spec"]["labelColumns"]
    assert run["spec"]["workers"] == 2
    assert version["spec"]["trainingRunRef"]["name"] == run["metadata"]["name"]
    assert version["spec"]["model"] == run["spec"]["register"]["model"] == monitor["spec"]["model"]
    assert version["spec"]["serving"]["rollout"]["steps"] == [10, 50, 100]
    # The ModelVersion sample is what the run's `register` creates: same name, same spec.
    assert version["metadata"]["name"] == run["metadata"]["name"]
    assert {**run["spec"]["register"], "trainingRunRef": {"name": run["metadata"]["name"]}} == version["spec"]
    assert monitor["spec"]["retrain"]["onDrift"] is True


def test_sample_featureset_is_the_fraud_example() -> None:
    spec = parse_spec(fs.RESOURCE, sample_spec("FeatureSet"))
    assert isinstance(spec, fs.FeatureSetSpec)
    assert spec.source.uri == "s3://kubeloop-data/transactions/*.parquet"
    assert spec.validation is not None and spec.validation.columns
    assert any(step.type != "identity" for feature in spec.features for step in feature.transforms)


# -- defaults and aliases -------------------------------------------------------------------


def minimal_trainingrun() -> dict[str, Any]:
    return {
        "featureSetRef": {"name": "transactions"},
        "target": "is_fraud",
        "model": {"task": "classification"},
    }


def test_trainingrun_defaults() -> None:
    spec = tr.TrainingRunSpec.model_validate(minimal_trainingrun())
    assert (spec.workers, spec.procs_per_worker, spec.seed, spec.deterministic) == (1, 1, 42, False)
    assert (spec.backoff_limit, spec.max_restarts, spec.suspend, spec.validation_fraction) == (
        0,
        2,
        False,
        0.2,
    )
    assert spec.resources == Resources(cpu="1", memory="2Gi", gpus=0)
    assert spec.model.builtin_family == "mlp"
    assert spec.registration is None
    hyper = spec.builtin_hyperparameters()
    assert (hyper.epochs, hyper.batch_size, hyper.learning_rate, hyper.hidden_layers) == (
        10,
        256,
        1e-3,
        [64, 32],
    )


def test_linear_family_has_no_hidden_layers() -> None:
    raw = minimal_trainingrun()
    raw["model"]["family"] = "linear"
    assert tr.TrainingRunSpec.model_validate(raw).builtin_hyperparameters().hidden_layers == []


def test_user_image_takes_any_hyperparameters() -> None:
    raw = minimal_trainingrun()
    raw["model"] = {
        "task": "regression",
        "image": "registry.example/trainer:1",
        "command": ["python", "train.py"],
    }
    raw["hyperparameters"] = {"trees": 500, "nested": {"anything": [1, "two"]}}
    spec = tr.TrainingRunSpec.model_validate(raw)
    assert spec.model.builtin_family is None
    assert spec.to_dict()["hyperparameters"] == raw["hyperparameters"]


def test_modelversion_and_driftmonitor_defaults() -> None:
    version = mv.ModelVersionSpec.model_validate(
        {"model": "fraud-detector", "trainingRunRef": {"name": "run-1"}}
    )
    assert version.serving.enabled and version.serving.min_replicas == 1 and version.serving.rollout is None
    assert version.gates == [] and version.aliases == []
    rollout = mv.Rollout.model_validate({"steps": [100]})
    assert (rollout.interval, rollout.max_error_rate) == ("5m", 0.05)
    monitor = dm.DriftMonitorSpec.model_validate({"model": "fraud-detector"})
    assert (monitor.schedule, monitor.window, monitor.min_samples) == ("0 * * * *", "24h", 1000)
    assert (monitor.method, monitor.correction, monitor.drift_share, monitor.reference) == (
        "auto",
        "fdr",
        0.5,
        "profile",
    )
    assert monitor.thresholds == dm.Thresholds(p_value=0.05, psi=0.1, wasserstein=0.1, jensen_shannon=0.1)
    assert monitor.retrain is None
    retrain = dm.Retrain()
    assert (retrain.on_drift, retrain.consecutive_breaches, retrain.cooldown, retrain.max_per_day) == (
        True,
        1,
        "6h",
        1,
    )


def test_featureset_format_is_inferred_from_the_uri() -> None:
    source = DataSource.model_validate({"uri": "s3://bucket/rows/part-*.csv.gz"})
    assert source.effective_format == "csv"
    assert DataSource.model_validate({"uri": "/data/x", "format": "parquet"}).effective_format == "parquet"


def test_camel_case_on_the_wire_snake_case_in_python() -> None:
    spec = tr.TrainingRunSpec(
        feature_set_ref={"name": "transactions"},  # type: ignore[arg-type]
        target="is_fraud",
        model=tr.ModelSpec(task="classification"),
        procs_per_worker=2,
        active_deadline_seconds=60,
    )
    dumped = spec.to_dict()
    assert dumped["featureSetRef"] == {"name": "transactions"}
    assert dumped["procsPerWorker"] == 2 and dumped["activeDeadlineSeconds"] == 60
    assert "procs_per_worker" not in dumped
    assert "ttlSecondsAfterFinished" not in dumped  # None is left out, not written as null
    feature = fs.Feature.model_validate({"name": "amount_log", "from": "amount"})
    assert feature.from_ == "amount" and feature.to_dict()["from"] == "amount"
    assert tr.TrainingRunSpec.model_validate(dumped) == spec


def test_register_is_the_wire_name_of_registration() -> None:
    raw = minimal_trainingrun() | {"register": {"model": "fraud-detector"}}
    spec = tr.TrainingRunSpec.model_validate(raw)
    assert spec.registration is not None and spec.registration.model == "fraud-detector"
    assert spec.to_dict()["register"]["model"] == "fraud-detector"


def test_status_serialises_times_as_rfc3339_and_ignores_unknown_fields() -> None:
    when = datetime(2025, 6, 1, 2, 0, tzinfo=UTC)
    status = tr.TrainingRunStatus(
        phase="Running",
        attempts=1,
        start_time=when,
        progress=tr.Progress(epoch=3, epochs=20, percent=15),
        key_metric=tr.KeyMetric(name="auc", value=0.91),
        conditions=[
            Condition(
                type="Ready",
                status="False",
                reason="Running",
                message="epoch 3/20",
                last_transition_time=when,
            )
        ],
    )
    dumped = status.to_dict()
    assert dumped["startTime"] == "2025-06-01T02:00:00Z"
    assert dumped["keyMetric"] == {"name": "auc", "value": 0.91}
    assert dumped["conditions"][0]["lastTransitionTime"] == "2025-06-01T02:00:00Z"
    # A status written by a newer operator (an unknown field) still reads.
    assert tr.TrainingRunStatus.model_validate(dumped | {"futureField": 1}).phase == "Running"


def test_condition_matches_metav1_shape() -> None:
    plain = {
        "type": "Ready",
        "status": "False",
        "reason": "InvalidSpec",
        "message": "spec.schedule: invalid cron expression",
        "lastTransitionTime": "2025-06-01T02:00:00Z",
        "observedGeneration": 3,
    }
    assert Condition.model_validate(plain).to_dict() == plain
    with pytest.raises(ValueError):
        Condition.model_validate(plain | {"status": "Maybe"})
    with pytest.raises(ValueError):
        Condition.model_validate(plain | {"reason": "not a reason"})


def test_resources_map_gpus_to_nvidia_limit() -> None:
    assert Resources(cpu="2", memory="4Gi", gpus=2).requirements() == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"memory": "4Gi", "nvidia.com/gpu": "2"},
    }
    assert "nvidia.com/gpu" not in Resources().requirements()["limits"]


@pytest.mark.parametrize("bad", ["2 cores", "-1", "4GB", 0.5, True])
def test_quantities_are_kubernetes_quantities(bad: Any) -> None:
    raw = minimal_trainingrun() | {"resources": {"cpu": bad}}
    error = spec_error("TrainingRun", raw)
    assert error.field_path == "spec.resources.cpu"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s", 30), ("15m", 900), ("1h30m", 5400), ("1.5h", 5400), ("7d", 604800), ("250ms", 0.25)],
)
def test_parse_duration(text: str, expected: float) -> None:
    assert parse_duration(text) == timedelta(seconds=expected)


@pytest.mark.parametrize("text", ["", "90", "1h 30m", "1w", "0s", "m5", "-5m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# -- semantic validators: each names its field ---------------------------------------------


def _set(spec: dict[str, Any], path: str, value: Any) -> None:
    """Set `a.b[1].c` in a nested dict/list; the value None deletes the key."""
    keys: list[str | int] = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]
    target: Any = spec
    for key in keys[:-1]:
        target = target[key]
    if value is None:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value


SEMANTIC_CASES = [
    # FeatureSet
    ("FeatureSet", {"schedule": "x"}, "spec.schedule", 'invalid cron expression "x": expected 5 fields'),
    ("FeatureSet", {"schedule": "0 0 2 * * *"}, "spec.schedule", "expected 5 fields"),
    ("FeatureSet", {"schedule": "61 * * * *"}, "spec.schedule", 'invalid cron expression "61 * * * *"'),
    ("FeatureSet", {"schedule": "0 2 L * *"}, "spec.schedule", "not supported by Kubernetes CronJobs"),
    ("FeatureSet", {"schedule": "@every 5m"}, "spec.schedule", "unknown macro"),
    ("FeatureSet", {"ttl": "1h 30m"}, "spec.ttl", 'invalid duration "1h 30m"'),
    ("FeatureSet", {"ttl": "90"}, "spec.ttl", "invalid duration"),
    (
        "FeatureSet",
        {"features[1].name": "amount_log"},
        "spec.features[1].name",
        'duplicated feature name "amount_log"',
    ),
    ("FeatureSet", {"entities": ["card_id", "card_id"]}, "spec.entities[1]", 'duplicated column "card_id"'),
    ("FeatureSet", {"features[0].name": "card_id"}, "spec.features[0].name", "collides with an entity"),
    (
        "FeatureSet",
        {"labelColumns": ["card_id"]},
        "spec.labelColumns[0]",
        "is an entity or the timestamp column",
    ),
    (
        "FeatureSet",
        {"source.format": None, "source.uri": "s3://b/rows/"},
        "spec.source.format",
        "cannot be inferred",
    ),
    (
        "FeatureSet",
        {"validation.columns[0].column": "amout"},
        "spec.validation.columns[0].column",
        'column "amout" is not read by this FeatureSet',
    ),
    (
        "FeatureSet",
        {"validation.columns[1].column": "amount"},
        "spec.validation.columns[1].column",
        "duplicated rule",
    ),
    (
        "FeatureSet",
        {"validation.columns[3].min": 100000},
        "spec.validation.columns[3].max",
        "must not be less than min",
    ),
    (
        "FeatureSet",
        {"features[0].transforms[1]": {"type": "clip"}},
        "spec.features[0].transforms[1].min",
        "clip needs",
    ),
    (
        "FeatureSet",
        {"features[0].transforms[1]": {"type": "clip", "min": 5, "max": 5}},
        "spec.features[0].transforms[1].max",
        "must be greater than min",
    ),
    (
        "FeatureSet",
        {"features[0].transforms[2]": {"type": "log1p", "min": 1}},
        "spec.features[0].transforms[2].min",
        "is not a parameter of log1p",
    ),
    (
        "FeatureSet",
        {"features[3].transforms[1].boundaries": [1, 10, 10, 200]},
        "spec.features[3].transforms[1].boundaries[2]",
        "must be greater than the previous edge",
    ),
    (
        "FeatureSet",
        {"features[3].transforms[1].numBuckets": 4},
        "spec.features[3].transforms[1].boundaries",
        "exactly one of boundaries or numBuckets",
    ),
    (
        "FeatureSet",
        {"features[4].transforms[1]": {"type": "hash"}},
        "spec.features[4].transforms[1].numBuckets",
        "needs",
    ),
    (
        "FeatureSet",
        {"features[3].transforms[0].value": None},
        "spec.features[3].transforms[0].value",
        "strategy constant needs exactly one of value or stringValue",
    ),
    (
        "FeatureSet",
        {"features[0].transforms[0].value": 1.0},
        "spec.features[0].transforms[0].value",
        "only used with strategy constant",
    ),
    (
        "FeatureSet",
        {"features[2].transforms[0].part": None},
        "spec.features[2].transforms[0].part",
        "needs a part",
    ),
    ("FeatureSet", {"resources.gpus": 1}, "spec.resources.gpus", "does not use GPUs"),
    # TrainingRun
    (
        "TrainingRun",
        {"resources.gpus": 1, "procsPerWorker": 2},
        "spec.procsPerWorker",
        "exceed resources.gpus (1)",
    ),
    (
        "TrainingRun",
        {"labels": {"uri": "s3://kubeloop-data/labels/*.parquet"}},
        "spec.labels.timestampColumn",
        "point-in-time join",
    ),
    ("TrainingRun", {"model.image": "example/trainer:1"}, "spec.model.family", "not both"),
    (
        "TrainingRun",
        {"model.family": None, "model.command": ["train"]},
        "spec.model.command",
        "only used with image",
    ),
    (
        "TrainingRun",
        {"hyperparameters.learningRate": 0},
        "spec.hyperparameters.learningRate",
        "greater than 0",
    ),
    ("TrainingRun", {"hyperparameters.lr": 0.1}, "spec.hyperparameters.lr", "unknown field"),
    (
        "TrainingRun",
        {"hyperparameters.hiddenLayers": [64, 0]},
        "spec.hyperparameters.hiddenLayers[1]",
        "greater than",
    ),
    (
        "TrainingRun",
        {"model.family": "linear"},
        "spec.hyperparameters.hiddenLayers",
        "must be empty for the linear",
    ),
    (
        "TrainingRun",
        {"tolerations": [{"key": "gpu", "operator": "Exists", "value": "yes"}]},
        "spec.tolerations[0].value",
        "must be empty when operator is Exists",
    ),
    (
        "TrainingRun",
        {"register.gates[1].metric": None},
        "spec.register.gates[1].metric",
        "the gate names no metric",
    ),
    # ModelVersion
    ("ModelVersion", {"gates[0].metric": None}, "spec.gates[0].metric", "required: the gate names no metric"),
    ("ModelVersion", {"gates[0].metric": " "}, "spec.gates[0].metric", "the gate names no metric"),
    (
        "ModelVersion",
        {"gates[2]": {"metric": "loss"}},
        "spec.gates[2].metric",
        "has neither min, max, minDeltaVsChampion",
    ),
    ("ModelVersion", {"gates[0].max": 0.5}, "spec.gates[0].max", "must not be less than min (0.7)"),
    (
        "ModelVersion",
        {"serving.rollout.steps": [10, 50, 50, 100]},
        "spec.serving.rollout.steps[2]",
        "steps must increase",
    ),
    ("ModelVersion", {"serving.rollout.steps": [10, 50]}, "spec.serving.rollout.steps", "must end at 100"),
    (
        "ModelVersion",
        {"serving.rollout.interval": "5 minutes"},
        "spec.serving.rollout.interval",
        "invalid duration",
    ),
    (
        "ModelVersion",
        {"serving.rollout.maxLatencyP99": "fast"},
        "spec.serving.rollout.maxLatencyP99",
        "invalid duration",
    ),
    ("ModelVersion", {"aliases": ["champion"]}, "spec.aliases[0]", "managed by the operator"),
    ("ModelVersion", {"aliases": ["staging", "staging"]}, "spec.aliases[1]", 'duplicated alias "staging"'),
    (
        "ModelVersion",
        {"serving.maxReplicas": 1, "serving.minReplicas": 2},
        "spec.serving.maxReplicas",
        "minReplicas (2)",
    ),
    # DriftMonitor
    (
        "DriftMonitor",
        {"modelVersionRef": {"name": "fraud-detector-1"}},
        "spec.modelVersionRef",
        "both are set",
    ),
    ("DriftMonitor", {"model": None}, "spec.modelVersionRef", "neither is set"),
    ("DriftMonitor", {"schedule": "every half hour"}, "spec.schedule", "invalid cron expression"),
    ("DriftMonitor", {"window": "1 day"}, "spec.window", 'invalid duration "1 day"'),
    ("DriftMonitor", {"retrain.cooldown": "12"}, "spec.retrain.cooldown", 'invalid duration "12"'),
    ("DriftMonitor", {"features": ["amount_log", "amount_log"]}, "spec.features[1]", "duplicated feature"),
    ("DriftMonitor", {"resources": {"gpus": 1}}, "spec.resources.gpus", "do not use GPUs"),
]


@pytest.mark.parametrize(("kind", "changes", "field", "message"), SEMANTIC_CASES)
def test_semantic_rule_names_the_field(kind: str, changes: dict[str, Any], field: str, message: str) -> None:
    spec = sample_spec(kind)
    for path, value in changes.items():
        _set(spec, path, value)
    error = spec_error(kind, spec)
    assert error.field_path == field, str(error)
    assert message in error.message, str(error)
    assert str(error).startswith(f"{field}: ")


def test_cron_message_reads_as_documented() -> None:
    spec = sample_spec("FeatureSet") | {"schedule": "x"}
    assert str(spec_error("FeatureSet", spec)).startswith('spec.schedule: invalid cron expression "x": ')


@pytest.mark.parametrize(
    "schedule", ["0 2 * * *", "*/15 * * * *", "0 2 * * MON-FRI", "0 0 1 1 ?", "@daily", "@hourly"]
)
def test_cron_accepts_what_cronjobs_accept(schedule: str) -> None:
    spec = sample_spec("FeatureSet") | {"schedule": schedule}
    assert parse_spec(fs.RESOURCE, spec).schedule == schedule  # type: ignore[attr-defined]


def test_retrain_copies_a_trainingrun_by_reference() -> None:
    spec = sample_spec("DriftMonitor")
    assert parse_spec(dm.RESOURCE, spec).retrain.template_ref is None  # type: ignore[attr-defined]
    spec["retrain"]["templateRef"] = {"name": "fraud-detector-template"}
    parsed = parse_spec(dm.RESOURCE, spec)
    assert isinstance(parsed, dm.DriftMonitorSpec) and parsed.retrain is not None
    assert (
        parsed.retrain.template_ref is not None
        and parsed.retrain.template_ref.name == "fraud-detector-template"
    )
    spec["retrain"]["templateRef"] = {"name": "Not_A_Name"}
    assert spec_error("DriftMonitor", spec).field_path == "spec.retrain.templateRef.name"


def test_modelversion_spec_extends_the_registration_template() -> None:
    # What TrainingRun.register creates is a ModelVersion spec minus trainingRunRef.
    template_fields = set(tr.ModelVersionTemplate.model_fields)
    assert template_fields | {"training_run_ref"} == set(mv.ModelVersionSpec.model_fields)
    assert mv.Gate is tr.ModelVersionTemplate.model_fields["gates"].annotation.__args__[0]  # type: ignore[union-attr]


def test_several_errors_are_all_reported() -> None:
    spec = sample_spec("DriftMonitor") | {"window": "soon", "schedule": "x"}
    spec["retrain"]["cooldown"] = "later"
    error = spec_error("DriftMonitor", spec)
    paths = [path for path, _ in error.errors]
    assert set(paths) == {"spec.window", "spec.schedule", "spec.retrain.cooldown"}
    for path in paths:
        assert f"{path}: " in str(error)
    assert str(error).count("; ") == 2


def test_schema_level_problems_also_name_the_field() -> None:
    spec = minimal_trainingrun() | {"workers": 0, "colour": "blue"}
    del spec["target"]
    error = spec_error("TrainingRun", spec)
    messages = dict(error.errors)
    assert messages["spec.workers"].startswith("Input should be greater than or equal to 1")
    assert messages["spec.colour"] == "unknown field"
    assert messages["spec.target"] == "required value"


def test_missing_spec() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(tr.RESOURCE, None)
    assert str(caught.value) == "spec: required value"


def test_python_names_in_input_are_reported_by_their_yaml_names() -> None:
    # Callers may build specs from snake_case (populate_by_name); paths still read as YAML.
    spec = {
        "feature_set_ref": {"name": "x"},
        "target": "y",
        "model": {"task": "classification"},
        "procs_per_worker": 0,
    }
    assert spec_error("TrainingRun", spec).field_path == "spec.procsPerWorker"


# -- reasons --------------------------------------------------------------------------------

# core.reconcile writes Accepted/Ready with InvalidSpec, SpecValid, Pending and Ready for
# every kind; each kind's enums must document them too.
COMMON_REASONS = {"InvalidSpec", "Reconciling", "SpecValid", "Pending", "Ready"}
REQUIRED_REASONS = {
    "FeatureSet": {"InvalidSpec", "Reconciling", "ContractViolated", "Materialized", "VersionAvailable"},
    "TrainingRun": {
        "InvalidSpec",
        "Reconciling",
        "FeatureSetNotReady",
        "BackoffLimitExceeded",
        "DeadlineExceeded",
        "SpecImmutable",
        "Succeeded",
    },
    "ModelVersion": {
        "InvalidSpec",
        "Reconciling",
        "GatesFailed",
        "GatesPassed",
        "ArtifactDigestMismatch",
        "Promoted",
    },
    "DriftMonitor": {
        "InvalidSpec",
        "Reconciling",
        "InsufficientSamples",
        "DriftDetected",
        "NoDrift",
        "RetrainCooldown",
    },
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_reasons_are_valid_documented_and_complete(kind: str) -> None:
    module = KINDS[kind]
    values = {member.value for member in module.Reason}
    assert REQUIRED_REASONS[kind] | COMMON_REASONS <= values
    assert {"Ready", "Accepted"} <= {member.value for member in module.ConditionType}
    for enum in (module.Reason, module.ConditionType):
        for member in enum:
            assert re.fullmatch(CONDITION_REASON_PATTERN, member.value), member
            assert member.name == re.sub(r"(?<!^)(?=[A-Z])", "_", member.value).upper(), member
        assert _undocumented_members(enum) == []


def _undocumented_members(enum: type) -> list[str]:
    """Enum members whose assignment is not followed by a docstring line."""
    body = ast.parse(inspect.getsource(enum)).body[0]
    assert isinstance(body, ast.ClassDef)
    missing = []
    for statement, following in zip(body.body, [*body.body[1:], None], strict=True):
        if isinstance(statement, ast.Assign):
            documented = (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
                and following.value.value.strip()
            )
            if not documented:
                missing.append(ast.unparse(statement.targets[0]))
    return missing


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_spec_and_status_field_has_a_description(kind: str) -> None:
    resource = KINDS[kind].RESOURCE
    missing: list[str] = []

    def walk(model: Any, where: str) -> None:
        for name, info in model.model_fields.items():
            if not (info.description or "").strip():
                missing.append(f"{where}.{info.alias or name}")
        for info in model.model_fields.values():
            nested = _models_in(info.annotation)
            for child in nested:
                walk(child, f"{where}.{child.__name__}")

    walk(resource.spec_model, "spec")
    walk(resource.status_model, "status")
    assert missing == []


def _models_in(annotation: Any) -> list[type]:
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]
