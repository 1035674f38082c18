"""kopf glue for TrainingRun: validate, reconcile, write status (see core.reconcile)."""

from __future__ import annotations

from typing import Any

import kopf

from kubeloop.core.reconcile import Observed, accepted_status, register_reconciler
from kubeloop.trainingrun.api import RESOURCE


def reconcile(spec: Any, observed: Observed) -> dict[str, Any]:
    return accepted_status(observed.status, observed, waiting_for="waiting for the training Job to start")


def register(registry: kopf.OperatorRegistry) -> None:
    register_reconciler(registry, RESOURCE, reconcile)
