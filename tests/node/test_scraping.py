"""Prometheus discovery of annotated pods on the local node (local/node/scraping.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubeloop.local.node.scraping import scrape_target, target_file


def pod(*, annotations: dict[str, str] | None = None, ready: bool = True, ports: list[int] | None = None,
        deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "fraud-predictor-00001-deployment-abcde", "namespace": "ml",
                            "labels": {"serving.kserve.io/inferenceservice": "fraud", "app": "x"},
                            "annotations": annotations if annotations is not None else {
                                "prometheus.io/scrape": "true", "prometheus.io/port": "8080"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-27T00:00:00Z"
    return {"metadata": meta,
            "spec": {"containers": [{"name": "kserve-container",
                                     "ports": [{"containerPort": p} for p in (ports or [41234])]}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_a_ready_annotated_pod_is_scraped_on_its_moved_port_with_its_labels():
    document = scrape_target(pod())
    assert document == [{"targets": ["127.0.0.1:41234"], "labels": {
        "job": "kubernetes-pods", "namespace": "ml", "pod": "fraud-predictor-00001-deployment-abcde",
        "pod_label_serving_kserve_io_inferenceservice": "fraud", "pod_label_app": "x"}}]


def test_the_annotated_port_is_used_when_the_pod_declares_it():
    document = scrape_target(pod(ports=[9000, 8080]))
    assert document is not None and document[0]["targets"] == ["127.0.0.1:8080"]


def test_a_custom_metrics_path_is_kept():
    document = scrape_target(pod(annotations={"prometheus.io/scrape": "true", "prometheus.io/path": "/stats"}))
    assert document is not None and document[0]["labels"]["__metrics_path__"] == "/stats"


def test_unannotated_unready_or_terminating_pods_are_not_scraped():
    assert scrape_target(pod(annotations={})) is None
    assert scrape_target(pod(annotations={"prometheus.io/scrape": "false"})) is None
    assert scrape_target(pod(ready=False)) is None
    assert scrape_target(pod(deleting=True)) is None


def test_one_targets_file_per_pod(tmp_path: Path):
    assert target_file(tmp_path, pod()) == tmp_path / "pod-ml-fraud-predictor-00001-deployment-abcde.json"
