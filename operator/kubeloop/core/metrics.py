"""Prometheus metrics of the operator, on their own registry (served at /metrics).

A private registry keeps tests and embedded use (several operators in one process in
benchmarks) from colliding on the global default registry.
"""

from __future__ import annotations

import threading
from collections import Counter as _Tally
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class PhaseTracker(Collector):
    """Counts resources by kind and phase (`kubeloop_resources{kind,phase}`).

    Fed from kopf event handlers (which also see deletions), read at scrape time, so
    the gauge never drifts from what the operator has seen.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[tuple[str, str, str], str] = {}

    def observe(self, kind: str, namespace: str, name: str, phase: str | None) -> None:
        with self._lock:
            self._phases[(kind, namespace, name)] = phase or "Unknown"

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._phases.pop((kind, namespace, name), None)

    def counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(_Tally((kind, phase) for (kind, _, _), phase in self._phases.items()))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "kubeloop_resources", "kubeloop custom resources by kind and phase", labels=["kind", "phase"])
        for (kind, phase), count in sorted(self.counts().items()):
            family.add_metric([kind, phase], count)
        yield family


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciles = Counter(
            "kubeloop_reconciles", "Reconcile passes by kind and result (ok, invalid, retry, error)",
            ["kind", "result"], registry=self.registry)
        self.reconcile_duration = Histogram(
            "kubeloop_reconcile_duration_seconds", "Time spent in one reconcile pass", ["kind"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry)
        self.phases = PhaseTracker()
        self.registry.register(self.phases)

    def serve(self, address: str, port: int) -> None:
        """Start the /metrics HTTP endpoint in a daemon thread."""
        start_http_server(port, addr=address, registry=self.registry)


# The operator process has one set of metrics; handlers import it from here.
OPERATOR_METRICS = OperatorMetrics()
