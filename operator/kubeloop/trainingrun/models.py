"""The built-in model families of the trainer: a registry from family name to a builder.

A family turns (number of inputs, number of outputs, `Hyperparameters`) into a `torch.nn.Module`
that maps a float32 batch `[n, inputs]` to raw scores `[n, outputs]` (logits for
classification, values for regression). What the outputs mean and how they are scored is the
task's `Objective`, independent of the family, so adding a family is one decorated function:

    @register_family("wide")
    def _wide(inputs: int, outputs: int, hp: Hyperparameters) -> nn.Module:
        return nn.Sequential(nn.Linear(inputs, 1024), nn.ReLU(), nn.Linear(1024, outputs))

(and the name added to `api.ModelFamily`, the CRD's enum). Families use `nn.Sequential`, so the
state-dict keys in `model.pt` are stable (`0.weight`, `0.bias`, ...) and the server rebuilds the
same module from `model.json` with `build_model`.

Objectives (`objective_for`):
- binary classification (2 classes): 1 output, `BCEWithLogitsLoss`; probability = sigmoid;
- multiclass (> 2 classes): one output per class, `CrossEntropyLoss`; probabilities = softmax;
- regression: 1 output, `MSELoss`.

`input_matrix` turns a table of features into the float32 matrix a model takes; the trainer and
the model server both call it, so what a model saw in training is what it sees when serving.
`input_rows` is its row form for the server's small requests (the same values, tested bit for bit).

Runs inside the trainer pod and the model server: torch, numpy and pyarrow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

from kubeloop.trainingrun.api import Hyperparameters, Task

FamilyBuilder = Callable[[int, int, Hyperparameters], nn.Module]

_FAMILIES: dict[str, FamilyBuilder] = {}


def register_family(name: str) -> Callable[[FamilyBuilder], FamilyBuilder]:
    """Decorator: register a builder under `name` (a second registration of a name is an error)."""
    def register(builder: FamilyBuilder) -> FamilyBuilder:
        if name in _FAMILIES:
            raise ValueError(f"model family {name!r} is already registered")
        _FAMILIES[name] = builder
        return builder
    return register


def families() -> tuple[str, ...]:
    """Names of the registered families."""
    return tuple(sorted(_FAMILIES))


def build_model(family: str, *, inputs: int, outputs: int, hyperparameters: Hyperparameters) -> nn.Module:
    """A fresh module of `family`; ValueError naming the known families for an unknown one."""
    try:
        builder = _FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r} (known: {', '.join(families())})") from None
    if inputs < 1 or outputs < 1:
        raise ValueError(f"a model needs at least one input and one output (got {inputs} and {outputs})")
    return builder(inputs, outputs, hyperparameters)


@register_family("mlp")
def _mlp(inputs: int, outputs: int, hp: Hyperparameters) -> nn.Module:
    """Fully connected layers of `hiddenLayers` widths with ReLU (and dropout when > 0)."""
    layers: list[nn.Module] = []
    width = inputs
    for hidden in hp.hidden_layers:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if hp.dropout > 0:
            layers.append(nn.Dropout(hp.dropout))
        width = hidden
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


@register_family("linear")
def _linear(inputs: int, outputs: int, hp: Hyperparameters) -> nn.Module:
    """Logistic / softmax / linear regression: one affine layer (hiddenLayers is ignored)."""
    return nn.Sequential(nn.Linear(inputs, outputs))


def build_optimizer(parameters: Iterable[nn.Parameter], hp: Hyperparameters) -> torch.optim.Optimizer:
    """The optimizer `hp.optimizer` names: adam, adamw (decoupled weight decay) or sgd (momentum 0.9)."""
    params = list(parameters)
    if hp.optimizer == "adam":
        return torch.optim.Adam(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
    if hp.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
    if hp.optimizer == "sgd":
        return torch.optim.SGD(params, lr=hp.learning_rate, momentum=0.9, weight_decay=hp.weight_decay)
    raise ValueError(f"unknown optimizer {hp.optimizer!r}")  # unreachable: the model's Literal


@dataclass(frozen=True)
class Objective:
    """What a task's model outputs mean: output width, loss, and how targets are encoded.

    `kind` is binary, multiclass or regression. Targets reach the loss as float32 `[n, 1]`
    (binary: 0/1, regression: values) or int64 `[n]` class indices (multiclass).
    """

    kind: str
    outputs: int

    def loss(self) -> nn.Module:
        """Mean loss over a batch (sum it yourself with `reduction` for exact averages across ranks)."""
        return self.loss_with(reduction="mean")

    def loss_with(self, *, reduction: str) -> nn.Module:
        if self.kind == "binary":
            return nn.BCEWithLogitsLoss(reduction=reduction)
        if self.kind == "multiclass":
            return nn.CrossEntropyLoss(reduction=reduction)
        return nn.MSELoss(reduction=reduction)

    def targets(self, values: torch.Tensor) -> torch.Tensor:
        """Encoded targets (from class indices or regression values as float) for the loss."""
        if self.kind == "multiclass":
            return values.to(torch.int64).reshape(-1)
        return values.to(torch.float32).reshape(-1, 1)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """Probabilities (binary: of class 1, `[n]`; multiclass: `[n, classes]`) or predictions `[n]`."""
        outputs = outputs.float()
        if self.kind == "binary":
            return torch.sigmoid(outputs).reshape(-1)
        if self.kind == "multiclass":
            return torch.softmax(outputs, dim=1)
        return outputs.reshape(-1)


def objective_for(task: Task, classes: int | None) -> Objective:
    """The objective of `task`; classification needs the number of classes (at least 2)."""
    if task == "regression":
        return Objective("regression", 1)
    if classes is None or classes < 2:
        raise ValueError(f"classification needs at least 2 classes in the target, found {classes or 0}")
    return Objective("binary", 1) if classes == 2 else Objective("multiclass", classes)


class UnsupportedFeatureType(ValueError):
    """A feature whose Arrow type a model cannot take as numbers (a string, a timestamp ...)."""

    def __init__(self, feature: str, type_: pa.DataType) -> None:
        self.feature = feature
        self.type = type_
        super().__init__(
            f"feature {feature!r} has type {type_}, which a {'{'}mlp, linear{'}'} model cannot take: give it a "
            "vocabulary, hash or datetime transform in the FeatureSet")


def _numeric_block(name: str, column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, bool, dict[str, Any]]:
    """A feature's values as float64 `[n, width]`, whether its non-finite values become 0 (plain
    numbers: yes; vectors: no), and its input description. Nulls are 0."""
    array = column.chunk(0) if isinstance(column, pa.ChunkedArray) and column.num_chunks == 1 else column
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind) \
            or pa.types.is_decimal(kind):
        values = _as_float64(array)  # nulls become NaN, hence 0
        return values.reshape(-1, 1), True, {"name": name, "dtype": str(kind), "width": 1}
    if pa.types.is_fixed_size_list(kind) and (pa.types.is_floating(kind.value_type)
                                              or pa.types.is_integer(kind.value_type)):
        width = kind.list_size
        if array.null_count:
            array = pc.fill_null(array, pa.scalar([0] * width, type=kind))
        flat = array.flatten()
        if flat.null_count:
            flat = pc.cast(flat, pa.float64()).fill_null(0.0)
        return _as_float64(flat).reshape(-1, width), False, {"name": name, "dtype": str(kind), "width": width}
    raise UnsupportedFeatureType(name, kind)


_EXACT_INTEGERS = 2**53  # integers a float64 holds exactly: Arrow's safe cast refuses others


def _as_float64(array: pa.Array) -> np.ndarray:
    """A number or boolean array as float64 numpy values, nulls as NaN: Arrow's safe cast to
    float64. Without nulls the conversion is numpy's (the same round-to-nearest values) on the
    zero-copy view, which for the model server's one-row tables costs a fraction of a cast."""
    kind = array.type
    if array.null_count == 0 and not pa.types.is_decimal(kind):
        values = array.to_numpy(zero_copy_only=False)
        if kind == pa.float64():
            return values
        if not (pa.types.is_int64(kind) or pa.types.is_uint64(kind)) or len(values) == 0 or (
                values.min() >= -_EXACT_INTEGERS and values.max() <= _EXACT_INTEGERS):
            return values.astype(np.float64)
    if kind != pa.float64():
        array = pc.cast(array, pa.float64())
    return array.to_numpy(zero_copy_only=False)


def feature_block(name: str, column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, dict[str, Any]]:
    """The float32 columns `[n, width]` one feature contributes, and its input description.

    Numbers and booleans give one column, fixed-size lists of numbers (oneHot) one per element.
    Missing values become 0, and so do NaN and infinities of plain numbers: a model cannot take
    NaN, and the FeatureSet's fillNull is where a deliberate fill belongs. Raises
    `UnsupportedFeatureType` for other types (a string, a timestamp ...).
    """
    values, finite, description = _numeric_block(name, column)
    if finite:
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    return values.astype(np.float32), description


def input_rows(rows: Sequence[Sequence[Any]], widths: Sequence[int | None]) -> list[list[float]] | None:
    """`input_matrix`'s rows, as Python floats, from the feature values of a few rows as
    `transforms.apply_rows` gives them (one value per feature in input order; `widths[i]` is None
    for a plain number or boolean, the length of a oneHot vector otherwise): nulls, NaN and
    infinities of numbers are 0, a null vector is zeros. Cast to float32 (`torch.tensor(...,
    dtype=torch.float32)`, the same rounding as numpy's) they are `input_matrix`'s values bit for
    bit. None for an integer a float64 cannot hold exactly, which `input_matrix` refuses with
    its own error."""
    matrix = []
    for values in rows:
        row: list[float] = []
        for value, width in zip(values, widths, strict=True):
            if type(value) is float:  # most features: finite as it is, else 0 (x - x is NaN for inf, NaN)
                row.append(value if value - value == 0.0 else 0.0)
            elif width is not None:
                row.extend(value if value is not None else [0.0] * width)
            elif value is None:
                row.append(0.0)
            else:
                if type(value) is int and not -_EXACT_INTEGERS <= value <= _EXACT_INTEGERS:
                    return None
                number = float(value)
                row.append(number if math.isfinite(number) else 0.0)
        matrix.append(row)
    return matrix


_MATRIX_ROWS = 65_536  # rows gathered in float64 at a time: bounds the trainer's extra memory


def input_matrix(table: pa.Table, names: Sequence[str]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The contiguous float32 matrix `[rows, inputWidth]` of the features `names` (in that order,
    each as `feature_block` encodes it) and the inputs' descriptions (`model.json` `inputs`).

    The model server calls this for every request, so the blocks of a slice of rows are gathered
    in float64 and cleaned and cast once rather than once per feature; the values are exactly
    `feature_block`'s (non-finite -> 0 in float64 first, then one cast to float32). Slices of
    `_MATRIX_ROWS` keep the float64 copy small for the trainer's millions of rows."""
    out: np.ndarray | None = None
    inputs: list[dict[str, Any]] = []
    for start in range(0, max(table.num_rows, 1), _MATRIX_ROWS):
        part = table if table.num_rows <= _MATRIX_ROWS else table.slice(start, _MATRIX_ROWS)
        blocks, finite, inputs = [], [], []
        for name in names:
            values, clean, description = _numeric_block(name, part.column(name))
            blocks.append(values)
            finite.extend([clean] * values.shape[1])
            inputs.append(description)
        if out is None:
            out = np.empty((table.num_rows, len(finite)), dtype=np.float32)
        if not blocks:
            break
        matrix = np.concatenate(blocks, axis=1)
        # nan_to_num(nan=0, posinf=0, neginf=0), without its per-call overhead.
        if all(finite):
            matrix[~np.isfinite(matrix)] = 0.0
        elif any(finite):
            columns = np.flatnonzero(finite)
            block = matrix[:, columns]
            block[~np.isfinite(block)] = 0.0
            matrix[:, columns] = block
        with np.errstate(over="ignore"):  # beyond float32's range is inf, as a cast gives it, not a warning
            out[start:start + part.num_rows] = matrix  # the float64 -> float32 cast, as astype does it
    assert out is not None
    return out, inputs
