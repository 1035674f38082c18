"""The model family registry and the task objectives."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kubeloop.trainingrun import models
from kubeloop.trainingrun.api import Hyperparameters


def test_builtin_families_are_registered_and_build_the_widths_asked_for():
    assert {"mlp", "linear"} <= set(models.families())
    hp = Hyperparameters(hidden_layers=[7, 5], dropout=0.2)
    mlp = models.build_model("mlp", inputs=3, outputs=4, hyperparameters=hp)
    linears = [m for m in mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3, 7), (7, 5), (5, 4)]
    assert sum(isinstance(m, nn.Dropout) for m in mlp) == 2
    linear = models.build_model("linear", inputs=3, outputs=1, hyperparameters=hp)
    assert list(linear.state_dict()) == ["0.weight", "0.bias"]


def test_a_new_family_is_one_decorated_function():
    name = "test-wide"

    @models.register_family(name)
    def _wide(inputs: int, outputs: int, hp: Hyperparameters) -> nn.Module:
        return nn.Sequential(nn.Linear(inputs, 32), nn.ReLU(), nn.Linear(32, outputs))

    try:
        model = models.build_model(name, inputs=2, outputs=3, hyperparameters=Hyperparameters())
        assert model(torch.zeros(5, 2)).shape == (5, 3)
        with pytest.raises(ValueError, match="already registered"):
            models.register_family(name)(_wide)
    finally:
        models._FAMILIES.pop(name)
    with pytest.raises(ValueError, match="known: linear, mlp"):
        models.build_model(name, inputs=2, outputs=3, hyperparameters=Hyperparameters())


@pytest.mark.parametrize(("task", "classes", "kind", "outputs"), [
    ("classification", 2, "binary", 1), ("classification", 5, "multiclass", 5), ("regression", None, "regression", 1),
])
def test_objectives(task, classes, kind, outputs):
    objective = models.objective_for(task, classes)
    assert (objective.kind, objective.outputs) == (kind, outputs)
    scores = objective.scores(torch.zeros(4, outputs))
    assert scores.shape == ((4, outputs) if kind == "multiclass" else (4,))
    loss = objective.loss()(torch.zeros(4, outputs), objective.targets(torch.ones(4)))
    assert loss.ndim == 0


def test_classification_needs_two_classes():
    with pytest.raises(ValueError, match="at least 2 classes"):
        models.objective_for("classification", 1)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_optimizers(name):
    model = nn.Linear(2, 1)
    optimizer = models.build_optimizer(model.parameters(), Hyperparameters(optimizer=name, learning_rate=0.1))
    assert optimizer.param_groups[0]["lr"] == 0.1
