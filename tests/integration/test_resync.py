"""The periodic half of the level-triggered reconcile, against the local API server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from kubeloop.core.kube import KubeClient
from kubeloop.core.reconcile import Reconcilable, resync_all, resync_object
from kubeloop.featureset import handlers as featureset_handlers
from kubeloop.featureset.api import RESOURCE as FEATURESET
from tests.conftest import KubectlCLI
from tests.integration.test_operator_kubectl import sample

pytestmark = pytest.mark.integration


@pytest.fixture()
def client(apiserver: Any) -> Iterator[KubeClient]:
    kube = KubeClient.connect(str(apiserver.kubeconfig_path))
    yield kube
    kube.close()


def outdated(kubectl: KubectlCLI, name: str, namespace: str) -> None:
    """Make the stored status out of date, whether or not an operator already reconciled it
    (the operator reacts to spec changes only, so it leaves this alone)."""
    kubectl("patch", "fs", name, "-n", namespace, "--subresource=status", "--type=merge",
            "-p", '{"status": {"observedGeneration": 0}}')


def test_resync_writes_status_once_then_nothing(crds_installed: None, kubectl_session: KubectlCLI,
                                                namespace: str, client: KubeClient):
    fs = sample("FeatureSet")
    fs["metadata"] = {"name": "resynced", "namespace": namespace}
    kubectl_session.apply(fs)
    outdated(kubectl_session, "resynced", namespace)
    items = [Reconcilable(FEATURESET, featureset_handlers.reconcile)]
    assert resync_all(client, items, [namespace]) == 1
    status = kubectl_session.json("get", "fs", "resynced", "-n", namespace)["status"]
    assert status["phase"] == "Pending" and status["observedGeneration"] == 1
    assert resync_all(client, items, [namespace]) == 0  # level-triggered: nothing changed, nothing written


def test_resync_skips_a_stale_read(crds_installed: None, kubectl_session: KubectlCLI, namespace: str,
                                   client: KubeClient):
    fs = sample("FeatureSet")
    fs["metadata"] = {"name": "stale", "namespace": namespace}
    kubectl_session.apply(fs)
    outdated(kubectl_session, "stale", namespace)
    stale_body = client.get(FEATURESET.api_version, FEATURESET.kind, namespace, "stale")
    kubectl_session("label", "fs", "stale", "-n", namespace, "touched=yes")  # a newer resourceVersion
    item = Reconcilable(FEATURESET, featureset_handlers.reconcile)
    assert resync_object(client, item, stale_body, now=datetime.now(UTC)) is False
    assert kubectl_session.json("get", "fs", "stale", "-n", namespace)["status"]["observedGeneration"] == 0


def test_resync_reports_invalid_specs(crds_installed: None, kubectl_session: KubectlCLI, namespace: str,
                                      client: KubeClient):
    fs = sample("FeatureSet")
    fs["metadata"] = {"name": "bad", "namespace": namespace}
    fs["spec"]["schedule"] = "61 * * * *"
    kubectl_session.apply(fs)
    resync_all(client, [Reconcilable(FEATURESET, featureset_handlers.reconcile)], [namespace])
    status = kubectl_session.json("get", "fs", "bad", "-n", namespace)["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec" and "spec.schedule" in ready["message"]
