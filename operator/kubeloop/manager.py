"""Run the kubeloop operator: kopf with kubeloop's handlers, settings, health and metrics."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

import kopf

from kubeloop.core.kube import KubeClient
from kubeloop.core.metrics import OPERATOR_METRICS
from kubeloop.core.reconcile import Reconcilable, Runtime, resync_all
from kubeloop.core.settings import Settings
from kubeloop.driftmonitor import handlers as driftmonitor_handlers
from kubeloop.featureset import handlers as featureset_handlers
from kubeloop.modelversion import handlers as modelversion_handlers
from kubeloop.trainingrun import handlers as trainingrun_handlers

ROOMS = (featureset_handlers, trainingrun_handlers, modelversion_handlers, driftmonitor_handlers)
ANNOTATION_PREFIX = "kubeloop.dev"
log = logging.getLogger("kubeloop.manager")


def reconcilables() -> list[Reconcilable]:
    return [Reconcilable(room.RESOURCE, room.reconcile) for room in ROOMS]


def build_registry(operator_settings: Settings) -> kopf.OperatorRegistry:
    """A registry with every kind's handlers; explicit, so tests can build several."""
    registry = kopf.OperatorRegistry()
    for room in ROOMS:
        room.register(registry)

    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod: the ServiceAccount; locally: the kubeconfig named by KUBECONFIG.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings, operator_settings)

    kopf.on.login(registry=registry)(login)
    kopf.on.startup(registry=registry)(configure)
    return registry


def configure_kopf(kopf_settings: kopf.OperatorSettings, settings: Settings) -> None:
    kopf_settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
    kopf_settings.execution.max_workers = settings.max_workers
    # Events for what users must see (InvalidSpec ...) are posted explicitly; mirroring
    # every log line as an Event costs ~26% throughput (docs/performance.md).
    kopf_settings.posting.enabled = settings.post_events
    kopf_settings.posting.level = logging.WARNING
    kopf_settings.watching.server_timeout = 300
    kopf_settings.watching.client_timeout = 330
    kopf_settings.networking.request_timeout = 30


class Resyncer(threading.Thread):
    """Every `resync_seconds`, reconcile every object once more (the periodic half of the
    level-triggered reconcile; kopf handles the event-driven half)."""

    def __init__(self, settings: Settings, stop: threading.Event) -> None:
        super().__init__(name="kubeloop-resync", daemon=True)
        self.settings = settings
        self.stop = stop

    def run(self) -> None:
        client = KubeClient.connect(self.settings.kubeconfig, field_manager=self.settings.field_manager)
        items = reconcilables()
        try:
            while not self.stop.wait(self.settings.resync_seconds):
                try:
                    written = resync_all(client, items, self.settings.namespaces)
                    log.debug("resync pass wrote %d statuses", written)
                except Exception:  # one failed pass must not end resyncing; the next pass retries
                    log.exception("resync pass failed; retrying in %.0fs", self.settings.resync_seconds)
        finally:
            client.close()


def run(settings: Settings, *, stop_flag: threading.Event | None = None,
        ready_flag: threading.Event | None = None) -> None:
    """Run the operator until interrupted (or until `stop_flag` is set)."""
    if settings.kubeconfig:
        os.environ["KUBECONFIG"] = settings.kubeconfig
    OPERATOR_METRICS.serve(settings.metrics_address, settings.metrics_port)
    registry = build_registry(settings)
    Runtime.install(Runtime(KubeClient.connect(settings.kubeconfig, field_manager=settings.field_manager),
                            settings))
    stop_resync = threading.Event()
    Resyncer(settings, stop_resync).start()
    liveness = f"http://{settings.health_address}:{settings.health_port}/healthz"
    asyncio.run(kopf.operator(
        registry=registry,
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        standalone=settings.peering_name is None,
        peering_name=settings.peering_name,
        liveness_endpoint=liveness,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    ))
    stop_resync.set()
