"""Prometheus scraping of annotated pods on the local node, as a cluster's Prometheus does.

On a cluster, Prometheus discovers pods through the Kubernetes API (`kubernetes_sd_configs`,
role pod) and keeps those annotated `prometheus.io/scrape: "true"`, scraping
`prometheus.io/port` and `prometheus.io/path`. The local Prometheus cannot reach the API server's
pods that way, so this controller plays the discovery: for every Running, Ready pod of this node
with the annotation it writes one file_sd file `pod-<namespace>-<name>.json` into the
Prometheus targets folder (`NodeSettings.prometheus_targets_dir`), labelled `namespace`, `pod`
and the pod's own labels as the usual relabelling gives them, and removes the file when the
pod stops being ready or is deleted. Prometheus picks files up through inotify: no restart.

Locally, containers share the loopback, and Knative's `$PORT` moves a serving container to a
free port (see inferenceservices.py): the target port is `prometheus.io/port` when a container
declares that port, otherwise the pod's first declared containerPort (the moved one).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubeloop.local.node.client import Informer, NodeClient
from kubeloop.local.node.settings import NodeSettings
from kubeloop.local.prometheus import file_sd_document, write_atomically

log = logging.getLogger("kubeloop.local.node.scraping")

PODS = "/api/v1/pods"
SCRAPE = "prometheus.io/scrape"
PORT = "prometheus.io/port"
PATH = "prometheus.io/path"
JOB = "kubernetes-pods"
_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


def _ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def _declared_ports(pod: Mapping[str, Any]) -> list[int]:
    return [int(port["containerPort"]) for container in (pod.get("spec") or {}).get("containers") or []
            for port in container.get("ports") or [] if port.get("containerPort")]


def scrape_target(pod: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The file_sd document for `pod`, or None when it is not to be scraped (now)."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if str(annotations.get(SCRAPE, "")).lower() != "true" or not _ready(pod) or meta.get("deletionTimestamp"):
        return None
    declared = _declared_ports(pod)
    wanted = str(annotations.get(PORT, ""))
    port = int(wanted) if wanted.isdigit() and int(wanted) in declared else (declared[0] if declared else None)
    if port is None:
        return None
    labels = {f"pod_label_{_LABEL_CHARS.sub('_', k)}": str(v) for k, v in (meta.get("labels") or {}).items()}
    labels.update({"namespace": str(meta.get("namespace", "")), "pod": str(meta.get("name", ""))})
    path = str(annotations.get(PATH) or "/metrics")
    if path != "/metrics":
        labels["__metrics_path__"] = path
    return file_sd_document(JOB, [f"127.0.0.1:{port}"], labels)


def target_file(targets_dir: Path, pod: Mapping[str, Any]) -> Path:
    meta = pod.get("metadata") or {}
    return targets_dir / f"pod-{meta.get('namespace', '')}-{meta.get('name', '')}.json"


class ScrapeTargetController:
    """Keeps the Prometheus targets folder in step with the scrape-annotated pods."""

    def __init__(self, client: NodeClient, settings: NodeSettings) -> None:
        self.settings = settings
        self.pods = Informer(client, PODS)

    async def run(self) -> None:
        targets_dir = self.settings.prometheus_targets_dir
        if targets_dir is None:
            log.info("no Prometheus targets folder: pods are not scraped")
            # A controller that returns stops the node (run_node): idle until the node stops.
            await asyncio.Event().wait()
            return
        targets_dir.mkdir(parents=True, exist_ok=True)
        async for event, pod in self.pods.events():
            path = target_file(targets_dir, pod)
            document = None if event == "DELETED" else scrape_target(pod)
            if document is None:
                if path.exists():
                    path.unlink(missing_ok=True)
                    log.info("stopped scraping pod %s", path.stem)
                continue
            text = json.dumps(document, indent=2, sort_keys=True) + "\n"
            if not path.exists() or path.read_text() != text:
                write_atomically(path, text)
                log.info("scraping pod %s at %s", path.stem, document[0]["targets"][0])
