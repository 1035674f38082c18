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

Runs inside the trainer pod (and the model server): torch and the standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

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
