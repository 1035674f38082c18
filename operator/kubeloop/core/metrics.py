"""Prometheus metrics of the operator, on their own registry (served at /metrics).

A private registry keeps tests and embedded use (several operators in one process in
benchmarks) from colliding on the global default registry.
"""

from __future__ import annotations

import threading
from collections import Counter as _Tally
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
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


MonitorKey = tuple[str, str]
"""(namespace, monitor) of a DriftMonitor."""


class DriftTracker(Collector):
    """The DriftMonitors' figures, as the operator last read them from their newest check:

    - `kubeloop_drift_share{namespace,monitor}`: fraction of tested features that drifted;
    - `kubeloop_drift_detected{namespace,monitor}`: 1 when the last check found drift, else 0;
    - `kubeloop_drift_feature_statistic{namespace,monitor,feature,method}`: each test statistic;
    - `kubeloop_drift_checks_total{namespace,monitor,verdict}`: checks seen, once each;
    - `kubeloop_retrains_total{namespace,monitor}`: retraining TrainingRuns created.

    Read at scrape time from what reconciles recorded; `forget` removes every series of a
    deleted monitor (a Gauge's children would otherwise report it forever).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._share: dict[MonitorKey, float] = {}
        self._detected: dict[MonitorKey, int] = {}
        self._statistics: dict[MonitorKey, dict[tuple[str, str], float]] = {}
        self._checks: dict[MonitorKey, dict[str, int]] = {}
        self._counted: dict[MonitorKey, str] = {}
        self._retrains: dict[MonitorKey, int] = {}

    def observe_check(self, namespace: str, monitor: str, *, drift_share: float | None, drifted: bool | None,
                      statistics: dict[tuple[str, str], float]) -> None:
        """Record the newest check's figures (None: the check gave no verdict)."""
        key = (namespace, monitor)
        with self._lock:
            if drift_share is None:
                self._share.pop(key, None)
            else:
                self._share[key] = drift_share
            if drifted is None:
                self._detected.pop(key, None)
            else:
                self._detected[key] = int(drifted)
            self._statistics[key] = dict(statistics)

    def count_check(self, namespace: str, monitor: str, check_id: str, verdict: str) -> bool:
        """Count check `check_id` unless it was counted already (by another pass over the same
        result); True if counted now."""
        key = (namespace, monitor)
        with self._lock:
            if self._counted.get(key) == check_id:
                return False
            self._counted[key] = check_id
            verdicts = self._checks.setdefault(key, {})
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
            return True

    def count_retrain(self, namespace: str, monitor: str) -> None:
        key = (namespace, monitor)
        with self._lock:
            self._retrains[key] = self._retrains.get(key, 0) + 1

    def forget(self, namespace: str, monitor: str) -> None:
        key = (namespace, monitor)
        with self._lock:
            for table in (self._share, self._detected, self._statistics, self._checks, self._counted,
                          self._retrains):
                table.pop(key, None)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["namespace", "monitor"]
        share = GaugeMetricFamily("kubeloop_drift_share",
                                  "Fraction of tested features that drifted in the last check", labels=labels)
        detected = GaugeMetricFamily("kubeloop_drift_detected",
                                     "1 when the last check found dataset-level drift, else 0", labels=labels)
        statistic = GaugeMetricFamily("kubeloop_drift_feature_statistic",
                                      "Test statistic of one feature in the last check",
                                      labels=[*labels, "feature", "method"])
        checks = CounterMetricFamily("kubeloop_drift_checks", "Drift checks seen by the operator, by verdict",
                                     labels=[*labels, "verdict"])
        retrains = CounterMetricFamily("kubeloop_retrains", "Retraining TrainingRuns created by DriftMonitors",
                                       labels=labels)
        with self._lock:
            for key, value in sorted(self._share.items()):
                share.add_metric(list(key), value)
            for key, flag in sorted(self._detected.items()):
                detected.add_metric(list(key), flag)
            for key, figures in sorted(self._statistics.items()):
                for (feature, method), value in sorted(figures.items()):
                    statistic.add_metric([*key, feature, method], value)
            for key, verdicts in sorted(self._checks.items()):
                for verdict, count in sorted(verdicts.items()):
                    checks.add_metric([*key, verdict], count)
            for key, count in sorted(self._retrains.items()):
                retrains.add_metric(list(key), count)
        yield from (share, detected, statistic, checks, retrains)


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
        self.drift = DriftTracker()
        self.registry.register(self.drift)

    def serve(self, address: str, port: int) -> None:
        """Start the /metrics HTTP endpoint in a daemon thread."""
        start_http_server(port, addr=address, registry=self.registry)


# The operator process has one set of metrics; handlers import it from here.
OPERATOR_METRICS = OperatorMetrics()
